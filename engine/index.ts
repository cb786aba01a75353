/**
 * hotpath — the main entry point. Importing it starts no thread and opens no handle.
 */
export { createEngine, Engine } from './engine.js';
export type { EngineOptions, ChannelOptions, Clock } from './options.js';
export { DEFAULTS } from './options.js';
export {
  HotpathError, ErrorCodes, ClosedError, ArenaExhaustedError, RegionConflictError, WorkerExitedError,
  TaskFailedError, UnknownTaskError, WasmLoadError, TimeoutError, CancelledError, QueueFullError,
} from './errors.js';
export type { ErrorCode } from './errors.js';
export { RedisUnavailableError, RedisCommandError, ValueTooLargeError, CorruptValueError } from './errors.js';
export { RedisConnector, hashTagged, type RedisConfig, type ConnectorOptions, type Script } from './redis/connector.js';
export {
  Balancer, BALANCER_ALGORITHMS, BALANCER_DEFAULTS, type BalancerOptions, type BalancerAlgorithm, type Backend, type BackendOptions,
  type BackendState, type OutlierOptions, type PickOptions, type BalancerRunOptions,
} from './balance/balancer.js';
export {
  loadtest, loadtestCsv, loadtestHtml, CSV_COLUMNS, parseDuration, parseStages, readScenarios, LOADTEST_DEFAULTS,
  type LoadtestOptions, type LoadtestResult, type LoadtestProgress, type Percentiles, type TimelineRow, type SpectrumPoint,
  type Scenario, type Stage,
} from './loadtest/index.js';
export { createPool, Pool, POOL_DEFAULTS } from './pool/pool.js';
export type { PoolOptions, PoolCreateRetryOptions, AcquireOptions, UseOptions, DrainOptions, LeakReport, PoolEvents, PoolStats } from './pool/pool.js';
export { HashRing, DEFAULT_VNODES, DEFAULT_MAGLEV_TABLE_SIZE, type HashRingOptions, type RingAlgorithm } from './balance/ring.js';
export { HEALTH_DEFAULTS, type HealthOptions, type CheckFunction, type CheckTarget } from './balance/health.js';
export { NoBackendError, UpstreamError, PoolTimeoutError, PoolCreateError, PoolFullError } from './errors.js';
export { CircuitBreaker, BreakerOpenError, BREAKER_DEFAULTS, type BreakerOptions, type BreakerState, type BreakerStats, type BreakerRunOptions } from './resilience/breaker.js';
export { ValueCodec, ExactViews, type CodecOptions } from './codec/codec.js';
export type { Metrics } from './observe/metrics.js';
export type { SharedCounter, SharedGauge, LatencyRecorder, CounterChild, GaugeChild } from './observe/thread-metrics.js';
export type { Region } from './runtime/arena.js';
export type { Runtime } from './runtime/runtime.js';
export type { WorkerPool, RunOptions, TaskDefinition, PoolCall } from './runtime/pool.js';
export type { TaskContext, TaskFunction } from './runtime/worker.js';
export { xxh32Bytes } from './runtime/hash.js';
export { Limiter, LIMITER_DEFAULTS, type LimiterOptions, type LimiterDeps, type Insurance, type LimiterSpec } from './limiter/limiter.js';
export type { AdaptiveOptions } from './limiter/adaptive.js';
export type { Decision, Algorithm, RateLimiter } from './limiter/types.js';
export { Compressor, COMPRESS_DEFAULTS } from './compress/compressor.js';
export type { Codec, CompressOptions, DecompressOptions, CompressorOptions, Input } from './compress/compressor.js';
export { CorruptFrameError, UnknownFormatError, OutputLimitError, CodecUnavailableError } from './errors.js';
export { Cache, type CacheOptions, type CacheDeps, type CacheStats, type TierStats, type SetOptions, type GetOrLoadOptions, type Loader, type LoaderContext, type L1Options as CacheL1Options, type L2Options as CacheL2Options, type L3Options as CacheL3Options, type CacheBloomOptions } from './cache/cache.js';
export { Queue, type QueueDeps } from './queue/queue.js';
export { DurableQueue, DURABLE_DEFAULTS, type DurableOptions, type DurableQueueOptions, type DurableDeps } from './queue/durable.js';
export { QUEUE_DEFAULTS } from './queue/options.js';
export { PRIORITY_LEVELS, MAX_PRIORITY } from './queue/types.js';
export type {
  QueueOptions, SubmitOptions, TaskHandle, TaskStatus, TaskState, DeadLetter, QueueCounts, QueueEvents, RetryOptions,
  Handler, HandlerFunction, HandlerContext, BackoffFunction, PriorityName, ErrorInfo,
} from './queue/types.js';
