/**
 * One behavioural suite run over every algorithm (as uber-go/ratelimit's runTest does), on a
 * fake clock: the engine's `clock` option is the only time source the limiter reads.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, HotpathError, type Algorithm, type Engine } from '../../engine/index.js';

let engine: Engine;
let now = 1_700_000_000_000;
beforeAll(async () => {
  engine = await createEngine({ workers: 1, memory: 16 << 20, channel: { ringBytes: 64 * 1024 }, clock: { now: () => now } });
});
afterAll(() => engine.close());

let n = 0;
const ALL: Algorithm[] = ['token-bucket', 'gcra', 'fixed-window', 'sliding-window', 'adaptive'];

describe.each(ALL)('%s', (algorithm) => {
  const make = (limit: number, window: number) => engine.limiter(`${algorithm}-${n++}`, { algorithm, limit, window, maxKeys: 1024 });

  it('a new key starts full: limit requests at once, then denials with a positive retryAfterMs', () => {
    const l = make(10, 1000);
    const got = Array.from({ length: 12 }, () => l.allowSync('k'));
    expect(got.filter((d) => d.allowed)).toHaveLength(10);
    expect(got.map((d) => d.allowed)).toEqual([...Array(10).fill(true), false, false]);
    expect(got[0]).toMatchObject({ limit: 10, remaining: 9, retryAfterMs: 0 });
    expect(got[9]!.remaining).toBe(0);
    expect(got[10]!.retryAfterMs).toBeGreaterThan(0);
    expect(got[10]!.resetMs).toBeGreaterThan(0);
  });

  it('after retryAfterMs a request of that cost is allowed, and not 1 ms before', () => {
    const l = make(10, 1000);
    for (let i = 0; i < 10; i++) l.allowSync('k');
    const denied = l.allowSync('k');
    expect(denied.allowed).toBe(false);
    now += denied.retryAfterMs - 1;
    expect(l.peek('k').allowed).toBe(false);
    now += 1;
    expect(l.allowSync('k').allowed).toBe(true);
  });

  it('after resetMs the key is back to its full allowance', () => {
    const l = make(10, 1000);
    let last = l.allowSync('k', 4);
    for (let i = 0; i < 6; i++) last = l.allowSync('k');
    now += last.resetMs;
    expect(l.peek('k', 10)).toMatchObject({ allowed: true, remaining: 10 });
  });

  it('never admits more than the limit in any window-long span, over a long run', () => {
    const l = make(20, 1000);
    const admitted: number[] = [];
    for (let step = 0; step < 4000; step++) {
      now += 3; // 333 attempts per second against 20 allowed
      if (l.allowSync('k').allowed) admitted.push(now);
    }
    // Bounds per algorithm over any window-long span: a token bucket admits its burst plus what
    // refills meanwhile; a fixed window up to 2 × limit across a boundary (its documented burst).
    const bound = { 'token-bucket': 40, gcra: 40, 'fixed-window': 40, 'sliding-window': 20, adaptive: 20 }[algorithm];
    let most = 0;
    for (let i = 0, j = 0; i < admitted.length; i++) {
      while (admitted[i]! - admitted[j]! >= 1000) j++;
      most = Math.max(most, i - j + 1);
    }
    expect(most).toBeLessThanOrEqual(bound);
    // …and keeps admitting at about the rate (12 s of attempts)
    expect(admitted.length).toBeGreaterThanOrEqual(algorithm === 'sliding-window' || algorithm === 'adaptive' ? 200 : 230);
    expect(admitted.length).toBeLessThanOrEqual(algorithm === 'fixed-window' ? 260 : 260);
  });

  it('cost takes several at once; peek takes nothing; reset refills', async () => {
    const l = make(10, 1000);
    expect(l.allowSync('k', 6)).toMatchObject({ allowed: true, remaining: 4 });
    expect(l.peek('k', 5)).toMatchObject({ allowed: false, remaining: 4 });
    expect(l.peek('k', 4)).toMatchObject({ allowed: true, remaining: 4 });
    expect(l.allowSync('k', 4)).toMatchObject({ allowed: true, remaining: 0 });
    await l.reset('k');
    expect(l.allowSync('k', 10).allowed).toBe(true);
  });

  it('keys are independent', () => {
    const l = make(1, 1000);
    for (let i = 0; i < 300; i++) expect(l.allowSync(`user:${i}`).allowed).toBe(true);
    for (let i = 0; i < 300; i++) expect(l.allowSync(`user:${i}`).allowed).toBe(false);
  });

  it('allow() without Redis decides locally, like allowSync', async () => {
    const l = make(2, 1000);
    expect((await l.allow('k')).allowed).toBe(true);
    expect(l.allowSync('k').allowed).toBe(true);
    expect((await l.allow('k')).allowed).toBe(false);
    expect(l.distributed).toBe(false);
  });

  it('bad input: typed errors naming the problem, nothing admitted', () => {
    const l = make(5, 1000);
    expect(() => l.allowSync(42 as unknown as string)).toThrow(TypeError);
    expect(() => l.allowSync(undefined as unknown as string)).toThrow(/key must be a string/);
    for (const cost of [0, -1, 1.5, Number.NaN, Infinity, '1' as unknown as number]) {
      expect(() => l.allowSync('k', cost)).toThrow(RangeError);
      expect(() => l.allow('k', cost)).toThrow(/cost must be an integer/); // synchronously
    }
    const max = algorithm === 'adaptive' ? 50 : 5;
    expect(() => l.allowSync('k', max + 1)).toThrow(/between 1 and/);
    expect(l.peek('k', 5)).toMatchObject({ allowed: true, remaining: 5 });
  });
});

describe('options', () => {
  it('are validated at the boundary, naming the option', () => {
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ limit: -1 }, /options\.limit/],
      [{ limit: Number.NaN }, /options\.limit/],
      [{ limit: 1e10 }, /options\.limit/],
      [{ window: 0 }, /options\.window/],
      [{ algorithm: 'fixed-window', window: 50 }, /options\.window/],
      [{ burst: 0 }, /options\.burst/],
      [{ algorithm: 'sliding-window', burst: 5 }, /burst applies to token-bucket and gcra/],
      [{ algorithm: 'leaky' }, /options\.algorithm/],
      [{ maxKeys: 0 }, /options\.maxKeys/],
      [{ insurance: 'maybe' }, /options\.insurance/],
      [{ adaptive: {} }, /adaptive applies to algorithm 'adaptive'/],
      [{ algorithm: 'adaptive', adaptive: { backoff: 1 } }, /adaptive\.backoff/],
      [{ algorithm: 'adaptive', adaptive: { min: 0 } }, /adaptive\.min/],
      [{ limt: 5 }, /options\.limt is not an option/],
      [{ timeoutMs: -5 }, /options\.timeoutMs/],
      [{ distributed: 'yes' }, /options\.distributed/],
    ];
    for (const [options, message] of bad) expect(() => engine.limiter(`bad-${n++}`, options as never)).toThrow(message);
    expect(() => engine.limiter('', {})).toThrow(/limiter name/);
    // Braces would let two limiters share Redis keys: "a" with key "x}:{y" and "a:{x}" with key "y".
    expect(() => engine.limiter('a:{x}', {})).toThrow(/must not contain "\{" or "\}"/);
    expect(() => engine.limiter('api}', {})).toThrow(TypeError);
    // A lone surrogate: Redis and the arena keep names as UTF-8, where 'n\ud800' is 'n\ufffd' (review46).
    expect(() => engine.limiter('n\ud800', {})).toThrow(/well-formed/);
  });

  it('one name, one shape: reopening with other options is a typed conflict; without options it finds the limiter', () => {
    const a = engine.limiter('shape', { limit: 5 });
    expect(engine.limiter('shape')).toBe(a);
    expect(engine.limiter('shape', { limit: 5 })).toBe(a);
    try {
      engine.limiter('shape', { limit: 6 });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(HotpathError);
      expect((err as HotpathError).code).toBe('ERR_HOTPATH_REGION_CONFLICT');
      expect((err as Error).message).toMatch(/already exists with other options/);
    }
    expect(() => engine.limiter('never-made')).toThrow(/does not exist yet/);
  });

  it('token-bucket: burst above the rate admits a burst, then one token per window/limit ms', () => {
    const l = engine.limiter(`burst-${n++}`, { limit: 10, window: 1000, burst: 30 });
    let admitted = 0;
    for (let i = 0; i < 40; i++) if (l.allowSync('k').allowed) admitted++;
    expect(admitted).toBe(30);
    expect(l.allowSync('k').retryAfterMs).toBe(100);
    now += 100;
    expect(l.allowSync('k').allowed).toBe(true);
    expect(l.allowSync('k').allowed).toBe(false);
  });

  it('limits up to 1e9 per window are accepted', () => {
    const l = engine.limiter(`huge-${n++}`, { limit: 1e9, window: 1000 });
    expect(l.allowSync('k', 1e9)).toMatchObject({ allowed: true, remaining: 0 });
  });
});

describe('adaptive', () => {
  it('climbs by `increase` after good intervals, cuts by `backoff` after bad ones, within [min, max]', () => {
    const l = engine.limiter(`adaptive-${n++}`, {
      algorithm: 'adaptive', limit: 100, window: 1000,
      adaptive: { min: 20, max: 130, increase: 10, backoff: 0.5, targetLatencyMs: 50, minSamples: 10, errorRate: 0.1 },
    });
    const interval = (ok: number, slow: number, failed: number): number => {
      for (let i = 0; i < ok; i++) l.recordLatency(10);
      for (let i = 0; i < slow; i++) l.recordLatency(80);
      for (let i = 0; i < failed; i++) l.recordFailure();
      now += 1000;
      return l.limit;
    };
    expect(l.limit).toBe(100);
    expect(interval(50, 0, 0)).toBe(110);
    expect(interval(50, 2, 2)).toBe(120); // 4/54 drop signals < 10%
    expect(interval(50, 0, 0)).toBe(130);
    expect(interval(50, 0, 0)).toBe(130); // the ceiling
    expect(interval(40, 10, 0)).toBe(65); // 20% slow: cut by half
    expect(interval(4, 0, 4)).toBe(65); // too few samples: no evidence, no change
    expect(interval(10, 0, 10)).toBe(32);
    expect(interval(0, 0, 30)).toBe(20); // the floor
    l.recordSuccess();
    // the limit in force is what allowSync uses
    for (let i = 0; i < 20; i++) expect(l.allowSync(`k`).allowed).toBe(true);
    expect(l.allowSync('k')).toMatchObject({ allowed: false, limit: 20 });
  });

  /** An engine on a fake clock with one adaptive limiter of 1 ms intervals (+10 after a good one). */
  async function fastAdaptive(run: (l: ReturnType<Engine['limiter']>, advance: (ms: number) => void) => void): Promise<void> {
    let t = 1_700_000_000_000;
    const e = await createEngine({ workers: 1, memory: 16 << 20, metrics: false, clock: { now: () => t } });
    try {
      const l = e.limiter('fast', {
        algorithm: 'adaptive', limit: 100, window: 1000,
        adaptive: { min: 20, max: 10_000, increase: 10, backoff: 0.5, minSamples: 1, intervalMs: 1 },
      });
      run(l, (ms) => (t += ms));
    } finally {
      await e.close();
    }
  }

  it('keeps one evaluation per interval after the interval index wraps (2^31 intervals: 24.8 days at 1 ms)', async () => {
    await fastAdaptive((l, advance) => {
      advance(2 ** 31 - 2); // two intervals before the wrap
      for (let step = 0; step < 4; step++) {
        const before = l.limit;
        l.recordSuccess();
        l.recordSuccess(); // the same interval: no second evaluation
        expect(l.limit).toBe(before);
        advance(1);
        expect(l.limit).toBe(before + 10); // the next interval closes the one with successes
        expect(l.limit).toBe(before + 10);
      }
    });
  });

  it('keeps adapting after an idle gap of 2^31 intervals or more (review42: it froze for weeks)', async () => {
    await fastAdaptive((l, advance) => {
      const goodIntervals = (n: number): number => {
        for (let i = 0; i < n; i++) {
          l.recordSuccess();
          advance(1);
        }
        return l.limit;
      };
      expect(goodIntervals(5)).toBe(150);
      advance(30 * 86_400_000); // 30 days idle: 2.6e9 intervals of 1 ms
      expect(goodIntervals(5)).toBe(200);
      advance(86_400_000);
      expect(goodIntervals(5)).toBe(250);
    });
  });

  it('record* on another algorithm is a typed mistake', () => {
    const l = engine.limiter(`plain-${n++}`, { limit: 5 });
    expect(() => l.recordSuccess()).toThrow(/applies to algorithm 'adaptive' only/);
  });
});

describe('options that fail leave nothing behind (review41)', () => {
  it('a limiter whose options are refused after validation (no room, time base) can be created again with good ones', async () => {
    const e = await createEngine({ workers: 1, memory: 32 << 20, metrics: false });
    try {
      expect(() => e.limiter('big', { maxKeys: 1 << 22 })).toThrow(expect.objectContaining({ code: 'ERR_HOTPATH_ARENA_EXHAUSTED' }));
      expect(e.limiter('big', { maxKeys: 1024, limit: 5 }).allowSync('k').allowed).toBe(true);
      expect(() => e.limiter('fine', { limit: 999_999_937, window: 86_400_000 })).toThrow(RangeError);
      expect(e.limiter('fine', { limit: 1000, window: 1000 }).allowSync('k').allowed).toBe(true);
    } finally {
      await e.close();
    }
  });

  it('a full region registry says so, instead of advising more memory', async () => {
    const e = await createEngine({ workers: 1, memory: 64 << 20, metrics: false });
    try {
      let err: unknown;
      for (let n = 0; n < 2000 && err === undefined; n++) {
        try {
          e.limiter(`route-${n}`, { limit: 10, maxKeys: 16 });
        } catch (x) {
          err = x;
        }
      }
      expect(err).toMatchObject({ code: 'ERR_HOTPATH_ARENA_EXHAUSTED' });
      expect((err as Error).message).toMatch(/named regions are taken/);
      expect((err as Error).message).not.toMatch(/raise the `memory` option/);
    } finally {
      await e.close();
    }
  });
});

describe('the local table\'s probe start is seeded (review41)', () => {
  it('keys crafted to share a key\'s unseeded probe start no longer crowd it into the overflow slot', async () => {
    let t = 1_800_000_000_000;
    const clock = { now: (): number => t };
    const e = await createEngine({ workers: 1, memory: 64 << 20, clock, metrics: false });
    try {
      const { KeyHash } = await import('../../engine/runtime/key-hash.js');
      const h = new KeyHash();
      const mask = 65_536 - 1; // the default maxKeys
      const startOf = (k: string): number => {
        h.set(k);
        return ((h.hi ^ h.lo) >>> 0) & mask; // the probe start before the seed
      };
      const l = e.limiter('dos', { algorithm: 'fixed-window', limit: 100, window: 60_000 });
      const victim = '203.0.113.7';
      const crafted: string[] = [];
      for (let i = 0; crafted.length < 33; i++) {
        const k = `2001:db8::${i.toString(16)}`;
        if (startOf(k) === startOf(victim)) crafted.push(k);
      }
      for (const k of crafted.slice(0, 32)) l.allowSync(k); // fill the victim's probe window
      while (l.allowSync(crafted[32]!).allowed); // drain the overflow slot through a homeless key
      t += 30_000;
      // Before the seed: denied for the rest of the window (retryAfterMs 30 000).
      expect(l.allowSync(victim)).toMatchObject({ allowed: true, remaining: 99 });
    } finally {
      await e.close();
    }
  });
});
