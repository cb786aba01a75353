/**
 * One exact limit across threads: the main thread and 4 workers hammer one key of one limiter at
 * the same instant (no refill, no window change), so the total admitted must equal the limit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Limiter, type Algorithm, type Engine } from '../../engine/index.js';
import { testEngine } from '../helpers.js';

let engine: Engine;
beforeAll(async () => {
  engine = await testEngine({ workers: 4 });
});
afterAll(() => engine.close());

const ALL: Algorithm[] = ['token-bucket', 'gcra', 'fixed-window', 'sliding-window', 'adaptive'];

describe.each(ALL)('%s', (algorithm) => {
  it('4 workers + the main thread on one key admit exactly the limit', async () => {
    // Large enough that each thread's run spans several scheduler slices (5 runnable threads on
    // 2 cores), so they really interleave; the total must still be exact.
    const limit = 400_000;
    const now = 1_800_000_000_000;
    const name = `exact-${algorithm}`;
    const mine = new Limiter(name, { algorithm, limit, window: 3_600_000, maxKeys: 1024 }, {
      runtime: engine.runtime.thread, clock: { now: () => now },
    });
    const gate = engine.runtime.region(`test:limiter-gate:${algorithm}`, 8).offset;
    const i32 = engine.runtime.thread.i32;
    const workers = Array.from({ length: 4 }, () =>
      engine.run('limiterHammer', { name, key: 'hot', attempts: limit, now, gate }));
    while (Atomics.load(i32, gate >>> 2) < 4) await new Promise((r) => setImmediate(r));
    Atomics.store(i32, (gate >>> 2) + 1, 1); // go
    let admitted = 0;
    for (let i = 0; i < limit; i++) if (mine.allowSync('hot').allowed) admitted++;
    const theirs = (await Promise.all(workers)) as number[];
    const total = admitted + theirs.reduce((a, b) => a + b, 0);
    expect(total).toBe(limit);
    // They really raced: at least two threads won tokens (CAS loops are not fair, DESIGN pitfall 7).
    expect([admitted, ...theirs].filter((x) => x > 0).length).toBeGreaterThanOrEqual(2);
    expect(mine.peek('hot').allowed).toBe(false);
  });
});

describe('opening by name in a worker', () => {
  it('gets the very options the creator gave (adaptive settings included)', async () => {
    const l = new Limiter('by-name', { algorithm: 'adaptive', limit: 50, window: 1000, maxKeys: 64 }, { runtime: engine.runtime.thread });
    const theirs = await engine.run('limiterSpec', { name: 'by-name' });
    expect(theirs).toEqual(l.spec);
    expect((theirs as { adaptive: { targetLatencyMs: number } }).adaptive.targetLatencyMs).toBe(Number.MAX_VALUE);
  });
});
