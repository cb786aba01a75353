/**
 * Plain-TypeScript GCRA with BigInt time, one Map entry per key and no table: the reference the
 * WASM kernel is checked against (while its table has room for every key).
 */
import { gcraTimeBase, type GcraParams } from '../../engine/limiter/gcra-table.js';
import type { Decision } from '../../engine/limiter/types.js';

export class GcraReference {
  readonly #p: GcraParams;
  readonly #scale: bigint;
  readonly #T: bigint;
  readonly #tau: bigint;
  readonly #epoch: bigint;
  readonly #tat = new Map<string, bigint>();

  constructor(p: GcraParams, epochMs: number) {
    const b = gcraTimeBase(p);
    this.#p = p;
    this.#scale = BigInt(b.scale);
    this.#T = BigInt(b.T);
    this.#tau = b.tau;
    this.#epoch = BigInt(Math.floor(epochMs));
  }

  take(key: string, cost: number, nowMs: number, peek = false): Decision {
    const now = (BigInt(Math.floor(nowMs)) - this.#epoch) * this.#scale;
    const stored = this.#tat.get(key) ?? 0n;
    const tat = stored > now ? stored : now;
    const next = tat + BigInt(cost) * this.#T;
    const allowed = next - now <= this.#tau;
    const after = allowed && !peek ? next : tat;
    if (allowed && !peek) this.#tat.set(key, next);
    const room = this.#tau - (after - now);
    const full = after - now;
    const wait = allowed ? 0n : next - now - this.#tau;
    const ceilMs = (u: bigint): number => (u <= 0n ? 0 : Number((u + this.#scale - 1n) / this.#scale));
    return {
      allowed,
      limit: this.#p.limit,
      remaining: room <= 0n ? 0 : Number(room / this.#T),
      resetMs: ceilMs(full),
      retryAfterMs: ceilMs(wait),
    };
  }

  reset(key: string): void {
    this.#tat.delete(key);
  }
}
