import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it, vi } from 'vitest';
import { createEngine, DEFAULTS } from '../engine/index.js';
import { resolveOptions, SYSTEM_CLOCK } from '../engine/options.js';

const run = promisify(execFile);

describe('createEngine options', () => {
  it.each([
    [{ workers: 0 }, RangeError, /options\.workers must be an integer between 1 and 64, got 0/],
    [{ workers: 1.5 }, RangeError, /options\.workers/],
    [{ workers: '2' }, RangeError, /options\.workers .* got "2"/],
    [{ memory: 1024 }, RangeError, /options\.memory/],
    [{ memory: 2 ** 40 }, RangeError, /options\.memory/],
    [{ clock: Date.now }, TypeError, /options\.clock must be an object/],
    [{ clock: { now: 5 } }, TypeError, /options\.clock\.now must be a function/],
    [{ channel: { ringBytes: 5000 } }, RangeError, /options\.channel\.ringBytes must be a power of two/],
    [{ channel: { spinUs: -1 } }, RangeError, /options\.channel\.spinUs/],
    [{ channel: { spin: 1 } }, TypeError, /options\.channel\.spin is not a known option/],
    [{ wrokers: 2 }, TypeError, /options\.wrokers is not a known option/],
    [{ memory: 2 << 20, channel: { ringBytes: 1 << 20 } }, RangeError, /cannot hold the channel rings/],
    // 2^18 series × (128 + 8 × 20) bytes with 16 workers: 72 MiB, over the default 64 MiB.
    [{ workers: 16, metricsCapacity: 1 << 18 }, RangeError, /cannot hold the metrics table of 262144 series for 16 workers.*raise memory or lower metricsCapacity/],
    [{ closeTimeoutMs: -5 }, RangeError, /options\.closeTimeoutMs/],
    [{ redisSubscriberCheckMs: -1 }, RangeError, /options\.redisSubscriberCheckMs/],
    [{ redisSubscriberCheckMs: 0.5 }, RangeError, /options\.redisSubscriberCheckMs/],
  ])('%j → %s', async (options, type, message) => {
    expect(() => resolveOptions(options as never)).toThrow(type);
    expect(() => resolveOptions(options as never)).toThrow(message);
    await expect(createEngine(options as never)).rejects.toThrow(message);
  });

  it('fills in the documented defaults', () => {
    const s = resolveOptions(undefined);
    expect(s.runtime.workers).toBe(DEFAULTS.workers);
    expect(s.runtime.memoryBytes).toBe(64 << 20);
    expect(s.clock).toBe(SYSTEM_CLOCK); // reads Date.now() per call, so fake timers move it too
    expect(s.closeTimeoutMs).toBe(5000);
    expect(DEFAULTS.workers).toBeGreaterThanOrEqual(1);
  });

  it('uses the clock it is given', async () => {
    const clock = { now: () => 42 };
    const e = await createEngine({ workers: 1, memory: 16 << 20, channel: { ringBytes: 65536 }, clock });
    try {
      expect(e.clock.now()).toBe(42);
    } finally {
      await e.close();
    }
  });

  it('sizes the arena from the memory option and lists its regions', async () => {
    const e = await createEngine({ workers: 1, memory: 8 << 20, channel: { ringBytes: 65536 } });
    try {
      expect(e.runtime.memory.buffer.byteLength).toBe(8 << 20);
      const names = e.runtime.regions().map((r) => r.name);
      expect(names).toContain('hotpath:pool');
      expect(names).toContain('hotpath:pool:req:0');
      expect(() => e.runtime.region('too-big', 16 << 20)).toThrow(/`memory` option/);
    } finally {
      await e.close();
    }
  });
});

describe('engine.balancer', () => {
  it('one live balancer per name: a second is refused (its metrics would be doubled) until the first is closed (review61 P10)', async () => {
    const e = await createEngine({ workers: 1, memory: 16 << 20, channel: { ringBytes: 65536 } });
    try {
      const one = e.balancer({ backends: [{ id: 'a' }], health: false });
      expect(() => e.balancer({ backends: [{ id: 'a' }], health: false })).toThrow(/balancer "default" already exists/);
      expect(() => e.balancer({ name: 'default', backends: [{ id: 'b' }], health: false })).toThrow(TypeError);
      const two = e.balancer({ name: 'other', backends: [{ id: 'a' }], health: false });
      one.report(one.pick(), { ok: true, latencyMs: 1 });
      two.report(two.pick(), { ok: false, latencyMs: 1 });
      const series = (await e.metrics.text()).split('\n').filter((l) => l.startsWith('hotpath_balancer')).map((l) => l.replace(/ [^ ]+$/, ''));
      expect(series.length).toBeGreaterThan(0);
      expect(new Set(series).size).toBe(series.length); // no series twice
      one.close();
      const again = e.balancer({ backends: [{ id: 'c' }], health: false }); // the name is free again
      expect((await e.metrics.text())).toMatch(/hotpath_balancer_backend_up\{balancer="default",backend="c"\} 1/);
      again.close();
    } finally {
      await e.close();
    }
  });

  it('a balancer closed after removeAllListeners() frees its name and leaves the metrics (review66 4)', async () => {
    const e = await createEngine({ workers: 1, memory: 16 << 20, channel: { ringBytes: 65536 } });
    try {
      const one = e.balancer({ name: 'api', backends: [{ id: 'a' }], health: false });
      one.removeAllListeners();
      one.close();
      expect(await e.metrics.text()).not.toMatch(/balancer="api"/);
      const two = e.balancer({ name: 'api', backends: [{ id: 'b' }], health: false }); // the name is free
      expect(await e.metrics.text()).toMatch(/hotpath_balancer_backend_up\{balancer="api",backend="b"\} 1/);
      expect(await e.metrics.text()).not.toMatch(/backend="a"/);
      two.close();
    } finally {
      await e.close();
    }
  });
});

describe('engine.breaker handles', () => {
  it('another option set never disposes an earlier handle; each option set gets its own handle back (review66 2)', async () => {
    const e = await createEngine({ workers: 1, memory: 16 << 20, channel: { ringBytes: 65536 } });
    vi.useFakeTimers();
    try {
      const mine = (): boolean => true;
      const theirs = (): boolean => true;
      const a = e.breaker('dep', { consecutiveFailures: 1, resetMs: 100, isFailure: mine });
      const events: string[] = [];
      a.on('state', (to: string, from: string) => events.push(`${from}->${to}`));
      await a.run(() => Promise.reject(new Error('down'))).catch(() => undefined); // a opens it: a's reset timer
      const b = e.breaker('dep', { consecutiveFailures: 1, resetMs: 100, isFailure: theirs });
      const c = e.breaker('dep', { consecutiveFailures: 1, resetMs: 100, timeoutMs: 50 });
      expect(b).not.toBe(a);
      expect(c).not.toBe(a);
      await vi.advanceTimersByTimeAsync(100);
      expect(events).toEqual(['closed->open', 'open->half-open']); // a's timer still ran
      for (let i = 0; i < 3; i++) { // alternating modules: the same handles back, no new ones
        expect(e.breaker('dep', { consecutiveFailures: 1, resetMs: 100, isFailure: mine })).toBe(a);
        expect(e.breaker('dep', { consecutiveFailures: 1, resetMs: 100, isFailure: theirs })).toBe(b);
        expect(e.breaker('dep', { consecutiveFailures: 1, resetMs: 100, timeoutMs: 50 })).toBe(c);
      }
      expect(e.breaker('dep')).toBe(c); // without options: the one returned last
    } finally {
      vi.useRealTimers();
      await e.close();
    }
  });
});

describe('process lifetime', () => {
  it('a script that creates an engine, runs a task and closes it exits by itself', async () => {
    const script = fileURLToPath(new URL('./fixtures/create-and-close.mjs', import.meta.url));
    const { stdout } = await run(process.execPath, [script], { timeout: 30_000 });
    expect(stdout.trim()).toBe('ok 42');
  });

  it('a script that awaits a task without closing stays alive until the answer arrives', async () => {
    const script = fileURLToPath(new URL('./fixtures/await-without-close.mjs', import.meta.url));
    const { stdout } = await run(process.execPath, [script], { timeout: 30_000 });
    expect(stdout.trim()).toBe('answered 25');
  });

  it('importing every entry point starts no thread and opens no handle', async () => {
    const code = (imports: string): string => `
      ${imports}
      const { readFileSync } = await import('node:fs');
      await new Promise((r) => setTimeout(r, 50)); // let the module loader's file closes finish
      // stdio pipes come and go with the parent's pipes; anything else is a handle we opened.
      const resources = process.getActiveResourcesInfo().filter((r) => !['PipeWrap', 'TTYWrap', 'CloseReq'].includes(r));
      const threads = Number(/Threads:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0);
      console.log(JSON.stringify({ resources, threads }));`;
    const cwd = fileURLToPath(new URL('..', import.meta.url));
    const probe = async (imports: string): Promise<{ resources: string[]; threads: number }> =>
      JSON.parse((await run(process.execPath, ['--input-type=module', '-e', code(imports)], { timeout: 30_000, cwd })).stdout);
    // The baseline reads a file asynchronously too, which starts libuv's thread pool (4 threads)
    // as loading modules from disk does.
    const baseline = await probe("await (await import('node:fs/promises')).readFile('package.json');");
    const after = await probe("await import('hotpath'); await import('hotpath/compress'); await import('hotpath/http');");
    expect(after.resources).toEqual([]);
    expect(baseline.resources).toEqual([]);
    if (process.platform === 'linux') expect(after.threads).toBe(baseline.threads);
  });
});
