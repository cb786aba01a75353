import { afterEach, describe, expect, it } from 'vitest';
import { createEngine, ErrorCodes, WorkerExitedError, type Engine } from '../../engine/index.js';
import { testEngine } from '../helpers.js';

let engine: Engine | undefined;
afterEach(async () => {
  await engine?.close();
  engine = undefined;
});

/** Every worker answers again: as many distinct threads as `workers` reply. */
async function poolRecovered(e: Engine, workers: number): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    // A probe may land on a worker that is still dying: that one fails with the typed error.
    const probes = await Promise.all(Array.from({ length: 50 }, () => e.run('whoami').catch((err: { code?: string }) => {
      expect(err.code).toBe(ErrorCodes.WORKER_EXITED);
      return undefined;
    })));
    const ids = new Set(probes.filter((id) => id !== undefined));
    if (ids.size === workers) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error('the pool did not get back to full strength');
}

describe.each([
  ['process.exit() mid-task', 'exitMidTask', {}],
  ['an exception thrown outside any task', 'throwAtTopLevel', {}],
  ['out of memory under resourceLimits', 'exhaustMemory', { workerResourceLimits: { maxOldGenerationSizeMb: 24, maxYoungGenerationSizeMb: 4 } }],
] as const)('a worker that dies by %s', (_label, task, options) => {
  it('rejects its in-flight tasks with ERR_HOTPATH_WORKER_EXITED, is replaced, and the pool goes on', async () => {
    engine = await testEngine(options);
    const e = engine;
    const before = new Set(await Promise.all(Array.from({ length: 20 }, () => e.run('whoami'))));
    // Tasks queued on both workers, then one of them dies while running them.
    const slow = Array.from({ length: 6 }, () => e.run('wait', 50).then(() => 'ok', (err: unknown) => err));
    const doomed = e.run(task).catch((err: unknown) => err);
    const err = await doomed;
    expect(err).toBeInstanceOf(WorkerExitedError);
    expect((err as WorkerExitedError).code).toBe(ErrorCodes.WORKER_EXITED);
    // Each slow task either finished or was rejected with the same typed error — none hangs.
    for (const r of await Promise.all(slow)) {
      if (r !== 'ok') expect(r).toMatchObject({ code: ErrorCodes.WORKER_EXITED });
    }
    await poolRecovered(e, 2);
    const after = new Set(await Promise.all(Array.from({ length: 50 }, () => e.run('whoami'))));
    expect([...after].some((id) => !before.has(id))).toBe(true); // a new thread took over
    expect(await e.run('echo', 'alive')).toBe('alive');
  });
});

it('survives repeated deaths with work in flight: answers published before a death are delivered', async () => {
  engine = await testEngine();
  const e = engine;
  const echoes: Array<Promise<unknown>> = [];
  for (let round = 0; round < 5; round++) {
    // The echoes sit ahead of the fatal task in whichever ring they land in, so each is answered
    // (and published) before its worker dies: every one of them must resolve.
    for (let i = 0; i < 100; i++) echoes.push(e.run('echo', round * 100 + i));
    const death = await e.run('exitMidTask').then(() => 'answered', (err: { code?: string }) => err.code);
    expect(death).toBe(ErrorCodes.WORKER_EXITED);
    await poolRecovered(e, 2);
  }
  expect(await Promise.all(echoes)).toEqual(Array.from({ length: 500 }, (_, i) => i));
});

it('a worker that dies with its request ring full leaves nothing behind to corrupt its replacement', async () => {
  engine = await testEngine({ workers: 1, channel: { ringBytes: 4096 } });
  const e = engine;
  const pad = new Uint8Array(400);
  await e.run('whoami'); // load the task module first: tasks then run in order as they arrive
  // Phase 1: the worker blocks, the ring fills (the main thread's writer waits for space), it dies.
  const phase1 = [e.run('blockThenDie', 150).then(() => 'ok', (err: { code?: string }) => err.code)];
  for (let i = 0; i < 20; i++) phase1.push(e.run('echo', pad).then(() => 'ok', (err: { code?: string }) => err.code));
  for (const r of await Promise.all(phase1)) expect(['ok', ErrorCodes.WORKER_EXITED]).toContain(r);
  await poolRecovered(e, 1);
  // Phase 2: the replacement (same slot) is busy while a burst fills the ring again. Every task
  // must complete, once, in order.
  const fill = 'x'.repeat(400); // 20 of these overflow the 4 KiB ring while the worker blocks
  const burst: Array<Promise<unknown>> = [e.run('block', 100)];
  for (let i = 0; i < 20; i++) burst.push(e.run('echo', { i, fill }));
  expect(await Promise.all(burst)).toEqual(['blocked', ...Array.from({ length: 20 }, (_, i) => ({ i, fill }))]);
  expect(e.runtime.pool.exits).toBe(1);
});

describe('workers that cannot start (review36)', () => {
  it('createEngine rejects at once with the workers\' own error, not after startTimeoutMs', async () => {
    const t0 = performance.now();
    // 4 MB: the isolate is created, then loading the worker's modules runs out of heap. (At 2 MB or less
    // Node 24 aborts the whole process: V8's fatal OOM while deserialising the isolate, uncatchable.)
    const err = await createEngine({ workers: 2, memory: 16 << 20, startTimeoutMs: 60_000, workerResourceLimits: { maxOldGenerationSizeMb: 4, maxYoungGenerationSizeMb: 1 } })
      .then(() => undefined, (e: unknown) => e as WorkerExitedError);
    expect(err).toBeInstanceOf(WorkerExitedError);
    expect(err!.message).toMatch(/died while starting/);
    expect(err!.cause).toBeDefined();
    expect(performance.now() - t0).toBeLessThan(30_000); // the old code waited the whole 60 s
  });

  it('workerResourceLimits are checked by name and value', async () => {
    await expect(createEngine({ workerResourceLimits: { maxOldGenSizeMb: 64 } as never })).rejects.toThrow(/workerResourceLimits\.maxOldGenSizeMb is not a known limit/);
    await expect(createEngine({ workerResourceLimits: { stackSizeMb: -1 } })).rejects.toThrow(/workerResourceLimits\.stackSizeMb must be a positive number/);
  });
});
