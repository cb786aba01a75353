/**
 * The circuit breaker's cost per call against opossum 9 and cockatiel 3, in one run:
 *  - `run(fn)` of an async function that resolves at once (what a breaker adds to every call),
 *    closed, with no timeout — each library's plainest configuration;
 *  - the same through `engine.breaker` (state in shared memory, as every thread of the process sees it);
 *  - memory over 1M calls (heap after a full GC, before and after; opossum #648 reports growth).
 */
import CircuitBreaker from 'opossum';
import { circuitBreaker, ConsecutiveBreaker, handleAll } from 'cockatiel';
import { createEngine, CircuitBreaker as HotpathBreaker } from '../engine/index.js';
import { QUICK, Suite } from './harness.js';

const suite = new Suite('breaker.bench');
const BATCH = 1000;
const work = (): Promise<number> => Promise.resolve(1);

const ours = new HotpathBreaker('bench', { consecutiveFailures: 5 });
const engine = await createEngine({ workers: 1, memory: 16 << 20, metrics: false });
const shared = engine.breaker('bench', { consecutiveFailures: 5 });
const opossum = new CircuitBreaker(work, { timeout: false, errorThresholdPercentage: 50, resetTimeout: 5000 });
const cockatiel = circuitBreaker(handleAll, { halfOpenAfter: 5000, breaker: new ConsecutiveBreaker(5) });

async function batch(call: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < BATCH; i++) await call();
}

await suite.compare('breaker run(fn), closed, async fn (per call)',
  { name: 'hotpath CircuitBreaker.run', fn: () => batch(() => ours.run(work)), ops: BATCH },
  [
    { name: 'opossum fire', fn: () => batch(() => opossum.fire()), ops: BATCH },
    { name: 'cockatiel execute', fn: () => batch(() => cockatiel.execute(work)), ops: BATCH },
  ]);

await suite.compare('breaker run(fn), shared-memory state (per call)',
  { name: 'hotpath engine.breaker run', fn: () => batch(() => shared.run(work)), ops: BATCH },
  [
    { name: 'opossum fire', fn: () => batch(() => opossum.fire()), ops: BATCH },
    { name: 'cockatiel execute', fn: () => batch(() => cockatiel.execute(work)), ops: BATCH },
  ]);

// --- memory over 1M calls ---------------------------------------------------------------------
const gc = (globalThis as { gc?: () => void }).gc;
const CALLS = QUICK ? 100_000 : 1_000_000;
/** The heap after the last growth() (after its full GC). */
let heapAfter = 0;
async function growth(call: () => Promise<unknown>): Promise<number> {
  await batch(call);
  gc?.();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < CALLS; i += BATCH) await batch(call);
  gc?.();
  heapAfter = process.memoryUsage().heapUsed;
  return (heapAfter - before) / 1024;
}
if (gc === undefined) console.log('\n(memory figures need --expose-gc: `hotpath bench` passes it)');
console.log(`\n## heap growth over ${CALLS} calls (KiB, after a full GC)`);
suite.note('breaker memory', 'hotpath CircuitBreaker.run', await growth(() => ours.run(work)), 'KiB');
suite.note('breaker memory', 'hotpath engine.breaker run', await growth(() => shared.run(work)), 'KiB');
suite.note('breaker memory', 'opossum fire, right after the calls (its 10 s rolling window holds them)', await growth(() => opossum.fire()), 'KiB');
if (!QUICK) {
  // opossum keeps each call's stats until its rolling window (rollingCountTimeout, 10 s) rolls
  // over: its memory is bounded by calls per window, not a leak. The same heap once it has rolled.
  // (The heap can then drop further than its calls added: the window also held the calls of the
  // timing rounds above, when they were less than 10 s before.)
  const afterCalls = heapAfter;
  await new Promise((r) => setTimeout(r, 11_000));
  gc?.();
  suite.note('breaker memory', 'opossum: heap released 11 s later, once its window rolled over', (afterCalls - process.memoryUsage().heapUsed) / 1024, 'KiB');
}
suite.note('breaker memory', 'cockatiel execute', await growth(() => cockatiel.execute(work)), 'KiB');

opossum.shutdown();
ours.dispose();
await engine.close();
suite.finish();
