import { getEventListeners } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ErrorCodes } from '../../engine/index.js';
import { BREAKER_WORDS, BreakerOpenError, CircuitBreaker } from '../../engine/resilience/breaker.js';

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

  it('counts the deadline from the last slot taken; a given-up probe’s release frees no slot of the new round, its late failure reopens', () => {
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
    const fresh = b.acquire(); // both given up: a new round
    expect(fresh).toBeGreaterThan(0);
    expect(fresh).not.toBe(first);
    expect(b.isCurrent(first)).toBe(true); // the same half-open phase
    expect(b.holdsSlot(first)).toBe(false);
    expect(b.holdsSlot(fresh)).toBe(true);
    b.release(first); // its slot is void: frees none of the new round's
    expect(b.acquire()).toBeGreaterThan(0); // the new round's second slot
    expect(b.acquire()).toBe(-1);
    const states: string[] = [];
    b.on('state', (to: string) => states.push(to));
    b.failure(second); // a given-up probe fails late, in its phase: a probe's failure
    expect(b.state).toBe('open');
    b.success(fresh); // the phase is over: counted, nothing moves
    b.failure(first);
    expect(b.state).toBe('open');
    expect(b.stats()).toMatchObject({ failures: 3, successes: 1, consecutiveFailures: 2 });
    expect(states).toEqual(['open']);
    b.dispose();
  });

  it('slow probes close it under steady traffic: a given-up probe’s late success closes (review66 1)', () => {
    let now = 0;
    const b = new CircuitBreaker('slow', { consecutiveFailures: 1, resetMs: 200, clock: { now: () => now } });
    b.failure(b.acquire());
    // every 50 ms a call that succeeds 400 ms later; probeTimeoutMs (= resetMs) is shorter than that
    const due = new Map<number, number[]>();
    let closedAt: number | undefined;
    for (now = 200; now <= 2000 && closedAt === undefined; now += 50) {
      for (const t of due.get(now) ?? []) b.success(t);
      const t = b.acquire();
      if (t >= 0) due.set(now + 400, [...(due.get(now + 400) ?? []), t]);
      if (b.state === 'closed') closedAt = now;
    }
    expect(closedAt).toBe(600); // the first probe (taken at 200) answers at 600, two rounds later
    b.dispose();
  });

  it('a run() probe’s deadline is its timeout when longer than probeTimeoutMs (handle’s or per call) (review66 1)', async () => {
    vi.useFakeTimers();
    try {
      for (const [options, runOptions] of [[{ timeoutMs: 1000 }, undefined], [{}, { timeoutMs: 1000 }]] as const) {
        let now = 0;
        const b = new CircuitBreaker('deadline', { consecutiveFailures: 1, resetMs: 200, probeTimeoutMs: 200, ...options, clock: { now: () => now } });
        b.failure(b.acquire());
        now = 200;
        const hung = b.run(() => new Promise<never>(() => undefined), runOptions);
        hung.catch(() => undefined);
        now = 1199; // past probeTimeoutMs, within the probe's own timeout: still its slot
        expect(b.acquire()).toBe(-1);
        now = 1200;
        expect(b.acquire()).toBeGreaterThan(0);
        b.dispose();
      }
    } finally {
      vi.useRealTimers();
    }
  });

  it('a probe of an earlier half-open phase moves nothing, even after rounds were given up (review66 1)', () => {
    let now = 0;
    const b = new CircuitBreaker('phases', { consecutiveFailures: 1, resetMs: 100, clock: { now: () => now } });
    b.failure(b.acquire());
    now = 100;
    const old = b.acquire(); // phase 1's probe
    b.failure(old); // it fails: open again
    now = 200;
    const p1 = b.acquire(); // phase 2
    now = 300;
    const p2 = b.acquire(); // phase 2, round 2
    expect(p2).toBeGreaterThan(p1);
    b.success(old); // phase 1's: nothing
    expect(b.state).toBe('half-open');
    b.failure(p1); // phase 2's first round: reopens
    expect(b.state).toBe('open');
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

describe('review69', () => {
  it('run() without a timeout or signal: fn may set signal.onabort any number of times (review71 N1)', async () => {
    const b = new CircuitBreaker('onabort', { consecutiveFailures: 3 });
    const set = (signal: AbortSignal): number => {
      signal.onabort = () => undefined; // before: the second assignment in the process threw a TypeError
      return 1;
    };
    for (let i = 0; i < 5; i++) expect(await b.run(set)).toBe(1);
    expect(b.state).toBe('closed');
    expect(b.stats().successes).toBe(5);
  });

  it('run() without a timeout or signal: abort listeners fn adds to its signal are not kept (D7)', async () => {
    const b = new CircuitBreaker('never', { consecutiveFailures: 1_000 });
    const signals = new Set<AbortSignal>();
    const listen = (signal: AbortSignal): Promise<number> => {
      signals.add(signal);
      signal.addEventListener('abort', () => undefined); // as code given a per-call signal does, never removed
      return Promise.resolve(1);
    };
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      for (let i = 0; i < 20; i++) {
        await b.run(listen); // the hot path
        await b.run(listen, { fallback: () => 0 }); // options without a timeout or signal
      }
      await new Promise((r) => process.nextTick(r)); // warnings are emitted on the next tick
    } finally {
      process.off('warning', onWarning);
    }
    for (const signal of signals) {
      expect(signal.aborted).toBe(false);
      expect(getEventListeners(signal, 'abort')).toHaveLength(0);
    }
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
    expect(b.stats().successes).toBe(40);
    b.dispose();
  });

  it('a custom clock is read exactly by the rolling window: failures a minute old no longer count (D3)', () => {
    let now = 1_000_000;
    const b = new CircuitBreaker('exact', { consecutiveFailures: 1_000, errorRate: 0.5, volume: 10, windowMs: 1000, clock: { now: () => now } });
    fail(b, 9);
    expect(b.stats().windowCalls).toBe(9);
    now += 60_000; // no real time passes (fake timers): only the clock moves
    expect(b.stats()).toMatchObject({ windowCalls: 0, windowFailures: 0 });
    fail(b, 1);
    expect(b.state).toBe('closed'); // one call in the window, under volume
    b.dispose();
  });

  it('threads racing for the probe slot: the deadline that stands is the winner’s (D5)', async () => {
    // Two handles on one state, as two threads (the constructor's cells); B's clock read lets A run.
    const cells = { words: new Int32Array(BREAKER_WORDS), base: 0 };
    let now = 1_000_000;
    let hook: (() => void) | undefined;
    const o = { consecutiveFailures: 1, resetMs: 100, probeTimeoutMs: 100 };
    const a = new CircuitBreaker('race', { ...o, clock: { now: () => now } }, cells);
    const b = new CircuitBreaker('race', { ...o, clock: { now: () => {
      const h = hook;
      hook = undefined;
      h?.();
      return now;
    } } }, cells);
    a.failure(a.acquire());
    now += 100;
    expect(a.state).toBe('half-open');
    let aProbe: Promise<string> | undefined;
    hook = () => {
      aProbe = a.run(() => new Promise<string>((r) => setTimeout(() => r('slow ok'), 300)), { timeoutMs: 60_000 });
    };
    const bt = b.acquire();
    const aSettled = aProbe!.catch((e: unknown) => e);
    expect(b.stats().rejected).toBe(1); // exactly one of them took the slot
    const aWon = bt < 0;
    now += 150; // past B's 100 ms deadline, far within A's 60 s run() timeout
    expect(a.acquire() >= 0).toBe(!aWon); // A's slot holds; B's is given up
    await vi.advanceTimersByTimeAsync(300);
    await aSettled;
    a.dispose();
    b.dispose();
  });

  it('a slot taker that has not published its deadline holds the slot, for probeTimeoutMs at most (D5)', () => {
    // What a thread sees while the winner is between its CAS and its stamp, or died there.
    const cells = { words: new Int32Array(BREAKER_WORDS), base: 0 };
    let now = 0;
    const b = new CircuitBreaker('unpublished', { consecutiveFailures: 1, resetMs: 100, probeTimeoutMs: 100, clock: { now: () => now } }, cells);
    b.failure(b.acquire());
    now = 100;
    expect(b.state).toBe('half-open');
    Atomics.add(cells.words, 0, 1 << 2); // a slot taken by a CAS whose thread wrote nothing after it
    expect(b.acquire()).toBe(-1);
    now = 199;
    expect(b.acquire()).toBe(-1);
    now = 200; // probeTimeoutMs since this thread saw it so: given up
    expect(CircuitBreaker.isProbe(b.acquire())).toBe(true);
    b.dispose();
  });
});
