/**
 * The adaptive limit: a number of requests per window that moves with what the service observes,
 * by AIMD (additive increase, multiplicative decrease — the `AIMDLimit` of Netflix's
 * concurrency-limits, applied per interval to a rate instead of per sample to a concurrency).
 *
 * Samples: `recordSuccess()`, `recordFailure()`, `recordLatency(ms)` (a success, and also "slow"
 * when above `targetLatencyMs`). At the end of each `intervalMs` (evaluated lazily by the first
 * call after it, so no timer runs and a fake clock drives it exactly), with at least
 * `minSamples` samples in the interval:
 *   - (failures + slow) / samples > `errorRate`  → limit = max(min, floor(limit × backoff))
 *   - otherwise                                    → limit = min(max, limit + increase)
 * With fewer samples the limit stays (no evidence either way). So a healthy, used service
 * climbs linearly to `max`; each bad interval cuts the limit by (1 − backoff).
 *
 * State lives in shared memory, so every thread of the engine feeds and reads one limit:
 *   +0 i32 limit   +8 i32 successes   +12 i32 failures   +16 i32 slow   +24 f64 epochMs
 *   +32 i64 interval index   +40 ready flag
 * The interval index is 64-bit: as an i32 it wrapped after 2^31 intervals (24.8 days at
 * intervalMs 1), and compared by i32 difference it then froze for as long again after an idle gap
 * that long (review42). Each thread remembers the last interval it saw, so a call within it reads
 * no index at all.
 * Counters are atomic adds; the thread that moves the interval index (one CAS) takes the
 * counters with atomic exchanges and writes the new limit. A sample landing between the CAS and
 * the exchanges counts toward the interval that ended — at most one sample per thread.
 */
import type { ThreadRuntime } from '../runtime/thread.js';
import { openTableRegion } from './table-region.js';

export interface AdaptiveOptions {
  /** The floor of the limit. Default max(1, floor(limit / 10)). */
  min?: number;
  /** The ceiling of the limit. Default limit × 10 (at most 1e9). */
  max?: number;
  /** A latency above this (ms) counts as a drop signal. Default: latency is not judged. */
  targetLatencyMs?: number;
  /** Drop ratio above which an interval cuts the limit. Default 0.05. */
  errorRate?: number;
  /** Multiplier of a cut, in (0, 1). Default 0.9. */
  backoff?: number;
  /** Added after a good interval. Default max(1, round(limit / 10)). */
  increase?: number;
  /** Length of one evaluation interval (ms). Default the limiter's window. */
  intervalMs?: number;
  /** Samples an interval needs before it moves the limit. Default 10. */
  minSamples?: number;
}

export interface AdaptiveSettings {
  initial: number;
  min: number;
  max: number;
  targetLatencyMs: number;
  errorRate: number;
  backoff: number;
  increase: number;
  intervalMs: number;
  minSamples: number;
}

const READY = 0x41494d44; // 'AIMD'

export class AdaptiveLimit {
  readonly settings: AdaptiveSettings;
  readonly #i32: Int32Array;
  readonly #at: number; // i32 index of the region
  readonly #i64: BigInt64Array;
  readonly #at64: number; // i64 index of the interval index
  /** The interval this thread last brought the shared index up to, or found it past. */
  #lastIdx = Number.NaN;
  readonly #epoch: number;

  constructor(rt: ThreadRuntime, name: string, settings: AdaptiveSettings, epochMs: number) {
    this.settings = settings;
    const offset = openTableRegion(rt, name, 64, READY,
      (big, u32) => {
        u32[0] = settings.initial;
        big[4] = 0n; // the interval index (+32)
        new Float64Array(big.buffer, big.byteOffset + 24, 1)[0] = epochMs;
      },
      () => true);
    this.#i32 = rt.i32;
    this.#at = offset >>> 2;
    this.#i64 = new BigInt64Array(rt.memory.buffer, 0, rt.memory.buffer.byteLength >>> 3);
    this.#at64 = (offset + 32) >>> 3;
    this.#epoch = new Float64Array(rt.memory.buffer, offset + 24, 1)[0]!;
  }

  /** The limit in force at `nowMs` (closing the interval first if it has ended). */
  current(nowMs: number): number {
    const idx = Math.floor((nowMs - this.#epoch) / this.settings.intervalMs);
    if (idx !== this.#lastIdx) this.#advance(idx);
    return Atomics.load(this.#i32, this.#at);
  }

  /** Moves the shared interval index up to `idx`; the thread whose CAS moves it evaluates. */
  #advance(idx: number): void {
    if (!Number.isSafeInteger(idx)) return; // a clock reading that is not a time
    this.#lastIdx = idx;
    const want = BigInt(idx);
    for (;;) {
      const seen = Atomics.load(this.#i64, this.#at64);
      if (want <= seen) return;
      if (Atomics.compareExchange(this.#i64, this.#at64, seen, want) === seen) {
        this.#evaluate();
        return;
      }
    }
  }

  success(nowMs: number): void {
    this.current(nowMs);
    Atomics.add(this.#i32, this.#at + 2, 1);
  }

  failure(nowMs: number): void {
    this.current(nowMs);
    Atomics.add(this.#i32, this.#at + 3, 1);
  }

  latency(ms: number, nowMs: number): void {
    this.current(nowMs);
    Atomics.add(this.#i32, this.#at + 2, 1);
    if (ms > this.settings.targetLatencyMs) Atomics.add(this.#i32, this.#at + 4, 1);
  }

  #evaluate(): void {
    const i32 = this.#i32;
    const at = this.#at;
    const s = this.settings;
    const ok = Atomics.exchange(i32, at + 2, 0);
    const failed = Atomics.exchange(i32, at + 3, 0);
    const slow = Atomics.exchange(i32, at + 4, 0);
    const samples = ok + failed;
    if (samples < s.minSamples) return;
    const limit = Atomics.load(i32, at);
    const next = (failed + slow) / samples > s.errorRate
      ? Math.max(s.min, Math.floor(limit * s.backoff))
      : Math.min(s.max, limit + s.increase);
    Atomics.store(i32, at, next); // only the interval's winner writes
  }
}
