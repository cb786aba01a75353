/**
 * The metrics core: a prom-client Registry (the user's, or one of ours) whose collectors read
 * the shared metrics table and merge every thread's HDR histograms at scrape time.
 * `metrics.text()` is the Prometheus exposition. Default process metrics and event-loop delay are
 * collected into a registry we create, minus the three gauges whose names end in `_total`
 * (promtool rejects those: DESIGN pitfall 10).
 */
import * as hdr from 'hdr-histogram-js';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { KIND_COUNTER, type MetricsTable } from './table.js';
import { checkName, SEP, ThreadMetrics, type LatencyRecorder, type SharedCounter, type SharedGauge } from './thread-metrics.js';

const PROMTOOL_REJECTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];
const QUANTILES = [0.5, 0.9, 0.99, 0.999];

/** Fetches the other threads' encoded histograms (the worker pool's broadcast). */
export type HistogramSource = () => Promise<Array<Record<string, string>>>;

interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'summary';
  labelNames: readonly string[];
}

interface PromValue {
  value: number;
  labels?: Record<string, string | number>;
  metricName?: string;
}

export class Metrics {
  /** The prom-client registry the collectors are registered in (absent when metrics are off). */
  readonly registry: Registry | undefined;
  /** The main thread's recorder (counters/gauges shared with workers). */
  readonly thread: ThreadMetrics;
  readonly #table: MetricsTable | undefined;
  readonly #families = new Map<string, Family>();
  readonly #otherThreads: HistogramSource;

  constructor(table: MetricsTable | undefined, registry: Registry | undefined, otherThreads: HistogramSource, defaultMetrics: boolean) {
    this.#table = table;
    this.thread = new ThreadMetrics(table);
    this.registry = table === undefined ? undefined : registry ?? new Registry();
    this.#otherThreads = otherThreads;
    if (this.registry !== undefined && registry === undefined && defaultMetrics) {
      collectDefaultMetrics({ register: this.registry });
      for (const name of PROMTOOL_REJECTS) this.registry.removeSingleMetric(name);
    }
  }

  /** True unless created with `metrics: false`. */
  get enabled(): boolean {
    return this.registry !== undefined;
  }

  /** Declares (or returns) the shared counter family `name`; workers add to it by name. */
  counter(name: string, help: string, labelNames: readonly string[] = []): SharedCounter {
    this.#declare({ name, help, type: 'counter', labelNames });
    return this.thread.counter(name, labelNames);
  }

  /** Declares (or returns) the shared gauge family `name`. */
  gauge(name: string, help: string, labelNames: readonly string[] = []): SharedGauge {
    this.#declare({ name, help, type: 'gauge', labelNames });
    return this.thread.gauge(name, labelNames);
  }

  /**
   * Declares the latency histogram `name` (exported as a summary in seconds: quantiles from
   * every thread's HDR histogram merged, `_sum`, `_count`) and returns this thread's recorder.
   */
  histogram(name: string, help: string): LatencyRecorder {
    this.#declare({ name, help, type: 'summary', labelNames: [] });
    return this.thread.histogram(name);
  }

  /**
   * A gauge computed at scrape time by `read()` (e.g. queue length). Labels: return several
   * values with `labels`.
   */
  collect(name: string, help: string, type: 'gauge' | 'counter', read: () => number | PromValue[]): void {
    checkName(name, []);
    if (this.registry === undefined) return;
    this.registry.registerMetric({
      name, help, type,
      get: async () => {
        const v = read();
        return { name, help, type, values: typeof v === 'number' ? [{ value: v, labels: {} }] : v, aggregator: 'sum' };
      },
    } as never);
  }

  /** The Prometheus text exposition (empty string when metrics are off). */
  async text(): Promise<string> {
    return this.registry === undefined ? '' : this.registry.metrics();
  }

  #declare(f: Family): void {
    checkName(f.name, f.labelNames);
    if (typeof f.help !== 'string' || f.help.length === 0) throw new TypeError(`metric ${f.name} needs a help text`);
    const known = this.#families.get(f.name);
    if (known !== undefined) {
      if (known.type !== f.type || known.labelNames.join() !== f.labelNames.join()) {
        throw new TypeError(`metric ${f.name} is already declared as a ${known.type} with labels [${known.labelNames.join(', ')}]`);
      }
      return;
    }
    this.#families.set(f.name, f);
    if (this.registry === undefined) return;
    this.registry.registerMetric({
      name: f.name, help: f.help, type: f.type,
      get: async () => ({ name: f.name, help: f.help, type: f.type, values: await this.#values(f), aggregator: 'sum' }),
    } as never);
  }

  async #values(f: Family): Promise<PromValue[]> {
    if (f.type === 'summary') return this.#summary(f.name);
    const out: PromValue[] = [];
    for (const s of this.#table!.snapshot()) {
      const parts = s.key.split(SEP);
      if (parts[0] !== f.name || parts.length !== f.labelNames.length + 1) continue;
      const labels: Record<string, string> = {};
      f.labelNames.forEach((l, i) => (labels[l] = parts[i + 1]!));
      out.push({ value: s.kind === KIND_COUNTER ? Math.max(0, s.value) : s.value, labels });
    }
    if (out.length === 0 && f.labelNames.length === 0) out.push({ value: 0, labels: {} });
    return out;
  }

  async #summary(name: string): Promise<PromValue[]> {
    const merged = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 2, autoResize: true, numberOfSignificantValueDigits: 3, useWebAssembly: false });
    const own = this.thread.histograms().get(name);
    if (own !== undefined) merged.add(own);
    for (const encoded of await this.#otherThreads()) {
      const e = encoded[name];
      if (e !== undefined) merged.add(hdr.decodeFromCompressedBase64(e, 32, false));
    }
    const count = merged.totalCount;
    const values: PromValue[] = QUANTILES.map((q) => ({
      value: count === 0 ? 0 : merged.getValueAtPercentile(q * 100) / 1e6,
      labels: { quantile: q },
    }));
    values.push({ metricName: `${name}_sum`, value: count === 0 ? 0 : (merged.mean * count) / 1e6 });
    values.push({ metricName: `${name}_count`, value: count });
    return values;
  }
}
