/**
 * The shared L2 store on one thread: set/get/overwrite/delete, versions and tombstones, TTL,
 * clear, stamps, UTF-8 keys, forced hash collisions (probe chains and backward-shift deletion),
 * eviction under pressure (CLOCK, page moves between size classes, full index segments), option
 * validation, and a model-based property test against a plain Map reference. Every scenario ends
 * with `verify()` (the structure's invariants and counters) coming back clean.
 * Cross-thread behaviour is in l2-stress.test.ts.
 */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { SharedStore, utf8Length, type L2Hold, type L2Meta, type L2SetResult } from '../../engine/cache/l2.js';
import { StampTable } from '../../engine/cache/stamps.js';
import { RegionConflictError } from '../../engine/errors.js';
import { KeyHash } from '../../engine/runtime/key-hash.js';
import { NO_METRICS, ThreadRuntime } from '../../engine/runtime/thread.js';
import { createSharedMemory, kernelModule } from '../../engine/runtime/wasm.js';

let rt: ThreadRuntime;
let n = 0;
const FOREVER: L2Meta = { expires: Infinity, stale: Infinity, version: 0 };
const NOW = 1_800_000_000_000;

beforeAll(() => {
  rt = new ThreadRuntime(createSharedMemory(96 << 20), kernelModule(), 'test:l2', 4096, NO_METRICS, true);
});

/** A store with helpers that hash with KeyHash (or a forced hash for collisions). */
function store(bytes = 2 << 20, maxValueBytes?: number, stamps?: StampTable) {
  const s = SharedStore.open(rt, `test:l2:${n++}`, { bytes, ...(maxValueBytes ? { maxValueBytes } : {}), ...(stamps ? { stamps } : {}) });
  const h = new KeyHash();
  let forced: [number, number] | undefined;
  // Each write is a new version unless a test says otherwise (one version is one write).
  let version = 1_000_000;
  const hash = (key: string): [number, number] => {
    if (forced) return forced;
    h.set(key);
    return [h.hi, h.lo];
  };
  return {
    s,
    force(hi: number, lo: number) {
      forced = [hi, lo];
    },
    get: (key: string, now = NOW) => s.get(key, ...hash(key), now),
    set: (key: string, value: Uint8Array, meta: Partial<L2Meta> = {}, now = NOW): L2SetResult =>
      s.set(key, ...hash(key), value, { ...FOREVER, version: ++version, ...meta }, now).result,
    del: (key: string, now = NOW, version?: number, until?: number) => s.delete(key, ...hash(key), now, version, until),
  };
}

const bytesOf = (text: string): Uint8Array => new TextEncoder().encode(text);
const text = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b));
/** Byte equality without vitest's element-by-element diffing (slow on big arrays). */
const same = (a: Uint8Array | undefined, b: Uint8Array): boolean => a !== undefined && Buffer.compare(a, b) === 0;
function filled(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (seed * 31 + i * 7) & 255;
  return b;
}

describe('set / get / delete', () => {
  it('round-trips bytes and metadata; the hit is a private copy', () => {
    const t = store();
    expect(t.set('a', bytesOf('hello'), { expires: NOW + 10, stale: NOW + 20, version: 3 })).toBe('stored');
    const hit = t.get('a')!;
    expect(text(hit.bytes)).toBe('hello');
    expect(hit).toMatchObject({ expires: NOW + 10, stale: NOW + 20, version: 3, stamp: 0 });
    expect(hit.bytes.buffer).toBeInstanceOf(ArrayBuffer); // not a view of the shared memory
    hit.bytes[0] = 0;
    expect(text(t.get('a')!.bytes)).toBe('hello');
    expect(t.get('b')).toBeUndefined();
    expect(t.set('empty', new Uint8Array(0))).toBe('stored');
    expect(t.get('empty')!.bytes.length).toBe(0);
    expect(t.s.verify()).toEqual([]);
  });

  it('overwrites in place and across size classes, keeping one entry', () => {
    const t = store();
    for (const len of [10, 12, 500, 3000, 20, 20_000, 1, 64]) {
      expect(t.set('k', filled(len, len))).toBe('stored');
      expect(same(t.get('k')?.bytes, filled(len, len))).toBe(true);
      expect(t.s.stats().entries).toBe(1);
    }
    expect(t.s.verify()).toEqual([]);
  });

  it('a tombstone of a key longer than any block is not written (review32: it overran its block into the next)', () => {
    const t = store(1 << 20, 256);
    const long = 'L'.repeat(16_000);
    const neighbours = Array.from({ length: 40 }, (_, i) => `n${i}`);
    for (const k of neighbours) expect(t.set(k, filled(200, k.length))).toBe('stored');
    expect(t.del(long, NOW, 2_000_000, NOW + 10_000).deleted).toBe(false);
    expect(t.s.verify()).toEqual([]);
    for (const k of neighbours) expect(same(t.get(k)?.bytes, filled(200, k.length))).toBe(true);
    // A key that fits still gets its tombstone: an older set is refused.
    expect(t.del('short', NOW, 3_000_000, NOW + 10_000).deleted).toBe(false);
    expect(t.s.set('short', ...(() => { const h = new KeyHash(); h.set('short'); return [h.hi, h.lo] as [number, number]; })(), bytesOf('old'), { ...FOREVER, version: 2_999_999 }, NOW).result).toBe('older');
  });

  it('delete removes the value and says whether there was one', () => {
    const t = store();
    t.set('a', bytesOf('1'));
    expect(t.del('a').deleted).toBe(true);
    expect(t.get('a')).toBeUndefined();
    expect(t.del('a').deleted).toBe(false);
    expect(t.s.stats()).toMatchObject({ entries: 0, bytes: 0 });
    expect(t.s.verify()).toEqual([]);
  });

  it('keys compare as UTF-8 bytes (non-ASCII, astral, lone surrogates, canonically equal forms)', () => {
    const t = store();
    const keys = ['é', 'e\u0301', '日本語', '😀', 'a😀b', '\ud800', '\udc00x', 'ß', '', 'x'.repeat(300)];
    keys.forEach((k, i) => expect(t.set(k, bytesOf(`v${i}`))).toBe('stored'));
    keys.forEach((k, i) => expect(text(t.get(k)?.bytes)).toBe(`v${i}`));
    for (const k of keys) expect(utf8Length(k)).toBe(new TextEncoder().encode(k).length);
    // A lone surrogate is stored as U+FFFD (as TextEncoder does); '\ud800' and '\ufffd' still
    // differ by their hash (KeyHash reads UTF-16 units), so they stay two keys.
    expect(t.get('\ufffd')).toBeUndefined();
    expect(t.s.verify()).toEqual([]);
  });
});

describe('TTL', () => {
  it('hits until stale (with expires reported), misses after', () => {
    const t = store();
    t.set('a', bytesOf('x'), { expires: NOW + 100, stale: NOW + 200 });
    expect(t.get('a', NOW + 100)!.expires).toBe(NOW + 100);
    expect(t.get('a', NOW + 150)).toBeDefined(); // stale but servable: the caller decides
    expect(t.get('a', NOW + 200)).toBeDefined();
    expect(t.get('a', NOW + 201)).toBeUndefined();
    // A dead entry can be overwritten by any version, and is not "deleted" by delete.
    t.set('b', bytesOf('old'), { stale: NOW + 10, version: 9 });
    expect(t.del('b', NOW + 11).deleted).toBe(false);
    t.set('c', bytesOf('old'), { stale: NOW + 10, version: 9 });
    expect(t.set('c', bytesOf('new'), { version: 1 }, NOW + 11)).toBe('stored');
    expect(text(t.get('c', NOW + 11)?.bytes)).toBe('new');
    expect(t.s.verify()).toEqual([]);
  });
});

describe('versions and tombstones', () => {
  it('refuses an older set and one of the same version (one version is one write), accepts newer', () => {
    const t = store();
    expect(t.set('k', bytesOf('v5'), { version: 5 })).toBe('stored');
    expect(t.set('k', bytesOf('v4'), { version: 4 })).toBe('older');
    expect(text(t.get('k')?.bytes)).toBe('v5');
    expect(t.set('k', bytesOf('v5b'), { version: 5 })).toBe('older');
    expect(text(t.get('k')?.bytes)).toBe('v5');
    expect(t.set('k', bytesOf('v6'), { version: 6 })).toBe('stored');
    expect(text(t.get('k')?.bytes)).toBe('v6');
    expect(t.s.stats().refused).toBe(2);
  });

  it('a versioned delete older than the value is refused', () => {
    const t = store();
    t.set('k', bytesOf('v5'), { version: 5 });
    expect(t.del('k', NOW, 4, NOW + 1000).deleted).toBe(false);
    expect(text(t.get('k')?.bytes)).toBe('v5');
    expect(t.del('k', NOW, 5, NOW + 1000).deleted).toBe(true);
    expect(t.get('k')).toBeUndefined();
  });

  it('a tombstone hides nothing from get, refuses older sets until it ends', () => {
    const t = store();
    t.set('k', bytesOf('v1'), { version: 1 });
    expect(t.del('k', NOW, 7, NOW + 1000)).toMatchObject({ deleted: true });
    expect(t.get('k')).toBeUndefined();
    expect(t.s.stats()).toMatchObject({ entries: 0, tombstones: 1 });
    expect(t.set('k', bytesOf('late'), { version: 6 })).toBe('older');
    expect(t.get('k')).toBeUndefined();
    // A tombstone for a key never stored works the same.
    expect(t.del('fresh', NOW, 3, NOW + 1000).deleted).toBe(false);
    expect(t.set('fresh', bytesOf('late'), { version: 2 })).toBe('older');
    // After it ends, any version lands; a newer one at once.
    expect(t.set('k', bytesOf('v8'), { version: 8 })).toBe('stored');
    expect(text(t.get('k')?.bytes)).toBe('v8');
    expect(t.set('fresh', bytesOf('v0'), { version: 0 }, NOW + 1001)).toBe('stored');
    expect(t.s.stats()).toMatchObject({ entries: 2, tombstones: 0 });
    expect(t.s.verify()).toEqual([]);
  });
});

describe('stamps', () => {
  it('every change bumps the key stamp after publishing; get returns the stamp seen first', () => {
    const stamps = StampTable.open(rt, `test:stamps:${n++}`, { words: 1024 });
    const t = store(2 << 20, undefined, stamps);
    const h = new KeyHash();
    h.set('k');
    const r1 = t.s.set('k', h.hi, h.lo, bytesOf('a'), FOREVER, NOW);
    expect(r1).toEqual({ result: 'stored', stamp: 1 });
    expect(stamps.stamp(h.lo)).toBe(1);
    expect(t.get('k')!.stamp).toBe(1);
    expect(t.s.set('k', h.hi, h.lo, bytesOf('b'), { ...FOREVER, version: 1 }, NOW)).toEqual({ result: 'stored', stamp: 2 });
    // Refused as older: nothing changed, no bump.
    t.s.set('k', h.hi, h.lo, bytesOf('c'), { ...FOREVER, version: 5 }, NOW);
    expect(t.s.set('k', h.hi, h.lo, bytesOf('d'), { ...FOREVER, version: 4 }, NOW)).toEqual({ result: 'older', stamp: 3 });
    // Too large: the old value is dropped, so the stamp moves.
    expect(t.s.set('k', h.hi, h.lo, new Uint8Array(t.s.maxValueBytes), { ...FOREVER, version: 6 }, NOW)).toEqual({ result: 'too-large', stamp: 4 });
    expect(t.get('k')).toBeUndefined();
    // A delete bumps even when L2 has nothing (another thread's L1 may).
    expect(t.s.delete('k', h.hi, h.lo, NOW)).toEqual({ deleted: false, stamp: 5 });
    const epoch = stamps.epoch();
    t.s.clear();
    expect(stamps.epoch()).toBe(epoch + 1);
  });

  it('validates its size and finds the same words by name', () => {
    expect(() => StampTable.open(rt, 'test:stamps:bad', { words: 1000 })).toThrow(/options\.words/);
    const a = StampTable.open(rt, 'test:stamps:same', { words: 128 });
    const b = StampTable.open(rt, 'test:stamps:same', { words: 128 });
    a.bump(5);
    expect(b.stamp(5 + 128)).toBe(1); // same word: low bits
    expect(() => StampTable.open(rt, 'test:stamps:same', { words: 256 })).toThrow(RegionConflictError);
  });
});

describe('sizes and limits', () => {
  it('too-large counts the key and removes the previous value', () => {
    const t = store(2 << 20, 1000);
    expect(t.s.maxValueBytes).toBe(1000);
    expect(t.set('kk', new Uint8Array(998))).toBe('stored');
    expect(t.set('kk', new Uint8Array(999))).toBe('too-large');
    expect(t.get('kk')).toBeUndefined();
    expect(t.s.stats().refused).toBe(1);
    expect(t.s.verify()).toEqual([]);
  });

  it('a set too large (or without room) leaves a tombstone one version below it: older sets are refused, its own version and newer pass (review73 D1)', () => {
    const t = store(2 << 20, 1000);
    const h = new KeyHash();
    h.set('kk');
    const put = (len: number, version: number, stale = Infinity): L2SetResult => t.s.set('kk', h.hi, h.lo, new Uint8Array(len), { expires: stale, stale, version }, NOW).result;
    expect(put(10, 5)).toBe('stored');
    expect(put(2000, 10)).toBe('too-large');
    expect(t.s.stats()).toMatchObject({ entries: 0, tombstones: 1 });
    expect(put(10, 8)).toBe('older'); // a load that began before the large write
    expect(put(10, 9)).toBe('older');
    expect(t.get('kk')).toBeUndefined();
    expect(put(2000, 10)).toBe('too-large'); // the write itself, read back (from Redis): not refused as older
    expect(put(10, 11)).toBe('stored');
    expect(t.get('kk')).toBeDefined();
    // The tombstone lasts until the large write's stale time, no longer.
    expect(put(2000, 20, NOW + 50)).toBe('too-large');
    expect(t.s.set('kk', h.hi, h.lo, new Uint8Array(10), { expires: Infinity, stale: Infinity, version: 15 }, NOW + 51).result).toBe('stored');
    expect(t.s.verify()).toEqual([]);
  });

  it('with a hold, a too-large set leaves a tombstone only for a key the store has an entry of or that hold.wanted names, until min(stale, now + hold.ms) (review76 N2)', () => {
    const t = store(2 << 20, 1000);
    const h = new KeyHash();
    let want = false;
    const asked: string[] = [];
    const hold: L2Hold = { ms: 50, wanted: (key) => (asked.push(key), want) };
    const put = (key: string, len: number, version: number, now = NOW, stale = Infinity): L2SetResult => {
      h.set(key);
      return t.s.set(key, h.hi, h.lo, new Uint8Array(len), { expires: stale, stale, version }, now, hold).result;
    };
    // Nothing held, nothing in flight: no tombstone, and an older set is stored afterwards.
    expect(put('a', 2000, 10)).toBe('too-large');
    expect(asked).toEqual(['a']);
    expect(t.s.stats()).toMatchObject({ entries: 0, tombstones: 0 });
    expect(put('a', 10, 8)).toBe('stored');
    // Held: a tombstone whatever wanted says (not asked), until now + hold.ms although stale is Infinity.
    asked.length = 0;
    expect(put('a', 2000, 20)).toBe('too-large');
    expect(asked).toEqual([]);
    expect(t.s.stats()).toMatchObject({ entries: 0, tombstones: 1 });
    expect(put('a', 10, 15)).toBe('older');
    expect(put('a', 10, 15, NOW + 51)).toBe('stored');
    // Wanted (a load in flight): a tombstone for a key never held; the write's stale time caps it too.
    want = true;
    expect(put('b', 2000, 30, NOW, NOW + 20)).toBe('too-large');
    expect(put('b', 10, 25, NOW + 10)).toBe('older');
    expect(put('b', 10, 25, NOW + 21)).toBe('stored');
    expect(t.s.verify()).toEqual([]);
  });

  it('validates options, naming them', () => {
    expect(() => SharedStore.open(rt, 'test:l2:bad1', { bytes: 1.5 })).toThrow(TypeError);
    expect(() => SharedStore.open(rt, 'test:l2:bad1', { bytes: 1.5 })).toThrow(/options\.l2\.bytes/);
    expect(() => SharedStore.open(rt, 'test:l2:bad2', { bytes: 100_000 })).toThrow(RangeError);
    expect(() => SharedStore.open(rt, 'test:l2:bad2', { bytes: 100_000 })).toThrow(/options\.l2\.bytes must be at least/);
    expect(() => SharedStore.open(rt, 'test:l2:bad3', { bytes: 4 << 20, maxValueBytes: 0 })).toThrow(/options\.l2\.maxValueBytes/);
    expect(() => SharedStore.open(rt, 'test:l2:bad4', { bytes: 4 << 20, maxValueBytes: 4 << 20 })).toThrow(/options\.l2\.bytes must be at least/);
    const min = SharedStore.minimumBytes();
    expect(() => SharedStore.open(rt, 'test:l2:min', { bytes: min })).not.toThrow();
  });

  it('opens the same store by name; a different layout is a RegionConflictError', () => {
    const a = SharedStore.open(rt, 'test:l2:shared', { bytes: 1 << 20 });
    const b = SharedStore.open(rt, 'test:l2:shared', { bytes: 1 << 20 });
    const c = SharedStore.find(rt, 'test:l2:shared')!;
    const h = new KeyHash();
    h.set('x');
    a.set('x', h.hi, h.lo, bytesOf('seen'), FOREVER, NOW);
    expect(text(b.get('x', h.hi, h.lo, NOW)?.bytes)).toBe('seen');
    expect(text(c.get('x', h.hi, h.lo, NOW)?.bytes)).toBe('seen');
    expect(c.maxValueBytes).toBe(a.maxValueBytes);
    expect(SharedStore.find(rt, 'test:l2:nothing')).toBeUndefined();
    expect(() => SharedStore.open(rt, 'test:l2:shared', { bytes: 2 << 20 })).toThrow(RegionConflictError);
    expect(() => SharedStore.open(rt, 'test:l2:shared', { bytes: 1 << 20, maxValueBytes: 100 })).toThrow(RegionConflictError);
  });
});

describe('hash collisions', () => {
  it('keys with the same 64-bit hash never see each other; deleting keeps the chain reachable', () => {
    const t = store(1 << 20);
    t.force(0x1234, 0x5678);
    const keys = Array.from({ length: 12 }, (_, i) => `c${i}`); // fewer than a segment holds
    keys.forEach((k, i) => t.set(k, bytesOf(`v${i}`)));
    keys.forEach((k, i) => expect(text(t.get(k)?.bytes)).toBe(`v${i}`));
    expect(t.get('c99')).toBeUndefined();
    for (const i of [0, 5, 6, 11]) expect(t.del(keys[i]!).deleted).toBe(true);
    keys.forEach((k, i) => expect(text(t.get(k)?.bytes)).toBe([0, 5, 6, 11].includes(i) ? undefined : `v${i}`));
    expect(t.s.verify()).toEqual([]);
  });

  it('a full index segment evicts one of its own entries and keeps serving', () => {
    const t = store(1 << 20);
    t.force(7, 7); // one segment for every key
    for (let i = 0; i < 200; i++) {
      expect(t.set(`s${i}`, bytesOf(`v${i}`))).toBe('stored');
      expect(text(t.get(`s${i}`)?.bytes)).toBe(`v${i}`);
    }
    const st = t.s.stats();
    expect(st.entries).toBeLessThan(200);
    expect(st.evictions).toBe(200 - st.entries);
    for (let i = 0; i < 200; i++) {
      const v = t.get(`s${i}`);
      if (v !== undefined) expect(text(v.bytes)).toBe(`v${i}`);
    }
    expect(t.s.verify()).toEqual([]);
  });

  it('keys crafted offline to share one segment and home (KeyHash is public) spread out: the store mixes in its random seed', () => {
    // What a client who picks cache keys could do against an unseeded index: search for keys
    // whose KeyHash puts them in the victim's stripe and home. 2 MiB: 256 stripes of 64 slots,
    // so 14 bits to match: ~16k hashes a key. Before the seed, these 96 keys filled the victim's
    // segment (64 slots): the store evicted 32+ entries, the victim among the candidates, and
    // every get walked the whole chain.
    const t = store(2 << 20);
    const h = new KeyHash();
    h.set('victim');
    const stripeBits = 255;
    const homeBits = 63;
    const [vStripe, vHome] = [h.hi & stripeBits, h.lo & homeBits];
    const crafted: string[] = [];
    for (let i = 0; crafted.length < 96; i++) {
      const k = `x${i}`;
      h.set(k);
      if ((h.hi & stripeBits) === vStripe && (h.lo & homeBits) === vHome) crafted.push(k);
    }
    expect(t.s.slotOf(0, 0).segmentSlots).toBe(64);
    expect(t.set('victim', bytesOf('v'))).toBe('stored');
    for (const k of crafted) expect(t.set(k, bytesOf(k))).toBe('stored');
    expect(t.s.stats().evictions).toBe(0);
    expect(text(t.get('victim')?.bytes)).toBe('v');
    // Under the seed they fall in many stripes, not one.
    const stripes = new Set(crafted.map((k) => { h.set(k); return t.s.slotOf(h.hi, h.lo).stripe; }));
    expect(stripes.size).toBeGreaterThan(48);
    expect(t.s.verify()).toEqual([]);
  });

  it('different hashes sharing a home slot interleave correctly through deletes (model check)', () => {
    const s = SharedStore.open(rt, `test:l2:chain:${n++}`, { bytes: 512 << 10 });
    // The store mixes its random seed into every hash: find lo values whose homes are h, h+1, h+2.
    const base = s.slotOf(0, 0).home;
    const adjacent: number[] = [0];
    for (let k = 1; k <= 2; k++) {
      let lo = 1;
      while (s.slotOf(0, lo).home !== ((base + k) & (s.slotOf(0, 0).segmentSlots - 1))) lo++;
      adjacent.push(lo);
    }
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat(40), fc.boolean()), { minLength: 1, maxLength: 200 }), (ops) => {
      s.clear();
      const evictions = s.stats().evictions;
      const model = new Map<string, number>();
      // 40 keys over 3 adjacent homes in one stripe (hi 0): long, overlapping probe chains.
      const hashOf = (id: number): [number, number] => [0, adjacent[id % 3]!];
      ops.forEach(([id, del], step) => {
        const key = `key${id}`;
        if (del) {
          expect(s.delete(key, ...hashOf(id), NOW).deleted).toBe(model.has(key));
          model.delete(key);
        } else {
          const r = s.set(key, ...hashOf(id), bytesOf(String(step)), { ...FOREVER, version: step + 1 }, NOW).result;
          expect(r).toBe('stored');
          model.set(key, step);
        }
      });
      // Segments hold 16 slots: with more than 16 live keys the segment evicts; else exact.
      for (let id = 0; id <= 40; id++) {
        const got = s.get(`key${id}`, ...hashOf(id), NOW);
        if (got !== undefined) expect(Number(text(got.bytes))).toBe(model.get(`key${id}`));
        else if (s.stats().evictions === evictions) expect(model.has(`key${id}`)).toBe(false);
      }
      expect(s.verify()).toEqual([]);
    }), { numRuns: 60 });
  });
});

describe('eviction under pressure', () => {
  it('stays within its region, keeps serving the newest entries, counters consistent', () => {
    const t = store(SharedStore.minimumBytes());
    const cap = t.s.stats().capacityBytes;
    let stored = 0;
    for (let i = 0; i < 20_000; i++) {
      const len = 50 + ((i * 7919) % 900);
      if (t.set(`e${i}`, filled(len, i)) === 'stored') stored++;
      expect(same(t.get(`e${i}`)?.bytes, filled(len, i))).toBe(true); // the value just set is there
      if (i % 2000 === 0) expect(t.s.verify()).toEqual([]);
    }
    expect(stored).toBe(20_000);
    const st = t.s.stats();
    expect(st.bytes).toBeLessThanOrEqual(cap);
    expect(st.evictions).toBeGreaterThan(0);
    // Whatever is still there is exactly what was written.
    let present = 0;
    for (let i = 0; i < 20_000; i++) {
      const v = t.get(`e${i}`);
      if (v === undefined) continue;
      present++;
      expect(same(v.bytes, filled(50 + ((i * 7919) % 900), i))).toBe(true);
    }
    expect(present).toBe(st.entries);
    expect(st.bytes / cap).toBeGreaterThan(0.5); // the slab is really used
    expect(t.s.verify()).toEqual([]);
  });

  it('moves pages to a size class that needs them (small values first, then large ones)', () => {
    const t = store(SharedStore.minimumBytes());
    const cap = t.s.stats().capacityBytes;
    for (let i = 0; i < 30_000; i++) t.set(`small${i}`, filled(40, i));
    for (let i = 0; i < 400; i++) expect(t.set(`large${i}`, filled(8000, i))).toBe('stored');
    let large = 0;
    for (let i = 0; i < 400; i++) if (t.get(`large${i}`) !== undefined) large++;
    // Most of the slab went over to the large class, not just one page of it.
    expect(large * 8000).toBeGreaterThan(cap / 3);
    expect(t.s.verify()).toEqual([]);
    // And back again.
    for (let i = 0; i < 30_000; i++) expect(t.set(`again${i}`, filled(40, i))).toBe('stored');
    // The newest small values are there (a few may have gone to full index segments).
    let small = 0;
    for (let i = 29_000; i < 30_000; i++) if (t.get(`again${i}`) !== undefined) small++;
    expect(small).toBeGreaterThan(950);
    expect(t.s.verify()).toEqual([]);
  });

  it('expired entries go before live ones; referenced entries outlive unreferenced ones (CLOCK)', () => {
    const t = store(4 << 20); // an index with room for every entry below: only the slab evicts
    // A hot set read between every insert, a cold stream, and entries that die early.
    const hot = Array.from({ length: 200 }, (_, i) => `hot${i}`);
    hot.forEach((k, i) => t.set(k, filled(200, i)));
    for (let i = 0; i < 5000; i++) t.set(`dies${i}`, filled(200, i), { stale: NOW + 1 });
    const now = NOW + 2;
    for (let i = 0; i < 20_000; i++) {
      t.set(`cold${i}`, filled(200, i), {}, now);
      t.get(hot[i % hot.length]!, now);
    }
    const st = t.s.stats();
    expect(st.expired).toBeGreaterThanOrEqual(5000 - 10); // (a few may go to full index segments)
    const hotLeft = hot.filter((k) => t.get(k, now) !== undefined).length;
    expect(hotLeft).toBeGreaterThanOrEqual(190);
    expect(t.s.verify()).toEqual([]);
  });

  it('clear empties everything and the store fills again', () => {
    const t = store(SharedStore.minimumBytes());
    for (let i = 0; i < 5000; i++) t.set(`x${i}`, filled(100 + (i % 500), i));
    t.del('x1', NOW, 1, NOW + 1000);
    t.s.clear();
    expect(t.s.stats()).toMatchObject({ entries: 0, tombstones: 0, bytes: 0 });
    for (let i = 0; i < 5000; i++) expect(t.get(`x${i}`)).toBeUndefined();
    expect(t.set('x1', bytesOf('back'), { version: 0 })).toBe('stored');
    expect(t.s.verify()).toEqual([]);
  });
});

describe('model-based: the store against a Map reference (no eviction)', () => {
  type Entry = { kind: 'value' | 'tomb'; value: string; expires: number; stale: number; version: number };
  const cmd = fc.oneof(
    fc.record({ op: fc.constant('set' as const), key: fc.nat(12), len: fc.nat(600), version: fc.integer({ min: 0, max: 6 }), ttl: fc.option(fc.nat(50), { nil: undefined }) }),
    fc.record({ op: fc.constant('get' as const), key: fc.nat(12) }),
    fc.record({ op: fc.constant('delete' as const), key: fc.nat(12), version: fc.option(fc.integer({ min: 0, max: 6 }), { nil: undefined }), until: fc.option(fc.nat(50), { nil: undefined }) }),
    fc.record({ op: fc.constant('advance' as const), ms: fc.nat(30) }),
    fc.record({ op: fc.constant('clear' as const) }),
  );

  it('answers exactly as the reference (with hash collisions forced on a third of the keys)', () => {
    const s = SharedStore.open(rt, `test:l2:model:${n++}`, { bytes: 1 << 20, maxValueBytes: 500 });
    fc.assert(fc.property(fc.array(cmd, { maxLength: 120 }), (cmds) => {
      s.clear();
      const model = new Map<string, Entry>();
      const h = new KeyHash();
      const hashOf = (key: string): [number, number] => {
        if (key.endsWith('0') || key.endsWith('3') || key.endsWith('6') || key.endsWith('9')) return [99, 99];
        h.set(key);
        return [h.hi, h.lo];
      };
      let now = NOW;
      for (const c of cmds) {
        if (c.op === 'advance') {
          now += c.ms;
        } else if (c.op === 'clear') {
          s.clear();
          model.clear();
        } else if (c.op === 'get') {
          const key = `k${c.key}`;
          const e = model.get(key);
          const want = e !== undefined && e.kind === 'value' && now <= e.stale ? e : undefined;
          const got = s.get(key, ...hashOf(key), now);
          expect(got === undefined ? undefined : { value: text(got.bytes), expires: got.expires, stale: got.stale, version: got.version })
            .toEqual(want === undefined ? undefined : { value: want.value, expires: want.expires, stale: want.stale, version: want.version });
        } else if (c.op === 'set') {
          const key = `k${c.key}`;
          const value = 'v'.repeat(c.len);
          const stale = c.ttl === undefined ? Infinity : now + c.ttl;
          const meta = { expires: stale, stale, version: c.version };
          const e = model.get(key);
          let want: L2SetResult;
          if (e !== undefined && now <= e.stale && e.version >= c.version) want = 'older';
          else if (utf8Length(key) + c.len > 500) {
            want = 'too-large';
            // Its place is held: a tombstone one version below it, until its stale time (review73 D1).
            if (now <= stale) model.set(key, { kind: 'tomb', value: '', expires: stale, stale, version: c.version - 1 });
            else model.delete(key);
          } else {
            want = 'stored';
            model.set(key, { kind: 'value', value, ...meta });
          }
          expect(s.set(key, ...hashOf(key), bytesOf(value), meta, now).result).toBe(want);
        } else {
          const key = `k${c.key}`;
          const e = model.get(key);
          const until = c.until === undefined ? undefined : now + c.until;
          let deleted = false;
          if (c.version !== undefined && e !== undefined && now <= e.stale && e.version > c.version) {
            deleted = false;
          } else {
            deleted = e !== undefined && e.kind === 'value' && now <= e.stale;
            if (c.version !== undefined && until !== undefined) model.set(key, { kind: 'tomb', value: '', expires: until, stale: until, version: c.version });
            else model.delete(key);
          }
          expect(s.delete(key, ...hashOf(key), now, c.version, until).deleted).toBe(deleted);
        }
      }
      expect(s.stats().evictions).toBe(0);
      expect(s.verify()).toEqual([]);
    }), { numRuns: 200 });
  });
});
