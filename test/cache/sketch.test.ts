import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrequencySketch, READ_BUFFER, sketchShape, SKETCH_DEFAULTS } from '../../engine/cache/sketch.js';
import { kernelModule } from '../../engine/runtime/wasm.js';
import { SketchReference } from './sketch-reference.js';

const module = kernelModule();

/** A kernel sketch and the reference with the same geometry. */
function pair(capacity: number, tuning: { wordsPerEntry: number; samplePeriodFactor: number; doorkeeperBitsPerEntry: number; conservative: boolean }): { k: FrequencySketch; r: SketchReference } {
  const k = new FrequencySketch(module, capacity, tuning);
  const shape = sketchShape(capacity, tuning);
  const r = new SketchReference({ blocksLog2: shape.blocksLog2, samplePeriod: shape.samplePeriod, dkLog2: shape.dkLog2, conservative: tuning.conservative });
  return { k, r };
}

function expectSameState(k: FrequencySketch, r: SketchReference): void {
  const snap = k.snapshot();
  const ref = r.packed();
  expect(snap.additions).toBe(r.additions);
  expect(k.resets).toBe(r.resets);
  // Compare as arrays of strings: a diff then names the first differing word.
  expect(Array.from(snap.table, (w) => w.toString(16))).toEqual(Array.from(ref.table, (w) => w.toString(16)));
  expect(Array.from(snap.doorkeeper)).toEqual(Array.from(ref.doorkeeper));
}

describe('FrequencySketch (wasm/sketch.ts) vs the plain-TS reference', () => {
  const tuning = fc.record({
    wordsPerEntry: fc.constantFrom(0.5, 1, 2, 4),
    samplePeriodFactor: fc.constantFrom(0.5, 1, 3, 10),
    doorkeeperBitsPerEntry: fc.constantFrom(0, 4, 16),
    conservative: fc.boolean(),
  });
  // Few distinct hashes (collisions, saturation, resets) or any 32-bit values (unsigned too).
  const hash = fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }));
  const op = fc.oneof(
    { weight: 8, arbitrary: fc.record({ kind: fc.constant('inc' as const), hash }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('freq' as const), hash }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('cmp' as const), hash, other: hash }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'reset' as const }) },
  );

  it('agrees on every estimate and on the whole state over random operation sequences (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), tuning, fc.array(op, { maxLength: 1500 }), (capacity, t, ops) => {
        const { k, r } = pair(capacity, t);
        for (const o of ops) {
          if (o.kind === 'inc') {
            k.increment(o.hash);
            r.increment(o.hash);
          } else if (o.kind === 'freq') {
            expect(k.frequency(o.hash)).toBe(r.frequency(o.hash));
          } else if (o.kind === 'cmp') {
            expect(k.compare(o.hash, o.other)).toBe((r.frequency(o.hash) << 8) | r.frequency(o.other));
          } else {
            k.reset();
            r.reset();
          }
        }
        expectSameState(k, r);
      }),
      { numRuns: 150 },
    );
  });

  it('a long run with periodic resets stays bit-exact (default tuning, and with a doorkeeper)', () => {
    for (const t of [SKETCH_DEFAULTS, { ...SKETCH_DEFAULTS, doorkeeperBitsPerEntry: 8, conservative: false }]) {
      const { k, r } = pair(64, t);
      let x = 12345;
      for (let i = 0; i < 60_000; i++) {
        x = (Math.imul(x, 1103515245) + 12345) | 0;
        const h = (x >>> 16) % 700; // a skewed-enough mix of repeats
        k.increment(h);
        r.increment(h);
      }
      expect(r.resets).toBeGreaterThan(3);
      expectSameState(k, r);
    }
  });
});

describe('FrequencySketch behaviour', () => {
  it('counts up to 15 and saturates; the doorkeeper adds the first occurrence', () => {
    const plain = new FrequencySketch(module, 1000, { doorkeeperBitsPerEntry: 0, conservative: false });
    const dk = new FrequencySketch(module, 1000, { doorkeeperBitsPerEntry: 16, conservative: false });
    expect(plain.frequency(42)).toBe(0);
    plain.increment(42);
    dk.increment(42);
    expect(plain.frequency(42)).toBe(1);
    expect(dk.frequency(42)).toBe(1); // the doorkeeper bit only
    for (let i = 0; i < 40; i++) {
      plain.increment(42);
      dk.increment(42);
    }
    expect(plain.frequency(42)).toBe(15);
    expect(dk.frequency(42)).toBe(16);
  });

  it('reset halves every counter and clears the doorkeeper', () => {
    const s = new FrequencySketch(module, 1000, { doorkeeperBitsPerEntry: 16, conservative: false });
    for (let i = 0; i < 11; i++) s.increment(7); // doorkeeper + 10
    expect(s.frequency(7)).toBe(11);
    s.reset();
    expect(s.frequency(7)).toBe(5);
    expect(s.resets).toBe(1);
  });

  it('ages by itself after samplePeriod additions', () => {
    const s = new FrequencySketch(module, 16, { samplePeriodFactor: 10, doorkeeperBitsPerEntry: 0, conservative: false });
    expect(s.shape.samplePeriod).toBe(160);
    for (let i = 0; i < 159; i++) s.increment(i);
    expect(s.resets).toBe(0);
    s.increment(1000);
    expect(s.resets).toBe(1);
  });

  it('buffered increments are applied before an estimate (more than a buffer of them, in order)', () => {
    const s = new FrequencySketch(module, 10_000, { conservative: false });
    for (let i = 0; i < READ_BUFFER * 3 + 5; i++) s.increment(i % 3);
    expect(s.frequency(0)).toBe(15);
    expect(s.frequency(99)).toBe(0);
  });

  it('estimates never undercount (count-min) and rarely overcount much at its design load', () => {
    const capacity = 2000;
    const s = new FrequencySketch(module, capacity, { samplePeriodFactor: 1000 }); // no reset in this test
    const truth = new Map<number, number>();
    let x = 99;
    for (let i = 0; i < capacity * 4; i++) {
      x = (Math.imul(x, 1664525) + 1013904223) | 0;
      const h = (x >>> 8) % (capacity * 2);
      truth.set(h, (truth.get(h) ?? 0) + 1);
      s.increment(h);
    }
    let over = 0;
    for (const [h, n] of truth) {
      const f = s.frequency(h);
      expect(f).toBeGreaterThanOrEqual(Math.min(n, 15));
      if (f > Math.min(n, 15) + 1) over++;
    }
    expect(over / truth.size).toBeLessThan(0.05);
  });

  it('sizes its memory from the capacity and clamps huge ones', () => {
    expect(sketchShape(10_000, SKETCH_DEFAULTS).blocksLog2).toBe(12); // 20k words → 4096 blocks of 8
    expect(sketchShape(1e9, SKETCH_DEFAULTS).blocksLog2).toBe(18); // at most 16 MiB of table
    expect(sketchShape(1, SKETCH_DEFAULTS).blocksLog2).toBe(0);
  });
});
