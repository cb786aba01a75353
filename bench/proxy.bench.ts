/**
 * `hotpath serve --upstream` (proxy mode) against a bare undici-based reverse proxy
 * (peers/undici-proxy.ts), in one run, each in a process of its own, both forwarding to one
 * node:http hello-world upstream (another process); load from autocannon in this one
 * (10 connections, keep-alive):
 *  - the highest rate each answers (requests/s), interleaved rounds, the best of each kept;
 *  - p99 latency at half of each one's highest rate (autocannon's fixed overall rate).
 * hotpath does more per request: a rate-limit decision per client, a cache lookup (the answers
 * carry no Cache-Control, so every one is a MISS), the balancer's pick and report, X-Forwarded-*.
 * On 2 cores the upstream, the proxy and autocannon share them: the figures are relative.
 */
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { QUICK, Suite } from './harness.js';
import { server, stop } from './child-server.js';

const suite = new Suite('proxy.bench');
const DURATION = QUICK ? 1 : 6;


async function load(url: string, rate?: number): Promise<{ rps: number; p50: number; p99: number; bad: number }> {
  const r = await autocannon({ url, connections: 10, duration: DURATION, ...(rate !== undefined ? { overallRate: rate } : {}) });
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, bad: r.errors + r.timeouts + r.non2xx };
}

const upstream = await server([fileURLToPath(new URL('./peers/http-hello.js', import.meta.url))]);
const bare = await server([fileURLToPath(new URL('./peers/undici-proxy.js', import.meta.url)), upstream.url]);
const hot = await server([fileURLToPath(new URL('../../bin/hotpath.js', import.meta.url)), 'serve', '--port', '0', '--workers', '1', '--upstream', upstream.url], {
  HOTPATH_LIMIT_PER_SECOND: '1000000000', HOTPATH_LIMIT_BURST: '1000000000',
});
const cases = [
  { name: 'hotpath serve --upstream (proxy mode)', url: `${hot.url}/hello` },
  { name: 'bare undici proxy', url: `${bare.url}/hello` },
];
try {
  const best = new Map<string, number>();
  for (let round = 0; round < (QUICK ? 1 : 3); round++) {
    for (const c of cases) {
      const l = await load(c.url);
      if (l.bad > 0) throw new Error(`${c.name}: ${l.bad} errors or non-2xx responses`);
      best.set(c.name, Math.max(best.get(c.name) ?? 0, l.rps));
    }
  }
  console.log(`\n## highest rate, 10 connections, ${DURATION} s per round`);
  for (const c of cases) suite.note('proxy highest rate', c.name, Math.round(best.get(c.name)!), 'req/s');
  suite.note('proxy highest rate', 'hotpath / bare undici proxy', best.get(cases[0]!.name)! / best.get(cases[1]!.name)!, 'ratio');
  console.log('\n## p99 at half of each one\'s highest rate');
  for (const c of cases) {
    const rate = Math.max(1, Math.round(best.get(c.name)! / 2));
    const l = await load(c.url, rate);
    suite.note('proxy p99 at half rate', `${c.name} at ${rate} req/s: p99`, l.p99, 'ms');
  }
} finally {
  await stop(hot.child);
  await stop(bare.child);
  await stop(upstream.child);
}
suite.finish();
