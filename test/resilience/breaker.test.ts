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
