/**
 * The metrics table's stripes (engine/observe/table.ts): several thread runtimes over one memory —
 * as the main thread and workers are — each counting in its own stripe, one with no stripe (the
 * shared atomic word): a scrape sums them all; gauges are one shared word whatever the stripe.
 */
import { describe, expect, it } from 'vitest';
import { ThreadRuntime, type MetricsLayout } from '../../engine/runtime/thread.js';
import { createSharedMemory, kernelModule } from '../../engine/runtime/wasm.js';
import { KIND_COUNTER, KIND_GAUGE } from '../../engine/observe/table.js';

const STRIPES = 4;

function runtimes(): ThreadRuntime[] {
  const memory = createSharedMemory(8 << 20);
  const module = kernelModule();
  const layout = (stripe: number): MetricsLayout => ({ capacity: 64, stripes: STRIPES, stripe });
  // The first carves the arena (as the main thread does); stripe 0 = a thread without a stripe.
  return [1, 2, 3, 0].map((stripe, i) => new ThreadRuntime(memory, module, `test:scratch:${i}`, 4096, layout(stripe), i === 0));
}

describe('metrics table stripes', () => {
  it('counters: each thread adds to its own cell (or the shared word); a snapshot sums them', () => {
    const rts = runtimes();
    const children = rts.map((rt) => rt.metrics.counter('test_striped_total', ['k']).labels('a'));
    expect(rts.map((rt) => rt.metrics.table!.stripe)).toEqual([1, 2, 3, 0]);
    // Interleaved adds from the four "threads", ones and larger steps.
    let expected = 0;
    for (let i = 0; i < 10_000; i++) {
      const c = children[i % 4]!;
      if (i % 10 === 0) {
        c.inc(3);
        expected += 3;
      } else {
        c.inc();
        expected += 1;
      }
    }
    for (const rt of rts) {
      const series = rt.metrics.table!.snapshot().find((s) => s.key === 'test_striped_total\u0000a');
      expect(series).toEqual({ kind: KIND_COUNTER, key: 'test_striped_total\u0000a', value: expected });
    }
    // The cells really are apart: the stripe-1 thread's cell holds its own count only.
    const t = rts[0]!.metrics.table!;
    const at = t.address(KIND_COUNTER, 'test_striped_total\u0000a');
    const cell = t.counterCell(at);
    expect(t.f64[cell]).toBe(2500 + 2 * 500); // i % 4 === 0: 2500 calls, 500 of them also i % 10 === 0 (i % 20 === 0): +3
    expect(rts[3]!.metrics.table!.counterCell(at)).toBe(-1);
  });

  it('gauges are one shared word: set by one thread, moved by another', () => {
    const rts = runtimes();
    rts[0]!.metrics.gauge('test_level').set(40);
    rts[1]!.metrics.gauge('test_level').inc(5);
    rts[3]!.metrics.gauge('test_level').dec(3);
    const series = rts[2]!.metrics.table!.snapshot().find((s) => s.key === 'test_level');
    expect(series).toEqual({ kind: KIND_GAUGE, key: 'test_level', value: 42 });
  });

  it('refuses a stripe outside the table', () => {
    const memory = createSharedMemory(8 << 20);
    expect(() => new ThreadRuntime(memory, kernelModule(), 'test:scratch', 4096, { capacity: 64, stripes: 2, stripe: 2 }, true)).toThrow(RangeError);
  });
});
