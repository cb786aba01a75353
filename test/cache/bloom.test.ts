/**
 * The shared bloom filter: the kernel against the plain-TS reference (same bits, same answers),
 * no false negatives, the measured false-positive rate against theory (fixed seed: a statistical
 * check, not a timing one), generations on explicit `now` values, the trust window, option
 * validation, and cross-thread visibility (workers over the engine's memory, built dist/).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SharedBloom, theoreticalRate, type BloomOptions } from '../../engine/cache/bloom.js';
import { RegionConflictError } from '../../engine/errors.js';
import type { Engine } from '../../engine/index.js';
import { KeyHash } from '../../engine/runtime/key-hash.js';
import { NO_METRICS, ThreadRuntime } from '../../engine/runtime/thread.js';
import { createSharedMemory, kernelModule, type KernelExports } from '../../engine/runtime/wasm.js';
import { testEngine } from '../helpers.js';
import { BloomReference, GenerationalReference, mulberry32 } from './bloom-reference.js';
// @ts-expect-error -- a plain .mjs worker fixture, shared with the main thread's side of a test
import { generationRace, sweepRounds } from '../fixtures/bloom-tasks.mjs';

let rt: ThreadRuntime;
let k: KernelExports;
let u32: Uint32Array;
let n = 0;

beforeAll(() => {
  rt = new ThreadRuntime(createSharedMemory(48 << 20), kernelModule(), 'test:bloom', 4096, NO_METRICS, true);
  k = rt.kernels;
  u32 = new Uint32Array(rt.memory.buffer);
});

/**
 * Two zeroed bit arrays `a`, `b` of `bits` (≤ 2^14) bits and a third, `c`, back to back: one of
 * four scratch slots reused round-robin, so property runs do not fill the arena's registry.
 */
let slot = 0;
function arrays(bits: number): { a: number; b: number; c: number } {
  const SLOT = 3 * 2048;
  const at = rt.arena.region('test:bits', 4 * SLOT, 64).offset + (slot++ % 4) * SLOT;
  k.bloomZero(at, (3 * bits) / 8);
  return { a: at, b: at + bits / 8, c: at + bits / 4 };
}

/** The words of the array at `offset`, copied out. */
function words(offset: number, bits: number): Uint32Array {
  return u32.slice(offset >>> 2, (offset >>> 2) + bits / 32);
}

const bloom = (options: BloomOptions): SharedBloom => SharedBloom.open(rt, `test:bloom:${n++}`, options);

/** The words of generation array i of a SharedBloom (layout in engine/cache/bloom.ts). */
function arrayWords(name: string, b: SharedBloom, i: number): Uint32Array {
  return words(rt.arena.find(name)!.offset + 64 + (i * b.bits) / 8, b.bits);
}

const u32Arb = fc.integer({ min: 0, max: 0xffffffff });
const keyArb = fc.tuple(u32Arb, u32Arb);

const popcount = (ws: Uint32Array): number => {
  let set = 0;
  for (const w of ws) for (let x = w; x !== 0; x &= x - 1) set++;
  return set;
};

describe('kernel vs reference', () => {
  it('sets the same bits and gives the same answers (add, has, has2, count), and leaves the other array alone', () => {
    fc.assert(fc.property(
      fc.integer({ min: 9, max: 14 }), fc.integer({ min: 1, max: 40 }),
      fc.array(keyArb, { maxLength: 200 }), fc.array(keyArb, { maxLength: 200 }),
      (log2, hashes, adds, probes) => {
        const bits = 2 ** log2;
        const { a, b, c } = arrays(bits);
        const ra = new BloomReference(bits, hashes);
        const rb = new BloomReference(bits, hashes);
        adds.forEach(([h1, h2], i) => {
          const [at, ref] = i % 3 === 0 ? [b, rb] : [a, ra];
          expect(k.bloomAdd(at, bits - 1, hashes, h1, h2)).toBe(ref.add(h1, h2) ? 1 : 0);
        });
        expect(words(a, bits)).toEqual(ra.words);
        expect(words(b, bits)).toEqual(rb.words);
        expect(popcount(words(c, bits))).toBe(0);
        for (const [h1, h2] of [...adds, ...probes]) {
          expect(k.bloomHas(a, bits - 1, hashes, h1, h2)).toBe(ra.has(h1, h2) ? 1 : 0);
          expect(k.bloomHas2(a, b, bits - 1, hashes, h1, h2)).toBe(ra.has(h1, h2) || rb.has(h1, h2) ? 1 : 0);
        }
        expect(k.bloomCount(a, bits / 8)).toBe(popcount(ra.words));
        k.bloomZero(b, bits / 8);
        expect(popcount(words(b, bits))).toBe(0);
        expect(words(a, bits)).toEqual(ra.words);
      }), { numRuns: 150 });
  });

  it('probes k distinct bits even for h2 = 0 (h2 is forced odd)', () => {
    const r = new BloomReference(1024, 8);
    expect(new Set(r.probes(5, 0)).size).toBe(8);
    expect(new Set(r.probes(0xffffffff, 0xfffffffe)).size).toBe(8);
    const { a } = arrays(1024);
    k.bloomAdd(a, 1023, 8, 5, 0);
    expect(popcount(words(a, 1024))).toBe(8);
  });

  it('has no false negatives, ever', () => {
    fc.assert(fc.property(fc.integer({ min: 9, max: 12 }), fc.integer({ min: 1, max: 16 }), fc.array(keyArb, { minLength: 1, maxLength: 500 }),
      (log2, hashes, keys) => {
        const bits = 2 ** log2;
        const { a, b } = arrays(bits);
        for (const [h1, h2] of keys) k.bloomAdd(a, bits - 1, hashes, h1, h2);
        for (const [h1, h2] of keys) {
          expect(k.bloomHas(a, bits - 1, hashes, h1, h2)).toBe(1);
          expect(k.bloomHas2(a, b, bits - 1, hashes, h1, h2)).toBe(1);
          expect(k.bloomHas2(b, a, bits - 1, hashes, h1, h2)).toBe(1);
        }
      }), { numRuns: 100 });
  });
});

describe('kernel: the trust word', () => {
  it('only rises', () => {
    const w = arrays(512).a;
    expect(k.bloomTrustedFrom(w)).toBe(0);
    k.bloomDistrust(w, 1000.2);
    expect(k.bloomTrustedFrom(w)).toBe(1001); // rounded up: "not before t" stays true
    k.bloomDistrust(w, 10);
    expect(k.bloomTrustedFrom(w)).toBe(1001);
    k.bloomDistrust(w, Number.POSITIVE_INFINITY);
    expect(k.bloomTrustedFrom(w)).toBeGreaterThan(9e18);
  });
});

describe('false-positive rate (seeded keys; statistical, not timing)', () => {
  /** 'user:<n>' keys, 10–24 characters, from a seeded PRNG; the absent set never meets the present one. */
  function keySets(present: number, absent: number): { present: string[]; absent: string[] } {
    const rnd = mulberry32(20_251_123);
    const make = (tag: string, count: number): string[] =>
      Array.from({ length: count }, (_, i) => `${tag}:${Math.floor(rnd() * 1e9)}:${i}`);
    return { present: make('user', present), absent: make('miss', absent) };
  }

  it('one array: 100k keys in 2^20 bits, k = 7; 1M absent keys within 10% of (1 - e^(-kn/m))^k', () => {
    const bits = 2 ** 20;
    const hashes = 7;
    const { present, absent } = keySets(100_000, 1_000_000);
    const a = rt.arena.region('test:bits:fpr', bits / 8, 64).offset;
    const h = new KeyHash();
    for (const key of present) {
      h.set(key);
      k.bloomAdd(a, bits - 1, hashes, h.hi, h.lo);
    }
    let fp = 0;
    for (const key of absent) {
      h.set(key);
      fp += k.bloomHas(a, bits - 1, hashes, h.hi, h.lo);
    }
    const measured = fp / absent.length;
    const theory = theoreticalRate(bits, hashes, present.length);
    expect(theory).toBeCloseTo(0.0065, 3);
    expect(Math.abs(measured - theory) / theory).toBeLessThan(0.1);
  });

  it('SharedBloom at its configured size: keys in two generations, within 10% of theory, and within the rate asked', () => {
    const expectedKeys = 50_000;
    const b = bloom({ expectedKeys, falsePositiveRate: 0.02, horizonMs: 1000 });
    const { present, absent } = keySets(2 * expectedKeys, 1_000_000);
    const h = new KeyHash();
    present.forEach((key, i) => {
      h.set(key);
      b.add(h.hi, h.lo, i < expectedKeys ? 5_000 : 6_000); // half in generation 5, half in 6
    });
    let fp = 0;
    for (const key of absent) {
      h.set(key);
      if (b.mightContain(h.hi, h.lo, 6_100)) fp++;
    }
    const measured = fp / absent.length;
    const theory = b.theoreticalRate(expectedKeys, expectedKeys);
    expect(theory).toBeLessThanOrEqual(0.02);
    expect(Math.abs(measured - theory) / theory).toBeLessThan(0.1);
    expect(b.estimate(6_100).current).toBeGreaterThan(expectedKeys * 0.97);
    expect(b.estimate(6_100).current).toBeLessThan(expectedKeys * 1.03);
  });
});

describe('sizing and options', () => {
  it('defaults: 1M keys per horizon at 1%: 2^24 bits per array, 3 probes, 6 MiB', () => {
    const p = SharedBloom.plan({ horizonMs: 1000 });
    expect(p).toMatchObject({ bits: 2 ** 24, hashes: 3, bytes: 64 + 3 * 2 ** 21 });
    // Two arrays tested per lookup stay within the rate asked.
    expect(1 - (1 - p.arrayFalsePositiveRate) ** 2).toBeLessThanOrEqual(0.01);
  });

  it('every plan meets the rate asked with the smallest power-of-two m and the fewest probes', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 5_000_000 }), fc.double({ min: 1e-6, max: 0.4, noNaN: true }), (keys, rate) => {
      const p = SharedBloom.plan({ expectedKeys: keys, falsePositiveRate: rate, horizonMs: 1 });
      expect(Number.isInteger(Math.log2(p.bits))).toBe(true);
      const pairRate = (kk: number): number => 1 - (1 - theoreticalRate(p.bits, kk, keys)) ** 2;
      // Meets the rate (up to float rounding), and one probe fewer would not (unless it is 1).
      expect(pairRate(p.hashes)).toBeLessThanOrEqual(rate * (1 + 1e-9));
      if (p.hashes > 1) expect(pairRate(p.hashes - 1)).toBeGreaterThan(rate);
      // m is the smallest power of two (≥ 512) where some k ≤ 32 meets one array's share of the rate.
      const p1 = 1 - Math.sqrt(1 - rate);
      if (p.bits > 512) {
        for (let kk = 1; kk <= 32; kk++) expect(theoreticalRate(p.bits / 2, kk, keys)).toBeGreaterThan(p1 * (1 - 1e-9));
      }
    }), { numRuns: 1000 });
  });

  it('refuses bad options, naming them', () => {
    expect(() => SharedBloom.plan(undefined as unknown as BloomOptions)).toThrow(TypeError);
    expect(() => bloom({ horizonMs: 0 })).toThrow(/options\.bloom\.horizonMs/);
    expect(() => bloom({ horizonMs: Number.NaN })).toThrow(RangeError);
    expect(() => bloom({ horizonMs: '1s' as unknown as number })).toThrow(/options\.bloom\.horizonMs/);
    expect(() => bloom({ horizonMs: 1, expectedKeys: 0 })).toThrow(/options\.bloom\.expectedKeys/);
    expect(() => bloom({ horizonMs: 1, expectedKeys: 1.5 })).toThrow(RangeError);
    expect(() => bloom({ horizonMs: 1, falsePositiveRate: 0 })).toThrow(/options\.bloom\.falsePositiveRate/);
    expect(() => bloom({ horizonMs: 1, falsePositiveRate: 0.5 })).toThrow(/options\.bloom\.falsePositiveRate/);
    expect(() => bloom({ horizonMs: 1, expectedKeys: 2 ** 31, falsePositiveRate: 1e-9 })).toThrow(/at most 2\^32/);
  });

  it('opening a name again shares the filter; other options are a RegionConflictError', () => {
    const o = { expectedKeys: 1000, horizonMs: 1000 };
    const a = SharedBloom.open(rt, 'test:bloom:shared', o);
    const b = SharedBloom.open(rt, 'test:bloom:shared', o);
    a.add(1, 2, 10);
    expect(b.mightContain(1, 2, 10)).toBe(true);
    expect(() => SharedBloom.open(rt, 'test:bloom:shared', { ...o, horizonMs: 2000 })).toThrow(RegionConflictError);
    expect(() => SharedBloom.open(rt, 'test:bloom:shared', { ...o, falsePositiveRate: 0.1 })).toThrow(RegionConflictError);
    expect(() => SharedBloom.open(rt, 'test:bloom:shared', { ...o, expectedKeys: 100_000 })).toThrow(RegionConflictError);
  });
});

describe('generations (explicit now)', () => {
  const H = 1000;

  it('matches the generational reference, bit for bit, on random timelines', () => {
    const opArb = fc.oneof(
      fc.record({ op: fc.constant('add' as const), key: keyArb, dt: fc.integer({ min: 0, max: 700 }) }),
      fc.record({ op: fc.constant('has' as const), key: keyArb, dt: fc.integer({ min: 0, max: 700 }) }),
      fc.record({ op: fc.constant('gap' as const), key: keyArb, dt: fc.integer({ min: 0, max: 6000 }) }),
      fc.record({ op: fc.constant('clear' as const), key: keyArb, dt: fc.integer({ min: 0, max: 100 }) }),
    );
    fc.assert(fc.property(fc.integer({ min: 0, max: 10_000_000 }), fc.array(opArb, { maxLength: 120 }), (t0, ops) => {
      const name = `test:bloom:${n++}`;
      const b = SharedBloom.open(rt, name, { expectedKeys: 20, falsePositiveRate: 0.05, horizonMs: H });
      const ref = new GenerationalReference(b.bits, b.hashes, H);
      const added: Array<[number, number]> = [];
      let now = t0;
      for (const { op, key: [h1, h2], dt } of ops) {
        now += dt;
        if (op === 'add') {
          b.add(h1, h2, now);
          ref.add(h1, h2, now);
          added.push([h1, h2]);
        } else if (op === 'clear') {
          b.clear(now);
          ref.clear(now);
        } else {
          for (const [a1, a2] of [[h1, h2], ...added.slice(-5)] as Array<[number, number]>) {
            expect(b.mightContain(a1, a2, now)).toBe(ref.mightContain(a1, a2, now));
          }
        }
      }
      for (let i = 0; i < 3; i++) expect(arrayWords(name, b, i)).toEqual(ref.arrays[i]!.words);
      expect(b.stats().arraysCleared).toBe(ref.cleared);
    }), { numRuns: 150 });
  });

  it('a key added at t is found at every moment until t + horizon, and gone by t + 2 × horizon', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 1e9 }), fc.array(keyArb, { minLength: 1, maxLength: 20 }), (t, keys) => {
      const b = bloom({ expectedKeys: 10_000, falsePositiveRate: 0.001, horizonMs: H }); // roomy: no false positives expected
      for (const [h1, h2] of keys) b.add(h1, h2, t);
      for (let now = t; now <= t + H; now += 50) {
        for (const [h1, h2] of keys) expect(b.mightContain(h1, h2, now)).toBe(true);
      }
      for (const [h1, h2] of keys) expect(b.mightContain(h1, h2, t + 2 * H)).toBe(false);
    }), { numRuns: 50 });
  });

  it('zeroes the next generation from the middle of the current one, and both stale ones after an idle gap', () => {
    const name = `test:bloom:${n++}`;
    const b = SharedBloom.open(rt, name, { expectedKeys: 1000, horizonMs: H });
    const filled = (i: number): boolean => arrayWords(name, b, i).some((w) => w !== 0);
    b.add(1, 1, 3 * H); // generation 3 → array 0
    b.add(2, 2, 4 * H); // generation 4 → array 1
    expect([filled(0), filled(1), filled(2)]).toEqual([true, true, false]);
    b.add(3, 3, 5 * H); // generation 5 → array 2 (prepared while entering 5)
    expect([filled(0), filled(1), filled(2)]).toEqual([true, true, true]);
    expect(b.mightContain(1, 1, 5 * H + H / 2 - 1)).toBe(false); // generation 3 is no longer read
    expect(filled(0)).toBe(true); // … but array 0 (generation 6's) is zeroed only from mid-5 on
    const before = b.stats().arraysCleared;
    b.mightContain(9, 9, 5 * H + H / 2);
    expect(filled(0)).toBe(false);
    expect(b.stats().arraysCleared).toBe(before + 1);
    expect(b.mightContain(2, 2, 5 * H + H / 2)).toBe(true);
    // Idle for several horizons: the arrays of the new generation and of the one before are zeroed.
    expect(b.mightContain(3, 3, 20 * H)).toBe(false);
    expect(filled(20 % 3)).toBe(false);
    expect(filled(19 % 3)).toBe(false);
  });

  it('a thread whose clock lags by less than half a horizon still finds the keys it should', () => {
    const name = `test:bloom:${n++}`;
    const ahead = SharedBloom.open(rt, name, { expectedKeys: 1000, horizonMs: H });
    const behind = SharedBloom.open(rt, name, { expectedKeys: 1000, horizonMs: H });
    ahead.add(7, 7, 2 * H + 900); // generation 2, found until the end of generation 3
    behind.mightContain(0, 0, 3 * H + 950); // "behind" has lived in generation 3
    ahead.mightContain(0, 0, 4 * H + H / 2 - 1); // "ahead" entered 4 and is almost mid-4
    // "behind" is 450 ms late, still in generation 3: array 2 % 3 was not zeroed under it.
    expect(behind.mightContain(7, 7, 3 * H + 999)).toBe(true);
  });

  it('refuses a `now` that is not a finite number (nothing is written anywhere)', () => {
    const b = bloom({ expectedKeys: 1000, horizonMs: H });
    expect(() => b.add(1, 1, Number.NaN)).toThrow(TypeError);
    expect(() => b.mightContain(1, 1, Number.POSITIVE_INFINITY)).toThrow(/finite/);
    b.add(1, 1, 5);
    expect(() => b.add(1, 1, Number.NaN)).toThrow(TypeError);
    expect(b.stats().adds).toBe(1);
  });

  it('clear() forgets every generation', () => {
    const b = bloom({ expectedKeys: 1000, horizonMs: H });
    b.add(1, 1, 0);
    b.add(2, 2, H);
    b.clear(H + 1);
    expect(b.mightContain(1, 1, H + 1)).toBe(false);
    expect(b.mightContain(2, 2, H + 1)).toBe(false);
    b.add(3, 3, H + 2);
    expect(b.mightContain(3, 3, H + 2)).toBe(true);
  });

  it('counts this thread\'s calls', () => {
    const b = bloom({ expectedKeys: 1000, horizonMs: H });
    b.add(1, 1, 0);
    b.add(1, 1, 0);
    b.mightContain(1, 1, 1);
    b.mightContain(0x1234, 0x5678, 1);
    expect(b.stats()).toMatchObject({ adds: 2, freshAdds: 1, checks: 2, positives: 1, generation: 0, trustedFrom: 0 });
  });
});

describe('trust window', () => {
  it('distrustUntil raises the shared "trusted from" time, never lowers it', () => {
    const name = `test:bloom:${n++}`;
    const a = SharedBloom.open(rt, name, { horizonMs: 1000, expectedKeys: 1000 });
    const b = SharedBloom.open(rt, name, { horizonMs: 1000, expectedKeys: 1000 });
    expect(a.trusted(0)).toBe(true);
    a.distrustUntil(5000);
    expect(b.trusted(4999)).toBe(false);
    expect(b.trusted(5000)).toBe(true);
    b.distrustUntil(3000);
    expect(a.trusted(4999)).toBe(false);
    a.distrustUntil(Number.NEGATIVE_INFINITY);
    expect(a.stats().trustedFrom).toBe(5000);
    a.distrustUntil(Number.POSITIVE_INFINITY);
    expect(b.trusted(1e15)).toBe(false);
    expect(() => a.distrustUntil(Number.NaN)).toThrow(TypeError);
  });
});

describe('across threads', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ workers: 2 });
    const url = new URL('../fixtures/bloom-tasks.mjs', import.meta.url);
    for (const t of ['bloomAdd', 'bloomSweep', 'bloomCount', 'bloomTrusted', 'bloomGenerations']) engine.runtime.pool.register(t, url, t);
  });
  afterAll(() => engine.close());

  const options = { expectedKeys: 100_000, falsePositiveRate: 0.01, horizonMs: 60_000 };
  const now = 1_800_000_000_000;

  it('a worker adds, the main thread sees it; the main thread distrusts, a worker sees it', async () => {
    const name = 'test:bloom:xt-visible';
    const mine = SharedBloom.open(engine.runtime.thread, name, options);
    expect(await engine.run('bloomAdd', { name, options, prefix: 'w:', count: 1000, now })).toBe(1000);
    const h = new KeyHash();
    for (let i = 0; i < 1000; i++) {
      h.set(`w:${i}`);
      expect(mine.mightContain(h.hi, h.lo, now + 1)).toBe(true);
    }
    mine.distrustUntil(now + 10);
    expect(await engine.run('bloomTrusted', { name, options, now: now + 9 })).toBe(false);
    expect(await engine.run('bloomTrusted', { name, options, now: now + 10 })).toBe(true);
  });

  /** Starts `tasks` on the workers, waits until both are at the gate, opens it, runs `mine` here. */
  async function together(gateName: string, tasks: (gate: number) => Array<Promise<unknown>>, mine: () => void): Promise<unknown[]> {
    const gate = engine.runtime.region(gateName, 8).offset;
    const i32 = engine.runtime.thread.i32;
    const running = tasks(gate);
    while (Atomics.load(i32, gate >>> 2) < running.length) await new Promise((r) => setImmediate(r));
    Atomics.store(i32, (gate >>> 2) + 1, 1);
    Atomics.notify(i32, (gate >>> 2) + 1);
    mine();
    return Promise.all(running);
  }

  it('string keys added at once by 2 workers and the main thread: every key found, every bit the reference sets is set', async () => {
    const name = 'test:bloom:xt-concurrent';
    const o = { expectedKeys: 600_000, falsePositiveRate: 0.01, horizonMs: 60_000 };
    const mine = SharedBloom.open(engine.runtime.thread, name, o);
    const count = 200_000;
    const h = new KeyHash();
    await together('test:bloom:gate1', (gate) => ['a:', 'b:'].map((prefix) => engine.run('bloomAdd', { name, options: o, prefix, count, now, gate })), () => {
      for (let i = 0; i < count; i++) {
        h.set(`m:${i}`);
        mine.add(h.hi, h.lo, now);
      }
    });
    const counts = await Promise.all(['a:', 'b:', 'm:'].map((prefix) => engine.run('bloomCount', { name, options: o, prefix, count, now })));
    expect(counts).toEqual([count, count, count]);
    const ref = new BloomReference(mine.bits, mine.hashes);
    for (const prefix of ['a:', 'b:', 'm:']) {
      for (let i = 0; i < count; i++) {
        h.set(prefix + i);
        ref.add(h.hi, h.lo);
      }
    }
    const g = Math.floor(now / o.horizonMs) % 3;
    const at = engine.runtime.thread.arena.find(name)!.offset + 64 + (g * mine.bits) / 8;
    const fill = ref.words.reduce((n, w) => n + popcount(Uint32Array.of(w)), 0) / mine.bits;
    expect(fill).toBeLessThan(0.5); // not saturated: a lost bit would show
    expect(new Uint32Array(engine.runtime.memory.buffer, at, mine.bits / 32)).toEqual(ref.words);
  });

  it('3 threads OR interleaved bits into the same words at once: no bit is lost', async () => {
    const name = 'test:bloom:xt-same-words';
    const o = { expectedKeys: 2 ** 20, falsePositiveRate: 0.4, horizonMs: 1000 }; // m = 2^22, k = 1: bit = hi
    const mine = SharedBloom.open(engine.runtime.thread, name, o);
    expect([mine.bits, mine.hashes]).toEqual([2 ** 22, 1]);
    const base = engine.runtime.thread.arena.find(name)!.offset + 64;
    const arrayWords = (g: number): Uint32Array => new Uint32Array(engine.runtime.memory.buffer, base + ((g % 3) * mine.bits) / 8, mine.bits / 32);
    const barrier = engine.runtime.region('test:bloom:barrier2', 8).offset;
    // Party p sets bits p, p + 3, p + 6, … (each in an order of its own): every word gets bits from all three.
    const sweep = { name, options: o, barrier, parties: 3, step: 3, limit: mine.bits, rounds: 4, horizonMs: o.horizonMs };
    const workers = [1, 2].map((id) => engine.run('bloomSweep', { ...sweep, id, from: id }));
    const i32 = engine.runtime.thread.i32;
    while (Atomics.load(i32, barrier >>> 2) < 2) await new Promise((r) => setImmediate(r));
    const lost = sweepRounds(mine, i32, { ...sweep, id: 0, from: 0, arrayWords }) as number;
    expect(await Promise.all(workers)).toEqual([0, 0]);
    expect(lost).toBe(0);
  });

  it('threads racing into each new generation never add before it is zeroed', async () => {
    const name = 'test:bloom:xt-generations';
    // 2 MiB arrays: zeroing one takes long enough (~100 µs) for the others to run into it.
    const big = { expectedKeys: 1_000_000, falsePositiveRate: 0.01, horizonMs: 1000 };
    const mine = SharedBloom.open(engine.runtime.thread, name, big);
    const barrier = engine.runtime.region('test:bloom:barrier', 8).offset;
    const race = { name, options: big, barrier, parties: 3, rounds: 200, perRound: 200, horizonMs: big.horizonMs };
    const workers = [1, 2].map((id) => engine.run('bloomGenerations', { ...race, id }));
    // Let both workers reach the first barrier before the main thread blocks in it.
    const i32 = engine.runtime.thread.i32;
    while (Atomics.load(i32, barrier >>> 2) < 2) await new Promise((r) => setImmediate(r));
    const lostHere = generationRace(mine, new KeyHash(), i32, { ...race, id: 0 }) as number;
    const lost = [lostHere, ...((await Promise.all(workers)) as number[])];
    expect(lost).toEqual([0, 0, 0]);
    expect(mine.stats().arraysCleared).toBe(200 + 1); // one per generation (+1: the first one, after "none")
  });
});
