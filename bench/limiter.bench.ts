/**
 * Limiter benchmarks, each against its peer in the same run (rate-limiter-flexible):
 *  - allowSync (shared memory, any thread) vs RateLimiterMemory.consume, metrics on and off;
 *  - allow() on Redis with 64 concurrent callers vs RateLimiterRedis.consume (same Redis);
 *  - allow() with quota leases (distributed decisions/s; over-admission reported);
 *  - accuracy notes: the fixed window's boundary burst and the sliding window's error against an
 *    exact request log.
 */
import { do_not_optimize } from 'mitata';
import { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible';
import { createEngine, type Limiter } from '../engine/index.js';
import { QUICK, REDIS_URL, redisOrSkip, Suite } from './harness.js';

const suite = new Suite('limiter.bench');
const engine = await createEngine({ workers: 1 });
const run = `${process.pid}`;
// A rate high enough that most decisions are "allowed" for both, as in a healthy service.
const HIGH = { limit: 1_000_000_000, window: 1000 };
const keys = Array.from({ length: 1024 }, (_, i) => `user:${i}`);
let i = 0;

// --- allowSync vs RateLimiterMemory -----------------------------------------------------------
const bucket = engine.limiter('b-bucket', { algorithm: 'token-bucket', ...HIGH });
const bucketOff = engine.limiter('b-bucket-nm', { algorithm: 'token-bucket', ...HIGH, metrics: false });
const sliding = engine.limiter('b-sliding', { algorithm: 'sliding-window', ...HIGH });
const peer = new RateLimiterMemory({ points: 1_000_000_000, duration: 1 });

await suite.compare('decision on one of 1024 keys (allowed)', {
  name: 'hotpath allowSync token-bucket',
  fn: () => do_not_optimize(bucket.allowSync(keys[i++ & 1023]!)),
}, [{
  name: 'rate-limiter-flexible RateLimiterMemory.consume',
  fn: () => peer.consume(keys[i++ & 1023]!, 1),
}]);

await suite.compare('allowSync: metrics on vs off (token-bucket)', {
  name: 'allowSync, metrics on',
  fn: () => do_not_optimize(bucket.allowSync(keys[i++ & 1023]!)),
}, [{
  name: 'allowSync, metrics off',
  fn: () => do_not_optimize(bucketOff.allowSync(keys[i++ & 1023]!)),
}], { internal: true });

await suite.compare('allowSync by algorithm', {
  name: 'allowSync token-bucket',
  fn: () => do_not_optimize(bucket.allowSync(keys[i++ & 1023]!)),
}, [{
  name: 'allowSync sliding-window',
  fn: () => do_not_optimize(sliding.allowSync(keys[i++ & 1023]!)),
}], { internal: true });

// Throughput of a tight loop (decisions per second on one thread). hotpath only: the peer's
// consume() returns a promise, and a synchronous loop of them measures promise pile-up, not the
// limiter; its ratio is the one above.
{
  const n = QUICK ? 200_000 : 5_000_000;
  const rates: number[] = [];
  for (let round = 0; round < 3; round++) {
    const t0 = performance.now();
    for (let k = 0; k < n; k++) bucket.allowSync(keys[i++ & 1023]!);
    rates.push(n / ((performance.now() - t0) / 1000));
  }
  const median = rates.sort((x, y) => x - y)[1]!;
  suite.note('decisions per second, one thread', 'hotpath allowSync (token-bucket, 1024 keys)', median, 'ops/s');
  console.log(`  allowSync: ${(median / 1e6).toFixed(2)} M decisions/s on one thread`);
}

// --- accuracy: fixed-window boundary burst, sliding-window error vs an exact log ----------------
{
  let now = 1_800_000_000_000;
  const clock = { now: () => now };
  const { Limiter } = await import('../engine/limiter/limiter.js');
  const make = (algorithm: 'fixed-window' | 'sliding-window', name: string): Limiter =>
    new Limiter(name, { algorithm, limit: 100, window: 1000, maxKeys: 1024 }, { runtime: engine.runtime.thread, clock });
  // Boundary burst: 100 at the very end of one window and 100 at the start of the next.
  const fixed = make('fixed-window', 'acc-fixed');
  now = Math.ceil(now / 1000) * 1000 + 999;
  let burst = 0;
  for (let k = 0; k < 150; k++) if (fixed.allowSync('k').allowed) burst++;
  now += 2;
  for (let k = 0; k < 150; k++) if (fixed.allowSync('k').allowed) burst++;
  suite.note('fixed-window boundary burst (limit 100/s)', 'admitted within 2 ms across a boundary', burst, 'requests');
  console.log(`  fixed-window: ${burst} admitted within 2 ms across a window boundary (limit 100/s)`);
  // Sliding-window error: Poisson-ish arrivals at 3× the limit for 60 s; for every admitted
  // request, the exact count of admissions in the trailing 1000 ms (the true sliding log).
  const slide = make('sliding-window', 'acc-sliding');
  let seed = 42;
  const rnd = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const admitted: number[] = [];
  let worst = 0;
  let sumOver = 0;
  for (let k = 0; k < 180_000 / (QUICK ? 10 : 1); k++) {
    now += Math.max(0, Math.round(-Math.log(1 - rnd()) * 3.33)); // mean 300 requests/s
    if (slide.allowSync('k').allowed) {
      admitted.push(now);
      let j = admitted.length - 1;
      while (j > 0 && now - admitted[j - 1]! < 1000) j--;
      const inWindow = admitted.length - j;
      worst = Math.max(worst, inWindow);
      sumOver += Math.max(0, inWindow - 100);
    }
  }
  const overPct = ((worst - 100) / 100) * 100;
  suite.note('sliding-window error vs exact log (limit 100/s, 3× load)', 'worst trailing-1 s count', worst, 'requests');
  suite.note('sliding-window error vs exact log (limit 100/s, 3× load)', 'worst over-admission', overPct, '%');
  suite.note('sliding-window error vs exact log (limit 100/s, 3× load)', 'mean excess per admitted request', sumOver / admitted.length, 'requests');
  console.log(`  sliding-window: worst trailing-1 s count ${worst} for limit 100 (${overPct.toFixed(1)}% over); ${admitted.length} admitted`);
}

// --- Redis ---------------------------------------------------------------------------------------
const url = REDIS_URL;
const probe = await redisOrSkip('limiter on Redis');
if (probe !== undefined) {
  const dist = await createEngine({ workers: 1, redis: url, redisTimeoutMs: 1000 });
  const onRedis = dist.limiter(`b-redis-${run}`, { algorithm: 'gcra', ...HIGH });
  const leased = dist.limiter(`b-lease-${run}`, { algorithm: 'gcra', ...HIGH, lease: { tokens: 1000, ttlMs: 100 } });
  const peerClient = new Redis(url, { enableOfflineQueue: true });
  const peerRedis = new RateLimiterRedis({ storeClient: peerClient, points: 1_000_000_000, duration: 1, keyPrefix: `b-rlf-${run}` });
  await peerRedis.consume('warm', 1);
  // The peer at its best with many callers: ioredis's own auto-pipelining (one write per tick, as
  // hotpath batches a tick's decisions into one script call) — review33.
  const pipedClient = new Redis(url, { enableOfflineQueue: true, enableAutoPipelining: true });
  const peerPiped = new RateLimiterRedis({ storeClient: pipedClient, points: 1_000_000_000, duration: 1, keyPrefix: `b-rlfp-${run}` });
  await peerPiped.consume('warm', 1);
  const concurrent = (fn: (key: string) => Promise<unknown>) => async (): Promise<void> => {
    const calls = new Array<Promise<unknown>>(64);
    for (let c = 0; c < 64; c++) calls[c] = fn(keys[i++ & 1023]!);
    await Promise.all(calls);
  };
  await suite.compare('allow() on Redis, 64 concurrent callers (per decision)', {
    name: 'hotpath allow (Redis, gcra)',
    fn: concurrent((k) => onRedis.allow(k)),
    ops: 64,
  }, [{
    name: 'rate-limiter-flexible RateLimiterRedis.consume',
    fn: concurrent((k) => peerRedis.consume(k, 1)),
    ops: 64,
  }, {
    name: 'rate-limiter-flexible consume, ioredis enableAutoPipelining',
    fn: concurrent((k) => peerPiped.consume(k, 1)),
    ops: 64,
  }]);
  // Latency of one decision while 64 are in flight (p50 of the batch's completion / the batch).
  await suite.compare('allow() on Redis, one caller (round trip)', {
    name: 'hotpath allow (Redis, gcra)',
    fn: () => onRedis.allow('solo'),
  }, [{
    name: 'rate-limiter-flexible RateLimiterRedis.consume',
    fn: () => peerRedis.consume('solo', 1),
  }]);
  await suite.compare('allow() with quota leases (1000 tokens), 64 concurrent callers — not like for like: local decisions from a lease vs a Redis round trip each (the peer has no lease mode)', {
    name: 'hotpath allow (Redis + leases)',
    fn: concurrent((k) => leased.allow(k)),
    ops: 64,
  }, [{
    name: 'rate-limiter-flexible RateLimiterRedis.consume',
    fn: concurrent((k) => peerRedis.consume(k, 1)),
    ops: 64,
  }]);
  // Over-admission with leases: a limit of 10 000 per hour on one key, two engines (as two
  // processes would) racing through 30 000 attempts; leases are taken from Redis before being
  // spent, so within one window nothing beyond the limit can be admitted.
  {
    const other = await createEngine({ workers: 1, redis: url, redisTimeoutMs: 1000 });
    const opts = { algorithm: 'fixed-window' as const, limit: 10_000, window: 3_600_000, lease: { tokens: 500, ttlMs: 1000 } };
    const a = dist.limiter(`b-over-${run}`, opts);
    const b = other.limiter(`b-over-${run}`, opts);
    let admitted = 0;
    await Promise.all([a, b].map(async (l) => {
      for (let k = 0; k < 15_000; k++) if ((await l.allow('one')).allowed) admitted++;
    }));
    suite.note('leases: over-admission (2 engines, limit 10 000 per window)', 'admitted beyond the limit', admitted - 10_000, 'requests');
    console.log(`  leases: ${admitted} admitted for a limit of 10 000 (over-admission ${admitted - 10_000})`);
    await other.close();
  }
  peerClient.disconnect();
  pipedClient.disconnect();
  await dist.close();
  probe.disconnect();
}

await engine.close();
suite.finish();
