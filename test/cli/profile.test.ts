/** `hotpath profile`: a real Node child with the CPU profiler on; its profiles and its top functions. */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const BIN = new URL('../../bin/hotpath.js', import.meta.url).pathname;
const run = (args: string[]): { code: number | null; out: string; err: string } => {
  const r = spawnSync(process.execPath, [BIN, 'profile', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe('hotpath profile', () => {
  it('profiles the command (main thread and worker threads), lists the files, names the hot function, keeps its exit code', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hotpath-profile-test-'));
    const script = `
      const { Worker } = require('node:worker_threads');
      function burnCpuOnMain() { let x = 0; for (let i = 0; i < 2e8; i++) x += i % 7; return x; }
      const w = new Worker('function burnCpuOnWorker() { let x = 0; for (let i = 0; i < 1e8; i++) x += i % 5; return x; } burnCpuOnWorker();', { eval: true });
      burnCpuOnMain();
      w.on('exit', () => process.exit(3));`;
    const r = run(['--dir', dir, '--top', '8', '--', 'node', '-e', script]);
    expect(r.code).toBe(3);
    const files = r.out.split('\n').map((l) => l.trim()).filter((l) => l.endsWith('.cpuprofile'));
    expect(files.length).toBe(2); // the main thread and the worker
    for (const f of files) expect(existsSync(f) && f.startsWith(dir)).toBe(true);
    expect(r.out).toMatch(/%\s+[\d.]+ ms {2}burnCpuOnMain/);
    expect(r.out).toMatch(/%\s+[\d.]+ ms {2}burnCpuOnWorker/);
  });

  it('refuses what it cannot profile with a usage error (exit 2)', () => {
    expect(run([]).code).toBe(2);
    expect(run(['--top', 'x', '--', 'node', '-e', '1']).code).toBe(2);
    const notNode = run(['--', 'ls', '-l']);
    expect(notNode.code).toBe(2);
    expect(notNode.err).toMatch(/must be node or a \.js/);
  });
});
