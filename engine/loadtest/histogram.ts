/**
 * The load tester's latency histograms, shared by the workers (which record) and the main thread
 * (which merges): one configuration on both sides, and the (value, count) pairs a worker sends per
 * interval. Pairs are re-recorded with recordValueWithCount, so they land in the same buckets only
 * because both sides build their histograms here.
 */
import * as hdr from 'hdr-histogram-js';

/** A latency histogram (µs): 3 significant digits, growing as needed, in JavaScript (no WASM). */
export function latencyHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 2, autoResize: true, numberOfSignificantValueDigits: 3, useWebAssembly: false });
}

/**
 * An interval's histogram as (value, count) pairs of its non-empty buckets, for the main thread to
 * merge (the same buckets, so the same percentiles; a bucket reads as its highest equivalent value).
 * hdr's compressed base64 form deflates, up to a millisecond per interval on the worker — the thread
 * sending the load, so the responses it was handling meanwhile waited: a run with one interval
 * instead of twenty read a p99 0.4–1.6 ms lower against a 10 ms server. Walking ~100–1000 buckets
 * costs tens of µs.
 */
export function histogramPairs(h: hdr.Histogram): Float64Array {
  const it = (h as unknown as { recordedValuesIterator: { reset(): void; hasNext(): boolean; next(): { valueIteratedTo: number; countAtValueIteratedTo: number } } }).recordedValuesIterator;
  it.reset();
  const out: number[] = [];
  while (it.hasNext()) {
    const v = it.next();
    out.push(v.valueIteratedTo, v.countAtValueIteratedTo);
  }
  return Float64Array.from(out);
}

/** A worker's (value, count) pairs (histogramPairs) as a histogram. */
export function fromPairs(pairs: Float64Array): hdr.Histogram {
  const h = latencyHistogram();
  for (let i = 0; i + 1 < pairs.length; i += 2) h.recordValueWithCount(pairs[i]!, pairs[i + 1]!);
  return h;
}

/**
 * Records `count` × `value` and the values coordinated omission hid behind them (HdrHistogram's
 * recordValueWithCountAndExpectedInterval: a JsHistogram method the package's Histogram type does
 * not declare; latencyHistogram builds JsHistograms).
 */
export function recordCorrected(h: hdr.Histogram, value: number, count: number, expectedInterval: number): void {
  (h as hdr.Histogram & { recordValueWithCountAndExpectedInterval(v: number, c: number, i: number): void })
    .recordValueWithCountAndExpectedInterval(value, count, expectedInterval);
}

/**
 * The closed model's expected interval I (µs): the mean raw latency, as wrk takes it. Neither
 * choice is right for every server (review31, review34): the stalls being corrected for inflate
 * the mean, so a 200 ms stall every second reads p90 ~82 ms where the truth is 100 (p99 ~190 of
 * 190); the median follows the stall better but over-corrects a server that is simply slow for
 * some requests (60 % at 0.4 ms, 40 % at 41 ms: corrected p50 20 ms, and p90 and p99 below the raw
 * ones). With the mean, the corrected tail stays within one interval of the raw one.
 */
export function expectedInterval(raw: hdr.Histogram): number {
  return Math.max(1, Math.round(raw.mean));
}
