/**
 * Cache benchmarks, each against its peers in the same run:
 *  - getSync (an L1 hit, through the whole Cache) vs lru-cache `get` at 10k, 100k and 1M resident
 *    entries, and at 10k with a ttl on both sides; `set` with eviction vs lru-cache `set`;
 *  - L2: a value a worker set, read on the main thread (getSync with no L1: index, seqlock copy,
 *    decode);
 *  - tiered get with Redis, value in the memory tier: hotpath vs BentoCache (memory + Redis) vs
 *    cache-manager (Keyv memory + @keyv/redis);
 *  - get served by Redis (no memory tier), 64 concurrent callers: same peers;
 *  - getOrLoad: value in the memory tier (tiered), and of keys held only in Redis (64 concurrent
 *    callers, and one), vs BentoCache getOrSet and cache-manager wrap.
 * The hit-ratio simulator is bench/cache-hitratio.bench.ts; the bloom filter's is bench/bloom.bench.ts.
 */
import { do_not_optimize } from 'mitata';
import { LRUCache } from 'lru-cache';
// Loaded before anything is measured, as an application would: @keyv/redis brings @redis/client,
// whose `class VerbatimString extends String` made V8 stop inlining `s.charCodeAt(i)` process-wide
// — hotpath's key hash went 13 → 65 ns and setSync 143 → 204 ns until the hashing loops called
// the captured function instead (runtime/key-hash.ts). The in-process rows run with it loaded.
import { BentoCache, bentostore } from 'bentocache';
import { memoryDriver } from 'bentocache/drivers/memory';
import { redisDriver } from 'bentocache/drivers/redis';
import { createCache } from 'cache-manager';
import { Keyv } from 'keyv';
import KeyvRedis from '@keyv/redis';
import { Cache, createEngine } from '../engine/index.js';
import { QUICK, REDIS_URL, redisOrSkip, Suite } from './harness.js';

const suite = new Suite('cache.bench');
const engine = await createEngine({ workers: 1, memory: 256 << 20 });
engine.runtime.pool.register('benchCacheSet', new URL('./peers/cache-worker.js', import.meta.url).href, 'benchCacheSet');

// --- L1: getSync vs lru-cache get ------------------------------------------------------------------
/** Random getSync hits on `n` resident entries beside lru-cache gets of the same keys in the same order. */
async function l1Hits(n: number, ttl?: number): Promise<void> {
  const keys = Array.from({ length: n }, (_, i) => `key:${i}`);
  const ours = new Cache({ name: `l1-${n}${ttl === undefined ? '' : '-ttl'}`, l1: { maxEntries: n }, l2: false, ...(ttl === undefined ? {} : { ttl }) }, { runtime: engine.runtime.thread });
  const peer = new LRUCache<string, object>({ max: n, ...(ttl === undefined ? {} : { ttl }) });
  for (const k of keys) {
    const v = { k };
    await ours.set(k, v);
    peer.set(k, v);
  }
  // A pre-drawn random order, so both sides read the same keys in the same order.
  const order = Uint32Array.from({ length: 1 << 16 }, () => Math.floor(Math.random() * n));
  let i = 0;
  const withTtl = ttl === undefined ? '' : ' with a ttl';
  await suite.compare(`L1 hit, ${n.toLocaleString('en')} resident entries${withTtl}`, {
    name: `hotpath cache.getSync (L1, tinylfu${ttl === undefined ? '' : ', ttl'})`,
    fn: () => do_not_optimize(ours.getSync(keys[order[i++ & 0xffff]!]!)),
  }, [{
    name: `lru-cache get${ttl === undefined ? '' : ' (ttl)'}`,
    fn: () => do_not_optimize(peer.get(keys[order[i++ & 0xffff]!]!)),
  }]);
  await ours.close();
}
for (const n of QUICK ? [10_000] : [10_000, 100_000, 1_000_000]) await l1Hits(n);
// Entries with a ttl: the hit checks its deadline against a clock on both sides (lru-cache's
// ttlResolution caches its clock for 1 ms, as hotpath's coarse clock does).
await l1Hits(10_000, 600_000);

{
  const n = 10_000;
  const ours = new Cache({ name: 'l1-set', l1: { maxEntries: n }, l2: false }, { runtime: engine.runtime.thread });
  const peer = new LRUCache<string, object>({ max: n });
  const keys = Array.from({ length: 1 << 17 }, (_, i) => `set:${i}`);
  const v = { x: 1 };
  let i = 0;
  let j = 0;
  // Both sides warmed up first: the caches measured before were closed, and V8 throws away code
  // specialised on their objects once they are collected ('weak objects' deopts), so without this
  // the first samples (all of them in quick mode: 980 ns a set) measured code not optimised yet.
  for (let k = 0; k < 300_000; k++) {
    ours.setSync(keys[i++ & 0x1ffff]!, v);
    peer.set(keys[j++ & 0x1ffff]!, v);
  }
  await suite.compare('set with eviction (10k entries, every set a new key)', {
    name: 'hotpath cache.setSync (L1 only)',
    fn: () => ours.setSync(keys[i++ & 0x1ffff]!, v),
  }, [{
    name: 'lru-cache set',
    fn: () => do_not_optimize(peer.set(keys[j++ & 0x1ffff]!, v)),
  }]);
  await suite.compare('set with eviction, the async API (10k entries)', {
    name: 'hotpath await cache.set (L1 only)',
    fn: () => ours.set(keys[i++ & 0x1ffff]!, v),
  }, [{
    name: 'lru-cache set',
    fn: () => do_not_optimize(peer.set(keys[j++ & 0x1ffff]!, v)),
  }]);
  await ours.close();
}

// Memory per L1 entry beside lru-cache's: bench/cache-l1.bench.ts (heap + the sketch's memory).

// --- L2: a value a worker wrote, read on the main thread ------------------------------------------
{
  const name = 'l2-bench';
  const ours = new Cache({ name, l1: false, l2: { bytes: 16 << 20 } }, { runtime: engine.runtime.thread });
  const value = { id: 12345, name: 'a user name', email: 'someone@example.com', tags: ['a', 'b'], score: 0.5 };
  await engine.run('benchCacheSet', { name, key: 'user:12345', value });
  if (JSON.stringify(ours.getSync('user:12345')) !== JSON.stringify(value)) throw new Error('L2 bench: the worker\'s value did not arrive');
  const plain = new Map([['user:12345', value]]);
  await suite.compare('L2 cross-thread getSync of a ~100-byte value (copy + decode)', {
    name: 'hotpath cache.getSync (L2 only, set by a worker)',
    fn: () => do_not_optimize(ours.getSync('user:12345')),
  }, [{
    name: 'Map.get + structuredClone (a same-thread copy, for scale)',
    fn: () => do_not_optimize(structuredClone(plain.get('user:12345'))),
  }]);
  await ours.close();
}

// --- With Redis ------------------------------------------------------------------------------------
const probe = await redisOrSkip('cache on Redis');
if (probe !== undefined) {

  const url = new URL(REDIS_URL);
  const connection = { host: url.hostname, port: Number(url.port || 6379) };
  const dist = await createEngine({ workers: 1, redis: REDIS_URL, redisTimeoutMs: 1000, cache: { l2: { bytes: 16 << 20 } } });
  const bento = new BentoCache({
    default: 'tiered',
    stores: {
      tiered: bentostore().useL1Layer(memoryDriver({ maxItems: 10_000 })).useL2Layer(redisDriver({ connection, prefix: 'bento-bench' })),
      remote: bentostore().useL2Layer(redisDriver({ connection, prefix: 'bento-bench-r' })),
    },
  });
  const managerRedis = new KeyvRedis(REDIS_URL);
  const manager = createCache({ stores: [new Keyv(), new Keyv({ store: managerRedis, namespace: 'cm-bench' })] });
  const remoteOnly = new Cache({ name: 'remote', l1: false, l2: false, bloom: false }, {
    runtime: dist.runtime.thread, redis: dist.redis!, redisTimeoutMs: 1000, compressor: dist.compressor,
  });
  const remoteManager = createCache({ stores: [new Keyv({ store: new KeyvRedis(REDIS_URL), namespace: 'cm-bench-r' })] });
  const value = { id: 7, name: 'a cached row', tags: ['x', 'y'], n: 3.5 };
  const keys = Array.from({ length: 1000 }, (_, i) => `bench:${i}`);
  for (const k of keys) {
    await dist.cache.set(k, value);
    await bento.set({ key: k, value });
    await bento.use('remote').set({ key: k, value });
    await manager.set(k, value);
    await remoteManager.set(k, value);
  }
  let i = 0;
  await suite.compare('tiered get with Redis configured, value in the memory tier', {
    name: 'hotpath cache.get',
    fn: () => dist.cache.get(keys[i++ % 1000]!),
  }, [{
    name: 'BentoCache get (memory + redis; its memory driver copies values by default: serialize)',
    fn: () => bento.get({ key: keys[i++ % 1000]! }),
  }, {
    name: 'cache-manager get (keyv memory + @keyv/redis)',
    fn: () => manager.get(keys[i++ % 1000]!),
  }]);
  await suite.compare('getOrLoad with Redis configured, value in the memory tier', {
    name: 'hotpath cache.getOrLoad',
    fn: () => dist.cache.getOrLoad(keys[i++ % 1000]!, () => value),
  }, [{
    name: 'BentoCache getOrSet (memory + redis; serialize default)',
    fn: () => bento.getOrSet({ key: keys[i++ % 1000]!, factory: () => value }),
  }, {
    name: 'cache-manager wrap (keyv memory + @keyv/redis)',
    fn: () => manager.wrap(keys[i++ % 1000]!, () => value),
  }]);
  const concurrent = (fn: (key: string) => Promise<unknown>) => async (): Promise<void> => {
    const calls = new Array<Promise<unknown>>(64);
    for (let c = 0; c < 64; c++) calls[c] = fn(keys[i++ % 1000]!);
    await Promise.all(calls);
  };
  await suite.compare('get served by Redis (no memory tier), 64 concurrent callers (per get)', {
    name: 'hotpath cache.get (L3 only)',
    fn: concurrent((k) => remoteOnly.get(k)),
    ops: 64,
  }, [{
    name: 'BentoCache get (redis only)',
    fn: concurrent((k) => bento.use('remote').get({ key: k })),
    ops: 64,
  }, {
    name: 'cache-manager get (@keyv/redis only)',
    fn: concurrent((k) => remoteManager.get(k)),
    ops: 64,
  }]);
  await suite.compare('getOrLoad of keys held in Redis, 64 concurrent callers (per call)', {
    name: 'hotpath cache.getOrLoad (L3 only)',
    fn: concurrent((k) => remoteOnly.getOrLoad(k, () => value)),
    ops: 64,
  }, [{
    name: 'BentoCache getOrSet (redis only)',
    fn: concurrent((k) => bento.use('remote').getOrSet({ key: k, factory: () => value })),
    ops: 64,
  }, {
    name: 'cache-manager wrap (@keyv/redis only)',
    fn: concurrent((k) => remoteManager.wrap(k, () => value)),
    ops: 64,
  }]);
  await suite.compare('getOrLoad of a key held in Redis, one caller (round trip)', {
    name: 'hotpath cache.getOrLoad (L3 only)',
    fn: () => remoteOnly.getOrLoad('bench:1', () => value),
  }, [{
    name: 'BentoCache getOrSet (redis only)',
    fn: () => bento.use('remote').getOrSet({ key: 'bench:1', factory: () => value }),
  }]);
  await remoteOnly.close();
  await bento.disconnectAll();
  await manager.disconnect();
  await remoteManager.disconnect();
  await dist.close();
  probe.disconnect();
}

await engine.close();
suite.finish();
