/**
 * Plain-TypeScript fixed and sliding windows with one Map entry per key and no table: the
 * reference the WASM kernel (wasm/window.ts) is checked against, written from the definitions
 * rather than from the kernel's packed words.
 *   fixed:   admitted in the current window + cost <= limit
 *   sliding: prev × (W − e) / W + cur + cost <= limit (exact rational comparison)
 */
import type { Decision } from '../../engine/limiter/types.js';

export class WindowReference {
  readonly #W: number;
  readonly #sliding: boolean;
  readonly #epoch: number;
  readonly #counts = new Map<string, Map<number, number>>(); // key → window index → count

  constructor(windowMs: number, sliding: boolean, epochMs: number) {
    this.#W = windowMs;
    this.#sliding = sliding;
    this.#epoch = epochMs;
  }

  take(key: string, cost: number, limit: number, nowMs: number, peek = false): Decision {
    const W = this.#W;
    const rel = Math.max(0, Math.floor(nowMs) - this.#epoch);
    const n = Math.floor(rel / W);
    const e = rel - n * W;
    const counts = this.#counts.get(key) ?? new Map<number, number>();
    let cur = counts.get(n) ?? 0;
    const prev = this.#sliding ? counts.get(n - 1) ?? 0 : 0;
    const weighted = BigInt(prev) * BigInt(W - e);
    const fits = (c: number): boolean => weighted + BigInt(cur + c) * BigInt(W) <= BigInt(limit) * BigInt(W);
    const allowed = fits(cost);
    if (allowed && !peek) {
      cur += cost;
      counts.set(n, cur);
      this.#counts.set(key, counts);
    }
    const room = BigInt(limit) * BigInt(W) - weighted - BigInt(cur) * BigInt(W);
    const remaining = room <= 0n ? 0 : Number(room / BigInt(W));
    const toEnd = W - e;
    const resetMs = cur > 0 ? (this.#sliding ? toEnd + W : toEnd) : prev > 0 ? toEnd : 0;
    let retryAfterMs = 0;
    if (!allowed) {
      if (cost > limit) retryAfterMs = Number.POSITIVE_INFINITY;
      else if (!this.#sliding) retryAfterMs = toEnd;
      else {
        // The first ms t from now at which the request fits (searched, not derived: a reference).
        retryAfterMs = this.#firstFit(prev, cur, cost, limit, e);
      }
    }
    return { allowed, limit, remaining, resetMs, retryAfterMs };
  }

  reset(key: string): void {
    this.#counts.delete(key);
  }

  #firstFit(prev: number, cur: number, cost: number, limit: number, e: number): number {
    const W = this.#W;
    for (let t = 1; t <= 2 * W; t++) {
      const at = e + t;
      const ok = at < W
        ? prev * (W - at) + (cur + cost) * W <= limit * W
        : cur * (W - (at - W)) + cost * W <= limit * W;
      if (ok) return t;
    }
    return 2 * W;
  }
}
