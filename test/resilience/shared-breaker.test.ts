/**
 * engine.breaker(name): one breaker state for the whole process, in the shared memory. Workers
 * open it by name and race the main thread on real threads; the totals must be exact.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { CircuitBreaker, ErrorCodes, type Engine } from '../../engine/index.js';
import { rejection, testEngine } from '../helpers.js';

let engine: Engine;
beforeAll(async () => {
  engine = await testEngine({ workers: 2 });
});
afterAll(() => engine.close());
afterEach(() => {
  vi.useRealTimers();
});

/** Starts `n` breakerHammer tasks behind one gate; returns their answers once all ran. */
async function hammer(name: string, n: number, args: { failures?: number; attempts?: number }, gateName: string, mine: () => void = () => undefined) {
  const gate = engine.runtime.region(gateName, 8).offset;
  const i32 = engine.runtime.thread.i32;
  const tasks = Array.from({ length: n }, () => engine.run('breakerHammer', { name, gate, ...args }));
  while (Atomics.load(i32, gate >>> 2) < n) await new Promise((r) => setImmediate(r));
  Atomics.store(i32, (gate >>> 2) + 1, 1); // go
  mine();
  return (await Promise.all(tasks)) as Array<{ passed: number; state: string }>;
}

describe('engine.breaker', () => {
  it('is one per name; a worker sees the state the main thread made, and the reverse', async () => {
    const b = engine.breaker('shared-a', { consecutiveFailures: 3, resetMs: 60_000 });
    expect(engine.breaker('shared-a')).toBe(b);
    expect(await engine.run('breakerState', { name: 'shared-a' })).toBe('closed');
    b.failure(); b.failure(); b.failure();
    expect(b.state).toBe('open');
    expect(await engine.run('breakerState', { name: 'shared-a' })).toBe('open');

    const c = engine.breaker('shared-b', { consecutiveFailures: 4, resetMs: 60_000 });
    const states: string[] = [];
    c.on('state', (to: string) => states.push(to));
    const [r] = await hammer('shared-b', 1, { failures: 4 }, 'test:breaker-gate-b');
    expect(r!.state).toBe('open');
    expect(c.state).toBe('open'); // opened by the worker, seen here…
    expect(states).toEqual(['open']); // …and announced to this thread's listeners
    expect(c.tryAcquire()).toBe(false);
  });

  it('counts failures from every thread exactly (no lost update)', async () => {
    const b = engine.breaker('exact-count', { consecutiveFailures: 1_000_000_000, volume: 1_000_000_000 });
    const per = 100_000;
    await hammer('exact-count', 2, { failures: per }, 'test:breaker-gate-c', () => {
      for (let i = 0; i < per; i++) b.failure();
    });
    const s = b.stats();
    expect(s.failures).toBe(3 * per);
    expect(s.consecutiveFailures).toBe(3 * per);
    expect(s.state).toBe('closed');
  });

  it('half-open: exactly halfOpenProbes calls pass, whichever threads race for them', async () => {
    let now = Date.now() - 60_000;
    // Opened a minute ago on this clock; the workers' clock (Date.now) is far past resetMs, so
    // for them, and for this thread once its clock moves, it is time to probe. (Near Date.now:
    // the probe deadline compares the times threads took their slots.)
    // (probeTimeoutMs: the race lasts longer than resetMs, and probes that have not reported by
    // then would be given up; see the next test.)
    const b = engine.breaker('probes', { consecutiveFailures: 1, resetMs: 10, halfOpenProbes: 3, probeTimeoutMs: 600_000 });
    const mine = CircuitBreaker.shared(engine.runtime.thread, 'probes', { consecutiveFailures: 1, resetMs: 10, halfOpenProbes: 3, clock: { now: () => now } });
    mine.failure();
    expect(b.state).toBe('half-open'); // the engine's breaker reads the real clock
    now = Date.now();
    let passedHere = 0;
    const theirs = await hammer('probes', 2, { attempts: 50_000 }, 'test:breaker-gate-p', () => {
      for (let i = 0; i < 50_000; i++) if (mine.tryAcquire()) passedHere++;
    });
    const total = passedHere + theirs.reduce((a, t) => a + t.passed, 0);
    expect(total).toBe(3);
    expect(b.stats().rejected).toBe(3 * 50_000 - 3);
    b.success(); // one probe succeeds: closed for every thread
    expect(await engine.run('breakerState', { name: 'probes' })).toBe('closed');
    mine.dispose();
  });

  it('probes given up: threads racing to start the next generation let exactly halfOpenProbes more through (review62 B2)', async () => {
    const t0 = Date.now() - 120_000; // by Date.now (the workers' clock), reset and probe deadline long past
    let now = t0;
    const b = engine.breaker('lost-probes', { consecutiveFailures: 1, resetMs: 10, halfOpenProbes: 3, probeTimeoutMs: 60_000 });
    const mine = CircuitBreaker.shared(engine.runtime.thread, 'lost-probes', { consecutiveFailures: 1, resetMs: 10, halfOpenProbes: 3, probeTimeoutMs: 60_000, clock: { now: () => now } });
    mine.failure(mine.acquire());
    now = t0 + 10;
    const lost = [mine.acquire(), mine.acquire(), mine.acquire()]; // taken at t0 + 10 and never reported
    expect(lost.every((t) => t > 0)).toBe(true);
    expect(mine.acquire()).toBe(-1);
    now = Date.now();
    let passedHere = 0;
    const theirs = await hammer('lost-probes', 2, { attempts: 50_000 }, 'test:breaker-gate-lp', () => {
      for (let i = 0; i < 50_000; i++) if (mine.tryAcquire()) passedHere++;
    });
    const total = passedHere + theirs.reduce((a, t) => a + t.passed, 0);
    expect(total).toBe(3); // one new generation, its three slots; the racers that lost see them taken
    // A given-up probe fails late, in its phase (the racers' new round is a round of it): it
    // reopens the breaker for every thread (review66 1); the others' outcomes then move nothing.
    mine.failure(lost[0]!);
    expect(mine.state).toBe('open');
    mine.success(lost[1]!);
    mine.success(lost[2]!);
    expect(mine.state).toBe('open');
    expect(mine.stats().consecutiveFailures).toBe(2);
    now += 10;
    mine.success(mine.acquire());
    expect(await engine.run('breakerState', { name: 'lost-probes' })).toBe('closed');
    mine.dispose();
  });

  it('a probe taken by a worker, given up by the racers’ new round, still closes it for every thread (review66 1)', async () => {
    const t0 = Date.now() - 120_000;
    let now = t0;
    const opts = { consecutiveFailures: 1, resetMs: 10, halfOpenProbes: 2, probeTimeoutMs: 60_000 };
    engine.breaker('slow-probes', opts);
    const mine = CircuitBreaker.shared(engine.runtime.thread, 'slow-probes', { ...opts, clock: { now: () => now } });
    mine.failure(mine.acquire());
    now = t0 + 10;
    const slow = [mine.acquire(), mine.acquire()]; // the phase's first round, given up by the racers below
    now = Date.now();
    await hammer('slow-probes', 2, { attempts: 20_000 }, 'test:breaker-gate-sp', () => {
      for (let i = 0; i < 20_000; i++) mine.tryAcquire();
    });
    expect(mine.state).toBe('half-open');
    mine.release(slow[1]!); // a void slot: frees none of the new round's
    expect(mine.acquire()).toBe(-1);
    mine.success(slow[0]!); // its success comes late, in its phase: closed, for every thread
    expect(await engine.run('breakerState', { name: 'slow-probes' })).toBe('closed');
    mine.dispose();
  });

  it('a handle with a longer timeoutMs gets its own default probe deadline (review66 1a)', () => {
    let now = 0;
    const clock = { now: () => now };
    const creator = CircuitBreaker.shared(engine.runtime.thread, 'handle-deadline', { consecutiveFailures: 1, resetMs: 200, clock });
    const h = CircuitBreaker.shared(engine.runtime.thread, 'handle-deadline', { consecutiveFailures: 1, resetMs: 200, timeoutMs: 1000, clock });
    h.failure(h.acquire());
    now = 200;
    expect(h.acquire()).toBeGreaterThan(0);
    now = 400; // the creator's default (resetMs) is past; this handle's (timeoutMs) is not
    expect(h.acquire()).toBe(-1);
    now = 1200;
    expect(h.acquire()).toBeGreaterThan(0);
    creator.dispose();
    h.dispose();
  });

  it('refuses to open an existing breaker with other thresholds, and validates options', () => {
    engine.breaker('conflict', { consecutiveFailures: 2 });
    expect(() => engine.breaker('conflict', { consecutiveFailures: 3 })).toThrow(expect.objectContaining({ code: ErrorCodes.REGION_CONFLICT }));
    expect(() => engine.breaker('bad', { errorRate: 2 })).toThrow(RangeError);
    expect(() => engine.breaker('bad', { halfOpenProbes: 5000 })).toThrow(/halfOpenProbes/);
    expect(() => engine.breaker('', {})).toThrow(TypeError);
    // A lone surrogate: the region name is UTF-8; the message names the breaker (review47).
    expect(() => engine.breaker('b\ud800')).toThrow(/breaker name must be well-formed/);
    expect(() => engine.breaker('bad', { isFailure: 3 as never })).toThrow(/isFailure/);
  });

  it('exposes its state and calls as Prometheus metrics', async () => {
    const b = engine.breaker('metered', { consecutiveFailures: 1 });
    await b.run(() => 1);
    await b.run(() => Promise.reject(new Error('down'))).catch(() => undefined);
    await b.run(() => 1).catch(() => undefined);
    const text = await engine.metrics.text();
    expect(text).toMatch(/hotpath_breaker_state\{breaker="metered"\} 2/);
    expect(text).toMatch(/hotpath_breaker_calls_total\{breaker="metered",result="success"\} 1/);
    expect(text).toMatch(/hotpath_breaker_calls_total\{breaker="metered",result="failure"\} 1/);
    expect(text).toMatch(/hotpath_breaker_calls_total\{breaker="metered",result="rejected"\} 1/);
  });

  it('a worker that dies holding the probe slot does not wedge it: given up after probeTimeoutMs (review62 B2)', async () => {
    let now = Date.now() - 1_000; // opened a second ago by this clock: due for the worker, on Date.now
    const mine = CircuitBreaker.shared(engine.runtime.thread, 'lost-probe', { consecutiveFailures: 1, resetMs: 10, probeTimeoutMs: 60_000, clock: { now: () => now } });
    mine.failure(mine.acquire());
    expect(mine.state).toBe('open');
    await rejection(engine.run('breakerProbeThenDie', { name: 'lost-probe' })); // took the probe slot, then died
    now = Date.now(); // after the worker took its slot
    expect(mine.state).toBe('half-open');
    expect(mine.acquire()).toBe(-1); // its slot: within the deadline
    now += 60_001;
    const probe = mine.acquire(); // past it: the lost probe is given up
    expect(probe).toBeGreaterThan(0);
    expect(CircuitBreaker.isProbe(probe)).toBe(true);
    mine.success(probe);
    expect(await engine.run('breakerState', { name: 'lost-probe' })).toBe('closed');
    mine.dispose();
  });

  it('a second call with other functions gets a handle with them on the same state; unknown names are refused (review62 B8)', async () => {
    const all = (): boolean => true;
    const a = engine.breaker('fns', { consecutiveFailures: 1, isFailure: all });
    expect(engine.breaker('fns', { consecutiveFailures: 1, isFailure: all })).toBe(a); // the same options: the same one
    const b = engine.breaker('fns', { consecutiveFailures: 1, isFailure: (err) => (err as { status?: number }).status !== 404 });
    expect(b).not.toBe(a);
    const notFound = Object.assign(new Error('not found'), { status: 404 });
    expect(await rejection(b.run(() => Promise.reject(notFound)))).toBe(notFound);
    expect(b.state).toBe('closed'); // its isFailure, not the first one's
    expect(b.stats().successes).toBe(1);
    await rejection(a.run(() => Promise.reject(notFound))); // the first handle keeps its own, on the same state
    expect(b.state).toBe('open');
    expect(() => engine.breaker('typo', { resetMS: 10 } as never)).toThrow(/options\.resetMS is not a known option/);
    expect(() => engine.breaker('typo', { timeout: 10 } as never)).toThrow(TypeError);
    expect(() => engine.breaker('fns', { consecutiveFailure: 1 } as never)).toThrow(/options\.consecutiveFailure is not a known option/);
    // Left out by the creator, probeTimeoutMs is each handle's own (review69 D10).
    expect(engine.breaker('fns', { consecutiveFailures: 1, probeTimeoutMs: 7 })).not.toBe(a);
  });

  it('is ctx.breaker(name) in a queue handler', async () => {
    const b = engine.breaker('in-queue', { consecutiveFailures: 1 });
    const q = engine.queue('breaker-q', { handler: (_p: unknown, ctx) => ctx.breaker('in-queue').run(() => { throw new Error('dependency down'); }) });
    await rejection(q.submit(1).result);
    expect(b.state).toBe('open');
    await q.close();
  });
});

describe('CircuitBreaker.run', () => {
  it('gives fn a signal that aborts on the timeout; the timeout counts as a failure', async () => {
    vi.useFakeTimers();
    const b = new CircuitBreaker('t', { consecutiveFailures: 1, timeoutMs: 50 });
    let seen: AbortSignal | undefined;
    const p = b.run((signal) => {
      seen = signal;
      return new Promise(() => undefined);
    });
    const settled = expect(p).rejects.toMatchObject({ code: ErrorCodes.TIMEOUT });
    await vi.advanceTimersByTimeAsync(50);
    await settled;
    expect(seen!.aborted).toBe(true);
    expect(b.state).toBe('open');
  });

  it('a per-call timeoutMs overrides the breaker’s', async () => {
    vi.useFakeTimers();
    const b = new CircuitBreaker('t', { consecutiveFailures: 5, timeoutMs: 10_000 });
    const p = b.run(() => new Promise(() => undefined), { timeoutMs: 5 });
    const settled = expect(p).rejects.toMatchObject({ code: ErrorCodes.TIMEOUT });
    await vi.advanceTimersByTimeAsync(5);
    await settled;
    expect(b.stats().failures).toBe(1);
  });

  it('an aborted call rejects with ERR_HOTPATH_CANCELLED, is not counted, and frees its probe slot', async () => {
    vi.useFakeTimers();
    const b = new CircuitBreaker('t', { consecutiveFailures: 1, resetMs: 100 });
    b.failure();
    vi.advanceTimersByTime(100);
    expect(b.state).toBe('half-open');
    const ac = new AbortController();
    const p = b.run(() => new Promise(() => undefined), { signal: ac.signal });
    expect(b.tryAcquire()).toBe(false); // the one probe slot is taken by the pending call
    ac.abort(new Error('client went away'));
    const err = await rejection(p);
    expect(err.code).toBe(ErrorCodes.CANCELLED);
    expect(b.stats().failures).toBe(1); // only the first
    expect(b.tryAcquire()).toBe(true); // the slot is free again
    const pre = new AbortController();
    pre.abort();
    expect((await rejection(b.run(() => 1, { signal: pre.signal }))).code).toBe(ErrorCodes.CANCELLED);
  });

  it('isFailure: errors it rejects are rethrown but count as successes (no fallback for them)', async () => {
    const b = new CircuitBreaker('t', { consecutiveFailures: 1, isFailure: (e) => (e as { status?: number }).status !== 404 });
    const notFound = Object.assign(new Error('nope'), { status: 404 });
    const err = await rejection(b.run(() => Promise.reject(notFound), { fallback: () => 'fb' }));
    expect(err.message).toBe('nope');
    expect(b.state).toBe('closed');
    expect(await b.run(() => Promise.reject(new Error('500')), { fallback: () => 'fb' })).toBe('fb');
    expect(b.state).toBe('open');
  });

  it('tickets: an outcome of another phase moves nothing; release frees only a probe’s own slot', () => {
    let now = 0;
    const b = new CircuitBreaker('t', { consecutiveFailures: 1, resetMs: 100, clock: { now: () => now } });
    const early = b.acquire(); // admitted while closed
    expect(early).toBeGreaterThanOrEqual(0);
    expect(CircuitBreaker.isProbe(early)).toBe(false);
    b.failure(b.acquire()); // another call fails: open
    now = 100;
    const probe = b.acquire();
    expect(CircuitBreaker.isProbe(probe)).toBe(true);
    expect(b.acquire()).toBe(-1); // one probe slot
    b.release(early); // the early call is abandoned: it held no slot, frees none
    expect(b.acquire()).toBe(-1);
    b.success(early); // …or it succeeds late: not the probe's answer, still half-open
    expect(b.state).toBe('half-open');
    b.failure(early);
    expect(b.state).toBe('half-open');
    b.release(probe); // the probe is abandoned: its slot is free again
    const probe2 = b.acquire();
    expect(CircuitBreaker.isProbe(probe2)).toBe(true);
    b.success(probe2);
    expect(b.state).toBe('closed');
    const failures = b.stats().failures;
    b.failure(probe); // a stale probe's late failure: counted, but it is not of this closed phase
    expect(b.state).toBe('closed'); // (consecutiveFailures: 1)
    expect(b.stats()).toMatchObject({ failures: failures + 1, consecutiveFailures: 0 });
    b.failure(b.acquire()); // a call of this phase does open it
    expect(b.state).toBe('open');
    b.dispose();
  });

  it('run() validates its per-call timeoutMs', async () => {
    const b = new CircuitBreaker('t', { consecutiveFailures: 1 });
    for (const bad of [0, -1, Number.NaN, '5' as never]) {
      expect((await rejection(b.run(() => 1, { timeoutMs: bad }))).message).toMatch(/options.timeoutMs must be a positive number/);
    }
    expect(b.state).toBe('closed');
  });

  it('keeps no per-call state: 200k calls leave the heap where it was', async () => {
    const b = new CircuitBreaker('flat', { consecutiveFailures: 1_000_000_000, volume: 1_000_000_000 });
    const round = async (n: number) => {
      for (let i = 0; i < n; i++) await b.run(() => i).catch(() => undefined);
    };
    // A full GC without --expose-gc on the command line: the flag set at run time, gc taken from a fresh context.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    await round(20_000);
    gc();
    const before = process.memoryUsage().heapUsed;
    await round(200_000);
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    expect(grown).toBeLessThan(1 << 20);
    expect(b.stats().successes).toBe(220_000);
  });
});

describe('engine.breaker (review69)', () => {
  it('every handle of one name in a thread hears every transition, once, whichever handle made it (D2)', () => {
    vi.useFakeTimers(); // the engine's clock reads Date.now; the handles' reset timers are setTimeout
    const opts = { consecutiveFailures: 2, resetMs: 200 };
    const events: string[] = [];
    const a = engine.breaker('hear-all', opts);
    a.on('state', (to: string, from: string) => events.push(`A ${from}>${to}`));
    const b = engine.breaker('hear-all', { ...opts, timeoutMs: 1000 }); // another handle (its own timeoutMs)
    expect(b).not.toBe(a);
    b.on('state', (to: string, from: string) => events.push(`B ${from}>${to}`));
    b.failure(b.acquire());
    b.failure(b.acquire()); // B opens it
    expect(events.sort()).toEqual(['A closed>open', 'B closed>open']);
    events.length = 0;
    vi.advanceTimersByTime(200); // B's reset timer: half-open, so A's listeners can probe
    expect(events.sort()).toEqual(['A open>half-open', 'B open>half-open']);
    events.length = 0;
    const probe = a.acquire(); // A's probe closes it
    a.success(probe);
    expect(b.state).toBe('closed');
    expect(events.sort()).toEqual(['A half-open>closed', 'B half-open>closed']);
    const c = engine.breaker('hear-all', { ...opts, isFailure: () => true }); // a later handle joins in step
    c.on('state', (to: string, from: string) => events.push(`C ${from}>${to}`));
    events.length = 0;
    a.failure(a.acquire());
    a.failure(a.acquire());
    expect(events.sort()).toEqual(['A closed>open', 'B closed>open', 'C closed>open']);
    a.dispose();
    b.dispose();
    c.dispose();
  });

  it('an errorRate of any size in (0, 1] is stored exactly: no rate rounded to 0 poisons the name (D1)', () => {
    const tiny = engine.breaker('tiny-rate', { errorRate: 4e-7, volume: 1 });
    expect(tiny.state).toBe('closed');
    expect(engine.breaker('tiny-rate').state).toBe('closed');
    const other = engine.breaker('tiny-rate', { errorRate: 4e-7, volume: 1, timeoutMs: 10 }); // compared exactly
    other.success(other.acquire());
    other.failure(other.acquire()); // 1 of 2 failed: over 4e-7
    expect(tiny.state).toBe('open');
    expect(() => engine.breaker('tiny-rate', { errorRate: 1e-9, volume: 1 })).toThrow(/exists with errorRate = 4e-7, not 1e-9/);
    engine.breaker('odd-rate', { errorRate: 1.5e-6 });
    expect(() => engine.breaker('odd-rate', { errorRate: 2e-6 })).toThrow(expect.objectContaining({ code: ErrorCodes.REGION_CONFLICT }));
  });

  it('refuses options that are not an object, and a name too long for its region, naming the breaker (D6)', () => {
    for (const bad of [null, 42, true, 'x']) {
      expect(() => engine.breaker('not-options', bad as never)).toThrow(/breaker options must be an object/);
    }
    expect(() => engine.breaker('n'.repeat(41))).toThrow(/breaker name must be at most 40 UTF-8 bytes .*got 41/);
    expect(() => engine.breaker('é'.repeat(21))).toThrow(RangeError); // 42 bytes
    expect(engine.breaker('n'.repeat(40)).state).toBe('closed');
  });

  it('probeTimeoutMs: a threshold when the creator set it, else each handle’s own (D10)', () => {
    let now = 0;
    const clock = { now: () => now };
    engine.breaker('pt-default', { resetMs: 1000 });
    expect(engine.breaker('pt-default', { resetMs: 1000, probeTimeoutMs: 3000 }).name).toBe('pt-default');
    const creator = CircuitBreaker.shared(engine.runtime.thread, 'pt-own', { consecutiveFailures: 1, resetMs: 200, clock });
    const h = CircuitBreaker.shared(engine.runtime.thread, 'pt-own', { consecutiveFailures: 1, resetMs: 200, probeTimeoutMs: 1000, clock });
    h.failure(h.acquire());
    now = 200;
    expect(h.acquire()).toBeGreaterThan(0);
    now = 1199; // past the creator's default deadline (resetMs), within this handle's own
    expect(h.acquire()).toBe(-1);
    now = 1200;
    expect(h.acquire()).toBeGreaterThan(0);
    engine.breaker('pt-set', { resetMs: 1000, probeTimeoutMs: 2000 });
    expect(engine.breaker('pt-set', { resetMs: 1000, probeTimeoutMs: 2000, timeoutMs: 5 }).name).toBe('pt-set');
    expect(() => engine.breaker('pt-set', { resetMs: 1000, probeTimeoutMs: 3000 })).toThrow(/exists with probeTimeoutMs = 2000, not 3000/);
    creator.dispose();
    h.dispose();
  });
});
