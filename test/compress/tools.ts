/** The reference command-line tools (Debian's lz4 and zstd) for interoperability tests. */
import { spawnSync } from 'node:child_process';

/** True when `tool` runs. Without it, a test says so — and fails under CI=true (CI installs it). */
export function haveTool(tool: string): boolean {
  const ok = spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0;
  if (!ok) {
    const msg = `the \`${tool}\` tool is not installed (apt-get install ${tool}): interoperability tests with it cannot run`;
    if (process.env.CI === 'true') throw new Error(msg);
    console.warn(`skipped: ${msg}`);
  }
  return ok;
}

/** Runs `tool args…` with `input` on stdin; returns stdout (throws on a non-zero exit). */
export function runTool(tool: string, args: string[], input: Uint8Array): Buffer {
  const r = spawnSync(tool, args, { input, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} exited ${r.status}: ${r.stderr.toString()}`);
  return r.stdout;
}
