/**
 * The reason the load tester exists: against a server that answers in 2 ms ± 1 ms but stalls
 * for 200 ms every second, the closed model's raw percentiles hide the stall (each connection
 * waits through it once, so ~1 sample in 400 is slow) while the corrected ones show it; the open
 * model keeps sending during the stall and sees it directly.
 *
 * Expected figures (10 connections, 3 s): per connection and second ≈ 320 requests of ~2.5 ms
 * and one of ≤ 200 ms, so raw p99 ≈ 3 ms, raw max ≈ 200 ms. Correction with I ≈ 2.5 ms adds
 * ~80 samples per stall spread over (I, 200 ms): about 20 % of the corrected samples, so the
 * corrected p99 ≈ 195 ms and p90 ≈ 100 ms. The bounds below are an order of magnitude looser
 * where the VM's noise can move a figure (it can slow the 2 ms answers, never hide a stall).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadtest, type LoadtestResult } from '../../engine/loadtest/index.js';
import { startTarget, type Target } from './helpers.js';

let target: Target;
beforeAll(async () => {
  target = await startTarget({ delayMs: 2, jitterMs: 1, stall: { everyMs: 1000, forMs: 200 } });
});
afterAll(async () => {
  await target.close();
});

describe('coordinated omission', () => {
  it('closed model: the corrected percentiles show the stall, the raw ones understate it', async () => {
    const r: LoadtestResult = await loadtest({ url: target.url, connections: 10, durationMs: 3000, workers: 1 });
    expect(r.requests.errors).toBe(0);
    expect(r.requests.completed).toBeGreaterThan(1000);
    // Every connection met a stall: the raw maximum is a stall.
    expect(r.latency.raw.max).toBeGreaterThanOrEqual(150);
    // …but the stalled requests are ~0.4 % of the raw samples: raw p90 looks like a healthy 2 ms
    // server (measured 4-5 ms on the shared 2-core VM; 30 is far from both that and the stall).
    expect(r.latency.raw.p90).toBeLessThan(30);
    // Corrected: the stall dominates the tail (measured p99 190-205 ms; true value ≈ 195).
    expect(r.latency.correction.method).toBe('expected-interval');
    expect(r.latency.correction.expectedIntervalMs).toBeGreaterThan(1);
    expect(r.latency.corrected.p99).toBeGreaterThanOrEqual(100);
    // The raw p99 understates it (measured 20-30 ms: VM noise on top of 2 ms): to reach half
    // the corrected p99, ≥ 1 % of the raw samples would have to be ~100 ms, and only ~0.4 % stall.
    expect(r.latency.raw.p99).toBeLessThan(r.latency.corrected.p99 / 2);
    expect(r.latency.corrected.p90).toBeGreaterThan(r.latency.raw.p90);
    // The synthetic samples are there, the maximum is the same observed one.
    expect(r.latency.corrected.count).toBeGreaterThan(r.latency.raw.count);
    expect(r.latency.corrected.max).toBe(r.latency.raw.max);
  });

  it('closed model with correct: false reports the raw figures as corrected', async () => {
    const r = await loadtest({ url: target.url, connections: 4, durationMs: 1200, workers: 1, correct: false });
    expect(r.latency.correction.method).toBe('none');
    expect(r.latency.corrected).toEqual(r.latency.raw);
  });

  it('open model: keeps its arrival rate through the stall and measures from the intended start', async () => {
    const before = { all: target.arrivals, stalled: target.arrivalsInStall };
    // 200 req/s; a stall holds at most ~45 requests, so 100 connections never run out.
    const r = await loadtest({ url: target.url, rate: 200, connections: 100, durationMs: 3000, workers: 1 });
    const all = target.arrivals - before.all;
    const stalled = target.arrivalsInStall - before.stalled;
    expect(r.requests.scheduled).toBe(600);
    expect(r.requests.total + r.requests.dropped).toBe(600);
    expect(r.requests.dropped).toBe(0);
    expect(r.requests.completed).toBe(600);
    expect(all).toBe(600);
    // A closed-model client sends nothing while stalled; this one keeps its schedule: ~20 % of
    // the arrivals land in the stalls (200 ms of every 1000).
    expect(stalled / all).toBeGreaterThan(0.1);
    expect(stalled / all).toBeLessThan(0.35);
    // Those waited up to 200 ms: the p90 already shows it, measured from the intended start.
    expect(r.latency.corrected.p99).toBeGreaterThanOrEqual(100);
    expect(r.latency.corrected.p90).toBeGreaterThanOrEqual(20);
    expect(r.latency.correction.method).toBe('intended-start');
    expect(r.generator.scheduleLag).not.toBeNull();
  });
});
