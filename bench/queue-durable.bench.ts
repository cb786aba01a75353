/**
 * The durable queue against BullMQ alone, on the same Redis, in the same run: no-op jobs end to
 * end — add N in one bulk, then wait until all N completed — with the same concurrency, the same
 * key hash tag style and the same completed-job retention on both sides.
 *
 *  - BullMQ alone: Queue.addBulk, a Worker with a no-op processor, completion counted from the
 *    Worker's own 'completed' events (the cheapest way BullMQ can tell);
 *  - BullMQ alone with priorities: the same, every job with a priority, which is what the durable
 *    queue asks of BullMQ (it maps every hotpath priority onto a BullMQ priority);
 *  - hotpath DurableQueue: submitMany (payloads through the value codec), a function handler
 *    through the executor, and every task's `result` promise settled (the results delivered to the
 *    submitter, which also reads the queue's event stream for tasks other processes might run).
 *
 * Rounds are interleaved (the order rotates each round) and the median round is kept per side:
 * this 2-core VM runs Redis, the producer and the consumer at once and is noisy.
 */
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { RedisConnector } from '../engine/redis/connector.js';
import { DurableQueue } from '../engine/queue/durable.js';
import { fmtNs, fmtRatio, QUICK, REDIS_URL, redisOrSkip, Suite, type CaseResult } from './harness.js';

const suite = new Suite('queue-durable.bench');
const N = QUICK ? 300 : 5000;
const ROUNDS = QUICK ? 1 : 7;
const CONCURRENCY = 16;
const RETAIN = 10_000; // the durable queue's default statusRetention, as removeOnComplete { count }

const probe = await redisOrSkip('durable queue vs BullMQ');
if (probe !== undefined) {
  const run = `${process.pid}`;
  const group = `no-op jobs end to end: addBulk of ${N}, then all completed (concurrency ${CONCURRENCY})`;

  // --- BullMQ alone ---------------------------------------------------------------------------
  const bullConnection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const bull = (prefix: string, priority: boolean): { fn: () => Promise<void>; close: () => Promise<void> } => {
    const queue = new Queue('bench', { connection: bullConnection, prefix });
    let done = 0;
    let target = 0;
    let wake: (() => void) | undefined;
    const worker = new Worker('bench', async () => undefined, {
      connection: bullConnection, prefix, concurrency: CONCURRENCY, removeOnComplete: { count: RETAIN },
    });
    worker.on('completed', () => {
      if (++done === target) wake?.();
    });
    worker.on('error', () => {});
    queue.on('error', () => {});
    return {
      fn: async () => {
        done = 0;
        target = N;
        const all = new Promise<void>((r) => (wake = r));
        await queue.addBulk(Array.from({ length: N }, (_, i) => ({ name: 'j', data: { i }, opts: priority ? { priority: 1_000_003 } : {} })));
        await all;
      },
      close: async () => {
        await worker.close();
        await queue.obliterate({ force: true });
        await queue.close();
      },
    };
  };
  const plain = bull(`{bench:bull:${run}}`, false);
  const prio = bull(`{bench:bullp:${run}}`, true);

  // --- hotpath ------------------------------------------------------------------------------------
  const redis = await RedisConnector.connect(REDIS_URL, { timeoutMs: 2000 });
  const durable = new DurableQueue<number, undefined>('bench', {
    handler: () => undefined, concurrency: CONCURRENCY, statusRetention: RETAIN, durable: { prefix: `{bench:hotpath:${run}}` },
  }, { redis });
  const payloads = Array.from({ length: N }, (_, i) => i);
  const ours = async (): Promise<void> => {
    const handles = await durable.submitMany(payloads);
    await Promise.all(handles.map((h) => h.result));
  };

  const cases: Array<{ name: string; role: CaseResult['role']; fn: () => Promise<void>; rates: number[]; cpu: number[] }> = [
    { name: 'hotpath DurableQueue submitMany + results', role: 'hotpath', fn: ours, rates: [], cpu: [] },
    { name: 'BullMQ alone (Queue.addBulk + Worker)', role: 'peer', fn: plain.fn, rates: [], cpu: [] },
    { name: 'BullMQ alone, with priorities', role: 'peer', fn: prio.fn, rates: [], cpu: [] },
  ];
  // Warm-up: JIT, script loading, connections.
  for (const c of cases) await c.fn();
  for (let r = 0; r < ROUNDS; r++) {
    for (let k = 0; k < cases.length; k++) {
      const c = cases[(k + r) % cases.length]!;
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await c.fn();
      c.rates.push(N / ((performance.now() - t0) / 1000));
      const cpu = process.cpuUsage(cpu0);
      c.cpu.push((cpu.user + cpu.system) / N); // this process's CPU (producer + consumer), µs per job
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  console.log(`\n## ${group}`);
  const mine = median(cases[0]!.rates);
  for (const c of cases) {
    const rate = median(c.rates);
    const ns = 1e9 / rate;
    const result: CaseResult = { group, name: c.name, role: c.role, p50Ns: ns, avgNs: 1e9 / (c.rates.reduce((a, b) => a + b, 0) / c.rates.length), p99Ns: 1e9 / Math.min(...c.rates), samples: c.rates.length };
    if (c !== cases[0]) result.ratio = mine / rate; // > 1: hotpath is faster
    suite.results.push(result);
    suite.extras.push({ group, name: `${c.name}: jobs/s (median of ${c.rates.length})`, value: rate, unit: 'jobs/s' });
    suite.extras.push({ group, name: `${c.name}: Node CPU per job (median)`, value: median(c.cpu), unit: 'µs' });
    console.log(`  ${c.name.padEnd(44)} ${rate.toFixed(0).padStart(7)} jobs/s (${fmtNs(ns)}/job, Node CPU ${median(c.cpu).toFixed(0)} µs/job; rounds ${c.rates.map((x) => x.toFixed(0)).join(' ')})${result.ratio === undefined ? '' : `  → hotpath ${fmtRatio(result.ratio)} (${result.ratio.toFixed(2)}×)`}`);
  }

  await durable.close();
  await redis.close();
  await plain.close();
  await prio.close();
  bullConnection.disconnect();
  // The durable queue's keys (its Redis data outlives it by design).
  const keys = await probe.keys(`{bench:hotpath:${run}}*`);
  for (let i = 0; i < keys.length; i += 500) await probe.del(...keys.slice(i, i + 500));
  probe.disconnect();
}
suite.finish();
