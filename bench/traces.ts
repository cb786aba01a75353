/**
 * Seeded workload generators shared by the hit-ratio simulator (bench/cache-hitratio.bench.ts) and
 * the L1 tests (test/cache/l1.test.ts): the same PRNG and Zipf sampler on both sides.
 */

/** sfc32 (Doty-Humphrey's small fast counting PRNG): seeded, reproducible, uniform doubles. */
export function rng(seed: number): () => number {
  let a = 0x9e3779b9;
  let b = 0x243f6a88;
  let c = 0xb7e15162;
  let d = seed >>> 0;
  const next = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return t >>> 0;
  };
  for (let i = 0; i < 16; i++) next();
  return () => (next() * 2 ** 21 + (next() >>> 11)) / 2 ** 53;
}

/** A Zipf(s) sampler over ranks 0..n-1 by inverse CDF (binary search of the cumulative weights). */
export class Zipf {
  readonly cdf: Float64Array;
  constructor(readonly n: number, readonly s: number) {
    this.cdf = new Float64Array(n);
    let t = 0;
    for (let i = 0; i < n; i++) this.cdf[i] = t += (i + 1) ** -s;
    for (let i = 0; i < n; i++) this.cdf[i]! /= t;
  }

  sample(u: number): number {
    const cdf = this.cdf;
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The probability mass of the `c` most popular keys: the best hit ratio of any fixed set of c keys. */
  topC(c: number): number {
    return this.cdf[Math.min(c, this.n) - 1]!;
  }
}
