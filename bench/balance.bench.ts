/**
 * The balancer's pieces against their peers, in the same run.
 *
 * Consistent hashing (engine/balance/ring.ts over wasm/ring.ts) against `hashring` (npm, v3: ketama
 * over md5, 40 vnodes × 4 replicas = 160 points per server), 10 nodes:
 *  - lookups of DISTINCT keys: a pre-built array of 1M distinct strings (100k in quick mode),
 *    cycled, so no key comes back within hashring's LRU of 5000 hot keys (its 23M/s figure comes
 *    from that cache, not from the ring); 1000 lookups per measured call;
 *  - hotpath's 'ring' (2000 points per node), 'jump' and 'maglev' (65537 entries) each against it;
 *  - the ring kernel alone: the radix-indexed lookup against a branch-free binary search in WASM and
 *    a binary search in JS, on precomputed hashes (why the kernel looks up the way it does);
 *  - `get` with an `eligible` callback refusing one node of ten (the balancer's path when a
 *    backend is down);
 *  - a change of membership: remove and re-add a node, with the rebuilds it causes;
 *  - notes: the default ring's memory and the busiest node's load over the key set.
 *
 * The balancer over real HTTP (node:http backends on 127.0.0.1 in this process, undici, keep-alive):
 *  - one backend 5× slower (10 ms against 2 ms per request): p99 latency of 6 callers in a closed
 *    loop through `p2c-ewma` against `round-robin`, interleaved rounds, and the slow backend's share
 *    of requests. Two backend models: capacity-limited (each serves 2 requests at a time, the rest
 *    wait in its queue — a server with a fixed number of cores or connections, the case balancers
 *    are for) and pure delay (unlimited parallelism: in flight costs nothing, which p2c's
 *    latency × (in flight + 1) cost does not know).
 */
import { createRequire } from 'node:module';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as hdr from 'hdr-histogram-js';
import { Agent } from 'undici';
import { Balancer } from '../engine/balance/balancer.js';
import { do_not_optimize } from 'mitata';
import { HashRing, type RingAlgorithm } from '../engine/balance/ring.js';
import { ARENA_BASE } from '../engine/runtime/arena.js';
import { xxh32Ascii } from '../engine/runtime/hash.js';
import { instantiateKernels, kernelModule } from '../engine/runtime/wasm.js';
import { QUICK, Suite, type Case } from './harness.js';

/** The part of hashring's API used here (the package ships no types). */
interface HashRingPeer {
  get(key: string): string | undefined;
  add(server: string): HashRingPeer;
  remove(server: string): HashRingPeer;
}
const PeerRing = createRequire(import.meta.url)('hashring') as new (servers: string[]) => HashRingPeer;

const suite = new Suite('balance.bench');

const NODES = Array.from({ length: 10 }, (_, i) => `backend-${i}`);
const KEYS = QUICK ? 100_000 : 1_000_000;
const BATCH = 1000;
// Session-id-like keys of 12–14 chars ("s-" + base-36 of a scrambled counter + "-" + counter mod 97).
const keys = Array.from({ length: KEYS }, (_, i) => `s-${(Math.imul(i, 0x9e3779b1) >>> 0).toString(36)}-${i % 97}`);
if (new Set(keys).size !== KEYS) throw new Error('bench keys are not distinct');

/** A Case of BATCH lookups of the next distinct keys, cycling through `keys`. */
function lookups(name: string, get: (key: string) => string | undefined): Case {
  let at = 0;
  return {
    name,
    ops: BATCH,
    fn: () => {
      let s = 0;
      const end = at + BATCH;
      for (let i = at; i < end; i++) s += get(keys[i]!)!.length;
      at = end === KEYS ? 0 : end;
      return do_not_optimize(s);
    },
  };
}

function ring(algorithm: RingAlgorithm): HashRing {
  const r = new HashRing({ algorithm });
  for (const id of NODES) r.add(id);
  r.get('warm'); // the lazy rebuild, outside the measurement
  return r;
}

const peer = new PeerRing(NODES);
const peerCase = (): Case => lookups('hashring get (md5, 160 points/node, LRU missed)', (k) => peer.get(k));

const rings = { ring: ring('ring'), jump: ring('jump'), maglev: ring('maglev') };
await suite.compare(`ring lookup, distinct keys (${NODES.length} nodes)`, lookups("hotpath HashRing get ('ring', 2000 points/node)", (k) => rings.ring.get(k)), [peerCase()]);
await suite.compare(`jump lookup, distinct keys (${NODES.length} nodes)`, lookups("hotpath HashRing get ('jump')", (k) => rings.jump.get(k)), [peerCase()]);
await suite.compare(`maglev lookup, distinct keys (${NODES.length} nodes)`, lookups("hotpath HashRing get ('maglev', 65537 entries)", (k) => rings.maglev.get(k)), [peerCase()]);
for (const r of suite.results.filter((x) => x.group.includes('distinct keys'))) {
  console.log(`  ${r.name.padEnd(52)} ${(1e3 / r.p50Ns).toFixed(2)} M lookups/s`);
}

// The kernel alone: 20,000 random points (10 nodes × 2000), precomputed key hashes.
{
  const P = 20_000;
  const memory = new WebAssembly.Memory({ initial: 8, maximum: 8, shared: true });
  const k = instantiateKernels(kernelModule(), memory);
  const HASHES = ARENA_BASE;
  const INDEX = HASHES + P * 4;
  const bits = Math.ceil(Math.log2(P));
  const u32 = new Uint32Array(memory.buffer);
  let x = 0x12345678;
  const next = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  const points = new Uint32Array(P).map(next).sort();
  u32.set(points, HASHES >>> 2);
  k.ringIndexBuild(HASHES, P, INDEX, 32 - bits);
  const probes = new Uint32Array(1 << 16).map(next);
  const kernelCase = (name: string, find: (h: number) => number): Case => ({
    name,
    ops: probes.length,
    fn: () => {
      let s = 0;
      for (let i = 0; i < probes.length; i++) s += find(probes[i]!);
      return do_not_optimize(s);
    },
  });
  const jsFind = (h: number): number => {
    let lo = 0;
    let hi = P;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return lo === P ? 0 : lo;
  };
  await suite.compare(
    `ring kernel alone: ${P} points, precomputed hashes`,
    kernelCase(`ringFind (radix index, 2^${bits} buckets)`, (h) => k.ringFind(HASHES, P, INDEX, 32 - bits, h)),
    [kernelCase('ringFindBinary (branch-free binary search, WASM)', (h) => k.ringFindBinary(HASHES, P, h)), kernelCase('binary search in JS (Uint32Array)', jsFind)],
    { internal: true },
  );
  const hashCase: Case = {
    name: 'xxHash32 of the key in JS (xxh32Ascii)',
    ops: BATCH,
    fn: () => {
      let s = 0;
      for (let i = 0; i < BATCH; i++) s += xxh32Ascii(keys[i]!, 0);
      return do_not_optimize(s);
    },
  };
  await suite.compare(`what a lookup costs: the key hash alone (${BATCH} keys)`, hashCase, [lookups("HashRing get ('ring')", (key) => rings.ring.get(key))], { internal: true });
}

// The balancer's path with a backend down: an eligible callback refusing one node of ten.
{
  const down = NODES[3]!;
  const eligible = (id: string): boolean => id !== down;
  await suite.compare(
    `get with eligible (1 of ${NODES.length} nodes refused), distinct keys`,
    lookups("'ring' get(key, eligible)", (k) => rings.ring.get(k, eligible)),
    [lookups("'jump' get(key, eligible)", (k) => rings.jump.get(k, eligible)), lookups("'maglev' get(key, eligible)", (k) => rings.maglev.get(k, eligible)), lookups("'ring' get(key), no callback", (k) => rings.ring.get(k))],
    { internal: true },
  );
}

// Membership changes: remove a node and add it back, then look up (which applies the change).
{
  const churn = (name: string, r: HashRing): Case => ({
    name,
    ops: 2,
    fn: () => {
      r.remove('backend-9');
      r.get('x');
      r.add('backend-9');
      return do_not_optimize(r.get('x'));
    },
  });
  await suite.compare(`remove + add a node of ${NODES.length}, with the rebuilds (per change)`, churn("hotpath 'ring' (2000 points/node)", rings.ring), [
    {
      name: 'hashring remove + add (160 points/node)',
      ops: 2,
      fn: () => {
        peer.remove('backend-9');
        peer.add('backend-9');
        return do_not_optimize(peer.get('x'));
      },
    },
  ]);
  await suite.compare(
    `remove + add a node of ${NODES.length}: hotpath's algorithms (per change)`,
    churn("'ring' (2000 points/node)", rings.ring),
    [churn("'maglev' (65537 entries)", rings.maglev), churn("'jump'", rings.jump)],
    { internal: true },
  );
}

// Notes: memory and the busiest node's share over the bench keys.
for (const [name, r] of Object.entries(rings)) {
  const counts = new Map<string, number>();
  for (const key of keys) {
    const id = r.get(key)!;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  suite.note('load and memory (10 nodes, the bench keys)', `'${name}' busiest node / mean`, Math.max(...counts.values()) / (KEYS / NODES.length), '×');
  suite.note('load and memory (10 nodes, the bench keys)', `'${name}' private memory`, r.memoryBytes / 1024, 'KiB');
}

// --- p2c-ewma vs round-robin with one backend 5× slower (real HTTP on 127.0.0.1) -----------------
const agent = new Agent({ connections: 16 });
const backends: Server[] = [];
/** A backend answering after delayMs; with `slots`, at most that many at a time (FIFO queue behind). */
async function backend(delayMs: number, slots = Infinity): Promise<string> {
  let busy = 0;
  const waiting: Array<() => void> = [];
  const serve = (done: () => void): void => {
    busy++;
    setTimeout(() => {
      done();
      busy--;
      waiting.shift()?.();
    }, delayMs);
  };
  const srv = createServer((_req, res) => {
    const go = (): void => serve(() => res.end('ok'));
    if (busy < slots) go();
    else waiting.push(go);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  backends.push(srv);
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
}
const models = {
  'capacity 2 per backend': [await backend(2, 2), await backend(2, 2), await backend(10, 2)],
  'pure delay': [await backend(2), await backend(2), await backend(10)],
};

/** One round: 6 callers in a closed loop, `requests` in all; latency per request in an HDR histogram. */
async function latencyRound(algorithm: 'round-robin' | 'p2c-ewma', urls: string[], requests: number): Promise<{ p50: number; p99: number; slowShare: number }> {
  const lb = new Balancer({ algorithm, backends: urls.map((url, i) => ({ id: String(i), url })), health: false, breaker: false, outlier: false });
  const h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  let slow = 0;
  let left = requests;
  await Promise.all(Array.from({ length: 6 }, async () => {
    while (left-- > 0) {
      const t0 = performance.now();
      await lb.run(async (b) => {
        if (b.id === '2') slow++;
        const res = await agent.request({ origin: b.url!, path: '/', method: 'GET' });
        await res.body.dump();
      });
      h.recordValue(Math.round((performance.now() - t0) * 1000)); // µs
    }
  }));
  lb.close();
  const out = { p50: h.getValueAtPercentile(50) / 1000, p99: h.getValueAtPercentile(99) / 1000, slowShare: slow / requests };
  h.destroy();
  return out;
}

for (const [model, urls] of Object.entries(models)) {
  const group = `one backend 5× slower (2, 2, 10 ms), 6 callers, ${model}`;
  console.log(`\n## ${group}`);
  const requests = QUICK ? 600 : 6000;
  const runs: Record<'round-robin' | 'p2c-ewma', Array<{ p50: number; p99: number; slowShare: number }>> = { 'round-robin': [], 'p2c-ewma': [] };
  for (let round = 0; round < (QUICK ? 1 : 3); round++) {
    for (const algorithm of ['round-robin', 'p2c-ewma'] as const) runs[algorithm].push(await latencyRound(algorithm, urls, requests));
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  for (const algorithm of ['p2c-ewma', 'round-robin'] as const) {
    const r = runs[algorithm];
    suite.note(group, `${algorithm} p50`, median(r.map((x) => x.p50)), 'ms');
    suite.note(group, `${algorithm} p99`, median(r.map((x) => x.p99)), 'ms');
    suite.note(group, `${algorithm} share of requests on the slow backend`, 100 * median(r.map((x) => x.slowShare)), '%');
  }
  suite.note(group, 'p2c-ewma p99 / round-robin p99', median(runs['p2c-ewma'].map((x) => x.p99)) / median(runs['round-robin'].map((x) => x.p99)), 'ratio (lower is better)');
}
await agent.close();
for (const srv of backends) srv.close();

suite.finish();
