/**
 * L1 speed and memory against lru-cache, in the same run:
 *  - get of a resident key at 10k, 100k and 1M entries (keys drawn at random from the resident
 *    set, pre-generated; the key's 32-bit hash is pre-computed as the Cache has it already for
 *    L2 and its stamps), W-TinyLFU and LRU;
 *  - set with eviction (every set inserts a key not held and evicts one) at 10k entries;
 *  - memory per entry: heap + ArrayBuffer bytes after filling 100k entries, minus before, per
 *    entry (values shared, keys pre-allocated: the structure's own cost), plus our sketch's
 *    private WebAssembly memory, which Node's counters do not see.
 */
import { do_not_optimize } from 'mitata';
import { LRUCache } from 'lru-cache';
import { L1Store } from '../engine/cache/l1.js';
import { KeyHash } from '../engine/runtime/key-hash.js';
import { kernelModule } from '../engine/runtime/wasm.js';
import { QUICK, Suite } from './harness.js';

const suite = new Suite('cache-l1.bench');
const module = kernelModule();
const VALUE = { value: 1, bytes: 1 };

function keySpace(n: number, prefix: string): { keys: string[]; hashes: Int32Array } {
  const keys = new Array<string>(n);
  const hashes = new Int32Array(n);
  const h = new KeyHash();
  for (let i = 0; i < n; i++) {
    // Flattened strings, as keys that arrive over the network are.
    const key = `${prefix}:${i.toString(36)}:${(i * 2654435761) >>> 0}`;
    keys[i] = key;
    h.set(key);
    hashes[i] = h.lo;
  }
  return { keys, hashes };
}

/** A pre-drawn sequence of indexes in 0..n-1 (xorshift32; 2^20 of them, cycled). */
function picks(n: number, seed: number): Int32Array {
  const out = new Int32Array(1 << 20);
  let x = seed | 1;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = (x >>> 0) % n;
  }
  return out;
}

const sizes = QUICK ? [10_000, 100_000] : [10_000, 100_000, 1_000_000];
for (const n of sizes) {
  const { keys, hashes } = keySpace(n, `g${n}`);
  const lfu = new L1Store({ maxEntries: n, module });
  const lru = new L1Store({ maxEntries: n, policy: 'lru', module });
  const peer = new LRUCache<string, typeof VALUE>({ max: n });
  for (let i = 0; i < n; i++) {
    lfu.set(keys[i]!, hashes[i]!, VALUE);
    lru.set(keys[i]!, hashes[i]!, VALUE);
    peer.set(keys[i]!, VALUE);
  }
  const order = picks(n, 0x9e3779b9 ^ n);
  const mask = order.length - 1;
  let i = 0;
  let j = 0;
  let k = 0;
  await suite.compare(`get, ${n.toLocaleString('en')} resident entries (random hits), tinylfu`, {
    name: 'hotpath L1 tinylfu get',
    fn: () => {
      const x = order[i++ & mask]!;
      return do_not_optimize(lfu.get(keys[x]!, hashes[x]!));
    },
  }, [{
    name: 'lru-cache get',
    fn: () => do_not_optimize(peer.get(keys[order[j++ & mask]!]!)),
  }]);
  await suite.compare(`get, ${n.toLocaleString('en')} resident entries (random hits), lru`, {
    name: 'hotpath L1 lru get',
    fn: () => {
      const x = order[k++ & mask]!;
      return do_not_optimize(lru.get(keys[x]!, hashes[x]!));
    },
  }, [{
    name: 'lru-cache get',
    fn: () => do_not_optimize(peer.get(keys[order[j++ & mask]!]!)),
  }]);
  if (n === sizes[0]) {
    // What the hash costs a caller that does not have it already (the Cache has: L2 needs it).
    const hasher = new KeyHash();
    await suite.compare(`get, ${n.toLocaleString('en')} resident entries, hashing the key in the call`, {
      name: 'hotpath L1 tinylfu get + KeyHash',
      fn: () => {
        const key = keys[order[i++ & mask]!]!;
        hasher.set(key);
        return do_not_optimize(lfu.get(key, hasher.lo));
      },
    }, [{
      name: 'lru-cache get',
      fn: () => do_not_optimize(peer.get(keys[order[j++ & mask]!]!)),
    }]);
  }
}

{
  const n = 10_000;
  const pool = QUICK ? 200_000 : 1_000_000;
  const { keys, hashes } = keySpace(pool, 's');
  const lfu = new L1Store({ maxEntries: n, module });
  const lru = new L1Store({ maxEntries: n, policy: 'lru', module });
  const peer = new LRUCache<string, typeof VALUE>({ max: n });
  let i = 0;
  let j = 0;
  let k = 0;
  // Cycling through 100 × capacity distinct keys: a key is long gone when it comes round again.
  await suite.compare(`set with eviction, ${n.toLocaleString('en')} entries, tinylfu`, {
    name: 'hotpath L1 tinylfu set',
    fn: () => {
      const x = i++ % pool;
      return lfu.set(keys[x]!, hashes[x]!, VALUE);
    },
  }, [{
    name: 'lru-cache set',
    fn: () => peer.set(keys[j++ % pool]!, VALUE),
  }]);
  await suite.compare(`set with eviction, ${n.toLocaleString('en')} entries, lru`, {
    name: 'hotpath L1 lru set',
    fn: () => {
      const x = k++ % pool;
      return lru.set(keys[x]!, hashes[x]!, VALUE);
    },
  }, [{
    name: 'lru-cache set',
    fn: () => peer.set(keys[j++ % pool]!, VALUE),
  }]);
  // A miss followed by the set the Cache does after it (the sketch records the miss).
  let a = 0;
  let b = 0;
  await suite.compare(`get miss + set, ${n.toLocaleString('en')} entries`, {
    name: 'hotpath L1 tinylfu get+set',
    fn: () => {
      const x = a++ % pool;
      if (lfu.get(keys[x]!, hashes[x]!) === undefined) lfu.set(keys[x]!, hashes[x]!, VALUE);
    },
  }, [{
    name: 'lru-cache get+set',
    fn: () => {
      const key = keys[b++ % pool]!;
      if (peer.get(key) === undefined) peer.set(key, VALUE);
    },
  }]);
}

// --- memory per entry ----------------------------------------------------------------------------
{
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) {
    console.log('\n## memory per entry: skipped (run with --expose-gc)');
  } else {
    const n = QUICK ? 20_000 : 100_000;
    const { keys, hashes } = keySpace(n, 'm');
    const used = (): number => {
      gc();
      gc();
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const measure = (fill: () => { extra: number; keep: unknown }): number => {
      const before = used();
      const { extra, keep } = fill();
      const after = used();
      do_not_optimize(keep);
      return (after - before + extra) / n;
    };
    console.log(`\n## memory per entry (${n.toLocaleString('en')} entries, values shared, keys pre-allocated)`);
    for (const policy of ['tinylfu', 'lru'] as const) {
      const perEntry = measure(() => {
        const s = new L1Store({ maxEntries: n, policy, module });
        for (let i = 0; i < n; i++) s.set(keys[i]!, hashes[i]!, VALUE);
        // The sketch's private memory is outside Node's counters: count its table (not the
        // kernels' 64 KiB static page, which every instance has).
        const sketch = s.policy().sketch;
        return { extra: sketch === undefined ? 0 : sketch.shape.bytes, keep: s };
      });
      suite.note('memory per entry', `hotpath L1 ${policy}`, perEntry, 'B/entry');
    }
    const peerPerEntry = measure(() => {
      const c = new LRUCache<string, typeof VALUE>({ max: n });
      for (let i = 0; i < n; i++) c.set(keys[i]!, VALUE);
      return { extra: 0, keep: c };
    });
    suite.note('memory per entry', 'lru-cache', peerPerEntry, 'B/entry');
  }
}

suite.finish();
