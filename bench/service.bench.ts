/**
 * `hotpath serve` against a bare node:http hello-world, in one run, each server in a process of
 * its own and the load from autocannon in this one (10 connections, keep-alive):
 *  - the highest rate each answers (requests/s): bare `GET /`, bare `POST /` reading its body (the
 *    floor of any server that reads bodies), hotpath `GET /health`, and hotpath `POST /process`
 *    with a hot cache (one body, so every request after the first is a HIT);
 *  - p99 latency at half of each one's highest rate (autocannon's fixed overall rate).
 * On 2 cores the server and autocannon each get about one; hotpath's worker thread idles here.
 */
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { QUICK, Suite } from './harness.js';
import { server, stop } from './child-server.js';

const suite = new Suite('service.bench');
const DURATION = QUICK ? 1 : 6;


interface Load {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
}

async function load(url: string, method: 'GET' | 'POST', body: string | undefined, rate?: number): Promise<Load> {
  const r = await autocannon({
    url, method, connections: 10, duration: DURATION,
    ...(body !== undefined ? { body } : {}),
    ...(rate !== undefined ? { overallRate: rate } : {}),
  });
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.timeouts, non2xx: r.non2xx };
}

const BODY = 'a request body for the hot cache '.repeat(8);
const cases: Array<{ name: string; path: string; method: 'GET' | 'POST'; body?: string; hotpath: boolean }> = [
  { name: 'bare node:http GET / (hello world)', path: '/', method: 'GET', hotpath: false },
  { name: 'bare node:http POST / (reads the body, answers JSON)', path: '/', method: 'POST', body: BODY, hotpath: false },
  { name: 'hotpath GET /health', path: '/health', method: 'GET', hotpath: true },
  { name: 'hotpath POST /process (hot cache)', path: '/process', method: 'POST', body: BODY, hotpath: true },
];

const bare = await server([fileURLToPath(new URL('./peers/http-hello.js', import.meta.url))]);
const hot = await server([fileURLToPath(new URL('../../bin/hotpath.js', import.meta.url)), 'serve', '--port', '0', '--workers', '1'], {
  HOTPATH_LIMIT_PER_SECOND: '1000000000', HOTPATH_LIMIT_BURST: '1000000000',
});
const max = new Map<string, Load>();
try {
  // Interleaved rounds (bare, health, process; again), the best of each kept: the VM is noisy.
  for (let round = 0; round < (QUICK ? 1 : 2); round++) {
    for (const c of cases) {
      const l = await load(`${c.hotpath ? hot.url : bare.url}${c.path}`, c.method, c.body);
      if (l.errors > 0 || l.non2xx > 0) throw new Error(`${c.name}: ${l.errors} errors, ${l.non2xx} non-2xx responses`);
      const prev = max.get(c.name);
      if (prev === undefined || l.rps > prev.rps) max.set(c.name, l);
    }
  }
  console.log(`\n## highest rate, 10 connections, ${DURATION} s per round`);
  const base = max.get(cases[0]!.name)!.rps;
  const basePost = max.get(cases[1]!.name)!.rps;
  for (const c of cases) {
    const l = max.get(c.name)!;
    suite.note('highest rate', c.name, Math.round(l.rps), 'req/s');
    if (!c.hotpath) continue;
    suite.note('highest rate', `${c.name} / bare hello world`, l.rps / base, 'ratio');
    if (c.method === 'POST') suite.note('highest rate', `${c.name} / bare POST`, l.rps / basePost, 'ratio');
  }
  console.log('\n## p99 at half of each one\'s highest rate');
  for (const c of cases) {
    const rate = Math.max(1, Math.round(max.get(c.name)!.rps / 2));
    const l = await load(`${c.hotpath ? hot.url : bare.url}${c.path}`, c.method, c.body, rate);
    suite.note('p99 at half rate', `${c.name} at ${rate} req/s: p99`, l.p99, 'ms');
  }
} finally {
  await stop(bare.child);
  await stop(hot.child);
}
suite.finish();
