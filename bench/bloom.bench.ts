/**
 * Bloom filter benchmarks against the peers in the same run: jasondavies' `bloomfilter` and
 * `bloom-filters`, all three with the same m and k (the ones SharedBloom derives for 1M keys at a
 * 1% rate), pre-filled with those 1M keys (the load the filter is sized for).
 *  - add+has of string keys: one add (a key of the working set, as a cache re-sets its keys) and
 *    one test (half present, half absent) per op; ours hashes in JS (KeyHash) and calls the kernel;
 *    our test reads two generation arrays, theirs one;
 *  - what the generations cost: the same loop on one plain array with the bare kernel;
 *  - the same with only new keys added (every add sets bits);
 *  - the measured false-positive rate of each on 1M absent keys, beside (1 - e^(-kn/m))^k.
 *
 * Runs on one thread's runtime (what every engine thread holds) over a shared memory of its own,
 * so that the bench does not depend on the rest of the engine.
 */
import { do_not_optimize } from 'mitata';
import BloomFilters from 'bloom-filters';
import { SharedBloom, theoreticalRate } from '../engine/cache/bloom.js';
import { KeyHash } from '../engine/runtime/key-hash.js';
import { NO_METRICS, ThreadRuntime } from '../engine/runtime/thread.js';
import { createSharedMemory, kernelModule } from '../engine/runtime/wasm.js';
import { QUICK, Suite } from './harness.js';

/** jasondavies' bloomfilter ships no types: the part of it used here. */
interface JasonDaviesFilter {
  buckets: Uint32Array;
  add(v: string): void;
  test(v: string): boolean;
}
const { BloomFilter: JasonDavies } = (await import('bloomfilter' as string)) as { BloomFilter: new (m: number, k: number) => JasonDaviesFilter };

const suite = new Suite('bloom.bench');
const N = QUICK ? 50_000 : 1_000_000;
const RATE = 0.01;
const NOW = 1_800_000_000_000;

// --- keys: realistic cache keys of 10–24 characters, seeded ------------------------------------
let seed = 0x5eed;
const rnd = (): number => {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const PREFIXES = ['user:', 'session:', 'sku:', 'page:/p/', 'org:42:user:', 'cart:'];
function makeKeys(count: number, tag: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = `${Math.floor(rnd() * 1e8)}${tag}${i.toString(36)}`;
    out.push(`${PREFIXES[i % PREFIXES.length]}${id}`.slice(0, 24));
  }
  return out;
}
const present = makeKeys(N, 'p');
const absent = makeKeys(N, 'a');
const fresh = makeKeys(QUICK ? 200_000 : 2_000_000, 'f');
const lengths = present.map((s) => s.length);
console.log(`  keys: ${N} present, ${N} absent; length ${lengths.reduce((a, b) => Math.min(a, b))}–${lengths.reduce((a, b) => Math.max(a, b))} chars, mean ${(lengths.reduce((a, b) => a + b, 0) / N).toFixed(1)}`);

// --- the filters ---------------------------------------------------------------------------
const plan = SharedBloom.plan({ expectedKeys: N, falsePositiveRate: RATE, horizonMs: 3_600_000 });
const rt = new ThreadRuntime(createSharedMemory(plan.bytes + plan.bits / 8 + SharedBloom.plan({ expectedKeys: QUICK ? 200_000 : 2_000_000, falsePositiveRate: RATE, horizonMs: 1 }).bytes + (4 << 20)), kernelModule(), 'bench:scratch', 4096, NO_METRICS, true);
const ours = SharedBloom.open(rt, 'bench:bloom', { expectedKeys: N, falsePositiveRate: RATE, horizonMs: 3_600_000 });
const jd = new JasonDavies(ours.bits, ours.hashes);
const bf = new BloomFilters.BloomFilter(ours.bits, ours.hashes);
console.log(`  m = ${ours.bits} bits (2^${Math.log2(ours.bits)}), k = ${ours.hashes} for all three; ours: 3 generation arrays, ${(ours.bytes / 2 ** 20).toFixed(1)} MiB`);
suite.note('configuration (1M keys at 1%)', 'bits per array (m)', ours.bits, 'bits');
suite.note('configuration (1M keys at 1%)', 'probes (k)', ours.hashes, 'hashes');

const h = new KeyHash();
const addOurs = (key: string): void => {
  h.set(key);
  ours.add(h.hi, h.lo, NOW);
};
const hasOurs = (key: string): boolean => {
  h.set(key);
  return ours.mightContain(h.hi, h.lo, NOW);
};
{
  const t0 = performance.now();
  for (const key of present) {
    addOurs(key);
    jd.add(key);
  }
  console.log(`  pre-filled ours and bloomfilter in ${(performance.now() - t0).toFixed(0)} ms`);
  const t1 = performance.now();
  for (const key of present) bf.add(key);
  console.log(`  pre-filled bloom-filters in ${(performance.now() - t1).toFixed(0)} ms`);
}

// --- false-positive rate ---------------------------------------------------------------------
{
  const theory = theoreticalRate(ours.bits, ours.hashes, N);
  let a = 0;
  let b = 0;
  let c = 0;
  for (const key of absent) {
    if (hasOurs(key)) a++;
    if (jd.test(key)) b++;
  }
  const sampled = QUICK ? absent.length : 200_000; // bloom-filters tests ~0.1M keys/s
  for (let i = 0; i < sampled; i++) if (bf.has(absent[i]!)) c++;
  let missing = 0;
  for (const key of present) if (!hasOurs(key)) missing++;
  if (missing !== 0) throw new Error(`hotpath bloom lost ${missing} keys`);
  const group = `false-positive rate, ${N} keys in m = 2^${Math.log2(ours.bits)}, k = ${ours.hashes}`;
  suite.note(group, 'theory (1 - e^(-kn/m))^k', theory * 100, '%');
  suite.note(group, `hotpath SharedBloom (${absent.length} absent keys)`, (a / absent.length) * 100, '%');
  suite.note(group, `bloomfilter (${absent.length} absent keys)`, (b / absent.length) * 100, '%');
  suite.note(group, `bloom-filters (${sampled} absent keys)`, (c / sampled) * 100, '%');
  suite.note(group, 'hotpath: deviation from theory', ((a / absent.length - theory) / theory) * 100, '%');
}

// --- add+has -----------------------------------------------------------------------------------
const OPS = 1000;
let i = 0;
const next = (): number => (i = i + 1 >= N ? 0 : i + 1);

await suite.compare(`add+has, string keys (working set of ${N}; tests half absent), ${OPS} ops per call`, {
  name: 'hotpath SharedBloom (KeyHash + kernel)',
  ops: OPS,
  fn: () => {
    let hits = 0;
    for (let j = 0; j < OPS; j++) {
      const x = next();
      addOurs(present[x]!);
      if (hasOurs((x & 1) === 0 ? present[x]! : absent[x]!)) hits++;
    }
    return do_not_optimize(hits);
  },
}, [{
  name: 'bloomfilter (jasondavies) add+test',
  ops: OPS,
  fn: () => {
    let hits = 0;
    for (let j = 0; j < OPS; j++) {
      const x = next();
      jd.add(present[x]!);
      if (jd.test((x & 1) === 0 ? present[x]! : absent[x]!)) hits++;
    }
    return do_not_optimize(hits);
  },
}, {
  name: 'bloom-filters add+has',
  ops: OPS,
  fn: () => {
    let hits = 0;
    for (let j = 0; j < OPS; j++) {
      const x = next();
      bf.add(present[x]!);
      if (bf.has((x & 1) === 0 ? present[x]! : absent[x]!)) hits++;
    }
    return do_not_optimize(hits);
  },
}]);
{
  const mine = suite.results.find((r) => r.group.startsWith('add+has, string keys (working set') && r.role === 'hotpath');
  if (mine !== undefined) suite.note('add+has, string keys (working set)', 'hotpath SharedBloom single operations (add or has) per second', 2e9 / mine.p50Ns, 'ops/s');
}

// What the generations cost: the same loop on one plain array (the kernel's bloomAdd / bloomHas,
// no generation check, one array tested instead of two).
{
  const k = rt.kernels;
  const plain = rt.arena.region('bench:bloom:plain', ours.bits / 8, 64).offset;
  const mask = ours.bits - 1;
  for (const key of present) {
    h.set(key);
    k.bloomAdd(plain, mask, ours.hashes, h.hi, h.lo);
  }
  await suite.compare(`generations' cost: add+has as above, SharedBloom vs one plain array, ${OPS} ops per call`, {
    name: 'SharedBloom (3 generations, 2 tested)',
    ops: OPS,
    fn: () => {
      let hits = 0;
      for (let j = 0; j < OPS; j++) {
        const x = next();
        addOurs(present[x]!);
        if (hasOurs((x & 1) === 0 ? present[x]! : absent[x]!)) hits++;
      }
      return do_not_optimize(hits);
    },
  }, [{
    name: 'kernel on one array (bloomAdd, bloomHas)',
    ops: OPS,
    fn: () => {
      let hits = 0;
      for (let j = 0; j < OPS; j++) {
        const x = next();
        h.set(present[x]!);
        k.bloomAdd(plain, mask, ours.hashes, h.hi, h.lo);
        h.set((x & 1) === 0 ? present[x]! : absent[x]!);
        hits += k.bloomHas(plain, mask, ours.hashes, h.hi, h.lo);
      }
      return do_not_optimize(hits);
    },
  }], { internal: true });
}

// New keys only: every add sets fresh bits (the locked OR path; above, most adds find their bits
// set and skip it). Filters of their own, sized for the fresh keys and zeroed whenever the keys
// wrap around, so both fill from empty to their design load, cycle after cycle.
{
  const F = fresh.length;
  const o2 = SharedBloom.open(rt, 'bench:bloom:fresh', { expectedKeys: F, falsePositiveRate: RATE, horizonMs: 3_600_000 });
  const jd2 = new JasonDavies(o2.bits, o2.hashes);
  const add2 = (key: string): void => {
    h.set(key);
    o2.add(h.hi, h.lo, NOW);
  };
  const has2 = (key: string): boolean => {
    h.set(key);
    return o2.mightContain(h.hi, h.lo, NOW);
  };
  let fo = 0;
  let fj = 0;
  await suite.compare(`add+has, string keys, every add a new key (${F} keys, m = 2^${Math.log2(o2.bits)}, k = ${o2.hashes}), ${OPS} ops per call`, {
    name: 'hotpath SharedBloom (KeyHash + kernel)',
    ops: OPS,
    fn: () => {
      let hits = 0;
      if (fo + OPS > F) {
        fo = 0;
        o2.clear(NOW);
      }
      for (let j = 0; j < OPS; j++, fo++) {
        add2(fresh[fo]!);
        if (has2(absent[fo % N]!)) hits++;
      }
      return do_not_optimize(hits);
    },
  }, [{
    name: 'bloomfilter (jasondavies) add+test',
    ops: OPS,
    fn: () => {
      let hits = 0;
      if (fj + OPS > F) {
        fj = 0;
        jd2.buckets.fill(0);
      }
      for (let j = 0; j < OPS; j++, fj++) {
        jd2.add(fresh[fj]!);
        if (jd2.test(absent[fj % N]!)) hits++;
      }
      return do_not_optimize(hits);
    },
  }]);
}

suite.finish();
