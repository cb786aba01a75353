/**
 * The task queue's priority heap (engine/queue/heap.ts over wasm/heap.ts) against the JS heaps,
 * in the same run: push N random numbers, then pop them all (N = 1M; 100k in quick mode).
 * Per-op figures are per push+pop pair.
 *  - hotpath TaskHeap per call (push/pop), and batched (pushBatch/popBatch: one crossing per 4096
 *    pushes; popping the whole heap at once takes the sorted path, an in-place radix sort);
 *  - mnemonist Heap (binary heap, default comparator), heap-js Heap (binary, default comparator),
 *    tinyqueue (binary, default comparator).
 * The peers order bare numbers; TaskHeap orders (key, seq, slot) entries and keeps FIFO among
 * equal keys, which the peers do not: the comparison is of what each offers a queue.
 * A second group uses 4 distinct keys (a queue's named priorities without aging): mostly ties,
 * where hotpath's FIFO rule decides.
 */
import { do_not_optimize } from 'mitata';
import { Heap as MnemonistHeap } from 'mnemonist';
import { Heap as HeapJs } from 'heap-js';
import TinyQueue from 'tinyqueue';
import { TaskHeap } from '../engine/queue/heap.js';
import { QUICK, Suite, type Case } from './harness.js';

const suite = new Suite('queue-heap.bench');
const N = QUICK ? 100_000 : 1_000_000;

/** Deterministic keys (xorshift32), the same for every case. */
function makeKeys(n: number, distinct: number): Float64Array {
  const keys = new Float64Array(n);
  let x = 0x9e3779b9 | 0;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    keys[i] = distinct === 0 ? (x >>> 0) / 2 ** 32 : (x >>> 0) % distinct;
  }
  return keys;
}

const slots = Uint32Array.from({ length: N }, (_, i) => i);
const out = new Uint32Array(N);
const ours = new TaskHeap(N, 1024);

function peers(keys: Float64Array): Case[] {
  return [
    {
      name: 'mnemonist Heap push/pop',
      ops: N,
      fn: () => {
        const h = new MnemonistHeap<number>();
        for (let i = 0; i < N; i++) h.push(keys[i]!);
        let s = 0;
        for (let i = 0; i < N; i++) s += h.pop()!;
        return do_not_optimize(s);
      },
    },
    {
      name: 'heap-js Heap push/pop',
      ops: N,
      fn: () => {
        const h = new HeapJs<number>();
        for (let i = 0; i < N; i++) h.push(keys[i]!);
        let s = 0;
        for (let i = 0; i < N; i++) s += h.pop()!;
        return do_not_optimize(s);
      },
    },
    {
      name: 'tinyqueue push/pop',
      ops: N,
      fn: () => {
        const h = new TinyQueue<number>();
        for (let i = 0; i < N; i++) h.push(keys[i]!);
        let s = 0;
        for (let i = 0; i < N; i++) s += h.pop()!;
        return do_not_optimize(s);
      },
    },
  ];
}

async function group(title: string, keys: Float64Array): Promise<void> {
  const perCall: Case = {
    name: 'hotpath TaskHeap push/pop',
    ops: N,
    fn: () => {
      for (let i = 0; i < N; i++) ours.push(keys[i]!, i);
      let s = 0;
      for (let i = 0; i < N; i++) s += ours.pop();
      return do_not_optimize(s);
    },
  };
  const batched: Case = {
    name: 'hotpath TaskHeap pushBatch/popBatch',
    ops: N,
    fn: () => {
      ours.pushBatch(keys, slots, N);
      return do_not_optimize(ours.popBatch(out));
    },
  };
  await suite.compare(`${title}: per call`, perCall, peers(keys));
  await suite.compare(`${title}: batched`, batched, peers(keys));
  for (const r of suite.results.filter((x) => x.group.startsWith(title))) {
    console.log(`  ${r.group.slice(title.length + 2).padEnd(9)} ${r.name.padEnd(40)} ${(1e3 / r.p50Ns).toFixed(2)} M push+pop/s`);
  }
}

const random = makeKeys(N, 0);
await group(`push ${N / 1e6}M random numbers, then pop all`, random);
await group(`push ${N / 1e6}M numbers of 4 distinct keys (ties: FIFO), then pop all`, makeKeys(N, 4));

// What the sorted path brings: the same batched drain, but in 1024-slot popBatch calls (each
// well under half the heap, so each pops entry by entry), against one whole-heap popBatch.
const chunk = new Uint32Array(1024);
await suite.compare(
  `batched, ${N / 1e6}M random: whole-heap popBatch (sorted) vs 1024-slot popBatch calls (popped)`,
  {
    name: 'pushBatch + one popBatch (sorted)',
    ops: N,
    fn: () => {
      ours.pushBatch(random, slots, N);
      return do_not_optimize(ours.popBatch(out));
    },
  },
  [
    {
      name: 'pushBatch + popBatch(1024) × N/1024',
      ops: N,
      fn: () => {
        ours.pushBatch(random, slots, N);
        let s = 0;
        while (ours.size > 0) s += ours.popBatch(chunk);
        return do_not_optimize(s);
      },
    },
  ],
  { internal: true },
);

suite.finish();
