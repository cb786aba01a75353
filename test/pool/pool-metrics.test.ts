/**
 * The pool's metrics in an engine's registry: resources by state, waiters, events and the
 * acquire-time summary; two pools keep separate series; a drained pool leaves zeros.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../engine/index.js';
import { createPool } from '../../engine/pool/pool.js';
import { rejection, testEngine } from '../helpers.js';

let engine: Engine;
beforeAll(async () => {
  engine = await testEngine();
});
afterAll(() => engine.close());

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('pool metrics', () => {
  it('records resources by state, waiters and events per pool', async () => {
    let n = 0;
    let failNext = false;
    const db = createPool({
      name: 'db',
      metrics: engine.metrics,
      create: async () => {
        if (failNext) {
          failNext = false;
          throw new Error('refused');
        }
        return { id: ++n };
      },
      validate: (r) => r.id !== 2,
      max: 3,
      breaker: false,
      createRetry: { delayMs: 1, jitter: false },
    });
    const other = createPool({ name: 'cache', metrics: engine.metrics, create: () => ({}), max: 1 });
    const a = await db.acquire();
    const b = await db.acquire(); // #2 is refused by validate, #3 is lent
    failNext = true;
    const c = await db.acquire(); // one failed create, then #4
    db.release(a);
    const held = await other.acquire();
    const waiting = rejection(other.acquire({ timeoutMs: 20 }));

    let text = await engine.metrics.text();
    expect(sample(text, 'hotpath_pool_resources{pool="db",state="idle"}')).toBe(1);
    expect(sample(text, 'hotpath_pool_resources{pool="db",state="borrowed"}')).toBe(2);
    expect(sample(text, 'hotpath_pool_resources{pool="db",state="pending-create"}')).toBe(0);
    expect(sample(text, 'hotpath_pool_resources{pool="cache",state="borrowed"}')).toBe(1);
    expect(sample(text, 'hotpath_pool_waiters{pool="cache"}')).toBe(1);
    expect(sample(text, 'hotpath_pool_events_total{pool="db",event="created"}')).toBe(4);
    expect(sample(text, 'hotpath_pool_events_total{pool="db",event="validation_failed"}')).toBe(1);
    expect(sample(text, 'hotpath_pool_events_total{pool="db",event="destroyed"}')).toBe(1);
    expect(sample(text, 'hotpath_pool_events_total{pool="db",event="create_failed"}')).toBe(1);
    expect(text).toMatch(/^# TYPE hotpath_pool_acquire_seconds summary$/m);
    expect(sample(text, 'hotpath_pool_acquire_seconds_count')).toBeGreaterThanOrEqual(4);

    expect((await waiting).code).toBe('ERR_HOTPATH_POOL_TIMEOUT');
    text = await engine.metrics.text();
    expect(sample(text, 'hotpath_pool_events_total{pool="cache",event="timeout"}')).toBe(1);
    expect(sample(text, 'hotpath_pool_waiters{pool="cache"}')).toBe(0);

    db.release(b);
    db.release(c);
    other.release(held);
    await Promise.all([db.drain(), other.drain()]);
    text = await engine.metrics.text();
    for (const pool of ['db', 'cache']) {
      for (const state of ['idle', 'borrowed', 'pending-create']) {
        expect(sample(text, `hotpath_pool_resources{pool="${pool}",state="${state}"}`) ?? 0, `${pool} ${state}`).toBe(0);
      }
    }
    expect(sample(text, 'hotpath_pool_events_total{pool="db",event="destroyed"}')).toBe(4);
  });
});
