import { execFileSync, spawnSync } from 'node:child_process';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../engine/index.js';
import { testEngine } from '../helpers.js';

let engine: Engine;
beforeAll(async () => {
  engine = await testEngine();
});
afterAll(() => engine.close());

const hasPromtool = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('shared counters', () => {
  it('bumped from the main thread and two workers at once, they sum exactly', async () => {
    const hits = engine.metrics.counter('test_hits_total', 'Hits by route.', ['route']);
    const n = 100_000;
    const work = Array.from({ length: 6 }, () => engine.run('countHits', { n, route: '/x' }));
    const mine = hits.labels('/x');
    for (let i = 0; i < n; i++) mine.inc();
    await Promise.all(work);
    const text = await engine.metrics.text();
    expect(sample(text, 'test_hits_total{route="/x"}')).toBe(7 * n);
    // Both workers took part (least-loaded dispatch spreads six tasks over two threads).
    expect(new Set(await Promise.all(Array.from({ length: 20 }, () => engine.run('whoami')))).size).toBe(2);
  });

  it('a worker\'s counts outlive it, and its replacement\'s add to them', async () => {
    const e = await testEngine({ workers: 1 });
    try {
      const first = await e.run('whoami');
      expect(await e.run('countHits', { n: 1000, route: '/d' })).toBe(1000);
      const death = await e.run('exitMidTask').then(() => 'answered', (err: { code?: string }) => err.code);
      expect(death).toBe('ERR_HOTPATH_WORKER_EXITED');
      // The replacement attaches to the recycled slot: wait until it answers.
      let next: unknown = first;
      for (let i = 0; i < 1000 && (next === first || next === undefined); i++) next = await e.run('whoami').catch(() => undefined);
      expect(next).not.toBe(first);
      expect(await e.run('countHits', { n: 1000, route: '/d' })).toBe(1000);
      const mine = e.metrics.counter('test_hits_total', 'Hits by route.', ['route']).labels('/d');
      for (let i = 0; i < 500; i++) mine.inc();
      mine.inc(7);
      expect(sample(await e.metrics.text(), 'test_hits_total{route="/d"}')).toBe(2507);
    } finally {
      await e.close();
    }
  });

  it('gauges go up, down and can be set', async () => {
    const g = engine.metrics.gauge('test_queue_depth', 'Depth.');
    g.inc(5);
    g.dec(2);
    expect(sample(await engine.metrics.text(), 'test_queue_depth')).toBe(3);
    g.set(42);
    expect(sample(await engine.metrics.text(), 'test_queue_depth')).toBe(42);
  });

  it('refuses bad names, label counts and redeclarations with another shape', () => {
    expect(() => engine.metrics.counter('bad name', 'x')).toThrow(TypeError);
    expect(() => engine.metrics.counter('ok_total', 'x', ['__reserved'])).toThrow(TypeError);
    const c = engine.metrics.counter('test_two_labels_total', 'x', ['a', 'b']);
    expect(() => c.labels('only-one')).toThrow(/takes 2 label values/);
    expect(() => c.inc()).toThrow(/use \.labels/);
    expect(() => engine.metrics.gauge('test_two_labels_total', 'x', ['a', 'b'])).toThrow(/already declared as a counter/);
    expect(() => engine.metrics.counter('test_neg_total', 'x').inc(-1)).toThrow(RangeError);
    // Shared series hold integers: a fraction would be silently truncated, so it is refused.
    expect(() => engine.metrics.counter('test_frac_total', 'x').inc(0.5)).toThrow(/non-negative integer/);
    const g = engine.metrics.gauge('test_frac_level', 'x');
    for (const bad of [0.9, Number.NaN, Number.POSITIVE_INFINITY]) expect(() => g.set(bad)).toThrow(RangeError);
  });
});

describe('histograms', () => {
  it('merges every thread\'s HDR histogram at scrape', async () => {
    const h = engine.metrics.histogram('test_latency_seconds', 'Latency.');
    const values = Array.from({ length: 1000 }, (_, i) => i + 1); // 1..1000 ms
    for (const v of values) h.record(v);
    await Promise.all([engine.run('recordLatencies', values), engine.run('recordLatencies', values)]);
    const text = await engine.metrics.text();
    expect(sample(text, 'test_latency_seconds_count')).toBe(3000);
    const p50 = sample(text, 'test_latency_seconds{quantile="0.5"}')!;
    const p99 = sample(text, 'test_latency_seconds{quantile="0.99"}')!;
    expect(p50).toBeGreaterThan(0.49);
    expect(p50).toBeLessThan(0.51);
    expect(p99).toBeGreaterThan(0.98);
    expect(p99).toBeLessThan(1.0);
    expect(sample(text, 'test_latency_seconds_sum')).toBeCloseTo(3 * 500.5, 0);
  });
});

describe('exposition', () => {
  it('includes process metrics and event-loop delay, without the gauges promtool rejects', async () => {
    const text = await engine.metrics.text();
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);
    expect(text).toMatch(/^nodejs_eventloop_lag_p99_seconds /m);
    expect(text).not.toMatch(/nodejs_active_(handles|requests|resources)_total/);
    expect(sample(text, 'hotpath_workers')).toBe(2);
  });

  it.runIf(hasPromtool || process.env.CI === 'true')('passes promtool check metrics', async () => {
    const text = await engine.metrics.text();
    const out = execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(out.trim()).toBe('');
  });

  it('registers into the registry it is given (no default metrics added)', async () => {
    const registry = new Registry();
    const e = await testEngine({ metrics: registry });
    try {
      e.metrics.counter('test_mine_total', 'x').inc(3);
      const text = await registry.metrics();
      expect(sample(text, 'test_mine_total')).toBe(3);
      expect(text).not.toMatch(/process_cpu_user_seconds_total/);
    } finally {
      await e.close();
    }
  });

  it('text() still answers after close (the main thread\'s own series)', async () => {
    const e = await testEngine();
    e.metrics.histogram('test_after_close_seconds', 'x').record(3);
    await e.close();
    expect(await e.metrics.text()).toMatch(/^test_after_close_seconds_count 1$/m);
  });

  it('metrics: false turns every recorder into a no-op and carves no table', async () => {
    const e = await testEngine({ metrics: false });
    try {
      expect(e.metrics.enabled).toBe(false);
      e.metrics.counter('test_off_total', 'x').inc();
      e.metrics.histogram('test_off_seconds', 'x').record(5);
      expect(await e.metrics.text()).toBe('');
      expect(e.runtime.regions().some((r) => r.name === 'hotpath:metrics')).toBe(false);
      expect(await e.run('countHits', { n: 10, route: '/off' })).toBe(10);
    } finally {
      await e.close();
    }
  });
});
