/**
 * The cache without Redis: L1 + shared L2 on one engine, its main thread and two workers.
 * Time is an injected clock; loader timeouts use fake timers.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Cache, type CacheOptions, type Engine } from '../../engine/index.js';
import { testEngine } from '../helpers.js';
import { StampTable } from '../../engine/cache/stamps.js';

const CACHE_TASKS = new URL('../fixtures/cache-tasks.mjs', import.meta.url).href;

let engine: Engine;
beforeAll(async () => {
  engine = await testEngine({ workers: 2, memory: 64 << 20 }); // (64: the review73 tests add caches)
  for (const t of ['cacheSet', 'cacheGetSync', 'cacheDelete', 'cacheLoadStorm', 'cacheClear']) engine.runtime.pool.register(t, CACHE_TASKS, t);
});
afterAll(() => engine.close());

let seq = 0;
function fresh(options: CacheOptions = {}, now?: () => number): Cache {
  return new Cache({ name: `t${++seq}`, l2: { bytes: 1 << 20 }, ...options }, {
    runtime: engine.runtime.thread, ...(now ? { clock: { now } } : {}),
  });
}

/** Runs a cache task on every worker (each task is picked by whichever worker is free: send enough). */
function onWorker(task: string, payload: unknown): Promise<unknown> {
  return engine.run(task, payload);
}

/** Starts `cache.getOrLoad(key)` with a loader that runs, then waits for `release()`, then returns `value`. */
async function heldLoad(cache: Cache, key: string, value: unknown): Promise<{ loading: Promise<unknown>; release: () => void }> {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let started = false;
  const loading = cache.getOrLoad(key, async () => {
    started = true;
    await gate;
    return value;
  });
  await vi.waitFor(() => expect(started).toBe(true));
  return { loading, release };
}

describe('basic operations', () => {
  it('set, get, getSync, delete', async () => {
    const c = fresh();
    expect(await c.get('a')).toBeUndefined();
    await c.set('a', { n: 1, when: new Date(5), tags: new Map([['x', 1n]]) });
    expect(c.getSync('a')).toEqual({ n: 1, when: new Date(5), tags: new Map([['x', 1n]]) });
    expect(await c.get('a')).toEqual(c.getSync('a'));
    expect(await c.delete('a')).toBe(true);
    expect(c.getSync('a')).toBeUndefined();
    expect(await c.delete('a')).toBe(false);
  });

  it('refuses bad keys, values and options synchronously with typed errors', () => {
    const c = fresh();
    expect(() => c.getSync('')).toThrow(TypeError);
    expect(() => c.getSync(42 as unknown as string)).toThrow(/non-empty strings/);
    expect(() => c.get(undefined as unknown as string)).toThrow(TypeError);
    expect(() => c.delete('')).toThrow(TypeError);
    expect(() => c.getMany(['a', 7 as unknown as string])).toThrow(TypeError);
    expect(() => c.set('f', () => 1)).toThrow(/value of "f" is a function/);
    // review32: an undefined value read as a miss, yet getOrLoad took it for a hit.
    expect(() => c.set('u', undefined)).toThrow(/the value of "u" is undefined/);
    expect(() => c.setSync('u', undefined)).toThrow(TypeError);
    expect(() => c.set('k', 1, { ttl: -5 })).toThrow(/ttl must be a positive/);
    expect(() => c.getOrLoad('k', 'nope' as never)).toThrow(/loader must be a function/);
    expect(() => c.getOrLoad('k', () => 1, { timeoutMs: 0 })).toThrow(/timeoutMs/);
    expect(() => fresh({ l1: { maxEntries: 0 } })).toThrow(/options.cache.l1.maxEntries must be a positive integer/);
    expect(() => fresh({ l1: { policy: 'fifo' as never } })).toThrow(/policy/);
    expect(() => fresh({ bogus: 1 } as never)).toThrow(/options.cache.bogus is not a cache option/);
    // review32: a timeout past what a Node timer holds (Infinity included) fired after 1 ms.
    expect(() => c.getOrLoad('k', () => 1, { timeoutMs: Infinity })).toThrow(/options\.timeoutMs must be a positive number of ms up to 2147483647/);
    expect(() => c.getOrLoad('k', () => 1, { timeoutMs: 2 ** 31 })).toThrow(/timeoutMs/);
    expect(() => fresh({ loaderTimeoutMs: 3e9 })).toThrow(/options\.cache\.loaderTimeoutMs must be a positive number of ms up to/);
  });

  it('setMany checks every entry\'s shape and key before writing any (review32: a bad second entry left the first stored)', async () => {
    const c = fresh();
    expect(() => c.setMany([['ok1', 1], ['', 2]])).toThrow(/setMany: entries\[1\]\[0\]: cache keys must be non-empty strings/);
    expect(() => c.setMany([['ok1', 1], null as never])).toThrow(/setMany: entries\[1\] must be \[key, value\] or \{ key, value, ttl\? \}, got null/);
    expect(c.getSync('ok1')).toBeUndefined();
    // review34: values and ttls too — a function, undefined, a bad ttl — before anything is written.
    expect(() => c.setMany([['a', 1], ['b', () => 2]])).toThrow(/setMany: entries\[1\] value is a function/);
    expect(() => c.setMany([['a', 1], ['b', undefined]])).toThrow(/the value of "b" is undefined/);
    expect(() => c.setMany([['a', 1], { key: 'b', value: 2, ttl: -5 }])).toThrow(/setMany: entries\[1\]\.ttl must be a positive number/);
    expect(c.getSync('a')).toBeUndefined();
    // review35: an L1-only cache holds live objects (set() takes a function inside one): so does
    // setMany; and a value nested too deeply is a TypeError naming the entry, not a stack overflow.
    const live = fresh({ l2: false });
    const withFn = { run: () => 1 };
    await live.setMany([['fn', withFn]]);
    expect(live.getSync('fn')).toBe(withFn);
    let deep: unknown = 1;
    for (let i = 0; i < 20_000; i++) deep = [deep];
    expect(() => c.setMany([['deep', deep]])).toThrow(/setMany: entries\[0\] value is nested too deeply to encode/);
    // A value over maxValueBytes too: every value is encoded before any is written.
    const small = fresh({ maxValueBytes: 1024 });
    expect(() => small.setMany([['a', 1], ['big', 'x'.repeat(5000)], { key: 'c', value: 3 }])).toThrow(expect.objectContaining({ code: 'ERR_HOTPATH_VALUE_TOO_LARGE' }));
    expect([small.getSync('a'), small.getSync('big'), small.getSync('c')]).toEqual([undefined, undefined, undefined]);
    await small.setMany([['a', 1], { key: 'c', value: 3, ttl: 60_000 }]);
    expect([small.getSync('a'), small.getSync('c')]).toEqual([1, 3]);
  });

  it('l1.sizeOf must answer a finite size ≥ 0; one that throws or answers nonsense stores nothing (review32)', async () => {
    const name = `t${++seq}`;
    const open = (sizeOf: (v: unknown) => unknown): Cache => new Cache({ name, l1: { maxBytes: 1000, sizeOf: sizeOf as never }, l2: { bytes: 1 << 20 } }, { runtime: engine.runtime.thread });
    const throwing = open(() => {
      throw new Error('bad sizeOf');
    });
    expect(() => throwing.setSync('k', 'v')).toThrow('bad sizeOf');
    const other = new Cache({ name, l2: { bytes: 1 << 20 } }, { runtime: engine.runtime.thread }); // another thread's view of the same L2
    expect(other.getSync('k')).toBeUndefined(); // before: L2 held it
    for (const answer of [-100, '400', NaN, Infinity, undefined]) {
      const c = open(() => answer);
      expect(() => c.setSync('k2', 'v'), String(answer)).toThrow(/options\.cache\.l1\.sizeOf must return a finite number ≥ 0/);
      expect(other.getSync('k2')).toBeUndefined();
      await c.close();
    }
    await Promise.all([throwing.close(), other.close()]);
  });

  it('getSync after close() throws ERR_HOTPATH_CLOSED, even for a key L1 holds (the hit path checks it too)', async () => {
    const c = fresh();
    await c.set('held', 1);
    expect(c.getSync('held')).toBe(1);
    await c.close();
    expect(() => c.getSync('held')).toThrow(expect.objectContaining({ code: 'ERR_HOTPATH_CLOSED' }));
    expect(() => c.getSync('absent')).toThrow(expect.objectContaining({ code: 'ERR_HOTPATH_CLOSED' }));
    expect(() => c.getSync('')).toThrow(TypeError);
  });

  it('createEngine refuses bad cache options before starting anything', async () => {
    await expect(testEngine({ cache: { ttl: 0 } })).rejects.toThrow(/options.cache.ttl/);
  });

  it('refuses a value over maxValueBytes and keeps the previous one', async () => {
    const c = fresh({ maxValueBytes: 1024 });
    await c.set('big', 'small');
    expect(() => c.set('big', 'x'.repeat(5000))).toThrow(expect.objectContaining({ code: 'ERR_HOTPATH_VALUE_TOO_LARGE' }));
    expect(c.getSync('big')).toBe('small');
  });

  it('a value too large for L2 stays out of it (and its older L2 value goes)', async () => {
    const name = `big${++seq}`;
    const c = new Cache({ name, l2: { bytes: 1 << 20, maxValueBytes: 4096 } }, { runtime: engine.runtime.thread });
    await c.set('k', 'old');
    expect(await onWorker('cacheGetSync', { name, key: 'k' })).toBe('old');
    const events: unknown[] = [];
    c.on('tooLarge', (...a) => events.push(a));
    await c.set('k', 'y'.repeat(10_000));
    expect(c.getSync('k')).toBe('y'.repeat(10_000)); // this thread's L1
    expect(await onWorker('cacheGetSync', { name, key: 'k' })).toBeNull(); // not in L2: not the old value either
    expect(c.stats().l2!.tooLarge).toBe(1);
    expect(events).toHaveLength(1);
  });

  it('the too-large error of a cache without Redis names the cache\'s maxValueBytes, not the engine codec\'s 16 MiB (review73 D10)', () => {
    const c = fresh({ maxValueBytes: 1 << 20 });
    const huge = 'h'.repeat(17 << 20); // over the engine codec's own limit too
    let err: unknown;
    try {
      c.setSync('huge', huge);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'ERR_HOTPATH_VALUE_TOO_LARGE', maxBytes: 1 << 20 });
    expect((err as Error).message).toMatch(/over the limit of 1048576 \(maxValueBytes\)/);
    expect(c.getSync('huge')).toBeUndefined();
  });
});

describe('stamps', () => {
  it('keys sharing a stamp word do not evict each other: an L1-only cache keeps all it holds', async () => {
    const c = fresh({ l2: false, l1: { maxEntries: 20_000 } });
    for (let i = 0; i < 20_000; i++) await c.set(`k${i}`, i);
    let held = 0;
    for (let i = 0; i < 20_000; i++) if (c.getSync(`k${i}`) === i) held++;
    expect(held).toBe(20_000);
  });

  it('with L2, an L1 entry whose stamp word moved for another key is kept without a decode', async () => {
    const c = new Cache({ name: `st${++seq}`, l2: { bytes: 4 << 20 }, l1: { maxEntries: 20_000 } }, { runtime: engine.runtime.thread });
    for (let i = 0; i < 20_000; i++) await c.set(`k${i}`, i); // 20 000 keys over 65 536 stamp words: many shared
    for (let i = 0; i < 20_000; i++) expect(c.getSync(`k${i}`)).toBe(i);
    const s = c.stats();
    expect(s.l1!.hits).toBe(20_000);
    expect(s.l2!.hits).toBe(0);
  });
});

describe('time', () => {
  it('expires entries at their ttl, per call or by default', async () => {
    let t = 1_000_000;
    const c = fresh({ ttl: 100 }, () => t);
    await c.set('a', 1);
    await c.set('b', 2, { ttl: 1000 });
    t += 100;
    expect(c.getSync('a')).toBe(1);
    t += 1;
    expect(c.getSync('a')).toBeUndefined();
    expect(await c.get('a')).toBeUndefined();
    expect(c.getSync('b')).toBe(2);
    t += 900;
    expect(c.getSync('b')).toBeUndefined();
  });

  it('entries without a ttl never expire, and the first one with a ttl still does (after a clear too)', async () => {
    // getSync skips the clock while no L1 entry can expire: the first timed entry must end that.
    let t = 1_000_000;
    const c = fresh({ l2: false }, () => t);
    await c.set('forever', 1);
    expect(c.getSync('forever')).toBe(1);
    await c.set('brief', 2, { ttl: 10 });
    t += 11;
    expect(c.getSync('brief')).toBeUndefined();
    expect(c.getSync('forever')).toBe(1);
    await c.clear();
    await c.set('forever', 3);
    expect(c.getSync('forever')).toBe(3);
    await c.set('brief', 4, { ttl: 10 });
    t += 11;
    expect(c.getSync('brief')).toBeUndefined();
    t += 1e9;
    expect(c.getSync('forever')).toBe(3);
  });

  it('an entry with a ttl and an infinite stale time still expires for getSync (review27)', async () => {
    let t = 1_000_000;
    const byOption = fresh({ l2: false, ttl: 10, staleIfError: Infinity }, () => t);
    const withL2 = fresh({ ttl: 10, staleWhileRevalidate: Infinity }, () => t);
    const perCall = fresh({ l2: false }, () => t);
    await byOption.set('k', 1);
    await withL2.set('k', 2);
    await perCall.set('k', 3, { ttl: 10, staleMs: Infinity });
    expect([byOption.getSync('k'), withL2.getSync('k'), perCall.getSync('k')]).toEqual([1, 2, 3]);
    t += 11;
    expect([byOption.getSync('k'), withL2.getSync('k'), perCall.getSync('k')]).toEqual([undefined, undefined, undefined]);
  });

  it('stale-while-revalidate serves the old value once and reloads in the background', async () => {
    let t = 5_000_000;
    const c = fresh({ ttl: 100, staleWhileRevalidate: 50 }, () => t);
    let n = 0;
    const loader = async (): Promise<number> => ++n;
    expect(await c.getOrLoad('k', loader)).toBe(1);
    t += 120; // stale, within the window
    expect(await c.getOrLoad('k', loader)).toBe(1);
    await vi.waitFor(() => expect(c.getSync('k')).toBe(2));
    expect(c.stats().staleServed).toBe(1);
    t += 500; // beyond ttl + window: a blocking load
    expect(await c.getOrLoad('k', loader)).toBe(3);
  });

  it('stale-if-error serves the old value when the loader fails, and errors are not cached', async () => {
    let t = 9_000_000;
    const c = fresh({ ttl: 100, staleIfError: 1000 }, () => t);
    expect(await c.getOrLoad('k', () => 'v1')).toBe('v1');
    t += 200;
    expect(await c.getOrLoad('k', () => Promise.reject(new Error('db down')))).toBe('v1');
    t += 2000; // past the stale window
    await expect(c.getOrLoad('k', () => Promise.reject(new Error('db down')))).rejects.toThrow('db down');
    expect(await c.getOrLoad('k', () => 'v2')).toBe('v2'); // the failure was not cached
  });

  it('a loader over its timeout rejects with ERR_HOTPATH_TIMEOUT and its signal aborts', async () => {
    vi.useFakeTimers();
    try {
      const c = fresh({ loaderTimeoutMs: 500 });
      let signal: AbortSignal | undefined;
      const p = c.getOrLoad('slow', (_k, ctx) => {
        signal = ctx.signal;
        return new Promise(() => {});
      });
      const settled = expect(p).rejects.toMatchObject({ code: 'ERR_HOTPATH_TIMEOUT' });
      await vi.advanceTimersByTimeAsync(501);
      await settled;
      expect(signal!.aborted).toBe(true);
      expect(c.getSync('slow')).toBeUndefined();
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('stats', () => {
  it('an expired entry in its stale window is an L1 miss for get and getOrLoad, and a getOrLoad miss counts once (review73 D7)', async () => {
    let t = 3_000_000;
    const c = fresh({ staleIfError: 60_000 }, () => t);
    const d = (before: ReturnType<Cache['stats']>): number[] => {
      const after = c.stats();
      return [after.l1!.hits - before.l1!.hits, after.l1!.misses - before.l1!.misses, after.l2!.hits - before.l2!.hits, after.l2!.misses - before.l2!.misses];
    };
    await c.set('k', 'v', { ttl: 20 });
    let s = c.stats();
    expect(await c.get('k')).toBe('v');
    expect(d(s)).toEqual([1, 0, 0, 0]);
    t += 60; // expired, within its stale window
    s = c.stats();
    expect(await c.get('k')).toBeUndefined();
    expect(d(s)).toEqual([0, 1, 0, 0]); // was [1, 0]
    s = c.stats();
    expect(c.getSync('k')).toBeUndefined();
    expect(d(s)).toEqual([0, 1, 0, 0]);
    s = c.stats();
    let calls = 0;
    expect(await c.getOrLoad('k', () => (++calls, 'fresh'))).toBe('fresh');
    expect(calls).toBe(1);
    expect(d(s)).toEqual([0, 1, 0, 0]); // was [2, 0]: a hit, and again after the claim
    s = c.stats();
    expect(await c.getOrLoad('new', () => 1)).toBe(1);
    expect(d(s)).toEqual([0, 1, 0, 1]); // was [0, 2, 0, 2]
    s = c.stats();
    expect(await c.getOrLoad('new', () => 2)).toBe(1);
    expect(d(s)).toEqual([1, 0, 0, 0]);
  });
});

describe('single flight', () => {
  it('concurrent getOrLoad on one thread run the loader once', async () => {
    const c = fresh();
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const all = Array.from({ length: 100 }, () => c.getOrLoad('one', async () => {
      calls++;
      await gate;
      return 'v';
    }));
    release();
    expect(await Promise.all(all)).toEqual(Array(100).fill('v'));
    expect(calls).toBe(1);
  });

  it('1000 concurrent getOrLoad of one key across main + 2 workers run the loader once', async () => {
    const name = `storm${++seq}`;
    const c = new Cache({ name, l2: { bytes: 1 << 20 } }, { runtime: engine.runtime.thread });
    const words = engine.runtime.region(`test:cache-storm:${name}`, 8).offset;
    const counter = words;
    const gate = words + 4;
    const i32 = engine.runtime.thread.i32;
    const loader = async (): Promise<{ loadedBy: string; at: number }> => {
      Atomics.add(i32, counter >>> 2, 1);
      while (Atomics.load(i32, gate >>> 2) < 3) await new Promise((r) => setImmediate(r));
      return { loadedBy: 'main', at: 1 };
    };
    // Each worker takes one storm of 333 calls (the channel hands one task to each free worker).
    const theirs = [
      onWorker('cacheLoadStorm', { name, key: 'hot', calls: 333, counter, gate, threads: 3 }),
      onWorker('cacheLoadStorm', { name, key: 'hot', calls: 333, counter, gate, threads: 3 }),
    ];
    const mine = Array.from({ length: 334 }, () => c.getOrLoad('hot', loader));
    Atomics.add(i32, gate >>> 2, 1);
    const values = await Promise.all(mine);
    expect(await Promise.all(theirs)).toEqual([true, true]);
    expect(values.every((v) => v.at === 1)).toBe(true);
    expect(Atomics.load(i32, counter >>> 2)).toBe(1);
  });

  it('a delete that lands while a load runs wins: the loaded value is returned, not cached', async () => {
    const c = fresh();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const p = c.getOrLoad('k', async () => {
      await gate;
      return 'stale-from-db';
    });
    await Promise.resolve();
    await c.delete('k');
    release();
    expect(await p).toBe('stale-from-db');
    expect(c.getSync('k')).toBeUndefined();
  });

  it('a clear() during a load keeps the loaded value out', async () => {
    const c = fresh();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const p = c.getOrLoad('k', async () => {
      await gate;
      return 1;
    });
    await Promise.resolve();
    await c.clear();
    release();
    expect(await p).toBe(1);
    expect(c.getSync('k')).toBeUndefined();
  });
});

describe('across threads', () => {
  it('a value set in a worker is read by the main thread at once, and an overwrite replaces L1 copies', async () => {
    const name = `x${++seq}`;
    const c = new Cache({ name, l2: { bytes: 1 << 20 } }, { runtime: engine.runtime.thread });
    await c.set('k', 'main-1');
    expect(c.getSync('k')).toBe('main-1'); // now in the main thread's L1
    await onWorker('cacheSet', { name, key: 'k', value: 'worker-2' });
    expect(c.getSync('k')).toBe('worker-2');
    await c.set('k', 'main-3');
    for (let i = 0; i < 4; i++) expect(await onWorker('cacheGetSync', { name, key: 'k' })).toBe('main-3');
    await onWorker('cacheDelete', { name, key: 'k' });
    expect(c.getSync('k')).toBeUndefined();
  });

  it('clear() empties every thread', async () => {
    const name = `clr${++seq}`;
    const c = new Cache({ name, l2: { bytes: 1 << 20 } }, { runtime: engine.runtime.thread });
    await onWorker('cacheSet', { name, key: 'a', value: 1 });
    expect(c.getSync('a')).toBe(1);
    await c.clear();
    expect(c.getSync('a')).toBeUndefined();
    for (let i = 0; i < 4; i++) expect(await onWorker('cacheGetSync', { name, key: 'a' })).toBeNull();
  });

  it('a clear() anywhere empties the L1 copies every thread already held', async () => {
    const name = `clr${++seq}`;
    const c = new Cache({ name, l2: { bytes: 1 << 20 } }, { runtime: engine.runtime.thread });
    await c.set('a', 1);
    expect(c.getSync('a')).toBe(1); // in the main thread's L1, without a ttl
    const reads = () => Promise.all(Array.from({ length: 6 }, () => onWorker('cacheGetSync', { name, key: 'a' })));
    expect(await reads()).toEqual([1, 1, 1, 1, 1, 1]); // in the workers' L1s
    await onWorker('cacheClear', { name });
    expect(c.getSync('a')).toBeUndefined();
    expect(await c.get('a')).toBeUndefined();
    await c.set('a', 2);
    expect(await reads()).toEqual([2, 2, 2, 2, 2, 2]);
    await c.clear();
    expect(await reads()).toEqual([null, null, null, null, null, null]);
    expect(c.getSync('a')).toBeUndefined();
  });

  it('Cache.open in a thread without the cache says so', () => {
    expect(() => Cache.open(engine.runtime.thread, 'never-made')).toThrow(/no cache named/);
  });

  it('Cache.open keeps Infinity settings: ttl, staleIfError, staleWhileRevalidate (review73 D5: they became null)', async () => {
    const forever = fresh({ ttl: Infinity });
    const name = forever.name;
    await forever.set('k', 'kept');
    const opened = Cache.open(engine.runtime.thread, name); // threw "ttl must be a positive number of ms, got null"
    expect(opened.getSync('k')).toBe('kept');
    await opened.set('k2', 'also');
    expect(await onWorker('cacheGetSync', { name, key: 'k2' })).toBe('also'); // a worker's Cache.open too
    await opened.close();
    // staleIfError: Infinity read back as 0: the opened cache never served a stale value.
    const sie = fresh({ staleIfError: Infinity, staleWhileRevalidate: Infinity });
    await sie.set('s', 'last-good', { ttl: 1 });
    const other = Cache.open(engine.runtime.thread, sie.name);
    await vi.waitFor(() => expect(other.getSync('s')).toBeUndefined()); // past its ttl (1 ms)
    expect(await other.getOrLoad('s', () => Promise.reject(new Error('db down')), { staleWhileRevalidate: 0 })).toBe('last-good');
    // …and a value written through it keeps the stale window (Infinity) too.
    await other.set('s2', 'written-in-open', { ttl: 1 });
    await vi.waitFor(() => expect(sie.getSync('s2')).toBeUndefined());
    expect(await sie.getOrLoad('s2', () => Promise.reject(new Error('db down')), { staleWhileRevalidate: 0 })).toBe('written-in-open');
    await other.close();
  });
});

describe('engine.cache', () => {
  it('is built on first use with the engine options, and its metrics are exported', async () => {
    const e = await testEngine({ cache: { ttl: 60_000, l1: { maxEntries: 100 }, l2: { bytes: 1 << 20 } } });
    try {
      await e.cache.set('m', 1);
      expect(e.cache.getSync('m')).toBe(1);
      expect(e.cache).toBe(e.cache);
      const text = await e.metrics.text();
      expect(text).toMatch(/hotpath_cache_requests_total\{tier="l1",result="hit"\} 1/);
    } finally {
      await e.close();
    }
    expect(() => e.cache).not.toThrow(); // built before close: still returned
  });
});

describe('setSync', () => {
  it('writes L1 and L2 before it returns, and refuses bad values synchronously', async () => {
    const name = `ss${++seq}`;
    const c = new Cache({ name, l2: { bytes: 1 << 20 } }, { runtime: engine.runtime.thread });
    c.setSync('k', { a: 1 });
    expect(c.getSync('k')).toEqual({ a: 1 });
    expect(await onWorker('cacheGetSync', { name, key: 'k' })).toEqual({ a: 1 });
    expect(() => c.setSync('f', () => 1)).toThrow(TypeError);
    expect(() => c.setSync('', 1)).toThrow(TypeError);
  });
});

describe('races between threads (two caches of one name on this thread stand in for two threads)', () => {
  const pair = (options: CacheOptions = {}, now?: () => number): [Cache, Cache] => {
    const name = `pair${++seq}`;
    const make = (): Cache => new Cache({ name, l2: { bytes: 1 << 20 }, ...options }, { runtime: engine.runtime.thread, ...(now ? { clock: { now } } : {}) });
    return [make(), make()];
  };

  it('two writes in the same millisecond: the later one wins everywhere', async () => {
    const t = 7_000_000;
    const [a, b] = pair({}, () => t);
    for (let i = 0; i < 200; i++) {
      await a.set(`k${i}`, 'a');
      expect(a.getSync(`k${i}`)).toBe('a');
      await b.set(`k${i}`, 'b');
      expect(a.getSync(`k${i}`)).toBe('b');
      expect(b.getSync(`k${i}`)).toBe('b');
    }
  });

  it('a load too large for L2 does not wipe a newer write made while it ran', async () => {
    const [a, b] = pair({ l2: { bytes: 1 << 20, maxValueBytes: 1024 } });
    const { loading, release } = await heldLoad(a, 'k', 'x'.repeat(5000));
    await b.set('k', 'newer');
    release();
    expect(await loading).toBe('x'.repeat(5000));
    expect(a.getSync('k')).toBe('newer');
    expect(b.getSync('k')).toBe('newer');
  });

  it('a write too large for L2 made while a load runs is not overwritten by the older loaded value (review73 D1)', async () => {
    const [a, b] = pair({ l2: { bytes: 1 << 20, maxValueBytes: 1024 } });
    const big = 'N'.repeat(5000);
    const { loading, release } = await heldLoad(a, 'k', 'old-from-db');
    await b.set('k', big); // newer, and too large for L2
    release();
    expect(await loading).toBe('old-from-db'); // the answer of the load…
    expect(a.getSync('k')).toBeUndefined(); // …but not cached: the newer value cannot be shared, so a miss
    expect(b.getSync('k')).toBe(big); // the writer's own L1 keeps the newer value
    // One cache: the same.
    const c = fresh({ l2: { bytes: 1 << 20, maxValueBytes: 1024 } });
    const { loading: loading2, release: release2 } = await heldLoad(c, 'k', 'old-from-db');
    await c.set('k', big);
    release2();
    expect(await loading2).toBe('old-from-db');
    expect(c.getSync('k')).toBe(big);
    expect(await c.get('k')).toBe(big);
  });

  it('sets too large for L2 leave no tombstone where nothing can be stopped: 20 000 of them keep L2\'s values (review76 N2)', () => {
    for (const ttl of [undefined, 3_600_000]) {
      const [a, b] = pair({ ...(ttl !== undefined ? { ttl } : {}), l2: { bytes: 1 << 20, maxValueBytes: 1024 } });
      for (let i = 0; i < 300; i++) a.setSync(`hot-${i}`, 'v'.repeat(100));
      const big = 'B'.repeat(4000); // too large for this L2
      for (let i = 0; i < 20_000; i++) a.setSync(`report-${i}`, big);
      expect(a.stats().l2!.tooLarge).toBe(20_000);
      expect(a.stats().l2).toMatchObject({ tombstones: 0, evictions: 0 }); // were 8192 and 12 108
      let held = 0;
      for (let i = 0; i < 300; i++) if (b.getSync(`hot-${i}`) !== undefined) held++; // b's L1 is empty: L2 answers
      expect(held).toBe(300); // was 0
      // A key L2 held: its value goes, and a tombstone holds its place against older stores.
      a.setSync('hot-0', big);
      expect(b.getSync('hot-0')).toBeUndefined();
      expect(a.stats().l2!.tombstones).toBe(1);
    }
  });

  it('a too-large set during a load in another thread still holds its place, for at most tombstoneMs (review76 N2)', async () => {
    let t = 5_000_000;
    const [a, b] = pair({ l2: { bytes: 1 << 20, maxValueBytes: 1024 } }, () => t);
    const big = 'N'.repeat(5000);
    const { loading, release } = await heldLoad(a, 'k', 'old-from-db');
    await b.set('k', big); // newer, too large; L2 holds nothing of 'k', but a's load has claimed its flight slot
    expect(b.stats().l2!.tombstones).toBe(1);
    release();
    expect(await loading).toBe('old-from-db');
    expect(a.getSync('k')).toBeUndefined(); // refused by the tombstone
    await b.set('k2', big); // nothing in flight, nothing held: no tombstone
    expect(b.stats().l2!.tombstones).toBe(1);
    // Without a ttl the write's stale time is Infinity: the tombstone still ends after tombstoneMs
    // (60 s by default; was: never). A load older than the large write that finishes later than
    // that (longer than any loader timeout; this clock is fake) is taken again.
    const { loading: loading3, release: release3 } = await heldLoad(a, 'k3', 'older-load');
    await b.set('k3', big);
    expect(b.stats().l2!.tombstones).toBe(2);
    t += 60_001;
    release3();
    expect(await loading3).toBe('older-load');
    expect(b.getSync('k3')).toBe('older-load'); // was undefined: the tombstone lived for ever
  });

  it('a held place lasts as long as a load with the loader timeout can run, even with a short tombstoneMs (review78)', async () => {
    let t = 6_000_000;
    const [a, b] = pair({ l2: { bytes: 1 << 20, maxValueBytes: 1024 }, l3: { tombstoneMs: 300 } }, () => t);
    const big = 'N'.repeat(5000);
    const { loading, release } = await heldLoad(a, 'k', 'old-from-db');
    await b.set('k', big); // newer, too large for L2: its place is held against a's load
    t += 600; // the load outlives tombstoneMs (300), not the loader timeout
    release();
    expect(await loading).toBe('old-from-db');
    expect(a.getSync('k')).toBeUndefined(); // refused by the held place
    expect(b.getSync('k')).toBe(big); // was 'old-from-db' (the held place had ended after 300 ms)
  });

  it('delete() resolves true only when a tier held a value it would serve: not for an L1 copy another thread invalidated, nor one past its stale time (review76 N3)', async () => {
    let t = 7_000_000;
    const [a, b] = pair({}, () => t);
    a.setSync('k', 'v'); // in a's L1 and in L2
    expect(await b.delete('k')).toBe(true); // L2 held it
    expect(a.getSync('k')).toBeUndefined(); // a's L1 copy is invalidated (its stamp moved)…
    a.setSync('k2', 'v');
    expect(await b.delete('k2')).toBe(true);
    expect(await a.delete('k2')).toBe(false); // …so is this one, not read since: was true
    a.setSync('e', 'short-lived', { ttl: 10 });
    t += 40; // past its ttl and stale time (no stale window)
    expect(await a.delete('e')).toBe(false); // was true: L1 still held the expired entry
    // An L1-only cache: the same for an expired entry; a live one counts.
    const c = fresh({ l2: false }, () => t);
    c.setSync('x', 1, { ttl: 10 });
    c.setSync('y', 2);
    t += 40;
    expect(await c.delete('x')).toBe(false);
    expect(await c.delete('y')).toBe(true);
    expect(await c.delete('y')).toBe(false);
    // A value in its stale window is still a value (getOrLoad serves it).
    const d = fresh({ staleIfError: 60_000 }, () => t);
    d.setSync('s', 'stale-but-served', { ttl: 10 });
    t += 40;
    expect(await d.delete('s')).toBe(true);
  });

  it('when the loading thread fails, the waiting thread loads at once', async () => {
    const [a, b] = pair();
    let fail!: (e: Error) => void;
    const failing = new Promise<never>((_, reject) => (fail = reject));
    const pa = a.getOrLoad('k', () => failing);
    let bCalls = 0;
    const pb = b.getOrLoad('k', () => {
      bCalls++;
      return 'from-b';
    });
    await Promise.resolve();
    expect(bCalls).toBe(0); // waiting for a
    fail(new Error('backend down'));
    await expect(pa).rejects.toThrow('backend down');
    expect(await pb).toBe('from-b');
    expect(bCalls).toBe(1);
    expect(b.stats().sharedLoads).toBe(1);
  });
});

describe('loads the cache cannot keep', () => {
  it('a loaded value too large to store is still the answer (storeError emitted)', async () => {
    const c = fresh({ maxValueBytes: 1024 });
    const errors: unknown[] = [];
    c.on('storeError', (_k, err) => errors.push(err));
    expect(await c.getOrLoad('big', () => 'y'.repeat(5000))).toBe('y'.repeat(5000));
    expect(errors).toHaveLength(1);
    expect(c.getSync('big')).toBeUndefined();
  });

  it('without L2, a set made while a load runs is not overwritten by the load', async () => {
    const c = fresh({ l2: false });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const p = c.getOrLoad('k', async () => {
      await gate;
      return 'old-from-db';
    });
    await Promise.resolve();
    await c.set('k', 'new');
    release();
    expect(await p).toBe('old-from-db');
    expect(c.getSync('k')).toBe('new');
  });

  it('without L2, a delete during a load still wins', async () => {
    const c = fresh({ l2: false });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const p = c.getOrLoad('k', async () => {
      await gate;
      return 'read-before-delete';
    });
    await Promise.resolve();
    await c.delete('k');
    release();
    expect(await p).toBe('read-before-delete');
    expect(c.getSync('k')).toBeUndefined();
  });
});

describe('L2 reads through one scratch buffer', () => {
  it('values decoded from it own their bytes: a later read does not change an earlier value', async () => {
    const name = `scr${++seq}`;
    const c = new Cache({ name, l1: false, l2: { bytes: 1 << 20 } }, { runtime: engine.runtime.thread });
    await onWorker('cacheSet', { name, key: 'a', value: { blob: Buffer.alloc(64, 1), f: new Float64Array([1.5]) } });
    await onWorker('cacheSet', { name, key: 'b', value: { blob: Buffer.alloc(64, 2), f: new Float64Array([2.5]) } });
    const a = c.getSync('a') as { blob: Uint8Array; f: Float64Array };
    const b = c.getSync('b') as { blob: Uint8Array; f: Float64Array };
    expect([...a.blob].every((x) => x === 1)).toBe(true);
    expect(a.f[0]).toBe(1.5);
    expect([...b.blob].every((x) => x === 2)).toBe(true);
    await onWorker('cacheSet', { name, key: 'big', value: 'z'.repeat(20_000) }); // grows the scratch
    expect(c.getSync('big')).toBe('z'.repeat(20_000));
    expect([...a.blob].every((x) => x === 1)).toBe(true);
  });
});

describe('the version clock', () => {
  it('gives every write of the process a unique version that stays on the clock (1024 per ms)', () => {
    const stamps = StampTable.open(engine.runtime.thread, `test:stamps:${++seq}`);
    const ms = 1_800_000_000_000;
    let last = 0;
    for (let i = 0; i < 1024; i++) {
      const v = stamps.nextVersion(ms);
      expect(v).toBeGreaterThan(last);
      last = v;
    }
    expect(last).toBeLessThan((ms + 1) * 1024); // a burst of 1024 in one ms does not run ahead
    expect(stamps.nextVersion(ms + 5)).toBe((ms + 5) * 1024); // and the clock takes over again
  });
});
