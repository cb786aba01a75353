/**
 * The plain-TS reference of HashRing (engine/balance/ring.ts over wasm/ring.ts): the same three
 * algorithms written the obvious way — arrays of objects, a comparator sort, a linear search, BigInt
 * for jump hash's 64-bit arithmetic, Maglev's population loop as in the paper — slow and plainly
 * right. The differential tests run both on the same operations and compare every answer.
 *
 * The specification both follow:
 *  - key hash: xxHash32, seed 0, of the key's UTF-8 bytes (the project's JS xxHash32,
 *    itself checked against xxhsum in test/wasm/hash.test.ts);
 *  - 'ring': node `id` of weight w has max(1, round(vnodes × w)) points, point i at
 *    xxHash32(UTF-8 of `${id}#${i}`); points ordered by (hash, id); a key goes to the first point
 *    with hash ≥ its hash, wrapping to the first point; with `eligible`, walk on clockwise to the
 *    first eligible node;
 *  - 'jump': buckets in assignment order (a new node's buckets fill the lowest holes first, then
 *    go at the end; a lowered weight frees the node's last-assigned buckets; a freed bucket is
 *    dropped if it is the top one, else it becomes a hole; removing every node starts over); attempt a: bucket jump(splitmix64(a · 2^32 + hash), n), attempts 0..31 skipping
 *    holes and ineligible nodes; then a scan upwards (wrapping) from attempt 0's bucket;
 *  - 'maglev': virtual backends `${id}#${r}` (r < weight) in (id, r) order; offset =
 *    xxHash32(name, seed 1) mod m, skip = xxHash32(name, seed 2) mod (m − 1) + 1 (1 when m = 2);
 *    the paper's population; position of attempt a: (a = 0 ? hash : fmix32(hash + a · 0x9e3779b9))
 *    >>> 1, mod m; attempts 0..31, then a scan upwards from attempt 0's position.
 */
import { xxh32Bytes } from '../../engine/runtime/hash.js';

export type Algorithm = 'ring' | 'jump' | 'maglev';

const encoder = new TextEncoder();
const M64 = (1n << 64n) - 1n;
const ATTEMPTS = 32;

export function refHash(key: string | Uint8Array, seed = 0): number {
  const bytes = typeof key === 'string' ? encoder.encode(key) : key;
  return xxh32Bytes(bytes, 0, bytes.length, seed);
}

function splitmix64(x: bigint): bigint {
  let z = (x + 0x9e3779b97f4a7c15n) & M64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return z ^ (z >> 31n);
}

/** Lamping & Veach, Figure 1, with BigInt for the 64-bit key. */
export function refJump(key: bigint, n: number): number {
  let b = -1;
  let j = 0;
  while (j < n) {
    b = j;
    key = (key * 2862933555777941757n + 1n) & M64;
    j = Math.trunc((b + 1) * (2147483648 / Number((key >> 33n) + 1n)));
  }
  return b;
}

export function refJumpBucket(h: number, a: number, n: number): number {
  return refJump(splitmix64((BigInt(a) << 32n) | BigInt(h)), n);
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function maglevPos(h: number, a: number, m: number): number {
  const x = a === 0 ? h : fmix32((h + Math.imul(a, 0x9e3779b9)) | 0);
  return Math.floor(x / 2) % m;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export class RingReference {
  readonly algorithm: Algorithm;
  readonly vnodes: number;
  readonly m: number;
  /** id → weight, in first-add order. */
  readonly nodes = new Map<string, number>();
  /** 'jump': bucket → id (null: a hole); per id, its buckets in assignment order. */
  buckets: Array<string | null> = [];
  readonly owned = new Map<string, number[]>();
  /** Points or table of the current node set (dropped by add/remove). */
  #points: Array<{ hash: number; id: string }> | undefined;
  #table: string[] | undefined;

  constructor(algorithm: Algorithm, vnodes = 2000, m = 65537) {
    this.algorithm = algorithm;
    this.vnodes = vnodes;
    this.m = m;
  }

  add(id: string, weight = 1): void {
    this.#points = this.#table = undefined;
    const before = this.nodes.get(id) ?? 0;
    this.nodes.set(id, weight);
    if (this.algorithm !== 'jump') return;
    const list = this.owned.get(id) ?? [];
    this.owned.set(id, list);
    if (weight < before) {
      this.#free(list, before - weight);
      return;
    }
    for (let i = before; i < weight; i++) {
      let b = this.buckets.includes(null) ? this.buckets.indexOf(null) : -1;
      if (b < 0) {
        b = this.buckets.length;
        this.buckets.push(id);
      } else {
        this.buckets[b] = id;
      }
      list.push(b);
    }
  }

  remove(id: string): boolean {
    if (!this.nodes.has(id)) return false;
    this.#points = this.#table = undefined;
    const w = this.nodes.get(id)!;
    this.nodes.delete(id);
    if (this.algorithm === 'jump') {
      this.#free(this.owned.get(id)!, w);
      this.owned.delete(id);
    }
    return true;
  }

  #free(list: number[], count: number): void {
    for (let i = 0; i < count; i++) {
      const b = list.pop()!;
      if (b === this.buckets.length - 1) this.buckets.pop();
      else this.buckets[b] = null;
    }
    if (this.buckets.every((b) => b === null)) this.buckets = [];
  }

  /** The ring's points, ordered. */
  points(): Array<{ hash: number; id: string }> {
    const pts: Array<{ hash: number; id: string }> = [];
    for (const [id, w] of this.nodes) {
      const count = Math.max(1, Math.round(this.vnodes * w));
      for (let i = 0; i < count; i++) pts.push({ hash: refHash(`${id}#${i}`), id });
    }
    return pts.sort((a, b) => a.hash - b.hash || cmp(a.id, b.id));
  }

  /** The Maglev table (entry → id). */
  maglevTable(): string[] {
    const m = this.m;
    const ids = [...this.nodes.keys()].sort(cmp);
    const perm: Array<{ id: string; offset: number; skip: number; next: number }> = [];
    for (const id of ids) {
      for (let r = 0; r < this.nodes.get(id)!; r++) {
        const name = `${id}#${r}`;
        perm.push({ id, offset: refHash(name, 1) % m, skip: m === 2 ? 1 : (refHash(name, 2) % (m - 1)) + 1, next: 0 });
      }
    }
    const table: Array<string | undefined> = new Array(m).fill(undefined);
    let filled = 0;
    for (;;) {
      for (const p of perm) {
        let c = (p.offset + p.next * p.skip) % m;
        while (table[c] !== undefined) {
          p.next++;
          c = (p.offset + p.next * p.skip) % m;
        }
        table[c] = p.id;
        p.next++;
        if (++filled === m) return table as string[];
      }
    }
  }

  get(key: string | Uint8Array, eligible: (id: string) => boolean = () => true): string | undefined {
    if (this.nodes.size === 0) return undefined;
    for (const id of this.candidates(refHash(key))) if (eligible(id)) return id;
    return undefined;
  }

  /** The nodes offered to `eligible` for key hash h, in order (repeats included); the first eligible one wins. */
  *candidates(h: number): Generator<string> {
    switch (this.algorithm) {
      case 'ring': {
        const pts = (this.#points ??= this.points());
        let p = pts.findIndex((x) => x.hash >= h);
        if (p < 0) p = 0;
        for (let i = 0; i < pts.length; i++) yield pts[(p + i) % pts.length]!.id;
        break;
      }
      case 'jump': {
        const n = this.buckets.length;
        for (let a = 0; a < ATTEMPTS; a++) {
          const id = this.buckets[refJumpBucket(h, a, n)];
          if (id !== null && id !== undefined) yield id;
        }
        const start = refJumpBucket(h, 0, n);
        for (let i = 0; i < n; i++) {
          const id = this.buckets[(start + i) % n];
          if (id !== null && id !== undefined) yield id;
        }
        break;
      }
      case 'maglev': {
        const table = (this.#table ??= this.maglevTable());
        for (let a = 0; a < ATTEMPTS; a++) yield table[maglevPos(h, a, this.m)]!;
        const start = maglevPos(h, 0, this.m);
        for (let i = 0; i < this.m; i++) yield table[(start + i) % this.m]!;
        break;
      }
    }
  }
}
