/** `hotpath profile`: a real Node child with the CPU profiler on; its profiles and its top functions. */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
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

  it('an explicit path to a node is run as given; only a bare `node` means this Node (review54)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hotpath-profile-test-'));
    // Another "node": a wrapper that says it ran, then runs this Node with the same arguments.
    const other = join(dir, 'bin', 'node');
    mkdirSync(join(dir, 'bin'));
    writeFileSync(other, `#!/bin/sh\necho "the wrapper ran: $1" >&2\nexec ${JSON.stringify(process.execPath)} "$@"\n`);
    chmodSync(other, 0o755);
    const r = run(['--dir', join(dir, 'p'), '--top', '1', '--', other, '-e', 'console.log("child", process.argv.length)']);
    expect(r.err).toMatch(/^the wrapper ran: --cpu-prof$/m);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/1 profile in /);
  });

  it('--dir naming a file: one line and exit 2, not a stack trace (review54)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hotpath-profile-test-'));
    writeFileSync(join(dir, 'afile'), 'x');
    for (const d of [join(dir, 'afile'), join(dir, 'afile', 'sub')]) {
      const r = run(['--dir', d, '--', 'node', '-e', '1']);
      expect(r.code).toBe(2);
      expect(r.err).toBe(`hotpath profile: --dir ${d}: not a directory\n`);
    }
  });

  it('a SIGINT sent to hotpath profile itself reaches the child; its profile is still reported (review54)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hotpath-profile-test-'));
    const script = `process.on('SIGINT', () => { console.log('child got SIGINT'); process.exit(5); });
      console.log('ready'); setInterval(() => {}, 1000);`;
    // Its own process group (as under setsid or a supervisor): no terminal's Ctrl-C reaches the child.
    const child = spawn(process.execPath, [BIN, 'profile', '--dir', dir, '--', 'node', '-e', script], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let sent = false;
    // Only a failsafe (the test waits for the child's "ready", then for the exit): should the signal
    // be swallowed, the test fails here instead of leaving both processes running.
    const guard = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 15_000);
    try {
      const code = await new Promise<number | null>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (!sent && out.includes('ready\n')) {
            sent = true;
            process.kill(child.pid!, 'SIGINT'); // hotpath profile, not the child
          }
        });
        child.on('error', reject);
        child.on('close', (c) => resolve(c));
      });
      expect(out).toMatch(/child got SIGINT/);
      expect(out).toMatch(/1 profile in /);
      expect(code).toBe(5);
    } finally {
      clearTimeout(guard);
    }
  }, 20_000);

  it('-h is --help', () => {
    const r = run(['-h']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^usage: hotpath profile/);
  });

  it('refuses what it cannot profile with a usage error (exit 2)', () => {
    expect(run([]).code).toBe(2);
    expect(run(['--top', 'x', '--', 'node', '-e', '1']).code).toBe(2);
    const notNode = run(['--', 'ls', '-l']);
    expect(notNode.code).toBe(2);
    expect(notNode.err).toMatch(/must be node or a \.js/);
  });
});
