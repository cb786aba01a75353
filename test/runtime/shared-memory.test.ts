import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../engine/index.js';
import { testEngine } from '../helpers.js';

let engine: Engine;
beforeAll(async () => {
  engine = await testEngine();
});
afterAll(() => engine.close());

describe('one shared memory seen from the main thread and two workers', () => {
  it('a counter bumped with atomics from three threads reaches the exact total', async () => {
    const region = engine.runtime.region('test:counter', 8);
    const i32 = new Int32Array(engine.runtime.memory.buffer);
    const times = 200_000;
    const tasks = 8; // spread over both workers, running while the main thread bumps too
    const work = Array.from({ length: tasks }, () => engine.run('bump', { offset: region.offset, times }));
    for (let i = 0; i < times; i++) Atomics.add(i32, region.offset >>> 2, 1);
    engine.runtime.kernels.counterBump32(region.offset, times);
    const done = (await Promise.all(work)) as number[];
    expect(done.reduce((a, b) => a + b, 0)).toBe(tasks * times * 2);
    expect(Atomics.load(i32, region.offset >>> 2)).toBe(tasks * times * 2 + 2 * times);
  });

  it('a region created after start-up is found by name from a worker', async () => {
    const r = engine.runtime.region('test:late-region', 4096);
    const seen = await Promise.all(Array.from({ length: 20 }, () => engine.run('findRegion', 'test:late-region')));
    for (const s of seen) expect(s).toEqual({ name: 'test:late-region', offset: r.offset, bytes: r.bytes });
  });

  it('a region a worker creates is found by the main thread, with what the worker wrote', async () => {
    const made = (await engine.run('createRegion', { name: 'test:from-worker', bytes: 100 })) as { offset: number; created: boolean };
    expect(made.created).toBe(true);
    const found = engine.runtime.regions().find((x) => x.name === 'test:from-worker');
    expect(found).toEqual({ name: 'test:from-worker', offset: made.offset, bytes: 104 });
    expect(new Int32Array(engine.runtime.memory.buffer, made.offset, 1)[0]).toBe(4242);
  });

  it('concurrent creation of one name from every thread yields one region', async () => {
    const results = (await Promise.all(
      Array.from({ length: 30 }, () => engine.run('createRegion', { name: 'test:contended', bytes: 64 })),
    )) as Array<{ offset: number; created: boolean }>;
    const mine = engine.runtime.region('test:contended', 64);
    expect(new Set(results.map((r) => r.offset))).toEqual(new Set([mine.offset]));
    expect(results.filter((r) => r.created).length).toBeLessThanOrEqual(1);
    expect(engine.runtime.regions().filter((r) => r.name === 'test:contended')).toHaveLength(1);
  });
});
