/**
 * The task queue against its peers, in one run:
 *  - in-process priority queue with a 100k backlog: submit + run of no-op function tasks, against
 *    p-queue with priorities (its insert is O(n): a sorted array) and fastq's promise API (FIFO,
 *    no priorities: the floor of what a queue costs);
 *  - no-op module tasks end to end on the worker threads, against piscina `run()` with its defaults.
 * The heap kernel alone: queue-heap.bench.ts; the durable queue on BullMQ: queue-durable.bench.ts.
 */
import PQueue from 'p-queue';
import fastq from 'fastq';
import { Piscina } from 'piscina';
import { createEngine, Queue } from '../engine/index.js';
import { QUICK, Suite } from './harness.js';

const suite = new Suite('queue.bench');
const BACKLOG = QUICK ? 10_000 : 100_000;
const BATCH = 1000;

/**
 * Counts completions of a queue that runs one task at a time; `run(n)` lets exactly n more tasks
 * run (the handler pauses the queue when the count is reached), so the backlog stays where it was.
 */
class Gate {
  done = 0;
  #target = 0;
  #resolve: (() => void) | undefined;
  constructor(readonly pause: () => void, readonly resume: () => void) {}
  readonly tick = (): void => {
    if (++this.done === this.#target) {
      this.pause();
      this.#resolve!();
    }
  };

  run(n: number): Promise<void> {
    this.#target = this.done + n;
    const p = new Promise<void>((r) => (this.#resolve = r));
    this.resume();
    return p;
  }
}

let seed = 12345;
function priority(): number {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % 10;
}

// --- in-process: a 100k backlog, BATCH submitted and BATCH run per operation --------------------
// Each queue runs one task at a time and holds BACKLOG tasks, paused between operations: an
// operation submits BATCH tasks with random priorities and lets BATCH run, so every submit lands
// in a queue of BACKLOG entries.
let ours: Queue<number> | undefined;
const oursGate = new Gate(() => ours!.pause(), () => ours!.resume());
ours = new Queue('bench', { handler: oursGate.tick, concurrency: 1, maxQueued: BACKLOG * 4 });
ours.pause();
for (let i = 0; i < BACKLOG; i++) ours.submit(i, { priority: priority() });

const pq = new PQueue({ concurrency: 1, autoStart: false });
const pGate = new Gate(() => pq.pause(), () => pq.start());
for (let i = 0; i < BACKLOG; i++) void pq.add(pGate.tick, { priority: priority() });

const fq = fastq.promise((_: number) => {
  fGate.tick();
  return Promise.resolve();
}, 1);
const fGate = new Gate(() => fq.pause(), () => fq.resume());
fq.pause();
for (let i = 0; i < BACKLOG; i++) void fq.push(i);

const q0 = ours;
await suite.compare(`in-process priority queue, ${BACKLOG / 1000}k backlog: submit + run of no-op tasks (per task)`, {
  name: 'hotpath Queue.submit (priorities)',
  ops: BATCH,
  fn: () => {
    for (let i = 0; i < BATCH; i++) q0.submit(i, { priority: priority() });
    return oursGate.run(BATCH);
  },
}, [{
  name: 'p-queue add({ priority })',
  ops: BATCH,
  fn: () => {
    for (let i = 0; i < BATCH; i++) void pq.add(pGate.tick, { priority: priority() });
    return pGate.run(BATCH);
  },
}, {
  name: 'fastq.promise push (FIFO, no priorities)',
  ops: BATCH,
  fn: () => {
    for (let i = 0; i < BATCH; i++) void fq.push(i);
    return fGate.run(BATCH);
  },
}]);
suite.note('in-process backlog', 'hotpath backlog at the end', q0.counts().queued, 'tasks');
suite.note('in-process backlog', 'p-queue backlog at the end', pq.size, 'tasks');
suite.note('in-process backlog', 'fastq backlog at the end', fq.length(), 'tasks');
await q0.close(0);
pq.clear();
fq.kill();

// --- worker threads: no-op module tasks end to end ----------------------------------------------
const engine = await createEngine();
const q = engine.queue('noop', { handler: new URL('./peers/queue-noop.js', import.meta.url) });
const piscina = new Piscina({ filename: new URL('./peers/piscina-noop.js', import.meta.url).href });
await Promise.all(q.submitMany(Array.from({ length: 256 }, () => undefined)).map((h) => h.result)); // load the module everywhere
await Promise.all(Array.from({ length: 256 }, () => piscina.run(undefined)));
const N = QUICK ? 1000 : 10_000;
await suite.compare(`no-op worker tasks end to end, ${N} submitted at once (per task)`, {
  name: `hotpath queue, module handler (concurrency ${q.concurrency})`,
  ops: N,
  fn: () => Promise.all(Array.from({ length: N }, () => q.submit(undefined).result)),
}, [{
  name: 'piscina.run() (defaults)',
  ops: N,
  fn: () => Promise.all(Array.from({ length: N }, () => piscina.run(undefined))),
}]);
await piscina.destroy();
await engine.close();
suite.finish();
