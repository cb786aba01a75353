/**
 * `loadtest()`: an HTTP/1.1 load generator with honest tail latencies.
 *
 * The load comes from worker threads (engine/loadtest/worker.ts), each with its share of the
 * connections; the main thread only starts them, merges their per-interval HDR histograms and
 * counters, and builds the result. Two models:
 *  - open (`rate`): a fixed schedule of intended start times (k6's arrival-rate executors); an
 *    arrival that finds no free slot is dropped and counted, never queued; latency is measured
 *    from the intended start ("corrected") and from the actual send ("raw");
 *  - closed (`connections`, as autocannon): every slot sends back to back. A stalled server
 *    stalls the generator too, so the raw latencies miss everything that would have been sent
 *    during the stall (coordinated omission). The corrected figures add, for every latency L,
 *    the samples a slot would have recorded had it kept its pace: L − I, L − 2I, … > I, with I =
 *    the mean service time (the mean of the raw latencies, as wrk does; see expectedInterval for
 *    why not the median), as HdrHistogram's copyCorrectedForCoordinatedOmission does.
 *    autocannon reports raw latencies only.
 */
import { Worker } from 'node:worker_threads';
import type * as hdr from 'hdr-histogram-js';
import { WorkerExitedError } from '../errors.js';
import { distUrl } from '../runtime/paths.js';
import { resolveOptions, type LoadtestOptions, type ResolvedOptions } from './options.js';
import { expectedInterval, fromPairs, latencyHistogram, recordCorrected } from './histogram.js';
import { scheduledArrivals } from './schedule.js';
import type { MainMessage, WorkerInit, WorkerMessage, WorkerSample } from './worker.js';

/** Latency percentiles in ms. */
export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  min: number;
  mean: number;
  /** how many samples (corrected: including the synthetic ones) */
  count: number;
}

/** One interval of the time series. */
export interface TimelineRow {
  /** start and end of the interval, ms from the start of the run */
  fromMs: number;
  toMs: number;
  /** responses completed in the interval / its width */
  rps: number;
  sent: number;
  /** requests written again on a new connection in the interval (see requests.resent) */
  resent: number;
  completed: number;
  dropped: number;
  errors: number;
  corrected: Percentiles;
  raw: Percentiles;
}

/** One point of the latency distribution (percentile spectrum). */
export interface SpectrumPoint {
  percentile: number;
  correctedMs: number;
  rawMs: number;
}

/** The result of {@link loadtest}; every latency is in ms, every duration in ms. */
export interface LoadtestResult {
  url: string;
  model: 'open' | 'closed';
  settings: {
    connections: number;
    pipelining: number;
    workers: number;
    /** open model: the rate at time 0 (requests/s); null in the closed model */
    rate: number | null;
    stages: Array<{ durationMs: number; target: number }>;
    timeoutMs: number;
    intervalMs: number;
    scenarios: number;
  };
  duration: {
    /** length of the schedule */
    scheduledMs: number;
    /** from the start until the last worker ended (includes the graceful stop) */
    actualMs: number;
  };
  requests: {
    /** open model: arrivals in the schedule (sent + dropped for a full run); closed: = total */
    scheduled: number;
    /** requests sent */
    total: number;
    /**
     * requests undici wrote a second time (or more), on a new connection, because the one they
     * were pipelined on closed before their response (`pipelining` > 1 only; POSTs too). The
     * server may have received them more than once: it saw up to `total + resent`.
     */
    resent: number;
    /** responses received (any status) */
    completed: number;
    /** open model: arrivals that found no free connection slot at their intended start */
    dropped: number;
    /** requests that failed (connection errors, timeouts); by code in `errors` */
    errors: number;
    /** still in flight when the graceful stop ended (in the latencies at their time so far) */
    interrupted: number;
    /**
     * requests whose time is in the latency histograms: every completed one, and the failed ones
     * that timed out or were interrupted (at their time so far: a lower bound). Other failures
     * (refused, reset) have no meaningful latency and are left out; `measured / total` is the
     * share of the requests sent that the percentiles describe.
     */
    measured: number;
  };
  throughput: {
    /** completed responses per second of the schedule */
    rps: number;
    /** response body bytes per second */
    bytesPerSec: number;
  };
  latency: {
    /** open model: from the intended start; closed: coordinated-omission corrected (see `correction`) */
    corrected: Percentiles;
    /** from the moment the request was handed to its connection */
    raw: Percentiles;
    correction: {
      method: 'intended-start' | 'expected-interval' | 'none';
      /** closed model: the interval I (ms) used, the mean raw latency */
      expectedIntervalMs: number | null;
    };
  };
  /** responses per HTTP status code */
  statusCodes: Record<string, number>;
  /** failed requests per error code (undici's UND_ERR_*, or the socket's ECONNREFUSED, …) */
  errors: Record<string, number>;
  bytes: {
    /** response body bytes received */
    received: number;
    /** request body bytes sent */
    sent: number;
  };
  /**
   * CPU of this process during the run (from the common start to the last worker's end; the
   * workers' start-up is not counted): process.cpuUsage() counts every thread of the process,
   * the main thread and the workers — and a target server, if it runs in the same process.
   */
  cpu: {
    userMs: number;
    systemMs: number;
    /** (user + system) per 10 000 completed responses */
    per10kRequestsMs: number;
  };
  generator: {
    /**
     * open model: how late the sends were against their intended starts (ms; timer resolution and
     * a busy event loop). The corrected latencies include it; null in the closed model.
     */
    scheduleLag: { p50: number; p99: number; max: number } | null;
    /** the most resident memory seen during the run (sampled per interval) */
    maxRssBytes: number;
    node: string;
  };
  timeline: TimelineRow[];
  spectrum: SpectrumPoint[];
}

/** Percentiles of the spectrum (the latency distribution plot). */
const SPECTRUM = [0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 97, 98, 99, 99.5, 99.9, 99.95, 99.99, 99.999, 100];

const ms = (us: number): number => Math.round(us) / 1000;

let histogramCodeWarm = false;

/**
 * Runs this thread's per-interval histogram work once on made-up figures before the clock starts:
 * its first calls compile (15–18 ms for the coordinated-omission correction on this VM), and during
 * a run that time is taken from the cores the load and the server share.
 */
function warmHistogramCode(): void {
  if (histogramCodeWarm) return;
  histogramCodeWarm = true;
  const values = new Float64Array(4000);
  for (let i = 0; i < values.length; i += 2) {
    values[i] = 1000 + ((i * 7919) % 20_000);
    values[i + 1] = 1 + (i % 3);
  }
  for (let k = 0; k < 8; k++) {
    const raw = fromPairs(values);
    const copy = latencyHistogram();
    copy.add(raw);
    for (let i = 0; i < values.length; i += 2) recordCorrected(copy, values[i]!, values[i + 1]!, 5000 + k);
    percentiles(copy);
    percentiles(raw);
  }
}

function percentiles(h: hdr.Histogram): Percentiles {
  if (h.totalCount === 0) return { p50: 0, p90: 0, p99: 0, p999: 0, max: 0, min: 0, mean: 0, count: 0 };
  return {
    p50: ms(h.getValueAtPercentile(50)), p90: ms(h.getValueAtPercentile(90)), p99: ms(h.getValueAtPercentile(99)),
    p999: ms(h.getValueAtPercentile(99.9)), max: ms(h.maxValue), min: ms(h.minNonZeroValue === Number.MAX_SAFE_INTEGER ? 0 : h.minNonZeroValue),
    mean: Math.round(h.mean) / 1000, count: h.totalCount,
  };
}

function add(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

interface Row {
  fromMs: number;
  toMs: number;
  got: number;
  raw: hdr.Histogram;
  /** Closed model: the workers' raw (value, count) pairs of this row, corrected when it closes. */
  pairs: Float64Array[];
  corrected: hdr.Histogram | null;
  sent: number;
  resent: number;
  completed: number;
  dropped: number;
  errors: number;
}

/**
 * Runs a load test and resolves with its {@link LoadtestResult}.
 * Throws (synchronously, as a rejected call would hide the caller's mistake) TypeError /
 * RangeError for bad options, naming the option; rejects with WorkerExitedError when a worker
 * thread fails (for example when the package is not built: workers run dist/).
 */
export function loadtest(options: LoadtestOptions): Promise<LoadtestResult> {
  const o = resolveOptions(options);
  return run(o, options);
}

async function run(o: ResolvedOptions, options: LoadtestOptions): Promise<LoadtestResult> {
  const workers: Worker[] = [];
  const file = distUrl('engine/loadtest/worker.js');
  const totalRaw = latencyHistogram();
  const totalCorrected = latencyHistogram();
  const totals = { sent: 0, resent: 0, completed: 0, dropped: 0, interrupted: 0, measuredFailures: 0, bytesIn: 0, bytesOut: 0, errors: 0 };
  const statusCodes: Record<string, number> = {};
  const errors: Record<string, number> = {};
  const rows = new Map<number, Row>();
  const timeline: TimelineRow[] = [];
  const lag = latencyHistogram();
  let maxRss = process.memoryUsage.rss();
  let lastTo = 0;
  let doneCount = 0;

  // Closed model: each interval's corrected figures use I = the mean raw latency up to its end.
  // Built from the workers' (value, count) pairs: the same histogram as
  // row.raw.copyCorrectedForCoordinatedOmission(I), without copying and walking every bucket of the
  // row (0.3–0.8 ms per interval on this thread, which shares the cores with the load; ~20 µs so).
  const correctRow = (row: Row): hdr.Histogram => {
    if (!o.correct || totalRaw.totalCount === 0) return row.raw;
    const interval = expectedInterval(totalRaw);
    const h = latencyHistogram();
    for (const p of row.pairs) {
      for (let i = 0; i + 1 < p.length; i += 2) recordCorrected(h, p[i]!, p[i + 1]!, interval);
    }
    return h;
  };
  const rowFigures = (row: Row): TimelineRow => {
    const corrected = row.corrected ?? correctRow(row);
    const width = Math.max(1, row.toMs - row.fromMs);
    return {
      fromMs: Math.round(row.fromMs), toMs: Math.round(row.toMs), rps: Math.round((row.completed * 1000 * 10) / width) / 10,
      sent: row.sent, resent: row.resent, completed: row.completed, dropped: row.dropped, errors: row.errors,
      corrected: percentiles(corrected), raw: percentiles(row.raw),
    };
  };
  /** The two rows closed last and their figures' places in `timeline` (a short last row is folded into the one before). */
  let closedBefore: { row: Row; at: number } | null = null;
  let closedLast: { row: Row; at: number } | null = null;
  const closeRow = (index: number, row: Row): void => {
    const r = rowFigures(row);
    closedBefore = closedLast;
    closedLast = { row, at: timeline.length };
    timeline.push(r);
    rows.delete(index);
    maxRss = Math.max(maxRss, process.memoryUsage.rss());
    options.onProgress?.({
      elapsedMs: r.toMs, totalMs: o.totalMs, completed: totals.completed, rps: r.rps,
      p99Ms: r.corrected.p99, errors: totals.errors, dropped: totals.dropped,
    });
  };
  const absorb = (s: WorkerSample): void => {
    const raw = fromPairs(s.raw);
    totalRaw.add(raw);
    const corrected = s.corrected === null ? null : fromPairs(s.corrected);
    if (corrected !== null) totalCorrected.add(corrected);
    const errs = Object.values(s.errors).reduce((a, b) => a + b, 0);
    totals.sent += s.sent;
    totals.resent += s.resent;
    totals.completed += s.completed;
    totals.dropped += s.dropped;
    totals.interrupted += s.interrupted;
    totals.measuredFailures += s.measuredFailures;
    totals.bytesIn += s.bytesIn;
    totals.bytesOut += s.bytesOut;
    totals.errors += errs;
    add(statusCodes, s.status);
    add(errors, s.errors);
    if (s.lag !== null) lag.add(fromPairs(s.lag));
    lastTo = Math.max(lastTo, s.toMs);
    // A worker's final sample covers its last partial interval (and the graceful stop); the
    // final samples of all workers make one last row.
    const fromMs = s.index * o.intervalMs;
    // Every sample, a worker's final one too (its last partial interval and the graceful stop),
    // belongs to the row of its interval: a worker sends at most one per interval, so a row closes
    // once every worker has sent one. A worker that ended earlier sends none for the later rows:
    // they close at the end. (Final samples used to make a row of their own, which overlapped
    // the rows of workers whose tick came first and left them with one worker's share; review31.)
    let row = rows.get(s.index);
    if (row === null || row === undefined) {
      row = { fromMs, toMs: s.toMs, got: 0, raw: latencyHistogram(), pairs: [], corrected: o.model === 'open' ? latencyHistogram() : null, sent: 0, resent: 0, completed: 0, dropped: 0, errors: 0 };
      rows.set(s.index, row);
    }
    row.fromMs = Math.min(row.fromMs, fromMs);
    row.toMs = Math.max(row.toMs, s.toMs);
    row.got++;
    row.raw.add(raw);
    if (corrected !== null) row.corrected!.add(corrected);
    else row.pairs.push(s.raw); // closed model: corrected when the row closes
    row.sent += s.sent;
    row.resent += s.resent;
    row.completed += s.completed;
    row.dropped += s.dropped;
    row.errors += errs;
    if (row.got === workers.length) closeRow(s.index, row);
  };

  // CPU is counted from the common start (worker start-up and warm-up are not the run's cost).
  let cpuStart = process.cpuUsage();
  let cpu: NodeJS.CpuUsage = { user: 0, system: 0 };
  let startAt = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      let ready = 0;
      let settled = false;
      const onAbort = (): void => {
        for (const w of workers) w.postMessage({ type: 'stop' } satisfies MainMessage);
      };
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        options.signal?.removeEventListener('abort', onAbort);
        reject(err);
      };
      const perWorker = Math.floor(o.connections / o.workers);
      const extra = o.connections % o.workers;
      for (let i = 0; i < o.workers; i++) {
        const init: WorkerInit = {
          origin: o.url.origin, index: i, workers: o.workers, model: o.model, from: o.from, stages: o.stages, totalMs: o.totalMs,
          // Closed model: connection j belongs to worker j % W (so a ramp spreads over the workers).
          connections: perWorker + (i < extra ? 1 : 0), totalConnections: o.connections, pipelining: o.pipelining, scenarios: o.scenarios,
          timeoutMs: o.timeoutMs, gracefulStopMs: o.gracefulStopMs, intervalMs: o.intervalMs,
        };
        const w = new Worker(file, { workerData: init });
        workers.push(w);
        w.on('error', (err) => fail(new WorkerExitedError(`loadtest worker ${i} failed: ${err.message}`, undefined, err)));
        w.on('exit', (code) => {
          if (doneCount < o.workers) fail(new WorkerExitedError(`loadtest worker ${i} exited (code ${code}) before the run ended`, code));
        });
        w.on('message', (m: WorkerMessage) => {
          if (m.type === 'ready') {
            if (++ready === o.workers) {
              warmHistogramCode();
              // A common start a little ahead, so every worker begins on the same schedule.
              startAt = performance.timeOrigin + performance.now() + 20;
              cpuStart = process.cpuUsage();
              for (const x of workers) x.postMessage({ type: 'start', at: startAt } satisfies MainMessage);
              if (options.signal?.aborted === true) onAbort();
              else options.signal?.addEventListener('abort', onAbort, { once: true });
            }
          } else if (m.type === 'failed') {
            fail(new WorkerExitedError(`loadtest worker ${i} failed: ${m.message}`));
          } else {
            // (absorb calls the caller's onProgress: what it throws fails the run, as a rejection
            // of loadtest() — thrown from this listener it ended the process: review80)
            try {
              absorb(m);
            } catch (err) {
              fail(err instanceof Error ? err : new Error(String(err)));
              return;
            }
            if (m.final && ++doneCount === o.workers) {
              cpu = process.cpuUsage(cpuStart); // before the threads are torn down
              settled = true;
              options.signal?.removeEventListener('abort', onAbort);
              resolve();
            }
          }
        });
      }
    });
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  // Rows still open (their interval came after some worker had ended, or the run was aborted), in time order.
  for (const [i, row] of [...rows.entries()].sort((a, b) => a[0] - b[0])) closeRow(i, row);
  const prev = closedBefore as { row: Row; at: number } | null;
  const last = closedLast as { row: Row; at: number } | null;
  if (prev !== null && last !== null && last.at === prev.at + 1 && last.at === timeline.length - 1 && last.row.toMs - last.row.fromMs < o.intervalMs / 2) {
    // A last row of a few ms (the schedule ended just after a tick) would plot a spike or a dip
    // of its own: it is folded into the row before it, which then ends where the run ended.
    const p = prev.row;
    const l = last.row;
    p.toMs = Math.max(p.toMs, l.toMs);
    p.raw.add(l.raw);
    p.pairs.push(...l.pairs);
    if (p.corrected !== null && l.corrected !== null) p.corrected.add(l.corrected);
    p.sent += l.sent;
    p.resent += l.resent;
    p.completed += l.completed;
    p.dropped += l.dropped;
    p.errors += l.errors;
    timeline[prev.at] = rowFigures(p);
    timeline.pop();
  }
  timeline.sort((a, b) => a.fromMs - b.fromMs);

  let corrected: hdr.Histogram;
  let method: LoadtestResult['latency']['correction']['method'];
  let interval: number | null = null;
  if (o.model === 'open') {
    corrected = totalCorrected;
    method = 'intended-start';
  } else if (o.correct && totalRaw.totalCount > 0) {
    interval = expectedInterval(totalRaw);
    corrected = totalRaw.copyCorrectedForCoordinatedOmission(interval);
    method = 'expected-interval';
  } else {
    corrected = totalRaw;
    method = 'none';
  }
  const cpuMs = (cpu.user + cpu.system) / 1000;
  // Rates over the time that actually ran: a run ended early (abort, Ctrl-C) is not divided by
  // its whole schedule.
  const seconds = Math.max(1e-3, Math.min(lastTo, o.totalMs) / 1000);
  return {
    url: o.url.href,
    model: o.model,
    settings: {
      connections: o.connections, pipelining: o.pipelining, workers: o.workers, rate: o.model === 'open' ? o.from : null,
      stages: o.stages.map((s) => ({ ...s })), timeoutMs: o.timeoutMs, intervalMs: o.intervalMs, scenarios: o.scenarios.length,
    },
    duration: { scheduledMs: o.totalMs, actualMs: Math.round(lastTo) },
    requests: {
      scheduled: o.model === 'open' ? scheduledArrivals(o.from, o.stages) : totals.sent,
      total: totals.sent, resent: totals.resent, completed: totals.completed, dropped: totals.dropped, errors: totals.errors, interrupted: totals.interrupted,
      measured: totals.completed + totals.measuredFailures,
    },
    throughput: { rps: Math.round((totals.completed / seconds) * 10) / 10, bytesPerSec: Math.round(totals.bytesIn / seconds) },
    latency: {
      corrected: percentiles(corrected), raw: percentiles(totalRaw),
      correction: { method, expectedIntervalMs: interval === null ? null : interval / 1000 },
    },
    statusCodes, errors,
    bytes: { received: totals.bytesIn, sent: totals.bytesOut },
    cpu: {
      userMs: Math.round(cpu.user / 1000), systemMs: Math.round(cpu.system / 1000),
      per10kRequestsMs: totals.completed === 0 ? 0 : Math.round((cpuMs / totals.completed) * 10_000 * 10) / 10,
    },
    generator: {
      scheduleLag: o.model === 'open' ? { p50: ms(lag.getValueAtPercentile(50)), p99: ms(lag.getValueAtPercentile(99)), max: ms(lag.maxValue) } : null,
      maxRssBytes: maxRss, node: process.version },
    timeline,
    spectrum: SPECTRUM.map((p) => ({
      percentile: p,
      correctedMs: corrected.totalCount === 0 ? 0 : ms(p === 100 ? corrected.maxValue : corrected.getValueAtPercentile(p)),
      rawMs: totalRaw.totalCount === 0 ? 0 : ms(p === 100 ? totalRaw.maxValue : totalRaw.getValueAtPercentile(p)),
    })),
  };
}
