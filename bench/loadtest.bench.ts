/**
 * `loadtest()` (closed model) against autocannon 9, same run, same local server (a node:http
 * process of its own), same connections and pipelining; rounds interleaved, who goes first
 * alternating by round, and the median round of each kept (5 rounds; 1 in quick mode):
 *  - throughput against a hello-world: 10 connections × pipelining 1, and × pipelining 10;
 *  - p50/p99 against a server that answers after 10 ms (no stall). autocannon's own summary is in
 *    whole milliseconds (its histogram's unit is 1 ms and it truncates: 11.9 reads 11), so beside
 *    it this bench records every latency autocannon reports in its 'response' events (the float
 *    it computes from process.hrtime) into a histogram like ours (µs, 3 digits), and compares
 *    ours with that: like with like. Both figures of autocannon are printed;
 *  - generator CPU per 10k requests: process.cpuUsage() of this process around each run (it
 *    counts every thread of the process: autocannon's main thread; our main thread + workers).
 *    The server is another process and is not counted.
 * Our raw latencies are compared (autocannon has no coordinated-omission correction in the
 * closed model); our corrected ones are printed beside them.
 */
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { loadtest } from '../engine/loadtest/index.js';
import { latencyHistogram } from '../engine/loadtest/histogram.js';
import { QUICK, Suite } from './harness.js';
import { server, stop } from './child-server.js';

const suite = new Suite('loadtest.bench');
const ROUNDS = QUICK ? 1 : 5;
const SECONDS = QUICK ? 1 : 4;

/** A 10 ms server, inline (no peer file needed): answers every request after a fixed timer. */
const DELAY_SERVER = `
import { createServer } from 'node:http';
const server = createServer((req, res) => { req.resume(); req.on('end', () => setTimeout(() => res.end('hello world'), 10)); });
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ url: 'http://127.0.0.1:' + server.address().port })));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`;


interface Run {
  rps: number;
  p50: number;
  p99: number;
  /** autocannon: its own summary's whole-ms percentiles (p50/p99 are then the exact ones) */
  whole50?: number;
  whole99?: number;
  corrected99?: number;
  cpuPer10k: number;
  requests: number;
}

// The autocannon fields used here beyond bench/autocannon.d.ts (kept as is: other benches share it).
interface AcResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  errors: number;
  timeouts: number;
  non2xx: number;
  duration: number;
}

async function ours(url: string, connections: number, pipelining: number): Promise<Run> {
  // r.cpu: process.cpuUsage() from the common start to the end (thread start-up excluded, as
  // autocannon's own start-up is negligible: it runs on this thread).
  const r = await loadtest({ url, connections, pipelining, durationMs: SECONDS * 1000, gracefulStopMs: 1000 });
  if (r.requests.errors > 0 || (r.statusCodes['200'] ?? 0) !== r.requests.completed) throw new Error(`loadtest: ${r.requests.errors} errors, status ${JSON.stringify(r.statusCodes)}`);
  return {
    rps: r.throughput.rps, p50: r.latency.raw.p50, p99: r.latency.raw.p99, corrected99: r.latency.corrected.p99,
    cpuPer10k: r.cpu.per10kRequestsMs, requests: r.requests.completed,
  };
}

/** autocannon's run, with `tracker.on('response', …)`: the instance it returns is an emitter as well as a promise. */
type AcInstance = Promise<AcResult> & { on(event: 'response', fn: (client: unknown, status: number, bytes: number, ms: number) => void): void };

async function theirs(url: string, connections: number, pipelining: number, exact: boolean): Promise<Run> {
  // A variable, not a literal: autocannon.d.ts declares no `pipelining` (it is autocannon's option).
  const options = { url, connections, pipelining, duration: SECONDS };
  const h = latencyHistogram();
  const cpu = process.cpuUsage();
  const run = autocannon(options) as unknown as AcInstance;
  // Only where latency is compared: the listener is autocannon CPU the throughput rows should not carry.
  if (exact) run.on('response', (_c, _s, _b, ms) => h.recordValue(Math.round(ms * 1000)));
  const r = await run;
  const used = process.cpuUsage(cpu);
  if (r.errors + r.timeouts + r.non2xx > 0) throw new Error(`autocannon: ${r.errors} errors, ${r.timeouts} timeouts, ${r.non2xx} non-2xx`);
  return {
    rps: r.requests.total / SECONDS,
    p50: exact ? h.getValueAtPercentile(50) / 1000 : r.latency.p50,
    p99: exact ? h.getValueAtPercentile(99) / 1000 : r.latency.p99,
    whole50: r.latency.p50, whole99: r.latency.p99,
    cpuPer10k: ((used.user + used.system) / 1000 / r.requests.total) * 10_000, requests: r.requests.total,
  };
}

function median(list: Run[], key: keyof Run): number {
  const v = list.map((r) => r[key] as number).sort((a, b) => a - b);
  return v[v.length >> 1]!;
}

async function duel(group: string, url: string, connections: number, pipelining: number, latency: boolean): Promise<void> {
  const a: Run[] = [];
  const b: Run[] = [];
  // Who goes first alternates by round, so neither tool always meets the server just after the other.
  for (let i = 0; i < ROUNDS; i++) {
    if (i % 2 === 0) {
      a.push(await ours(url, connections, pipelining));
      b.push(await theirs(url, connections, pipelining, latency));
    } else {
      b.push(await theirs(url, connections, pipelining, latency));
      a.push(await ours(url, connections, pipelining));
    }
  }
  console.log(`\n## ${group} (${ROUNDS} round${ROUNDS === 1 ? '' : 's'} of ${SECONDS} s, medians)`);
  const rpsA = median(a, 'rps');
  const rpsB = median(b, 'rps');
  suite.note(group, 'hotpath loadtest: requests/s', Math.round(rpsA), 'req/s');
  suite.note(group, 'autocannon: requests/s', Math.round(rpsB), 'req/s');
  suite.note(group, 'throughput hotpath / autocannon', rpsA / rpsB, 'ratio');
  suite.note(group, 'hotpath loadtest: generator CPU per 10k requests', median(a, 'cpuPer10k'), 'ms');
  suite.note(group, 'autocannon: generator CPU per 10k requests', median(b, 'cpuPer10k'), 'ms');
  if (latency) {
    for (const k of ['p50', 'p99'] as const) {
      const x = median(a, k);
      const y = median(b, k);
      suite.note(group, `hotpath loadtest: raw ${k}`, x, 'ms');
      suite.note(group, `autocannon: ${k} (its responses, µs histogram)`, y, 'ms');
      suite.note(group, `autocannon: ${k} (its summary, whole ms)`, median(b, k === 'p50' ? 'whole50' : 'whole99'), 'ms');
      suite.note(group, `${k} hotpath / autocannon`, y === 0 ? 0 : x / y, 'ratio (lower is better)');
    }
    suite.note(group, 'hotpath loadtest: corrected p99', median(a, 'corrected99'), 'ms');
  }
}

const hello = await server([fileURLToPath(new URL('./peers/http-hello.js', import.meta.url))]);
const slow = await server(['--input-type=module', '-e', DELAY_SERVER]);
try {
  // The servers are fresh processes: one discarded second of load each, so V8's warm-up of the
  // server lands on neither tool's first round.
  for (const s of [hello, slow]) await autocannon({ url: s.url, connections: 10, duration: 1 });
  await duel('hello world, 10 connections', hello.url, 10, 1, false);
  await duel('hello world, 10 connections × pipelining 10', hello.url, 10, 10, false);
  await duel('10 ms server, 10 connections (no stall)', slow.url, 10, 1, true);
} finally {
  await stop(hello.child);
  await stop(slow.child);
}
suite.finish();
