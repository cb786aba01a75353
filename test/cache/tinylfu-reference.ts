/**
 * A plain-TypeScript reference of engine/cache/l1.ts's policies, written for clarity rather than
 * speed: the three areas are arrays of keys (least recently used first), entries live in a Map,
 * frequencies come from the sketch reference (bit-exact with the kernel). Every rule is spelled out
 * where it applies, so the differential test compares the optimised store (typed-array lists, its
 * own hash index, pointer walks) against the algorithm as written down:
 *
 * - get: every access (hit or miss) is one sketch increment; a hit in the window moves to its MRU
 *   end; a hit in probation or protected marks the entry (it does not move).
 * - promotion (of a marked probation entry, see set): to protected's MRU end, unmarked (unless
 *   larger than protected's byte bound: then to probation's MRU end, unmarked); then protected's
 *   leaving entries (below) go to probation's MRU end while it is over its bounds (at most 8 per call).
 * - the entry leaving protected: its LRU entry; while that one is marked and the call has moved
 *   fewer than 8 marked entries round, it goes to protected's MRU end unmarked, and the next LRU
 *   entry is looked at. Any move of an entry unmarks it.
 * - set of a new key: it enters the window's MRU end. Then, if anything is over its bound: window
 *   entries beyond its bounds move to probation's MRU end — the candidates; while the store is over
 *   a bound: when the victim (probation's LRU entry) is marked and fewer than 8 entries were
 *   promoted since the last eviction, it is promoted and the next victim looked at; otherwise the
 *   newest remaining candidate faces the victim: the candidate
 *   wins only if more frequent (or, when its frequency is ≥ 6, with a 1/128 chance drawn from a
 *   xorshift32 seeded 0x2545f491); the loser is evicted. With no candidate left (or when the
 *   candidate is the victim itself) the victim is evicted alone; victims come from probation, then
 *   protected, then the window. Then the hill climber runs.
 * - set of a held key: value and size replaced in place; if it grew: under a byte bound, a
 *   protected entry demotes as above (areas count bytes only under one); then evict if the store
 *   is over.
 * - lru: one list; evict its LRU entry while over.
 */
import { SketchReference } from './sketch-reference.js';

type Area = 'window' | 'probation' | 'protected';

export interface ReferenceOptions {
  maxEntries: number;
  maxBytes?: number;
  policy?: 'tinylfu' | 'lru';
  sketch: { blocksLog2: number; samplePeriod: number; dkLog2: number; conservative: boolean };
  window?: number;
  adaptive?: boolean;
  climber?: { sample?: number; step?: number; z?: number };
}

export class TinyLfuReference {
  readonly entries = new Map<string, { value: unknown; bytes: number; hash: number; area: Area; ref: boolean }>();
  readonly areas: Record<Area, string[]> = { window: [], probation: [], protected: [] };
  readonly sketch: SketchReference;
  evictions = 0;
  rejected = 0;
  windowMax = 1;
  protectedMax = 0;
  readonly #max: number;
  readonly #maxBytes: number;
  readonly #lfu: boolean;
  readonly #adaptive: boolean;
  readonly #sample: number;
  readonly #stepShare: number;
  readonly #z: number;
  #seed = 0x2545f491;
  // the climber
  #hits = 0;
  #misses = 0;
  #full = false;
  #anchorRate = 0;
  #anchorWindow = 0;
  #step: number;
  #lastKind: 'idle' | 'grow' | 'shrink' | 'undo' = 'idle';
  #idle = 0;
  #probeWait = 1;
  #shrinkWait = 1;

  constructor(o: ReferenceOptions) {
    this.#max = o.maxEntries;
    this.#maxBytes = o.maxBytes ?? Infinity;
    this.#lfu = (o.policy ?? 'tinylfu') === 'tinylfu';
    this.#adaptive = o.adaptive !== false;
    this.sketch = new SketchReference(o.sketch);
    this.#sample = (o.climber?.sample ?? 10) * o.maxEntries;
    this.#stepShare = o.climber?.step ?? 0.0625;
    this.#z = o.climber?.z ?? 2;
    this.#step = Math.max(1, Math.round(this.#stepShare * o.maxEntries));
    if (this.#lfu) this.#resize(o.maxEntries - Math.floor((1 - (o.window ?? 0.01)) * o.maxEntries));
    else this.windowMax = o.maxEntries;
  }

  get size(): number {
    return this.entries.size;
  }

  get bytes(): number {
    let b = 0;
    for (const e of this.entries.values()) b += e.bytes;
    return b;
  }

  get(key: string, hash: number): unknown {
    const e = this.entries.get(key);
    if (!this.#lfu) {
      if (e !== undefined) this.#toEnd(key, 'window');
      return e?.value;
    }
    this.sketch.increment(hash);
    if (e === undefined) {
      this.#misses++;
      return undefined;
    }
    this.#hits++;
    if (e.area === 'window') this.#toEnd(key, 'window');
    else e.ref = true;
    return e.value;
  }

  set(key: string, hash: number, value: unknown, bytes: number): boolean {
    const e = this.entries.get(key);
    if (bytes > this.#maxBytes) {
      if (e !== undefined) this.#drop(key);
      return false;
    }
    if (e !== undefined) {
      const grew = bytes > e.bytes;
      e.value = value;
      e.bytes = bytes;
      // Areas count bytes only under a byte bound: without one a larger value changes no area.
      if (grew && e.area === 'protected' && this.#maxBytes !== Infinity) this.#demote();
      if (grew && this.#over()) this.#evict();
      return this.entries.has(key);
    }
    this.entries.set(key, { value, bytes, hash: hash | 0, area: 'window', ref: false });
    this.areas.window.push(key);
    if (this.#over() || this.#count('window') > this.windowMax || this.#areaBytes('window') > this.#share(this.windowMax)) this.#evict();
    return this.entries.has(key);
  }

  delete(key: string): boolean {
    if (!this.entries.has(key)) return false;
    this.#drop(key);
    return true;
  }

  /** Keys in the store's `keys()` order: window, probation, protected, each LRU first. */
  keys(): string[] {
    return [...this.areas.window, ...this.areas.probation, ...this.areas.protected];
  }

  // ---------------------------------------------------------------------------------------------

  #share(entries: number): number {
    return this.#maxBytes === Infinity ? Infinity : (this.#maxBytes * entries) / this.#max;
  }

  #count(area: Area): number {
    return this.areas[area].length;
  }

  #areaBytes(area: Area): number {
    let b = 0;
    for (const k of this.areas[area]) b += this.entries.get(k)!.bytes;
    return b;
  }

  #over(): boolean {
    return this.entries.size > this.#max || this.bytes > this.#maxBytes;
  }

  /** Moves `key` to the MRU end of `area` (from wherever it is). */
  #toEnd(key: string, area: Area): void {
    const e = this.entries.get(key)!;
    const from = this.areas[e.area];
    from.splice(from.indexOf(key), 1);
    this.areas[area].push(key);
    e.area = area;
    e.ref = false;
  }

  /** The entry that leaves `area` (protected) when it is over: see the file comment. */
  #leaving(area: Area, budget: { spins: number }): string | undefined {
    for (;;) {
      const lru = this.areas[area][0];
      if (lru === undefined) return undefined;
      const e = this.entries.get(lru)!;
      if (!e.ref || budget.spins === 0) return lru;
      budget.spins--;
      this.#toEnd(lru, area);
    }
  }

  #drop(key: string): void {
    const e = this.entries.get(key)!;
    const list = this.areas[e.area];
    list.splice(list.indexOf(key), 1);
    this.entries.delete(key);
  }

  #evictKey(key: string): void {
    this.#drop(key);
    this.evictions++;
  }

  #demote(): void {
    const budget = { spins: 8 };
    for (let n = 0; n < 8; n++) {
      if (!(this.#count('protected') > this.protectedMax || this.#areaBytes('protected') > this.#share(this.protectedMax))) break;
      const lru = this.#leaving('protected', budget);
      if (lru === undefined) break;
      this.#toEnd(lru, 'probation');
    }
  }

  #evict(): void {
    if (!this.#lfu) {
      while (this.#over() && this.areas.window.length > 0) this.#evictKey(this.areas.window[0]!);
      return;
    }
    // The window's overflow becomes the candidates.
    const candidates: string[] = [];
    while (this.#count('window') > this.windowMax || this.#areaBytes('window') > this.#share(this.windowMax)) {
      const lru = this.areas.window[0];
      if (lru === undefined) break;
      this.#toEnd(lru, 'probation');
      candidates.push(lru);
    }
    // Newest first; a candidate is gone once evicted (as a loser or as a victim).
    const pending = candidates.reverse();
    const victim = (): string | undefined => this.areas.probation[0] ?? this.areas.protected[0] ?? this.areas.window[0];
    let promotions = 8;
    while (this.#over()) {
      const v = victim();
      if (v === undefined) break;
      const ve = this.entries.get(v)!;
      if (ve.area === 'probation' && ve.ref && promotions > 0) {
        promotions--;
        if (ve.bytes > this.#share(this.protectedMax)) this.#toEnd(v, 'probation');
        else {
          this.#toEnd(v, 'protected');
          this.#demote();
        }
        continue;
      }
      promotions = 8; // an entry is evicted below
      while (pending.length > 0 && !this.entries.has(pending[0]!)) pending.shift();
      const c = pending[0];
      if (c === undefined || c === v) {
        pending.length = 0;
        this.#evictKey(v);
        continue;
      }
      pending.shift();
      if (this.#admit(this.entries.get(c)!.hash, this.entries.get(v)!.hash)) {
        this.#evictKey(v);
      } else {
        this.rejected++;
        this.#evictKey(c);
      }
    }
    this.#climb();
  }

  #admit(candidateHash: number, victimHash: number): boolean {
    const cf = this.sketch.frequency(candidateHash);
    const vf = this.sketch.frequency(victimHash);
    if (cf > vf) return true;
    if (cf < 6) return false;
    let x = this.#seed;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#seed = x;
    return (x & 127) === 0;
  }

  #resize(entries: number): void {
    this.windowMax = Math.max(1, Math.min(this.#max - 1, entries));
    this.protectedMax = Math.floor(0.8 * (this.#max - this.windowMax));
    this.#demote();
  }

  /** The hill climber, as documented in l1.ts. */
  #climb(): void {
    if (!this.#adaptive) return;
    if (!this.#full) {
      // Samples start after the first eviction.
      this.#hits = 0;
      this.#misses = 0;
      this.#full = this.evictions > 0;
      return;
    }
    const n = this.#hits + this.#misses;
    if (n < this.#sample) return;
    const hitRate = this.#hits / n;
    this.#hits = 0;
    this.#misses = 0;
    const anchor = this.#anchorRate;
    const p = (hitRate + anchor) / 2;
    const noise = this.#z * Math.sqrt((2 * p * (1 - p)) / n);
    const maxStep = Math.ceil(this.#max / 4);
    const before = this.windowMax;
    let target = before;
    let kind = this.#lastKind;
    if (kind === 'grow') {
      if (hitRate > anchor + noise) {
        // It paid: keep growing, twice as fast.
        this.#anchorRate = hitRate;
        this.#anchorWindow = before;
        this.#probeWait = 1;
        this.#step = Math.min(this.#step * 2, maxStep);
        target = before + this.#step;
      } else if (hitRate < anchor) {
        // It hurt (however little): back to the anchor.
        target = this.#anchorWindow;
        kind = 'undo';
        this.#probeWait = Math.min(this.#probeWait * 2, 16);
      } else {
        // Flat: kept, but the run ends.
        kind = 'idle';
        this.#probeWait = Math.min(this.#probeWait * 2, 16);
      }
    } else if (kind === 'shrink') {
      if (hitRate < anchor - noise) {
        target = this.#anchorWindow;
        kind = 'undo';
        this.#shrinkWait = Math.min(this.#shrinkWait * 2, 16);
      } else {
        if (hitRate > anchor + noise) {
          this.#anchorRate = hitRate;
          this.#anchorWindow = before;
          this.#shrinkWait = 1;
        }
        this.#step = Math.min(this.#step * 2, maxStep);
        target = before - this.#step;
      }
    } else {
      this.#idle++;
      this.#step = Math.max(1, Math.round(this.#stepShare * this.#max));
      this.#anchorRate = hitRate;
      this.#anchorWindow = before;
      kind = 'idle';
      if (this.#idle >= this.#shrinkWait && before > 1) {
        target = before - this.#step;
        kind = 'shrink';
      } else if (this.#idle >= this.#probeWait && before < this.#max - 1) {
        target = before + this.#step;
        kind = 'grow';
      }
    }
    this.#resize(target);
    if (this.windowMax === before && kind !== 'undo') kind = 'idle';
    if (kind !== 'idle') this.#idle = 0;
    this.#lastKind = kind;
  }
}
