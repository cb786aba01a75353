/**
 * What one thread can record: shared counters and gauges (in the metrics table, visible to every
 * thread: a counter adds to this thread's own cell, a gauge to one atomic word per series; see
 * table.ts) and HDR latency histograms (one per thread and name,
 * merged by the main thread at scrape). Workers get one as `ctx.runtime.metrics`; the main
 * thread's lives inside `Metrics`. With metrics off, every method returns a no-op.
 */
import * as hdr from 'hdr-histogram-js';
import { KIND_COUNTER, KIND_GAUGE, type MetricsTable } from './table.js';

/** Separates the name and label values inside a series key. */
export const SEP = '\u0000';

/** A counter series with its labels bound: `inc()` is one add to this thread's cell (table.ts). */
export interface CounterChild {
  inc(n?: number): void;
}

/** A gauge series with its labels bound. */
export interface GaugeChild {
  inc(n?: number): void;
  dec(n?: number): void;
  set(v: number): void;
}

/** A family of counter series sharing a name and label names. */
export interface SharedCounter extends CounterChild {
  readonly name: string;
  /** The series for these label values (in `labelNames` order). Cache it on hot paths. */
  labels(...values: string[]): CounterChild;
}

/** A family of gauge series. */
export interface SharedGauge extends GaugeChild {
  readonly name: string;
  labels(...values: string[]): GaugeChild;
}

/** A per-thread HDR histogram of durations in milliseconds (recorded with µs resolution). */
export interface LatencyRecorder {
  readonly name: string;
  /** Records one duration (ms, ≥ 0). */
  record(ms: number): void;
}

const NOOP = { inc(): void {}, dec(): void {}, set(): void {}, record(): void {} };

/** Metric and label names as Prometheus accepts them. */
const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export function checkName(name: string, labelNames: readonly string[]): void {
  if (typeof name !== 'string' || !NAME.test(name)) throw new TypeError(`metric name must match ${NAME}, got ${JSON.stringify(name)}`);
  if (!Array.isArray(labelNames)) throw new TypeError(`labelNames of ${name} must be an array of strings`);
  for (const l of labelNames) {
    if (typeof l !== 'string' || !LABEL.test(l) || l.startsWith('__')) throw new TypeError(`label name of ${name} must match ${LABEL}, got ${JSON.stringify(l)}`);
  }
}

export class ThreadMetrics {
  readonly enabled: boolean;
  readonly table: MetricsTable | undefined;
  readonly #histograms = new Map<string, hdr.Histogram>();

  constructor(table: MetricsTable | undefined) {
    this.table = table;
    this.enabled = table !== undefined;
  }

  /** The counter family `name`. Every thread that names it shares its series. */
  counter(name: string, labelNames: readonly string[] = []): SharedCounter {
    checkName(name, labelNames);
    const table = this.table;
    if (table === undefined) return { name, ...NOOP, labels: () => NOOP };
    const child = (values: readonly string[]): CounterChild => {
      const at = table.address(KIND_COUNTER, seriesKey(name, labelNames, values));
      const bad = (n: number): never => {
        throw new RangeError(`counter ${name}: inc() takes a non-negative integer, got ${n} (use a histogram for durations)`);
      };
      const cell = table.counterCell(at);
      if (cell >= 0) {
        // This thread's own cell (table.ts: stripes): a plain add, no lock, no call, no allocation.
        const f64 = table.f64;
        return {
          inc(n = 1): void {
            if (n === 1) f64[cell] = f64[cell]! + 1;
            else if (Number.isSafeInteger(n) && n >= 0) f64[cell] = f64[cell]! + n;
            else bad(n);
          },
        };
      }
      const add = table.incrementer;
      return {
        // A thread without a stripe: one WASM call doing one atomic add on the shared word.
        inc(n = 1): void {
          if (n === 1) add(at, 1);
          else if (Number.isSafeInteger(n) && n >= 0) table.add(at, n);
          else bad(n);
        },
      };
    };
    const bare = labelNames.length === 0 ? child([]) : undefined;
    return {
      name,
      inc(n = 1): void {
        if (bare === undefined) throw new TypeError(`counter ${name} has labels (${labelNames.join(', ')}): use .labels(…).inc()`);
        bare.inc(n);
      },
      labels: (...values: string[]) => child(values),
    };
  }

  /** The gauge family `name` (integer values). */
  gauge(name: string, labelNames: readonly string[] = []): SharedGauge {
    checkName(name, labelNames);
    const table = this.table;
    if (table === undefined) return { name, ...NOOP, labels: () => NOOP };
    const child = (values: readonly string[]): GaugeChild => {
      const at = table.address(KIND_GAUGE, seriesKey(name, labelNames, values));
      const int = (v: number, op: string): number => {
        if (!Number.isSafeInteger(v)) throw new RangeError(`gauge ${name}: ${op}() takes an integer, got ${v}`);
        return v;
      };
      return {
        inc: (n = 1) => table.add(at, int(n, 'inc')),
        dec: (n = 1) => table.add(at, -int(n, 'dec')),
        set: (v: number) => table.set(at, int(v, 'set')),
      };
    };
    const bare = labelNames.length === 0 ? child([]) : undefined;
    const need = (): GaugeChild => {
      if (bare === undefined) throw new TypeError(`gauge ${name} has labels (${labelNames.join(', ')}): use .labels(…)`);
      return bare;
    };
    return {
      name,
      inc: (n = 1) => need().inc(n),
      dec: (n = 1) => need().dec(n),
      set: (v: number) => need().set(v),
      labels: (...values: string[]) => child(values),
    };
  }

  /** This thread's latency histogram `name` (created on first use). */
  histogram(name: string): LatencyRecorder {
    checkName(name, []);
    if (!this.enabled) return { name, record: NOOP.record };
    let h = this.#histograms.get(name);
    if (h === undefined) {
      h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 2, autoResize: true, numberOfSignificantValueDigits: 3, useWebAssembly: false });
      this.#histograms.set(name, h);
    }
    const hist = h;
    return {
      name,
      record(ms: number): void {
        if (!(ms >= 0)) return; // NaN or negative: a clock went backwards; not recorded
        hist.recordValue(Math.round(ms * 1000));
      },
    };
  }

  /** This thread's histograms, compressed (for merging in another thread). */
  encodeHistograms(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, h] of this.#histograms) out[name] = hdr.encodeIntoCompressedBase64(h);
    return out;
  }

  /** This thread's histograms themselves. */
  histograms(): ReadonlyMap<string, hdr.Histogram> {
    return this.#histograms;
  }
}

/** `name`, then each label value, separated by NUL. @throws TypeError for a wrong label count. */
export function seriesKey(name: string, labelNames: readonly string[], values: readonly string[]): string {
  if (values.length !== labelNames.length) {
    throw new TypeError(`${name} takes ${labelNames.length} label values (${labelNames.join(', ')}), got ${values.length}`);
  }
  let key = name;
  for (const v of values) {
    const s = String(v);
    if (s.includes(SEP)) throw new TypeError(`${name}: a label value cannot contain NUL`);
    key += SEP + s;
  }
  return key;
}
