import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../engine/index.js';
import { GcraTable, gcraTimeBase } from '../../engine/limiter/gcra-table.js';
import { testEngine } from '../helpers.js';
import { GcraReference } from './gcra-reference.js';

let engine: Engine;
beforeAll(async () => {
  engine = await testEngine();
});
afterAll(() => engine.close());

let n = 0;
const table = (params: { limit: number; windowMs: number; burst: number }, capacity = 4096): GcraTable =>
  new GcraTable(engine.runtime.thread, `test-${n++}`, params, { epochMs: 1_000_000, capacity });

describe('GCRA table semantics', () => {
  it('a new key starts full: burst tokens at once, then none', () => {
    const t = table({ limit: 10, windowMs: 1000, burst: 5 });
    const now = 2_000_000;
    const got = Array.from({ length: 7 }, () => t.take('k', 1, now));
    expect(got.map((d) => d.allowed)).toEqual([true, true, true, true, true, false, false]);
    expect(got.map((d) => d.remaining)).toEqual([4, 3, 2, 1, 0, 0, 0]);
    expect(got[5]!.retryAfterMs).toBe(100); // one token every 100 ms
    expect(got[4]!.resetMs).toBe(500); // five tokens to refill
  });

  it('returns one token every window/limit ms exactly, with no drift over many periods', () => {
    const t = table({ limit: 3, windowMs: 1000, burst: 2 }); // a token every 333.33… ms
    const t0 = 5_000_000;
    expect(t.take('k', 2, t0).allowed).toBe(true); // empty the bucket
    // Taking each token as soon as it is due keeps the bucket below full, so nothing is lost to
    // rounding: over 3000 periods the k-th token is due at t0 + ceil(k * 1000 / 3) ms, exactly.
    for (let k = 1; k <= 3000; k++) {
      const due = t0 + Math.ceil((k * 1000) / 3);
      expect(t.take('k', 1, due - 1).allowed).toBe(false);
      expect(t.take('k', 1, due).allowed).toBe(true);
    }
  });

  it('costs above one, peek without taking, reset to full', () => {
    const t = table({ limit: 100, windowMs: 1000, burst: 100 });
    const now = 3_000_000;
    expect(t.take('k', 60, now)).toMatchObject({ allowed: true, remaining: 40 });
    expect(t.peek('k', 50, now)).toMatchObject({ allowed: false, remaining: 40, retryAfterMs: 100 });
    expect(t.take('k', 40, now)).toMatchObject({ allowed: true, remaining: 0 });
    t.reset('k', now);
    expect(t.take('k', 100, now)).toMatchObject({ allowed: true, remaining: 0 });
    expect(t.take('k', 101, now + 10_000).allowed).toBe(false); // more than the burst: never
  });

  it('keys are independent', () => {
    const t = table({ limit: 1, windowMs: 1000, burst: 1 });
    const now = 4_000_000;
    for (let i = 0; i < 500; i++) expect(t.take(`user:${i}`, 1, now).allowed).toBe(true);
    for (let i = 0; i < 500; i++) expect(t.take(`user:${i}`, 1, now).allowed).toBe(false);
  });

  it('refuses parameters that do not fit 64-bit integer time, naming the option', () => {
    expect(() => gcraTimeBase({ limit: 999_999_937, windowMs: 1, burst: 1 })).toThrow(/options\.limit/);
    expect(() => gcraTimeBase({ limit: 0, windowMs: 1000, burst: 1 })).toThrow(/options\.limit/);
    expect(() => gcraTimeBase({ limit: 10, windowMs: 1.5, burst: 1 })).toThrow(/options\.window/);
    expect(() => gcraTimeBase({ limit: 10, windowMs: 1000, burst: Number.NaN })).toThrow(/options\.burst/);
    expect(gcraTimeBase({ limit: 1e9, windowMs: 1000, burst: 1e9 }).scale).toBe(1e6); // limits up to 1e9 per second
  });
});

describe('WASM kernel vs the TypeScript reference', () => {
  it('agrees on every decision over random operations (property)', () => {
    const op = fc.record({
      key: fc.constantFrom('a', 'b', 'c', 'user:42', 'é'),
      cost: fc.integer({ min: 1, max: 12 }),
      dt: fc.integer({ min: 0, max: 400 }),
      kind: fc.constantFrom('take', 'take', 'take', 'peek', 'reset'),
    });
    const params = fc.record({
      limit: fc.integer({ min: 1, max: 50 }),
      windowMs: fc.constantFrom(1, 7, 100, 1000, 60_000),
      burst: fc.integer({ min: 1, max: 20 }),
    });
    fc.assert(
      fc.property(params, fc.array(op, { maxLength: 120 }), (p, ops) => {
        const t = table(p, 64);
        const ref = new GcraReference(p, 1_000_000);
        let now = 1_000_000 + 17;
        for (const o of ops) {
          now += o.dt;
          if (o.kind === 'reset') {
            t.reset(o.key, now);
            ref.reset(o.key);
            continue;
          }
          const got = o.kind === 'take' ? t.take(o.key, o.cost, now) : t.peek(o.key, o.cost, now);
          expect(got).toEqual(ref.take(o.key, o.cost, now, o.kind === 'peek'));
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('one exact limit across threads', () => {
  it('main thread + two workers hammering one key at the same moment admit exactly the burst', async () => {
    // Large enough that each thread's run spans several scheduler slices, so all three really
    // contend (with 200 000 a fast thread could finish inside one slice).
    const burst = 1_000_000;
    const params = { limit: burst, windowMs: 3_600_000, burst };
    const name = 'test-shared-exact';
    const epochMs = 1_000_000;
    const now = 2_000_000; // one instant for every thread: no refill, so the total is exact
    const mine = new GcraTable(engine.runtime.thread, name, params, { epochMs, capacity: 1024 });
    const gate = engine.runtime.region('test:gcra-gate', 8).offset;
    const i32 = engine.runtime.thread.i32;
    const workers = Array.from({ length: 2 }, () =>
      engine.run('gcraHammer', { name, params, epochMs, key: 'hot', attempts: burst, now, gate }));
    while (Atomics.load(i32, gate >>> 2) < 2) await new Promise((r) => setImmediate(r));
    Atomics.store(i32, (gate >>> 2) + 1, 1); // go: three threads contend for the same word
    let admitted = 0;
    for (let i = 0; i < burst; i++) if (mine.take('hot', 1, now).allowed) admitted++;
    const theirs = (await Promise.all(workers)) as number[];
    expect(theirs.every((n) => n > 0)).toBe(true); // every thread won some: they really raced
    expect(admitted + theirs.reduce((a, b) => a + b, 0)).toBe(burst);
  });
});

describe('a full table', () => {
  it('reclaims slots whose buckets are full again, and never crashes when none is', () => {
    const t = table({ limit: 10, windowMs: 1000, burst: 1 }, 4);
    let now = 9_000_000;
    // Fill far more keys than slots: once their buckets refill, their slots are reused.
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 12; i++) t.take(`r${round}:k${i}`, 1, now);
      now += 1000;
    }
    // A fresh key still gets a correct decision.
    expect(t.take('fresh', 1, now).allowed).toBe(true);
    expect(t.take('fresh', 1, now).allowed).toBe(false);
  });
});
