#!/usr/bin/env node
// The `hotpath` command: a thin launcher for the built CLI (npm ci builds it via `prepare`).
import { main } from '../dist/engine/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exitCode = 1;
  },
);
