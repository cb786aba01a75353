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
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadtest, type LoadtestResult } from '../../engine/loadtest/index.js';
import { expectedInterval, latencyHistogram } from '../../engine/loadtest/histogram.js';
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

  it('the expected interval shows a stall in the tail and never puts a stall-free tail below the raw one (review31, review34)', () => {
    let seed = 1;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    // Models without a network (deterministic). 1: 10 connections × 5 s against 1.45 ms ± 0.5
    // answers that stall for 200 ms every second: each connection meets each stall once and answers
    // back to back the other 800 ms. For a request sent at a uniformly random moment,
    // P(latency > x) = 0.2 × (200 − x) / 200: p90 ≈ 100, p99 ≈ 190 ms.
    const stalled = latencyHistogram();
    for (let conn = 0; conn < 10; conn++) {
      for (let sec = 0; sec < 5; sec++) {
        stalled.recordValue(Math.round((200 - rnd() * 1.45 + 1.45) * 1000));
        for (let t = 0; t < 800;) {
          const l = 1.45 + (rnd() - 0.5);
          stalled.recordValue(Math.round(l * 1000));
          t += l;
        }
      }
    }
    const c1 = stalled.copyCorrectedForCoordinatedOmission(expectedInterval(stalled));
    const ms = (h: typeof c1, p: number): number => h.getValueAtPercentile(p) / 1000;
    expect(ms(c1, 99)).toBeGreaterThan(185);
    expect(ms(c1, 90)).toBeGreaterThan(75); // 82 with the mean: under by a fifth (documented)
    // 2: no stall, a server slow for some requests (60 % at 0.4 ms, 40 % at 41 ms). The median as
    // the interval made its corrected p90 and p99 *lower* than the raw ones (review34).
    const skewed = latencyHistogram();
    for (let i = 0; i < 600; i++) skewed.recordValue(400);
    for (let i = 0; i < 400; i++) skewed.recordValue(41_000);
    const c2 = skewed.copyCorrectedForCoordinatedOmission(expectedInterval(skewed));
    for (const p of [90, 99, 99.9]) expect(ms(c2, p)).toBeGreaterThanOrEqual(ms(skewed, p));
  });
});

describe('requests that get no answer are in the latencies (review31)', () => {
  /** A server that answers its first `answered` requests at once, then holds every later one until it closes. */
  async function hangingServer(answered: number): Promise<{ url: string; close(): Promise<void> }> {
    let n = 0;
    const server = createServer((req, res) => {
      req.resume();
      if (++n <= answered) req.on('end', () => res.end('ok'));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
      close: () => new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
    };
  }

  it('closed model: a server that stops answering shows in the tail (timed out at timeoutMs), not as a fast server', async () => {
    const s = await hangingServer(200);
    try {
      const r = await loadtest({ url: s.url, connections: 4, durationMs: 1500, workers: 1, timeoutMs: 300, gracefulStopMs: 200 });
      expect(r.requests.completed).toBe(200);
      expect(r.errors.RESPONSE_TIMEOUT).toBeGreaterThanOrEqual(4);
      // Every request sent is in the latencies: answered, timed out, or unanswered at the end.
      expect(r.requests.measured).toBe(r.requests.total);
      expect(r.latency.raw.count).toBe(r.requests.total);
      // Before, the percentiles were those of the 200 fast answers (p99 a few ms).
      expect(r.latency.raw.max).toBeGreaterThanOrEqual(300);
      expect(r.latency.raw.p99).toBeGreaterThanOrEqual(150);
      expect(r.latency.corrected.p99).toBeGreaterThanOrEqual(150);
    } finally {
      await s.close();
    }
  });

  it('open model: the same, measured from the intended start; a request unanswered at the end counts at its time so far', async () => {
    const s = await hangingServer(50);
    try {
      const r = await loadtest({ url: s.url, rate: 100, connections: 50, durationMs: 1500, workers: 1, timeoutMs: 10_000, gracefulStopMs: 200 });
      expect(r.requests.completed).toBe(50);
      expect(r.requests.interrupted).toBe(r.requests.total - 50);
      expect(r.requests.measured).toBe(r.requests.total);
      expect(r.latency.corrected.p99).toBeGreaterThanOrEqual(150);
    } finally {
      await s.close();
    }
  });

  it('timeoutMs bounds the whole response: a body that trickles in is cut (undici only times the gaps)', async () => {
    const server = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'Content-Length': '40' });
      let sent = 0;
      const drip = setInterval(() => {
        if (res.destroyed || ++sent > 40) return void clearInterval(drip);
        res.write('x');
      }, 50); // a byte per 50 ms: 2 s for the body, each gap far under the timeout
      res.on('close', () => clearInterval(drip));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      const r = await loadtest({ url, connections: 2, durationMs: 1000, workers: 1, timeoutMs: 300, gracefulStopMs: 100 });
      expect(r.requests.completed).toBe(0);
      expect(r.errors.RESPONSE_TIMEOUT).toBeGreaterThanOrEqual(2);
      // Cut within a sweep period (timeoutMs / 10, at least 10 ms) of the deadline: never the 2 s body.
      expect(r.latency.raw.max).toBeGreaterThanOrEqual(300);
      expect(r.latency.raw.max).toBeLessThan(1000);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
