/**
 * The in-memory queue with function handlers (on this thread): ordering, retries and back-off on
 * fake timers, dead letters, cancel, delays, ids, back-pressure, flow control, close, bad input.
 * Worker (module) handlers: queue-workers.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ErrorCodes, Queue, type HandlerContext, type QueueOptions, type TaskHandle } from '../../engine/index.js';
import { rejection } from '../helpers.js';

/** A handler whose calls the test settles by hand. */
function manual<R = unknown>(): {
  handler: (payload: unknown, ctx: HandlerContext) => Promise<R>;
  calls: Array<{ payload: unknown; ctx: HandlerContext; resolve(v: R): void; reject(e: unknown): void }>;
} {
  const calls: Array<{ payload: unknown; ctx: HandlerContext; resolve(v: R): void; reject(e: unknown): void }> = [];
  return {
    calls,
    handler: (payload, ctx) => new Promise<R>((resolve, reject) => calls.push({ payload, ctx, resolve, reject })),
  };
}

/** Settles promise callbacks (no timers involved, so it works under fake timers too). */
async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}


const queues: Array<Queue<any, any>> = [];
function queue<P = unknown, R = unknown>(options: QueueOptions<P, R>, name = 'q'): Queue<P, R> {
  // killAfterMs 0: afterEach's close() abandons a stuck test handler at once.
  const q = new Queue<P, R>(name, { killAfterMs: 0, ...options }, { random: () => 0.5 });
  queues.push(q);
  return q;
}

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(queues.splice(0).map((q) => q.close(0)));
});

describe('priorities', () => {
  it('10k tasks of mixed priorities start in (priority, submission) order within the concurrency window', async () => {
    const concurrency = 4;
    const levels = 8;
    // The model: per priority level, the ids queued and not yet started, in submission order.
    const waiting: number[][] = Array.from({ length: levels }, () => []);
    const running = new Set<number>();
    let violations = 0;
    let started = 0;
    const pending: Array<() => void> = [];
    const q = queue<{ n: number; p: number }>({
      concurrency,
      handler: ({ n, p }) => {
        // Started: it must be the head of the lowest non-empty level of what was queued.
        const head = waiting.findIndex((l) => l.length > 0);
        if (head !== p || waiting[p]![0] !== n) violations++;
        waiting[p]!.shift();
        running.add(n);
        started++;
        if (running.size > concurrency) violations++;
        return new Promise<void>((resolve) => pending.push(() => {
          running.delete(n);
          resolve();
        }));
      },
    });
    let n = 0;
    const all: TaskHandle[] = [];
    const submit = (): void => {
      const p = (n * 7919) % levels;
      const id = n++;
      // A task that starts inside submit() is not "waiting": record it first, the handler removes it.
      waiting[p]!.push(id);
      all.push(q.submit({ n: id, p }, { priority: p }));
    };
    for (let i = 0; i < 5000; i++) submit();
    // Under load: settle running tasks in a shuffled order while more arrive.
    let seed = 1;
    while (started < 10_000 || pending.length > 0) {
      if (n < 10_000) for (let i = 0; i < 50 && n < 10_000; i++) submit();
      while (pending.length > 0) {
        seed = (seed * 48271) % 2147483647;
        pending.splice(seed % pending.length, 1)[0]!();
      }
      await new Promise((r) => setImmediate(r)); // every promise callback has run
    }
    await Promise.all(all.map((h) => h.result));
    expect(violations).toBe(0);
    expect(started).toBe(10_000);
  });

  it('a task submitted while a slot is free starts before any task submitted after it, whatever their priority', async () => {
    const order: string[] = [];
    const m = manual();
    const q = queue({ concurrency: 1, handler: (p, ctx) => (order.push(p as string), m.handler(p, ctx)) });
    q.submit('low first', { priority: 'low' });
    q.submit('critical second', { priority: 'critical' });
    q.submit('normal third');
    expect(order).toEqual(['low first']);
    m.calls[0]!.resolve(undefined);
    await flush();
    m.calls[1]!.resolve(undefined);
    await flush();
    expect(order).toEqual(['low first', 'critical second', 'normal third']);
  });

  it('named levels and numbers share one scale (critical 0, high 1, normal 2, low 3); FIFO within a level', async () => {
    const order: unknown[] = [];
    const q = queue({ concurrency: 1, handler: (p) => void order.push(p) });
    q.pause();
    q.submit('n1');
    q.submit('low', { priority: 'low' });
    q.submit(-5, { priority: -5 });
    q.submit('n2', { priority: 2 });
    q.submit('high', { priority: 'high' });
    q.submit('c', { priority: 'critical' });
    q.submit(10, { priority: 10 });
    q.resume();
    await q.drain();
    expect(order).toEqual([-5, 'c', 'high', 'n1', 'n2', 'low', 10]);
  });

  it('aging: a low task that waited long enough runs before a fresh high one', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const order: unknown[] = [];
    const q = queue({ concurrency: 1, agingMs: 100, handler: (p) => void order.push(p) });
    q.pause();
    q.submit('old low', { priority: 'low' }); // key 3 + 0
    vi.setSystemTime(1_000_250);
    q.submit('fresh high', { priority: 'high' }); // key 1 + 2.5: the low one (3) ran 2.5 levels up... no: 3 > 3.5? see below
    q.submit('fresh critical', { priority: 'critical' }); // 0 + 2.5
    q.resume();
    await q.drain();
    // keys: old low 3.0, fresh high 3.5, fresh critical 2.5
    expect(order).toEqual(['fresh critical', 'old low', 'fresh high']);
  });
});

describe('retries and back-off (fake timers)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
  });

  it('exponential without jitter: attempts at 0, 100, 300, 700 ms, then the task is dead', async () => {
    const starts: number[] = [];
    const q = queue({ retry: { attempts: 4, backoff: 'exponential', delayMs: 100, jitter: 'none' }, handler: () => {
      starts.push(Date.now());
      throw new Error('boom');
    } });
    const h = q.submit('x');
    await vi.runAllTimersAsync();
    const err = await rejection(h.result);
    expect(err.message).toBe('boom');
    expect(starts).toEqual([0, 100, 300, 700]);
    expect(q.status(h.id)).toMatchObject({ state: 'dead', attempts: 4, error: { message: 'boom' } });
  });

  it('the cap, fixed back-off, full and decorrelated jitter, and a back-off function', async () => {
    const run = async (retry: QueueOptions['retry'], random = 0.5): Promise<number[]> => {
      const starts: number[] = [];
      vi.setSystemTime(0);
      const q = new Queue('r', { retry, handler: () => {
        starts.push(Date.now());
        throw new Error('again');
      } }, { random: () => random });
      queues.push(q);
      const h = q.submit(1);
      await vi.runAllTimersAsync();
      await rejection(h.result);
      return starts.map((t, i) => (i === 0 ? t : t - starts[i - 1]!));
    };
    expect(await run({ attempts: 5, delayMs: 100, maxDelayMs: 250, jitter: 'none' })).toEqual([0, 100, 200, 250, 250]);
    expect(await run({ attempts: 3, backoff: 'fixed', delayMs: 40, jitter: 'none' })).toEqual([0, 40, 40]);
    // full: uniform in [0, delay] → with random 0.5, floor(0.5 × (delay + 1))
    expect(await run({ attempts: 3, delayMs: 100, jitter: 'full' })).toEqual([0, 50, 100]);
    // decorrelated: uniform in [base, 3 × previous] capped → random 0: always the base
    expect(await run({ attempts: 3, delayMs: 100, jitter: 'decorrelated' }, 0)).toEqual([0, 100, 100]);
    expect(await run({ attempts: 3, delayMs: 100, maxDelayMs: 1000, jitter: 'decorrelated' }, 0.999)).toEqual([0, 300, 900]);
    expect(await run({ attempts: 4, backoff: (attempt) => attempt * 7 })).toEqual([0, 7, 14, 21]);
  });

  it('retryable(error) false ends the retries at once; cancellation is never retried', async () => {
    let calls = 0;
    const q = queue({ retry: { attempts: 5, delayMs: 10, retryable: (e) => (e as Error).message !== 'fatal' }, handler: () => {
      calls++;
      throw new Error('fatal');
    } });
    const h = q.submit(0);
    await vi.runAllTimersAsync();
    expect((await rejection(h.result)).message).toBe('fatal');
    expect(calls).toBe(1);
  });

  it('a retry succeeds: the result resolves and events tell the story', async () => {
    const events: string[] = [];
    const q = queue({ retry: { attempts: 3, delayMs: 10, jitter: 'none' }, handler: (_p, ctx) => {
      if (ctx.attempt < 3) throw new Error(`attempt ${ctx.attempt}`);
      return `ok on ${ctx.attempt}`;
    } });
    for (const e of ['queued', 'running', 'completed', 'failed', 'retried', 'dead', 'cancelled'] as const) q.on(e, (x: { attempt?: number }) => events.push(`${e}${x.attempt ?? ''}`));
    const h = q.submit(0);
    await vi.runAllTimersAsync();
    expect(await h.result).toBe('ok on 3');
    expect(events).toEqual(['queued', 'running1', 'failed1', 'retried1', 'running2', 'failed2', 'retried2', 'running3', 'completed3']);
    expect(q.totals()).toMatchObject({ submitted: 1, completed: 1, failed: 2, retried: 2, dead: 0 });
  });

  it('a throwing back-off function ends the retries and keeps both errors', async () => {
    const q = queue({ retry: { attempts: 3, backoff: () => { throw new Error('bad backoff'); } }, handler: () => {
      throw new Error('task error');
    } });
    const h = q.submit(0);
    await vi.runAllTimersAsync();
    const err = await rejection(h.result);
    expect(err.message).toContain('bad backoff');
    expect((err as unknown as AggregateError).errors.map((e: Error) => e.message)).toEqual(['task error', 'bad backoff']);
  });
});

describe('dead letters', () => {
  it('exist before the result rejects, hold the error, attempts and timestamps; requeue and purge', async () => {
    vi.useFakeTimers({ now: 5000 });
    let fail = true;
    const q = queue<{ n: number }, string>({ retry: { attempts: 2, delayMs: 10, jitter: 'none' }, handler: (p) => {
      if (fail) throw Object.assign(new Error(`no ${p.n}`), { code: 'E_NOPE' });
      return `done ${p.n}`;
    } });
    const h = q.submit({ n: 1 }, { id: 'job-1', priority: 'high' });
    let seenInRejection: unknown;
    const checked = h.result.catch(async () => {
      seenInRejection = (await q.deadLetters()).map((d) => d.id);
    });
    await vi.runAllTimersAsync();
    await checked;
    expect(seenInRejection).toEqual(['job-1']);
    const [d] = await q.deadLetters();
    expect(d).toMatchObject({ id: 'job-1', payload: { n: 1 }, priority: 1, attempts: 2, submittedAt: 5000, failedAt: 5010, error: { name: 'Error', message: 'no 1', code: 'E_NOPE' } });
    expect(q.counts().dead).toBe(1);
    fail = false;
    const again = await q.requeue('job-1');
    expect(again!.id).toBe('job-1');
    expect(await again!.result).toBe('done 1');
    expect(await q.deadLetters()).toEqual([]);
    expect(await q.requeue('job-1')).toBeUndefined();
    fail = true;
    q.submit({ n: 2 }).result.catch(() => undefined);
    q.submit({ n: 3 }).result.catch(() => undefined);
    await vi.runAllTimersAsync();
    expect(await q.purge()).toBe(2);
    expect(await q.deadLetters()).toEqual([]);
  });

  it('retention is bounded (newest kept); deadLetterRetention 0 marks tasks failed instead', async () => {
    const q = queue({ deadLetterRetention: 3, handler: (p) => {
      throw new Error(String(p));
    } });
    for (let i = 0; i < 10; i++) q.submit(i).result.catch(() => undefined);
    await q.drain();
    expect((await q.deadLetters()).map((d) => d.payload)).toEqual([7, 8, 9]);
    const q2 = queue({ deadLetterRetention: 0, handler: () => {
      throw new Error('x');
    } }, 'q2');
    const h = q2.submit(0);
    await rejection(h.result);
    expect(q2.status(h.id)!.state).toBe('failed');
    expect(await q2.deadLetters()).toEqual([]);
  });
});

describe('cancel', () => {
  it('a queued task never runs; its result rejects with ERR_HOTPATH_CANCELLED; cancel is synchronous', async () => {
    const m = manual();
    const ran: unknown[] = [];
    const q = queue({ concurrency: 1, handler: (p, ctx) => (ran.push(p), m.handler(p, ctx)) });
    q.submit('a');
    const b = q.submit('b');
    expect(q.cancel(b.id)).toBe(true);
    expect(q.status(b.id)!.state).toBe('cancelled');
    expect(q.cancel(b.id)).toBe(false);
    expect((await rejection(b.result)).code).toBe(ErrorCodes.CANCELLED);
    m.calls[0]!.resolve(undefined);
    await q.drain();
    expect(ran).toEqual(['a']);
    expect(q.cancel('nope')).toBe(false);
  });

  it('a running task: its signal aborts, it is not retried, the result rejects with ERR_HOTPATH_CANCELLED', async () => {
    let calls = 0;
    const q = queue({ retry: { attempts: 3, delayMs: 0 }, handler: (_p, ctx) => {
      calls++;
      return new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('stopped'))));
    } });
    const h = q.submit(0);
    expect(q.status(h.id)!.state).toBe('running');
    q.cancel(h.id);
    expect((await rejection(h.result)).code).toBe(ErrorCodes.CANCELLED);
    expect(q.status(h.id)!.state).toBe('cancelled');
    expect(calls).toBe(1);
    expect(q.counts()).toMatchObject({ running: 0, queued: 0 });
  });

  it('cancelled before its attempt has a handle — from a running listener, or by the handler itself — it still ends cancelled (review28)', async () => {
    // Sync handler that cancels its own task: the handler returns, the result still rejects.
    let q!: Queue<number, string>;
    q = queue<number, string>({ handler: (_p, ctx) => {
      expect(q.cancel(ctx.id)).toBe(true);
      return 'ran';
    } }, 'self-cancel');
    const self = q.submit(1);
    expect((await rejection(self.result)).code).toBe(ErrorCodes.CANCELLED);
    expect(q.status(self.id)!.state).toBe('cancelled');
    // Async handler, cancelled from the 'running' event (before the attempt is started): its
    // signal aborts and the result rejects even though the handler would have resolved.
    let aborted = false;
    const r = queue<number, string>({ timeout: 1000, handler: (_p, ctx) => new Promise((resolve) => {
      ctx.signal.addEventListener('abort', () => (aborted = true));
      setImmediate(() => resolve('finished'));
    }) }, 'listener-cancel');
    r.on('running', ({ id }) => expect(r.cancel(id)).toBe(true));
    const h = r.submit(1);
    expect((await rejection(h.result)).code).toBe(ErrorCodes.CANCELLED);
    expect(aborted).toBe(true);
    expect(r.counts()).toMatchObject({ running: 0 });
  });

  it('a running function that ignores its signal is abandoned after killAfterMs (its slot freed)', async () => {
    vi.useFakeTimers({ now: 0 });
    const m = manual();
    const q = queue({ concurrency: 1, killAfterMs: 500, handler: m.handler });
    const h = q.submit('stuck');
    const next = q.submit('next');
    q.cancel(h.id);
    await vi.advanceTimersByTimeAsync(499);
    expect(m.calls.length).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect((await rejection(h.result)).code).toBe(ErrorCodes.CANCELLED);
    expect(m.calls.length).toBe(2);
    m.calls[0]!.resolve('too late'); // ignored
    m.calls[1]!.resolve('fine');
    expect(await next.result).toBe('fine');
  });

  it('through the signal option, also when it is aborted before submit', async () => {
    const m = manual();
    const q = queue({ concurrency: 1, handler: m.handler });
    q.submit('busy');
    const ac = new AbortController();
    const h = q.submit('x', { signal: ac.signal });
    ac.abort();
    expect((await rejection(h.result)).code).toBe(ErrorCodes.CANCELLED);
    const dead = q.submit('y', { signal: AbortSignal.abort() });
    expect((await rejection(dead.result)).code).toBe(ErrorCodes.CANCELLED);
    expect(q.counts().queued).toBe(0);
  });

  it('many cancelled tasks leave no trace: tombstones are compacted and the heap stays bounded', async () => {
    const q = queue({ concurrency: 1, maxQueued: 2000, handler: manual().handler });
    q.submit('blocker');
    for (let round = 0; round < 20; round++) {
      const hs = Array.from({ length: 1500 }, (_, i) => q.submit(i));
      for (const h of hs) {
        q.cancel(h.id);
        h.result.catch(() => undefined);
      }
    }
    expect(q.counts().queued).toBe(0);
    const last = Array.from({ length: 2000 }, (_, i) => q.submit(i)); // fits: tombstones are gone
    expect(last.length).toBe(2000);
    for (const h of last) h.result.catch(() => undefined);
  });
});

describe('timeouts (fake timers)', () => {
  it('the signal aborts at the timeout; an attempt that stops fails with ERR_HOTPATH_TIMEOUT and is retried', async () => {
    vi.useFakeTimers({ now: 0 });
    let attempts = 0;
    const q = queue({ timeout: 100, retry: { attempts: 2, delayMs: 0 }, handler: (_p, ctx) => {
      attempts++;
      return new Promise((resolve, reject) => {
        if (ctx.attempt === 2) resolve('second time lucky');
        ctx.signal.addEventListener('abort', () => reject(new Error('aborted')));
      });
    } });
    const h = q.submit(0);
    await vi.advanceTimersByTimeAsync(100);
    expect(await h.result).toBe('second time lucky');
    expect(attempts).toBe(2);
    const h2 = q.submit(0, { timeout: 50 });
    expect(h2).toBeDefined();
    await vi.advanceTimersByTimeAsync(50);
    expect(await h2.result).toBe('second time lucky');
  });

  it('a timed-out attempt that ignores its signal fails after killAfterMs with ERR_HOTPATH_TIMEOUT', async () => {
    vi.useFakeTimers({ now: 0 });
    const q = queue({ timeout: 100, killAfterMs: 200, handler: () => new Promise(() => undefined) });
    const h = q.submit(0);
    await vi.advanceTimersByTimeAsync(299);
    expect(q.status(h.id)!.state).toBe('running');
    await vi.advanceTimersByTimeAsync(1);
    expect((await rejection(h.result)).code).toBe(ErrorCodes.TIMEOUT);
    expect(q.status(h.id)).toMatchObject({ state: 'dead', error: { code: ErrorCodes.TIMEOUT } });
  });
});

describe('delayed tasks (fake timers)', () => {
  it('run no earlier than delayMs; status says delayed with runAt; they keep priority order once due', async () => {
    vi.useFakeTimers({ now: 1000 });
    const order: unknown[] = [];
    const q = queue({ concurrency: 1, handler: (p) => void order.push([p, Date.now()]) });
    const a = q.submit('later', { delayMs: 500 });
    q.submit('sooner', { delayMs: 200 });
    q.submit('now');
    expect(q.status(a.id)).toMatchObject({ state: 'delayed', runAt: 1500 });
    expect(q.counts()).toMatchObject({ delayed: 2 });
    await vi.advanceTimersByTimeAsync(199);
    expect(order).toEqual([['now', 1000]]);
    await vi.advanceTimersByTimeAsync(301);
    expect(order).toEqual([['now', 1000], ['sooner', 1200], ['later', 1500]]);
  });

  it('a delayed task already due goes before a task submitted after it, even before its timer fires (review28)', async () => {
    vi.useFakeTimers({ now: 0 });
    const m = manual();
    const q = queue({ concurrency: 1, handler: m.handler });
    q.submit('delayed', { delayMs: 100 });
    vi.setSystemTime(150); // due; its timer has not fired yet
    q.submit('new');
    expect(m.calls.map((c) => c.payload)).toEqual(['delayed']);
    expect(q.counts()).toMatchObject({ queued: 1, delayed: 0, running: 1 });
    expect(vi.getTimerCount()).toBe(0); // its timer cleared, not left to fire for nothing
    m.calls[0]!.resolve(undefined);
    await flush();
    expect(m.calls.map((c) => c.payload)).toEqual(['delayed', 'new']);
  });

  it('an immediate retry does not go ahead of a delayed task that is already due (review34)', async () => {
    vi.useFakeTimers({ now: 0 });
    const order: unknown[] = [];
    const m = manual();
    const q = queue({ concurrency: 1, retry: { attempts: 2, delayMs: 0, backoff: 'fixed', jitter: 'none' }, handler: (p, ctx) => {
      order.push(`${String(p)}#${ctx.attempt}`);
      return m.handler(p, ctx);
    } });
    q.submit('flaky');
    q.submit('delayed', { delayMs: 100 });
    vi.setSystemTime(150); // due; its timer has not fired yet
    m.calls[0]!.reject(new Error('once')); // retried at once (delayMs 0)
    await flush();
    m.calls[1]?.resolve(undefined);
    await flush();
    expect(order.slice(0, 3)).toEqual(['flaky#1', 'delayed#1', 'flaky#2']);
  });

  it('a cancelled delayed task never runs', async () => {
    vi.useFakeTimers({ now: 0 });
    const ran: unknown[] = [];
    const q = queue({ handler: (p) => void ran.push(p) });
    const h = q.submit('x', { delayMs: 100 });
    expect(q.cancel(h.id)).toBe(true);
    await vi.advanceTimersByTimeAsync(200);
    expect(ran).toEqual([]);
    expect((await rejection(h.result)).code).toBe(ErrorCodes.CANCELLED);
  });
});

describe('ids, back-pressure, flow', () => {
  it('an id that is queued, delayed or running returns the existing handle; once finished, a new task', async () => {
    const m = manual();
    const q = queue({ concurrency: 1, handler: m.handler });
    const a = q.submit('first', { id: 'same' });
    expect(q.submit('second', { id: 'same' })).toBe(a);
    const d = q.submit('d1', { id: 'delayed', delayMs: 10_000 });
    expect(q.submit('d2', { id: 'delayed' })).toBe(d);
    q.cancel('delayed');
    d.result.catch(() => undefined);
    m.calls[0]!.resolve('one');
    expect(await a.result).toBe('one');
    const b = q.submit('third', { id: 'same' });
    expect(b).not.toBe(a);
    await flush();
    m.calls[1]!.resolve('two');
    expect(await b.result).toBe('two');
    expect(m.calls.map((c) => c.payload)).toEqual(['first', 'third']);
  });

  it('maxQueued: submit throws ERR_HOTPATH_QUEUE_FULL, trySubmit answers false, submitMany is all or nothing', () => {
    const q = queue({ concurrency: 1, maxQueued: 3, handler: manual().handler });
    q.submit('running'); // not queued: it runs
    for (let i = 0; i < 3; i++) q.submit(i);
    expect(() => q.submit('x')).toThrow(expect.objectContaining({ code: ErrorCodes.QUEUE_FULL }));
    expect(q.trySubmit('x')).toBe(false);
    const q2 = queue({ concurrency: 1, maxQueued: 3, handler: manual().handler }, 'q2');
    q2.pause();
    expect(() => q2.submitMany([1, 2, 3, 4])).toThrow(expect.objectContaining({ code: ErrorCodes.QUEUE_FULL }));
    expect(q2.counts().queued).toBe(0);
    expect(q2.submitMany([1, 2, 3]).length).toBe(3);
  });

  it('pause stops starting tasks, resume starts them; drain waits for queued, delayed and running', async () => {
    vi.useFakeTimers({ now: 0 });
    const ran: unknown[] = [];
    const q = queue({ concurrency: 2, handler: (p) => void ran.push(p) });
    q.pause();
    q.submitMany([1, 2, 3]);
    q.submit(4, { delayMs: 50 });
    await flush();
    expect(ran).toEqual([]);
    let drained = false;
    void q.drain().then(() => (drained = true));
    q.resume();
    await flush();
    expect(ran).toEqual([1, 2, 3]);
    expect(drained).toBe(false);
    await vi.advanceTimersByTimeAsync(50);
    expect(ran).toEqual([1, 2, 3, 4]);
    expect(drained).toBe(true);
  });

  it('status records of finished tasks are bounded by statusRetention (newest kept)', async () => {
    const q = queue({ statusRetention: 5, handler: (p) => p });
    const hs = Array.from({ length: 20 }, (_, i) => q.submit(i));
    await q.drain();
    expect(hs.slice(0, 15).every((h) => q.status(h.id) === undefined)).toBe(true);
    expect(hs.slice(15).map((h) => q.status(h.id)!.state)).toEqual(Array(5).fill('succeeded'));
    expect(q.status(hs[19]!.id)).toMatchObject({ attempts: 1, priority: 2 });
  });
});

describe('edges found in review', () => {
  it('a task cancelled from a queued listener, or by a due task started while it is accepted, never runs (review57)', async () => {
    let runs = 0;
    const q = queue({ handler: () => void runs++ });
    q.on('queued', (e: { id: string }) => {
      if (e.id === 'x') expect(q.cancel('x')).toBe(true);
    });
    const h = q.submit(1, { id: 'x' });
    expect((await rejection(h.result)).code).toBe(ErrorCodes.CANCELLED); // before: ran, and fulfilled
    expect(runs).toBe(0);
    expect(q.status('x')?.state).toBe('cancelled');
    expect(q.totals()).toMatchObject({ cancelled: 1, completed: 0 });
    // A delayed task already due is started when the next task is accepted: its handler cancels that task.
    vi.useFakeTimers({ now: 0 });
    const seen: unknown[] = [];
    const r = queue({ handler: (p) => {
      seen.push(p);
      if (p === 'due') r.cancel('late');
    } }, 'r');
    r.submit('due', { delayMs: 10 });
    vi.setSystemTime(20); // due, its timer not fired yet
    const late = r.submit('X', { id: 'late' });
    expect((await rejection(late.result)).code).toBe(ErrorCodes.CANCELLED);
    await flush();
    expect(seen).toEqual(['due']); // before: the cancelled task ran too, with payload undefined
  });

  it('a task cancelled from a failed or retried listener is neither retried nor dead-lettered (review57)', async () => {
    for (const event of ['failed', 'retried'] as const) {
      let calls = 0;
      const q = queue({ retry: { attempts: 2, backoff: 'fixed', delayMs: 0, jitter: 'none' }, handler: () => {
        calls++;
        throw new Error('boom');
      } }, `c-${event}`);
      q.on(event, (e: { id: string }) => void q.cancel(e.id));
      const h = q.submit(1, { id: 'x' });
      expect((await rejection(h.result)).code).toBe(ErrorCodes.CANCELLED);
      await flush();
      expect(calls).toBe(1); // before: attempt 2 ran
      expect(q.status('x')?.state).toBe('cancelled');
      expect(await q.deadLetters()).toEqual([]);
    }
    // With no attempt left (attempts: 1), a cancel from 'failed' is not a dead letter either.
    const one = queue({ handler: () => {
      throw new Error('boom');
    } }, 'one');
    one.on('failed', (e: { id: string }) => void one.cancel(e.id));
    expect((await rejection(one.submit(1, { id: 'y' }).result)).code).toBe(ErrorCodes.CANCELLED);
    expect(await one.deadLetters()).toEqual([]);
    expect(one.totals()).toMatchObject({ dead: 0, cancelled: 1 });
  });

  it('a task with a generated id stays findable when a queued listener looks a task up first (review57)', async () => {
    const m = manual();
    const q = queue({ handler: m.handler });
    let first: string | undefined;
    q.on('queued', (e: { id: string }) => {
      first ??= e.id;
      q.status(e.id); // builds the index of generated ids, before this task is in it
    });
    const h = q.submit('p');
    await flush();
    expect(m.calls).toHaveLength(1);
    expect(q.status(h.id)?.state).toBe('running'); // before: undefined
    expect(q.cancel(h.id)).toBe(true);
  });

  it('a task with a generated id is found from a queued, failed or retried listener, where the first lookup happens (review59)', async () => {
    // queued: cancel() from the listener is the queue's first lookup of a generated id.
    let runs = 0;
    const q = queue({ handler: () => void runs++ }, 'gq');
    let inListener: string | undefined;
    q.once('queued', (e: { id: string }) => {
      inListener = q.status(e.id)?.state;
      expect(q.cancel(e.id)).toBe(true); // before: false, and the task ran
    });
    const h = q.submit(7);
    expect(inListener).toBe('queued');
    expect((await rejection(h.result)).code).toBe(ErrorCodes.CANCELLED);
    expect(runs).toBe(0);
    // failed / retried: the task is between two attempts (in neither a slot nor the delayed heap).
    for (const event of ['failed', 'retried'] as const) {
      vi.useFakeTimers({ now: 0 });
      let calls = 0;
      const r = queue({ retry: { attempts: 3, backoff: 'fixed', delayMs: 20, jitter: 'none' }, handler: () => {
        calls++;
        throw new Error('boom');
      } }, `g-${event}`);
      let cancelled: boolean | undefined;
      r.once(event, (e: { id: string }) => {
        expect(r.status(e.id)).toBeDefined(); // before: undefined
        cancelled = r.cancel(e.id);
      });
      const t = r.submit(1);
      expect(cancelled).toBe(true); // before: false, and attempts 2 and 3 ran, then a dead letter
      expect((await rejection(t.result)).code).toBe(ErrorCodes.CANCELLED);
      await vi.advanceTimersByTimeAsync(100);
      expect(calls).toBe(1);
      expect(r.status(t.id)?.state).toBe('cancelled');
      expect(await r.deadLetters()).toEqual([]);
      vi.useRealTimers();
    }
    // While it waits for its retry (delayed), looked up first then: found too.
    vi.useFakeTimers({ now: 0 });
    const w = queue({ retry: { attempts: 2, backoff: 'fixed', delayMs: 20, jitter: 'none' }, handler: () => {
      throw new Error('boom');
    } }, 'g-wait');
    const t = w.submit(1);
    await flush();
    expect(w.status(t.id)?.state).toBe('delayed');
    expect(w.cancel(t.id)).toBe(true);
    expect((await rejection(t.result)).code).toBe(ErrorCodes.CANCELLED);
  });

  it('with a retry delay of 0, a cancel() by a due delayed task started between two attempts stops the next attempt (review59)', async () => {
    vi.useFakeTimers({ now: 0 });
    const seen: string[] = [];
    let cancelled: boolean | undefined;
    let failFirst!: (e: Error) => void;
    const q = queue({ concurrency: 1, retry: { attempts: 3, backoff: 'fixed', delayMs: 0, jitter: 'none' }, handler: (p: unknown, ctx) => {
      seen.push(`${String(p)}#${ctx.attempt}`);
      if (p === 'd') {
        cancelled = q.cancel('r');
        return undefined;
      }
      if (ctx.attempt === 1) return new Promise((_, reject) => (failFirst = reject));
      return 'ran after its cancel';
    } });
    q.submit('d', { id: 'd', delayMs: 5 });
    const h = q.submit('r', { id: 'r' });
    expect(seen).toEqual(['r#1']);
    vi.setSystemTime(10); // 'd' is due; its timer has not fired yet
    failFirst(new Error('x'));
    expect((await rejection(h.result)).code).toBe(ErrorCodes.CANCELLED);
    await flush();
    expect(cancelled).toBe(true);
    expect(seen).toEqual(['r#1', 'd#1']); // before: 'r#2' ran too
    expect(q.totals()).toMatchObject({ cancelled: 1, completed: 1 });
  });

  it('submitMany accepts its whole batch before any task starts: a handler that closes the queue finds it queued (review57)', async () => {
    for (const grace of [0, 1000]) {
      const runs: unknown[] = [];
      let closing: Promise<void> | undefined;
      const q = queue<number>({ concurrency: 2, handler: (p) => {
        runs.push(p);
        if (p === 0) closing = q.close(grace);
        return p;
      } }, `b${grace}`);
      const hs = q.submitMany([0, 1, 2, 3, 4]);
      const outcomes = await Promise.all(hs.map((h) => h.result.then((v) => v, (e: { code?: string }) => e.code)));
      await closing;
      if (grace === 0) {
        // close(0): everything accepted and not finished ends closed; nothing starts after it.
        expect(outcomes).toEqual(Array(5).fill(ErrorCodes.CLOSED)); // before: 1–4 ran and fulfilled
        expect(runs).toEqual([0]);
      } else {
        // A grace: the batch, accepted before close(), runs in it.
        expect(outcomes).toEqual([0, 1, 2, 3, 4]); // before: 1–4 rejected ERR_HOTPATH_CLOSED at once
        expect(runs).toEqual([0, 1, 2, 3, 4]);
      }
    }
  });

  it('a cancel() made by retry.retryable or a back-off function stops the task there (review60)', async () => {
    for (const where of ['retryable', 'backoff'] as const) {
      // (A back-off function is only asked when the predicate says retry.)
      for (const retries of where === 'backoff' ? [true] : [true, false]) {
        let calls = 0;
        const q: Queue = queue({
          retry: {
            attempts: 3, delayMs: 0, jitter: 'none',
            retryable: () => {
              if (where === 'retryable') expect(q.cancel('x')).toBe(true);
              return retries;
            },
            backoff: where === 'backoff'
              ? () => {
                expect(q.cancel('x')).toBe(true);
                return 0;
              }
              : 'fixed',
          },
          handler: () => {
            calls++;
            throw new Error('boom');
          },
        }, `p-${where}-${retries}`);
        const h = q.submit(1, { id: 'x' });
        expect((await rejection(h.result)).code).toBe(ErrorCodes.CANCELLED);
        await flush();
        expect(calls).toBe(1); // before: attempt 2 ran
        expect(q.status('x')?.state).toBe('cancelled');
        expect(await q.deadLetters()).toEqual([]); // before (no retry): a dead letter saying "cancelled"
      }
    }
  });

  it('close() from a queued listener settles the task as close() promises, batch or not (review60)', async () => {
    const outcome = (h: TaskHandle): Promise<unknown> => h.result.then((v) => v, (e: { code?: string }) => e.code);
    for (const [grace, delayMs] of [[0, 0], [0, 20], [1000, 0], [1000, 20]] as const) {
      const ran: unknown[] = [];
      let closing: Promise<void> | undefined;
      const q = queue({ handler: (p) => void ran.push(p) }, `ql-${grace}-${delayMs}`);
      q.once('queued', () => (closing = q.close(grace)));
      const h = q.submit('x', { delayMs });
      // before: close() missed the task (placed after the listener): it never settled, or ran after close(0)
      expect(await outcome(h)).toBe(grace > 0 && delayMs === 0 ? undefined : ErrorCodes.CLOSED);
      await closing;
      expect(ran).toEqual(grace > 0 && delayMs === 0 ? ['x'] : []);
      expect(q.counts()).toMatchObject({ queued: 0, delayed: 0, running: 0 });
    }
    // A batch whose third task's listener closes the queue: the rest of the batch follows close().
    for (const grace of [0, 1000]) {
      const ran: unknown[] = [];
      let closing: Promise<void> | undefined;
      const q = queue<number>({ concurrency: 2, handler: (p) => void ran.push(p) }, `qb-${grace}`);
      let n = 0;
      q.on('queued', () => {
        if (++n === 3) closing = q.close(grace);
      });
      const hs = q.submitMany([0, 1, 2, 3, 4]);
      const got = await Promise.all(hs.map(outcome));
      await closing;
      // before: close(0) let tasks 3 and 4 run in the closed queue
      expect(got).toEqual(grace === 0 ? Array(5).fill(ErrorCodes.CLOSED) : Array(5).fill(undefined));
      expect(ran).toEqual(grace === 0 ? [] : [0, 1, 2, 3, 4]);
    }
  });

  it('close() from a retried listener, or from a due task started in the retry path, ends the retry closed (review60)', async () => {
    vi.useFakeTimers({ now: 0 });
    for (const delayMs of [0, 20]) {
      let attempts = 0;
      const q = queue({ retry: { attempts: 3, backoff: 'fixed', delayMs, jitter: 'none' }, handler: () => {
        attempts++;
        throw new Error('boom');
      } }, `rl-${delayMs}`);
      q.once('retried', () => void q.close(0));
      const h = q.submit(1);
      expect((await rejection(h.result)).code).toBe(ErrorCodes.CLOSED);
      await vi.advanceTimersByTimeAsync(100);
      expect(attempts).toBe(1); // before: attempt 2 ran in the closed queue
    }
    // A delayed task already due when a retry of delay 0 is queued is queued first, but starts
    // only once the retry is queued too: its handler's close(0) finds both.
    const seen: string[] = [];
    let failFirst!: (e: Error) => void;
    const q: Queue = queue({ concurrency: 1, retry: { attempts: 3, backoff: 'fixed', delayMs: 0, jitter: 'none' }, handler: (p: unknown, ctx) => {
      seen.push(`${String(p)}#${ctx.attempt}`);
      if (p === 'd') {
        void q.close(0);
        return undefined;
      }
      if (ctx.attempt === 1) return new Promise((_, reject) => (failFirst = reject));
      return 'ran after close';
    } }, 'rd');
    q.submit('d', { id: 'd', delayMs: 5 });
    const r = q.submit('r', { id: 'r' });
    vi.setSystemTime(Date.now() + 10); // 'd' is due; its timer has not fired yet
    failFirst(new Error('x'));
    expect((await rejection(r.result)).code).toBe(ErrorCodes.CLOSED);
    await flush();
    expect(seen).toEqual(['r#1', 'd#1']); // before: 'r#2' ran after close(0)
  });

  it('a queued listener runs with its task already queued: what it submits starts after it (review60)', async () => {
    const order: unknown[] = [];
    const q = queue({ handler: (p) => void order.push(p) });
    q.once('queued', (e: { id: string }) => {
      expect(q.status(e.id)?.state).toBe('queued');
      q.submit('a');
      q.submitMany(['b', 'c']);
    });
    await q.submit('t').result;
    await q.drain();
    expect(order).toEqual(['t', 'a', 'b', 'c']); // before: a, b, c, then t
  });

  it('maxQueued counts the rest of a submitMany batch while its queued listeners run (review60)', () => {
    const m = manual();
    const q = queue({ maxQueued: 3, handler: m.handler });
    q.submit('running'); // takes the one slot
    const refused: unknown[] = [];
    q.on('queued', () => {
      try {
        q.submit('extra');
      } catch (err) {
        refused.push((err as { code?: string }).code);
      }
    });
    q.submitMany([1, 2, 3]);
    expect(refused).toEqual(Array(3).fill(ErrorCodes.QUEUE_FULL)); // before: the first two got in
    expect(q.counts().queued).toBe(3);
  });

  it('a handler error whose getters throw still fails its task, with what could be read (review60)', async () => {
    const evil = (): Error => {
      const e = new Error('evil');
      Object.defineProperty(e, 'code', { get() {
        throw new Error('getter');
      } });
      return e;
    };
    for (const sync of [true, false]) {
      const q = queue({ handler: () => {
        if (sync) throw evil();
        return Promise.reject(evil());
      } }, `evil-${sync}`);
      const h = q.submit(1, { id: 'x' }); // before (sync): submit() threw after accepting the task
      const err = await h.result.then(() => undefined, (e: Error) => e);
      expect(err?.message).toBe('evil'); // before (async): never settled
      expect(q.status('x')?.state).toBe('dead');
      const [letter] = await q.deadLetters();
      expect(letter?.error).toMatchObject({ name: 'Error', message: 'evil' });
      expect(letter?.error.code).toBeUndefined();
    }
  });

  it('a task a queued listener would let start first still starts first, whatever the priority of what the listener submits (review63)', async () => {
    const order: string[] = [];
    const q = queue<string>({ handler: (p) => void order.push(p) });
    q.once('queued', () => {
      q.submit('u', { priority: 'critical' });
    });
    q.submit('t', { priority: 'low' });
    // Both ran inside submit() (no-op handlers, one slot): t first (before: u, then t).
    expect(order).toEqual(['t', 'u']);
  });

  it('a cancel() in retry.retryable that then throws still ends the task cancelled; a close() there counts no retry (review63)', async () => {
    const q: Queue = queue({ retry: { attempts: 3, backoff: 'fixed', delayMs: 0, jitter: 'none', retryable: () => {
      q.cancel('x');
      throw new Error('predicate');
    } }, handler: () => {
      throw new Error('boom');
    } }, 'ct');
    const h = q.submit(1, { id: 'x' });
    expect((await rejection(h.result)).code).toBe(ErrorCodes.CANCELLED); // before: the AggregateError
    const retried: unknown[] = [];
    const c: Queue = queue({ retry: { attempts: 3, backoff: 'fixed', delayMs: 0, jitter: 'none', retryable: () => {
      void c.close(0);
      return true;
    } }, handler: () => {
      throw new Error('boom');
    } }, 'cc');
    c.on('retried', (e) => retried.push(e));
    expect((await rejection(c.submit(1).result)).code).toBe(ErrorCodes.CLOSED);
    expect(retried).toEqual([]); // before: a 'retried' event for a retry never scheduled
    expect(c.totals().retried).toBe(0);
  });

  it('requeue() counts the rest of a submitMany batch against maxQueued too (review63)', async () => {
    const q = queue({ maxQueued: 3, handler: (p) => {
      if (p === 'bad') throw new Error('bad');
    } });
    await q.submit('bad', { id: 'd' }).result.catch(() => undefined);
    q.pause();
    let requeued: Promise<unknown> | undefined;
    q.once('queued', () => (requeued = q.requeue('d')));
    q.submitMany(['a', 'b', 'c']);
    expect((await rejection(requeued!)).code).toBe(ErrorCodes.QUEUE_FULL); // before: accepted, 4 queued
    expect(q.counts().queued).toBe(3);
  });

  it('a handler that throws or rejects with a revoked Proxy fails its task, which settles (review63)', async () => {
    const revoked = (): unknown => {
      const { proxy, revoke } = Proxy.revocable({}, {});
      revoke();
      return proxy;
    };
    for (const sync of [true, false]) {
      const q = queue({ handler: () => {
        if (sync) throw revoked();
        return Promise.reject(revoked());
      } }, `px-${sync}`);
      const h = q.submit(1, { id: 'x' }); // before (sync): submit() threw after accepting the task
      const settled = await h.result.then(() => 'fulfilled', () => 'rejected'); // before (async): never settled
      expect(settled).toBe('rejected');
      expect(q.status('x')?.state).toBe('dead');
      expect((await q.deadLetters())[0]?.error.message).toBe('(unprintable)');
    }
  });

  it('a queued listener that pauses the queue leaves its task in (priority, submission) order (review64)', async () => {
    const order: string[] = [];
    const q = queue<string>({ handler: (p) => void order.push(p) });
    q.once('queued', () => q.pause());
    q.submit('t', { priority: 'low' });
    q.submit('v', { priority: 'critical' });
    q.submit('w', { priority: 'high' });
    q.resume();
    await q.drain();
    expect(order).toEqual(['v', 'w', 't']); // before: t first, kept at the head while paused
  });

  it('requeue() of a task that fails again at once keeps its new dead letter (review64)', async () => {
    const q = queue({ handler: () => {
      throw new Error('always');
    } });
    await q.submit(1, { id: 'job' }).result.catch(() => undefined);
    const h = await q.requeue('job');
    expect((await h!.result.then(() => undefined, (e: Error) => e))?.message).toBe('always');
    expect(q.status('job')?.state).toBe('dead');
    expect((await q.deadLetters()).map((d) => d.id)).toEqual(['job']); // before: [] — the payload lost
    expect(q.counts().dead).toBe(1);
  });

  it('a handler answering a promise whose own then() throws fails its task; close() resolves (review64)', async () => {
    const q = queue({ killAfterMs: 100, handler: () => {
      const p = Promise.resolve(1);
      Object.defineProperty(p, 'then', { value: () => {
        throw new Error('bad then');
      } });
      return p;
    } }, 'then');
    const h = q.submit(1); // before: submit() threw after accepting it, and the task never settled
    expect((await h.result.then(() => undefined, (e: Error) => e))?.message).toBe('bad then');
    await q.close(50);
    expect(q.counts()).toMatchObject({ running: 0, queued: 0 });
  });

  it('the default retryable retries a thrown revoked Proxy like any error (review64)', async () => {
    let runs = 0;
    const q = queue({ retry: { attempts: 3, backoff: 'fixed', delayMs: 0, jitter: 'none' }, handler: () => {
      runs++;
      const { proxy, revoke } = Proxy.revocable({}, {});
      revoke();
      throw proxy;
    } });
    await q.submit(1).result.catch(() => undefined);
    expect(runs).toBe(3); // before: 1, and an AggregateError blaming retryable
  });

  it('submitMany submits a hole of a sparse array as an undefined payload (review57)', async () => {
    const got: unknown[] = [];
    const q = queue({ handler: (p) => void got.push(p) });
    // eslint-disable-next-line no-sparse-arrays
    const handles = q.submitMany([1, , 3]);
    expect(handles).toHaveLength(3);
    expect(handles[1]).toBeDefined();
    await Promise.all(handles.map((x) => x.result));
    expect(got).toEqual([1, undefined, 3]);
  });

  it('delayed tasks due at the same time keep their submission order (FIFO), and so do retries', async () => {
    vi.useFakeTimers({ now: 0 });
    const order: unknown[] = [];
    const q = queue({ concurrency: 1, handler: (p) => void order.push(p) });
    q.submitMany(Array.from({ length: 20 }, (_, i) => i), { delayMs: 30 });
    await vi.advanceTimersByTimeAsync(30);
    expect(order).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('a sync handler that keeps failing with no back-off does not recurse: 5000 attempts, then dead', async () => {
    let calls = 0;
    const q = queue({ retry: { attempts: 5000, backoff: 'fixed', delayMs: 0, jitter: 'none' }, handler: () => {
      calls++;
      throw new Error('again');
    } });
    const h = q.submit(1); // must not throw "Maximum call stack size exceeded"
    expect((await rejection(h.result)).message).toBe('again');
    expect(calls).toBe(5000);
    expect(q.status(h.id)).toMatchObject({ state: 'dead', attempts: 5000 });
  });

  it('retries may go beyond maxQueued (it bounds submits): the heap has room, every result settles', async () => {
    const q = queue({ maxQueued: 1, concurrency: 2, retry: { attempts: 3, delayMs: 0, jitter: 'none', backoff: 'fixed' }, handler: async () => {
      await Promise.resolve();
      throw new Error('x');
    } });
    const hs = [q.submit(1), q.submit(2), q.submit(3)]; // two start at once, one is queued (the max)
    expect(() => q.submit(4)).toThrow(expect.objectContaining({ code: ErrorCodes.QUEUE_FULL }));
    for (const h of hs) expect((await rejection(h.result)).message).toBe('x');
    expect(hs.map((h) => q.status(h.id)!.attempts)).toEqual([3, 3, 3]);
    expect(q.counts()).toMatchObject({ queued: 0, delayed: 0, running: 0, dead: 3 });
  });

  it('a pending drain() resolves when close() ends what was left; cancelled events are emitted', async () => {
    const q = queue({ concurrency: 1, handler: () => undefined });
    q.pause();
    const hs = [q.submit(1), q.submit(2, { delayMs: 60_000 })];
    const cancelled: string[] = [];
    q.on('cancelled', (e: { id: string }) => cancelled.push(e.id));
    const drained = q.drain();
    await q.close(0);
    await drained;
    for (const h of hs) expect((await rejection(h.result)).code).toBe(ErrorCodes.CLOSED);
    expect(cancelled.sort()).toEqual(hs.map((h) => h.id).sort());
  });
});

describe('close', () => {
  it('stops accepting, lets queued work finish, rejects delayed tasks with ERR_HOTPATH_CLOSED: nothing dropped silently', async () => {
    const q = queue({ concurrency: 1, handler: async (p) => p });
    const hs = Array.from({ length: 5 }, (_, i) => q.submit(i));
    const delayed = q.submit('later', { delayMs: 60_000 });
    await q.close(5000);
    expect(await Promise.all(hs.map((h) => h.result))).toEqual([0, 1, 2, 3, 4]);
    expect((await rejection(delayed.result)).code).toBe(ErrorCodes.CLOSED);
    expect(() => q.submit(1)).toThrow(expect.objectContaining({ code: ErrorCodes.CLOSED }));
    expect(q.closed).toBe(true);
  });

  it('a paused queue still gives its running tasks the timeout; its queued ones end at once (review28)', async () => {
    const m = manual<string>();
    const q = queue({ concurrency: 1, handler: m.handler });
    const running = q.submit('r');
    const queued = q.submit('q');
    await flush();
    expect(m.calls.length).toBe(1);
    q.pause();
    const closing = q.close(60_000);
    await flush();
    expect(m.calls[0]!.ctx.signal.aborted).toBe(false); // not stopped: it has until the timeout
    m.calls[0]!.resolve('done');
    await closing;
    expect(await running.result).toBe('done');
    expect((await rejection(queued.result)).code).toBe(ErrorCodes.CLOSED);
    expect(m.calls.length).toBe(1);
  });

  it('after its timeout, what is left — queued and running — rejects with ERR_HOTPATH_CLOSED', async () => {
    vi.useFakeTimers({ now: 0 });
    const q = queue({ concurrency: 1, killAfterMs: 10, handler: () => new Promise(() => undefined) });
    const running = q.submit('r');
    const queued = q.submit('q');
    const closing = q.close(100);
    await vi.advanceTimersByTimeAsync(110);
    await closing;
    expect((await rejection(running.result)).code).toBe(ErrorCodes.CLOSED);
    expect((await rejection(queued.result)).code).toBe(ErrorCodes.CLOSED);
  });
});

describe('bad input → typed errors, synchronously', () => {
  it('options', () => {
    const h = (): undefined => undefined;
    expect(() => new Queue('x', {} as QueueOptions)).toThrow(/options.handler is required/);
    expect(() => new Queue('x', { handler: 42 } as unknown as QueueOptions)).toThrow(TypeError);
    expect(() => new Queue('x', { handler: 'not a url' })).toThrow(/module URL/);
    expect(() => new Queue('x', { handler: 'https://example.com/job.js' })).toThrow(/file: URL/);
    expect(() => new Queue('x', { handler: h, retry: { attempts: -1 } })).toThrow(/options.retry.attempts must be an integer between 1/);
    expect(() => new Queue('x', { handler: h, retry: { attempts: 0 } })).toThrow(RangeError);
    expect(() => new Queue('x', { handler: h, retry: { backoff: 'linear' as 'fixed' } })).toThrow(/options.retry.backoff must be one of/);
    expect(() => new Queue('x', { handler: h, retry: { jitter: 'some' as 'full' } })).toThrow(/options.retry.jitter/);
    expect(() => new Queue('x', { handler: h, retry: { delayMs: 100, maxDelayMs: 10 } })).toThrow(/maxDelayMs/);
    expect(() => new Queue('x', { handler: h, concurrency: 0 })).toThrow(/options.concurrency/);
    expect(() => new Queue('x', { handler: h, maxQueued: 1.5 })).toThrow(/options.maxQueued/);
    expect(() => new Queue('x', { handler: h, timeout: -1 })).toThrow(/options.timeout/);
    expect(() => new Queue('x', { handler: h, colour: 'red' } as QueueOptions)).toThrow(/options.colour is not a queue option/);
    expect(() => new Queue('', { handler: h })).toThrow(/queue name/);
    expect(() => new Queue('q\ud800', { handler: h })).toThrow(/well-formed/);
    expect(() => new Queue('x', { handler: new URL('file:///job.js') })).toThrow(/needs an engine/);
  });

  it('submit options', () => {
    const q = queue({ handler: () => undefined });
    expect(() => q.submit(1, { priority: 'urgent' as 'high' })).toThrow(/priority must be a number or one of 'critical', 'high', 'normal', 'low', got "urgent"/);
    expect(() => q.submit(1, { priority: 'toString' as 'high' })).toThrow(RangeError);
    expect(() => q.submit(1, { priority: 1.5 })).toThrow(RangeError);
    expect(() => q.submit(1, { priority: 2_000_000 })).toThrow(RangeError);
    expect(() => q.submit(1, { delayMs: -5 })).toThrow(/options.delayMs/);
    expect(() => q.submit(1, { id: '' })).toThrow(/options.id/);
    expect(() => q.submit(1, { id: 7 as unknown as string })).toThrow(/options.id/);
    // Lone surrogates have no UTF-8 form (Redis would store U+FFFD): refused in memory as durably.
    for (const bad of ['x:\ud800', 'z\udc00', '\ud800']) expect(() => q.submit(1, { id: bad })).toThrow(/well-formed/);
    expect(() => q.submit(1, { id: 'pair \ud83d\ude00' })).not.toThrow();
    expect(() => q.submit(1, { signal: {} as AbortSignal })).toThrow(/options.signal/);
    expect(() => q.submit(1, { attempts: 3 } as never)).toThrow(/options.attempts is not a submit option/);
    expect(() => q.submitMany([1], { id: 'x' } as never)).toThrow(/options.id cannot be shared/);
    expect(q.counts().queued + q.counts().running).toBe(0);
  });

  it('a handler that throws synchronously, or throws a non-Error, fails its task with that error', async () => {
    const q = queue({ handler: (p) => {
      throw p;
    } });
    expect(await rejection(q.submit(new TypeError('sync')).result)).toBeInstanceOf(TypeError);
    await expect(q.submit('a string').result).rejects.toBe('a string');
    const [d] = (await q.deadLetters()).filter((x) => x.payload === 'a string');
    expect(d!.error).toEqual({ name: 'Error', message: 'a string' });
  });
});
