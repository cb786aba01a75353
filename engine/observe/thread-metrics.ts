/**
 * What one thread can record: shared counters and gauges (in the metrics table, visible to every
 * thread: a counter adds to this thread's own cell, a gauge to one atomic word per series; see
 * table.ts) and HDR latency histograms (one per thread and name,
 * merged by the main thread at scrape). Workers get one as `ctx.runtime.metrics`; the main
 * thread's lives inside `Metrics`. With metrics off, every method returns a no-op.
 */
import * as hdr from 'hdr-histogram-js';
import { KEY_MAX, KEY_TOO_LONG, KIND_COUNTER, KIND_GAUGE, printable, type MetricsTable } from './table.js';
import { toWellFormed } from '../text.js';

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

const NOOP = { record(): void {} };

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

/**
 * The counter of series refused because the table was full or their key too long. Every thread
 * creates it when it attaches (the main thread first, before any worker or user series), so it
 * is always in the table.
 */
export const DROPPED_SERIES = 'hotpath_metrics_series_dropped_total';

/**
 * Tables this thread has warned about: one warning per engine and thread (a label with unbounded
 * values would warn on every call; the main thread has two recorders over one table).
 */
const warned = new WeakSet<MetricsTable>();

export class ThreadMetrics {
  readonly enabled: boolean;
  readonly table: MetricsTable | undefined;
  readonly #histograms = new Map<string, hdr.Histogram>();
  /** Address of the DROPPED_SERIES counter (stripe 0 word), -1 without a table. */
  readonly #dropped: number;

  constructor(table: MetricsTable | undefined) {
    this.table = table;
    this.enabled = table !== undefined;
    let dropped = -1;
    if (table !== undefined) {
      // Created before any other series of this thread; the main thread attaches first, so it
      // fits unless something else filled the table first (then drops go uncounted).
      dropped = table.find(KIND_COUNTER, DROPPED_SERIES);
      if (dropped < 0) dropped = -1;
    }
    this.#dropped = dropped;
  }

  /**
   * The address of series `key`, or -1 when it does not fit (table full, key too long): the
   * series is dropped, counted in DROPPED_SERIES, and the first drop of this thread warns. A
   * label with unbounded values must not make the instrumented call itself throw (review36: one
   * such label broke engine.limiter() and request handlers once the table was full).
   */
  #address(kind: number, name: string, key: string): number {
    const table = this.table!;
    const at = table.find(kind, key);
    if (at >= 0) return at;
    if (this.#dropped >= 0) table.add(this.#dropped, 1); // the shared word: rare, so an atomic add
    if (!warned.has(table)) {
      warned.add(table);
      const why = at === KEY_TOO_LONG
        ? `its series key is longer than ${KEY_MAX} bytes (shorten the label values)`
        : `the shared metrics table is full (${table.capacity} series; raise the metricsCapacity option, or drop the label with unbounded values)`;
      process.emitWarning(`metric series ${printable(key)} of ${name} dropped: ${why}. Further drops are counted in ${DROPPED_SERIES} without a warning.`, {
        code: 'HOTPATH_METRICS_SERIES_DROPPED',
      });
    }
    return -1;
  }

  /** The counter family `name`. Every thread that names it shares its series. */
  counter(name: string, labelNames: readonly string[] = []): SharedCounter {
    checkName(name, labelNames);
    const table = this.table;
    const child = (values: readonly string[]): CounterChild => {
      // With metrics off (no table) as for a dropped series: the adds go nowhere, but wrong label
      // counts and bad arguments throw as they would with metrics on (review36: a program that
      // worked with metrics off could throw once they were turned on).
      const key = seriesKey(name, labelNames, values);
      const at = table === undefined ? -1 : this.#address(KIND_COUNTER, name, key);
      const bad = (n: number): never => {
        throw new RangeError(`counter ${name}: inc() takes a non-negative integer, got ${n} (use a histogram for durations)`);
      };
      if (at < 0 || table === undefined) {
        // Dropped (table full or key too long), or metrics off.
        return {
          inc(n = 1): void {
            if (!Number.isSafeInteger(n) || n < 0) bad(n);
          },
        };
      }
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
    const child = (values: readonly string[]): GaugeChild => {
      const key = seriesKey(name, labelNames, values);
      const at = table === undefined ? -1 : this.#address(KIND_GAUGE, name, key);
      const int = (v: number, op: string): number => {
        if (!Number.isSafeInteger(v)) throw new RangeError(`gauge ${name}: ${op}() takes an integer, got ${v}`);
        return v;
      };
      if (at < 0 || table === undefined) {
        // Dropped, or metrics off: the updates go nowhere, bad arguments still throw.
        return { inc: (n = 1) => void int(n, 'inc'), dec: (n = 1) => void int(n, 'dec'), set: (v: number) => void int(v, 'set') };
      }
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
    // As the table stores it: UTF-8, where a lone surrogate is U+FFFD. Two spellings of one
    // stored key made two series that print alike — the thread that made the series cached the
    // original, another decoded the stored bytes, missed, and added a second (review55).
    const s = toWellFormed(String(v));
    if (s.includes(SEP)) throw new TypeError(`${name}: a label value cannot contain NUL`);
    key += SEP + s;
  }
  return key;
}
