/**
 * The resource pool against generic-pool 3 and tarn 3, in one run:
 *  - acquire + release with a resource idle (the common case: a warm pool under light load);
 *  - use(fn) (tarn has no use(): acquire, try, finally release);
 *  - contended: 64 callers looping acquire → one microtask → release over 4 resources, so nearly
 *    every acquire waits in line;
 *  - what leak detection (a stack per acquire) and metrics (an engine's registry) cost us.
 * Each peer runs with its defaults, plus generic-pool with a 30 s acquire timeout (what ours and
 * tarn's defaults promise; generic-pool then arms a timer per acquire, as tarn always does; ours
 * arms one only for a caller that has to wait).
 */
import genericPool from 'generic-pool';
import { Pool as TarnPool } from 'tarn';
import { createEngine } from '../engine/index.js';
import { createPool, type PoolOptions } from '../engine/pool/pool.js';
import { QUICK, Suite } from './harness.js';

const suite = new Suite('pool.bench');
const BATCH = 1000;
const SIZE = 4;

interface Res {
  id: number;
}
let ids = 0;
const make = async (): Promise<Res> => ({ id: ++ids });

function ours(extra: Partial<PoolOptions<Res>> = {}): ReturnType<typeof createPool<Res>> {
  return createPool<Res>({ create: make, max: SIZE, ...extra });
}
function generic(options: genericPool.Options = {}): genericPool.Pool<Res> {
  return genericPool.createPool<Res>({ create: make, destroy: async () => undefined }, { max: SIZE, ...options });
}
function tarn(): TarnPool<Res> {
  return new TarnPool<Res>({ create: make, destroy: () => undefined, min: 0, max: SIZE });
}

/** Fills a pool with SIZE resources (all idle afterwards). */
async function warm(acquire: () => Promise<Res>, release: (r: Res) => unknown): Promise<void> {
  const rs = await Promise.all(Array.from({ length: SIZE }, acquire));
  for (const r of rs) release(r);
}

const hp = ours();
const hpLeak = ours({ leakDetectionMs: 60_000 });
const gp = generic();
const gpT = generic({ acquireTimeoutMillis: 30_000 });
const tp = tarn();
await warm(() => hp.acquire(), (r) => hp.release(r));
await warm(() => hpLeak.acquire(), (r) => hpLeak.release(r));
await warm(() => gp.acquire(), (r) => gp.release(r));
await warm(() => gpT.acquire(), (r) => gpT.release(r));
await warm(() => tp.acquire().promise, (r) => tp.release(r));

// --- acquire + release, a resource idle --------------------------------------------------------
await suite.compare('acquire + release, a resource idle (per round trip)', {
  name: 'hotpath pool.acquire() + release()',
  ops: BATCH,
  fn: async () => {
    for (let i = 0; i < BATCH; i++) hp.release(await hp.acquire());
  },
}, [{
  name: 'generic-pool acquire() + release() (defaults)',
  ops: BATCH,
  fn: async () => {
    for (let i = 0; i < BATCH; i++) await gp.release(await gp.acquire());
  },
}, {
  name: 'generic-pool, acquireTimeoutMillis 30000',
  ops: BATCH,
  fn: async () => {
    for (let i = 0; i < BATCH; i++) await gpT.release(await gpT.acquire());
  },
}, {
  name: 'tarn acquire().promise + release() (defaults)',
  ops: BATCH,
  fn: async () => {
    for (let i = 0; i < BATCH; i++) tp.release(await tp.acquire().promise);
  },
}]);

// --- use(fn) ----------------------------------------------------------------------------------
const work = (r: Res): number => r.id;
await suite.compare('use(fn), a resource idle (per call)', {
  name: 'hotpath pool.use(fn)',
  ops: BATCH,
  fn: async () => {
    for (let i = 0; i < BATCH; i++) await hp.use(work);
  },
}, [{
  name: 'generic-pool use(fn)',
  ops: BATCH,
  fn: async () => {
    for (let i = 0; i < BATCH; i++) await gp.use(async (r) => work(r));
  },
}, {
  name: 'tarn acquire, try fn, finally release',
  ops: BATCH,
  fn: async () => {
    for (let i = 0; i < BATCH; i++) {
      const r = await tp.acquire().promise;
      try {
        work(r);
      } finally {
        tp.release(r);
      }
    }
  },
}]);

// --- contended: 64 callers, 4 resources --------------------------------------------------------
const CALLERS = 64;
/** CALLERS loops sharing BATCH round trips; each holds its resource for one microtask. */
function contended(acquire: () => Promise<Res>, release: (r: Res) => unknown): () => Promise<void> {
  return async () => {
    let left = BATCH;
    const loop = async (): Promise<void> => {
      while (left-- > 0) {
        const r = await acquire();
        await null;
        await release(r);
      }
    };
    await Promise.all(Array.from({ length: CALLERS }, loop));
  };
}
await suite.compare(`contended: ${CALLERS} callers, ${SIZE} resources (per round trip)`, {
  name: 'hotpath pool',
  ops: BATCH,
  fn: contended(() => hp.acquire(), (r) => hp.release(r)),
}, [{
  name: 'generic-pool (defaults)',
  ops: BATCH,
  fn: contended(() => gp.acquire(), (r) => gp.release(r)),
}, {
  name: 'generic-pool, acquireTimeoutMillis 30000',
  ops: BATCH,
  fn: contended(() => gpT.acquire(), (r) => gpT.release(r)),
}, {
  name: 'tarn (defaults)',
  ops: BATCH,
  fn: contended(() => tp.acquire().promise, (r) => tp.release(r)),
}]);

// --- the cost of our options --------------------------------------------------------------------
const engine = await createEngine({ workers: 1 });
const hpMetrics = ours({ metrics: engine.metrics, name: 'bench' });
await warm(() => hpMetrics.acquire(), (r) => hpMetrics.release(r));
await suite.compare('acquire + release: what leak detection and metrics cost (per round trip)', {
  name: 'hotpath pool (defaults)',
  ops: BATCH,
  fn: async () => {
    for (let i = 0; i < BATCH; i++) hp.release(await hp.acquire());
  },
}, [{
  name: 'hotpath pool, leakDetectionMs (a stack per acquire)',
  ops: BATCH,
  fn: async () => {
    for (let i = 0; i < BATCH; i++) hpLeak.release(await hpLeak.acquire());
  },
}, {
  name: 'hotpath pool, metrics (engine.metrics)',
  ops: BATCH,
  fn: async () => {
    for (let i = 0; i < BATCH; i++) hpMetrics.release(await hpMetrics.acquire());
  },
}], { internal: true });

if (!QUICK) {
  const s = hp.stats();
  suite.note('sanity', 'hotpath pool resources created', s.created, 'resources');
}
await Promise.all([hp.drain(), hpLeak.drain(), hpMetrics.drain(), gp.drain().then(() => gp.clear()), gpT.drain().then(() => gpT.clear()), tp.destroy()]);
await engine.close();
suite.finish();
