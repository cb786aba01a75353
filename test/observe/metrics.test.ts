import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Counter, Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine, EngineOptions } from '../../engine/index.js';
import { rejection, testEngine } from '../helpers.js';

const METRICS_TASKS = new URL('../fixtures/metrics-tasks.mjs', import.meta.url).href;

/** A test engine with the metrics fixture tasks registered too. */
async function metricsEngine(options: EngineOptions = {}): Promise<Engine> {
  const e = await testEngine(options);
  for (const name of ['metricsRecord', 'metricsBlock', 'metricsExit', 'metricsCount']) e.runtime.pool.register(name, METRICS_TASKS, name);
  return e;
}

/** A new worker answers (after a death): asks `whoami` until a thread other than `dead` does. */
async function replaced(e: Engine, dead: unknown): Promise<unknown> {
  for (let i = 0; i < 1000; i++) {
    const who = await e.run('whoami').catch(() => undefined);
    if (who !== undefined && who !== dead) return who;
  }
  throw new Error('no replacement worker answered');
}

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

/**
 * Blocks one worker in a synchronous task (metricsBlock) until `release()`; resolves once the task
 * is running. `result` is the task's answer ('released').
 */
async function blockAWorker(e: Engine, region: string): Promise<{ result: Promise<unknown>; release: () => void }> {
  const flag = e.runtime.arena.region(region, 8);
  const release = (): void => {
    Atomics.store(e.runtime.thread.i32, flag.offset >>> 2, 1);
    Atomics.notify(e.runtime.thread.i32, flag.offset >>> 2);
  };
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  const call = e.runtime.pool.call('metricsBlock', flag.offset, () => started());
  await running;
  return { result: call.result, release };
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

  it('a label value with a lone surrogate is one series across threads, as UTF-8 stores it (review55)', async () => {
    const e = await metricsEngine({ workers: 1 });
    try {
      const c = e.metrics.counter('test_lone_total', 'x', ['who']);
      expect(await e.runtime.pool.call('metricsCount', { name: 'test_lone_total', labels: ['who'], values: ['path<lone>'] }).result).toBe('counted');
      c.labels('path\uD800').inc(3);
      c.labels('path\uFFFD').inc(4); // the same key once stored
      const lines = (await e.metrics.text()).split('\n').filter((l) => l.startsWith('test_lone_total{'));
      expect(lines).toEqual(['test_lone_total{who="path\uFFFD"} 8']); // before: two lines that print alike
    } finally {
      await e.close();
    }
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

  it('a scrape waits a short while for a worker blocked in a synchronous task, then counts what it sent last', async () => {
    const e = await metricsEngine({ workers: 1 });
    let blocked: Awaited<ReturnType<typeof blockAWorker>> | undefined;
    try {
      e.metrics.histogram('test_blocked_seconds', 'x');
      await e.run('metricsRecord', { name: 'test_blocked_seconds', values: [1, 2, 3] });
      expect(sample(await e.metrics.text(), 'test_blocked_seconds_count')).toBe(3);
      await e.run('metricsRecord', { name: 'test_blocked_seconds', values: [4] }); // after its last answer
      blocked = await blockAWorker(e, 'test:metrics-block');
      const t0 = performance.now();
      const text = await e.metrics.text();
      // SCRAPE_WAIT_MS is 250; the margin is for a loaded 2-core machine. Before: never returned.
      expect(performance.now() - t0).toBeLessThan(1500);
      expect(sample(text, 'test_blocked_seconds_count')).toBe(3);
      // The blocked worker holds one histogram request; a second scrape does not send another.
      const inflight = e.runtime.pool.inflight;
      expect(inflight).toBe(2); // metricsBlock and one request
      expect(sample(await e.metrics.text(), 'test_blocked_seconds_count')).toBe(3);
      expect(e.runtime.pool.inflight).toBe(inflight);
      blocked.release();
      expect(await blocked.result).toBe('released');
      // Released: the request it held answers, and the next scrape has the recording made after it.
      expect(sample(await e.metrics.text(), 'test_blocked_seconds_count')).toBe(4);
    } finally {
      blocked?.release();
      await e.close();
    }
  });

  it('while one worker is stuck, the other workers\' histograms still refresh at each scrape', async () => {
    const e = await metricsEngine({ workers: 2 });
    let blocked: Awaited<ReturnType<typeof blockAWorker>> | undefined;
    try {
      e.metrics.histogram('test_fresh_seconds', 'x');
      blocked = await blockAWorker(e, 'test:metrics-block-2');
      expect(sample(await e.metrics.text(), 'test_fresh_seconds_count')).toBe(0); // the stuck one does not answer
      // The free worker (the pool picks the one with less in flight) records after that scrape.
      expect(await e.run('metricsRecord', { name: 'test_fresh_seconds', values: [7, 8] })).toBe(2);
      expect(sample(await e.metrics.text(), 'test_fresh_seconds_count')).toBe(2);
      blocked.release();
      expect(await blocked.result).toBe('released');
    } finally {
      blocked?.release();
      await e.close();
    }
  });

  it('a summary\'s _count and _sum never go backwards when workers die and are replaced', async () => {
    const e = await metricsEngine({ workers: 1 });
    try {
      e.metrics.histogram('test_replaced_seconds', 'x');
      const ms = Array.from({ length: 100 }, (_, i) => i + 1);
      let expected = 0;
      let expectedSum = 0;
      let worker = await e.run('whoami');
      // Two deaths: with 3 slots for 1 worker, a replacement lands on the dead one's slot or on
      // another, and both must count the dead worker once.
      for (let round = 0; round < 3; round++) {
        await e.run('metricsRecord', { name: 'test_replaced_seconds', values: ms });
        expected += ms.length;
        expectedSum += 5.05; // 1..100 ms
        const before = await e.metrics.text();
        expect(sample(before, 'test_replaced_seconds_count')).toBe(expected);
        expect(sample(before, 'test_replaced_seconds_sum')).toBeCloseTo(expectedSum, 2);
        if (round === 2) break;
        expect((await rejection(e.run('metricsExit'))).code).toBe('ERR_HOTPATH_WORKER_EXITED');
        const after = await e.metrics.text();
        expect(sample(after, 'test_replaced_seconds_count')).toBe(expected);
        expect(sample(after, 'test_replaced_seconds_sum')).toBeCloseTo(expectedSum, 2);
        worker = await replaced(e, worker);
        // The replacement answers (its slot may be the dead one's): the dead one still counts once.
        expect(sample(await e.metrics.text(), 'test_replaced_seconds_count')).toBe(expected);
        expect(sample(await e.metrics.text(), 'test_replaced_seconds_count')).toBe(expected);
      }
    } finally {
      await e.close();
    }
  });
});

describe('series that do not fit the table', () => {
  it('past metricsCapacity a new series is dropped and counted, and nothing else breaks', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error & { code?: string }): void => {
      if (w.code === 'HOTPATH_METRICS_SERIES_DROPPED') warnings.push(w);
    };
    process.on('warning', onWarning);
    const e = await metricsEngine({ workers: 1, metricsCapacity: 16 });
    try {
      const users = e.metrics.counter('test_users_total', 'Per user.', ['user']);
      // The dropped-series counter takes one of the 16 series: u0..u14 fit, u15..u39 do not.
      for (let i = 0; i < 40; i++) users.labels(`u${i}`).inc();
      let text = await e.metrics.text();
      expect(text.split('\n').filter((l) => l.startsWith('test_users_total{')).length).toBe(15);
      expect(sample(text, 'test_users_total{user="u14"}')).toBe(1);
      expect(sample(text, 'hotpath_metrics_series_dropped_total')).toBe(25);
      // A worker's series past capacity: dropped and counted too, the task does not fail.
      expect(await e.run('metricsCount', { name: 'test_users_total', labels: ['user'], values: ['w'] })).toBe('counted');
      // Calls that create series of their own still work.
      const limiter = e.limiter('test_after_full', { limit: 5, window: 1000 });
      expect(limiter.allowSync('k').allowed).toBe(true);
      expect(() => users.labels('late').inc()).not.toThrow();
      expect(() => users.labels('late').inc(-1)).toThrow(RangeError); // a bad argument is still one
      text = await e.metrics.text();
      expect(sample(text, 'hotpath_metrics_series_dropped_total')).toBeGreaterThanOrEqual(28);
      expect(text).not.toMatch(/test_users_total\{user="(late|w|u15)"\}/);
      await new Promise((r) => setImmediate(r)); // process warnings are emitted on the next tick
      expect(warnings).toHaveLength(1); // once per engine and thread
      expect(warnings[0]!.message).toMatch(/test_users_total\{"u15"\} of test_users_total dropped: the shared metrics table is full \(16 series; raise the metricsCapacity option/);
      expect(warnings[0]!.message).not.toContain('\u0000');
    } finally {
      process.off('warning', onWarning);
      await e.close();
    }
  });

  it('a series key over 126 bytes is dropped and counted, not thrown', async () => {
    const c = engine.metrics.counter('test_long_total', 'Long labels.', ['v']);
    const before = sample(await engine.metrics.text(), 'hotpath_metrics_series_dropped_total')!;
    expect(() => c.labels('x'.repeat(200)).inc()).not.toThrow();
    expect(() => c.labels('é'.repeat(60)).inc()).not.toThrow(); // 120 bytes of UTF-8 + name: too long
    c.labels('y'.repeat(100)).inc(); // fits
    const text = await engine.metrics.text();
    expect(sample(text, 'hotpath_metrics_series_dropped_total')).toBe(before + 2);
    expect(sample(text, `test_long_total{v="${'y'.repeat(100)}"}`)).toBe(1);
    expect(text).not.toContain('x'.repeat(200));
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

  it('an OpenMetrics registry names our counters as its own: x_total, not x_total_total (review55)', async () => {
    const registry = new Registry(Registry.OPENMETRICS_CONTENT_TYPE);
    const e = await testEngine({ metrics: registry });
    try {
      const theirs = new Counter({ name: 'native_requests_total', help: 'x', registers: [registry] });
      theirs.inc(2);
      e.metrics.counter('test_mine_total', 'x', ['route']).labels('/a').inc(3);
      e.metrics.collect('test_collected_total', 'x', 'counter', () => 4);
      for (let i = 0; i < 2; i++) { // a second scrape: the registry renames its objects each time
        const text = await registry.metrics();
        expect(text).toContain('# TYPE native_requests counter\n');
        expect(text).toContain('native_requests_total 2');
        expect(text).toContain('# TYPE test_mine counter\n');
        expect(text).toContain('test_mine_total{route="/a"} 3');
        expect(text).toContain('test_collected_total 4');
        expect(text).not.toMatch(/_total_total/);
      }
      // Switched back to the Prometheus format (a server answering by Accept), our counters keep
      // their _total (review56: the name prom-client left on the object was printed).
      registry.setContentType(Registry.PROMETHEUS_CONTENT_TYPE as never);
      const text = await registry.metrics();
      expect(text).toContain('# TYPE test_mine_total counter\n');
      expect(text).toContain('test_mine_total{route="/a"} 3');
      expect(text).toContain('test_collected_total 4');
    } finally {
      await e.close();
    }
    expect(registry.getSingleMetric('test_mine_total')).toBeUndefined(); // close() still finds what it registered
  });

  it('engine.cache whose metric name the application registry already holds throws every time, never half-built (review40)', async () => {
    const registry = new Registry();
    new Counter({ name: 'hotpath_cache_requests_total', help: 'the application\'s own', registers: [registry] });
    const e = await testEngine({ metrics: registry });
    try {
      expect(() => e.cache).toThrow(/hotpath_cache_requests_total is already registered/);
      expect(() => e.cache).toThrow(/hotpath_cache_requests_total is already registered/);
    } finally {
      await e.close();
    }
  });

  it('close() takes the engine\'s metrics out of the application\'s registry, so another engine can use it', async () => {
    const registry = new Registry();
    const mine = new Counter({ name: 'test_app_own_total', help: 'The application\'s own.', registers: [registry] });
    mine.inc(2);
    const a = await testEngine({ metrics: registry });
    a.metrics.counter('test_engine_total', 'x').inc();
    expect(registry.getMetricsAsArray().some((m) => m.name === 'hotpath_workers')).toBe(true);
    // A second engine on it while the first is open: a TypeError naming the metric and the option.
    const clash = await rejection(testEngine({ metrics: registry }));
    expect(clash.name).toBe('TypeError');
    expect(clash.message).toMatch(/already registered in the prom-client registry given as options\.metrics/);
    await a.close();
    expect(registry.getMetricsAsArray().map((m) => m.name)).toEqual(['test_app_own_total']);
    const b = await testEngine({ metrics: registry });
    try {
      b.metrics.counter('test_engine_total', 'x').inc(4);
      const text = await registry.metrics();
      expect(sample(text, 'test_engine_total')).toBe(4);
      expect(sample(text, 'test_app_own_total')).toBe(2);
      expect(sample(text, 'hotpath_workers')).toBe(2);
    } finally {
      await b.close();
    }
  });

  it('a createEngine that fails after its workers started stops them (the process exits by itself)', async () => {
    const script = fileURLToPath(new URL('../fixtures/metrics-failed-create.mjs', import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, [script], { timeout: 20_000 });
    const results = JSON.parse(stdout) as string[];
    expect(results).toHaveLength(2);
    for (const r of results) expect(r).toMatch(/^TypeError: metric \w+ is already registered .*options\.metrics/);
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
      // Mistakes throw as they would with metrics on (review36): a program that works with them
      // off must not start throwing once they are turned on.
      const c = e.metrics.counter('test_off_labelled_total', 'x', ['route']);
      expect(() => c.inc()).toThrow(/has labels/);
      expect(() => c.labels('a', 'b')).toThrow(/takes 1 label values/);
      expect(() => c.labels('/').inc(1.5)).toThrow(RangeError);
      expect(() => e.metrics.gauge('test_off_gauge', 'x').set(0.5)).toThrow(RangeError);
      c.labels('/').inc(2); // fine, and goes nowhere
    } finally {
      await e.close();
    }
  });
});
