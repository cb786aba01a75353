/**
 * The schedule of a run: the level (requests/s or connections) over time from the stages, and the
 * open model's intended start times.
 *
 * Each stage moves linearly from the previous stage's target (the first from `from`) to its own,
 * so the rate r(t) is piecewise linear and the arrivals are where its integral crosses an
 * integer: arrival k (k = 0, 1, 2, …) is at the t with N(t) = ∫₀ᵗ r = k. Within one stage,
 * r = a + b·τ, N = N₀ + a·τ + b·τ²/2, so τ = 2d / (a + √(a² + 2bd)) with d = k − N₀ (the form
 * without cancellation when b is small). A constant rate R over T ms gives exactly ⌈R·T/1000⌉
 * arrivals at 0, 1000/R, 2000/R, … — no randomness: the schedule is the same on every run.
 */
import type { Stage } from './options.js';

/** The level (rate in requests/s, or connections) at `tMs` ms after the start. */
export function levelAt(from: number, stages: readonly Stage[], tMs: number): number {
  let start = from;
  let t0 = 0;
  for (const s of stages) {
    if (tMs < t0 + s.durationMs) return start + ((s.target - start) * (tMs - t0)) / s.durationMs;
    t0 += s.durationMs;
    start = s.target;
  }
  return start;
}

/** How many arrivals the whole schedule has: arrivals k with t_k < the end of the last stage. */
export function scheduledArrivals(from: number, stages: readonly Stage[]): number {
  let n = 0;
  let start = from;
  for (const s of stages) {
    n += ((start + s.target) / 2) * (s.durationMs / 1000);
    start = s.target;
  }
  // Arrival k exists when k < N(T); guard the float sum against 399.99999… for 400. Not below 0:
  // a schedule of rate 0 throughout gave ceil(−1e−9) = −0 (a property test met it in CI).
  return Math.max(0, Math.ceil(n - 1e-9));
}

interface Segment {
  t0: number;
  dur: number;
  /** rate at the segment's start, per ms */
  a: number;
  /** slope of the rate, per ms² */
  b: number;
  /** arrivals before the segment */
  n0: number;
  /** arrivals at its end */
  n1: number;
}

/**
 * Iterates the intended start times (ms from the start) of this worker's share of the arrivals:
 * arrivals base + offsets[0], base + offsets[1], … for base = 0, period, 2·period, … — so workers
 * with complementary offsets share one schedule (see {@link arrivalShare}).
 */
export class Arrivals {
  readonly #segments: Segment[] = [];
  #seg = 0;
  #base = 0;
  #j = 0;
  readonly #offsets: readonly number[];
  readonly #period: number;

  constructor(from: number, stages: readonly Stage[], offsets: readonly number[] = [0], period = 1) {
    let t0 = 0;
    let n0 = 0;
    let start = from;
    for (const s of stages) {
      const a = start / 1000;
      const b = (s.target - start) / 1000 / s.durationMs;
      const n1 = n0 + a * s.durationMs + (b * s.durationMs * s.durationMs) / 2;
      this.#segments.push({ t0, dur: s.durationMs, a, b, n0, n1 });
      t0 += s.durationMs;
      n0 = n1;
      start = s.target;
    }
    this.#offsets = offsets;
    this.#period = period;
  }

  /** The next intended start in ms from the start of the run, or Infinity when the schedule is over. */
  next(): number {
    if (this.#offsets.length === 0) return Infinity;
    const k = this.#base + this.#offsets[this.#j]!;
    while (this.#seg < this.#segments.length && !(k < this.#segments[this.#seg]!.n1 - 1e-9)) this.#seg++;
    const s = this.#segments[this.#seg];
    if (s === undefined) return Infinity;
    if (++this.#j === this.#offsets.length) {
      this.#j = 0;
      this.#base += this.#period;
    }
    const d = Math.max(0, k - s.n0);
    if (d === 0) return s.t0;
    const tau = (2 * d) / (s.a + Math.sqrt(Math.max(0, s.a * s.a + 2 * s.b * d)));
    return s.t0 + Math.min(tau, s.dur);
  }
}

/**
 * Worker `worker`'s share of the arrivals when `workers` workers own `connections` connections,
 * connection c belonging to worker c mod workers: arrival k goes to the owner of connection
 * k mod connections. A worker's share of the arrivals is then its share of the connections —
 * with 3 connections on 2 workers, 2/3 and 1/3, not 1/2 each (review31: the worker with one
 * connection dropped every other arrival while the other idled).
 */
export function arrivalShare(worker: number, workers: number, connections: number): { offsets: number[]; period: number } {
  const offsets: number[] = [];
  for (let c = worker; c < connections; c += workers) offsets.push(c);
  return { offsets, period: connections };
}
