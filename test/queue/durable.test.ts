/**
 * The durable queue on a real Redis (BullMQ underneath): codec round trips, priority order,
 * retries and dead letters (requeue, purge, retention), delayed tasks, id dedupe, cancel, pause /
 * drain, maxQueued, results across processes (a submitter that does not consume, a consumer in a
 * child process, a module handler on a child's worker threads), a consumer killed mid-task (the
 * task runs again elsewhere: BullMQ's stalled-job recovery), and Redis going away (typed errors,
 * no hang). No sleeps: every wait is for an event, a line from a child, or a condition.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface, type Interface } from 'node:readline';
import { Queue as BullQueue, Worker as BullWorker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { RedisConnector } from '../../engine/redis/connector.js';
import { DurableQueue, fromJobId, parseReason, PRIORITY_OFFSET, reasonOf, toJobId, type DurableOptions, type DurableQueueOptions } from '../../engine/queue/durable.js';
import type { HandlerFunction } from '../../engine/queue/types.js';
import { REDIS_URL, canSpawnRedis, sharedRedisReachable, startCluster, startRedis } from '../redis/servers.js';

const reachable = await sharedRedisReachable('durable queue');
const spawnable = canSpawnRedis('durable queue on a Redis of its own');

/** Every key of this file's run lives under this prefix (one hash tag), deleted at the end. */
const PREFIX = `{hotpath:test:${process.pid}}`;
let seq = 0;
const uniqueName = (what: string): string => `${what}${++seq}`;

const WORKER = new URL('../fixtures/queue-durable-worker.mjs', import.meta.url).pathname;

/** A child process consuming queue `name`; resolves once it prints `ready`. */
async function child(cfg: Record<string, unknown>): Promise<{ proc: ChildProcess; lines: Interface; next: (re: RegExp) => Promise<string>; close: () => Promise<void> }> {
  const proc = spawn(process.execPath, [WORKER, JSON.stringify({ redis: REDIS_URL, prefix: PREFIX, ...cfg })], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: proc.stdout! });
  const seen: string[] = [];
  const waiters: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
  lines.on('line', (l) => {
    const w = waiters.findIndex((x) => x.re.test(l));
    if (w >= 0) waiters.splice(w, 1)[0]!.resolve(l);
    else seen.push(l);
  });
  const next = (re: RegExp): Promise<string> => {
    const i = seen.findIndex((l) => re.test(l));
    if (i >= 0) return Promise.resolve(seen.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      waiters.push({ re, resolve });
      proc.once('exit', (code) => reject(new Error(`child exited (${code}) before printing ${re}`)));
    });
  };
  await next(/^ready$/);
  const close = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.stdin!.write('close\n');
    await exited;
  };
  return { proc, lines, next, close };
}

describe.runIf(reachable)('the durable queue on the shared Redis', () => {
  let redis: RedisConnector;
  let raw: Redis;
  const open: Array<DurableQueue<any, any>> = [];

  beforeAll(async () => {
    redis = await RedisConnector.connect(REDIS_URL, { timeoutMs: 2000 });
    raw = new Redis(REDIS_URL);
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((q) => q.close(1000)));
  });
  afterAll(async () => {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [c, batch] = await raw.scan(cursor, 'MATCH', `${PREFIX}*`, 'COUNT', 1000);
      cursor = c;
      keys.push(...batch);
    } while (cursor !== '0');
    for (let i = 0; i < keys.length; i += 500) await raw.del(...keys.slice(i, i + 500));
    raw?.disconnect();
    await redis?.close();
  });

  function queue<P = unknown, R = unknown>(name: string, handler: HandlerFunction<P, R>, options: Omit<DurableQueueOptions<P, R>, 'handler' | 'durable'> = {}, durable: DurableOptions = {}): DurableQueue<P, R> {
    const q = new DurableQueue<P, R>(name, { handler, ...options, durable: { prefix: PREFIX, ...durable } }, { redis });
    open.push(q);
    return q;
  }
  /** A queue that only submits (another process would run its tasks). */
  function submitter<P = unknown, R = unknown>(name: string, options: Omit<DurableQueueOptions<P, R>, 'handler' | 'durable'> = {}): DurableQueue<P, R> {
    return queue<P, R>(name, () => {
      throw new Error('a submitter does not run tasks');
    }, options, { consume: false });
  }

  it('maps ids, priorities and error reasons onto what BullMQ accepts, and back', () => {
    for (const id of ['plain', 'a:b', '42', '-7', '~x', 'ünï', '007', 'x'.repeat(256)]) {
      const j = toJobId(id);
      expect(j.includes(':')).toBe(false);
      expect(`${parseInt(j, 10)}` === j).toBe(false);
      expect(fromJobId(j)).toBe(id);
    }
    expect(toJobId('plain')).toBe('plain');
    expect(-1_000_000 + PRIORITY_OFFSET).toBe(1);
    expect(1_000_000 + PRIORITY_OFFSET).toBeLessThanOrEqual(2 ** 21 - 1);
    const info = { name: 'TypeError', code: 'ERR_X', message: 'bad: input\nsecond line' };
    expect(reasonOf(info)).toBe('TypeError [ERR_X]: bad: input\nsecond line');
    expect(parseReason(reasonOf(info))).toEqual(info);
    expect(parseReason('job stalled more than allowable limit')).toEqual({ name: 'Error', message: 'job stalled more than allowable limit' });
  });

  it('runs tasks whose ids are names of the queue\'s own keys (meta, events, id, dead …) as any other (review42)', async () => {
    // Before, a job id equal to a BullMQ key name landed on that key: "meta" was cancelled (its
    // job read as removed), "events" and "id" failed with WRONGTYPE.
    const q = queue<string, string>(uniqueName('ids'), (p) => `done ${p}`);
    const ids = ['meta', 'events', 'id', 'wait', 'dead', 'metrics', 'limiter', 'de', 'plain'];
    const handles = await Promise.all(ids.map((id) => q.submit(id, { id })));
    expect(await Promise.all(handles.map((h) => h.result.catch((e: Error) => e.message)))).toEqual(ids.map((id) => `done ${id}`));
    for (const id of ids) expect((await q.status(id))?.state).toBe('succeeded');
    for (const id of ids) expect(toJobId(id) === id).toBe(id === 'plain');
  });

  it('status, cancel and requeue of an id with a lone surrogate find nothing — not the task whose id Redis would read it as (review44)', async () => {
    const q = queue<number, string>(uniqueName('lone'), () => 'ran');
    const h = await q.submit(1, { id: 'z\ufffd', delayMs: 600_000 });
    expect(await q.status('z\ud800')).toBeUndefined();
    expect(await q.cancel('z\ud800')).toBe(false);
    expect(await q.requeue('z\ud800')).toBeUndefined();
    expect((await q.status('z\ufffd'))?.state).toBe('delayed');
    expect(await q.cancel('z\ufffd')).toBe(true);
    await expect(h.result).rejects.toMatchObject({ code: 'ERR_HOTPATH_CANCELLED' });
  });

  it('round-trips payloads and results through the value codec', async () => {
    const q = queue(uniqueName('codec'), (p: any) => ({ echo: p, at: new Date(0), n: 2n ** 70n, bytes: Buffer.from('hi') }));
    const payload = { m: new Map([[1, { s: new Set(['a']) }]]), b: Buffer.from([1, 2, 3]), big: -(10n ** 25n), u: undefined, d: new Date(5) };
    const h = await q.submit(payload);
    expect(typeof h.id).toBe('string');
    const r = (await h.result) as any;
    expect(r.echo).toEqual(payload);
    expect(r.at).toEqual(new Date(0));
    expect(r.n).toBe(2n ** 70n);
    expect(Buffer.from(r.bytes).toString()).toBe('hi');
    const none = await q.submit(undefined as unknown);
    expect(await none.result).toEqual({ echo: undefined, at: new Date(0), n: 2n ** 70n, bytes: Buffer.from('hi') });
  });

  it('runs tasks by priority (lower first), FIFO within a level', async () => {
    const name = uniqueName('prio');
    const sub = submitter(name);
    const priorities = [3, 'low', 2, 'critical', -1_000_000, 1_000_000, 'high', 0, 1, 'normal', -5, 3, 'critical', 2, 1_000_000, -1_000_000] as const;
    const handles = [];
    for (let i = 0; i < priorities.length; i++) handles.push(await sub.submit(i, { priority: priorities[i] }));
    const order: number[] = [];
    queue<number>(name, (i) => {
      order.push(i);
    }, { concurrency: 1 });
    await Promise.all(handles.map((h) => h.result));
    const level = (p: (typeof priorities)[number]): number => (typeof p === 'number' ? p : { critical: 0, high: 1, normal: 2, low: 3 }[p]);
    const expected = priorities.map((p, i) => ({ p: level(p), i })).sort((a, b) => a.p - b.p || a.i - b.i).map((x) => x.i);
    expect(order).toEqual(expected);
    const s = await sub.status(handles[4]!.id);
    expect(s).toMatchObject({ state: 'succeeded', priority: -1_000_000, attempts: 1 });
  });

  it('retries with back-off, then dead-letters: the letter exists before the result rejects', async () => {
    const name = uniqueName('retry');
    let healthy = false;
    const runs: number[] = [];
    const retry = { attempts: 3, backoff: 'fixed', delayMs: 30, jitter: 'none' } as const;
    const q = queue<{ n: number }>(name, (p, ctx) => {
      runs.push(ctx.attempt);
      if (!healthy) throw Object.assign(new Error(`attempt ${ctx.attempt} of ${p.n} failed`), { code: 'E_FLAKY' });
      return `ok ${p.n}`;
    }, { retry });
    const events: string[] = [];
    for (const e of ['running', 'failed', 'retried', 'dead', 'completed'] as const) q.on(e, (x: any) => events.push(`${e}:${x.attempt ?? x.attempts}${e === 'retried' ? `:${x.delayMs}` : ''}`));
    // A submitter that does not run it hears of it too. The number of attempts travels with the
    // job (BullMQ's attempts): every process of a queue should share its options.
    const other = submitter(name, { retry });
    const h = await other.submit({ n: 1 }, { priority: 'high' });
    let letterSeen: unknown;
    const rejected = await h.result.catch(async (err: unknown) => {
      letterSeen = (await other.deadLetters()).find((d) => d.id === h.id);
      return err;
    });
    expect(rejected).toMatchObject({ name: 'Error', code: 'E_FLAKY', message: `attempt 3 of 1 failed` });
    expect(letterSeen).toBeDefined();
    expect(runs).toEqual([1, 2, 3]);
    expect(events).toEqual(['running:1', 'failed:1', 'retried:1:30', 'running:2', 'failed:2', 'retried:2:30', 'running:3', 'failed:3', 'dead:3']);
    const [letter] = await q.deadLetters();
    expect(letter).toMatchObject({ id: h.id, payload: { n: 1 }, priority: 1, attempts: 3, error: { name: 'Error', code: 'E_FLAKY', message: 'attempt 3 of 1 failed' } });
    expect(letter!.failedAt).toBeGreaterThanOrEqual(letter!.submittedAt);
    expect(await q.status(h.id)).toMatchObject({ state: 'dead', attempts: 3, error: { code: 'E_FLAKY' } });
    expect(await q.counts()).toMatchObject({ dead: 1, queued: 0, running: 0 });
    // requeue: back in the queue with its id, payload and priority; the letter goes.
    healthy = true;
    const again = await other.requeue(h.id);
    expect(again!.id).toBe(h.id);
    expect(await again!.result).toBe('ok 1');
    expect(await q.deadLetters()).toEqual([]);
    expect(await q.requeue('no-such-letter')).toBeUndefined();
    // purge
    healthy = false;
    const more = await q.submitMany([{ n: 2 }, { n: 3 }]);
    await Promise.all(more.map((m) => m.result.catch(() => undefined)));
    expect((await q.deadLetters()).map((d) => d.id).sort()).toEqual(more.map((m) => m.id).sort());
    expect(await q.purge()).toBe(2);
    expect(await q.deadLetters()).toEqual([]);
  });

  it('does not retry an error retryable() refuses; keeps only deadLetterRetention letters (the newest)', async () => {
    const calls: string[] = [];
    const q = queue<string>(uniqueName('noretry'), (p) => {
      calls.push(p);
      throw new TypeError(`bad ${p}`);
    }, { retry: { attempts: 5, delayMs: 1, retryable: (e) => !(e instanceof TypeError) }, deadLetterRetention: 2 });
    for (const p of ['a', 'b', 'c']) {
      const h = await q.submit(p, { id: `letter-${p}` });
      await expect(h.result).rejects.toMatchObject({ name: 'TypeError', message: `bad ${p}` });
    }
    expect(calls).toEqual(['a', 'b', 'c']);
    expect((await q.deadLetters()).map((d) => d.id)).toEqual(['letter-b', 'letter-c']);
    // A task whose letter was trimmed can still be run again (review28: its id was stuck: submit
    // answered the old failure, requeue undefined).
    const again = await q.requeue('letter-a');
    expect(again?.id).toBe('letter-a');
    await expect(again!.result).rejects.toMatchObject({ message: 'bad a' });
    expect(calls).toEqual(['a', 'b', 'c', 'a']);
  });

  it('runs a delayed task no earlier than its delay', async () => {
    const started: number[] = [];
    const q = queue(uniqueName('delay'), () => {
      started.push(Date.now());
      return 'late';
    });
    const before = Date.now();
    const h = await q.submit('x', { delayMs: 300 });
    const s = await q.status(h.id);
    expect(s?.state).toBe('delayed');
    expect(s!.runAt! - s!.submittedAt).toBe(300);
    expect(await h.result).toBe('late');
    expect(started[0]! - before).toBeGreaterThanOrEqual(300);
  });

  it('dedupes ids: the same job, its result for every handle, in any process', async () => {
    const name = uniqueName('dedupe');
    const a = submitter(name);
    const b = submitter(name);
    const h1 = await a.submit('first', { id: 'job:1' });
    const h2 = await a.submit('second', { id: 'job:1' });
    expect(h2).toBe(h1); // same process: the same handle
    const h3 = await b.submit('third', { id: 'job:1' }); // "another process": a handle on the same job
    const runs: unknown[] = [];
    queue(name, (p) => {
      runs.push(p);
      return `ran ${String(p)}`;
    });
    expect(await h1.result).toBe('ran first');
    expect(await h3.result).toBe('ran first');
    // Finished and retained: submitting it again answers its stored result, without running it.
    const h4 = await b.submit('fourth', { id: 'job:1' });
    expect(await h4.result).toBe('ran first');
    expect(runs).toEqual(['first']);
    expect(await a.status('job:1')).toMatchObject({ id: 'job:1', state: 'succeeded', attempts: 1 });
    const numeric = await a.submit('n', { id: '12345' });
    expect(numeric.id).toBe('12345');
    expect(await numeric.result).toBe('ran n');
  });

  it('cancels a queued task (it never runs), a running one (ctx.signal), and by signal', async () => {
    const name = uniqueName('cancel');
    const sub = submitter(name);
    const queued = await sub.submit('never', { delayMs: 60_000 });
    expect(await sub.cancel(queued.id)).toBe(true);
    await expect(queued.result).rejects.toMatchObject({ code: 'ERR_HOTPATH_CANCELLED' });
    expect(await sub.status(queued.id)).toMatchObject({ state: 'cancelled' });
    expect(await sub.cancel(queued.id)).toBe(false);
    expect(await sub.cancel('unknown')).toBe(false);

    const ac = new AbortController();
    const bySignal = await sub.submit('never either', { delayMs: 60_000, signal: ac.signal });
    ac.abort();
    await expect(bySignal.result).rejects.toMatchObject({ code: 'ERR_HOTPATH_CANCELLED' });

    let sawAbort: (() => void) | undefined;
    const aborted = new Promise<void>((r) => (sawAbort = r));
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const ran: string[] = [];
    const q = queue<string>(name, (p, ctx) => {
      ran.push(p);
      started();
      return new Promise((_, reject) => ctx.signal.addEventListener('abort', () => {
        sawAbort!();
        reject(new Error('stopped'));
      }));
    }, { retry: { attempts: 3 } });
    const cancelledEvents: string[] = [];
    q.on('cancelled', (e: { id: string }) => cancelledEvents.push(e.id));
    const h = await sub.submit('run me');
    await running;
    expect(await sub.cancel(h.id)).toBe(false); // running in another "process": not this one's to stop
    expect(await q.cancel(h.id)).toBe(true);
    await aborted;
    await expect(h.result).rejects.toMatchObject({ code: 'ERR_HOTPATH_CANCELLED' });
    expect(cancelledEvents).toEqual([h.id]);
    expect(ran).toEqual(['run me']); // not retried
    expect(await q.deadLetters()).toEqual([]); // nor dead-lettered
    expect(await q.status(h.id)).toMatchObject({ state: 'cancelled', attempts: 1 });
    // Its id stays taken while its record is kept; requeue runs it again (review28).
    const rerun = await q.requeue(h.id);
    expect(rerun?.id).toBe(h.id);
    await vi.waitFor(() => expect(ran).toEqual(['run me', 'run me']));
    expect(await q.cancel(h.id)).toBe(true);
    await expect(rerun!.result).rejects.toMatchObject({ code: 'ERR_HOTPATH_CANCELLED' });
  });

  it('pauses every consumer; drain waits for queued, delayed and running tasks', async () => {
    const name = uniqueName('pause');
    const ran: number[] = [];
    const q = queue<number>(name, (i) => {
      ran.push(i);
    }, { concurrency: 2 });
    await q.pause();
    expect(await q.isPaused()).toBe(true);
    const hs = await q.submitMany([1, 2, 3]);
    const d = await q.submit(4, { delayMs: 200 });
    expect(await q.counts()).toMatchObject({ queued: 3, delayed: 1, running: 0 });
    let drained = false;
    const draining = q.drain().then(() => (drained = true));
    expect(drained).toBe(false);
    expect(ran).toEqual([]);
    await q.resume();
    await draining;
    expect(ran.sort()).toEqual([1, 2, 3, 4]);
    await Promise.all([...hs, d].map((h) => h.result));
    expect(await q.counts()).toEqual({ queued: 0, delayed: 0, running: 0, dead: 0 });
  });

  it('maxQueued (best-effort): submit rejects with ERR_HOTPATH_QUEUE_FULL, trySubmit answers false', async () => {
    const q = submitter(uniqueName('full'), { maxQueued: 3 });
    await q.submitMany([1, 2]);
    await q.submit(3);
    await expect(q.submit(4)).rejects.toMatchObject({ code: 'ERR_HOTPATH_QUEUE_FULL' });
    expect(await q.trySubmit(4)).toBe(false);
    await expect(q.submitMany([4, 5])).rejects.toMatchObject({ code: 'ERR_HOTPATH_QUEUE_FULL' });
  });

  it('refuses bad input with typed errors, synchronously', () => {
    const q = submitter(uniqueName('bad'));
    expect(() => q.submit(1, { priority: 'urgent' as never })).toThrow(RangeError);
    expect(() => q.submit(1, { priority: 1_000_001 })).toThrow(/priority/);
    expect(() => q.submit({ f: () => 1 })).toThrow(TypeError);
    expect(() => q.submit(1, { bogus: 1 } as never)).toThrow(/bogus/);
    expect(() => queue(uniqueName('bad'), () => 1, { retry: { attempts: -1 } })).toThrow(/options.retry.attempts/);
    expect(() => queue('a:b', () => 1)).toThrow(/':'/);
    // A lone surrogate: BullMQ's scripts write its raw bytes, ioredis U+FFFD — two names of one key (review45).
    expect(() => queue('q\ud800', () => 1)).toThrow(/well-formed/);
    expect(() => queue(uniqueName('bad'), () => 1, {}, { prefix: '{p\udc00}' })).toThrow(/options.durable.prefix must be well-formed/);
    expect(() => queue(uniqueName('bad'), () => 1, { agingMs: 100 })).toThrow(/options.agingMs/);
    expect(() => queue(uniqueName('bad'), () => 1, {}, { lockDurationMs: 5 })).toThrow(/options.durable.lockDurationMs/);
    expect(() => queue(uniqueName('bad'), () => 1, {}, { nope: 1 } as never)).toThrow(/options.durable.nope/);
  });

  it('closes: pending results reject with ERR_HOTPATH_CLOSED, submit throws, the tasks stay in Redis', async () => {
    const name = uniqueName('close');
    const q = new DurableQueue(name, { handler: () => 1, durable: { prefix: PREFIX, consume: false } }, { redis });
    const h = await q.submit('kept');
    await q.close();
    await expect(h.result).rejects.toMatchObject({ code: 'ERR_HOTPATH_CLOSED' });
    expect(() => q.submit('late')).toThrow(expect.objectContaining({ code: 'ERR_HOTPATH_CLOSED' }));
    expect(q.closed).toBe(true);
    await q.close(); // idempotent
    const later = queue(name, (p) => `ran ${String(p)}`);
    await later.drain();
    expect(await later.status(h.id)).toMatchObject({ state: 'succeeded' });
  });

  it('a close() that gives up on a running task hands its job back at once: another consumer runs it without waiting for the lock, and no stall is counted (review28)', async () => {
    const name = uniqueName('abandon');
    // A lock of a minute and no stall allowed: before, the job sat locked for a minute after the
    // close, then stalled recovery failed it (stalls 1 > maxStalledCount 0).
    const durable = { lockDurationMs: 60_000, stalledIntervalMs: 60_000, maxStalledCount: 0 };
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const a = new DurableQueue<string, string>(name, {
      handler: (_p, ctx) => {
        started();
        return new Promise<string>((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
      },
      durable: { prefix: PREFIX, ...durable },
    }, { redis });
    const sub = submitter<string, string>(name);
    const h = await sub.submit('again', { id: 'abandon-1' });
    await running;
    await a.close(100); // gives up on the task after 100 ms
    expect(await sub.status(h.id)).toMatchObject({ state: 'queued' });
    queue<string, string>(name, (p, ctx) => `${p} on attempt ${ctx.attempt}`, {}, durable);
    expect(await h.result).toBe('again on attempt 2');
  });

  it('finds an outcome whose message was lost by reading the job (a foreign worker, a foreign removal)', async () => {
    const name = uniqueName('sweep');
    const sub = submitter<string, unknown>(name);
    const [done, removed] = await sub.submitMany(['a', 'b']);
    // Another producer's tools: they know nothing of our result channels.
    const conn = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    const bull = new BullQueue(name, { connection: conn, prefix: PREFIX });
    try {
      expect(await bull.remove(removed!.id)).toBe(1);
      const worker = new BullWorker(name, async () => null, { connection: conn, prefix: PREFIX });
      const t0 = Date.now();
      await expect(removed!.result).rejects.toMatchObject({ code: 'ERR_HOTPATH_CANCELLED' });
      expect(await done!.result).toBeUndefined();
      expect(Date.now() - t0).toBeLessThan(10_000);
      await worker.close();
    } finally {
      await bull.close();
      conn.disconnect();
    }
  });

  describe('across processes', () => {
    it('a submitter that does not consume gets results and errors from a consumer in another process', async () => {
      const name = uniqueName('xproc');
      const c = await child({ name, mode: 'echo' });
      try {
        const q = submitter<unknown, { pid: number; payload: unknown }>(name);
        const hs = await q.submitMany(Array.from({ length: 20 }, (_, i) => ({ i, at: new Date(i) })));
        const results = await Promise.all(hs.map((h) => h.result));
        expect(results.every((r) => r.pid === c.proc.pid)).toBe(true);
        expect(results.map((r) => r.payload)).toEqual(Array.from({ length: 20 }, (_, i) => ({ i, at: new Date(i) })));
        const bad = await q.submit({ fail: true });
        await expect(bad.result).rejects.toMatchObject({ name: 'RangeError', code: 'E_FIXTURE', message: `failed in ${c.proc.pid}` });
        expect(await q.status(bad.id)).toMatchObject({ state: 'dead', error: { name: 'RangeError', code: 'E_FIXTURE' } });
      } finally {
        await c.close();
      }
    });

    it('a module handler runs on the consumer\'s worker threads', async () => {
      const name = uniqueName('module');
      const c = await child({ name, mode: 'module' });
      try {
        const q = submitter<unknown, { threadId: number; pid: number; payload: unknown; id: string; attempt: number }>(name);
        const h = await q.submit({ big: 2n ** 80n }, { id: 'on-a-worker' });
        const r = await h.result;
        expect(r).toMatchObject({ pid: c.proc.pid, payload: { big: 2n ** 80n }, id: 'on-a-worker', attempt: 1 });
        expect(r.threadId).toBeGreaterThan(0);
      } finally {
        await c.close();
      }
    });

    it('a consumer killed mid-task: another process runs the task again (stalled-job recovery)', async () => {
      const name = uniqueName('killed');
      const durable = { lockDurationMs: 1000, stalledIntervalMs: 300 };
      const victim = await child({ name, mode: 'hang', ...durable });
      const sub = submitter<string, string>(name);
      const h = await sub.submit('survive', { id: 'crash-1' });
      expect(await victim.next(/^started /)).toBe('started crash-1 1');
      expect(await sub.status(h.id)).toMatchObject({ state: 'running', attempts: 1 });
      const died = new Promise((r) => victim.proc.once('exit', r));
      victim.proc.kill('SIGKILL');
      await died;
      const attempts: number[] = [];
      queue<string, string>(name, (p, ctx) => {
        attempts.push(ctx.attempt);
        return `${p} in ${process.pid}`;
      }, {}, durable);
      expect(await h.result).toBe(`survive in ${process.pid}`);
      expect(attempts).toEqual([2]);
      expect(await sub.status(h.id)).toMatchObject({ state: 'succeeded', attempts: 2 });
    });

    it('a task whose consumers keep dying past maxStalledCount is dead-lettered, never lost', async () => {
      const name = uniqueName('stalls');
      const durable = { lockDurationMs: 1000, stalledIntervalMs: 300, maxStalledCount: 0 };
      const victim = await child({ name, mode: 'hang', ...durable });
      const sub = submitter<string, string>(name);
      const h = await sub.submit('doomed', { id: 'crash-2' });
      await victim.next(/^started crash-2 1$/);
      const died = new Promise((r) => victim.proc.once('exit', r));
      victim.proc.kill('SIGKILL');
      await died;
      const ran: string[] = [];
      const q = queue<string, string>(name, (p) => {
        ran.push(p);
        return 'never';
      }, {}, durable);
      await expect(h.result).rejects.toMatchObject({ message: 'job stalled more than allowable limit' });
      expect(ran).toEqual([]);
      expect(await q.deadLetters()).toMatchObject([{ id: 'crash-2', payload: 'doomed', error: { message: 'job stalled more than allowable limit' } }]);
      expect(await sub.status('crash-2')).toMatchObject({ state: 'dead' });
    });
  });
});

describe.runIf(spawnable)('the durable queue when Redis goes away', () => {
  it('rejects with ERR_HOTPATH_REDIS_UNAVAILABLE instead of hanging, works again when Redis is back, and closes', async () => {
    const server = await startRedis();
    const redis = await RedisConnector.connect(server.url, { timeoutMs: 500, breaker: { consecutiveFailures: 2, resetMs: 200 } });
    const q = new DurableQueue('away', { handler: (p) => p, durable: { commandTimeoutMs: 1000 } }, { redis });
    try {
      const h = await q.submit('before');
      expect(await h.result).toBe('before');
      await server.kill();
      const t0 = Date.now();
      await expect(q.submit('during')).rejects.toMatchObject({ code: 'ERR_HOTPATH_REDIS_UNAVAILABLE' });
      await expect(q.status(h.id)).rejects.toMatchObject({ code: 'ERR_HOTPATH_REDIS_UNAVAILABLE' });
      await expect(q.counts()).rejects.toMatchObject({ code: 'ERR_HOTPATH_REDIS_UNAVAILABLE' });
      expect(Date.now() - t0).toBeLessThan(3500);
      await server.restart();
      await vi.waitFor(async () => {
        const after = await q.submit('after');
        expect(await after.result).toBe('after');
      }, { timeout: 15_000, interval: 100 });
    } finally {
      await q.close(1000);
      await redis.close();
    }
    // Every connection the queue opened is closed: only this one is left.
    const check = new Redis(server.url);
    await vi.waitFor(async () => {
      expect(Number(/connected_clients:(\d+)/.exec(await check.info('clients'))![1])).toBe(1);
    }, { timeout: 5000, interval: 50 });
    check.disconnect();
    await server.stop();
  });
});

describe.runIf(spawnable)('the durable queue on a 3-master Redis Cluster', () => {
  it('works under its hash-tagged prefix: priorities, dead letters, results from another instance', async () => {
    const cluster = await startCluster();
    const redis = await RedisConnector.connect({ cluster: cluster.urls }, { timeoutMs: 1000, connectTimeoutMs: 10_000 });
    const queues: Array<DurableQueue<any, any>> = [];
    try {
      expect(() => new DurableQueue('untagged', { handler: () => 1, durable: { prefix: 'hotpath:q' } }, { redis })).toThrow(/hash tag/);
      const sub = new DurableQueue<number, number>('cq', { handler: () => 0, durable: { consume: false } }, { redis });
      queues.push(sub);
      const hs = [];
      for (const [i, priority] of [[0, 'low'], [1, 'critical'], [2, 'normal'], [3, 'high']] as const) hs.push(await sub.submit(i, { priority }));
      const order: number[] = [];
      const q = new DurableQueue<number, number>('cq', {
        handler: (i) => {
          order.push(i);
          if (i === 2) throw new Error('two fails');
          return i * 10;
        },
        concurrency: 1,
      }, { redis });
      queues.push(q);
      expect(await hs[1]!.result).toBe(10);
      await expect(hs[2]!.result).rejects.toMatchObject({ message: 'two fails' });
      expect(await Promise.all([hs[0]!.result, hs[3]!.result])).toEqual([0, 30]);
      expect(order).toEqual([1, 3, 2, 0]);
      expect((await sub.deadLetters()).map((d) => d.payload)).toEqual([2]);
      expect(await sub.counts()).toEqual({ queued: 0, delayed: 0, running: 0, dead: 1 });
    } finally {
      await Promise.all(queues.map((q) => q.close(1000)));
      await redis.close();
      await cluster.stop();
    }
  }, 90_000);
});
