/**
 * Runtime benchmarks: the bare JS→WASM call, key hashing JS vs WASM by key length, the channel's
 * allocation-free hot path, and no-op task round trip / throughput against piscina's run() with
 * its defaults.
 */
import { PerformanceObserver, constants, performance } from 'node:perf_hooks';
import { Piscina } from 'piscina';
import { do_not_optimize } from 'mitata';
import { createEngine } from '../engine/index.js';
import { Ring, ringBytes } from '../engine/runtime/channel.js';
import { WASM_HASH_MIN_LENGTH, xxh32Ascii } from '../engine/runtime/hash.js';
import { QUICK, Suite } from './harness.js';

const suite = new Suite('runtime.bench');
const engine = await createEngine();
const k = engine.runtime.kernels;

// --- the bare call -------------------------------------------------------------------------
const jsNoop = (x: number): number => x;
let i = 0;
await suite.compare('call: JS→WASM vs JS (no-op)', { name: 'wasm export noop(i)', fn: () => do_not_optimize(k.noop(i++)) }, [
  { name: 'js function noop(i)', fn: () => do_not_optimize(jsNoop(i++)) },
], { internal: true });

// --- key hashing by length: JS over char codes vs encodeInto + WASM xxh32 ---------------------
const scratch = engine.runtime.region('bench:scratch', 64 * 1024);
const mem = new Uint8Array(engine.runtime.memory.buffer, scratch.offset, scratch.bytes);
const enc = new TextEncoder();
const hasher = engine.runtime.hasher;
for (const len of QUICK ? [16, 128, 1024] : [8, 16, 24, 32, 64, 128, 256, 1024]) {
  const keys = Array.from({ length: 256 }, (_, j) => `k${j}:`.padEnd(len, 'abcdefghijklmnopqrstuvwxyz').slice(0, len));
  let n = 0;
  await suite.compare(`hash ${len}-char key`, {
    name: 'js xxh32 over char codes',
    fn: () => do_not_optimize(xxh32Ascii(keys[n++ & 255]!)),
  }, [{
    name: 'encodeInto + wasm xxh32',
    fn: () => {
      const { written } = enc.encodeInto(keys[n++ & 255]!, mem);
      return do_not_optimize(k.xxh32(scratch.offset, written, 0));
    },
  }, {
    name: `KeyHasher.hash (${len < WASM_HASH_MIN_LENGTH ? 'js' : 'wasm'} path)`,
    fn: () => do_not_optimize(hasher.hash(keys[n++ & 255]!)),
  }], { internal: true });
}

// --- channel hot path: ns per message and bytes allocated per message --------------------------
{
  const capacity = 1 << 16;
  const buf = new SharedArrayBuffer(ringBytes(capacity) + 64);
  const producer = new Ring(buf, 64, capacity);
  const consumer = new Ring(buf, 64, capacity);
  const body = new Uint8Array(64).fill(1);
  let acc = 0;
  const onFrame = (_t: number, a: number): void => {
    acc = (acc + a) | 0;
  };
  const batch = (n: number): void => {
    for (let m = 0; m < n; m++) {
      if (!producer.tryWrite(1, m, 0, body, 0, 64)) {
        producer.publish();
        consumer.read(onFrame);
        producer.tryWrite(1, m, 0, body, 0, 64);
      }
    }
    producer.publish();
    consumer.read(onFrame);
  };
  console.log('\n## channel ring, 64-byte messages, one thread (write + publish + read)');
  batch(100_000);
  const N = QUICK ? 200_000 : 2_000_000;
  // Only scavenges (minor GCs) betray allocation in the loop; a major GC may be finishing work
  // that earlier benchmarks started. The runner starts benches with --expose-gc.
  (globalThis as { gc?: () => void }).gc?.();
  const minorGcs: number[] = []; // start times
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) minorGcs.push(e.startTime);
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  const h0 = process.memoryUsage().heapUsed;
  const w0 = performance.now();
  const t0 = process.hrtime.bigint();
  batch(N);
  const t1 = process.hrtime.bigint();
  const w1 = performance.now();
  const h1 = process.memoryUsage().heapUsed;
  await new Promise((r) => setTimeout(r, 20));
  obs.disconnect();
  suite.note('channel ring', 'time per message', Number(t1 - t0) / N, 'ns');
  suite.note('channel ring', 'heap growth per message', Math.max(0, h1 - h0) / N, 'bytes');
  suite.note('channel ring', 'scavenges (minor GCs) during the loop', minorGcs.filter((t) => t >= w0 && t <= w1).length, 'GCs');
  do_not_optimize(acc);
}

// --- tasks: hotpath channel vs piscina.run() with its defaults ---------------------------------
// piscina with its defaults (what the targets are set against: on 2 cores maxThreads 3,
// minThreads 1, idleTimeout 0 — threads above the minimum come and go with the load), and
// piscina tuned to keep as many threads as hotpath's engine, for a like-for-like reading.
const noopFile = new URL('./peers/piscina-noop.js', import.meta.url).href;
const piscina = new Piscina({ filename: noopFile });
const tuned = new Piscina({ filename: noopFile, minThreads: engine.runtime.pool.threads, maxThreads: engine.runtime.pool.threads, idleTimeout: 60_000 });
await Promise.all(Array.from({ length: 64 }, () => piscina.run(undefined))); // start their threads
await Promise.all(Array.from({ length: 64 }, () => tuned.run(undefined)));

await suite.compare('no-op task round trip, 1 in flight', { name: 'hotpath engine.run("noop")', fn: () => engine.run('noop') }, [
  { name: 'piscina.run() (defaults)', fn: () => piscina.run(undefined) },
  { name: 'piscina.run() (threads = hotpath workers)', fn: () => tuned.run(undefined) },
]);
for (const inflight of [64, 1000]) {
  await suite.compare(`no-op task throughput, ${inflight} in flight (per task)`, {
    name: 'hotpath engine.run("noop")',
    ops: inflight,
    fn: () => Promise.all(Array.from({ length: inflight }, () => engine.run('noop'))),
  }, [{
    name: 'piscina.run() (defaults)',
    ops: inflight,
    fn: () => Promise.all(Array.from({ length: inflight }, () => piscina.run(undefined))),
  }, {
    name: 'piscina.run() (threads = hotpath workers)',
    ops: inflight,
    fn: () => Promise.all(Array.from({ length: inflight }, () => tuned.run(undefined))),
  }]);
}

await piscina.destroy();
await tuned.destroy();
await engine.close();
suite.finish();
