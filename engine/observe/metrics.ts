/**
 * The metrics core: a prom-client Registry (the user's, or one of ours) whose collectors read
 * the shared metrics table and merge every thread's HDR histograms at scrape time.
 * `metrics.text()` is the Prometheus exposition. Default process metrics and event-loop delay are
 * collected into a registry we create, minus the three gauges whose names end in `_total`
 * (promtool rejects those: DESIGN pitfall 10).
 */
import * as hdr from 'hdr-histogram-js';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { isHistogramAnswer } from './histogram-task.js';
import { KIND_COUNTER, type MetricsTable } from './table.js';
import { checkName, DROPPED_SERIES, SEP, ThreadMetrics, type LatencyRecorder, type SharedCounter, type SharedGauge } from './thread-metrics.js';

const PROMTOOL_REJECTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];
const QUANTILES = [0.5, 0.9, 0.99, 0.999];

/**
 * How long a scrape waits for the workers' histograms (ms). A worker busy in a synchronous task
 * answers only when it ends (review36: a scrape took as long as the longest task, and never
 * returned with a stuck worker); past this, it counts with the histograms it sent last.
 */
export const SCRAPE_WAIT_MS = 250;

/**
 * Asks the workers for their histograms (the worker pool's broadcastEach of the histogram task),
 * except those in slots `skip` excludes: one answer promise per slot asked (a HistogramAnswer;
 * rejected if that worker dies).
 */
export type HistogramSource = (skip: (slot: number) => boolean) => Array<{ slot: number; answer: Promise<unknown> }>;

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

/** A series of the table, its key split into the name and label values. */
interface Row {
  parts: string[];
  kind: number;
  value: number;
}

/** The last histograms a pool slot's worker sent. */
interface SlotHistograms {
  thread: number;
  histograms: Map<string, hdr.Histogram>;
}

function emptyHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 2, autoResize: true, numberOfSignificantValueDigits: 3, useWebAssembly: false });
}

export class Metrics {
  /** The prom-client registry the collectors are registered in (absent when metrics are off). */
  readonly registry: Registry | undefined;
  /** The main thread's recorder (counters/gauges shared with workers). */
  readonly thread: ThreadMetrics;
  readonly #table: MetricsTable | undefined;
  readonly #families = new Map<string, Family>();
  readonly #otherThreads: HistogramSource;
  readonly #waitMs: number;
  /** The registry is the application's (options.metrics): close() takes our metrics out of it. */
  readonly #foreign: boolean;
  /** What we registered, by name (close() removes a name only while it still holds our object). */
  readonly #registered = new Map<string, object>();
  #closed = false;
  /** Each pool slot's last answer; a slot whose worker died keeps it until a new worker answers there. */
  readonly #slots = new Map<number, SlotHistograms>();
  /** Histograms of workers that are gone, folded together: summaries never go backwards. */
  readonly #retired = new Map<string, hdr.Histogram>();
  /** Pool slots with a histogram request unanswered (a busy or stuck worker gets no second one), and its answer's handling. */
  readonly #asked = new Map<number, Promise<void>>();
  /** This scrape's wait for it (shared by every summary family of the scrape). */
  #wait: Promise<void> | undefined;
  /** This scrape's table snapshot grouped by family name (dropped at the next microtask). */
  #rows: Map<string, Row[]> | undefined;

  /**
   * `registry`: the application's, or undefined for one of ours (with the default process
   * metrics when `defaultMetrics`); `otherThreads` asks the workers for their histograms;
   * `scrapeWaitMs`: how long a scrape waits for them.
   */
  constructor(table: MetricsTable | undefined, registry: Registry | undefined, otherThreads: HistogramSource, defaultMetrics: boolean, scrapeWaitMs = SCRAPE_WAIT_MS) {
    this.#table = table;
    this.thread = new ThreadMetrics(table);
    this.registry = table === undefined ? undefined : registry ?? new Registry();
    this.#foreign = table !== undefined && registry !== undefined;
    this.#otherThreads = otherThreads;
    this.#waitMs = scrapeWaitMs;
    if (this.registry !== undefined && registry === undefined && defaultMetrics) {
      collectDefaultMetrics({ register: this.registry });
      for (const name of PROMTOOL_REJECTS) this.registry.removeSingleMetric(name);
    }
    if (this.registry !== undefined) {
      this.counter(DROPPED_SERIES, 'Metric series not recorded because the shared metrics table was full (see the metricsCapacity option) or their key longer than 126 bytes; counted per lookup (labels() call).');
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
   * A worker busy past the scrape's short wait counts with the histograms it sent last; a worker
   * that died counts with them for good (what it recorded after its last answer is lost).
   */
  histogram(name: string, help: string): LatencyRecorder {
    this.#declare({ name, help, type: 'summary', labelNames: [] });
    return this.thread.histogram(name);
  }

  /**
   * A gauge computed at scrape time by `read()` (e.g. queue length). Labels: return several
   * values with `labels`.
   * @throws TypeError when the registry already holds a metric `name`.
   */
  collect(name: string, help: string, type: 'gauge' | 'counter', read: () => number | PromValue[]): void {
    checkName(name, []);
    if (this.registry === undefined) return;
    this.#register({
      name, help, type,
      get: async () => {
        const v = read();
        return { name: this.#exposedName(name, type), help, type, values: typeof v === 'number' ? [{ value: v, labels: {} }] : v, aggregator: 'sum' };
      },
    });
  }

  /** The Prometheus text exposition (empty string when metrics are off). */
  async text(): Promise<string> {
    return this.registry === undefined ? '' : this.registry.metrics();
  }

  /**
   * Takes every metric this engine registered out of the application's registry (`metrics:
   * <Registry>`), so another engine can register on it; metrics declared afterwards are not
   * registered there. With a registry of our own, nothing changes: `text()` keeps answering
   * with the main thread's series and the workers' last histograms. Idempotent.
   */
  close(): void {
    this.#closed = true;
    if (!this.#foreign) return;
    const registry = this.registry!;
    for (const [name, metric] of this.#registered) {
      if (registry.getSingleMetric(name) === (metric as never)) registry.removeSingleMetric(name);
    }
    this.#registered.clear();
  }

  /**
   * The family name a scrape prints: an OpenMetrics registry appends `_total` to each counter
   * sample itself (and names the family without it), so there a counter's name loses its `_total`
   * (review55: `x_total_total`). Read from the registry's content type at each scrape, not from
   * the object prom-client renames in OpenMetrics mode and never renames back (review56: a
   * registry switched back to the Prometheus format then printed counters without `_total`).
   */
  #exposedName(name: string, type: string): string {
    return type === 'counter' && (this.registry?.contentType as string | undefined) === Registry.OPENMETRICS_CONTENT_TYPE ? name.replace(/_total$/, '') : name;
  }

  #register(metric: { name: string; [more: string]: unknown }): void {
    const registry = this.registry!;
    if (this.#closed && this.#foreign) return;
    if (registry.getSingleMetric(metric.name) !== undefined) {
      throw new TypeError(
        `metric ${metric.name} is already registered in the prom-client registry` +
          (this.#foreign ? ' given as options.metrics (another engine on it that is not closed, or a metric of the application by that name)' : ''),
      );
    }
    registry.registerMetric(metric as never);
    this.#registered.set(metric.name, metric);
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
    if (this.registry !== undefined) {
      this.#register({
        name: f.name, help: f.help, type: f.type,
        get: async () => ({ name: this.#exposedName(f.name, f.type), help: f.help, type: f.type, values: await this.#values(f), aggregator: 'sum' }),
      });
    }
    this.#families.set(f.name, f);
  }

  async #values(f: Family): Promise<PromValue[]> {
    if (f.type === 'summary') return this.#summary(f.name);
    const out: PromValue[] = [];
    for (const r of this.#rowsOf(f.name)) {
      if (r.parts.length !== f.labelNames.length + 1) continue;
      const labels: Record<string, string> = {};
      f.labelNames.forEach((l, i) => (labels[l] = r.parts[i + 1]!));
      out.push({ value: r.kind === KIND_COUNTER ? Math.max(0, r.value) : r.value, labels });
    }
    if (out.length === 0 && f.labelNames.length === 0) out.push({ value: 0, labels: {} });
    return out;
  }

  /**
   * The table's series of family `name`. One snapshot serves a whole scrape: prom-client calls
   * every collector's get() in one synchronous loop, so the snapshot is kept until the next
   * microtask (review36: each family re-read and re-split the whole table, 100+ ms a scrape at
   * 80 families × 100 series).
   */
  #rowsOf(name: string): Row[] {
    if (this.#rows === undefined) {
      const rows = new Map<string, Row[]>();
      for (const s of this.#table!.snapshot()) {
        const parts = s.key.split(SEP);
        const list = rows.get(parts[0]!);
        const row = { parts, kind: s.kind, value: s.value };
        if (list === undefined) rows.set(parts[0]!, [row]);
        else list.push(row);
      }
      this.#rows = rows;
      queueMicrotask(() => (this.#rows = undefined));
    }
    return this.#rows.get(name) ?? [];
  }

  /**
   * Waits (at most the scrape wait) for the workers' histograms. Each worker is asked on its own:
   * one whose request from an earlier scrape is still unanswered (busy in a long synchronous task,
   * or stuck) is not asked again and counts with what it sent last, while every other worker's
   * answer is taken as it comes.
   */
  #gather(): Promise<void> {
    if (this.#wait !== undefined) return this.#wait;
    let asks: Array<{ slot: number; answer: Promise<unknown> }>;
    try {
      asks = this.#otherThreads((slot) => this.#asked.has(slot));
    } catch {
      asks = []; // closed: keep the last answers
    }
    for (const { slot, answer } of asks) {
      const kept = answer.then((a) => this.#keep([a]), () => undefined).finally(() => this.#asked.delete(slot));
      this.#asked.set(slot, kept);
    }
    // Every answer still out is waited for, an earlier scrape's too (a worker that was busy may
    // answer now), at most the scrape wait.
    const kept = [...this.#asked.values()];
    if (kept.length === 0) return Promise.resolve();
    let timer: ReturnType<typeof setTimeout> | undefined;
    // Not unref'd: a scrape in progress is work to finish, and the timer is cleared when the
    // answers come first (the common case).
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#waitMs)));
    const wait = Promise.race([Promise.all(kept), deadline]).then(() => {
      clearTimeout(timer);
      if (this.#wait === wait) this.#wait = undefined;
    });
    this.#wait = wait;
    return wait;
  }

  /** Keeps each slot's answer; a slot answering from a new thread retires the old one's histograms. */
  #keep(answers: unknown[]): void {
    for (const a of answers) {
      if (!isHistogramAnswer(a)) continue; // a worker that died meanwhile: its last answer stays
      const known = this.#slots.get(a.slot);
      if (known !== undefined && known.thread !== a.thread) {
        // A pool slot passes to a new worker only once the old one is dead (pool.ts).
        for (const [name, h] of known.histograms) {
          let r = this.#retired.get(name);
          if (r === undefined) this.#retired.set(name, (r = emptyHistogram()));
          r.add(h);
        }
      }
      const histograms = new Map<string, hdr.Histogram>();
      for (const [name, e] of Object.entries(a.histograms)) {
        if (typeof e === 'string') histograms.set(name, hdr.decodeFromCompressedBase64(e, 32, false));
      }
      this.#slots.set(a.slot, { thread: a.thread, histograms });
    }
  }

  async #summary(name: string): Promise<PromValue[]> {
    await this.#gather();
    const merged = emptyHistogram();
    const own = this.thread.histograms().get(name);
    if (own !== undefined) merged.add(own);
    const retired = this.#retired.get(name);
    if (retired !== undefined) merged.add(retired);
    for (const s of this.#slots.values()) {
      const h = s.histograms.get(name);
      if (h !== undefined) merged.add(h);
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
