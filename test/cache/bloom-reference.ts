/**
 * Plain-TS references of the bloom kernel (wasm/bloom.ts) and of SharedBloom's generations
 * (engine/cache/bloom.ts), written for clarity, single-threaded: the differential tests run the
 * same operations on both and compare answers and bits.
 */

/** One bloom array: m bits (a power of two), k probes (h1 + i·h2) mod m with h2 forced odd. */
export class BloomReference {
  readonly words: Uint32Array;

  constructor(readonly bits: number, readonly k: number) {
    this.words = new Uint32Array(bits / 32);
  }

  /** The k bit indexes of the key (h1, h2). */
  probes(h1: number, h2: number): number[] {
    const out: number[] = [];
    const step = (h2 | 1) >>> 0;
    for (let i = 0; i < this.k; i++) out.push(Number((BigInt(h1 >>> 0) + BigInt(i) * BigInt(step)) % BigInt(this.bits)));
    return out;
  }

  /** Sets the key's bits; true when one of them was not set before. */
  add(h1: number, h2: number): boolean {
    let fresh = false;
    for (const b of this.probes(h1, h2)) {
      const bit = 2 ** (b % 32);
      const w = Math.floor(b / 32);
      if ((this.words[w]! & bit) === 0) fresh = true;
      this.words[w] = this.words[w]! | bit;
    }
    return fresh;
  }

  has(h1: number, h2: number): boolean {
    return this.probes(h1, h2).every((b) => (this.words[Math.floor(b / 32)]! & (2 ** (b % 32))) !== 0);
  }

  clear(): void {
    this.words.fill(0);
  }
}

/**
 * SharedBloom's semantics on one thread: three arrays; generation g = floor(now / horizon); adds
 * go to g % 3, lookups test g % 3 and (g - 1) % 3; generation x is "prepared" (array x % 3
 * zeroed, and (x - 1) % 3 too after an idle gap) when time first reaches it, and x + 1 is
 * prepared from the middle of x on.
 */
export class GenerationalReference {
  readonly arrays: BloomReference[];
  prepared = Number.NEGATIVE_INFINITY;
  cleared = 0;

  constructor(readonly bits: number, readonly k: number, readonly horizon: number) {
    this.arrays = [0, 1, 2].map(() => new BloomReference(bits, k));
  }

  add(h1: number, h2: number, now: number): boolean {
    return this.#at(now, 0).add(h1, h2);
  }

  mightContain(h1: number, h2: number, now: number): boolean {
    return this.#at(now, 0).has(h1, h2) || this.#at(now, 1).has(h1, h2);
  }

  clear(now: number): void {
    for (const a of this.arrays) a.clear();
    this.#enter(now);
  }

  /** The array of generation g(now) - back, after entering now's generation. */
  #at(now: number, back: number): BloomReference {
    const g = this.#enter(now);
    return this.arrays[mod3(g - back)]!;
  }

  #enter(now: number): number {
    const g = Math.floor(now / this.horizon);
    this.#prepare(g);
    if (now >= g * this.horizon + this.horizon / 2) this.#prepare(g + 1);
    return g;
  }

  #prepare(x: number): void {
    if (this.prepared >= x) return;
    this.arrays[mod3(x)]!.clear();
    this.cleared++;
    if (this.prepared < x - 1) {
      this.arrays[mod3(x - 1)]!.clear();
      this.cleared++;
    }
    this.prepared = x;
  }
}

function mod3(x: number): number {
  return ((x % 3) + 3) % 3;
}

/** A deterministic PRNG (mulberry32) for seeded key sets. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
