/**
 * createEngine's options: one type, one DEFAULTS, one validation at the public boundary that
 * names the option in its message. Internals never re-validate.
 */
import { availableParallelism } from 'node:os';
import type { ResourceLimits } from 'node:worker_threads';
import type { Registry } from 'prom-client';
import type { RedisConfig } from './redis/connector.js';
import { checkCapacity } from './runtime/channel.js';
import { MAX_MEMORY } from './runtime/wasm.js';
import { poolSlots } from './runtime/pool.js';
import { metricsStripes } from './runtime/thread.js';
import { tableBytes } from './observe/table.js';
import type { RuntimeSettings } from './runtime/runtime.js';
import type { CompressorOptions } from './compress/compressor.js';
import type { CacheOptions } from './cache/cache.js';

/** The time source of every component, in milliseconds. */
export interface Clock {
  now(): number;
}

/**
 * The default clock. It reads `Date.now()` at each call (not a captured reference), so
 * `vi.useFakeTimers()` installed after `createEngine` still moves it. Components compare a
 * clock with this one to know it is the system clock (the limiter may then use a coarse clock).
 */
export const SYSTEM_CLOCK: Clock = Object.freeze({ now: () => Date.now() });

/** Tuning of the worker channel. Defaults suit a 2-core machine. */
export interface ChannelOptions {
  /** Bytes of each ring's data area (one request and one response ring per worker). Power of two, 4 KiB .. 1 GiB. Default 1 MiB. */
  ringBytes?: number;
  /**
   * How long (µs) an idle worker, and the main thread while tasks are in flight, keep polling
   * before they sleep. Polling makes a round trip take microseconds instead of the 25–40 µs a
   * wake-up costs, and burns that much CPU after each burst. 0 disables it. Default 200.
   */
  spinUs?: number;
  /** How many workers may poll at all (the others sleep at once). Default max(1, cores − 1): on 2 cores, one. */
  spinWorkers?: number;
}

/** Options of {@link createEngine}. Every field is optional. */
export interface EngineOptions {
  /** Worker threads. Default max(1, availableParallelism() − 1). */
  workers?: number;
  /** Bytes of the shared arena (fixed, never grown), rounded up to 64 KiB. Default 64 MiB. */
  memory?: number;
  /** The time source of every component (ms). Default `Date.now`. */
  clock?: Clock;
  /** Channel tuning. */
  channel?: ChannelOptions;
  /** `resourceLimits` of each worker thread (worker_threads). Default none. */
  workerResourceLimits?: ResourceLimits;
  /** How long close() waits for tasks in flight before rejecting them (ms). Default 5000. */
  closeTimeoutMs?: number;
  /** How long createEngine() waits for the workers to start (ms). Default 30000. */
  startTimeoutMs?: number;
  /**
   * Metrics: `true` (default) registers into a registry of ours, with the default process
   * metrics; a prom-client `Registry` registers hotpath's collectors into yours (no default
   * metrics added); `false` turns them off (every counter becomes a no-op).
   */
  metrics?: boolean | Registry;
  /**
   * Series the shared metrics table holds (counter/gauge label combinations). Default 4096. Each
   * costs 128 + 8 × (workers + 4) bytes of `memory` (a key and a counter cell per thread).
   * @throws RangeError (createEngine) when the table and the channel rings do not fit in `memory`.
   */
  metricsCapacity?: number;
  /**
   * Redis: a URL (`redis://`, `rediss://` for TLS, `redis://user:pass@host:port/db`), ioredis
   * options (Sentinel too), or `{ cluster: [urls…] }`. Absent or '' = embedded, no Redis.
   */
  redis?: RedisConfig;
  /** Default timeout of every Redis command (ms). Default 50. */
  redisTimeoutMs?: number;
  /** How long createEngine() waits for Redis to be ready before going on in fallback mode (ms). Default 2000. */
  redisConnectTimeoutMs?: number;
  /** How often the Redis subscriber's hearing is checked (ms; 0 = never; see RedisConnector's subscriberCheckMs). Default 1000. */
  redisSubscriberCheckMs?: number;
  /** engine.compress / decompress tuning (offloadBytes, blockSize, zlibConcurrency, maxOutputBytes). */
  compress?: CompressorOptions;
  /** engine.cache settings (ttl, l1, l2, l3, bloom…; see CacheOptions). Validated by createEngine; the cache is built on first use of engine.cache. */
  cache?: CacheOptions;
}

/** Bytes of each thread's scratch region (long-key hashing, staging). */
const SCRATCH_BYTES = 64 * 1024;

export const DEFAULTS = {
  workers: Math.max(1, availableParallelism() - 1),
  memory: 64 * 1024 * 1024,
  ringBytes: 1024 * 1024,
  spinUs: 200,
  spinWorkers: Math.max(1, availableParallelism() - 1),
  closeTimeoutMs: 5000,
  startTimeoutMs: 30_000,
  metricsCapacity: 4096,
  redisTimeoutMs: 50,
  redisConnectTimeoutMs: 2000,
  redisSubscriberCheckMs: 1000,
} as const;

const KNOWN = new Set(['workers', 'memory', 'clock', 'channel', 'workerResourceLimits', 'closeTimeoutMs', 'startTimeoutMs', 'metrics', 'metricsCapacity', 'redis', 'redisTimeoutMs', 'redisConnectTimeoutMs', 'redisSubscriberCheckMs', 'compress', 'cache']);
const KNOWN_COMPRESS = new Set(['offloadBytes', 'blockSize', 'zlibConcurrency', 'maxOutputBytes']);
const KNOWN_CHANNEL = new Set(['ringBytes', 'spinUs', 'spinWorkers']);
const RESOURCE_LIMITS = new Set(['maxOldGenerationSizeMb', 'maxYoungGenerationSizeMb', 'codeRangeSizeMb', 'stackSizeMb']);

/** Validated engine settings. */
export interface EngineSettings {
  runtime: RuntimeSettings;
  clock: Clock;
  closeTimeoutMs: number;
  /** undefined: metrics off; true: our registry; a Registry: the user's. */
  metrics: true | Registry | undefined;
  /** undefined: embedded, no Redis. */
  redis: RedisConfig | undefined;
  redisTimeoutMs: number;
  redisConnectTimeoutMs: number;
  redisSubscriberCheckMs: number;
  /** Checked by the Compressor (keys checked here). */
  compress: CompressorOptions;
  /** Checked by the Cache (on first use of engine.cache). */
  cache: CacheOptions;
}

function int(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`options.${name} must be an integer between ${min} and ${max}, got ${describe(v)}`);
  }
  return v;
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (v === null || typeof v !== 'object') return String(v);
  return Array.isArray(v) ? 'an array' : 'an object';
}

function plainObject(name: string, v: unknown): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new TypeError(`${name} must be an object, got ${describe(v)}`);
  }
  return v as Record<string, unknown>;
}

function checkedKeys(name: string, v: unknown, known: Set<string>): Record<string, unknown> {
  const o = plainObject(name, v);
  unknownKeys(name, o, known);
  return o;
}

function unknownKeys(name: string, o: Record<string, unknown>, known: Set<string>): void {
  for (const k of Object.keys(o)) {
    if (!known.has(k)) throw new TypeError(`${name}.${k} is not a known option (known: ${[...known].join(', ')})`);
  }
}

/**
 * Validates `options` and fills in the defaults.
 * @throws TypeError / RangeError naming the offending option.
 */
export function resolveOptions(options: EngineOptions | undefined): EngineSettings {
  const o = options === undefined ? {} : plainObject('options', options);
  unknownKeys('options', o, KNOWN);
  const workers = o.workers === undefined ? DEFAULTS.workers : int('workers', o.workers, 1, 64);
  const memoryBytes = o.memory === undefined ? DEFAULTS.memory : int('memory', o.memory, 1024 * 1024, MAX_MEMORY);
  let clock: Clock = SYSTEM_CLOCK;
  if (o.clock !== undefined) {
    const c = plainObject('options.clock', o.clock);
    if (typeof c.now !== 'function') throw new TypeError(`options.clock.now must be a function, got ${describe(c.now)}`);
    clock = c as unknown as Clock;
  }
  const ch = o.channel === undefined ? {} : plainObject('options.channel', o.channel);
  unknownKeys('options.channel', ch, KNOWN_CHANNEL);
  const ringBytes = ch.ringBytes === undefined ? DEFAULTS.ringBytes : (ch.ringBytes as number);
  checkCapacity(ringBytes, 'channel.ringBytes');
  const spinUs = ch.spinUs === undefined ? DEFAULTS.spinUs : int('channel.spinUs', ch.spinUs, 0, 1_000_000);
  const spinWorkers = ch.spinWorkers === undefined ? DEFAULTS.spinWorkers : int('channel.spinWorkers', ch.spinWorkers, 0, 64);
  let resourceLimits: ResourceLimits | undefined;
  if (o.workerResourceLimits !== undefined) {
    resourceLimits = plainObject('options.workerResourceLimits', o.workerResourceLimits) as ResourceLimits;
    // Node's Worker takes these four; anything else was silently ignored, and a bad value made
    // every worker die at start-up (review36).
    for (const [k, v] of Object.entries(resourceLimits)) {
      if (!RESOURCE_LIMITS.has(k)) throw new TypeError(`options.workerResourceLimits.${k} is not a known limit (${[...RESOURCE_LIMITS].join(', ')})`);
      if (v !== undefined && (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v))) {
        throw new RangeError(`options.workerResourceLimits.${k} must be a positive number (MB), got ${String(v)}`);
      }
    }
  }
  const closeTimeoutMs = o.closeTimeoutMs === undefined ? DEFAULTS.closeTimeoutMs : int('closeTimeoutMs', o.closeTimeoutMs, 0, 2 ** 31 - 1);
  const startTimeoutMs = o.startTimeoutMs === undefined ? DEFAULTS.startTimeoutMs : int('startTimeoutMs', o.startTimeoutMs, 1, 2 ** 31 - 1);
  let metrics: true | Registry | undefined = true;
  if (o.metrics === false) metrics = undefined;
  else if (o.metrics !== undefined && o.metrics !== true) {
    const r = o.metrics as Partial<Registry>;
    if (r === null || typeof r !== 'object' || typeof r.registerMetric !== 'function' || typeof r.metrics !== 'function') {
      throw new TypeError(`options.metrics must be a boolean or a prom-client Registry, got ${describe(o.metrics)}`);
    }
    metrics = o.metrics as Registry;
  }
  const metricsCapacity = metrics === undefined ? 0
    : o.metricsCapacity === undefined ? DEFAULTS.metricsCapacity : int('metricsCapacity', o.metricsCapacity, 16, 1 << 20);
  const redis = resolveRedis(o.redis);
  const redisTimeoutMs = o.redisTimeoutMs === undefined ? DEFAULTS.redisTimeoutMs : int('redisTimeoutMs', o.redisTimeoutMs, 1, 600_000);
  const redisConnectTimeoutMs = o.redisConnectTimeoutMs === undefined ? DEFAULTS.redisConnectTimeoutMs
    : int('redisConnectTimeoutMs', o.redisConnectTimeoutMs, 0, 600_000);
  const redisSubscriberCheckMs = o.redisSubscriberCheckMs === undefined ? DEFAULTS.redisSubscriberCheckMs
    : int('redisSubscriberCheckMs', o.redisSubscriberCheckMs, 0, 600_000);
  // Per thread (main + every pool slot) a scratch region and its 64-byte result area; the rest
  // of what start-up carves (codec structures, pool table, …) fits in the 2 MiB margin.
  const scratch = (poolSlots(workers) + 1) * (SCRATCH_BYTES + 128);
  const rings = poolSlots(workers) * 2 * (ringBytes + 128) + scratch;
  if (rings + 2 * 1024 * 1024 > memoryBytes) {
    throw new RangeError(
      `options.memory (${memoryBytes} bytes) cannot hold the channel rings of ${workers} workers ` +
        `(${rings} bytes with channel.ringBytes = ${ringBytes}, with each thread's scratch); raise memory or lower channel.ringBytes`,
    );
  }
  // The metrics table: per series a 128-byte key and a counter cell per thread (table.ts).
  const table = metricsCapacity === 0 ? 0 : tableBytes(metricsCapacity, metricsStripes(poolSlots(workers)));
  if (rings + table + 2 * 1024 * 1024 > memoryBytes) {
    throw new RangeError(
      `options.memory (${memoryBytes} bytes) cannot hold the metrics table of ${metricsCapacity} series for ${workers} workers ` +
        `(${table} bytes: 128 + 8 × (workers + 4) per series) beside the channel rings and scratch (${rings} bytes); raise memory or lower metricsCapacity`,
    );
  }
  return {
    runtime: {
      memoryBytes, workers, ringBytes, spinUs, spinWorkers, scratchBytes: SCRATCH_BYTES, startTimeoutMs, metricsCapacity,
      ...(resourceLimits ? { resourceLimits } : {}),
    },
    clock,
    closeTimeoutMs,
    metrics,
    redis,
    redisTimeoutMs,
    redisConnectTimeoutMs,
    redisSubscriberCheckMs,
    compress: o.compress === undefined ? {} : (checkedKeys('options.compress', o.compress, KNOWN_COMPRESS) as CompressorOptions),
    cache: o.cache === undefined ? {} : (plainObject('options.cache', o.cache) as CacheOptions),
  };
}

function resolveRedis(v: unknown): RedisConfig | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'string') {
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      throw new TypeError(`options.redis must be a redis:// or rediss:// URL, got an unparsable string`);
    }
    if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
      throw new TypeError(`options.redis must be a redis:// or rediss:// URL, got protocol ${JSON.stringify(u.protocol)}`);
    }
    return v;
  }
  const o = plainObject('options.redis', v);
  if ('cluster' in o) {
    if (!Array.isArray(o.cluster) || o.cluster.length === 0) throw new TypeError('options.redis.cluster must be a non-empty array of URLs or { host, port }');
    for (const n of o.cluster) {
      if (typeof n !== 'string' && (n === null || typeof n !== 'object' || typeof (n as { host?: unknown }).host !== 'string')) {
        throw new TypeError(`options.redis.cluster entries must be URLs or { host, port }, got ${describe(n)}`);
      }
    }
  }
  return o as RedisConfig;
}
