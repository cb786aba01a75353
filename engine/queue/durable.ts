/**
 * The durable task queue: the queue's contract (types.ts) backed by BullMQ on the engine's Redis,
 * so several processes — or machines — share one queue: any of them submits, any of them runs
 * (on its hotpath executor: a function on its main thread, a module on its worker threads).
 *
 * What maps to what in BullMQ (all keys under `<prefix>:<name>:…`, prefix default `{hotpath:q}`: a
 * hash tag, so each BullMQ queue lives in one Cluster slot as BullMQ's Lua scripts require):
 * ```
 *  submit / submitMany    Queue.add / Queue.addBulk; data = { p: base64 of the ValueCodec's bytes,
 *                         t: per-task timeout, s: submitter, u: 1 for an id of the caller's };
 *                         the result (returnvalue) is the codec's bytes in base64 too, null for undefined
 *  priority p             BullMQ priority p + 1_000_001: [-1e6, 1e6] → [1, 2_000_001] (BullMQ's
 *                         range is 1 … 2^21 − 1, lower first; 0 would mean "before every prioritized
 *                         job", so it is never used). FIFO within a level is BullMQ's own counter.
 *  delayMs                delay;   id → jobId (escaped where BullMQ refuses it, see toJobId);
 *                         auto ids are `<instance id>.<counter>`
 *  retry.attempts         attempts (fixed at submit, stored with the job)
 *  retry back-off         backoff { type: 'hotpath' } and the Worker's settings.backoffStrategy,
 *                         which answers the delay the processor computed (backoffDelay(): cap,
 *                         jitter, functions) with the consuming process's retry options
 *  retryable(err) false   UnrecoverableError (BullMQ fails the job without retrying)
 *  dead letters           the BullMQ queue `<name>:dead` (prefix `<prefix>:<name>`, name `dead`:
 *                         keys `<prefix>:<name>:dead:…`, same hash tag), one waiting job per letter,
 *                         written by the consuming process BEFORE the job is moved to failed
 *  results                see below: not BullMQ's QueueEvents, whose reading of every event of the
 *                         queue cost ~25% of the throughput in bench/queue-durable.bench.ts
 *  statusRetention        removeOnComplete / removeOnFail { count }
 *  pause / resume         Queue.pause / resume (global: every process stops fetching)
 *  crash recovery         BullMQ's stalled-job checker: a job whose lock (lockDurationMs) is not
 *                         renewed goes back to wait (maxStalledCount times, then it fails → dead)
 * ```
 * Results back to the submitter: a job's data names its submitter (a random id per DurableQueue
 * instance). The process that ran it settles the result itself when it also submitted it (no
 * message); otherwise, once BullMQ has recorded the outcome, it PUBLISHes it on the submitter's
 * channel `<prefix>:<name>:r:<submitter>` — or, for a task with an id of the caller's (which
 * several processes may be waiting for, see dedupe), on the queue's channel `<prefix>:<name>:r`.
 * Submitters listen on the engine connector's one subscriber connection. Pub/sub can lose a
 * message (the submitter's connection was down; the runner died between BullMQ's write and the
 * PUBLISH; a job removed by someone else), so a submitter also reads the job's record in Redis for
 * any result it has awaited for 2 s, then at growing intervals (up to 30 s), and for all of them
 * when its subscriber connection comes back.
 *
 * Guarantee: at least once. A task is in Redis once submit() resolved; a process killed while it
 * runs a task loses nothing (another process runs it again after lockDurationMs), so handlers
 * should be idempotent.
 *
 * Error reasons: BullMQ keeps an error as a string (`failedReason`); we write it as Node prints
 * its own errors, `Name [CODE]: message`, and parse it back for submitters in other processes,
 * which get an Error with that name, code and message (the process that ran the task gives its
 * own submitters the original error object).
 */
import { isWellFormed } from '../text.js';
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { setTimeout, clearTimeout } from 'node:timers';
import { Queue as BullQueue, UnrecoverableError, Worker as BullWorker, type Job, type JobsOptions, type JobType } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { CancelledError, ClosedError, HotpathError, QueueFullError, RedisCommandError, RedisUnavailableError } from '../errors.js';
import { SYSTEM_CLOCK, type Clock } from '../options.js';
import { ValueCodec } from '../codec/codec.js';
import { withTimeout, type RedisConnector } from '../redis/connector.js';
import type { LatencyRecorder } from '../observe/thread-metrics.js';
import { createExecutor, FunctionExecutor, Settled, type AttemptHandle, type Executor } from './executor.js';
import { backoffDelay, resolveQueueOptions, resolveSubmit, type ResolvedQueueOptions, type ResolvedSubmit } from './options.js';
import { errorInfo } from './queue.js';
import { MAX_PRIORITY, type DeadLetter, type ErrorInfo, type QueueCounts, type QueueEvents, type QueueOptions, type SubmitOptions, type TaskHandle, type TaskState, type TaskStatus } from './types.js';

/** Settings only the durable queue has (`durable: { … }` instead of `durable: true`). */
export interface DurableOptions {
  /**
   * Prefix of every Redis key (BullMQ's `prefix`). Default `'{hotpath:q}'`. It must hold a hash
   * tag `{…}` on a Redis Cluster. All queues with one prefix share one Cluster slot: give busy
   * queues prefixes of their own (`'{hotpath:q:thumbs}'`) to spread them over the nodes.
   */
  prefix?: string;
  /** Whether this process runs tasks (a BullMQ Worker). false: it only submits. Default true. */
  consume?: boolean;
  /**
   * How long a running task's lock lasts (ms); renewed at half of it while the task runs. A process
   * that dies mid-task frees its tasks once the lock expires. Default 30_000 (BullMQ's).
   */
  lockDurationMs?: number;
  /** How often the worker looks for tasks whose lock expired (ms). Default 30_000 (BullMQ's). */
  stalledIntervalMs?: number;
  /** Times a task may be recovered from a dead process before it fails (and is dead-lettered). Default 1. */
  maxStalledCount?: number;
  /**
   * Timeout of each call this queue makes to Redis (ms): an unanswered call rejects with
   * ERR_HOTPATH_REDIS_UNAVAILABLE. submitMany adds 1 ms per 10 tasks. Default 2000.
   */
  commandTimeoutMs?: number;
  /**
   * Longest length of the event stream BullMQ writes for the queue (`streams.events.maxLen`: for
   * BullMQ's QueueEvents and dashboards; this queue does not read it). Default 10_000 (BullMQ's).
   */
  eventsMaxLen?: number;
}

/** The durable queue's options: QueueOptions, with `durable` true or its settings. */
export type DurableQueueOptions<P = unknown, R = unknown> = Omit<QueueOptions<P, R>, 'durable'> & { durable?: boolean | DurableOptions };

/** What a durable queue needs besides its options (engine.queue wires these). */
export interface DurableDeps {
  /** The engine's Redis connector: the queue opens its own connections from its configuration. */
  redis: RedisConnector;
  /**
   * Runs the attempts (the engine's: a module handler on its workers). Default: an executor of
   * `options.handler` on this thread (function handlers only).
   */
  executor?: Executor;
  /**
   * Encodes payloads and results for Redis. It must be self-contained (no shared structures):
   * other processes read what it writes. Default `new ValueCodec()`.
   */
  codec?: ValueCodec;
  /** Time source of timestamps and events (ms). Default Date.now. */
  clock?: Clock;
  /** Back-off jitter's random source, in [0, 1). Default Math.random. */
  random?: () => number;
  /** The worker thread count: a module handler's default concurrency is DURABLE_MODULE_CONCURRENCY per worker. */
  workers?: number;
  /** Wait and run time recorders (ms), for the tasks this process runs. */
  waitTime?: LatencyRecorder;
  runTime?: LatencyRecorder;
}

/** Default concurrency per worker thread of a durable queue's module handler (jobs locked at once). */
export const DURABLE_MODULE_CONCURRENCY = 16;

/** Retried jobs whose last back-off this process remembers (decorrelated jitter grows from it). */
const LAST_DELAY_LIMIT = 10_000;

export const DURABLE_DEFAULTS = {
  prefix: '{hotpath:q}',
  consume: true,
  lockDurationMs: 30_000,
  stalledIntervalMs: 30_000,
  maxStalledCount: 1,
  commandTimeoutMs: 2000,
  eventsMaxLen: 10_000,
} as const;

/** Our priority p is BullMQ priority p + PRIORITY_OFFSET (1 … 2_000_001 ≤ BullMQ's 2^21 − 1). */
export const PRIORITY_OFFSET = MAX_PRIORITY + 1;
/** How long a maxQueued count stays trusted (ms) before submit asks Redis again. */
const COUNT_TTL_MS = 1000;
/** drain() re-checks the counts at least this often (ms): delayed tasks come due without an event. */
const DRAIN_POLL_MS = 250;
/** A result awaited this long (ms) is looked up in Redis (a lost message); then at doubling intervals up to SWEEP_MAX_MS. */
const SWEEP_FIRST_MS = 2000;
const SWEEP_MAX_MS = 30_000;
/** Results looked up per sweep. */
const SWEEP_BATCH = 200;
const WAITING_STATES = new Set(['waiting', 'prioritized', 'paused', 'delayed', 'waiting-children']);
/** BullMQ counts its paused list too, though its JobType leaves it out. */
const PAUSED = 'paused' as JobType;

/** What a job's `data` holds. */
interface JobData {
  /** The payload: the codec's bytes in base64; absent for undefined. */
  p?: string;
  /** The per-task timeout (ms) when submit gave one. */
  t?: number;
  /** The submitter: its DurableQueue instance's id (its result channel). */
  s?: string;
  /** 1 when the id is the caller's: processes other than the submitter may await it (dedupe). */
  u?: 1;
}

/** A result message: the job id and its value (base64 or null) | its failure reason | cancelled. */
interface ResultMessage {
  j: string;
  v?: string | null;
  e?: string;
  x?: 1;
}

/** What a dead letter's job `data` holds. */
interface DeadData {
  p?: string;
  pr: number;
  e: ErrorInfo;
  a: number;
  s: number;
  f: number;
}

/** A submitter's wait for one task's outcome. */
interface Pending {
  id: string;
  handle: TaskHandle;
  resolve(v: unknown): void;
  reject(e: unknown): void;
  signal?: AbortSignal | undefined;
  onAbort?: (() => void) | undefined;
  /** When to look its job up in Redis, in case its message was lost (Date.now ms). */
  checkAt: number;
  checkEvery: number;
}

/** A task this process runs. */
interface Active {
  handle: AttemptHandle;
  /** cancel() stopped it: it ends cancelled (not retried, not dead-lettered). */
  cancelled: boolean;
  /** close() stopped it: its job went back to wait (another process runs it again). */
  abandoned: boolean;
  /** The job and the worker's lock token on it (close() hands the job back with them). */
  job: Job;
  token: string | undefined;
}

/** The outcome of a task this process ran for a submitter of this process (the original objects). */
type LocalOutcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Marks errors the processor threw on purpose (vs BullMQ's own, such as the stalled limit). */
const OURS = Symbol('hotpath.durable');

function noop(): void {}

/**
 * Names a job id must not have: a job's key is `<prefix>:<queue>:<jobId>`, so a job id equal to
 * one of the queue's own key names (BullMQ's QueueKeys, e.g. `meta`, `events`, `id`) landed on
 * that key (WRONGTYPE, or the queue's metadata read as a job); `metrics` and `dead` own key
 * families of their own (`…:metrics:failed`, the dead-letter queue `…:dead:…`) that a job's
 * auxiliary keys (`<jobId>:failed`, `<jobId>:lock`) would meet.
 */
const RESERVED_JOB_IDS = new Set([
  '', 'active', 'wait', 'waiting-children', 'paused', 'id', 'delayed', 'prioritized', 'stalled-check',
  'completed', 'failed', 'stalled', 'repeat', 'limiter', 'meta', 'events', 'pc', 'marker', 'de',
  // dn: deduplication keys; priority, delay: keys of older BullMQ versions (still deleted by
  // obliterate and a migration).
  'metrics', 'dead', 'dn', 'priority', 'delay',
]);

/**
 * A BullMQ job id for task id `id`. BullMQ refuses ids that are integers or hold ':', and we
 * need ids it accepts for every id the in-memory queue accepts: those, ids starting with '~' and
 * the names of the queue's own keys (RESERVED_JOB_IDS) become '~' + base64url(id); every other id
 * is used as is. Injective; see fromJobId.
 */
export function toJobId(id: string): string {
  if (id.includes(':') || id.startsWith('~') || `${parseInt(id, 10)}` === id || RESERVED_JOB_IDS.has(id)) {
    return `~${Buffer.from(id, 'utf8').toString('base64url')}`;
  }
  return id;
}

/** The task id of BullMQ job id `jobId` (the inverse of toJobId). */
export function fromJobId(jobId: string): string {
  return jobId.startsWith('~') ? Buffer.from(jobId.slice(1), 'base64url').toString('utf8') : jobId;
}

/** An error as BullMQ's failedReason: `Name [CODE]: message` (Node's own format). */
export function reasonOf(info: ErrorInfo): string {
  return `${info.name}${info.code === undefined ? '' : ` [${info.code}]`}: ${info.message}`;
}

const REASON = /^([A-Za-z_$][\w$]*)(?: \[([A-Z0-9_]+)\])?: ([\s\S]*)$/;

/** Parses a failedReason back; BullMQ's own reasons ("job stalled more than allowable limit") become an Error. */
export function parseReason(reason: string | undefined): ErrorInfo {
  const m = REASON.exec(reason ?? '');
  if (m === null) return { name: 'Error', message: reason ?? '' };
  return { name: m[1]!, message: m[3]!, ...(m[2] !== undefined ? { code: m[2] } : {}) };
}

/** An Error rebuilt from its picture (for submitters in another process than the one that ran it). */
function errorFrom(info: ErrorInfo, id: string): Error {
  if (info.code === 'ERR_HOTPATH_CANCELLED') return new CancelledError(`task "${id}"`);
  const e = new Error(info.message);
  Object.defineProperty(e, 'name', { value: info.name, configurable: true, writable: true });
  if (info.code !== undefined) (e as Error & { code?: string }).code = info.code;
  if (info.stack !== undefined) e.stack = info.stack;
  return e;
}

/** An error to throw to BullMQ: its message is the reason; its stack the original's. */
function bullError(err: unknown, unrecoverable: boolean): Error {
  const info = errorInfo(err);
  const e = unrecoverable ? new UnrecoverableError(reasonOf(info)) : new Error(reasonOf(info));
  if (info.stack !== undefined) e.stack = info.stack;
  (e as Error & { [OURS]?: true })[OURS] = true;
  (e as Error & { cause?: unknown }).cause = err;
  return e;
}

const CONNECTION_ERROR = /Connection is closed|Stream isn't writeable|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|max retries|connect|socket/i;

/** A Redis failure as the typed error the rest of hotpath uses. */
function classify(what: string, err: unknown): HotpathError {
  if (err instanceof HotpathError) return err;
  const message = (err as Error)?.message ?? String(err);
  const replyError = err instanceof Error && (err.name === 'ReplyError' || err.constructor?.name === 'ReplyError');
  if (!replyError && CONNECTION_ERROR.test(message)) return new RedisUnavailableError(`Redis ${what} failed: ${message}`, err);
  return new RedisCommandError(`Redis ${what}: ${message}`, err);
}

function describe(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

function intOption(name: string, v: unknown, min: number, max: number, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`options.durable.${name} must be an integer between ${min} and ${max}, got ${describe(v)}`);
  }
  return v;
}

interface ResolvedDurable {
  prefix: string;
  consume: boolean;
  lockDurationMs: number;
  stalledIntervalMs: number;
  maxStalledCount: number;
  commandTimeoutMs: number;
  eventsMaxLen: number;
}

const KNOWN_DURABLE = new Set(Object.keys(DURABLE_DEFAULTS));

function resolveDurable(d: unknown, cluster: boolean): ResolvedDurable {
  const D = DURABLE_DEFAULTS;
  if (d === undefined || d === true) d = {};
  if (d === false) throw new TypeError('options.durable is false: this is the durable queue (use the in-memory Queue instead)');
  if (typeof d !== 'object' || d === null) throw new TypeError(`options.durable must be true or an object of durable settings, got ${describe(d)}`);
  for (const k of Object.keys(d)) if (!KNOWN_DURABLE.has(k)) throw new TypeError(`options.durable.${k} is not a durable setting (known: ${[...KNOWN_DURABLE].join(', ')})`);
  const o = d as DurableOptions;
  const prefix = o.prefix ?? D.prefix;
  if (typeof prefix !== 'string' || prefix.length === 0 || prefix.length > 200) throw new TypeError(`options.durable.prefix must be a non-empty string of at most 200 characters, got ${describe(prefix)}`);
  // BullMQ's scripts write the raw bytes of a lone surrogate, ioredis writes U+FFFD: two names of one key (review45).
  if (!isWellFormed(prefix)) throw new TypeError(`options.durable.prefix must be well-formed UTF-16 (no lone surrogate), got ${describe(prefix)}`);
  if (cluster && !/\{[^{}]+\}/.test(prefix)) throw new TypeError(`options.durable.prefix must hold a hash tag ({…}) on a Redis Cluster, got ${describe(prefix)}`);
  if (o.consume !== undefined && typeof o.consume !== 'boolean') throw new TypeError(`options.durable.consume must be a boolean, got ${describe(o.consume)}`);
  const lockDurationMs = intOption('lockDurationMs', o.lockDurationMs, 100, 2 ** 31 - 1, D.lockDurationMs);
  return {
    prefix,
    consume: o.consume ?? D.consume,
    lockDurationMs,
    stalledIntervalMs: intOption('stalledIntervalMs', o.stalledIntervalMs, 50, 2 ** 31 - 1, D.stalledIntervalMs),
    maxStalledCount: intOption('maxStalledCount', o.maxStalledCount, 0, 1_000_000, D.maxStalledCount),
    commandTimeoutMs: intOption('commandTimeoutMs', o.commandTimeoutMs, 1, 2 ** 31 - 1, D.commandTimeoutMs),
    eventsMaxLen: intOption('eventsMaxLen', o.eventsMaxLen, 100, 2 ** 30, D.eventsMaxLen),
  };
}

/**
 * The durable queue. Create it through `engine.queue(name, { durable: true, … })`, or standalone
 * with a RedisConnector and an executor.
 *
 * Where it must ask Redis its methods return promises of what the in-memory queue returns
 * (`await` works on both): submit, trySubmit, submitMany, status, cancel, counts, pause, resume.
 */
export class DurableQueue<P = unknown, R = unknown> extends EventEmitter {
  /** The queue's name. */
  readonly name: string;
  /** Tasks this process runs at once (0 when it does not consume). */
  readonly concurrency: number;
  /** The most tasks queued or delayed at once (checked best-effort: see submit). */
  readonly maxQueued: number;
  /** The Redis key prefix. */
  readonly prefix: string;
  readonly #o: ResolvedQueueOptions;
  readonly #d: ResolvedDurable;
  readonly #executor: Executor;
  readonly #codec: ValueCodec;
  readonly #clock: Clock;
  readonly #ownClock: boolean;
  readonly #random: () => number;
  readonly #waitTime: LatencyRecorder | undefined;
  readonly #runTime: LatencyRecorder | undefined;
  readonly #redis: RedisConnector;
  /** Fails fast (no offline queue): the submitter's connection. */
  readonly #producer: Redis | Cluster;
  /** Waits for Redis (offline queue, no retry limit, connects on first use): the consumer's connection; BullMQ's blocking connections are duplicates of it. */
  readonly #consumer: Redis | Cluster;
  readonly #queue: BullQueue;
  readonly #deadQueue: BullQueue;
  /** The dead queue on the consumer's connection: a dead letter waits for Redis rather than being lost. */
  #deadWriter: BullQueue | undefined;
  #worker: BullWorker | undefined;
  /** Result channels: this instance's, and the queue's (tasks with ids of the caller's). */
  readonly #channel: string;
  readonly #sharedChannel: string;
  #listening = false;
  #listenStarting: Promise<void> | undefined;
  readonly #unsubscribe: Array<() => Promise<void>> = [];
  readonly #subscribed = new Set<string>();
  #sweepTimer: ReturnType<typeof setTimeout> | undefined;
  #sweeping = false;
  /** Tasks submitted here whose outcome is awaited, by job id. */
  readonly #pending = new Map<string, Pending>();
  /** Tasks running here, by job id. */
  readonly #active = new Map<string, Active>();
  readonly #localOutcomes = new Map<string, LocalOutcome>();
  /** The back-off delay the processor chose for a failed attempt, until BullMQ asks for it. */
  readonly #nextDelay = new Map<string, number>();
  /** The last back-off delay per task run here (decorrelated jitter grows from it). */
  readonly #lastDelay = new Map<string, number>();
  /** Ids this process cancelled before they ran (their jobs are gone from Redis). */
  readonly #cancelled = new Map<string, TaskStatus>();
  /** This instance's id (48 random bits): the prefix of its auto ids and the name of its result channel. */
  readonly #idBase = randomBytes(6).toString('base64url');
  #nextId = 0;
  #queuedEstimate = 0;
  #countedAt = -Infinity;
  #counting: Promise<void> | undefined;
  #wakeDrain: Array<() => void> = [];
  #closing: Promise<void> | undefined;
  #closed = false;
  readonly #counts = { submitted: 0, completed: 0, failed: 0, retried: 0, dead: 0, cancelled: 0 };

  /**
   * Opens the queue's connections; with `consume` (the default) this process starts running tasks.
   * @throws TypeError / RangeError naming a bad option; TypeError for a codec with shared structures.
   */
  constructor(name: string, options: DurableQueueOptions<P, R>, deps: DurableDeps) {
    super();
    if (typeof name !== 'string' || name.length === 0 || name.length > 200 || name.includes(':') || !isWellFormed(name)) {
      throw new TypeError(`queue name must be a non-empty string of at most 200 characters, well-formed UTF-16, without ':', got ${describe(name)}`);
    }
    if (typeof options !== 'object' || options === null) throw new TypeError(`queue options must be an object with a handler, got ${describe(options)}`);
    if (deps === undefined || deps.redis === undefined) throw new TypeError('deps.redis is required: the durable queue runs on the engine\'s Redis');
    const d = resolveDurable(options.durable, deps.redis.isCluster);
    const o = resolveQueueOptions({ ...options, durable: true });
    if (o.agingMs > 0) throw new TypeError('options.agingMs is not supported by the durable queue: BullMQ priorities do not age');
    const codec = deps.codec ?? new ValueCodec();
    if (codec.shared) throw new TypeError('deps.codec must be self-contained (no shared structures): other processes read what it writes');
    this.name = name;
    this.#o = o;
    this.#d = d;
    this.prefix = d.prefix;
    this.#codec = codec;
    this.#executor = deps.executor ?? createExecutor(name, o.handler, o.handlerExport, o.killAfterMs, {});
    // 1 for a function; DURABLE_MODULE_CONCURRENCY per worker thread for a module — fewer than in
    // memory, as every running job is locked away from the other processes.
    this.concurrency = d.consume ? o.concurrency ?? (this.#executor.onWorkers ? DURABLE_MODULE_CONCURRENCY * Math.max(1, deps.workers ?? 1) : 1) : 0;
    this.maxQueued = o.maxQueued;
    this.#clock = deps.clock ?? SYSTEM_CLOCK;
    this.#ownClock = this.#clock !== SYSTEM_CLOCK;
    this.#random = deps.random ?? Math.random;
    this.#waitTime = deps.waitTime;
    this.#runTime = deps.runTime;
    this.#redis = deps.redis;
    this.#sharedChannel = `${d.prefix}:${name}:r`;
    this.#channel = `${this.#sharedChannel}:${this.#idBase}`;

    this.#producer = deps.redis.duplicateClient({ enableOfflineQueue: false, maxRetriesPerRequest: 0, lazyConnect: false });
    this.#producer.on('error', noop); // reconnects on its own; calls fail fast meanwhile
    this.#consumer = deps.redis.duplicateClient({ enableOfflineQueue: true, maxRetriesPerRequest: null, lazyConnect: true, enableAutoPipelining: false });
    this.#consumer.on('error', noop);
    // The version check is skipped on the submitter's queues: its INFO would be one more command
    // that can fail while connecting, and a failed init leaves a BullMQ Queue unusable for good.
    const common = { connection: this.#producer, prefix: d.prefix, skipVersionCheck: true };
    this.#queue = new BullQueue(name, { ...common, streams: { events: { maxLen: d.eventsMaxLen } } });
    this.#queue.on('error', noop);
    this.#deadQueue = new BullQueue('dead', { ...common, prefix: `${d.prefix}:${name}`, skipMetasUpdate: true });
    this.#deadQueue.on('error', noop);
    if (d.consume) this.#startWorker();
  }

  // ------------------------------------------------------------------ Redis calls

  /** Runs a call to Redis on the submitter's connection: fails fast when it is down, and times out. */
  async #call<T>(what: string, fn: () => Promise<T>, timeoutMs = this.#d.commandTimeoutMs): Promise<T> {
    const started = Date.now();
    if (this.#producer.status !== 'ready') await this.#connected(what, timeoutMs);
    timeoutMs = Math.max(1, timeoutMs - (Date.now() - started));
    let sent: Promise<T>;
    try {
      sent = fn();
    } catch (err) {
      sent = Promise.reject(err);
    }
    try {
      return await withTimeout(sent, timeoutMs, `${what} for queue "${this.name}"`);
    } catch (err) {
      sent.catch(noop); // the loser of the race may reject later: handled here
      throw classify(what, err);
    }
  }

  /**
   * Waits (up to `timeoutMs`) for the submitter's connection, while it is still connecting and the
   * engine's connector does not know Redis to be down; fails at once when it does.
   */
  async #connected(what: string, timeoutMs: number): Promise<void> {
    const c = this.#producer;
    const unavailable = (): RedisUnavailableError => new RedisUnavailableError(`Redis unavailable for queue "${this.name}" (${what}: connection ${c.status})`);
    if (!this.#redis.available || c.status === 'end') throw unavailable();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onReady: (() => void) | undefined;
    try {
      const ok = await new Promise<boolean>((resolve) => {
        onReady = () => resolve(true);
        c.once('ready', onReady);
        timer = setTimeout(() => resolve(false), timeoutMs);
      });
      if (!ok || c.status !== 'ready') throw unavailable();
    } finally {
      clearTimeout(timer);
      if (onReady !== undefined) c.off('ready', onReady);
    }
  }

  // ------------------------------------------------------------------ submit

  #checkOpen(): void {
    if (this.#closing !== undefined) throw new ClosedError(`queue "${this.name}"`);
  }

  #encode(payload: unknown): string | undefined {
    return payload === undefined ? undefined : this.#codec.encode(payload, 'payload').toString('base64');
  }

  #autoId(): string {
    return `${this.#idBase}.${(++this.#nextId).toString(36)}`;
  }

  #jobOptions(o: ResolvedSubmit, jobId: string, now: number): JobsOptions {
    const opts: JobsOptions = { jobId, priority: o.priority + PRIORITY_OFFSET };
    // BullMQ stamps jobs with Date.now() itself: a timestamp of ours only for a clock of our own
    // (it is one more field BullMQ packs into every job's options).
    if (this.#ownClock) opts.timestamp = now;
    if (o.delayMs > 0) opts.delay = o.delayMs;
    const attempts = this.#o.retry.attempts;
    if (attempts > 1) {
      opts.attempts = attempts;
      opts.backoff = { type: 'hotpath' };
    }
    return opts;
  }

  #jobData(encoded: string | undefined, o: ResolvedSubmit): JobData {
    const data: JobData = { s: this.#idBase };
    if (encoded !== undefined) data.p = encoded;
    if (o.timeout !== undefined) data.t = o.timeout;
    if (o.id !== undefined) data.u = 1;
    return data;
  }

  /** A pending outcome (its result pre-handled), registered before the job is added so no event can miss it. */
  #newPending(id: string, jobId: string, signal: AbortSignal | undefined): Pending {
    let resolve!: (v: unknown) => void;
    let reject!: (e: unknown) => void;
    const result = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Looked up in Redis only once its job is stored (#stored): before, a lookup would find no job.
    const p: Pending = { id, handle: { id, result }, resolve, reject, checkAt: Infinity, checkEvery: SWEEP_FIRST_MS };
    if (signal !== undefined) {
      p.signal = signal;
      p.onAbort = () => void this.cancel(id).catch(noop);
    }
    this.#pending.set(jobId, p);
    return p;
  }

  /** Its job is in Redis: from now on its outcome can be looked up, should its message be lost. */
  #stored(p: Pending, now: number): void {
    p.checkAt = now + SWEEP_FIRST_MS;
    if (p.signal !== undefined) {
      if (p.signal.aborted) p.onAbort!();
      else p.signal.addEventListener('abort', p.onAbort!, { once: true });
    }
    if (this.#sweepTimer === undefined) this.#armSweep(SWEEP_FIRST_MS);
  }

  #settle(jobId: string, ok: boolean, value: unknown): void {
    const p = this.#pending.get(jobId);
    if (p === undefined) return;
    this.#pending.delete(jobId);
    this.#localOutcomes.delete(jobId); // settled another way (its runner here lost the job's lock)
    if (p.onAbort !== undefined) p.signal!.removeEventListener('abort', p.onAbort);
    if (ok) p.resolve(value);
    else {
      // Pre-handled as it rejects (not at creation: one promise less per task that succeeds): a
      // caller that never awaits the result gets no unhandled rejection.
      p.handle.result.then(undefined, noop);
      p.reject(value);
    }
  }

  /** Whether `n` more tasks fit under maxQueued, from a count at most COUNT_TTL_MS old. */
  async #room(n: number): Promise<boolean> {
    if (this.#clock.now() - this.#countedAt > COUNT_TTL_MS) {
      this.#counting ??= this.#call('getJobCounts', () => this.#queue.getJobCounts('wait', 'prioritized', PAUSED, 'delayed', 'waiting-children'))
        .then((c) => {
          this.#queuedEstimate = Object.values(c).reduce((a, b) => a + b, 0);
          this.#countedAt = this.#clock.now();
        })
        .finally(() => {
          this.#counting = undefined;
        });
      await this.#counting;
    }
    return this.#queuedEstimate + n <= this.#o.maxQueued;
  }

  /**
   * Adds a task; resolves with `{ id, result }` once it is stored in Redis. An `id` whose job
   * still exists (queued, delayed, running, or finished within statusRetention) is not added
   * again: the handle's result settles with that job's outcome.
   *
   * maxQueued is best-effort: the count of queued and delayed tasks is read from Redis at most
   * once a second and advanced by this process's own submissions in between, so other processes'
   * submissions within that second are not seen and the limit can be overshot by them.
   * @throws TypeError / RangeError (synchronously) for a bad option or an unencodable payload.
   * @throws (rejects) ERR_HOTPATH_QUEUE_FULL; ERR_HOTPATH_REDIS_UNAVAILABLE; ERR_HOTPATH_CLOSED.
   */
  submit(payload: P, options?: SubmitOptions): Promise<TaskHandle<R>> {
    const o = resolveSubmit(options);
    this.#checkOpen();
    const encoded = this.#encode(payload);
    return this.#submitOne(encoded, o, true) as Promise<TaskHandle<R>>;
  }

  /** submit(), but resolves `false` instead of rejecting with ERR_HOTPATH_QUEUE_FULL. */
  trySubmit(payload: P, options?: SubmitOptions): Promise<TaskHandle<R> | false> {
    const o = resolveSubmit(options);
    this.#checkOpen();
    const encoded = this.#encode(payload);
    return this.#submitOne(encoded, o, false) as Promise<TaskHandle<R> | false>;
  }

  async #submitOne(encoded: string | undefined, o: ResolvedSubmit, throwIfFull: boolean): Promise<TaskHandle | false> {
    const id = o.id ?? this.#autoId();
    const jobId = toJobId(id);
    const known = this.#pending.get(jobId);
    if (known !== undefined) return known.handle;
    await this.#listen();
    if (!(await this.#room(1))) {
      if (throwIfFull) throw new QueueFullError(this.name, this.#o.maxQueued);
      return false;
    }
    this.#checkOpen();
    const again = this.#pending.get(jobId); // another submit of this id got here first
    if (again !== undefined) return again.handle;
    const now = this.#clock.now();
    const p = this.#newPending(id, jobId, o.signal);
    try {
      await this.#call('add', () => this.#queue.add('task', this.#jobData(encoded, o), this.#jobOptions(o, jobId, now)));
    } catch (err) {
      this.#settle(jobId, false, err); // a handle given to a concurrent submit of this id learns it too
      throw err;
    }
    this.#accepted(p, o, 1);
    if (o.id !== undefined) await this.#settleIfFinished(jobId);
    return p.handle;
  }

  /** Bookkeeping once jobs are stored. */
  #accepted(p: Pending | undefined, o: ResolvedSubmit, n: number): void {
    this.#queuedEstimate += n;
    this.#counts.submitted += n;
    if (p !== undefined) {
      this.#stored(p, Date.now());
      if (this.listenerCount('queued') > 0) this.#emit('queued', { id: p.id, priority: o.priority, delayMs: o.delayMs } satisfies QueueEvents['queued']);
    }
  }

  /** A deduplicated id may name a job that finished before we listened: settle from its record. */
  async #settleIfFinished(jobId: string): Promise<void> {
    try {
      const state = await this.#call('getJobState', () => this.#queue.getJobState(jobId));
      if (state !== 'completed' && state !== 'failed') return;
      const job = await this.#call('getJob', () => this.#queue.getJob(jobId));
      if (job === undefined) return;
      if (state === 'completed') this.#settle(jobId, true, this.#decodeResult(job.returnvalue));
      else this.#settle(jobId, false, errorFrom(parseReason(job.failedReason), fromJobId(jobId)));
    } catch {
      // The job is stored; its outcome still arrives by message or sweep.
    }
  }

  /**
   * Adds several tasks with the same options (no `id`) in one BullMQ addBulk: all or none.
   * @throws TypeError / RangeError (synchronously) for a bad option or an unencodable payload.
   * @throws (rejects) ERR_HOTPATH_QUEUE_FULL when they do not all fit (best-effort, as submit).
   */
  submitMany(payloads: readonly P[], options?: Omit<SubmitOptions, 'id'>): Promise<Array<TaskHandle<R>>> {
    if (!Array.isArray(payloads)) throw new TypeError(`submitMany takes an array of payloads, got ${typeof payloads}`);
    if (options !== undefined && (options as SubmitOptions).id !== undefined) throw new TypeError('submitMany: options.id cannot be shared by several tasks; use submit() per id');
    const o = resolveSubmit(options);
    this.#checkOpen();
    const encoded = payloads.map((p) => this.#encode(p)); // every payload checked before any is added
    return this.#submitMany(encoded, o) as Promise<Array<TaskHandle<R>>>;
  }

  async #submitMany(encoded: Array<string | undefined>, o: ResolvedSubmit): Promise<TaskHandle[]> {
    if (encoded.length === 0) return [];
    await this.#listen();
    if (!(await this.#room(encoded.length))) throw new QueueFullError(this.name, this.#o.maxQueued);
    this.#checkOpen();
    const now = this.#clock.now();
    const pendings: Pending[] = [];
    const jobs = encoded.map((e) => {
      const id = this.#autoId();
      const p = this.#newPending(id, id, o.signal);
      pendings.push(p);
      return { name: 'task', data: this.#jobData(e, o), opts: this.#jobOptions(o, id, now) };
    });
    try {
      await this.#call('addBulk', () => this.#queue.addBulk(jobs), this.#d.commandTimeoutMs + Math.ceil(jobs.length / 10));
    } catch (err) {
      for (const p of pendings) this.#settle(p.id, false, err);
      throw err;
    }
    this.#queuedEstimate += jobs.length;
    this.#counts.submitted += jobs.length;
    const emit = this.listenerCount('queued') > 0;
    const stored = Date.now();
    for (const p of pendings) {
      this.#stored(p, stored);
      if (emit) this.#emit('queued', { id: p.id, priority: o.priority, delayMs: o.delayMs } satisfies QueueEvents['queued']);
    }
    return pendings.map((p) => p.handle);
  }

  // ------------------------------------------------------------------ results from other processes

  /** Subscribes to this instance's result channels (once, before the first job is added). */
  #listen(): Promise<void> {
    if (this.#listening) return Promise.resolve();
    this.#listenStarting ??= (async () => {
      for (const channel of [this.#channel, this.#sharedChannel]) {
        if (this.#subscribed.has(channel)) continue; // subscribed by an earlier, half-failed try
        this.#unsubscribe.push(await this.#redis.subscribe(channel, this.#onMessage));
        this.#subscribed.add(channel);
      }
      if (this.#closing !== undefined) return; // close() unsubscribes what it finds
      // One listener per durable queue on the engine's connector: raise its limit with it.
      const max = this.#redis.getMaxListeners();
      if (max > 0) this.#redis.setMaxListeners(max + 1); // 0: unlimited
      this.#redis.on('subscriber', this.#onSubscriber);
      this.#listening = true;
    })().finally(() => {
      this.#listenStarting = undefined;
    });
    return this.#listenStarting;
  }

  /** The subscriber connection came back: messages may have been missed, look every result up. */
  readonly #onSubscriber = (state: string): void => {
    if (state !== 'up') return;
    for (const p of this.#pending.values()) p.checkAt = 0;
    this.#armSweep(0);
  };

  readonly #onMessage = (message: string): void => {
    let m: ResultMessage;
    try {
      m = JSON.parse(message) as ResultMessage;
    } catch {
      return; // not ours
    }
    this.#wake();
    const jobId = m.j;
    if (typeof jobId !== 'string' || !this.#pending.has(jobId)) return;
    if (m.x === 1) this.#settle(jobId, false, new CancelledError(`task "${fromJobId(jobId)}"`));
    else if (m.e !== undefined) this.#settle(jobId, false, errorFrom(parseReason(m.e), fromJobId(jobId)));
    else this.#settleEncoded(jobId, m.v);
  };

  #settleEncoded(jobId: string, v: unknown): void {
    let value: unknown;
    try {
      value = this.#decodeResult(v);
    } catch (err) {
      this.#settle(jobId, false, err);
      return;
    }
    this.#settle(jobId, true, value);
  }

  /** Tells the submitter(s) of `job` its outcome (when it is not this instance alone). */
  #notify(client: Redis | Cluster, data: JobData | undefined, m: ResultMessage): void {
    if (data?.s === undefined) return; // added by someone else than a DurableQueue
    if (data.s === this.#idBase && data.u !== 1) return; // settled here
    client.publish(data.u === 1 ? this.#sharedChannel : `${this.#sharedChannel}:${data.s}`, JSON.stringify(m)).catch(noop); // lost: the submitter's sweep finds it
  }

  #armSweep(ms: number): void {
    if (this.#closing !== undefined) return;
    if (this.#sweepTimer !== undefined) {
      if (ms > 0) return;
      clearTimeout(this.#sweepTimer);
    }
    this.#sweepTimer = setTimeout(() => {
      this.#sweepTimer = undefined;
      void this.#sweep();
    }, ms);
    this.#sweepTimer.unref();
  }

  /** Looks up, in Redis, the jobs whose result has been awaited for a while: a message may have been lost. */
  async #sweep(): Promise<void> {
    if (this.#sweeping || this.#closing !== undefined) return;
    this.#sweeping = true;
    try {
      const now = Date.now();
      const due: string[] = [];
      let next = Infinity;
      for (const [jobId, p] of this.#pending) {
        if (p.checkAt <= now && due.length < SWEEP_BATCH) due.push(jobId);
        else next = Math.min(next, p.checkAt);
      }
      if (due.length > 0) {
        const replies = await this.#call('sweep', async () => {
          const pipe = this.#producer.pipeline();
          for (const jobId of due) pipe.hmget(this.#queue.toKey(jobId), 'timestamp', 'finishedOn', 'returnvalue', 'failedReason');
          return (await pipe.exec()) ?? [];
        }).catch(() => undefined);
        due.forEach((jobId, i) => {
          const p = this.#pending.get(jobId);
          if (p === undefined) return;
          const [err, fields] = replies?.[i] ?? [new Error('no reply')];
          if (err === null && Array.isArray(fields)) {
            const [timestamp = null, finishedOn = null, returnvalue = null, failedReason = null] = fields as Array<string | null>;
            if (timestamp === null) {
              this.#settle(jobId, false, new CancelledError(`task "${p.id}" (its job was removed)`));
              return;
            }
            if (finishedOn !== null) {
              if (returnvalue !== null) this.#settleEncoded(jobId, JSON.parse(returnvalue));
              else this.#settle(jobId, false, errorFrom(parseReason(failedReason ?? undefined), p.id));
              return;
            }
          }
          p.checkEvery = Math.min(SWEEP_MAX_MS, p.checkEvery * 2);
          p.checkAt = now + p.checkEvery;
          next = Math.min(next, p.checkAt);
        });
        if (due.length === SWEEP_BATCH) next = now;
      }
      if (this.#pending.size > 0 && next < Infinity) this.#armSweep(Math.max(0, next - Date.now()));
    } finally {
      this.#sweeping = false;
    }
  }

  #decodeResult(v: unknown): unknown {
    if (v === null || v === undefined) return undefined;
    return this.#codec.decode(Buffer.from(v as string, 'base64'));
  }

  #wake(): void {
    if (this.#wakeDrain.length === 0) return;
    const w = this.#wakeDrain;
    this.#wakeDrain = [];
    for (const f of w) f();
  }

  // ------------------------------------------------------------------ running tasks

  #startWorker(): void {
    const d = this.#d;
    const keep = this.#o.statusRetention;
    const worker = new BullWorker(this.name, (job: Job, token?: string) => this.#process(job, token), {
      connection: this.#consumer,
      prefix: d.prefix,
      concurrency: this.concurrency,
      lockDuration: d.lockDurationMs,
      stalledInterval: d.stalledIntervalMs,
      maxStalledCount: d.maxStalledCount,
      removeOnComplete: keep === 0 ? { count: 0 } : { count: keep },
      removeOnFail: keep === 0 ? { count: 0 } : { count: keep },
      settings: {
        // The processor chose the delay already (it knows our retry options and the error).
        backoffStrategy: (_attemptsMade: number, _type?: string, _err?: Error, job?: { id?: string }) => {
          const id = job?.id ?? '';
          const delay = this.#nextDelay.get(id) ?? 0;
          this.#nextDelay.delete(id);
          return delay;
        },
      },
    });
    worker.on('error', noop);
    worker.on('completed', (job: Job, result: unknown) => this.#ranCompleted(job, result));
    worker.on('failed', (job: Job | undefined, err: Error) => this.#ranFailed(job, err));
    this.#worker = worker;
    this.#deadWriter = new BullQueue('dead', { connection: this.#consumer, prefix: `${d.prefix}:${this.name}`, skipMetasUpdate: true, skipVersionCheck: true });
    this.#deadWriter.on('error', noop);
  }

  /** BullMQ's processor: one attempt of one job on the executor. */
  async #process(job: Job, token: string | undefined): Promise<string | null> {
    const jobId = job.id!;
    const id = fromJobId(jobId);
    const attempt = job.attemptsStarted;
    const data = job.data as JobData;
    const now = this.#clock.now();
    const waited = Math.max(0, now - job.timestamp - (job.delay ?? 0));
    this.#waitTime?.record(waited);
    if (this.listenerCount('running') > 0) this.#emit('running', { id, attempt, waitedMs: waited } satisfies QueueEvents['running']);
    let active: Active | undefined;
    try {
      const payload = data.p === undefined ? undefined : this.#codec.decode(Buffer.from(data.p, 'base64'));
      const info = { id, attempt, timeoutMs: data.t ?? this.#o.timeout };
      const ex = this.#executor;
      let value: unknown;
      // A function handler without a timeout that answers synchronously settles here, with no
      // attempt handle and no promise hops (as in the in-memory queue); nothing can cancel it
      // while it runs, so it is never listed as active.
      const quick = ex instanceof FunctionExecutor && info.timeoutMs === 0 ? ex.invokeNow(payload, info, this.#o.killAfterMs) : undefined;
      if (quick instanceof Settled) {
        if (!quick.ok) throw quick.value;
        value = quick.value;
      } else {
        const handle = quick ?? ex.start(ex.prepare(payload), info);
        active = { handle, cancelled: false, abandoned: false, job, token };
        this.#active.set(jobId, active);
        value = await handle.result;
      }
      const encoded = value === undefined ? null : this.#codec.encode(value, 'result').toString('base64');
      if (this.#pending.has(jobId)) this.#localOutcomes.set(jobId, { ok: true, value });
      return encoded;
    } catch (err) {
      throw await this.#attemptFailed(job, id, attempt, err, active);
    } finally {
      this.#active.delete(jobId);
      this.#runTime?.record(this.#clock.now() - now);
    }
  }

  /** Decides what a failed attempt becomes; returns the error to throw to BullMQ. */
  async #attemptFailed(job: Job, id: string, attempt: number, err: unknown, active: Active | undefined): Promise<Error> {
    const jobId = job.id!;
    this.#counts.failed++;
    if (this.listenerCount('failed') > 0) this.#emit('failed', { id, attempt, error: err } satisfies QueueEvents['failed']);
    if (active?.abandoned) return bullError(err, false); // closing: its job is back in wait (or left to stalled recovery)
    if (active?.cancelled) {
      this.#counts.cancelled++;
      if (this.listenerCount('cancelled') > 0) this.#emit('cancelled', { id } satisfies QueueEvents['cancelled']);
      if (this.#pending.has(jobId)) this.#localOutcomes.set(jobId, { ok: false, error: err });
      return bullError(err, true);
    }
    let error = err;
    let retry = false;
    let delay = 0;
    if (job.attemptsMade + 1 < (job.opts.attempts ?? 1)) {
      const r = this.#o.retry;
      try {
        retry = r.retryable(err) === true;
        if (retry) delay = backoffDelay(r, attempt, err, this.#lastDelay.get(jobId) ?? 0, this.#random);
      } catch (predicateError) {
        retry = false; // a throwing predicate or back-off function ends the retries; keep its error
        error = new AggregateError([err, predicateError], `task "${id}": retry.retryable or retry.backoff threw: ${(predicateError as Error)?.message}`);
      }
    }
    if (retry) {
      this.#nextDelay.set(jobId, delay);
      // Read back by BullMQ's backoffStrategy when it moves the job to delayed; if that never
      // happens (Redis gone at that moment), the entry would stay: bounded like #lastDelay.
      if (this.#nextDelay.size > LAST_DELAY_LIMIT) this.#nextDelay.delete(this.#nextDelay.keys().next().value!);
      this.#lastDelay.set(jobId, delay);
      // Bounded: a job retried here may finish in another process (its entry is then never
      // deleted here); the oldest entries go first.
      if (this.#lastDelay.size > LAST_DELAY_LIMIT) this.#lastDelay.delete(this.#lastDelay.keys().next().value!);
      this.#counts.retried++;
      if (this.listenerCount('retried') > 0) this.#emit('retried', { id, attempt, delayMs: delay } satisfies QueueEvents['retried']);
      return bullError(err, false);
    }
    this.#lastDelay.delete(jobId);
    await this.#deadLetter(job, id, attempt, error);
    if (this.#pending.has(jobId)) this.#localOutcomes.set(jobId, { ok: false, error });
    return bullError(error, true);
  }

  /** Writes the dead letter (before BullMQ moves the job to failed, so before any submitter hears of it). */
  async #deadLetter(job: Job, id: string, attempts: number, error: unknown): Promise<void> {
    const keep = this.#o.deadLetterRetention;
    if (keep === 0 || this.#deadWriter === undefined) return;
    const jobId = job.id!;
    const data = job.data as JobData;
    const record: DeadData = {
      pr: job.priority > 0 ? job.priority - PRIORITY_OFFSET : -MAX_PRIORITY,
      e: errorInfo(error), a: attempts, s: job.timestamp, f: this.#clock.now(),
    };
    if (data.p !== undefined) record.p = data.p;
    try {
      // A letter of the same id from an earlier death (not requeued) is replaced by this one.
      await this.#deadWriter.remove(jobId).catch(noop);
      await this.#deadWriter.add('dead', record, { jobId });
      this.#counts.dead++;
      if (this.listenerCount('dead') > 0) this.#emit('dead', { id, attempts, error } satisfies QueueEvents['dead']);
      await this.#trimDead(keep);
    } catch {
      // Redis went away for good while we waited (close): the job still fails in BullMQ.
    }
  }

  /** Keeps the newest `keep` dead letters. */
  async #trimDead(keep: number): Promise<void> {
    const q = this.#deadWriter!;
    const n = await q.getWaitingCount();
    if (n <= keep) return;
    // The wait list holds the newest first: the ones past `keep` are the oldest.
    const old = await q.getRanges(['wait'], keep, n - 1, false);
    await Promise.all(old.map((jobId) => q.remove(jobId).catch(noop)));
  }

  #ranCompleted(job: Job, result: unknown): void {
    const jobId = job.id!;
    this.#counts.completed++;
    this.#lastDelay.delete(jobId);
    if (this.listenerCount('completed') > 0) {
      const runMs = job.finishedOn !== undefined && job.processedOn !== undefined ? job.finishedOn - job.processedOn : 0;
      this.#emit('completed', { id: fromJobId(jobId), attempt: job.attemptsStarted, runMs } satisfies QueueEvents['completed']);
    }
    const local = this.#localOutcomes.get(jobId);
    if (local !== undefined) {
      this.#localOutcomes.delete(jobId);
      if (local.ok) this.#settle(jobId, true, local.value);
    }
    this.#notify(this.#consumer, job.data as JobData, { j: jobId, v: result as string | null });
    this.#wake();
  }

  #ranFailed(job: Job | undefined, err: Error): void {
    if (job === undefined) return;
    const jobId = job.id!;
    const final = job.finishedOn !== undefined;
    const local = this.#localOutcomes.get(jobId);
    if (local !== undefined && final) {
      this.#localOutcomes.delete(jobId);
      if (!local.ok) this.#settle(jobId, false, local.error);
    }
    if (final) {
      const message = { j: jobId, e: job.failedReason ?? err.message };
      if ((err as Error & { [OURS]?: true })[OURS] !== true) {
        // BullMQ failed it itself (a task recovered from dead processes maxStalledCount times):
        // dead-letter it too, then tell its submitter (which may have heard from a sweep before).
        void this.#deadLetter(job, fromJobId(jobId), job.attemptsStarted, err).then(() => this.#notify(this.#consumer, job.data as JobData, message));
      } else {
        this.#notify(this.#consumer, job.data as JobData, message);
      }
    }
    this.#wake();
  }

  // ------------------------------------------------------------------ cancel

  /**
   * Cancels task `id`. Queued or delayed: its job is removed (it never runs; its submitter's
   * result rejects with ERR_HOTPATH_CANCELLED, in any process). Running in this process: its
   * handler's ctx.signal aborts, and it ends cancelled (not retried, not dead-lettered). Resolves
   * false when it is running in another process, finished, or unknown.
   * @throws (rejects) ERR_HOTPATH_REDIS_UNAVAILABLE.
   */
  async cancel(id: string): Promise<boolean> {
    if (typeof id !== 'string' || id.length === 0) throw new TypeError(`cancel(id): id must be a non-empty string, got ${describe(id)}`);
    // No task has such an id (submit refuses it), and Redis would read it as another's (review44).
    if (!isWellFormed(id)) return false;
    const jobId = toJobId(id);
    const active = this.#active.get(jobId);
    if (active !== undefined) {
      active.cancelled = true;
      active.handle.stop(new CancelledError(`task "${id}"`));
      return true;
    }
    const job = await this.#call('getJob', () => this.#queue.getJob(jobId));
    if (job === undefined) return false;
    const state = await this.#call('getJobState', () => this.#queue.getJobState(jobId));
    if (!WAITING_STATES.has(state)) return false;
    // Between the two calls it may have started: BullMQ refuses to remove a locked job (0).
    const removed = await this.#call('remove', () => this.#queue.remove(jobId));
    if (removed !== 1) return false;
    const now = this.#clock.now();
    this.#counts.cancelled++;
    this.#remember(id, {
      id, state: 'cancelled', priority: job.priority - PRIORITY_OFFSET, attempts: job.attemptsStarted ?? 0,
      submittedAt: job.timestamp, finishedAt: now, error: errorInfo(new CancelledError(`task "${id}"`)),
    });
    if (this.listenerCount('cancelled') > 0) this.#emit('cancelled', { id } satisfies QueueEvents['cancelled']);
    this.#settle(jobId, false, new CancelledError(`task "${id}"`));
    this.#notify(this.#producer, job.data as JobData, { j: jobId, x: 1 });
    this.#wake();
    return true;
  }

  #remember(id: string, s: TaskStatus): void {
    const keep = this.#o.statusRetention;
    if (keep === 0) return;
    if (this.#cancelled.size >= keep) this.#cancelled.delete(this.#cancelled.keys().next().value!);
    this.#cancelled.set(id, s);
  }

  // ------------------------------------------------------------------ inspection

  /**
   * The task's state and timestamps from Redis (while its job exists: statusRetention finished
   * jobs are kept), or from its dead letter. A task cancelled before it ran is known as cancelled
   * only to the process that cancelled it. Resolves undefined for an unknown id.
   * @throws (rejects) ERR_HOTPATH_REDIS_UNAVAILABLE.
   */
  async status(id: string): Promise<TaskStatus | undefined> {
    if (typeof id !== 'string' || id.length === 0) throw new TypeError(`status(id): id must be a non-empty string, got ${describe(id)}`);
    // No task has such an id (submit refuses it), and Redis would read it as another's (review44).
    if (!isWellFormed(id)) return undefined;
    const jobId = toJobId(id);
    const [job, state, dead] = await this.#call('status', () => Promise.all([this.#queue.getJob(jobId), this.#queue.getJobState(jobId), this.#deadQueue.getJob(jobId)]));
    if (job === undefined) {
      if (dead !== undefined) return deadStatus(id, dead.data as DeadData);
      return this.#cancelled.get(id);
    }
    let s: TaskState;
    const error = job.failedReason ? parseReason(job.failedReason) : undefined;
    switch (state) {
      case 'active': s = 'running'; break;
      case 'delayed': s = 'delayed'; break;
      case 'completed': s = 'succeeded'; break;
      case 'failed': s = error?.code === 'ERR_HOTPATH_CANCELLED' ? 'cancelled' : dead !== undefined ? 'dead' : 'failed'; break;
      default: s = 'queued';
    }
    const st: TaskStatus = { id, state: s, priority: job.priority > 0 ? job.priority - PRIORITY_OFFSET : -MAX_PRIORITY, attempts: job.attemptsStarted ?? 0, submittedAt: job.timestamp };
    if (s === 'delayed') {
      const score = await this.#call('ZSCORE', () => this.#producer.zscore(this.#queue.keys.delayed!, jobId));
      // BullMQ scores delayed jobs as runAt × 2^12 + a counter.
      st.runAt = score === null ? job.timestamp + (job.delay ?? 0) : Math.floor(Number(score) / 4096);
    }
    if (job.processedOn !== undefined && job.processedOn > 0) st.startedAt = job.processedOn;
    if (job.finishedOn !== undefined && job.finishedOn > 0) st.finishedAt = job.finishedOn;
    if (error !== undefined && s !== 'succeeded') {
      const stack = job.stacktrace?.[job.stacktrace.length - 1];
      st.error = stack ? { ...error, stack } : error;
    }
    return st;
  }

  /**
   * How many tasks are queued (waiting, prioritized, paused), delayed, running (in every process)
   * and dead-lettered.
   * @throws (rejects) ERR_HOTPATH_REDIS_UNAVAILABLE.
   */
  async counts(): Promise<QueueCounts> {
    const [c, dead] = await this.#call('getJobCounts', () => Promise.all([
      this.#queue.getJobCounts('wait', 'prioritized', PAUSED, 'waiting-children', 'delayed', 'active'),
      this.#deadQueue.getWaitingCount(),
    ]));
    return {
      queued: (c.wait ?? 0) + (c.prioritized ?? 0) + (c.paused ?? 0) + (c['waiting-children'] ?? 0),
      delayed: c.delayed ?? 0,
      running: c.active ?? 0,
      dead,
    };
  }

  /** This process's cumulative counters since creation (for metrics): submitted here, and attempts run here. */
  totals(): Readonly<{ submitted: number; completed: number; failed: number; retried: number; dead: number; cancelled: number }> {
    return { ...this.#counts };
  }

  /** The dead letters, oldest first. @throws (rejects) ERR_HOTPATH_REDIS_UNAVAILABLE. */
  async deadLetters(): Promise<Array<DeadLetter<P>>> {
    const jobs = await this.#call('getJobs', () => this.#deadQueue.getJobs(['wait'], 0, -1, true));
    const out: Array<DeadLetter<P>> = [];
    for (const j of jobs) {
      if (j === undefined || j.id === undefined) continue;
      const d = j.data as DeadData;
      out.push({
        id: fromJobId(j.id), payload: (d.p === undefined ? undefined : this.#codec.decode(Buffer.from(d.p, 'base64'))) as P,
        priority: d.pr, error: d.e, attempts: d.a, submittedAt: d.s, failedAt: d.f,
      });
    }
    return out.sort((a, b) => a.failedAt - b.failedAt);
  }

  /**
   * Submits dead letter `id` again (same id, payload and priority; attempts from zero) and removes
   * the letter. A task that failed for good but has no letter — trimmed by deadLetterRetention,
   * or cancelled while it ran — is run again from its failed job while statusRetention keeps it
   * (its id stays taken until then: submit() would answer with the old outcome). Resolves with
   * the new handle, or undefined when there is no such letter or failed task.
   * @throws (rejects) as submit().
   */
  async requeue(id: string): Promise<TaskHandle<R> | undefined> {
    if (typeof id !== 'string' || id.length === 0) throw new TypeError(`requeue(id): id must be a non-empty string, got ${describe(id)}`);
    this.#checkOpen();
    // No task has such an id (submit refuses it), and Redis would read it as another's (review44).
    if (!isWellFormed(id)) return undefined;
    const jobId = toJobId(id);
    const dead = await this.#call('getJob', () => this.#deadQueue.getJob(jobId));
    let d: { p?: string; pr: number };
    if (dead !== undefined) d = dead.data as DeadData;
    else {
      const failed = await this.#call('getJob', () => this.#queue.getJob(jobId));
      if (failed === undefined || (await this.#call('getJobState', () => this.#queue.getJobState(jobId))) !== 'failed') return undefined;
      const data = failed.data as JobData;
      d = { pr: failed.priority > 0 ? failed.priority - PRIORITY_OFFSET : -MAX_PRIORITY };
      if (data.p !== undefined) d.p = data.p;
    }
    // The failed job keeps its id in the main queue (for status): it must go, or the add would
    // deduplicate against it.
    await this.#call('remove', () => this.#queue.remove(jobId));
    const handle = await this.#submitOne(d.p, { priority: d.pr, id, delayMs: 0, timeout: undefined, signal: undefined }, true);
    // Removed only once the task is back in the queue: a crash in between leaves a duplicate letter, never a lost task.
    if (dead !== undefined) await this.#call('remove', () => this.#deadQueue.remove(jobId));
    return handle as TaskHandle<R>;
  }

  /** Drops every dead letter; resolves with how many there were. @throws (rejects) ERR_HOTPATH_REDIS_UNAVAILABLE. */
  async purge(): Promise<number> {
    const n = await this.#call('getWaitingCount', () => this.#deadQueue.getWaitingCount());
    await this.#call('drain', () => this.#deadQueue.drain());
    return n;
  }

  // ------------------------------------------------------------------ flow

  /** Pauses the queue for every process (BullMQ's global pause): running tasks go on. */
  pause(): Promise<void> {
    return this.#call('pause', () => this.#queue.pause());
  }

  /** Resumes the queue for every process. */
  resume(): Promise<void> {
    return this.#call('resume', () => this.#queue.resume());
  }

  /** Whether the queue is paused (for every process). */
  isPaused(): Promise<boolean> {
    return this.#call('isPaused', () => this.#queue.isPaused());
  }

  /**
   * Resolves once nothing is queued, delayed or running — in any process. A paused queue with
   * work waits for resume(). Redis unavailable: it waits for Redis (it does not reject).
   */
  async drain(): Promise<void> {
    for (;;) {
      if (this.#closing !== undefined) return;
      try {
        const c = await this.counts();
        if (c.queued === 0 && c.delayed === 0 && c.running === 0) return;
      } catch {
        // Redis unavailable: look again shortly
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, DRAIN_POLL_MS);
        t.unref();
        function done(): void {
          clearTimeout(t);
          resolve();
        }
        this.#wakeDrain.push(done);
      });
    }
  }

  /**
   * Stops accepting tasks (submit throws ERR_HOTPATH_CLOSED); lets the tasks this process runs
   * finish for up to `timeoutMs`; tasks still running then are stopped here and left to BullMQ's
   * stalled-job recovery (another process runs them again once their lock expires). Results not
   * yet delivered to this process's submitters reject with ERR_HOTPATH_CLOSED (the tasks stay in
   * Redis). Closes every connection it opened. Idempotent.
   */
  /** Emits without letting a throwing listener break the queue (its error is rethrown on its own). */
  #emit<E extends keyof QueueEvents>(event: E, payload: QueueEvents[E]): void {
    try {
      this.emit(event, payload);
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }

  close(timeoutMs = 5000): Promise<void> {
    this.#closing ??= this.#close(timeoutMs);
    return this.#closing;
  }

  async #close(timeoutMs: number): Promise<void> {
    this.#wake();
    const worker = this.#worker;
    if (worker !== undefined) {
      if (!(await within(worker.close(), timeoutMs))) {
        const given = [...this.#active.values()];
        for (const a of given) a.abandoned = true;
        // Their jobs go back to wait now, while the connection is up: another consumer runs them
        // at once, not after their lock expires (lockDurationMs, then the stalled check), and
        // no stall is counted against maxStalledCount (review28: a close that gave up twice on a
        // job, with the default maxStalledCount of 1, failed it). If Redis is unreachable now,
        // stalled recovery still applies.
        await Promise.all(given.map((a) => (a.token === undefined ? undefined : within(a.job.moveToWait(a.token).catch(noop), 1000))));
        for (const a of given) a.handle.stop(new CancelledError('a task (the queue closed)', new ClosedError(`queue "${this.name}"`)));
        await worker.disconnect().catch(noop);
        await within(worker.close(true), 1000);
      }
    }
    const why = new ClosedError(`queue "${this.name}"`);
    for (const jobId of [...this.#pending.keys()]) this.#settle(jobId, false, why);
    clearTimeout(this.#sweepTimer);
    await this.#listenStarting?.catch(noop);
    if (this.#listening) {
      this.#redis.off('subscriber', this.#onSubscriber);
      const max = this.#redis.getMaxListeners();
      if (max > 1) this.#redis.setMaxListeners(max - 1);
    }
    await Promise.all([
      ...this.#unsubscribe.map((u) => within(u(), 1000)),
      within(this.#queue.close(), 1000),
      within(this.#deadQueue.close(), 1000),
      this.#deadWriter !== undefined ? within(this.#deadWriter.close(), 1000) : undefined,
    ]);
    await Promise.all([this.#producer, this.#consumer].map(async (c) => {
      if (c.status === 'ready') await within(c.quit(), 500);
      c.disconnect();
    }));
    this.#localOutcomes.clear();
    this.#nextDelay.clear();
    this.#lastDelay.clear();
    this.#closed = true;
  }

  /** True once close() finished. */
  get closed(): boolean {
    return this.#closed;
  }

  /** `await using q = …` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Resolves true when `p` settles within `ms`, false otherwise (its late failure is handled). */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let t: ReturnType<typeof setTimeout> | undefined;
  const settled = p.then(() => true, () => true);
  const r = await Promise.race([settled, new Promise<boolean>((resolve) => {
    t = setTimeout(() => resolve(false), ms);
  })]);
  clearTimeout(t);
  return r;
}

function deadStatus(id: string, d: DeadData): TaskStatus {
  return { id, state: 'dead', priority: d.pr, attempts: d.a, submittedAt: d.s, finishedAt: d.f, error: d.e };
}
