import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_HEAP_ENTRIES, MAX_SLOT, STAGE_ENTRIES, TaskHeap } from '../../engine/queue/heap.js';
import { kernelModule } from '../../engine/runtime/wasm.js';
import { HeapReference } from './heap-reference.js';

const module = kernelModule();

/** (a) orders before or equals (b) in the heap's order. */
function notAfter(a: { key: number; seq: number }, b: { key: number; seq: number }): boolean {
  return a.key < b.key || (a.key === b.key && a.seq <= b.seq);
}

/** The 4-ary heap property over the kernel's array, and seqs unique. */
function expectHeapShape(h: TaskHeap): void {
  const list = h.entries();
  for (let i = 1; i < list.length; i++) {
    const parent = list[(i - 1) >> 2]!;
    if (!notAfter(parent, list[i]!)) expect.fail(`entry ${i} orders before its parent`);
  }
  expect(new Set(list.map((e) => e.seq)).size).toBe(list.length);
}

// Keys: few distinct values (ties, FIFO), or any finite double (-0, subnormals, ±MAX_VALUE).
const key = fc.oneof(fc.integer({ min: -3, max: 3 }), fc.double({ noNaN: true, noDefaultInfinity: true }));
const slot = fc.integer({ min: 0, max: MAX_SLOT });
const op = fc.oneof(
  { weight: 10, arbitrary: fc.record({ kind: fc.constant('push' as const), key, slot }) },
  { weight: 7, arbitrary: fc.constant({ kind: 'pop' as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'peek' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('pushBatch' as const), keys: fc.array(key, { maxLength: 60 }), slot }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('popBatch' as const), n: fc.integer({ min: 0, max: 70 }), room: fc.integer({ min: 0, max: 80 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'clear' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('retain' as const), mod: fc.integer({ min: 1, max: 5 }), rest: fc.nat(4) }) },
);

describe('TaskHeap (wasm/heap.ts) vs the plain-TS reference', () => {
  it('gives the same answers over random operation sequences, through growth and renumbering (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 400 }),
        fc.integer({ min: 1, max: 64 }),
        fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 300 })),
        fc.array(op, { maxLength: 400 }),
        fc.constantFrom(1, 2, 16, Infinity),
        (max, initial, extraSeq, ops, drainSortMin) => {
          // seqLimit just above maxEntries: the u32 counter "wraps" often and is renumbered.
          // drainSortMin small: popBatch takes the sorted path whenever it pops half the heap.
          const h = new TaskHeap(max, Math.min(initial, max), { module, seqLimit: max + extraSeq, drainSortMin });
          const r = new HeapReference();
          for (const o of ops) {
            switch (o.kind) {
              case 'push':
                if (r.size === max) {
                  expect(() => h.push(o.key, o.slot)).toThrow(RangeError);
                } else {
                  h.push(o.key, o.slot);
                  r.push(o.key, o.slot);
                }
                break;
              case 'pop':
                expect(h.pop()).toBe(r.pop());
                break;
              case 'peek':
                expect(h.peekSlot()).toBe(r.peekSlot());
                expect(h.peekKey()).toBe(r.peekKey());
                break;
              case 'pushBatch': {
                const keys = Float64Array.from(o.keys);
                const slots = Uint32Array.from(o.keys, (_, i) => (o.slot + i) % (MAX_SLOT + 1));
                if (r.size + keys.length > max) {
                  const before = h.size;
                  expect(() => h.pushBatch(keys, slots)).toThrow(RangeError);
                  expect(h.size).toBe(before); // all or nothing
                } else {
                  h.pushBatch(keys, slots);
                  r.pushBatch(keys, slots);
                }
                break;
              }
              case 'popBatch': {
                const a = new Uint32Array(o.room).fill(7);
                const b = new Uint32Array(o.room).fill(7);
                expect(h.popBatch(a, o.n)).toBe(r.popBatch(b, Math.min(o.n, o.room)));
                expect(Array.from(a)).toEqual(Array.from(b));
                break;
              }
              case 'clear':
                h.clear();
                r.clear();
                break;
              case 'retain': {
                const keep = (slot: number): boolean => slot % o.mod !== o.rest % o.mod;
                expect(h.retain(keep)).toBe(r.retain(keep));
                break;
              }
            }
            expect(h.size).toBe(r.size);
          }
          expectHeapShape(h);
          // Drain: the whole remaining order agrees.
          const rest: number[] = [];
          const want: number[] = [];
          while (r.size > 0) {
            want.push(r.pop());
            rest.push(h.pop());
          }
          expect(rest).toEqual(want);
          expect(h.pop()).toBe(-1);
          expect(h.peekSlot()).toBe(-1);
          expect(h.peekKey()).toBeNaN();
        },
      ),
      { numRuns: 300 },
    );
  });

  it('agrees on batches larger than the staging area (chunked crossings) and on sorted drains', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 3 * STAGE_ENTRIES }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 0, max: 2 ** 31 }),
        (sizes, seed) => {
          const total = sizes.reduce((a, b) => a + b, 0);
          const h = new TaskHeap(total + 10, 1, { module });
          const r = new HeapReference();
          let x = seed | 1;
          let s = 0;
          for (const n of sizes) {
            const keys = new Float64Array(n);
            const slots = new Uint32Array(n);
            for (let i = 0; i < n; i++) {
              x ^= x << 13; x ^= x >>> 17; x ^= x << 5; // xorshift32
              keys[i] = (x >>> 0) % 50; // many ties
              slots[i] = s++;
            }
            h.pushBatch(keys, slots);
            r.pushBatch(keys, slots);
            expectHeapShape(h);
          }
          // Half, then the rest: both large enough for the sorted path (DRAIN_SORT_MIN = 4096).
          for (const n of [total >> 1, total - (total >> 1)]) {
            const a = new Uint32Array(n);
            const b = new Uint32Array(n);
            expect(h.popBatch(a)).toBe(n);
            r.popBatch(b);
            expect(Array.from(a)).toEqual(Array.from(b));
            expectHeapShape(h);
          }
          expect(h.size).toBe(0);
        },
      ),
      { numRuns: 25 },
    );
  });
});

describe('TaskHeap order', () => {
  it('is FIFO within equal keys, keys ascending', () => {
    const h = new TaskHeap(10_000, 16, { module });
    for (let i = 0; i < 10_000; i++) h.push([2, 0, 3, 1][i % 4]!, i);
    const out: number[] = [];
    for (let s = h.pop(); s !== -1; s = h.pop()) out.push(s);
    const want = [0, 1, 2, 3].flatMap((k) => Array.from({ length: 2500 }, (_, j) => j * 4 + [1, 3, 0, 2][k]!));
    expect(out).toEqual(want);
  });

  it('pops 200k random keys in sorted order, per call and batched', () => {
    const n = 200_000;
    const keys = new Float64Array(n).map(() => Math.random() * 1e6 - 5e5);
    const slots = Uint32Array.from({ length: n }, (_, i) => i);
    const order = Array.from(slots).sort((a, b) => keys[a]! - keys[b]! || a - b);
    const h = new TaskHeap(n, 1, { module });
    for (let i = 0; i < n; i++) h.push(keys[i]!, i);
    const got = new Uint32Array(n);
    for (let i = 0; i < n; i++) got[i] = h.pop();
    expect(Array.from(got)).toEqual(order);
    h.pushBatch(keys, slots);
    got.fill(0);
    expect(h.popBatch(got)).toBe(n);
    expect(Array.from(got)).toEqual(order);
  });

  it('keeps aging keys (priority + enqueueMs / agingMs) in order', () => {
    const h = new TaskHeap(100, 1, { module });
    const agingMs = 1000;
    // Pushed in time order, as the queue does. Priority 3 enqueued at t=0 ranks with priority 1
    // enqueued at t=2000 and before it (older); priority 2 at t=1500 comes after both.
    h.push(3 + 0 / agingMs, 0);
    h.push(2 + 1500 / agingMs, 2);
    h.push(1 + 2000 / agingMs, 1);
    expect([h.pop(), h.pop(), h.pop()]).toEqual([0, 1, 2]);
  });
});

describe('TaskHeap sorted drain (popBatch of at least half a large heap)', () => {
  // Keys whose bytes stress the radix sort: both signs, ±0 (equal: FIFO), subnormals, extremes,
  // many equal keys (long runs decided by seq bytes) and random doubles.
  const special = [0, -0, 1, -1, 2, 0.5, -0.5, Number.MIN_VALUE, -Number.MIN_VALUE, Number.MAX_VALUE, -Number.MAX_VALUE, 2 ** 52, -(2 ** 53), 1e-300, -1e300];
  function keysFor(n: number, seed: number): Float64Array {
    let x = seed | 1;
    const keys = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      const r = x >>> 0;
      keys[i] = r % 3 === 0 ? special[r % special.length]! : r % 3 === 1 ? (r % 7) - 3 : (r / 2 ** 32 - 0.5) * 10 ** ((r % 40) - 20);
    }
    return keys;
  }

  it.each([
    ['all of it', 30_000, 30_000],
    ['half of it', 30_000, 15_000],
    ['three quarters', 9_000, 6_750],
  ])('pops %s in the same order as one-by-one pops', (_name, size, take) => {
    const keys = keysFor(size, size + take);
    const sorted = new TaskHeap(size, 1, { module });
    const r = new HeapReference();
    // Pushed one by one with a pop now and then: an irregular heap, not a fresh batch.
    for (let i = 0; i < size; i++) {
      sorted.push(keys[i]!, i);
      r.push(keys[i]!, i);
      if (i % 97 === 96) expect(sorted.pop()).toBe(r.pop());
    }
    const a = new Uint32Array(take);
    const b = new Uint32Array(take);
    expect(sorted.popBatch(a)).toBe(r.popBatch(b));
    expect(Array.from(a)).toEqual(Array.from(b));
    expectHeapShape(sorted);
    // The rest is still a heap that keeps taking pushes in order.
    for (let i = 0; i < 1000; i++) {
      sorted.push(keys[i]!, size + i);
      r.push(keys[i]!, size + i);
    }
    const rest: number[] = [];
    const want: number[] = [];
    while (r.size > 0) {
      rest.push(sorted.pop());
      want.push(r.pop());
    }
    expect(rest).toEqual(want);
  });

  it.each([
    ['across 2^24 (the radix sort on seq bytes)', 2 ** 24 - 3000],
    ['across 2^32 (renumbered on the way)', 2 ** 32 - 3000],
  ])('keeps FIFO among equal keys with seqs %s', (_name, seqStart) => {
    const h = new TaskHeap(6000, 1, { module, seqStart, drainSortMin: 1 });
    const r = new HeapReference();
    for (let i = 0; i < 6000; i++) {
      h.push(i % 3, i);
      r.push(i % 3, i);
    }
    const a = new Uint32Array(6000);
    const b = new Uint32Array(6000);
    expect(h.popBatch(a)).toBe(6000);
    r.popBatch(b);
    expect(Array.from(a)).toEqual(Array.from(b));
  });

  it('treats -0 and +0 as one key (FIFO between them), as the heap does', () => {
    const h = new TaskHeap(100, 1, { module, drainSortMin: 1 });
    for (let i = 0; i < 60; i++) h.push(i % 2 === 0 ? -0 : 0, i);
    const out = new Uint32Array(60);
    h.popBatch(out);
    expect(Array.from(out)).toEqual(Array.from({ length: 60 }, (_, i) => i));
  });

  it('renumbers a large heap (the sort) without changing its order', () => {
    const n = 20_000;
    const keys = keysFor(n, 7);
    const h = new TaskHeap(n, 1, { module, seqLimit: n });
    const r = new HeapReference();
    for (let i = 0; i < n; i++) {
      h.push(keys[i]!, i);
      r.push(keys[i]!, i);
    }
    for (let i = 0; i < n / 2; i++) expect(h.pop()).toBe(r.pop());
    h.push(0, n); // the counter is at its limit: renumber
    r.push(0, n);
    expect(Math.max(...h.entries().map((e) => e.seq))).toBe(n / 2);
    while (r.size > 0) expect(h.pop()).toBe(r.pop());
  });
});

describe('TaskHeap retain (lazy deletion in bulk)', () => {
  it('drops the entries whose slot fails, keeps the order (and FIFO) of the rest', () => {
    const n = 50_000;
    const h = new TaskHeap(n, 1, { module });
    const r = new HeapReference();
    for (let i = 0; i < n; i++) {
      const key = (i * 7919) % 5; // 5 keys, many ties
      h.push(key, i);
      r.push(key, i);
    }
    for (let i = 0; i < 1000; i++) expect(h.pop()).toBe(r.pop());
    const dead = (slot: number): boolean => slot % 3 === 0 || slot % 7 === 0;
    expect(h.retain((s) => !dead(s))).toBe(r.retain((s) => !dead(s)));
    expect(h.size).toBe(r.size);
    expectHeapShape(h);
    for (let i = 0; i < 500; i++) {
      h.push(i % 5, n + i);
      r.push(i % 5, n + i);
    }
    while (r.size > 0) expect(h.pop()).toBe(r.pop());
    expect(h.retain(() => false)).toBe(0);
  });

  it('stays a consistent heap when the predicate throws (entries not yet seen are kept)', () => {
    const h = new TaskHeap(100, 1, { module });
    const r = new HeapReference();
    for (let i = 0; i < 100; i++) {
      h.push(i % 4, i);
      r.push(i % 4, i);
    }
    let calls = 0;
    const seen = new Set<number>();
    expect(() =>
      h.retain((slot) => {
        if (++calls === 60) throw new Error('boom');
        seen.add(slot);
        return slot % 2 === 0;
      }),
    ).toThrow('boom');
    r.retain((slot) => !seen.has(slot) || slot % 2 === 0);
    expect(h.size).toBe(r.size);
    expectHeapShape(h);
    while (r.size > 0) expect(h.pop()).toBe(r.pop());
  });
});

describe('TaskHeap memory', () => {
  it('grows ×2 from one entry up to maxEntries, then refuses with a RangeError', () => {
    const max = 100_000;
    const h = new TaskHeap(max, 1, { module });
    const start = h.memoryBytes;
    const capacities = new Set<number>([h.capacity]);
    for (let i = 0; i < max; i++) {
      h.push(max - i, i); // descending keys: every push sifts to the root
      capacities.add(h.capacity);
    }
    expect(h.size).toBe(max);
    expect(h.capacity).toBe(max);
    expect(h.memoryBytes).toBeGreaterThan(start);
    expect(h.memoryBytes).toBeLessThanOrEqual(Math.ceil((144 * 1024 + 16 * max) / 65536) * 65536);
    // Doubling: a handful of growth steps, not one per page.
    expect(capacities.size).toBeLessThan(10);
    expect(() => h.push(0, 1)).toThrow(/full.*maxEntries 100000/);
    expect(() => h.pushBatch(new Float64Array(1), new Uint32Array(1))).toThrow(RangeError);
    expect(h.size).toBe(max);
    for (let i = max - 1; i >= 0; i--) expect(h.pop()).toBe(i);
    expect(h.pop()).toBe(-1);
    // The memory stays; a clear heap fills again without growing.
    const bytes = h.memoryBytes;
    h.clear();
    for (let i = 0; i < max; i++) h.push(i, i);
    expect(h.memoryBytes).toBe(bytes);
  });

  it('grows for a batch larger than twice its room in one step', () => {
    const h = new TaskHeap(50_000, 1, { module });
    h.pushBatch(new Float64Array(40_000), Uint32Array.from({ length: 40_000 }, (_, i) => i));
    expect(h.size).toBe(40_000);
    expect(h.capacity).toBeGreaterThanOrEqual(40_000);
    for (let i = 0; i < 40_000; i++) expect(h.pop()).toBe(i);
  });
});

describe('TaskHeap sequence renumbering', () => {
  it('renumbers before the counter passes seqLimit and keeps FIFO order across it', () => {
    const h = new TaskHeap(8, 8, { module, seqLimit: 8 });
    const r = new HeapReference();
    let next = 0;
    // Keep 5 queued and cycle 1000 pushes through: the counter hits 8 about every 3 pushes.
    for (let i = 0; i < 1000; i++) {
      const k = i % 2;
      h.push(k, next);
      r.push(k, next);
      next++;
      if (h.size > 5) expect(h.pop()).toBe(r.pop());
      const seqs = h.entries().map((e) => e.seq);
      expect(Math.max(...seqs)).toBeLessThan(8);
    }
    expectHeapShape(h);
    while (r.size > 0) expect(h.pop()).toBe(r.pop());
  });

  it('renumbers in pop order: seq 0 .. n-1, the array sorted', () => {
    const h = new TaskHeap(6, 6, { module, seqLimit: 6 });
    for (const [k, s] of [[5, 0], [1, 1], [3, 2], [1, 3], [0, 4], [3, 5]] as const) h.push(k, s);
    h.pop(); // slot 4 (key 0)
    h.push(9, 6); // counter at the limit: renumber 5 live entries first, then seq 5
    expect(h.entries()).toEqual([
      { key: 1, seq: 0, slot: 1 },
      { key: 1, seq: 1, slot: 3 },
      { key: 3, seq: 2, slot: 2 },
      { key: 3, seq: 3, slot: 5 },
      { key: 5, seq: 4, slot: 0 },
      { key: 9, seq: 5, slot: 6 },
    ]);
  });

  it('renumbers before a batch that would pass the limit', () => {
    const h = new TaskHeap(10, 1, { module, seqLimit: 10 });
    h.pushBatch(new Float64Array(8), Uint32Array.from([0, 1, 2, 3, 4, 5, 6, 7]));
    expect(h.popBatch(new Uint32Array(6))).toBe(6);
    h.pushBatch(new Float64Array(5), Uint32Array.from([8, 9, 10, 11, 12]));
    expect(Math.max(...h.entries().map((e) => e.seq))).toBe(6);
    const out = new Uint32Array(7);
    h.popBatch(out);
    expect(Array.from(out)).toEqual([6, 7, 8, 9, 10, 11, 12]);
  });
});

describe('TaskHeap bad input', () => {
  it('rejects a key that is not finite and a slot out of range, adding nothing', () => {
    const h = new TaskHeap(10, 1, { module });
    for (const k of [NaN, Infinity, -Infinity]) expect(() => h.push(k, 1)).toThrow(/key must be a finite number/);
    for (const s of [-1, MAX_SLOT + 1, 1.5, NaN]) expect(() => h.push(1, s)).toThrow(/slot must be an integer/);
    expect(() => h.pushBatch(Float64Array.of(1, NaN), Uint32Array.of(1, 2))).toThrow(RangeError);
    expect(() => h.pushBatch(Float64Array.of(1, 2), Uint32Array.of(1, MAX_SLOT + 1))).toThrow(RangeError);
    expect(() => h.pushBatch(Float64Array.of(1, 2), Uint32Array.of(1), 2)).toThrow(/n must be an integer/);
    expect(() => h.popBatch(new Uint32Array(4), 1.5)).toThrow(/n must be a non-negative integer/);
    expect(() => h.popBatch(new Uint32Array(4), -1)).toThrow(RangeError);
    expect(h.size).toBe(0);
    h.push(-0, MAX_SLOT);
    expect(h.pop()).toBe(MAX_SLOT);
  });

  it('rejects bad sizes', () => {
    expect(() => new TaskHeap(0)).toThrow(/maxEntries must be an integer/);
    expect(() => new TaskHeap(1.5)).toThrow(RangeError);
    expect(() => new TaskHeap(MAX_HEAP_ENTRIES + 1)).toThrow(RangeError);
    expect(() => new TaskHeap(10, 0)).toThrow(/initialEntries/);
    expect(() => new TaskHeap(10, 1, { seqLimit: 5 })).toThrow(/seqLimit/);
    expect(() => new TaskHeap(10, 1, { seqLimit: 2 ** 32 + 1 })).toThrow(/seqLimit/);
    expect(() => new TaskHeap(10, 1, { seqStart: -1 })).toThrow(/seqStart/);
  });
});
