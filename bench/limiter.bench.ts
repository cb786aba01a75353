/**
 * Limiter benchmarks (issue 4, first part: the shared-memory GCRA table alone; the public
 * `engine.limiter()` API, the other algorithms and the Redis mode are not written yet).
 * Peer: rate-limiter-flexible's RateLimiterMemory.consume on the same keys, in the same run.
 */
import { do_not_optimize } from 'mitata';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { createEngine } from '../engine/index.js';
import { GcraTable } from '../engine/limiter/gcra-table.js';
import { Suite } from './harness.js';

const suite = new Suite('limiter.bench');
const engine = await createEngine({ workers: 1 });
// A rate high enough that most decisions are "allowed" for both, as in a healthy service.
const params = { limit: 1_000_000_000, windowMs: 1000, burst: 1_000_000_000 };
const table = new GcraTable(engine.runtime.thread, 'bench', params, { epochMs: Date.now(), capacity: 1 << 16 });
const peer = new RateLimiterMemory({ points: 1_000_000_000, duration: 1 });
const keys = Array.from({ length: 1024 }, (_, i) => `user:${i}`);
let i = 0;

await suite.compare('decision on one of 1024 keys (allowed)', {
  name: 'hotpath GcraTable.take (shared memory, sync)',
  fn: () => do_not_optimize(table.take(keys[i++ & 1023]!, 1, Date.now())),
}, [{
  name: 'rate-limiter-flexible RateLimiterMemory.consume',
  fn: () => peer.consume(keys[i++ & 1023]!, 1),
}]);

await engine.close();
suite.finish();
