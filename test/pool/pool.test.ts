/**
 * createPool: borrowing and order, timeouts, abort, validation, create failures with back-off and
 * the breaker, leak reports, idle eviction, min, max lifetime, drain, caller mistakes. Everything
 * here runs on fake timers; real sockets: pool-tcp.test.ts; many concurrent callers:
 * pool-stress.test.ts; metrics: pool-metrics.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ErrorCodes } from '../../engine/errors.js';
import { createPool, type Pool, type PoolOptions } from '../../engine/pool/pool.js';
import { CircuitBreaker } from '../../engine/resilience/breaker.js';
import { rejection } from '../helpers.js';

interface Res {
  id: number;
  alive: boolean;
}

/** Settles promise callbacks (no timers involved, so it works under fake timers too). */
async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

const pools: Array<Pool<any>> = [];
/** A pool of `Res` objects made by an async create; records creates and destroys. */
function pool(options: Partial<PoolOptions<Res>> = {}): Pool<Res> & { made: Res[]; destroyed: Res[] } {
  const made: Res[] = [];
  const destroyed: Res[] = [];
  const p = createPool<Res>({
    create: async () => {
      const r = { id: made.length + 1, alive: true };
      made.push(r);
      return r;
    },
    destroy: (r) => {
      r.alive = false;
      destroyed.push(r);
    },
    ...options,
  });
  pools.push(p);
  return Object.assign(p, { made, destroyed });
}

/** created − destroyed = idle + borrowed + validating: nothing lost, nothing counted twice. */
function balanced(p: Pool<unknown>): void {
  const s = p.stats();
  expect(s.created - s.destroyed).toBe(s.idle + s.borrowed + s.validating);
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(async () => {
  // Borrowed resources a test kept are destroyed at the drain deadline (a fake timer: run it).
  const drained = Promise.all(pools.splice(0).map((p) => p.drain({ timeoutMs: 1 })));
  await vi.advanceTimersByTimeAsync(1);
  await drained;
  vi.useRealTimers();
});

describe('borrowing', () => {
  it('creates on demand up to max, reuses released ones, and counts them', async () => {
    const p = pool({ max: 2 });
    const a = await p.acquire();
    const b = await p.acquire();
    expect(a).not.toBe(b);
    expect(p.stats()).toMatchObject({ size: 2, borrowed: 2, idle: 0, created: 2 });
    p.release(a);
    expect(await p.acquire()).toBe(a); // no third create
    expect(p.made).toHaveLength(2);
    p.release(a);
    p.release(b);
    expect(p.stats()).toMatchObject({ idle: 2, borrowed: 0 });
    balanced(p);
  });

  it('LIFO by default (the most recently released), FIFO with fifo: true', async () => {
    for (const fifo of [false, true]) {
      const p = pool({ max: 3, fifo });
      const [a, b, c] = await Promise.all([p.acquire(), p.acquire(), p.acquire()]);
      p.release(a!);
      p.release(b!);
      p.release(c!);
      expect(await p.acquire()).toBe(fifo ? a : c);
    }
  });

  it('serves waiters strictly in the order they asked, whatever their timeouts', async () => {
    const p = pool({ max: 1 });
    const first = await p.acquire();
    const order: string[] = [];
    const ask = (name: string, timeoutMs?: number): Promise<void> => p.acquire(timeoutMs === undefined ? undefined : { timeoutMs }).then((r) => {
      order.push(name);
      p.release(r);
    }, (err: { code: string }) => void order.push(`${name}: ${err.code}`));
    const all = [ask('w1', 50_000), ask('w2', 10), ask('w3'), ask('w4', 100_000)];
    await vi.advanceTimersByTimeAsync(20); // w2 times out; the others keep their place
    expect(p.stats().waiters).toBe(3);
    p.release(first);
    await Promise.all(all);
    expect(order).toEqual(['w2: ERR_HOTPATH_POOL_TIMEOUT', 'w1', 'w3', 'w4']);
    expect(p.stats().timeouts).toBe(1);
  });

  it('a newcomer never overtakes the line (it queues behind waiters even if a resource is just released)', async () => {
    const p = pool({ max: 1 });
    const r = await p.acquire();
    const got: string[] = [];
    const waiting = p.acquire().then((x) => {
      got.push('waiter');
      p.release(x);
    });
    p.release(r); // handed to the waiter at once
    const late = p.acquire().then((x) => {
      got.push('newcomer');
      p.release(x);
    });
    await Promise.all([waiting, late]);
    expect(got).toEqual(['waiter', 'newcomer']);
  });

  it('refuses a caller beyond maxWaiters at once with ERR_HOTPATH_POOL_FULL; the line it refused keeps its order', async () => {
    const p = pool({ max: 1, maxWaiters: 2 });
    const held = await p.acquire();
    const w1 = p.acquire();
    const w2 = p.acquire();
    const refused = await rejection(p.acquire());
    expect(refused.code).toBe(ErrorCodes.POOL_FULL);
    expect(refused.message).toMatch(/2 callers are waiting already \(options.maxWaiters\)/);
    p.release(held);
    const r1 = await w1;
    p.release(r1);
    p.release(await w2);
    expect(p.stats().waiters).toBe(0);
  });

  it('times out a waiter with ERR_HOTPATH_POOL_TIMEOUT after acquireTimeoutMs, leaving counts intact', async () => {
    const p = pool({ max: 1, acquireTimeoutMs: 1000 });
    const r = await p.acquire();
    const waiting = rejection(p.acquire());
    await vi.advanceTimersByTimeAsync(999);
    expect(p.stats().waiters).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    const err = await waiting;
    expect(err.code).toBe(ErrorCodes.POOL_TIMEOUT);
    expect(err.name).toBe('PoolTimeoutError');
    expect(err.message).toMatch(/no resource within 1000 ms \(1 borrowed of max 1, 0 waiting\)/);
    expect(p.stats()).toMatchObject({ waiters: 0, borrowed: 1, timeouts: 1 });
    p.release(r);
    expect(p.stats().idle).toBe(1);
    balanced(p);
  });

  it('waiters with the default timeout (one shared timer) each time out exactly at their own deadline', async () => {
    const p = pool({ max: 1, acquireTimeoutMs: 1000 });
    const r = await p.acquire();
    const settled: string[] = [];
    const ask = (name: string): Promise<void> => p.acquire().then(() => void settled.push(`${name} served`), () => void settled.push(`${name} timed out`));
    const a = ask('a');
    await vi.advanceTimersByTimeAsync(300);
    const b = ask('b');
    await vi.advanceTimersByTimeAsync(200);
    const c = ask('c');
    await vi.advanceTimersByTimeAsync(499); // t = 999
    expect(settled).toEqual([]);
    await vi.advanceTimersByTimeAsync(1); // t = 1000
    expect(settled).toEqual(['a timed out']);
    await vi.advanceTimersByTimeAsync(299); // t = 1299
    expect(settled).toEqual(['a timed out']);
    await vi.advanceTimersByTimeAsync(1); // t = 1300
    expect(settled).toEqual(['a timed out', 'b timed out']);
    p.release(r); // c is served, long before its deadline (1500)
    await Promise.all([a, b, c]);
    expect(settled).toEqual(['a timed out', 'b timed out', 'c served']);
    expect(p.stats().timeouts).toBe(2);
  });

  it('an AbortSignal takes a waiter out of line with ERR_HOTPATH_CANCELLED; an aborted one never queues', async () => {
    const p = pool({ max: 1 });
    const r = await p.acquire();
    const ac = new AbortController();
    const waiting = rejection(p.acquire({ signal: ac.signal }));
    const next = p.acquire();
    ac.abort(new Error('user left'));
    const err = await waiting;
    expect(err.code).toBe(ErrorCodes.CANCELLED);
    expect((err as unknown as { cause: Error }).cause.message).toBe('user left');
    expect((await rejection(p.acquire({ signal: AbortSignal.abort() }))).code).toBe(ErrorCodes.CANCELLED);
    p.release(r);
    expect(await next).toBe(r); // the aborted waiter did not swallow it
    p.release(r);
    balanced(p);
  });

  it('use() releases after fn, also when fn throws; destroyOnError destroys instead', async () => {
    const p = pool({ max: 1 });
    expect(await p.use((r) => r.id * 10)).toBe(10);
    expect(await p.use(async (r) => r.id)).toBe(1);
    expect(p.stats()).toMatchObject({ idle: 1, borrowed: 0 });
    await expect(p.use(() => {
      throw new Error('app bug');
    })).rejects.toThrow('app bug');
    expect(p.stats()).toMatchObject({ idle: 1, destroyed: 0 });
    await expect(p.use(async () => {
      throw new Error('socket reset');
    }, { destroyOnError: true })).rejects.toThrow('socket reset');
    expect(p.destroyed.map((r) => r.id)).toEqual([1]);
    await expect(p.use(() => Promise.reject(new Error('keep me')), { destroyOnError: (e) => (e as Error).message === 'broken' })).rejects.toThrow('keep me');
    expect(p.stats()).toMatchObject({ idle: 1, destroyed: 1, borrowed: 0 });
    balanced(p);
  });

  it('destroy() evicts a broken resource and a waiter gets a new one', async () => {
    const p = pool({ max: 1 });
    const r = await p.acquire();
    const waiting = p.acquire();
    await p.destroy(r);
    const r2 = await waiting;
    expect(r2.id).toBe(2);
    expect(r.alive).toBe(false);
    p.release(r2);
    balanced(p);
  });
});

describe('caller mistakes', () => {
  it('double release, a foreign object, destroy of an idle one: TypeError, counts unchanged', async () => {
    const p = pool({ max: 2 });
    const r = await p.acquire();
    p.release(r);
    const before = p.stats();
    expect(() => p.release(r)).toThrow(/not borrowed \(released twice\?\)/);
    expect(() => p.release({ id: 99, alive: true })).toThrow(TypeError);
    expect(() => p.destroy(r)).toThrow(TypeError);
    expect(p.stats()).toEqual(before);
    const r1 = await p.acquire();
    await p.destroy(r1);
    expect(() => p.release(r1)).toThrow(/does not hold/);
    balanced(p);
  });

  it('bad options throw TypeError / RangeError naming the option', () => {
    const create = (): object => ({});
    const bad: Array<[unknown, RegExp, ErrorConstructor]> = [
      [undefined, /options must be an object/, TypeError],
      [{}, /options\.create must be a function, got undefined/, TypeError],
      [{ create: 1 }, /options\.create must be a function/, TypeError],
      [{ create, destroy: 'x' }, /options\.destroy must be a function/, TypeError],
      [{ create, validate: {} }, /options\.validate must be a function/, TypeError],
      [{ create, max: 0 }, /options\.max must be an integer ≥ 1, got 0/, RangeError],
      [{ create, max: 1.5 }, /options\.max/, RangeError],
      [{ create, min: -1 }, /options\.min must be an integer ≥ 0, got -1/, RangeError],
      [{ create, min: 5, max: 2 }, /options\.min \(5\) must not exceed options\.max \(2\)/, RangeError],
      [{ create, acquireTimeoutMs: -1 }, /options\.acquireTimeoutMs must be a positive number/, RangeError],
      [{ create, idleMs: 0 }, /options\.idleMs/, RangeError],
      [{ create, maxWaiters: -1 }, /options\.maxWaiters must be an integer ≥ 0 or Infinity, got -1/, RangeError],
      [{ create, createRetry: { delayMs: 0 } }, /options\.createRetry\.delayMs must be a finite number ≥ 1, got 0/, RangeError],
      [{ create, maxLifetimeMs: Number.NaN }, /options\.maxLifetimeMs/, RangeError],
      [{ create, leakDetectionMs: '5' }, /options\.leakDetectionMs/, RangeError],
      [{ create, createTimeoutMs: 0 }, /options\.createTimeoutMs/, RangeError],
      [{ create, fifo: 1 }, /options\.fifo must be a boolean/, TypeError],
      [{ create, name: '' }, /options\.name/, TypeError],
      [{ create, createRetry: { delayMs: -5 } }, /options\.createRetry\.delayMs/, RangeError],
      [{ create, createRetry: { delayMs: 500, maxDelayMs: 100 } }, /options\.createRetry\.maxDelayMs/, RangeError],
      [{ create, createRetry: { jitter: 'yes' } }, /options\.createRetry\.jitter/, TypeError],
      [{ create, breaker: { resetMs: 0 } }, /options\.breaker\.resetMs/, RangeError],
      [{ create, breaker: 'on' }, /options\.breaker must be/, TypeError],
      [{ create, metrics: {} }, /options\.metrics must be a Metrics instance/, TypeError],
      [{ create, clock: {} }, /options\.clock\.now must be a function/, TypeError],
    ];
    for (const [options, message, type] of bad) {
      expect(() => createPool(options as PoolOptions<object>), JSON.stringify(options)).toThrow(type);
      expect(() => createPool(options as PoolOptions<object>)).toThrow(message);
    }
  });

  it('bad acquire / use arguments throw synchronously', () => {
    const p = pool();
    expect(() => p.acquire({ timeoutMs: 0 })).toThrow(/options\.timeoutMs/);
    expect(() => p.acquire({ signal: 'x' as unknown as AbortSignal })).toThrow(/options\.signal must be an AbortSignal/);
    expect(() => p.use(undefined as unknown as () => void)).toThrow(/fn must be a function/);
    expect(() => p.use(() => 1, { destroyOnError: 'y' as unknown as boolean })).toThrow(/destroyOnError/);
    expect(() => p.drain({ timeoutMs: -1 })).toThrow(RangeError);
  });
});

describe('validation', () => {
  it('a resource refused by validate is destroyed and the caller gets another', async () => {
    const p = pool({ max: 2, validate: (r) => r.alive });
    const [a, b] = await Promise.all([p.acquire(), p.acquire()]);
    p.release(a!);
    p.release(b!);
    b!.alive = false; // broken while idle (LIFO: b would be lent first)
    const failed: number[] = [];
    p.on('validationFailed', (r) => failed.push(r.id));
    expect(await p.acquire()).toBe(a);
    expect(failed).toEqual([b!.id]);
    expect(p.destroyed).toEqual([b]);
    expect(p.stats().validationFailures).toBe(1);
    balanced(p);
  });

  it('a caller whose resource fails validation stays ahead of those who asked after it', async () => {
    const p = pool({ max: 1, validate: (r) => r.alive });
    const r = await p.acquire();
    const order: string[] = [];
    const w1 = p.acquire().then((x) => {
      order.push(`w1:${x.id}`);
      p.release(x);
    });
    const w2 = p.acquire().then((x) => {
      order.push(`w2:${x.id}`);
      p.release(x);
    });
    r.alive = false; // broken while held: refused when w1 gets it
    p.release(r);
    await Promise.all([w1, w2]);
    expect(order).toEqual(['w1:2', 'w2:2']);
  });

  it('async validate that rejects or returns false: creates a new one when none is left, and the caller keeps its place', async () => {
    let verdicts: Array<boolean | 'throw'> = [];
    const p = pool({
      max: 2,
      validate: async () => {
        const v = verdicts.shift() ?? true;
        if (v === 'throw') throw new Error('ping failed');
        return v;
      },
    });
    const [a, b] = await Promise.all([p.acquire(), p.acquire()]);
    p.release(a!);
    p.release(b!);
    verdicts = [false, 'throw', true];
    const errors: unknown[] = [];
    p.on('validationFailed', (_r, err) => errors.push(err));
    const first = p.acquire();
    const second = p.acquire(); // asked later: checks run in parallel, but `first` keeps its place
    const got: string[] = [];
    const [r1, r2] = await Promise.all([first.then((r) => (got.push('first'), r)), second.then((r) => (got.push('second'), r))]);
    // b refused (false) while `second` took a; a refused (a throw): two new ones, in line order
    expect(errors).toHaveLength(2);
    expect((errors[1] as Error).message).toBe('ping failed');
    expect([r1.id, r2.id]).toEqual([3, 4]);
    expect(got).toEqual(['first', 'second']);
    p.release(r1);
    p.release(r2);
    expect(p.stats()).toMatchObject({ validationFailures: 2, idle: 2, destroyed: 2 });
    balanced(p);
  });

  it('a validate that hangs past validateTimeoutMs is a refusal: the resource is destroyed, the caller gets another', async () => {
    let first = true;
    const p = pool({ max: 1, validateTimeoutMs: 200, acquireTimeoutMs: 10_000,
      validate: () => (first ? ((first = false), new Promise<boolean>(() => undefined)) : Promise.resolve(true)) });
    const got = p.acquire();
    await vi.advanceTimersByTimeAsync(199);
    expect(p.stats().validating).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    // #1 was made for this caller: refused at once, it counts as a failed create, so #2 comes
    // after the back-off (the first delay: 100 ms, jittered over [50, 100]).
    expect(p.stats()).toMatchObject({ validationFailures: 1, consecutiveCreateFailures: 1 });
    await vi.advanceTimersByTimeAsync(100);
    const r = await got;
    expect(r.id).toBe(2); // the first was destroyed after its validate timed out
    expect(p.destroyed.map((x) => x.id)).toEqual([1]);
    p.release(r);
  });

  it('a waiter that times out while its resource is validated leaves it idle for the next caller', async () => {
    let answer: ((v: boolean) => void) | undefined;
    let slowChecks = false;
    const p = pool({ max: 1, acquireTimeoutMs: 100, validate: () => (slowChecks ? new Promise<boolean>((r) => (answer = r)) : true) });
    const r = await p.acquire();
    p.release(r);
    slowChecks = true;
    const slow = rejection(p.acquire());
    await vi.advanceTimersByTimeAsync(100);
    expect((await slow).code).toBe(ErrorCodes.POOL_TIMEOUT);
    expect(p.stats()).toMatchObject({ validating: 1, idle: 0, waiters: 0 });
    answer!(true);
    await flush();
    expect(p.stats()).toMatchObject({ validating: 0, idle: 1, borrowed: 0 });
    balanced(p);
  });
});

describe('create failures', () => {
  it('retries with capped exponential back-off, then the breaker opens and callers fail fast with the cause', async () => {
    const calls: number[] = [];
    let failing = true;
    const start = Date.now();
    const p = createPool<Res>({
      create: async () => {
        calls.push(Date.now() - start);
        if (failing) throw new Error(`connect ECONNREFUSED #${calls.length}`);
        return { id: calls.length, alive: true };
      },
      max: 2,
      acquireTimeoutMs: 60_000,
      createRetry: { delayMs: 100, maxDelayMs: 400, jitter: false },
      breaker: { consecutiveFailures: 5, resetMs: 5000 },
    });
    pools.push(p);
    const createErrors: unknown[] = [];
    p.on('createError', (e) => createErrors.push(e));
    const waiting = rejection(p.acquire());
    await vi.advanceTimersByTimeAsync(2000);
    // 100, 200, 400, then capped at 400
    expect(calls).toEqual([0, 100, 300, 700, 1100]);
    const err = await waiting; // rejected when the breaker opened, long before its 60 s timeout
    expect(err.code).toBe(ErrorCodes.POOL_CREATE_FAILED);
    expect(err.name).toBe('PoolCreateError');
    expect((err as unknown as { cause: Error }).cause.message).toBe('connect ECONNREFUSED #5');
    expect(p.stats()).toMatchObject({ breaker: 'open', createFailures: 5, consecutiveCreateFailures: 5, pending: 0, waiters: 0 });
    expect(createErrors).toHaveLength(5);

    // Open: a caller that needs a new resource is refused at once, and create is not called.
    const fast = await rejection(p.acquire());
    expect(fast.code).toBe(ErrorCodes.POOL_CREATE_FAILED);
    expect(fast.message).toMatch(/breaker is open after 5 failure\(s\) in a row \(next try in \d+ ms\); the last one: connect ECONNREFUSED #5/);
    await vi.advanceTimersByTimeAsync(2000);
    expect(calls).toHaveLength(5);

    // After resetMs (opened at 1100): half-open, one probe; it succeeds and closes the breaker.
    await vi.advanceTimersByTimeAsync(1100 + 5000 - Date.now() + start);
    failing = false;
    const r = await p.acquire();
    expect(calls).toHaveLength(6);
    expect(p.stats()).toMatchObject({ breaker: 'closed', consecutiveCreateFailures: 0 });
    p.release(r);
    balanced(p);
  });

  it('while the breaker is open, a caller waits for a borrowed resource instead of failing', async () => {
    let failing = false;
    const p = createPool<Res>({
      create: async () => {
        if (failing) throw new Error('down');
        return { id: 1, alive: true };
      },
      max: 3,
      createRetry: { delayMs: 10, jitter: false },
      breaker: { consecutiveFailures: 2, resetMs: 10_000 },
    });
    pools.push(p);
    const mine = await p.acquire();
    failing = true;
    const waiter = p.acquire({ timeoutMs: 30_000 });
    await vi.advanceTimersByTimeAsync(100);
    expect(p.stats()).toMatchObject({ breaker: 'open', createFailures: 2, waiters: 1, borrowed: 1 });
    p.release(mine);
    expect(await waiter).toBe(mine);
    p.release(mine);
    balanced(p);
  });

  it('with breaker: false, it keeps retrying and the waiter times out with the last failure as cause', async () => {
    let n = 0;
    const p = createPool<Res>({
      create: () => {
        n++;
        throw new Error(`boom ${n}`); // a synchronous throw is a failure too
      },
      breaker: false,
      acquireTimeoutMs: 1000,
      createRetry: { delayMs: 100, maxDelayMs: 200, jitter: false },
    });
    pools.push(p);
    const waiting = rejection(p.acquire());
    await vi.advanceTimersByTimeAsync(1000);
    const err = await waiting;
    expect(err.code).toBe(ErrorCodes.POOL_TIMEOUT);
    expect((err as unknown as { cause: Error }).cause.message).toBe(`boom ${n}`);
    expect(err.message).toMatch(/the last create failed: boom/);
    expect(n).toBe(6); // 0, 100, 300, 500, 700, 900
    expect(p.stats().breaker).toBeUndefined();
  });

  it('jitter spreads each delay over [d/2, d]', async () => {
    const calls: number[] = [];
    const start = Date.now();
    const p = createPool<Res>({
      create: async () => {
        calls.push(Date.now() - start);
        throw new Error('no');
      },
      breaker: false,
      createRetry: { delayMs: 1000, maxDelayMs: 1000 },
    });
    pools.push(p);
    const waiting = rejection(p.acquire({ timeoutMs: 20_000 }));
    await vi.advanceTimersByTimeAsync(20_000);
    await waiting;
    const gaps = calls.slice(1).map((t, i) => t - calls[i]!);
    expect(gaps.length).toBeGreaterThan(18);
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(500), expect(g).toBeLessThanOrEqual(1000);
    expect(new Set(gaps).size).toBeGreaterThan(1);
  });

  it('a create that hangs past createTimeoutMs fails; its late result is destroyed, not lent', async () => {
    const settle: Array<(r: Res) => void> = [];
    const destroyed: Res[] = [];
    const p = createPool<Res>({
      create: () => new Promise<Res>((r) => settle.push(r)),
      destroy: (r) => void destroyed.push(r),
      createTimeoutMs: 500,
      createRetry: { delayMs: 100, jitter: false },
    });
    pools.push(p);
    const got = p.acquire();
    await vi.advanceTimersByTimeAsync(500);
    expect(p.stats()).toMatchObject({ createFailures: 1, pending: 0 });
    await vi.advanceTimersByTimeAsync(100); // the retry
    expect(settle).toHaveLength(2);
    const late = { id: 1, alive: true };
    settle[0]!(late);
    await flush();
    expect(destroyed).toEqual([late]);
    settle[1]!({ id: 2, alive: true });
    expect((await got).id).toBe(2);
    expect(p.stats()).toMatchObject({ created: 1, borrowed: 1 });
  });

  it('create returning a resource the pool already holds is a failed create (counts stay right)', async () => {
    const same = { id: 1, alive: true };
    const p = createPool<Res>({ create: () => same, createRetry: { delayMs: 10, jitter: false }, breaker: false, max: 2 });
    pools.push(p);
    const a = await p.acquire();
    const errors: unknown[] = [];
    p.on('createError', (e) => errors.push(e));
    const b = rejection(p.acquire({ timeoutMs: 35 }));
    await vi.advanceTimersByTimeAsync(40);
    expect((await b).code).toBe(ErrorCodes.POOL_TIMEOUT);
    expect((errors[0] as Error).message).toMatch(/already holds/);
    p.release(a);
    expect(p.stats()).toMatchObject({ created: 1, idle: 1, borrowed: 0 });
    balanced(p);
  });

  it('accepts a shared CircuitBreaker (e.g. engine.breaker) and forwards its state changes', async () => {
    const br = new CircuitBreaker('db', { consecutiveFailures: 1, resetMs: 1000 });
    const p = createPool<Res>({ create: () => Promise.reject(new Error('x')), breaker: br });
    pools.push(p);
    const states: string[] = [];
    p.on('breaker', (to) => states.push(to));
    expect((await rejection(p.acquire())).code).toBe(ErrorCodes.POOL_CREATE_FAILED);
    expect(p.breaker).toBe(br);
    expect(states).toEqual(['open']);
    expect(br.state).toBe('open');
  });
});

describe('lifecycle', () => {
  it('keeps min resources warm: created in the background and replaced after a destroy', async () => {
    const p = pool({ min: 2, max: 4 });
    await flush();
    expect(p.stats()).toMatchObject({ idle: 2, created: 2 });
    const r = await p.acquire();
    await p.destroy(r);
    await flush();
    expect(p.stats()).toMatchObject({ idle: 2, size: 2, created: 3, destroyed: 1 });
  });

  it('evicts resources idle longer than idleMs, oldest first, down to min', async () => {
    const p = pool({ min: 1, max: 4, idleMs: 1000 });
    await flush();
    const rs = await Promise.all([p.acquire(), p.acquire(), p.acquire(), p.acquire()]);
    for (const r of rs) p.release(r);
    await vi.advanceTimersByTimeAsync(600);
    const again = await p.acquire(); // LIFO: the last released; now busy again, then back
    expect(again).toBe(rs[3]);
    p.release(again);
    // Swept every 500 ms; the sweep at t=500 saw the three released at t=0 idle, so they go at
    // t=1500 (idle between idleMs and idleMs + 2 sweeps, as documented) and not before.
    await vi.advanceTimersByTimeAsync(899);
    expect(p.stats()).toMatchObject({ idle: 4 });
    await vi.advanceTimersByTimeAsync(1);
    expect(p.stats()).toMatchObject({ idle: 1, size: 1 });
    expect(p.destroyed.map((r) => r.id).sort()).toEqual(rs.slice(0, 3).map((r) => r.id).sort());
    await vi.advanceTimersByTimeAsync(5000);
    expect(p.stats().size).toBe(1); // min stays
    balanced(p);
  });

  it('maxLifetimeMs: an old resource is destroyed on release and never lent again', async () => {
    const p = pool({ max: 2, maxLifetimeMs: 1000, idleMs: Number.POSITIVE_INFINITY });
    const a = await p.acquire();
    const b = await p.acquire();
    p.release(b);
    await vi.advanceTimersByTimeAsync(1000);
    // b expired while idle (the sweep drops it), a expired while borrowed
    p.release(a);
    expect(a.alive).toBe(false);
    expect(b.alive).toBe(false);
    const c = await p.acquire();
    expect(c.id).toBe(3);
    p.release(c);
    balanced(p);
  });

  it('reports a resource held longer than leakDetectionMs once, with the acquirer\'s stack', async () => {
    const p = pool({ leakDetectionMs: 1000 });
    const leaks: Array<{ resource: Res; heldMs: number; stack: string }> = [];
    p.on('leak', (l) => leaks.push(l));
    async function borrowAndForget(): Promise<Res> {
      return p.acquire();
    }
    const kept = await borrowAndForget();
    const returned = await p.use(async (r) => r); // released at once: never reported
    void returned;
    await vi.advanceTimersByTimeAsync(999);
    expect(leaks).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(600); // swept every 500 ms
    expect(leaks).toHaveLength(1);
    expect(leaks[0]!.resource).toBe(kept);
    expect(leaks[0]!.heldMs).toBeGreaterThanOrEqual(1000);
    expect(leaks[0]!.heldMs).toBeLessThanOrEqual(1500);
    expect(leaks[0]!.stack).toContain('borrowAndForget');
    expect(leaks[0]!.stack).toMatch(/^acquired at:\n/);
    await vi.advanceTimersByTimeAsync(5000);
    expect(leaks).toHaveLength(1); // once per borrow
    expect(p.stats().leaks).toBe(1);
    p.release(kept);
  });
});

describe('drain', () => {
  it('rejects waiters, destroys idle ones now and borrowed ones on release, then resolves', async () => {
    const p = pool({ max: 2 });
    const [a, b] = await Promise.all([p.acquire(), p.acquire()]);
    p.release(b!);
    expect(await p.acquire()).toBe(b); // borrowed: 2
    const waiter = rejection(p.acquire());
    const drained = p.drain();
    let done = false;
    void drained.then(() => (done = true));
    expect((await waiter).code).toBe(ErrorCodes.CLOSED);
    expect((await rejection(p.acquire())).code).toBe(ErrorCodes.CLOSED);
    await flush();
    expect(done).toBe(false);
    p.release(a!);
    expect(a!.alive).toBe(false);
    p.release(b!);
    await drained;
    expect(p.stats()).toMatchObject({ size: 0, closed: true, created: 2, destroyed: 2 });
    expect(p.drain()).toBe(drained); // idempotent
  });

  it('waits for async destroys and creates in flight', async () => {
    const settleCreate: Array<(r: Res) => void> = [];
    const settleDestroy: Array<() => void> = [];
    const p = createPool<Res>({
      create: () => new Promise((r) => settleCreate.push(r)),
      destroy: () => new Promise<void>((r) => settleDestroy.push(r)),
    });
    const waiter = rejection(p.acquire());
    let done = false;
    const drained = p.drain().then(() => (done = true));
    expect((await waiter).code).toBe(ErrorCodes.CLOSED);
    settleCreate[0]!({ id: 1, alive: true }); // arrives after drain: destroyed
    await flush();
    expect(settleDestroy).toHaveLength(1);
    expect(done).toBe(false);
    settleDestroy[0]!();
    await drained;
    expect(p.stats()).toMatchObject({ created: 1, destroyed: 1, pending: 0 });
  });

  it('at its timeout, destroys what is still borrowed; a late release is a no-op', async () => {
    const p = pool({ max: 2 });
    const r = await p.acquire();
    const drained = p.drain({ timeoutMs: 5000 });
    await vi.advanceTimersByTimeAsync(5000);
    await drained;
    expect(r.alive).toBe(false);
    expect(p.stats()).toMatchObject({ forced: 1, borrowed: 0, size: 0 });
    expect(() => p.release(r)).not.toThrow();
    expect(() => p.release(r)).toThrow(TypeError); // only once
  });

  it('rejects a caller whose resource is being validated (a validate that hangs) with ERR_HOTPATH_CLOSED', async () => {
    const p = pool({ max: 1, validate: () => new Promise<boolean>(() => undefined), acquireTimeoutMs: 100 });
    const pending = p.acquire().then(() => 'resolved', (e: { code?: string }) => e.code);
    await flush();
    expect(p.stats().validating).toBe(1);
    const drained = p.drain({ timeoutMs: 50 });
    expect(await pending).toBe(ErrorCodes.CLOSED);
    await vi.advanceTimersByTimeAsync(50);
    await drained;
  });

  it('a create that fails late, after a shared breaker went half-open for someone else, does not reopen it', async () => {
    const shared = new CircuitBreaker('db', { consecutiveFailures: 1, resetMs: 100 });
    let failLate!: (e: Error) => void;
    const p = pool({ max: 1, breaker: shared, createRetry: { delayMs: 1, jitter: false }, acquireTimeoutMs: 10_000,
      create: () => new Promise<Res>((_r, reject) => (failLate = reject)) });
    void p.acquire().catch(() => undefined); // its create hangs, admitted while closed
    await flush();
    shared.failure(shared.acquire()); // someone else's call fails: open
    await vi.advanceTimersByTimeAsync(100);
    const probe = shared.acquire(); // someone else's probe
    expect(probe).toBeGreaterThan(0);
    failLate(new Error('late')); // the pool's create fails now: not this phase's outcome
    await flush();
    expect(shared.state).toBe('half-open');
    shared.success(probe);
    expect(shared.state).toBe('closed');
    shared.dispose();
  });

  it('await using drains at the end of the scope', async () => {
    let outside: Pool<Res> | undefined;
    {
      await using p = pool();
      outside = p;
      p.release(await p.acquire());
    }
    expect(outside.stats().closed).toBe(true);
    expect(outside.stats().size).toBe(0);
  });
});

describe('listeners', () => {
  it('listeners run when the counts are consistent (they may call back into the pool)', async () => {
    const p = pool({ max: 1, validate: (r) => r.alive });
    const seen: string[] = [];
    const check = (event: string) => (): void => {
      const s = p.stats();
      seen.push(`${event}:${s.created - s.destroyed === s.idle + s.borrowed + s.validating}`);
    };
    p.on('create', check('create'));
    p.on('destroy', check('destroy'));
    p.on('validationFailed', check('validationFailed'));
    const r = await p.acquire();
    const waiting = p.acquire();
    r.alive = false;
    p.release(r);
    p.release(await waiting);
    await p.drain();
    expect(seen).toEqual(['create:true', 'destroy:true', 'validationFailed:true', 'create:true', 'destroy:true']);
  });

  it('a throwing listener becomes a warning and does not break the accounting', async () => {
    const p = pool({ max: 1 });
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      p.on('create', () => {
        throw new Error('listener bug');
      });
      const r = await p.acquire();
      p.release(r);
      await new Promise((resolve) => process.nextTick(resolve));
      await flush();
      expect(p.stats()).toMatchObject({ idle: 1, created: 1 });
      balanced(p);
    } finally {
      process.off('warning', onWarning);
    }
    await vi.advanceTimersByTimeAsync(0);
    expect(warnings.some((m) => m.includes("'create' listener threw: listener bug"))).toBe(true);
  });
});
