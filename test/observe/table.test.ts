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

  it('many series of both kinds in one table: every one reads exactly what was added to it', () => {
    // Capacity 61: not a multiple of 8, so the stripes' padding is exercised; 60 series (and the
    // dropped-series counter) fill it.
    const memory = createSharedMemory(8 << 20);
    const module = kernelModule();
    const rts = [1, 2, 3, 0].map((stripe, i) => new ThreadRuntime(memory, module, `test:scratch:${i}`, 4096, { capacity: 61, stripes: STRIPES, stripe }, i === 0));
    // The first series of every table: the counter of dropped series (thread-metrics.ts).
    const expected = new Map<string, { kind: number; value: number }>([['hotpath_metrics_series_dropped_total', { kind: KIND_COUNTER, value: 0 }]]);
    for (let n = 0; n < 60; n++) {
      const counter = n % 3 !== 0;
      const key = counter ? `test_c${n}_total` : `test_g${n}`;
      let value = 0;
      rts.forEach((rt, t) => {
        const k = (n + 1) * (t + 1); // a different amount per series and thread
        if (counter) {
          const c = rt.metrics.counter(key).labels();
          for (let j = 0; j < k; j++) c.inc();
          c.inc(n);
          value += k + n;
        } else {
          rt.metrics.gauge(key).inc(k);
          value += k;
        }
      });
      expected.set(key, { kind: counter ? KIND_COUNTER : KIND_GAUGE, value });
    }
    for (const rt of rts) {
      const got = new Map(rt.metrics.table!.snapshot().map((s) => [s.key, { kind: s.kind, value: s.value }]));
      expect(got).toEqual(expected);
    }
  });

  it('a series is one kind: a counter named like a gauge (or the reverse) is refused, not silently lost', () => {
    const rts = runtimes();
    rts[0]!.metrics.gauge('test_kind').set(10);
    expect(() => rts[1]!.metrics.counter('test_kind').inc(5)).toThrow(/test_kind is a gauge in the shared table, not a counter/);
    rts[2]!.metrics.counter('test_kind2_total').inc();
    expect(() => rts[3]!.metrics.gauge('test_kind2_total').set(1)).toThrow(/is a counter in the shared table, not a gauge/);
  });

  it('threads that disagree on the table\'s shape are refused', () => {
    const memory = createSharedMemory(8 << 20);
    const module = kernelModule();
    new ThreadRuntime(memory, module, 'test:scratch:a', 4096, { capacity: 64, stripes: 4, stripe: 1 }, true);
    // Another shape of the very same size (64 + 8·32·24 + 128·32 = 64 + 8·64·4 + 128·64 bytes):
    // the arena's size check cannot tell them apart; the table's header does.
    expect(() => new ThreadRuntime(memory, module, 'test:scratch:b', 4096, { capacity: 32, stripes: 24, stripe: 2 }))
      .toThrow(/holds 64 series × 4 stripes; this thread expects 32 × 24/);
  });

  it('refuses a stripe outside the table', () => {
    const memory = createSharedMemory(8 << 20);
    expect(() => new ThreadRuntime(memory, kernelModule(), 'test:scratch', 4096, { capacity: 64, stripes: 2, stripe: 2 }, true)).toThrow(RangeError);
  });
});
