/**
 * createEngine(): wires one runtime (shared memory, kernels, workers) for the components.
 * Convenience wiring, not a god object: every component is usable on its own.
 */
import { ClosedError } from './errors.js';
import { resolveOptions, type Clock, type EngineOptions, type EngineSettings } from './options.js';
import { Runtime } from './runtime/runtime.js';
import { kernelModule } from './runtime/wasm.js';
import type { WorkerPool } from './runtime/pool.js';
import { Metrics } from './observe/metrics.js';
import { HISTOGRAM_TASK, HISTOGRAM_TASK_MODULE } from './observe/histogram-task.js';
import type { MetricsTable } from './observe/table.js';
import { RedisConnector } from './redis/connector.js';
import { Limiter, type LimiterOptions } from './limiter/limiter.js';
import { Compressor, type CompressOptions, type DecompressOptions, type Input } from './compress/compressor.js';
import { Cache, checkOptions as checkCacheOptions, type CacheOptions } from './cache/cache.js';
import { Queue } from './queue/queue.js';
import { DurableQueue, type DurableOptions, type DurableQueueOptions } from './queue/durable.js';
import { createExecutor } from './queue/executor.js';
import { resolveQueueOptions } from './queue/options.js';
import type { QueueOptions } from './queue/types.js';
import type { LatencyRecorder } from './observe/thread-metrics.js';
import { CircuitBreaker, type BreakerOptions } from './resilience/breaker.js';
import { Balancer, BALANCER_DEFAULTS, type BalancerOptions } from './balance/balancer.js';

/**
 * Whether two option objects of engine.breaker() are the same: the same own keys with values equal
 * by Object.is (so functions by identity; a key set to undefined is a key left out).
 */
/** engine.breaker handles kept per name (distinct option sets: thread settings such as isFailure, timeoutMs). */
const MAX_BREAKER_HANDLES = 16;

function sameOptions(a: object, b: Record<string, unknown>): boolean {
  const o = a as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!Object.is(o[k], b[k])) return false;
  for (const k of Object.keys(b)) if (!Object.is(o[k], b[k])) return false;
  return true;
}

/** One hotpath runtime and the components built on it. Create with {@link createEngine}. */
export class Engine {
  /** The shared memory, arena, kernels and worker pool. */
  readonly runtime: Runtime;
  /** The time source of every component (ms). */
  readonly clock: Clock;
  /** Prometheus metrics: `registry`, `text()`, and shared `counter`/`gauge`/`histogram`. */
  readonly metrics: Metrics;
  /** The Redis connector, when `redis` was given (it may be in fallback mode: see `available`). */
  readonly redis: RedisConnector | undefined;
  /** The compression component (engine.compress / decompress and their Sync forms use it). */
  readonly compressor: Compressor;
  readonly #closeTimeoutMs: number;
  readonly #redisTimeoutMs: number;
  readonly #limiters = new Map<string, { limiter: Limiter; options: string }>();
  readonly #cacheOptions: CacheOptions;
  #cache: Cache | undefined;
  readonly #queues = new Map<string, Queue<any, any> | DurableQueue<any, any>>();
  #queueTimes: { wait: LatencyRecorder; run: LatencyRecorder } | undefined;
  /**
   * engine.breaker's handles per name, least recently used first (at most MAX_BREAKER_HANDLES: the
   * oldest then leaves the list, undisposed — it keeps working; its timers are unref'd and stop by
   * themselves — and the same options again make a new handle).
   */
  readonly #breakers = new Map<string, Array<{ breaker: CircuitBreaker; options: Record<string, unknown> }>>();
  readonly #balancers = new Set<Balancer>();
  #balancerMetrics = false;
  #closed: Promise<void> | undefined;

  /** @internal use createEngine() */
  constructor(runtime: Runtime, clock: Clock, closeTimeoutMs: number, metrics: Metrics, redis: RedisConnector | undefined, redisTimeoutMs: number, compressor: Compressor, cacheOptions: CacheOptions = {}) {
    this.runtime = runtime;
    this.#cacheOptions = cacheOptions;
    this.compressor = compressor;
    this.#redisTimeoutMs = redisTimeoutMs;
    this.clock = clock;
    this.#closeTimeoutMs = closeTimeoutMs;
    this.metrics = metrics;
    this.redis = redis;
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /**
   * The rate limiter `name`: created on first use (its table carved from the shared memory),
   * returned again for the same name. Without `options`, returns the existing one (or opens one a
   * worker created). Distributed through Redis when the engine has it (see LimiterOptions).
   * @throws TypeError / RangeError naming a bad option; ERR_HOTPATH_CLOSED after close();
   *   ERR_HOTPATH_REGION_CONFLICT when `name` exists with another algorithm, limit, window, burst or maxKeys.
   */
  limiter(name: string, options?: LimiterOptions): Limiter {
    if (this.#closed !== undefined) throw new ClosedError('engine');
    const known = this.#limiters.get(name);
    const key = options === undefined ? undefined : JSON.stringify(options);
    if (known !== undefined && (key === undefined || key === known.options)) return known.limiter;
    const limiter = new Limiter(name, options, {
      runtime: this.runtime.thread,
      clock: this.clock,
      redis: this.redis,
      redisTimeoutMs: this.#redisTimeoutMs,
    });
    this.#limiters.set(name, { limiter, options: key ?? '' });
    return limiter;
  }

  /**
   * The circuit breaker `name`, its state in the shared memory: the main thread and every worker
   * (`ctx.breaker(name)` in a queue handler) see one state, one window and one set of thresholds
   * (the creator's). Created on first use, returned again for the same name and the same options
   * (functions compared by identity); without `options` it opens the existing one (or creates it
   * with the defaults; the handle returned last). Options that differ only in this thread's settings
   * (`timeoutMs`, `isFailure`) give another handle on the same state with those settings; earlier
   * handles keep working (never disposed before engine.close()), and each option set gets its own
   * handle back every time (up to 16 option sets per name are remembered; past that the least
   * recently used is forgotten — it still works — and its options would make a new one). `clock`
   * is the engine's.
   * @throws TypeError / RangeError naming a bad option, an unknown option name or a bad name (at
   *   most 40 UTF-8 bytes); ERR_HOTPATH_CLOSED after close(); ERR_HOTPATH_REGION_CONFLICT when
   *   `name` exists with other thresholds.
   */
  breaker(name: string, options?: Omit<BreakerOptions, 'clock'>): CircuitBreaker {
    if (this.#closed !== undefined) throw new ClosedError('engine');
    // Here, not in CircuitBreaker.shared: the spread below would make `{ clock }` of null or 42 (review69 D6).
    if (options !== undefined && (options === null || typeof options !== 'object')) {
      throw new TypeError(`breaker options must be an object, got ${options === null ? 'null' : `${typeof options} ${String(options)}`}`);
    }
    const known = this.#breakers.get(name);
    if (known !== undefined) {
      const i = options === undefined ? known.length - 1 : known.findIndex((h) => sameOptions(options, h.options));
      if (i >= 0) {
        const h = known[i]!;
        if (i !== known.length - 1) known.push(...known.splice(i, 1)); // most recently used last
        return h.breaker;
      }
    }
    const breaker = CircuitBreaker.shared(this.runtime.thread, name, { ...options, clock: this.clock });
    if (this.#breakers.size === 0 && this.metrics.registry !== undefined) {
      const all = new Map<string, { breaker: CircuitBreaker }>();
      const handles = this.#breakers;
      // One series per name (the state is shared: any handle reads it).
      const one = (): Map<string, { breaker: CircuitBreaker }> => {
        all.clear();
        for (const [n, list] of handles) all.set(n, list[list.length - 1]!);
        return all;
      };
      const states = { closed: 0, 'half-open': 1, open: 2 } as const;
      this.metrics.collect('hotpath_breaker_state', 'Circuit breaker state (process-wide): 0 closed, 1 half-open, 2 open.', 'gauge',
        () => [...one().values()].map(({ breaker: b }) => ({ value: states[b.state], labels: { breaker: b.name } })));
      this.metrics.collect('hotpath_breaker_calls_total', 'Calls through a circuit breaker by result (success, failure, rejected while open), process-wide.', 'counter',
        () => [...one().values()].flatMap(({ breaker: b }) => {
          const s = b.stats();
          return [
            { value: s.successes, labels: { breaker: b.name, result: 'success' } },
            { value: s.failures, labels: { breaker: b.name, result: 'failure' } },
            { value: s.rejected, labels: { breaker: b.name, result: 'rejected' } },
          ];
        }));
    }
    const list = known ?? [];
    list.push({ breaker, options: options !== undefined ? { ...options } : {} });
    if (list.length > MAX_BREAKER_HANDLES) list.shift(); // forgotten, not disposed: it keeps working
    this.#breakers.set(name, list);
    return breaker;
  }

  /**
   * A load balancer over `options.backends` (see {@link Balancer}), on the engine's clock, with
   * metrics `hotpath_balancer_backend_up{balancer,backend}` and
   * `hotpath_balancer_calls_total{balancer,backend,result}`. Closed with the engine (or by `close()`).
   * One live balancer per name (`options.name`, default 'default'), as for queues: two would export
   * the same series; close the old one first, or name them apart.
   * @throws TypeError / RangeError naming a bad option; TypeError when a balancer of that name is
   *   open; ERR_HOTPATH_CLOSED after close().
   */
  balancer(options: BalancerOptions): Balancer {
    if (this.#closed !== undefined) throw new ClosedError('engine');
    const name: unknown = options !== null && typeof options === 'object' ? options.name ?? BALANCER_DEFAULTS.name : undefined;
    for (const other of this.#balancers) {
      if (other.closed) {
        this.#balancers.delete(other); // closed without the engine's listener (removeAllListeners)
        continue;
      }
      if (other.name === name) {
        throw new TypeError(`balancer ${JSON.stringify(name)} already exists (its metrics would be exported twice); close it first or give this one another options.name`);
      }
    }
    const lb = new Balancer({ clock: this.clock, ...options });
    if (!this.#balancerMetrics && this.metrics.registry !== undefined) {
      this.#balancerMetrics = true; // once: the set empties when balancers close, the collectors stay
      const balancers = this.#balancers;
      const all = { [Symbol.iterator]: (): Iterator<Balancer> => [...balancers].filter((l) => !l.closed)[Symbol.iterator]() };
      this.metrics.collect('hotpath_balancer_backend_up', 'Balancer backends: 1 when the backend may take calls (up, not ejected, breaker not open).', 'gauge',
        () => [...all].flatMap((l) => l.backends().map((b) => ({ value: b.state === 'up' && b.breakerState !== 'open' ? 1 : 0, labels: { balancer: l.name, backend: b.id } }))));
      this.metrics.collect('hotpath_balancer_calls_total', 'Calls reported to a balancer, by backend and result (ok, failed).', 'counter',
        () => [...all].flatMap((l) => l.backends().flatMap((b) => [
          { value: b.successes, labels: { balancer: l.name, backend: b.id, result: 'ok' } },
          { value: b.failures, labels: { balancer: l.name, backend: b.id, result: 'failed' } },
        ])));
    }
    this.#balancers.add(lb);
    lb.once('close', () => this.#balancers.delete(lb));
    return lb;
  }

  /**
   * The cache (options from `createEngine({ cache })`): L1 per thread, L2 in the shared memory,
   * L3 on Redis when the engine has it. Built on first use (its L2 is carved from the arena then).
   * Workers attach to it with `Cache.open(ctx.runtime)`.
   * @throws ERR_HOTPATH_CLOSED after close(); ERR_HOTPATH_ARENA_EXHAUSTED when L2 does not fit the `memory` option.
   */
  get cache(): Cache {
    if (this.#cache !== undefined) return this.#cache;
    if (this.#closed !== undefined) throw new ClosedError('engine');
    const cache = new Cache(this.#cacheOptions, {
      runtime: this.runtime.thread,
      clock: this.clock,
      ...(this.redis !== undefined ? { redis: this.redis } : {}),
      redisTimeoutMs: this.#redisTimeoutMs,
      compressor: this.compressor,
    });
    try {
      this.#cacheMetrics(cache);
    } catch (err) {
      // (review40: the cache was kept before its metrics failed: the first access threw, the
      // second answered a cache without metrics.)
      void cache.close().catch(() => undefined);
      throw err;
    }
    this.#cache = cache;
    return cache;
  }

  /** The cache's collectors. @throws TypeError when the application's registry already holds one of the names. */
  #cacheMetrics(cache: Cache): void {
    this.metrics.collect('hotpath_cache_requests_total', 'Cache lookups by tier and result (this process\'s main thread; L2 and L3 are shared).', 'counter', () => {
      const s = cache.stats();
      const rows: Array<{ value: number; labels: Record<string, string> }> = [];
      for (const tier of ['l1', 'l2', 'l3'] as const) {
        const t = s[tier];
        if (t === undefined) continue;
        rows.push({ value: t.hits, labels: { tier, result: 'hit' } }, { value: t.misses, labels: { tier, result: 'miss' } });
      }
      return rows;
    });
    this.metrics.collect('hotpath_cache_evictions_total', 'Entries evicted for room, by tier.', 'counter', () => {
      const s = cache.stats();
      return [
        ...(s.l1 ? [{ value: s.l1.evictions, labels: { tier: 'l1' } }] : []),
        ...(s.l2 ? [{ value: s.l2.evictions, labels: { tier: 'l2' } }] : []),
      ];
    });
    this.metrics.collect('hotpath_cache_entries', 'Entries held, by tier (l1: the main thread\'s).', 'gauge', () => {
      const s = cache.stats();
      return [
        ...(s.l1 ? [{ value: s.l1.entries, labels: { tier: 'l1' } }] : []),
        ...(s.l2 ? [{ value: s.l2.entries, labels: { tier: 'l2' } }] : []),
      ];
    });
    this.metrics.collect('hotpath_cache_redis_dropped_writes_total', 'Cache writes to Redis given up because Redis was unavailable.', 'counter', () => cache.stats().l3?.droppedWrites ?? 0);
    this.metrics.collect('hotpath_cache_bloom_skips_total', 'Redis lookups skipped because the bloom filter knew the key was never written.', 'counter', () => cache.stats().l3?.bloomSkips ?? 0);
    this.metrics.collect('hotpath_cache_loads_total', 'getOrLoad loader runs.', 'counter', () => cache.stats().loads);
  }

  /**
   * The task queue `name`. With options: creates it (a function handler runs on this thread, a
   * module URL on the worker threads; see QueueOptions); with `durable`, on BullMQ through the
   * engine's Redis, shared by every process that opens the same name. Without options: returns the
   * open queue `name`.
   * @throws TypeError / RangeError naming a bad option; TypeError when `name` is already open
   *   (with options) or unknown (without), or `durable` without Redis; ERR_HOTPATH_CLOSED after close().
   */
  queue<P = unknown, R = unknown>(name: string, options: DurableQueueOptions<P, R> & { durable: true | DurableOptions }): DurableQueue<P, R>;
  queue<P = unknown, R = unknown>(name: string, options: QueueOptions<P, R>): Queue<P, R>;
  queue<P = unknown, R = unknown>(name: string): Queue<P, R> | DurableQueue<P, R>;
  queue<P = unknown, R = unknown>(name: string, options?: QueueOptions<P, R> | DurableQueueOptions<P, R>): Queue<P, R> | DurableQueue<P, R> {
    if (this.#closed !== undefined) throw new ClosedError('engine');
    const known = this.#queues.get(name);
    if (options === undefined) {
      if (known === undefined) throw new TypeError(`no queue named ${JSON.stringify(name)}: create it with engine.queue(name, { handler, … })`);
      return known as Queue<P, R> | DurableQueue<P, R>;
    }
    if (known !== undefined && !known.closed) throw new TypeError(`queue ${JSON.stringify(name)} already exists; get it with engine.queue(name) or close it first`);
    if (options !== null && typeof options === 'object' && options.handler !== undefined && typeof options.handler !== 'function' && this.#cache === undefined) {
      // A module handler's ctx.cache attaches, on its worker, to the engine's cache: its settings
      // are published here so the handler finds them without the caller touching engine.cache
      // first (review38). Only the settings: its shared memory is carved by the first thread that
      // uses it, and Redis is not touched (review40: building it here cost 8 MiB and a connection).
      Cache.declare(this.runtime.thread, this.#cacheOptions);
    }
    const times = this.#queueMetrics();
    const context = {
      pool: this.runtime.pool,
      codec: this.runtime.thread.codec,
      limiter: (n: string) => this.limiter(n),
      cache: () => this.cache,
      breaker: (n: string) => this.breaker(n),
    };
    let q: Queue<P, R> | DurableQueue<P, R>;
    if (options.durable !== undefined && options.durable !== false) {
      if (this.redis === undefined) throw new TypeError('options.durable needs an engine with Redis: createEngine({ redis: url })');
      const o = resolveQueueOptions({ ...options, durable: false });
      q = new DurableQueue<P, R>(name, options as DurableQueueOptions<P, R>, {
        redis: this.redis,
        executor: createExecutor(name, o.handler, o.handlerExport, o.killAfterMs, context),
        clock: this.clock,
        workers: this.runtime.pool.workers,
        waitTime: times.wait,
        runTime: times.run,
      });
    } else {
      q = new Queue<P, R>(name, options as QueueOptions<P, R>, {
        ...context,
        clock: this.clock,
        workers: this.runtime.pool.workers,
        waitTime: times.wait,
        runTime: times.run,
      });
    }
    this.#queues.set(name, q);
    return q;
  }

  /** Registers the queue metrics once (they read every queue of the engine at scrape time). */
  #queueMetrics(): { wait: LatencyRecorder; run: LatencyRecorder } {
    if (this.#queueTimes !== undefined) return this.#queueTimes;
    const m = this.metrics;
    this.#queueTimes = {
      wait: m.histogram('hotpath_queue_wait_seconds', 'Time tasks of every queue waited before an attempt started.'),
      run: m.histogram('hotpath_task_duration_seconds', 'Time task attempts of every queue took, from start (a module: sent to a worker) to answer.'),
    };
    // Depth is this process's view of the in-memory queues; a durable queue's depth lives in Redis
    // (its counts() is a round trip), so it reports its task events only.
    const local = (): Array<Queue<any, any>> => [...this.#queues.values()].filter((q): q is Queue<any, any> => q instanceof Queue);
    const queues = (): Array<Queue<any, any> | DurableQueue<any, any>> => [...this.#queues.values()];
    m.collect('hotpath_queue_depth', 'Tasks by queue and state (queued, delayed, running), in-memory queues.', 'gauge', () => local().flatMap((q) => {
      const c = q.counts();
      return (['queued', 'delayed', 'running'] as const).map((state) => ({ value: c[state], labels: { queue: q.name, state } }));
    }));
    m.collect('hotpath_queue_dead_letters', 'Dead letters kept, by in-memory queue.', 'gauge', () => local().map((q) => ({ value: q.counts().dead, labels: { queue: q.name } })));
    m.collect('hotpath_queue_tasks_total', 'Task events by queue (this process): submitted, completed, failed (attempts), retried, dead, cancelled.', 'counter', () => queues().flatMap((q) => {
      const t = q.totals();
      return (['submitted', 'completed', 'failed', 'retried', 'dead', 'cancelled'] as const).map((event) => ({ value: t[event], labels: { queue: q.name, event } }));
    }));
    return this.#queueTimes;
  }

  /**
   * Compresses `data` (bytes or a UTF-8 string): LZ4 by default, in the hotpath frame unless
   * `format: 'native'`. Inputs of 64 KiB or more run on the workers (in parallel blocks when
   * large), so the event loop stays free. See CompressOptions.
   * @throws (rejects) TypeError / RangeError naming a bad option; ERR_HOTPATH_CODEC_UNAVAILABLE
   *   (zstd compression before Node 22.15); ERR_HOTPATH_CLOSED after close().
   */
  compress(data: Input, options?: CompressOptions): Promise<Buffer> {
    if (this.#closed !== undefined) return Promise.reject(new ClosedError('engine'));
    return this.compressor.compress(data, options);
  }

  /**
   * Decompresses a hotpath frame, an LZ4 frame, zstd, gzip or zlib data (raw brotli with
   * `codec: 'brotli'`), refusing to produce more than `maxOutputBytes` (default 256 MiB).
   * @throws (rejects) ERR_HOTPATH_CORRUPT_FRAME, ERR_HOTPATH_UNKNOWN_FORMAT, ERR_HOTPATH_OUTPUT_LIMIT.
   */
  decompress(data: Uint8Array, options?: DecompressOptions): Promise<Buffer> {
    if (this.#closed !== undefined) return Promise.reject(new ClosedError('engine'));
    return this.compressor.decompress(data, options);
  }

  /** compress() on the calling thread, whatever the size. */
  compressSync(data: Input, options?: CompressOptions): Buffer {
    return this.compressor.compressSync(data, options);
  }

  /** decompress() on the calling thread, whatever the size. */
  decompressSync(data: Uint8Array, options?: DecompressOptions): Buffer {
    return this.compressor.decompressSync(data, options);
  }

  /**
   * Runs a task registered on the worker pool (`engine.runtime.pool.register`) with `payload`.
   * @throws (rejects) ERR_HOTPATH_CLOSED after close().
   */
  run(task: string, payload?: unknown, options?: { signal?: AbortSignal }): Promise<unknown> {
    if (this.#closed !== undefined) return Promise.reject(new ClosedError('engine'));
    return this.runtime.run(task, payload, options);
  }

  /**
   * Closes the engine: closes its queues (each waits up to `closeTimeoutMs` for its tasks, then
   * rejects the rest with ERR_HOTPATH_CLOSED), the cache, then waits up to `closeTimeoutMs` for
   * worker tasks in flight, rejects the rest with ERR_HOTPATH_CLOSED, stops the workers, and takes the engine's metrics out of
   * the application's registry when `metrics` was one. Idempotent; afterwards no handle is left open.
   */
  close(): Promise<void> {
    this.#closed ??= Promise.all([...this.#queues.values()].map((q) => q.close(this.#closeTimeoutMs).catch(() => undefined)))
      .then(() => this.#cache?.close())
      .catch(() => undefined)
      .then(() => {
        for (const list of this.#breakers.values()) for (const { breaker } of list) breaker.dispose();
        for (const lb of [...this.#balancers]) lb.close();
      })
      .then(() => Promise.all([this.runtime.close(this.#closeTimeoutMs), this.redis?.close()]))
      // Out of the application's registry (metrics: <Registry>), so another engine can register
      // there (review36: the collectors stayed, and the next createEngine on it threw).
      .finally(() => this.metrics.close())
      .then(() => undefined);
    return this.#closed;
  }

  /** `await using engine = await createEngine()` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Creates an engine: a fixed shared memory with the WASM kernels, and `workers` threads
 * attached to it. Resolves when every worker listens on its channel.
 * @throws TypeError / RangeError (synchronously-validated, returned as a rejection) naming a bad option.
 */
export async function createEngine(options?: EngineOptions): Promise<Engine> {
  const settings = resolveOptions(options);
  checkCacheOptions(settings.cache);
  // Validated before any thread starts; the pool is attached once the runtime exists.
  let pool: WorkerPool | undefined;
  const compressor = new Compressor({ module: kernelModule(), pool: () => Promise.resolve(pool!) }, settings.compress, 'options.compress');
  const runtime = await Runtime.create(settings.runtime);
  // Anything that throws from here on closes what was started: the worker threads, the Redis
  // client, and the metrics registered in the application's registry (review36: a createEngine
  // that threw after this line left its workers running).
  let redis: RedisConnector | undefined;
  let metrics: Metrics | undefined;
  try {
    pool = runtime.pool;
    Compressor.registerTasks(pool);
    if (settings.redis !== undefined) {
      redis = await RedisConnector.connect(settings.redis, {
        timeoutMs: settings.redisTimeoutMs,
        connectTimeoutMs: settings.redisConnectTimeoutMs,
        subscriberCheckMs: settings.redisSubscriberCheckMs,
        clock: settings.clock,
      });
    }
    metrics = createMetrics(runtime, settings.metrics, redis);
    return new Engine(runtime, settings.clock, settings.closeTimeoutMs, metrics, redis, settings.redisTimeoutMs, compressor, settings.cache);
  } catch (err) {
    metrics?.close();
    await Promise.all([runtime.close(0), redis?.close()]).catch(() => undefined);
    throw err;
  }
}

/** The engine's metrics: the registry, the worker histograms task, the runtime's collectors. */
function createMetrics(runtime: Runtime, option: EngineSettings['metrics'], redis: RedisConnector | undefined): Metrics {
  const table: MetricsTable | undefined = runtime.thread.metrics.table;
  const p = runtime.pool;
  if (table !== undefined) p.register(HISTOGRAM_TASK, HISTOGRAM_TASK_MODULE, 'histograms');
  const metrics = new Metrics(table, option === true ? undefined : option, (skip) => p.broadcastEach(HISTOGRAM_TASK, undefined, skip), option === true);
  try {
    metrics.collect('hotpath_tasks_inflight', 'Tasks sent to the worker pool and not yet answered.', 'gauge', () => p.inflight);
    metrics.collect('hotpath_workers', 'Worker threads attached to the channel.', 'gauge', () => p.threads);
    metrics.collect('hotpath_worker_exits_total', 'Worker threads that died and were replaced.', 'counter', () => p.exits);
    metrics.collect('hotpath_arena_free_bytes', 'Bytes of the shared arena not yet given to a region.', 'gauge', () => runtime.arena.freeBytes);
    if (redis !== undefined) {
      const r = redis;
      const states = { closed: 0, 'half-open': 1, open: 2 } as const;
      metrics.collect('hotpath_redis_breaker_state', 'Redis circuit breaker: 0 closed, 1 half-open, 2 open.', 'gauge', () => states[r.breaker.state]);
      metrics.collect('hotpath_redis_up', '1 when the Redis connection is ready.', 'gauge', () => (r.client.status === 'ready' ? 1 : 0));
      metrics.collect('hotpath_redis_commands_total', 'Redis commands by result.', 'counter', () => {
        const s = r.stats();
        const failed = s.failures - s.timeouts;
        return [
          { value: s.commands - s.failures - s.replyErrors, labels: { result: 'ok' } },
          { value: s.replyErrors, labels: { result: 'reply_error' } },
          { value: s.timeouts, labels: { result: 'timeout' } },
          { value: Math.max(0, failed), labels: { result: 'failed' } },
          { value: s.rejected, labels: { result: 'rejected_open' } },
        ];
      });
    }
    if (metrics.registry !== undefined) {
      metrics.counter('hotpath_limiter_decisions_total', 'Rate limiter decisions by result (allowed, denied) and source (local, redis, lease, insurance).', ['limiter', 'result', 'source']);
      metrics.gauge('hotpath_limiter_fallback', '1 while the limiter decides by its insurance policy because Redis is unavailable.', ['limiter']);
    }
  } catch (err) {
    metrics.close();
    throw err;
  }
  return metrics;
}
