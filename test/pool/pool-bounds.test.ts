/**
 * createPool at its edges: a `validate` that refuses every new resource (the pool must back off,
 * not spin in microtasks), `max` held with expiring resources and with creates past their timeout,
 * timer options beyond a Node timer's range, default-timeout deadlines under a wall-clock step,
 * and `create` results that are not objects. Fake timers throughout; no test sleeps.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ErrorCodes, PoolCreateError } from '../../engine/errors.js';
import { createPool, type Pool, type PoolOptions } from '../../engine/pool/pool.js';
import { MAX_TIMER_MS } from '../../engine/timer.js';
import { rejection } from '../helpers.js';

interface Res {
  id: number;
}

/** Settles promise callbacks (no timers involved, so it works under fake timers too). */
async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

const pools: Array<Pool<any>> = [];
function track<T>(p: Pool<T>): Pool<T> {
  pools.push(p);
  return p;
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(async () => {
  const drained = Promise.all(pools.splice(0).map((p) => p.drain({ timeoutMs: 1 })));
  await vi.advanceTimersByTimeAsync(1);
  await drained;
  vi.useRealTimers();
});

describe('a validate that refuses every new resource', () => {
  for (const async of [false, true]) {
    it(`backs off like a failed create instead of a microtask loop (${async ? 'async' : 'sync'} create and validate); the caller times out`, async () => {
      let creates = 0;
      const p = track(createPool<Res>({
        // A guard so that a pool that spins fails this test instead of hanging it: past 50
        // creates, create fails (a real failure always backed off, which breaks the loop).
        create: () => {
          if (++creates > 50) throw new Error('spinning');
          return async ? Promise.resolve({ id: creates }) : { id: creates };
        },
        validate: () => (async ? Promise.resolve(false) : false),
        max: 2,
        breaker: false,
        createRetry: { delayMs: 100, jitter: false },
      }));
      const got = rejection(p.acquire({ timeoutMs: 150 }));
      await flush();
      expect(creates).toBe(1); // refused, then a 100 ms back-off: no second create yet
      expect(p.stats()).toMatchObject({ validationFailures: 1, consecutiveCreateFailures: 1, createFailures: 0, size: 0 });
      await vi.advanceTimersByTimeAsync(100);
      expect(creates).toBe(2); // refused again: the next back-off is 200 ms
      await vi.advanceTimersByTimeAsync(50);
      const err = await got;
      expect(err.code).toBe(ErrorCodes.POOL_TIMEOUT);
      expect((err.cause as Error).message).toMatch(/validate refused a newly created resource/);
      expect(creates).toBe(2);
    });
  }

  it('backs off with one probe at a time however many wait, and a resource that passes ends the back-off; the breaker is not told (review53)', async () => {
    let accept = false;
    let creates = 0;
    const p = track(createPool<Res>({
      create: () => {
        if (++creates > 50) throw new Error('spinning'); // as above: fail, not hang, if it spins
        return Promise.resolve({ id: creates });
      },
      validate: async (r) => {
        if (!accept) throw new Error(`ping ${r.id} failed`);
        return true;
      },
      max: 6,
      breaker: { consecutiveFailures: 3, resetMs: 1000 },
      createRetry: { delayMs: 100, maxDelayMs: 100, jitter: false }, // a round every 100 ms
    }));
    const waiting = Array.from({ length: 6 }, () => p.acquire({ timeoutMs: 10_000 }));
    for (const w of waiting) w.catch(() => undefined);
    await flush();
    // Six creates at once (nothing had failed yet), six refusals: then one probe per round.
    expect(creates).toBe(6);
    await vi.advanceTimersByTimeAsync(100);
    expect(creates).toBe(7); // before: six more every round (a fresh resource under validation was no probe)
    await vi.advanceTimersByTimeAsync(100);
    expect(creates).toBe(8);
    // Refusals are validation failures, not create failures: the breaker stays closed, and
    // callers wait (their own timeout) instead of failing with ERR_HOTPATH_POOL_CREATE_FAILED.
    expect(p.stats()).toMatchObject({ breaker: 'closed', createFailures: 0, validationFailures: 8 });
    accept = true;
    await vi.advanceTimersByTimeAsync(100); // the next probe passes: the back-off ends, the rest are made at once
    const got = await Promise.all(waiting);
    expect(got.map((r) => r.id).sort((a, b) => a - b)).toEqual([9, 10, 11, 12, 13, 14]);
    expect(p.stats()).toMatchObject({ consecutiveCreateFailures: 0, breaker: 'closed' });
    for (const r of got) p.release(r);
  });

  it('a fresh resource whose validate hangs does not hold a shared breaker\'s half-open probe (review53)', async () => {
    const { CircuitBreaker } = await import('../../engine/resilience/breaker.js');
    const breaker = new CircuitBreaker('db', { consecutiveFailures: 1, resetMs: 100 });
    breaker.failure(breaker.acquire()); // an outage opened it
    expect(breaker.state).toBe('open');
    let creates = 0;
    const p = track(createPool<Res>({
      create: () => ({ id: ++creates }),
      validate: (r) => (r.id === 1 ? new Promise<boolean>(() => {}) : true), // the first one's check never ends
      validateTimeoutMs: Number.POSITIVE_INFINITY,
      breaker,
      max: 3,
    }));
    await vi.advanceTimersByTimeAsync(100); // half-open
    const stuck = p.acquire({ timeoutMs: 60_000 });
    stuck.catch(() => undefined);
    await flush();
    expect(creates).toBe(1);
    expect(breaker.state).toBe('closed'); // the probe create succeeded: closed at once
    const r = await p.acquire({ timeoutMs: 1000 }); // before: timed out, the breaker half-open for good
    expect(r.id).toBe(2);
    p.release(r);
    breaker.dispose();
  });
});

describe('creates past their timeout', () => {
  it('drain() waits for them to settle (bounded by its own timeout), and a late result the pool holds is not destroyed (review53)', async () => {
    const shared = { id: 0 };
    const destroyed: Res[] = [];
    let creates = 0;
    const p = createPool<Res>({
      // The first create answers at once; the second, late, with the same (cached) object.
      create: () => (++creates === 1 ? shared : new Promise<Res>((r) => setTimeout(() => r(shared), 400))),
      destroy: (r) => void destroyed.push(r),
      createTimeoutMs: 50,
      max: 2,
      breaker: false,
    });
    const a = await p.acquire();
    expect(a).toBe(shared);
    const b = p.acquire({ timeoutMs: 100 });
    b.catch(() => undefined);
    await vi.advanceTimersByTimeAsync(60);
    expect(p.stats().lateCreates).toBe(1);
    await vi.advanceTimersByTimeAsync(340); // the late create answers with the object A holds
    expect(destroyed).toEqual([]); // before: destroyed while lent
    expect(p.stats().lateCreates).toBe(0);
    p.release(a);
    // A late create still running at drain: drain waits for it.
    let slowDone = false;
    const q = createPool<Res>({
      create: () => new Promise<Res>((r) => setTimeout(() => { slowDone = true; r({ id: 9 }); }, 400)),
      createTimeoutMs: 50,
      max: 1,
      breaker: false,
    });
    const c = q.acquire({ timeoutMs: 60 });
    c.catch(() => undefined);
    await vi.advanceTimersByTimeAsync(60);
    expect(q.stats().lateCreates).toBe(1);
    let drained = false;
    const d = q.drain({ timeoutMs: 10_000 }).then(() => (drained = true));
    await vi.advanceTimersByTimeAsync(100);
    expect(drained).toBe(false); // before: resolved here, the connection still being made
    await vi.advanceTimersByTimeAsync(300);
    await d;
    expect(slowDone).toBe(true);
    await p.drain({ timeoutMs: 1 });
  });
});

describe('never more than max', () => {
  it('an acquire that skips an expired idle resource lends the next one before replacing the expired one', async () => {
    let now = 0;
    let alive = 0;
    let peak = 0;
    let id = 0;
    const p = track(createPool<Res>({
      create: () => {
        peak = Math.max(peak, ++alive);
        return { id: ++id };
      },
      destroy: () => void alive--,
      min: 2,
      max: 2,
      maxLifetimeMs: 1000,
      idleMs: Number.POSITIVE_INFINITY,
      clock: { now: () => now },
    }));
    await flush(); // min: #1 and #2
    const a = await p.acquire();
    const b = await p.acquire();
    now = 500;
    await p.destroy(b); // replaced for min: #3, made at 500
    await flush();
    p.release(a); // idle: #3, then #1 at the LIFO end
    now = 1100; // #1 expired, #3 not
    const r = await p.acquire();
    expect(r.id).toBe(3);
    await flush(); // the replacement of #1
    const s = p.stats();
    expect(s.idle + s.borrowed + s.validating + s.pending).toBeLessThanOrEqual(2);
    expect(alive).toBe(2);
    expect(peak).toBe(2);
  });

  it('a create past createTimeoutMs keeps its slot until it settles; its late result is destroyed, then the next create starts', async () => {
    const settle: Array<(r: Res) => void> = [];
    const destroyed: Res[] = [];
    let running = 0;
    let peak = 0;
    const p = track(createPool<Res>({
      create: () => {
        peak = Math.max(peak, ++running);
        return new Promise<Res>((resolve) => settle.push((r) => {
          running--;
          resolve(r);
        }));
      },
      destroy: (r) => void destroyed.push(r),
      max: 1,
      createTimeoutMs: 50,
      breaker: false,
      createRetry: { delayMs: 1, maxDelayMs: 5, jitter: false },
    }));
    const got = p.acquire({ timeoutMs: 1000 });
    await vi.advanceTimersByTimeAsync(50);
    await vi.advanceTimersByTimeAsync(200); // the back-off over many times: still no second create
    expect(settle).toHaveLength(1);
    expect(p.stats()).toMatchObject({ createFailures: 1, pending: 0, lateCreates: 1 });
    settle[0]!({ id: 1 }); // the late one: destroyed, and its slot frees a create for the waiter
    await flush();
    expect(destroyed).toEqual([{ id: 1 }]);
    expect(settle).toHaveLength(2);
    expect(p.stats().lateCreates).toBe(0);
    settle[1]!({ id: 2 });
    expect((await got).id).toBe(2);
    expect(peak).toBe(1);
  });

  it('a create that never settles does not hold a waiter past its own timeout', async () => {
    const p = track(createPool<Res>({ create: () => new Promise<Res>(() => undefined), max: 1, createTimeoutMs: 50, breaker: false }));
    const got = rejection(p.acquire({ timeoutMs: 300 }));
    await vi.advanceTimersByTimeAsync(300);
    const err = await got;
    expect(err.code).toBe(ErrorCodes.POOL_TIMEOUT);
    expect((err.cause as Error).code).toBe(ErrorCodes.TIMEOUT); // the create's timeout
    expect(p.stats()).toMatchObject({ lateCreates: 1, pending: 0, createFailures: 1 });
  });
});

describe('timer options', () => {
  it('refuses timeouts beyond a Node timer (2^31 − 1 ms) with a RangeError naming the option; Infinity and the maximum are fine', async () => {
    const create = (): Res => ({ id: 1 });
    const days100 = 100 * 86_400_000;
    for (const key of ['acquireTimeoutMs', 'createTimeoutMs', 'validateTimeoutMs', 'drainTimeoutMs'] as const) {
      expect(() => createPool({ create, [key]: days100 } as PoolOptions<Res>)).toThrow(RangeError);
      expect(() => createPool({ create, [key]: MAX_TIMER_MS + 1 } as PoolOptions<Res>)).toThrow(new RegExp(`options\\.${key} must be a positive number of ms up to ${MAX_TIMER_MS}`));
      for (const ok of [MAX_TIMER_MS, Number.POSITIVE_INFINITY]) await createPool({ create, [key]: ok } as PoolOptions<Res>).drain();
    }
    // No idle sweep: the fake clock is about to run 24.8 days.
    const p = track(createPool<Res>({ create, max: 1, idleMs: Number.POSITIVE_INFINITY }));
    expect(() => p.acquire({ timeoutMs: days100 })).toThrow(/options\.timeoutMs must be a positive number of ms up to/);
    expect(() => p.use(() => 1, { timeoutMs: days100 })).toThrow(RangeError);
    expect(() => p.drain({ timeoutMs: days100 })).toThrow(RangeError);
    const held = await p.acquire({ timeoutMs: MAX_TIMER_MS });
    const waiting = rejection(p.acquire({ timeoutMs: MAX_TIMER_MS }));
    await vi.advanceTimersByTimeAsync(MAX_TIMER_MS - 1);
    expect(p.stats().waiters).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect((await waiting).code).toBe(ErrorCodes.POOL_TIMEOUT);
    p.release(held);
  });
});

describe('deadlines', () => {
  it('a wall-clock step back delays neither default-timeout nor per-call waiters (monotonic time)', async () => {
    const p = track(createPool<Res>({ create: () => ({ id: 1 }), max: 1, acquireTimeoutMs: 100 }));
    const held = await p.acquire();
    const settled: string[] = [];
    const byDefault = p.acquire().then(() => void settled.push('default served'), (e: { code: string }) => void settled.push(`default ${e.code}`));
    const perCall = p.acquire({ timeoutMs: 101 }).then(() => void settled.push('per-call served'), (e: { code: string }) => void settled.push(`per-call ${e.code}`));
    await vi.advanceTimersByTimeAsync(20);
    vi.setSystemTime(Date.now() - 3_600_000); // NTP steps the clock back an hour
    await vi.advanceTimersByTimeAsync(80);
    expect(settled).toEqual(['default ERR_HOTPATH_POOL_TIMEOUT']);
    await vi.advanceTimersByTimeAsync(1);
    expect(settled).toEqual(['default ERR_HOTPATH_POOL_TIMEOUT', 'per-call ERR_HOTPATH_POOL_TIMEOUT']);
    await Promise.all([byDefault, perCall]);
    p.release(held);
  });
});

describe('create results', () => {
  for (const [what, value, text] of [['undefined', undefined, 'undefined'], ['null', null, 'null'], ['a number', 42, 'a number'], ['a string', 'conn', 'a string']] as const) {
    it(`create returning ${what} is a failed create (ERR_HOTPATH_POOL_CREATE_FAILED), never lent`, async () => {
      const destroyed: unknown[] = [];
      const errors: unknown[] = [];
      const p = track(createPool<Res>({
        create: () => value as unknown as Res,
        destroy: (r) => void destroyed.push(r),
        breaker: { consecutiveFailures: 1, resetMs: 1000 },
      }));
      p.on('createError', (e) => errors.push(e));
      const err = await rejection(p.acquire());
      expect(err.code).toBe(ErrorCodes.POOL_CREATE_FAILED); // the breaker opened: the cause is the refusal
      const cause = err.cause as PoolCreateError;
      expect(cause).toBeInstanceOf(PoolCreateError);
      expect(cause.code).toBe(ErrorCodes.POOL_CREATE_FAILED);
      expect(cause.message).toMatch(new RegExp(`options\\.create returned ${text} \\(it must return an object`));
      expect(errors).toEqual([cause]);
      expect(destroyed).toEqual([]);
      expect(p.stats()).toMatchObject({ created: 0, size: 0, createFailures: 1 });
    });
  }
});
