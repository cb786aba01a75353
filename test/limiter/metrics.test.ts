/**
 * Limiter metrics: decisions by outcome and source, counted in batches per clock tick on the
 * system (coarse) clock, and all there once the clock goes idle.
 */
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { createEngine, type Engine } from '../../engine/index.js';

let engine: Engine;
beforeAll(async () => {
  engine = await createEngine({ workers: 1, memory: 16 << 20, channel: { ringBytes: 65536 } });
});
afterAll(() => engine.close());

const count = async (outcome: string): Promise<number> => {
  const m = new RegExp(`hotpath_limiter_decisions_total\\{limiter="m",result="${outcome}",source="local"\\} (\\d+)`).exec(await engine.metrics.text());
  return m === null ? 0 : Number(m[1]);
};

it('counts every local decision (batched per clock tick, flushed when the clock goes idle)', async () => {
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
  try {
    const l = engine.limiter('m', { limit: 600, window: 3_600_000, maxKeys: 64 });
    for (let i = 0; i < 1000; i++) l.allowSync('k');
    vi.advanceTimersByTime(1); // a tick: the clock is stale, nothing flushed yet unless time moved
    for (let i = 0; i < 500; i++) l.allowSync('k');
    vi.advanceTimersByTime(5); // idle: the clock's timer stops and the limiter flushes
    expect(await count('allowed')).toBe(600);
    expect(await count('denied')).toBe(900);
  } finally {
    vi.useRealTimers();
  }
});

it('metrics: false counts nothing', async () => {
  const l = engine.limiter('quiet', { limit: 5, metrics: false, maxKeys: 64 });
  for (let i = 0; i < 10; i++) l.allowSync('k');
  expect(await engine.metrics.text()).not.toMatch(/limiter="quiet"/);
});
