import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ErrorCodes } from '../../engine/index.js';
import { BreakerOpenError, CircuitBreaker } from '../../engine/resilience/breaker.js';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

const fail = (b: CircuitBreaker, n: number): void => {
  for (let i = 0; i < n; i++) {
    expect(b.tryAcquire()).toBe(true);
    b.failure();
  }
};
const succeed = (b: CircuitBreaker, n: number): void => {
  for (let i = 0; i < n; i++) {
    expect(b.tryAcquire()).toBe(true);
    b.success();
  }
};

describe('CircuitBreaker', () => {
  it('opens after N consecutive failures and refuses calls while open', () => {
    const b = new CircuitBreaker('t', { consecutiveFailures: 3, resetMs: 1000 });
    fail(b, 2);
    expect(b.state).toBe('closed');
    b.tryAcquire();
    b.failure();
    expect(b.state).toBe('open');
    expect(b.tryAcquire()).toBe(false);
    expect(b.stats().rejected).toBe(1);
    expect(b.retryAfterMs()).toBe(1000);
  });

  it('a success resets the consecutive count', () => {
    const b = new CircuitBreaker('t', { consecutiveFailures: 3, volume: 1000 });
    fail(b, 2);
    succeed(b, 1);
    fail(b, 2);
    expect(b.state).toBe('closed');
  });

  it('opens on the error rate in the rolling window only once the volume is reached', () => {
    const b = new CircuitBreaker('t', { consecutiveFailures: 100, errorRate: 0.5, volume: 10, windowMs: 1000 });
    for (let i = 0; i < 4; i++) {
      succeed(b, 1);
      fail(b, 1);
    }
    expect(b.state).toBe('closed'); // 8 calls < volume 10
    succeed(b, 1);
    fail(b, 1); // 10 calls, 5 failures: 50%
    expect(b.state).toBe('open');
  });

  it('forgets calls that slid out of the window', () => {
    const b = new CircuitBreaker('t', { consecutiveFailures: 100, errorRate: 0.5, volume: 4, windowMs: 1000 });
    fail(b, 3);
    vi.advanceTimersByTime(1100); // those three are out of the window now
    succeed(b, 3);
    fail(b, 1);
    expect(b.stats().windowCalls).toBe(4);
    expect(b.state).toBe('closed');
  });

  it('turns half-open after resetMs (by its timer), closes on a successful probe', () => {
    const b = new CircuitBreaker('t', { consecutiveFailures: 1, resetMs: 5000 });
    const states: string[] = [];
    b.on('state', (to: string) => states.push(to));
    fail(b, 1);
    vi.advanceTimersByTime(4999);
    expect(b.state).toBe('open');
    vi.advanceTimersByTime(1);
    expect(states).toEqual(['open', 'half-open']); // the timer moved it: listeners can probe now
    expect(b.tryAcquire()).toBe(true); // the one probe
    expect(b.tryAcquire()).toBe(false); // no second probe at once
    b.success();
    expect(b.state).toBe('closed');
    expect(states).toEqual(['open', 'half-open', 'closed']);
  });

  it('a failed probe opens it again for another resetMs', () => {
    const b = new CircuitBreaker('t', { consecutiveFailures: 1, resetMs: 100 });
    fail(b, 1);
    vi.advanceTimersByTime(100);
    expect(b.tryAcquire()).toBe(true);
    b.failure();
    expect(b.state).toBe('open');
    expect(b.retryAfterMs()).toBe(100);
    vi.advanceTimersByTime(100);
    expect(b.state).toBe('half-open');
  });

  it('run(): passes results, counts rejections as failures, uses the fallback while open', async () => {
    const b = new CircuitBreaker('pay', { consecutiveFailures: 2, resetMs: 1000 });
    expect(await b.run(() => 7)).toBe(7);
    await expect(b.run(() => Promise.reject(new Error('x')))).rejects.toThrow('x');
    await expect(b.run(() => { throw new Error('y'); })).rejects.toThrow('y');
    const err = await b.run(() => 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BreakerOpenError);
    expect((err as BreakerOpenError).code).toBe(ErrorCodes.BREAKER_OPEN);
    expect((err as BreakerOpenError).retryAfterMs).toBe(1000);
    expect(await b.run(() => 1, { fallback: () => 'cached' })).toBe('cached');
  });

  it('run(): a call slower than timeoutMs fails with ERR_HOTPATH_TIMEOUT and counts', async () => {
    const b = new CircuitBreaker('slow', { consecutiveFailures: 1, timeoutMs: 50 });
    const p = b.run(() => new Promise((r) => setTimeout(r, 1000)));
    const settled = expect(p).rejects.toMatchObject({ code: ErrorCodes.TIMEOUT });
    await vi.advanceTimersByTimeAsync(50);
    await settled;
    expect(b.state).toBe('open');
  });

  it('re-arms its timer when the clock says the reset is not due yet (an injected clock lagging)', () => {
    let now = 0;
    const b = new CircuitBreaker('lag', { consecutiveFailures: 1, resetMs: 100, clock: { now: () => now } });
    const states: string[] = [];
    b.on('state', (to: string) => states.push(to));
    fail(b, 1);
    now = 50;
    vi.advanceTimersByTime(100); // the timer fires, but by this clock only 50 ms passed
    expect(states).toEqual(['open']);
    now = 100;
    vi.advanceTimersByTime(50); // re-armed for the remaining 50 ms: half-open without any call
    expect(states).toEqual(['open', 'half-open']);
  });

  it('a listener that throws does not break its accounting', () => {
    const b = new CircuitBreaker('t', { consecutiveFailures: 1, resetMs: 10 });
    b.on('open', () => {
      throw new Error('listener bug');
    });
    const warnings: string[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w.message);
    };
    process.on('warning', onWarning);
    try {
      fail(b, 1);
      expect(b.state).toBe('open');
      expect(b.stats().failures).toBe(1);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('validates its options, naming them', () => {
    expect(() => new CircuitBreaker('t', { errorRate: 0 })).toThrow(/options\.errorRate/);
    expect(() => new CircuitBreaker('t', { resetMs: -1 })).toThrow(/options\.resetMs/);
    expect(() => new CircuitBreaker('t', { volume: 1.5 })).toThrow(/options\.volume/);
    expect(() => new CircuitBreaker('t', { timeoutMs: 0 })).toThrow(/options\.timeoutMs/);
    expect(() => new CircuitBreaker('')).toThrow(TypeError);
  });
});

describe('half-open probes that never report (review62 B2)', () => {
  it('a run() probe that never settles is given up after probeTimeoutMs (default resetMs): another probe passes', async () => {
    let now = 0;
    const b = new CircuitBreaker('wedge', { consecutiveFailures: 1, resetMs: 1000, clock: { now: () => now } });
    b.failure(b.acquire());
    now = 1000;
    const hung = b.run(() => new Promise<never>(() => undefined)); // the probe: its dependency never answers
    hung.catch(() => undefined);
    now = 1999; // within the probe deadline: the slot is still the hung probe's
    const early = await b.run(() => 'ok').catch((e: unknown) => e);
    expect(early).toBeInstanceOf(BreakerOpenError);
    now = 2000; // resetMs after the probe was taken, no outcome: given up
    expect(await b.run(() => 'ok')).toBe('ok');
    expect(b.state).toBe('closed');
    b.dispose();
  });

  it('the default deadline is the larger of resetMs and timeoutMs; probeTimeoutMs sets it', () => {
    for (const [options, deadline] of [[{ resetMs: 100 }, 100], [{ resetMs: 100, timeoutMs: 250.5 }, 251], [{ resetMs: 100, probeTimeoutMs: 30 }, 30]] as const) {
      let now = 0;
      const b = new CircuitBreaker('d', { consecutiveFailures: 1, ...options, clock: { now: () => now } });
      b.failure(b.acquire());
      now = 100;
      expect(b.acquire()).toBeGreaterThan(0); // the probe, never reported
      now = 100 + deadline - 1;
      expect(b.acquire()).toBe(-1);
      now = 100 + deadline;
      expect(b.acquire()).toBeGreaterThan(0);
      b.dispose();
    }
    expect(() => new CircuitBreaker('d', { probeTimeoutMs: 0 })).toThrow(/options\.probeTimeoutMs/);
    expect(() => new CircuitBreaker('d', { probeTimeoutMs: 1.5 })).toThrow(RangeError);
  });

  it('counts the deadline from the last slot taken; a given-up probe’s late outcome moves nothing', () => {
    let now = 0;
    const b = new CircuitBreaker('late', { consecutiveFailures: 1, resetMs: 100, halfOpenProbes: 2, clock: { now: () => now } });
    b.failure(b.acquire());
    now = 100;
    const first = b.acquire();
    now = 150;
    const second = b.acquire();
    expect(first).toBeGreaterThan(0);
    expect(second).toBe(first);
    now = 249;
    expect(b.acquire()).toBe(-1); // 99 ms since the last slot was taken
    now = 250;
    const fresh = b.acquire(); // both lost: a new generation
    expect(fresh).toBeGreaterThan(0);
    expect(fresh).not.toBe(first);
    const states: string[] = [];
    b.on('state', (to: string) => states.push(to));
    b.failure(first); // the lost probes answer late: counted, nothing moves
    b.success(second);
    b.release(first);
    expect(b.state).toBe('half-open');
    expect(b.acquire()).toBeGreaterThan(0); // the new generation's second slot (release freed none of it)
    expect(b.acquire()).toBe(-1);
    expect(b.stats()).toMatchObject({ failures: 2, successes: 1 });
    b.success(fresh);
    expect(b.state).toBe('closed');
    expect(states).toEqual(['closed']);
    b.dispose();
  });
});

describe('closed-phase tickets (review62 B4)', () => {
  it('an outcome from an earlier closed phase does not reopen a recovered breaker', () => {
    let now = 0;
    const b = new CircuitBreaker('t', { consecutiveFailures: 2, resetMs: 1000, clock: { now: () => now } });
    const states: string[] = [];
    b.on('state', (to: string, from: string) => states.push(`${from}->${to}`));
    const old = [b.acquire(), b.acquire(), b.acquire(), b.acquire()]; // in flight while closed
    b.failure(old[0]);
    b.failure(old[1]); // the outage opens it
    now = 1000;
    b.success(b.acquire()); // the probe: recovered
    expect(b.state).toBe('closed');
    b.failure(old[2]); // the outage's stragglers end now
    b.failure(old[3]);
    expect(b.state).toBe('closed');
    expect(states).toEqual(['closed->open', 'open->half-open', 'half-open->closed']);
    expect(b.stats()).toMatchObject({ failures: 4, consecutiveFailures: 0, windowFailures: 0 });
    const fresh = [b.acquire(), b.acquire()]; // this phase's calls still count
    b.failure(fresh[0]);
    b.failure(fresh[1]);
    expect(b.state).toBe('open');
    b.dispose();
  });

  it('run(): slow calls of an earlier closed phase that time out after the recovery move nothing', async () => {
    let now = 0;
    const b = new CircuitBreaker('r', { consecutiveFailures: 2, resetMs: 1000, clock: { now: () => now } });
    const slow = [1, 2].map(() => b.run(() => new Promise<never>(() => undefined), { timeoutMs: 100 }).catch((e: { code?: string }) => e.code));
    await b.run(() => Promise.reject(new Error('a'))).catch(() => undefined);
    await b.run(() => Promise.reject(new Error('b'))).catch(() => undefined);
    expect(b.state).toBe('open');
    now = 1000;
    expect(await b.run(() => 'probe ok')).toBe('probe ok');
    expect(b.state).toBe('closed');
    await vi.advanceTimersByTimeAsync(100);
    expect(await Promise.all(slow)).toEqual([ErrorCodes.TIMEOUT, ErrorCodes.TIMEOUT]);
    expect(b.state).toBe('closed');
    b.dispose();
  });

  it('ticketless outcomes count in whatever phase it is in; ticket 0 in any closed phase', () => {
    let now = 0;
    const b = new CircuitBreaker('t', { consecutiveFailures: 2, resetMs: 100, clock: { now: () => now } });
    b.failure();
    b.failure(0);
    expect(b.state).toBe('open');
    now = 100;
    expect(b.state).toBe('half-open');
    b.failure(0); // ticket 0 moves no half-open breaker
    expect(b.state).toBe('half-open');
    b.success(); // no ticket: answers the half-open phase
    expect(b.state).toBe('closed');
    b.failure(0);
    b.failure(0);
    expect(b.state).toBe('open');
    for (const bad of [-1, 1.5, '3', Number.NaN, 2 ** 20]) {
      expect(() => b.success(bad as never)).toThrow(/ticket must be what acquire\(\) gave/);
      expect(() => b.release(bad as never)).toThrow(TypeError);
    }
    expect(b.stats().successes).toBe(1);
    b.dispose();
  });
});

describe('run() arguments (review62 B6)', () => {
  it('refuses a bad fn or option with a TypeError naming it, before admitting or counting anything', async () => {
    const b = new CircuitBreaker('a', { consecutiveFailures: 3 });
    for (let i = 0; i < 3; i++) {
      const err = await b.run(undefined as never).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TypeError);
      expect((err as Error).message).toMatch(/fn must be a function/);
    }
    const cases: Array<[unknown, RegExp]> = [
      [{ signal: {} }, /options\.signal must be an AbortSignal/],
      [{ signal: 'x' }, /options\.signal must be an AbortSignal/],
      [{ fallback: 5 }, /options\.fallback must be a function/],
      [{ timeout: 5 }, /options\.timeout is not an option of run\(\)/],
      [null, /options must be an object/],
      [7, /options must be an object/],
    ];
    for (const [options, message] of cases) {
      const err = await b.run(() => 1, options as never).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TypeError);
      expect((err as Error).message).toMatch(message);
    }
    expect(b.stats()).toMatchObject({ state: 'closed', successes: 0, failures: 0, rejected: 0, consecutiveFailures: 0, windowCalls: 0 });
    b.dispose();
  });

  it('a bad signal on a half-open breaker takes no probe slot', async () => {
    let now = 0;
    const b = new CircuitBreaker('b', { consecutiveFailures: 1, resetMs: 100, probeTimeoutMs: 1_000_000, clock: { now: () => now } });
    b.failure(b.acquire());
    now = 100;
    const err = await b.run(() => 'ok', { signal: {} as never }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TypeError);
    expect(await b.run(() => 'ok')).toBe('ok'); // the slot was free
    expect(b.state).toBe('closed');
    b.dispose();
  });
});

describe('options (review62 B8)', () => {
  it('refuses unknown option names, naming them', () => {
    for (const name of ['resetMS', 'consecutiveFailure', 'timeout']) {
      expect(() => new CircuitBreaker('v', { [name]: 10 } as never)).toThrow(new RegExp(`options\\.${name} is not a known option`));
    }
  });
});

describe('isFailure and timeouts (review62 B10)', () => {
  it('a TimeoutError thrown by fn goes through isFailure; the breaker’s own timeout is a failure whatever it says', async () => {
    const { TimeoutError } = await import('../../engine/errors.js');
    const asked: string[] = [];
    const b = new CircuitBreaker('t', { consecutiveFailures: 1, isFailure: (e) => {
      asked.push((e as { code?: string }).code ?? '');
      return false;
    } });
    const inner = new TimeoutError('inner cache loader', 10);
    expect(await b.run(() => Promise.reject(inner)).catch((e: unknown) => e)).toBe(inner);
    expect(await b.run(() => { throw inner; }, { timeoutMs: 1000 }).catch((e: unknown) => e)).toBe(inner);
    expect(asked).toEqual([ErrorCodes.TIMEOUT, ErrorCodes.TIMEOUT]);
    expect(b.state).toBe('closed');
    const own = b.run(() => new Promise(() => undefined), { timeoutMs: 50 });
    const settled = expect(own).rejects.toMatchObject({ code: ErrorCodes.TIMEOUT });
    await vi.advanceTimersByTimeAsync(50);
    await settled;
    expect(asked).toHaveLength(2); // not asked about its own timeout
    expect(b.state).toBe('open');
    b.dispose();
  });
});
