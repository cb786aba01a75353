/**
 * Every `hotpath` command answers --help with its usage and exit code 0 (review38: `bench --help`
 * was refused as an unknown option).
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../../bin/hotpath.js', import.meta.url));

describe('hotpath <command> --help', () => {
  it.each(['serve', 'loadtest', 'cache', 'bench', 'profile', 'compress', 'decompress'])('%s --help: usage on stdout, exit 0', async (command) => {
    const { stdout } = await run(process.execPath, [BIN, command, '--help'], { timeout: 20_000 });
    expect(stdout).toMatch(/usage/i);
  });
});
