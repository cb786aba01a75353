/**
 * The cache on a real Redis: L3 reads and writes, invalidation between two processes with
 * versions, a Redis killed mid-run, a 3-master Cluster, hostile bytes, compression, the bloom
 * filter's saved round trips, the cross-instance lease and a pub/sub outage.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import calculateSlot from 'cluster-key-slot';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Cache, RedisConnector, type CacheOptions, type Engine } from '../../engine/index.js';
import { testEngine } from '../helpers.js';
import { encodeEntry } from '../../engine/cache/l3.js';
import { REDIS_URL, canSpawnRedis, sharedRedisReachable, startCluster, startRedis } from '../redis/servers.js';

const reachable = await sharedRedisReachable('cache on Redis');
const spawnable = canSpawnRedis('cache on a Redis of its own');

let seq = 0;
const prefix = `t${process.pid}-${Date.now() % 100000}-`;
const k = (name: string): string => `${prefix}${name}`;

describe.runIf(reachable)('on the shared Redis', () => {
  let engine: Engine;
  let raw: Redis;
  beforeAll(async () => {
    engine = await testEngine({ workers: 1, memory: 64 << 20, redis: REDIS_URL, redisTimeoutMs: 1000, cache: { l2: { bytes: 1 << 20 }, bloom: { expectedKeys: 10_000 } } });
    raw = new Redis(REDIS_URL);
    expect(await engine.cache.ready()).toBe(true);
  });
  afterAll(async () => {
    await engine?.close();
    raw?.disconnect();
  });

  /** A second instance on the same Redis, listening to the bus before it is used. */
  async function another(options: CacheOptions = {}, clock?: () => number): Promise<Cache> {
    const c = new Cache({ name: `r${++seq}`, l2: { bytes: 1 << 20 }, bloom: { expectedKeys: 10_000 }, ...options }, {
      runtime: engine.runtime.thread, redis: engine.redis!, redisTimeoutMs: 1000, compressor: engine.compressor,
      ...(clock ? { clock: { now: clock } } : {}),
    });
    expect(await c.ready()).toBe(true);
    return c;
  }

  it('writes hotpath:c:{key} with PX, and another instance reads it through L3', async () => {
    const a = engine.cache;
    await a.set(k('a'), { hello: 'world' }, { ttl: 60_000 });
    const pttl = await raw.pttl(`hotpath:c:{${k('a')}}`);
    expect(pttl).toBeGreaterThan(50_000);
    const b = await another();
    expect(b.getSync(k('a'))).toBeUndefined();
    expect(await b.get(k('a'))).toEqual({ hello: 'world' });
    expect(b.getSync(k('a'))).toEqual({ hello: 'world' }); // now local
    expect(b.stats().l3!.hits).toBe(1);
    await b.close();
  });

  it('setSync writes the local tiers at once and Redis in the background', async () => {
    engine.cache.setSync(k('bg'), 'later in Redis');
    expect(engine.cache.getSync(k('bg'))).toBe('later in Redis');
    await vi.waitFor(async () => expect(await raw.exists(`hotpath:c:{${k('bg')}}`)).toBe(1));
  });

  it('getMany answers from local tiers and one MGET', async () => {
    const c = engine.cache;
    await c.set(k('m1'), 1);
    await c.set(k('m2'), 2);
    const b = await another();
    await b.set(k('m3'), 3);
    expect(await b.getMany([k('m1'), k('m2'), k('m3'), k('none')])).toEqual([1, 2, 3, undefined]);
    await b.close();
  });

  it('stores large values LZ4-compressed and reads them back anywhere', async () => {
    const value = 'compressible '.repeat(10_000);
    await engine.cache.set(k('z'), value);
    const stored = await raw.getBuffer(`hotpath:c:{${k('z')}}`);
    expect(stored![9]! & 2).toBe(2);
    expect(stored!.length).toBeLessThan(value.length / 4);
    const b = await another({ l1: false, l2: false });
    expect(await b.get(k('z'))).toBe(value);
    await b.close();
  });

  it('hostile bytes in Redis are a typed error for get, and getOrLoad replaces them', async () => {
    const b = await another({ l1: false, l2: false });
    await raw.set(`hotpath:c:{${k('evil')}}`, Buffer.from('not a cache entry at all'));
    await expect(b.get(k('evil'))).rejects.toMatchObject({ code: 'ERR_HOTPATH_CORRUPT_VALUE' });
    const header = Buffer.alloc(26);
    header[0] = 0xc7;
    header.writeDoubleBE(Infinity, 10);
    header.writeDoubleBE(Infinity, 18);
    await raw.set(`hotpath:c:{${k('evil2')}}`, Buffer.concat([header, Buffer.from([0x01, 0xc1, 0xff, 0xff])]));
    await expect(b.get(k('evil2'))).rejects.toMatchObject({ code: 'ERR_HOTPATH_CORRUPT_VALUE' });
    header[9] = 2; // "compressed", with garbage
    await raw.set(`hotpath:c:{${k('evil3')}}`, Buffer.concat([header, Buffer.from('garbage frame')]));
    await expect(b.get(k('evil3'))).rejects.toMatchObject({ code: 'ERR_HOTPATH_CORRUPT_VALUE' });
    expect(await b.getOrLoad(k('evil'), () => 'repaired')).toBe('repaired');
    expect(await b.get(k('evil'))).toBe('repaired');
    expect(b.stats().l3!.corrupt).toBeGreaterThanOrEqual(3);
    await b.close();
  });

  it('a delete leaves a tombstone: a load that started before it cannot store its older value', async () => {
    const a = await another();
    const b = await another();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started = false;
    const loading = a.getOrLoad(k('race'), async () => {
      started = true;
      await gate;
      return 'read-before-the-delete';
    });
    await vi.waitFor(() => expect(started).toBe(true)); // the load has begun (after a Redis miss)…
    await b.delete(k('race')); // …and the delete lands while it runs
    release();
    expect(await loading).toBe('read-before-the-delete');
    expect(a.stats().l3!.refusedWrites).toBe(1);
    const c = await another();
    expect(await c.get(k('race'))).toBeUndefined();
    const stored = await raw.getBuffer(`hotpath:c:{${k('race')}}`);
    expect(stored![9]! & 1).toBe(1); // the tombstone
    await Promise.all([a.close(), b.close(), c.close()]);
  });

  it('a Redis reply that arrives after a clear is returned but not cached', async () => {
    const a = await another();
    const b = await another();
    await a.set(k('inflight'), 'before-clear');
    const reading = b.get(k('inflight')); // goes to Redis: b has nothing locally
    engine.redis!.emit('subscriber', 'down'); // a bus outage and its end clear b's local tiers…
    engine.redis!.emit('subscriber', 'up');
    expect(await reading).toBe('before-clear'); // …while the GET was in flight
    expect(b.getSync(k('inflight'))).toBeUndefined();
    await Promise.all([a.close(), b.close()]);
  });

  it('invalidation messages respect versions: an older one never wipes a newer value', async () => {
    const b = await another();
    await b.set(k('v'), 'newest');
    const seen = new Promise((r) => b.once('invalidated', r));
    await raw.publish('hotpath:c:bus', JSON.stringify({ o: 's', i: 'someone-else', k: k('v'), v: 1024, t: 0 }));
    await seen;
    expect(b.getSync(k('v'))).toBe('newest'); // L2 kept it; L1 reread it
    const seen2 = new Promise((r) => b.once('invalidated', r));
    await raw.publish('hotpath:c:bus', JSON.stringify({ o: 'd', i: 'someone-else', k: k('v'), v: (Date.now() + 60_000) * 1024, t: 0 }));
    await seen2;
    expect(b.getSync(k('v'))).toBeUndefined();
    await raw.publish('hotpath:c:bus', 'garbage that is not JSON'); // ignored, no throw
    await b.close();
  });

  it('a write made after reading another instance\'s value outranks it, even within the same millisecond (review32)', async () => {
    // One frozen millisecond on both: their versions come from their own counters alone. Before,
    // b's counter (no writes of its own) was behind a's, and b's later write was refused.
    const ms = (): number => 1_700_000_000_000;
    const a = await another({}, ms);
    const b = await another({}, ms);
    const key = k('hlc');
    for (const v of ['a1', 'a2', 'a3']) await a.set(key, v);
    expect(await b.get(key)).toBe('a3');
    await b.set(key, 'b, later');
    expect(b.stats().l3!.refusedWrites).toBe(0);
    const c = await another({ l1: false, l2: false });
    expect(await c.get(key)).toBe('b, later');
    await Promise.all([a.close(), b.close(), c.close()]);
  });

  it('a key deleted here is not answered from Redis while Redis still has an older value (its delete dropped) (review34)', async () => {
    const a = await another({ l1: false });
    await a.set(k('dropped-delete'), 'old');
    await a.delete(k('dropped-delete'));
    // As if the delete had not reached Redis: the old value, at an older version, is back there.
    await raw.set(`hotpath:c:{${k('dropped-delete')}}`, encodeEntry(1024, 0, Infinity, Infinity, Buffer.from([0x01, 0xa3, 0x6f, 0x6c, 0x64])));
    expect(await a.get(k('dropped-delete'))).toBeUndefined(); // L2's tombstone, older than the read, says so
    await a.close();
  });

  it('a version far in the future (a hostile entry) is not followed: later writes stay readable (review34)', async () => {
    const a = await another();
    const b = await another({ l1: false, l2: false });
    // A tombstone claiming version 2^53 − 1: followed, it pushed every later write of a past what an
    // entry can hold (readers then got ERR_HOTPATH_CORRUPT_VALUE) and refused its second write of a key.
    await raw.set(`hotpath:c:{${k('poison')}}`, encodeEntry(Number.MAX_SAFE_INTEGER, 1, Date.now() + 60_000, Date.now() + 60_000, Buffer.alloc(0)));
    expect(await a.get(k('poison'))).toBeUndefined();
    for (const v of ['v1', 'v2']) {
      await a.set(k('after-poison'), v);
      expect(await b.get(k('after-poison'))).toBe(v);
    }
    expect(a.stats().l3!.refusedWrites).toBe(0);
    await Promise.all([a.close(), b.close()]);
  });

  it('a Redis read in flight when the key is invalidated is not cached, with L2 or without (review32)', async () => {
    // A value whose compressed form is over 64 KiB: its read decompresses asynchronously, through a
    // compressor held here until the invalidation has been heard.
    const chunk = (i: number): string => `${i.toString(36).padStart(6, '0')}${Math.random().toString(36).slice(2, 12)}`;
    const big = (tag: string): string => tag + Array.from({ length: 30_000 }, (_, i) => chunk(i).repeat(2)).join('');
    const real = engine.compressor;
    for (const l2 of [false, { bytes: 4 << 20 }] as const) {
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let entered!: () => void;
      const inFlight = new Promise<void>((r) => (entered = r));
      const gated = {
        compress: real.compress.bind(real), compressSync: real.compressSync.bind(real), decompressSync: real.decompressSync.bind(real),
        decompress: async (data: Uint8Array, o: object) => {
          entered();
          await held;
          return real.decompress(data, o);
        },
      };
      const writer = await another();
      const reader = new Cache({ name: `r${++seq}`, l2, bloom: false }, { runtime: engine.runtime.thread, redis: engine.redis!, redisTimeoutMs: 1000, compressor: gated as never });
      expect(await reader.ready()).toBe(true);
      const key = k(`inflight-${l2 === false ? 'noL2' : 'L2'}`);
      const v1 = big('v1:');
      await writer.set(key, v1);
      expect((await raw.getBuffer(`hotpath:c:{${key}}`))!.length).toBeGreaterThan(64 * 1024);
      const read = reader.get(key);
      await inFlight; // the reply is here, held in its decompression
      const heard = new Promise((r) => reader.once('invalidated', r));
      await writer.set(key, big('v2:'));
      await heard;
      release();
      // Without L2: current when it was read, so answered… With L2: the tombstone the invalidation
      // left says the reply is older — a miss (safe; see cache.ts on why not an answer).
      expect(await read, String(l2)).toBe(l2 === false ? v1 : undefined);
      // …and never cached (without L2 it used to stay in L1 for good).
      expect(reader.getSync(key), String(l2)).toBeUndefined();
      expect(String(await reader.get(key)).slice(0, 3)).toBe('v2:');
      await Promise.all([writer.close(), reader.close()]);
    }
  });

  it('the bloom filter skips Redis for keys never written, once trusted', async () => {
    let t = Date.now();
    const b = await another({ bloom: { horizonMs: 10_000, expectedKeys: 10_000 } }, () => t);
    const before = engine.redis!.stats().commands;
    expect(await b.get(k('never-1'))).toBeUndefined(); // not trusted yet: asks Redis
    expect(engine.redis!.stats().commands).toBe(before + 1);
    t += 10_001;
    const misses = Array.from({ length: 200 }, (_, i) => k(`never-${i + 2}`));
    const mid = engine.redis!.stats().commands;
    for (const key of misses) expect(await b.get(key)).toBeUndefined();
    const skipped = b.stats().l3!.bloomSkips;
    expect(skipped).toBeGreaterThanOrEqual(195); // ≤ 1% false positives, a few more at most
    expect(engine.redis!.stats().commands - mid).toBe(200 - skipped);
    // A key another instance writes reaches the filter through the bus.
    const seen = new Promise((r) => b.once('invalidated', r));
    await engine.cache.set(k('never-2'), 'now it exists');
    await seen;
    expect(await b.get(k('never-2'))).toBe('now it exists');
    await b.close();
  });

  it('with l3.lease, concurrent loads in two instances run the loader once', async () => {
    const a = await another({ l3: { lease: true } });
    const b = await another({ l3: { lease: true } });
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const loader = async (): Promise<string> => {
      calls++;
      await gate;
      return 'once';
    };
    const pa = a.getOrLoad(k('lease'), loader);
    const pb = b.getOrLoad(k('lease'), loader);
    await vi.waitFor(() => expect(calls).toBe(1));
    release();
    expect(await Promise.all([pa, pb])).toEqual(['once', 'once']);
    expect(calls).toBe(1);
    await Promise.all([a.close(), b.close()]);
  });

  it('a huge finite ttl reaches Redis (PX capped) instead of being refused and counted as dropped (review73 D8)', async () => {
    const a = await another({ bloom: false });
    const b = await another({ bloom: false });
    const dropped: unknown[] = [];
    a.on('dropped', (...x) => dropped.push(x));
    await a.set(k('huge-ttl'), 'forever-ish', { ttl: 1e300 });
    expect(dropped).toEqual([]);
    expect(a.stats().l3!.droppedWrites).toBe(0);
    expect(await raw.pttl(`hotpath:c:{${k('huge-ttl')}}`)).toBeGreaterThan(1e15);
    expect(await b.get(k('huge-ttl'))).toBe('forever-ish');
    await Promise.all([a.close(), b.close()]);
  });

  it('delete() resolves true for a key only Redis held, false once it is gone (review73 D9)', async () => {
    const a = await another({ bloom: false });
    const b = await another({ bloom: false });
    // (b hears of the write first: its delete then outranks it even within the same millisecond)
    const heard = new Promise((r) => b.once('invalidated', r));
    await a.set(k('only-redis'), 'x');
    await heard;
    expect(b.getSync(k('only-redis'))).toBeUndefined(); // b's tiers do not hold it
    expect(await b.delete(k('only-redis'))).toBe(true);
    expect(await b.delete(k('only-redis'))).toBe(false); // a tombstone is not a value
    expect(await b.delete(k('never-there'))).toBe(false);
    await Promise.all([a.close(), b.close()]);
  });

  it('invalidations of keys never held here leave no tombstones in L2: other instances\' writes do not evict its values (review73 D3)', async () => {
    const b = await another({ bloom: false });
    const hot = Array.from({ length: 300 }, (_, i) => k(`hot-${i}`));
    for (const key of hot) b.setSync(key, `value of ${key}`);
    expect(b.stats().l2!.entries).toBeGreaterThanOrEqual(300);
    // 20 000 writes of other keys elsewhere, as their bus messages.
    const from = b.stats().invalidations;
    const n = 20_000;
    const base = (Date.now() + 1000) * 1024;
    for (let at = 0; at < n; at += 2000) {
      const p = raw.pipeline();
      for (let i = at; i < at + 2000; i++) p.publish('hotpath:c:bus', JSON.stringify({ o: 's', i: 'another-instance', k: k(`elsewhere-${i}`), v: base + i, t: 60_000 }));
      await p.exec();
    }
    await vi.waitFor(() => expect(b.stats().invalidations - from).toBeGreaterThanOrEqual(n), { timeout: 10_000 });
    expect(b.stats().l2!.tombstones).toBe(0); // was 8192: one per message, until the index was full
    expect(b.stats().l2!.evictions).toBe(0);
    for (const key of hot) expect(b.getSync(key)).toBe(`value of ${key}`);
    // A message for a key it holds still drops it and leaves a tombstone against older fills.
    const seen = new Promise((r) => b.once('invalidated', r));
    await raw.publish('hotpath:c:bus', JSON.stringify({ o: 's', i: 'another-instance', k: hot[0], v: (Date.now() + 60_000) * 1024, t: 0 }));
    await seen;
    expect(b.getSync(hot[0]!)).toBeUndefined();
    expect(b.stats().l2!.tombstones).toBe(1);
    await b.close();
  });

  it('the bloom filter is distrusted at start for ttl + the stale window: getOrLoad serves stale a key written before it started (review73 D4)', async () => {
    const options: CacheOptions = { ttl: 10_000, staleIfError: 60_000, bloom: { expectedKeys: 10_000 } };
    const a = await another(options);
    await a.set(k('pre-existing'), 'stale-but-usable');
    let t = Date.now();
    const b = await another(options, () => t); // starts after the write: never hears of it
    t += 10_500; // past the ttl (and the old horizon, the ttl), within staleIfError
    expect(await b.getOrLoad(k('pre-existing'), () => Promise.reject(new Error('db down')))).toBe('stale-but-usable');
    expect(b.stats().l3!.bloomSkips).toBe(0);
    // Past ttl + the stale window the filter is trusted: a key never written costs no round trip.
    t += 60_000;
    expect(await b.get(k('never-written'))).toBeUndefined();
    expect(b.stats().l3!.bloomSkips).toBe(1);
    await Promise.all([a.close(), b.close()]);
  });

  /** Resolves once `c` has heard a bus message for `key` (other suites share the bus). */
  function hears(c: Cache, key: string): Promise<void> {
    return new Promise((resolve) => {
      const f = (heard: string | undefined): void => {
        if (heard !== key) return;
        c.off('invalidated', f);
        resolve();
      };
      c.on('invalidated', f);
    });
  }

  it('a load in flight in another thread (Cache.open, as in a worker: no Redis, no bus) does not store its older value after another instance\'s write or delete of the key (review76 N1)', async () => {
    const m = await another({ ttl: 60_000, bloom: false }); // the process's Redis-backed instance
    const w = Cache.open(engine.runtime.thread, m.name); // a worker's Cache.open stands in: L2 only
    const o = await another({ l2: false, bloom: false }); // another instance (names share Redis keys and the bus)
    for (const op of ['set', 'delete'] as const) {
      const key = k(`n1-open-${op}`);
      const first = hears(m, key);
      await o.set(key, 'v0');
      await first;
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let started = false;
      const loading = w.getOrLoad(key, async () => {
        started = true; // read the source before the write below
        await gate;
        return 'old-from-db';
      });
      await vi.waitFor(() => expect(started).toBe(true));
      const heard = hears(m, key);
      if (op === 'set') await o.set(key, 'new-from-other');
      else await o.delete(key);
      await heard; // m's L2 holds nothing of the key, and m is not reading it from Redis
      release();
      expect(await loading).toBe('old-from-db'); // the load's answer…
      expect(w.getSync(key)).toBeUndefined(); // …not cached: it is older than the write (was cached for the whole ttl)
      expect(await m.get(key)).toBe(op === 'set' ? 'new-from-other' : undefined);
      expect(w.getSync(key)).toBe(op === 'set' ? 'new-from-other' : undefined);
      await raw.unlink(`hotpath:c:{${key}}`);
    }
    await Promise.all([m.close(), w.close(), o.close()]);
  });

  it('a getOrLoad running on a worker thread does not store its older value after another instance\'s write of the key (review76 N1)', async () => {
    engine.runtime.pool.register('cacheGatedLoad', new URL('../fixtures/cache-tasks.mjs', import.meta.url).href, 'cacheGatedLoad');
    const m = await another({ ttl: 60_000, bloom: false });
    const o = await another({ l2: false, bloom: false });
    const key = k('n1-worker');
    const word = engine.runtime.region(`test:cache-n1:${m.name}`, 8).offset;
    const i32 = engine.runtime.thread.i32;
    const running = engine.run('cacheGatedLoad', { name: m.name, key, value: 'old-from-db', word });
    await vi.waitFor(() => expect(Atomics.load(i32, word >>> 2)).toBe(1), { timeout: 10_000 });
    const heard = hears(m, key);
    await o.set(key, 'new-from-other');
    await heard;
    Atomics.store(i32, word >>> 2, 2);
    expect(await running).toBe('old-from-db');
    expect(m.getSync(key)).toBeUndefined(); // L2 did not take the worker's older value
    expect(await m.get(key)).toBe('new-from-other'); // was 'old-from-db' until the ttl: get never went to Redis
    await raw.unlink(`hotpath:c:{${key}}`);
    await Promise.all([m.close(), o.close()]);
  });

  it('the instance\'s own load does not put its older value in L2 even for the Redis round trip that refuses it (review76 N1)', async () => {
    // m's Redis writes go through a wrapped connector that records what another thread reads from
    // L2 at the moment each write of the key is sent.
    const key = k('n1-own');
    let w: Cache | undefined;
    const atWrite: unknown[] = [];
    const r = engine.redis!;
    const spy = new Proxy(r, {
      get(target, prop) {
        if (prop === 'defineScript') {
          return (name: string, source: string) => {
            const script = target.defineScript(name, source);
            return {
              name: script.name, sha: script.sha,
              run: (keys: string[], args: Array<string | number | Buffer>, options?: object) => {
                if (keys[0]!.includes(key) && w !== undefined) atWrite.push(w.getSync(key) ?? 'undefined');
                return script.run(keys, args, options);
              },
            };
          };
        }
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const m = new Cache({ name: `r${++seq}`, ttl: 60_000, l2: { bytes: 1 << 20 }, bloom: false }, { runtime: engine.runtime.thread, redis: spy, redisTimeoutMs: 1000 });
    expect(await m.ready()).toBe(true);
    w = Cache.open(engine.runtime.thread, m.name);
    const o = await another({ l2: false, bloom: false });
    let release!: () => void;
    const gate = new Promise<void>((res) => (release = res));
    let started = false;
    const loading = m.getOrLoad(key, async () => {
      started = true;
      await gate;
      return 'old-from-db';
    });
    await vi.waitFor(() => expect(started).toBe(true));
    const heard = hears(m, key);
    await o.set(key, 'new-from-other');
    await heard;
    release();
    expect(await loading).toBe('old-from-db');
    expect(atWrite).not.toContain('old-from-db'); // was ['old-from-db']: every thread read it until Redis refused the write
    expect(w.getSync(key)).toBeUndefined();
    expect(await m.get(key)).toBe('new-from-other');
    await raw.unlink(`hotpath:c:{${key}}`);
    await Promise.all([m.close(), w.close(), o.close()]);
  });

  it('two processes: a set in one invalidates the other, a delete too', async () => {
    const child: ChildProcess = spawn(process.execPath, [new URL('../fixtures/cache-process.mjs', import.meta.url).pathname, REDIS_URL], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: child.stdout! });
    const waiting = new Map<number, (v: { result?: unknown; error?: { code: string } }) => void>();
    let ready!: () => void;
    const isReady = new Promise<void>((r) => (ready = r));
    lines.on('line', (line) => {
      const m = JSON.parse(line);
      if (m.ready) ready();
      else waiting.get(m.id)?.(m);
    });
    let id = 0;
    const ask = (op: string, key?: string, value?: unknown): Promise<unknown> => new Promise((resolve, reject) => {
      const my = ++id;
      waiting.set(my, (m) => (m.error ? reject(Object.assign(new Error(m.error.code), m.error)) : resolve(m.result)));
      child.stdin!.write(`${JSON.stringify({ id: my, op, key, value })}\n`);
    });
    try {
      await isReady;
      const c = engine.cache;
      await c.set(k('p'), 'one');
      expect(await ask('get', k('p'))).toBe('one');
      expect(await ask('getSync', k('p'))).toBe('one'); // held locally there now
      const before = (await ask('invalidations')) as number;
      await c.set(k('p'), 'two');
      await vi.waitFor(async () => expect(await ask('invalidations')).toBeGreaterThan(before));
      expect(await ask('getSync', k('p'))).toBeNull(); // its copy was dropped…
      expect(await ask('get', k('p'))).toBe('two'); // …and Redis has the new one
      await ask('set', k('q'), 'theirs');
      await vi.waitFor(() => expect(c.getSync(k('q'))).toBeUndefined());
      expect(await c.get(k('q'))).toBe('theirs');
      await ask('delete', k('q'));
      await vi.waitFor(() => expect(c.getSync(k('q'))).toBeUndefined());
      expect(await c.get(k('q'))).toBeUndefined();
      await ask('close');
    } finally {
      child.kill();
    }
  });
});

describe.runIf(reachable)('two applications with different ioredis keyPrefixes on one Redis (review38)', () => {
  it('keep apart: clear() deletes its own prefixed entries only, and the other does not hear it', async () => {
    const url = new URL(REDIS_URL);
    const redis = (p: string): { host: string; port: number; keyPrefix: string } => ({ host: url.hostname, port: Number(url.port || 6379), keyPrefix: `${prefix}${p}:` });
    const a = await testEngine({ workers: 1, redis: redis('A'), redisTimeoutMs: 1000, cache: { l2: { bytes: 1 << 20 } } });
    const b = await testEngine({ workers: 1, redis: redis('B'), redisTimeoutMs: 1000, cache: { l2: { bytes: 1 << 20 } } });
    const raw = new Redis(REDIS_URL);
    try {
      expect(await a.cache.ready()).toBe(true);
      expect(await b.cache.ready()).toBe(true);
      await a.cache.set('k', 'from A');
      await b.cache.set('k', 'from B');
      expect((await raw.keys(`${prefix}*:hotpath:c:{k}`)).sort()).toEqual([`${prefix}A:hotpath:c:{k}`, `${prefix}B:hotpath:c:{k}`]);
      // B hears its own channel: a write of its own relayed through it arrives; A's clear must not.
      let heardB = 0;
      const offB = await b.redis!.subscribe(`${prefix}B:hotpath:c:bus`, () => heardB++);
      await a.cache.clear();
      await b.cache.set('k2', 'B again'); // a message on B's channel, after A's clear's message
      for (let i = 0; i < 200 && heardB === 0; i++) await new Promise((r) => setImmediate(r));
      expect(heardB).toBeGreaterThan(0);
      expect(await raw.keys(`${prefix}*:hotpath:c:{k}`)).toEqual([`${prefix}B:hotpath:c:{k}`]);
      expect(b.cache.getSync('k')).toBe('from B'); // B's local tiers were not cleared by A
      expect(await a.cache.get('k')).toBeUndefined();
      await offB();
    } finally {
      await b.cache.clear().catch(() => undefined);
      raw.disconnect();
      await a.close();
      await b.close();
    }
  });
});

describe.runIf(reachable)('clear() racing with reads (review73 D2)', () => {
  it('a get issued while clear() runs does not leave the cleared value cached once clear() resolved', async () => {
    const url = new URL(REDIS_URL);
    // A prefix of its own: clear() deletes every hotpath:c:* key under it, and other suites share db 0.
    const e = await testEngine({ workers: 1, redis: { host: url.hostname, port: Number(url.port || 6379), keyPrefix: `${prefix}clr:` }, redisTimeoutMs: 1000 });
    try {
      const c = new Cache({ name: 'clr', l2: { bytes: 1 << 20 }, bloom: false }, { runtime: e.runtime.thread, redis: e.redis!, redisTimeoutMs: 1000 });
      expect(await c.ready()).toBe(true);
      for (let round = 0; round < 3; round++) {
        await c.set('k', 'before-clear');
        const clearing = c.clear();
        const concurrent = c.get('k'); // its MGET goes out before the clear's UNLINK
        await clearing;
        await concurrent; // either answer is fine for a read racing the clear
        expect(c.getSync('k')).toBeUndefined();
        expect(await c.get('k')).toBeUndefined();
      }
      await c.close();
    } finally {
      await e.close();
    }
  });
});

describe.runIf(spawnable)('Redis going away', () => {
  it('a cache created while Redis is down subscribes once it is back, and drops what it cached meanwhile', async () => {
    const server = await startRedis();
    await server.kill();
    const engine = await testEngine({ workers: 1, redis: server.url, redisTimeoutMs: 100, redisConnectTimeoutMs: 100, cache: { l2: { bytes: 1 << 20 }, bloom: { expectedKeys: 10_000 } } });
    try {
      const c = engine.cache; // its subscribe fails now and is retried
      await new Promise((r) => c.once('l3error', r)); // the first attempt failed: deaf from here
      expect(await c.ready(10)).toBe(false);
      await c.set('early', 'cached while deaf');
      expect(c.getSync('early')).toBe('cached while deaf');
      const heard = new Promise<void>((resolve) => c.on('invalidated', (key) => key === undefined && resolve()));
      await server.restart();
      await heard; // subscribed at last: what it cached while deaf is dropped
      expect(await c.ready()).toBe(true);
      expect(c.getSync('early')).toBeUndefined();
      const raw = new Redis(server.url);
      await vi.waitFor(async () => expect(((await raw.pubsub('NUMSUB', 'hotpath:c:bus')) as [string, number])[1]).toBe(1));
      await c.set('later', 'mine');
      const dropped = new Promise((r) => c.once('invalidated', r));
      await raw.publish('hotpath:c:bus', JSON.stringify({ o: 'd', i: 'another-instance', k: 'later', v: (Date.now() + 60_000) * 1024, t: 0 }));
      await dropped;
      expect(c.getSync('later')).toBeUndefined();
      raw.disconnect();
    } finally {
      await engine.close();
      await server.stop();
    }
  }, 60_000);

  it('after a pub/sub outage the local tiers are not trusted (cleared)', async () => {
    const server = await startRedis();
    const engine = await testEngine({ workers: 1, redis: server.url, redisTimeoutMs: 1000, cache: { l2: { bytes: 1 << 20 }, bloom: { expectedKeys: 10_000 } } });
    const raw = new Redis(server.url);
    try {
      const b = engine.cache;
      expect(await b.ready()).toBe(true);
      await b.set('deaf', 'cached');
      expect(b.getSync('deaf')).toBe('cached');
      const cleared = new Promise<void>((resolve) => b.on('invalidated', (key) => key === undefined && resolve()));
      // Its subscription is made in the background: wait until Redis counts it, then cut it.
      await vi.waitFor(async () => expect(((await raw.pubsub('NUMSUB', 'hotpath:c:bus')) as [string, number])[1]).toBe(1));
      expect(await raw.client('KILL', 'TYPE', 'pubsub')).toBe(1);
      await cleared;
      expect(b.getSync('deaf')).toBeUndefined();
      expect(await b.get('deaf')).toBe('cached'); // Redis still has it
    } finally {
      raw.disconnect();
      await engine.close();
      await server.stop();
    }
  }, 60_000);

  it('gets and sets answer from L1/L2 within the timeout when Redis is killed mid-run, and recover', async () => {
    const server = await startRedis();
    const engine = await testEngine({ workers: 1, redis: server.url, redisTimeoutMs: 50, cache: { l2: { bytes: 1 << 20 }, bloom: { expectedKeys: 10_000 } } });
    try {
      const c = engine.cache;
      expect(await c.ready()).toBe(true);
      for (let i = 0; i < 20; i++) await c.set(`k${i}`, i);
      await server.kill();
      const dropped: unknown[] = [];
      c.on('dropped', (op) => dropped.push(op));
      const started = Date.now();
      for (let i = 0; i < 20; i++) expect(await c.get(`k${i}`)).toBe(i);
      expect(await c.get('never-set')).toBeUndefined(); // Redis unreachable: a miss, not a hang or a rejection
      await c.set('during', 'outage'); // resolves: written locally, the Redis write dropped
      expect(c.getSync('during')).toBe('outage');
      expect(await c.getOrLoad('loaded', () => 'from-loader')).toBe('from-loader');
      expect(Date.now() - started).toBeLessThan(5000); // bounded by the 50 ms timeouts and the open breaker: no hang
      expect(c.stats().l3!.droppedWrites).toBeGreaterThanOrEqual(1);
      expect(dropped).toContain('set');
      await expect(c.clear()).rejects.toMatchObject({ code: 'ERR_HOTPATH_REDIS_UNAVAILABLE' });
      expect(c.getSync('k1')).toBeUndefined(); // the local tiers were cleared all the same
      await server.restart();
      await vi.waitFor(() => expect(engine.redis!.available).toBe(true), { timeout: 15_000, interval: 50 });
      await c.set('after', 'back');
      const check = new Redis(server.url);
      expect((await check.getBuffer('hotpath:c:{after}'))!.length).toBeGreaterThan(26);
      check.disconnect();
    } finally {
      await engine.close();
      await server.stop();
    }
  }, 60_000);
});

describe.runIf(spawnable)('on a 3-master Redis Cluster', () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  beforeAll(async () => {
    cluster = await startCluster();
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('getMany spans slots on every master', async () => {
    const connector = await RedisConnector.connect({ cluster: cluster.urls }, { timeoutMs: 1000, connectTimeoutMs: 10_000 });
    const engine = await testEngine({ workers: 1 });
    try {
      const keys: string[] = [];
      const byNode = new Map<number, string>();
      for (let i = 0; byNode.size < 3; i++) byNode.set(Math.floor(calculateSlot(`c${i}`) / 5462), `c${i}`);
      keys.push(...byNode.values());
      const a = new Cache({ name: 'cl-a', l2: { bytes: 1 << 20 }, bloom: { expectedKeys: 10_000 } }, { runtime: engine.runtime.thread, redis: connector, redisTimeoutMs: 1000 });
      expect(await a.ready(10_000)).toBe(true);
      for (const key of keys) await a.set(key, `v-${key}`);
      const b = new Cache({ name: 'cl-b', l1: false, l2: false, bloom: { expectedKeys: 10_000 } }, { runtime: engine.runtime.thread, redis: connector, redisTimeoutMs: 1000 });
      expect(await b.getMany([...keys, 'absent'])).toEqual([...keys.map((x) => `v-${x}`), undefined]);
      await a.clear(); // SCAN + UNLINK on every master, one slot per UNLINK
      expect(await b.getMany(keys)).toEqual(keys.map(() => undefined));
      await Promise.all([a.close(), b.close()]);
    } finally {
      await engine.close();
      await connector.close();
    }
  }, 90_000);

  it('after a pub/sub outage the local tiers are not trusted (cleared), and invalidations are heard again', async () => {
    // review23: ioredis's Cluster subscriber moved to another node silently, so the cache never
    // learned it had missed invalidations and served stale values for good.
    const a = await testEngine({ workers: 1, redis: { cluster: cluster.urls }, redisTimeoutMs: 1000, redisConnectTimeoutMs: 10_000 });
    const b = await testEngine({ workers: 1, redis: { cluster: cluster.urls }, redisTimeoutMs: 1000, redisConnectTimeoutMs: 10_000 });
    const admins = cluster.nodes.map((n) => new Redis(n.url));
    const numsub = async (): Promise<number> =>
      (await Promise.all(admins.map(async (x) => ((await x.call('PUBSUB', 'NUMSUB', 'hotpath:c:bus')) as [string, number])[1]))).reduce((x, y) => x + y);
    try {
      expect(await a.cache.ready(10_000)).toBe(true);
      expect(await b.cache.ready(10_000)).toBe(true);
      await vi.waitFor(async () => expect(await numsub()).toBe(2)); // both subscribed (in the background)
      await a.cache.set('cl-deaf', 'v1');
      expect(await b.cache.get('cl-deaf')).toBe('v1');
      expect(b.cache.getSync('cl-deaf')).toBe('v1'); // b holds it locally
      let cleared = false;
      b.cache.on('invalidated', (key) => (cleared ||= key === undefined));
      await Promise.all(admins.map((x) => x.call('CLIENT', 'KILL', 'TYPE', 'pubsub')));
      await vi.waitFor(() => expect(cleared).toBe(true), { timeout: 5000 });
      expect(b.cache.getSync('cl-deaf')).toBeUndefined();
      await vi.waitFor(async () => expect(await numsub()).toBe(2)); // both back on the bus
      expect(await b.cache.get('cl-deaf')).toBe('v1');
      await a.cache.set('cl-deaf', 'v2');
      await vi.waitFor(() => expect(b.cache.getSync('cl-deaf')).toBeUndefined()); // the invalidation is heard
      expect(await b.cache.get('cl-deaf')).toBe('v2');
    } finally {
      for (const x of admins) x.disconnect();
      await Promise.all([a.close(), b.close()]);
    }
  }, 60_000);
});
