/**
 * The one Redis connector every component uses: ioredis (single node, Sentinel or Cluster) with
 *  - no offline queue: a dead Redis fails fast instead of queueing writes to replay stale later;
 *  - a timeout on every command (`timeoutMs`, per call overridable), all of them on one shared
 *    timer (deadlines.ts); the command's own promise is always handled, so nothing rejects late
 *    and unhandled;
 *  - ioredis's auto-pipelining, except the first command of a tick and `direct` sends, written at
 *    once (see #send);
 *  - a circuit breaker: connection errors and timeouts count as failures; while it is open every
 *    call fails at once with ERR_HOTPATH_REDIS_UNAVAILABLE; when it turns half-open the connector
 *    itself probes with PING, so recovery does not wait for user traffic;
 *  - reconnects with capped, jittered exponential back-off;
 *  - a script registry: each Lua script is defined once, run by EVALSHA, and on NOSCRIPT (a
 *    restarted server, a failed-over node) run by EVAL, which also caches it again;
 *  - one shared pub/sub subscriber connection, opened on the first subscribe (on a Cluster, a
 *    plain connection to one node, moving to the next on reconnect), with a hearing check
 *    (hearing.ts) that reconnects a deaf or dead one;
 *  - MGET split by hash slot on a Cluster.
 * Redis reply errors (a script error, WRONGTYPE) mean Redis is healthy: they reject with
 * ERR_HOTPATH_REDIS_ERROR and count as successes for the breaker — except those about the server's
 * own state (BUSY, LOADING, MASTERDOWN, CLUSTERDOWN, TRYAGAIN, READONLY, MISCONF, NOREPLICAS; see
 * SERVER_UNAVAILABLE), which are ERR_HOTPATH_REDIS_UNAVAILABLE and breaker failures. A caller's
 * mistake (a bad command name or arguments) is a TypeError before anything reaches the breaker or
 * ioredis. Half-open probes that time out twice in a row on a connection still 'ready' (a peer
 * that vanished without closing it) drop it for a reconnect. Passwords are scrubbed from every
 * error the connector emits or rejects with.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import calculateSlot from 'cluster-key-slot';
import { Cluster, Command, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
// ioredis's own test of whether a call goes into its auto-pipeline (not re-exported at the top).
import { shouldUseAutoPipelining } from 'ioredis/built/autoPipelining.js';
import { HotpathError, RedisCommandError, RedisUnavailableError } from '../errors.js';
import type { Clock } from '../options.js';
import { CircuitBreaker, type BreakerOptions, type BreakerState } from '../resilience/breaker.js';
import { DeadlineQueue } from './deadlines.js';
import { adoptConnector, GuardedConnector, guardedConnectorFor } from './guarded.js';
import { HearingCheck } from './hearing.js';
import { MAX_TIMER_MS } from '../timer.js';

/** Where Redis is: a URL (`redis://`, `rediss://`, with `user:pass@`), ioredis options (also for Sentinel), or a Cluster. */
export type RedisConfig = string | RedisOptions | { cluster: Array<string | { host: string; port: number }>; options?: ClusterOptions };

/** Options of {@link RedisConnector}. */
export interface ConnectorOptions {
  /** Default timeout of every command (ms). Default 50. */
  timeoutMs?: number;
  /** How long `connect()` waits for ready before resolving in fallback mode (ms). Default 2000. */
  connectTimeoutMs?: number;
  /** Circuit breaker tuning. Defaults: 5 failures in a row, or 50% of ≥ 20 calls in 10 s; probes after 2 s. */
  breaker?: BreakerOptions;
  /** Reconnect back-off: first delay and cap (ms). Defaults 50 and 2000. */
  reconnect?: { minMs?: number; maxMs?: number };
  /**
   * Round period of the subscriber's hearing check while anything is subscribed (ms; 0 = off; see
   * hearing.ts): a PING and a nonce published on a private channel each round; a deaf subscriber
   * (nonce not heard) or one silent for 10 rounds is reconnected, a Cluster node's stall is a
   * 'subscriber' 'down' / 'up'. Default 1000.
   */
  subscriberCheckMs?: number;
  /** Time source (ms). */
  clock?: Clock;
}

export const CONNECTOR_DEFAULTS = {
  timeoutMs: 50,
  connectTimeoutMs: 2000,
  breaker: { consecutiveFailures: 5, errorRate: 0.5, volume: 20, windowMs: 10_000, resetMs: 2_000 },
  reconnectMinMs: 50,
  reconnectMaxMs: 2000,
  subscriberCheckMs: 1000,
  /** A Cluster's slot map (and so the node list the subscriber rotates over) is refreshed this often (ms), unless its options say otherwise. */
  clusterSlotsRefreshMs: 5000,
} as const;

/** A Lua script defined on the connector. */
export interface Script {
  readonly name: string;
  readonly sha: string;
  /** Runs it on `keys` (all in one hash slot on a Cluster) with `args`. */
  run(keys: string[], args: Array<string | number | Buffer>, options?: ScriptRunOptions): Promise<unknown>;
}

export interface ScriptRunOptions {
  /** Per-call timeout (ms). Default the connector's. */
  timeoutMs?: number;
  /**
   * Send at once instead of through ioredis's auto-pipelining (which holds every command until
   * setImmediate to write the tick's commands together): for callers that batch their own calls
   * (the limiter sends one script call per tick), the hold is latency with nothing to gain.
   */
  direct?: boolean;
}

/** Counters since connect. */
export interface ConnectorStats {
  status: string;
  breaker: BreakerState;
  commands: number;
  failures: number;
  timeouts: number;
  rejected: number;
  replyErrors: number;
  reconnects: number;
  /**
   * Cluster, once something is subscribed (with the hearing check on): how long the subscriber's
   * node may go unseen (since the write of the last PING it answered) before 'subscriber' 'down'
   * says relayed messages may be lost (ms; from the cluster-node-timeout once read, see
   * hearing.ts). A node silent for 10 rounds is dropped and reconnected before that if 10 rounds
   * are shorter. Undefined otherwise.
   */
  subscriberLossMs?: number;
}

type Client = Redis | Cluster;

/** Wraps `key` in a hash tag after `prefix`, so every key of one logical key lands in one slot. */
export function hashTagged(prefix: string, key: string): string {
  return `${prefix}{${key}}`;
}

function isCluster(c: RedisConfig): c is { cluster: Array<string | { host: string; port: number }>; options?: ClusterOptions } {
  return typeof c === 'object' && c !== null && Array.isArray((c as { cluster?: unknown }).cluster);
}

/** Describes where a config points, without secrets (for messages). */
export function describeConfig(c: RedisConfig): string {
  if (typeof c === 'string') {
    try {
      const u = new URL(c);
      return `${u.protocol}//${u.host}`;
    } catch {
      return 'an unparsable URL';
    }
  }
  if (isCluster(c)) return `a cluster of ${c.cluster.length} seed nodes`;
  if (Array.isArray((c as RedisOptions).sentinels)) return `sentinels for "${String((c as RedisOptions).name)}"`;
  return `${(c as RedisOptions).host ?? '127.0.0.1'}:${(c as RedisOptions).port ?? 6379}`;
}

function clusterNode(n: string | { host: string; port: number }): { host: string; port: number } {
  if (typeof n !== 'string') return n;
  const u = new URL(n.includes('://') ? n : `redis://${n}`);
  return { host: u.hostname, port: Number(u.port || 6379) };
}

export class RedisConnector extends EventEmitter {
  readonly client: Client;
  readonly breaker: CircuitBreaker;
  readonly timeoutMs: number;
  readonly #config: RedisConfig;
  readonly #connectTimeoutMs: number;
  /** Capped, jittered exponential back-off (ms) before reconnect number `times`. */
  readonly #retryStrategy: (times: number) => number;
  readonly #scripts = new Map<string, { name: string; sha: string; source: string }>();
  #subscriber: Redis | undefined;
  readonly #handlers = new Map<string, Set<(message: string, channel: string) => void>>();
  readonly #subscribing = new Map<string, Promise<void>>();
  /** Subscribes not yet confirmed: waiting for a ready connection (not sent) or for Redis's answer (see #subscribeChannel). */
  readonly #subscribeWaiters = new Set<{ sent: boolean; send(): void; fail(err: unknown): void }>();
  readonly #subscriberCheckMs: number;
  /** The subscriber's hearing check (hearing.ts), made with the subscriber. */
  #hearing: HearingCheck | undefined;
  /** #readNodeTimeout's next attempt after a failure that was not a refusal. */
  #nodeTimeoutRetry: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  /** Every in-flight command's deadline, on one timer. */
  readonly #deadlines = new DeadlineQueue();
  #stats = { commands: 0, failures: 0, timeouts: 0, rejected: 0, replyErrors: 0, reconnects: 0 };
  /** The passwords of the config (URL, options, Cluster seed / node options): scrubbed from every error the connector hands out. */
  readonly #secrets: string[];
  /** Half-open probes in a row that timed out on a connection that stayed 'ready' (see #probeTimedOut). */
  #probeTimeouts = 0;
  /** Probes by which the drop was put off for a call still within its own timeout (#probeTimedOut). */
  #postponed = 0;

  /** Creates the client (it starts connecting at once). Prefer `RedisConnector.connect()`. */
  constructor(config: RedisConfig, options: ConnectorOptions = {}) {
    super();
    checkConfig(config);
    this.#config = config;
    // Every option is checked, and the breaker (which checks its own) built, before the client
    // exists: a bad option must not leave a connection open behind the exception (review37).
    if (options === null || typeof options !== 'object' || Array.isArray(options)) throw new TypeError(`connector options must be an object, got ${describeValue(options)}`);
    for (const k of Object.keys(options)) {
      if (!KNOWN_OPTIONS.has(k)) throw new TypeError(`options.${k} is not a known connector option (known: ${[...KNOWN_OPTIONS].join(', ')})`);
    }
    this.timeoutMs = options.timeoutMs ?? CONNECTOR_DEFAULTS.timeoutMs;
    if (typeof this.timeoutMs !== 'number' || !(this.timeoutMs > 0)) {
      throw new RangeError(`options.timeoutMs must be a positive number of ms (Infinity: none), got ${String(options.timeoutMs)}`);
    }
    this.#connectTimeoutMs = options.connectTimeoutMs ?? CONNECTOR_DEFAULTS.connectTimeoutMs;
    if (typeof this.#connectTimeoutMs !== 'number' || !(this.#connectTimeoutMs >= 0 && this.#connectTimeoutMs <= MAX_TIMER_MS)) {
      throw new RangeError(`options.connectTimeoutMs must be a number of ms from 0 to ${MAX_TIMER_MS}, got ${String(options.connectTimeoutMs)}`);
    }
    this.#subscriberCheckMs = options.subscriberCheckMs ?? CONNECTOR_DEFAULTS.subscriberCheckMs;
    if (!Number.isInteger(this.#subscriberCheckMs) || this.#subscriberCheckMs < 0) {
      throw new RangeError(`subscriberCheckMs must be a non-negative integer (ms), got ${String(options.subscriberCheckMs)}`);
    }
    if (options.reconnect !== undefined && (options.reconnect === null || typeof options.reconnect !== 'object' || Array.isArray(options.reconnect))) {
      throw new TypeError(`options.reconnect must be an object, got ${describeValue(options.reconnect)}`);
    }
    for (const k of Object.keys(options.reconnect ?? {})) {
      if (k !== 'minMs' && k !== 'maxMs') throw new TypeError(`options.reconnect.${k} is not a known option (known: minMs, maxMs)`);
    }
    if (options.breaker !== undefined && (options.breaker === null || typeof options.breaker !== 'object' || Array.isArray(options.breaker))) {
      throw new TypeError(`options.breaker must be an object, got ${describeValue(options.breaker)}`);
    }
    const minMs = options.reconnect?.minMs ?? CONNECTOR_DEFAULTS.reconnectMinMs;
    const maxMs = options.reconnect?.maxMs ?? CONNECTOR_DEFAULTS.reconnectMaxMs;
    for (const [name, v] of [['minMs', minMs], ['maxMs', maxMs]] as const) {
      if (typeof v !== 'number' || !(v >= 1 && v <= MAX_TIMER_MS)) throw new RangeError(`options.reconnect.${name} must be a number of ms from 1 to ${MAX_TIMER_MS}, got ${String(v)}`);
    }
    if (minMs > maxMs) throw new RangeError(`options.reconnect.minMs (${minMs}) must not exceed options.reconnect.maxMs (${maxMs})`);
    this.breaker = new CircuitBreaker('redis', { ...CONNECTOR_DEFAULTS.breaker, ...options.breaker, ...(options.clock ? { clock: options.clock } : {}) });
    const retryStrategy = (this.#retryStrategy = (times: number): number => {
      this.#stats.reconnects++;
      const cap = Math.min(maxMs, minMs * 2 ** Math.min(times, 20));
      return Math.round(cap / 2 + (Math.random() * cap) / 2); // jitter: no thundering herd
    });
    this.#secrets = secretsOf(config);
    const common: RedisOptions = {
      // A backstop for a peer that vanished without closing the connection (the probes' drop,
      // #probe, is the main remedy): the kernel's keep-alive probes end such a socket eventually.
      keepAlive: KEEPALIVE_MS,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: Math.max(this.#connectTimeoutMs, 100),
      retryStrategy,
      lazyConnect: false,
      // Commands issued in one tick go out in one write (and, on a Cluster, one per node): the
      // cache's and the limiter's concurrent calls batch themselves without a pipeline API.
      enableAutoPipelining: true,
    };
    if (isCluster(config)) {
      const nodes = config.cluster.map(clusterNode);
      const seed = typeof config.cluster[0] === 'string' ? new URL(config.cluster[0].includes('://') ? config.cluster[0] : `redis://${config.cluster[0]}`) : undefined;
      this.client = new Cluster(nodes, {
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        clusterRetryStrategy: retryStrategy,
        // ioredis refreshes its slot map only on MOVED or a reconnect by default: a node removed
        // from the Cluster would stay on the list the subscriber rotates over, one added never join it.
        slotsRefreshInterval: CONNECTOR_DEFAULTS.clusterSlotsRefreshMs,
        ...config.options,
        redisOptions: {
          ...common,
          ...(seed?.username ? { username: decodeURIComponent(seed.username) } : {}),
          ...(seed?.password ? { password: decodeURIComponent(seed.password) } : {}),
          ...(seed?.protocol === 'rediss:' ? { tls: {} } : {}),
          Connector: GuardedConnector, // every node's sockets (guarded.ts)
          ...config.options?.redisOptions,
        },
      });
    } else if (typeof config === 'string') {
      this.client = new Redis(config, { ...common, Connector: GuardedConnector });
    } else {
      // A Connector of the caller's own wins (then its sockets are its business).
      this.client = adoptConnector(new Redis({ ...common, Connector: guardedConnectorFor(config), ...config }));
    }
    this.client.on('error', (err: Error) => this.emit('redisError', this.#scrub(err))); // never an unhandled 'error'
    this.client.on('ready', () => {
      this.emit('ready');
      void this.#loadScripts();
    });
    this.client.on('end', () => this.emit('end'));
    this.breaker.on('state', (to: BreakerState, from: BreakerState) => {
      try {
        this.emit('breaker', to, from);
      } finally {
        // After the event (review37): a probe that fails at once (the client not ready) opens the
        // breaker again, and listeners must hear open→half-open before half-open→open. In the
        // finally: a throwing listener must not skip the probe.
        if (to === 'half-open') queueMicrotask(() => void this.#probe());
        // Closed again (by any call's success in the probe slot): the next outage counts afresh.
        if (to === 'closed') {
          this.#probeTimeouts = 0;
          this.#postponed = 0;
        }
      }
    });
  }

  /**
   * Creates a connector and waits until it is ready (scripts loaded) or `connectTimeoutMs`
   * passes; then resolves anyway — in fallback mode (`available` false, a warning emitted) — and
   * keeps reconnecting in the background.
   */
  static async connect(config: RedisConfig, options: ConnectorOptions = {}): Promise<RedisConnector> {
    const c = new RedisConnector(config, options);
    const ready = await c.waitReady(c.#connectTimeoutMs);
    if (!ready) {
      process.emitWarning(
        `hotpath: Redis at ${describeConfig(config)} is not ready after ${c.#connectTimeoutMs} ms; ` +
          'running on local state and reconnecting in the background',
        { code: 'HOTPATH_REDIS_FALLBACK' },
      );
    }
    return c;
  }

  /**
   * Resolves true once ready (and scripts loaded), false after `ms` (at most Node's longest timer,
   * 2^31 − 1 ms, about 24.8 days: a longer bound waits that long).
   * @throws (rejects) RangeError for an `ms` that is not a non-negative number.
   */
  async waitReady(ms: number): Promise<boolean> {
    if (typeof ms !== 'number' || !(ms >= 0)) throw new RangeError(`waitReady(ms): ms must be a non-negative number of ms, got ${describeValue(ms)}`);
    ms = Math.min(ms, MAX_TIMER_MS);
    const deadline = Date.now() + ms;
    if (this.#closed) return false;
    if (this.client.status !== 'ready') {
      const ok = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => done(false), ms);
        const done = (v: boolean): void => {
          clearTimeout(t);
          this.client.off('ready', onReady);
          this.off('closed', onClosed);
          resolve(v);
        };
        const onReady = (): void => done(true);
        const onClosed = (): void => done(false);
        this.client.on('ready', onReady);
        this.once('closed', onClosed);
      });
      if (!ok) return false;
    }
    await withTimeout(this.#loadScripts(), Math.max(1, deadline - Date.now()), 'script loading').catch(() => undefined);
    return !this.#closed;
  }

  /**
   * True when a command would be sent: connected and the breaker closed. (While half-open the
   * connector's own probe holds the one probe slot, so other calls are still refused.)
   */
  get available(): boolean {
    return !this.#closed && this.client.status === 'ready' && this.breaker.state === 'closed';
  }

  /** True for a Cluster connector. */
  get isCluster(): boolean {
    return this.client instanceof Cluster;
  }

  /**
   * The ioredis `keyPrefix` the client puts before every key ('' when none). Channels and SCAN
   * patterns are not keys, so ioredis leaves them alone: components that name channels or scan
   * for their keys add it themselves, so two applications with different prefixes on one Redis
   * stay apart.
   */
  get keyPrefix(): string {
    const o = this.client.options as { keyPrefix?: string; redisOptions?: { keyPrefix?: string } };
    return o.keyPrefix ?? o.redisOptions?.keyPrefix ?? '';
  }

  /**
   * A new client to the same Redis (URL, options, Sentinel or Cluster) with `overrides` on top of
   * the connector's own settings — for libraries that need connections of their own with other
   * settings (BullMQ's workers need `maxRetriesPerRequest: null` and an offline queue). On a
   * Cluster the overrides apply to the cluster and to each node's connection. The caller owns it:
   * it must listen to its 'error' events and close it; the connector neither tracks nor closes it.
   * @throws RedisUnavailableError (ERR_HOTPATH_REDIS_UNAVAILABLE) once the connector is closed.
   */
  duplicateClient(overrides: RedisOptions = {}): Client {
    if (this.#closed) throw new RedisUnavailableError('the Redis connector is closed');
    if (this.client instanceof Cluster) {
      // These three exist on the cluster too; everything (maxRetriesPerRequest among them) goes
      // to each node's connection.
      const { enableOfflineQueue, lazyConnect, enableAutoPipelining } = overrides;
      const clusterLevel: ClusterOptions = {};
      if (enableOfflineQueue !== undefined) clusterLevel.enableOfflineQueue = enableOfflineQueue;
      if (lazyConnect !== undefined) clusterLevel.lazyConnect = lazyConnect;
      if (enableAutoPipelining !== undefined) clusterLevel.enableAutoPipelining = enableAutoPipelining;
      return this.client.duplicate([], { ...clusterLevel, redisOptions: { ...this.client.options.redisOptions, ...overrides } });
    }
    return adoptConnector(this.client.duplicate(overrides));
  }

  stats(): ConnectorStats {
    const stats: ConnectorStats = { status: this.client.status, breaker: this.breaker.state, ...this.#stats };
    if (this.#hearing !== undefined && this.client instanceof Cluster) stats.subscriberLossMs = this.#hearing.lossMs;
    return stats;
  }

  /**
   * Sends one command with a timeout.
   * Rejects with ERR_HOTPATH_REDIS_UNAVAILABLE (not connected, breaker open, timed out, connection
   * lost) or ERR_HOTPATH_REDIS_ERROR (Redis answered with an error).
   */
  command(name: string, args: Array<string | number | Buffer> = [], options: { timeoutMs?: number } = {}): Promise<unknown> {
    // A caller's mistake is refused here, before the breaker and ioredis see it: inside ioredis's
    // auto-pipeline it would be thrown from a timer, outside every promise (review79 D1).
    const bad = checkCommand(name, args);
    if (bad !== undefined) return Promise.reject(bad);
    return this.#guarded(name, () => this.#send(name, args, false, false), options.timeoutMs);
  }

  /**
   * `command` with bulk replies as Buffers (for binary values: GET of a cache entry). With
   * `direct`, sent at once instead of held for auto-pipelining (see ScriptRunOptions.direct).
   */
  commandBuffer(name: string, args: Array<string | number | Buffer> = [], options: { timeoutMs?: number; direct?: boolean } = {}): Promise<unknown> {
    const bad = checkCommand(name, args);
    if (bad !== undefined) return Promise.reject(bad);
    return this.#guarded(name, () => this.#send(name, args, true, options.direct === true), options.timeoutMs);
  }

  /**
   * Writes a command. ioredis's auto-pipelining holds every command until setImmediate and writes
   * the tick's commands together; here the first command of a tick is written at once instead
   * (one caller does not wait for the pipeline's turn: the round trip of a lone command is the raw
   * client's), and so is any `direct` one (a caller that batches its own calls); the others join
   * the pipeline. A command is written at once only while nothing is held for the pipeline, so it
   * never overtakes a command issued before it (except those ioredis itself never pipelines —
   * `select`, `client`, `script`, … — which it writes at once in any case). It is built as ioredis's
   * `call` builds it (the name as given, the client's `keyPrefix`), so its reply is the same either
   * way. On a Cluster everything goes through the pipeline: a batch's keys spread over slots, and
   * the pipeline writes each node's commands together where lone writes would be one per key (and
   * ASKING would trail a redirected command).
   */
  #send(name: string, args: Array<string | number | Buffer>, buffers: boolean, direct: boolean): Promise<unknown> {
    const client = this.client;
    if (!(client instanceof Cluster) && client.autoPipelineQueueSize === 0 && (direct || !this.#ledTick)) {
      if (!direct) {
        this.#ledTick = true;
        setImmediate(this.#endTick);
      }
      return client.sendCommand(new Command(name, args, { replyEncoding: buffers ? null : 'utf8', keyPrefix: client.options.keyPrefix })) as Promise<unknown>;
    }
    if (!buffers) return client.call(name, ...args);
    // The named `<command>Buffer` methods where ioredis has one. callBuffer otherwise — but ioredis
    // 5's auto-pipelining drops callBuffer's command name (it re-adds it only for `call`), so a
    // command the pipeline will take gets its name twice.
    // (Not for a command named CALL: `callBuffer` is ioredis's generic method, which took the
    // arguments as a command name and threw from the auto-pipeline, ending the process: review81.)
    const lower = name.toLowerCase();
    const method = lower === 'call' ? undefined : (client as unknown as Record<string, unknown>)[`${lower}Buffer`];
    if (typeof method === 'function') return (method as (...a: unknown[]) => Promise<unknown>).apply(client, args);
    return shouldUseAutoPipelining(client, 'callBuffer', name) ? client.callBuffer(name, name, ...args) : client.callBuffer(name, ...args);
  }

  /** A command of this tick was written at once (#send); the tick's others join the pipeline. */
  #ledTick = false;
  readonly #endTick = (): void => {
    this.#ledTick = false;
  };

  /**
   * Sends one command under the breaker, with a deadline: the answer, or a typed error (see
   * `command`). Every outcome is handled here, a late answer or rejection after the deadline too.
   */
  #guarded<T>(what: string, send: () => Promise<T>, timeoutMs = this.timeoutMs): Promise<T> {
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0)) {
      return Promise.reject(new RangeError(`options.timeoutMs must be a positive number of ms (Infinity: none), got ${String(timeoutMs)}`));
    }
    if (this.#closed) return Promise.reject(new RedisUnavailableError('the Redis connector is closed'));
    const ticket = this.breaker.acquire();
    if (ticket < 0) {
      this.#stats.rejected++;
      return Promise.reject(new RedisUnavailableError(this.breaker.state === 'half-open'
        ? 'Redis unavailable (circuit half-open: a probe is deciding whether Redis is back)'
        : `Redis unavailable (circuit open, next probe in ${this.breaker.retryAfterMs()} ms)`));
    }
    this.#stats.commands++;
    if (this.client.status !== 'ready') {
      this.#stats.failures++;
      this.breaker.failure();
      return Promise.reject(new RedisUnavailableError(`Redis unavailable (connection ${this.client.status})`));
    }
    let sent: Promise<T>;
    try {
      sent = send();
    } catch (err) {
      // Thrown before anything was sent (ioredis building the command from bad arguments): the
      // caller's mistake, not Redis's state — not counted, and a probe slot it held given back.
      this.breaker.release(ticket);
      return Promise.reject(err);
    }
    return new Promise<T>((resolve, reject) => {
      // One shared timer for every command's deadline (deadlines.ts), not a timer per command.
      const deadline = this.#deadlines.add(timeoutMs, () => {
        if (this.#closed) {
          reject(new RedisUnavailableError('the Redis connector was closed while the command ran'));
          return;
        }
        this.#stats.timeouts++;
        reject(this.#classify(what, new RedisUnavailableError(`Redis ${what} timed out after ${timeoutMs} ms`)));
        // The half-open probe's slot, whoever held it — the connector's PING or a caller's call
        // that took it first (review82: under steady traffic the PING was refused its slot every
        // round, and the count never grew).
        if (CircuitBreaker.isProbe(ticket)) this.#probeTimedOut();
      });
      sent.then((value) => {
        if (deadline.fire === null) return; // timed out already: the late answer is dropped
        this.#deadlines.cancel(deadline);
        if (!this.#closed) this.breaker.success();
        resolve(value);
      }, (err: unknown) => {
        if (deadline.fire === null) return; // timed out already: the late rejection is handled here
        this.#deadlines.cancel(deadline);
        if (this.#closed) reject(new RedisUnavailableError('the Redis connector was closed while the command ran', this.#scrub(err)));
        else if (isProgrammingError(err)) {
          this.breaker.release(ticket); // see the catch above (thrown inside an async send)
          reject(err);
        } else reject(this.#classify(what, err));
      });
    });
  }

  #classify(what: string, err: unknown): HotpathError {
    if (err instanceof HotpathError) {
      if (err instanceof RedisUnavailableError) {
        this.#stats.failures++;
        this.breaker.failure();
      }
      return err;
    }
    err = this.#scrub(err);
    if (isReplyError(err)) {
      if (SERVER_UNAVAILABLE.test((err as Error).message)) {
        // Redis answered, but for its own state, not the command's: it cannot serve calls now
        // (a script running too long, loading its data, a Cluster or replica without its master).
        this.#stats.failures++;
        this.breaker.failure();
        return new RedisUnavailableError(`Redis ${what} refused: ${(err as Error).message}`, err);
      }
      this.#stats.replyErrors++;
      this.breaker.success(); // Redis is up and answering
      return new RedisCommandError(`Redis ${what}: ${(err as Error).message}`, err);
    }
    if (isCrossSlot(err)) {
      // ioredis refused to send it (keys of several slots in one command on a Cluster): the
      // caller's mistake, not an outage — it must not open the breaker for everyone (review37).
      this.#stats.replyErrors++;
      return new RedisCommandError(`Redis ${what}: ${(err as Error).message}`, err);
    }
    this.#stats.failures++;
    this.breaker.failure();
    return new RedisUnavailableError(`Redis ${what} failed: ${(err as Error)?.message ?? String(err)}`, err);
  }

  async #probe(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.command('PING');
      this.#probeTimeouts = 0;
      this.#postponed = 0;
    } catch (err) {
      // The breaker has recorded it (open again); its timer schedules the next probe. A timeout is
      // counted where it happened (#guarded: #probeTimedOut); a PING refused its slot (a caller's
      // call took it) leaves the count as it is; any other answer means the connection works.
      const timedOut = err instanceof RedisUnavailableError && err.message.includes(' timed out after ');
      const refused = err instanceof RedisUnavailableError && err.message.startsWith('Redis unavailable (circuit ');
      if (!timedOut && !refused) {
        this.#probeTimeouts = 0;
        this.#postponed = 0;
      }
    }
  }

  /**
   * A half-open probe (the connector's PING, or a caller's call in its slot) timed out. One that
   * timed out on a connection still 'ready' may have gone down a connection whose peer vanished
   * without closing it (a firewall or NAT dropping the flow): every later probe would time out on
   * it too, for ever. After PROBE_TIMEOUTS_BEFORE_DROP in a row the connection is dropped and
   * ioredis reconnects (on a Cluster every node's), as the subscriber's hearing check does for the
   * subscriber. While another call is still within its own, longer timeout (a caller's slow
   * command, which may be what holds the probes up on a live connection: review81) the drop waits,
   * for at most MAX_POSTPONED more probes (review82: a call with an Infinity timeout held it off for
   * ever).
   */
  #probeTimedOut(): void {
    const client = this.client;
    if (this.#closed || client.status !== 'ready') {
      this.#probeTimeouts = 0;
      return;
    }
    if (++this.#probeTimeouts < PROBE_TIMEOUTS_BEFORE_DROP) return;
    if (this.#deadlines.pending > 0 && ++this.#postponed <= MAX_POSTPONED) {
      this.#probeTimeouts = PROBE_TIMEOUTS_BEFORE_DROP - 1;
      return;
    }
    this.#probeTimeouts = 0;
    this.#postponed = 0;
    this.emit('redisError', new RedisUnavailableError(`Redis at ${describeConfig(this.#config)}: ${PROBE_TIMEOUTS_BEFORE_DROP} probes in a row answered nothing on a connection that looks open; reconnecting it`));
    if (client instanceof Cluster) for (const n of client.nodes('all')) dropConnection(n);
    else dropConnection(client);
  }

  /**
   * `err` with the config's passwords taken out (review79 D4): an AUTH or HELLO command ioredis
   * attached to it (`err.command.args`, which loggers print) redacted, and any password in its
   * message, stack or cause replaced by `***`. Mutates and returns `err` (only errors are touched).
   */
  #scrub(err: unknown, depth = 0): unknown {
    if (!(err instanceof Error) || depth > 3) return err;
    const e = err as Error & { command?: { name?: unknown; args?: unknown }; cause?: unknown };
    const cmd = e.command;
    if (cmd !== null && typeof cmd === 'object' && typeof cmd.name === 'string' && Array.isArray(cmd.args)) {
      const n = cmd.name.toLowerCase();
      if (n === 'auth' || n === 'hello') e.command = { name: cmd.name, args: redactAuthArgs(n, cmd.args) };
    }
    for (const secret of this.#secrets) {
      if (e.message.includes(secret)) e.message = e.message.split(secret).join('***');
      if (typeof e.stack === 'string' && e.stack.includes(secret)) e.stack = e.stack.split(secret).join('***');
    }
    if (e.cause !== undefined) this.#scrub(e.cause, depth + 1);
    return e;
  }

  // ------------------------------------------------------------------ scripts

  /** Defines a Lua script once; returns a handle that runs it by EVALSHA. */
  defineScript(name: string, source: string): Script {
    const sha = createHash('sha1').update(source).digest('hex');
    const known = this.#scripts.get(name);
    if (known !== undefined && known.sha !== sha) throw new TypeError(`a different script is already defined as "${name}"`);
    this.#scripts.set(name, { name, sha, source });
    if (this.client.status === 'ready') void this.#loadScripts();
    return {
      name,
      sha,
      run: (keys, args, options = {}) => {
        const bad = checkKeys(`script ${name}`, keys) ?? checkCommand(`script ${name}`, args);
        if (bad !== undefined) return Promise.reject(bad);
        if (this.client instanceof Cluster) {
          // The slot of the key Redis sees: after the keyPrefix ioredis adds (review40: a prefix
          // that is itself a hash tag puts every key in one slot).
          const bad = crossSlot(keys, this.keyPrefix);
          if (bad !== undefined) {
            return Promise.reject(new TypeError(`script ${name}: on a Redis Cluster the keys of one call must share a hash slot (use a {hash tag}), got ${JSON.stringify(bad[0])} and ${JSON.stringify(bad[1])}`));
          }
        }
        return this.#guarded(`script ${name}`, () => this.#evalsha(sha, source, keys, args, options.direct === true), options.timeoutMs);
      },
    };
  }

  async #evalsha(sha: string, source: string, keys: string[], args: Array<string | number | Buffer>, direct: boolean): Promise<unknown> {
    const send = (name: string, first: string): Promise<unknown> => this.#send(name, [first, keys.length, ...keys, ...args], false, direct);
    try {
      return await send('evalsha', sha);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      // A restarted or failed-over node lost its script cache: EVAL runs it and caches it again.
      return send('eval', source);
    }
  }

  async #loadScripts(): Promise<void> {
    if (this.#scripts.size === 0) return;
    const nodes: Redis[] = this.client instanceof Cluster ? this.client.nodes('master') : [this.client];
    await Promise.all(
      nodes.flatMap((n) => [...this.#scripts.values()].map((s) => n.script('LOAD', s.source).catch(() => undefined))),
    );
  }

  // ------------------------------------------------------------------ multi-key

  /** MGET that also works across slots on a Cluster (one MGET per slot, answers in key order). */
  mget(keys: string[], options: { timeoutMs?: number } = {}): Promise<Array<string | null>> {
    return this.#mget<string>(keys, false, options);
  }

  /** `mget` with the values as Buffers; `direct` as for commandBuffer. */
  mgetBuffer(keys: string[], options: { timeoutMs?: number; direct?: boolean } = {}): Promise<Array<Buffer | null>> {
    return this.#mget<Buffer>(keys, true, options);
  }

  async #mget<T>(keys: string[], buffers: boolean, options: { timeoutMs?: number; direct?: boolean }): Promise<Array<T | null>> {
    const bad = checkKeys('mget', keys);
    if (bad !== undefined) throw bad;
    if (keys.length === 0) return [];
    if (!(this.client instanceof Cluster)) {
      // #guarded directly: the keys are checked already.
      return (await this.#guarded('MGET', () => this.#send('MGET', keys, buffers, buffers && options.direct === true), options.timeoutMs)) as Array<T | null>;
    }
    const bySlot = new Map<number, number[]>();
    // The slot of the key Redis sees: after the keyPrefix ioredis adds (review79 D6, as for scripts).
    const prefix = this.keyPrefix;
    keys.forEach((k, i) => {
      const slot = calculateSlot(prefix + k);
      let list = bySlot.get(slot);
      if (list === undefined) bySlot.set(slot, (list = []));
      list.push(i);
    });
    // One logical call: one breaker slot, one timeout, one success or failure, however many slots.
    const cluster = this.client;
    const groups = [...bySlot.values()];
    const direct = options.direct === true && buffers;
    const answers = await this.#guarded('MGET', () =>
      Promise.all(groups.map((idx) => (direct
        ? this.#send('mget', idx.map((i) => keys[i]!), true, true)
        : buffers ? cluster.mgetBuffer(...idx.map((i) => keys[i]!)) : cluster.call('MGET', ...idx.map((i) => keys[i]!))) as Promise<Array<T | null>>)), options.timeoutMs);
    const out = new Array<T | null>(keys.length).fill(null);
    groups.forEach((idx, g) => idx.forEach((i, j) => (out[i] = answers[g]![j] ?? null)));
    return out;
  }

  // ------------------------------------------------------------------ pub/sub

  /**
   * Subscribes `handler` to `channel` on the connector's one subscriber connection (opened on
   * first use). Returns a function that unsubscribes it.
   * @throws (rejects) ERR_HOTPATH_REDIS_UNAVAILABLE when Redis does not confirm the subscription
   *   within max(timeoutMs, connectTimeoutMs), or the connector is closed meanwhile.
   */
  async subscribe(channel: string, handler: (message: string, channel: string) => void): Promise<() => Promise<void>> {
    if (this.#closed) throw new RedisUnavailableError('the Redis connector is closed');
    const sub = this.#subscriberClient();
    // Every caller waits for the one SUBSCRIBE of its channel; if it fails, all of them fail.
    let pending = this.#subscribing.get(channel);
    if (pending === undefined && !this.#handlers.has(channel)) {
      pending = this.#subscribeChannel(sub, channel).finally(() => this.#subscribing.delete(channel));
      this.#subscribing.set(channel, pending);
    }
    if (pending !== undefined) {
      try {
        await pending;
      } catch (err) {
        throw err instanceof HotpathError ? err : new RedisUnavailableError(`Redis subscribe failed: ${(err as Error).message}`, err);
      }
    }
    // Closed while it was on its way: no 'subscriber' events will follow, so it must not look live.
    if (this.#closed) throw new RedisUnavailableError('the Redis connector is closed');
    const set = this.#handlers.get(channel)!;
    set.add(handler);
    this.#hearing?.listen(); // the check's channel, from the first subscription on
    return async () => {
      const s = this.#handlers.get(channel);
      if (s === undefined || !s.delete(handler) || s.size > 0) return;
      this.#handlers.delete(channel);
      // Only a ready connection holds subscriptions in Redis; the next 'ready' subscribes what
      // #handlers lists and nothing else (ioredis's autoResubscribe is off). An UNSUBSCRIBE sent
      // during a handshake would be undone at 'ready' by a resubscribe of the old channels.
      if (sub.status !== 'ready') return;
      await withTimeout(sub.unsubscribe(channel), Math.max(this.timeoutMs, 500), `unsubscribe ${channel}`).catch(() => undefined);
    };
  }

  /**
   * One SUBSCRIBE of `channel`, confirmed within max(timeoutMs, connectTimeoutMs); on success the
   * channel is listed in #handlers (so 'ready' resubscribes it).
   *
   * SUBSCRIBE goes out only on a ready connection. ioredis writes it at once during the handshake
   * (Redis allows SUBSCRIBE while loading): the connection enters subscriber mode, its ready check
   * (INFO) is refused, ioredis reconnects and — the connection never having been ready — does not
   * resubscribe: the subscribe resolved on a connection that then came back deaf. Before ready the
   * attempt waits in #subscribeWaiters (not in ioredis's offline queue, where a long outage would
   * pile up one SUBSCRIBE per retry); it leaves the set when it settles (confirmed, failed, timed
   * out, or the connector closed): nothing stays behind per abandoned attempt. A confirmation
   * that arrives after the attempt gave up is undone.
   */
  #subscribeChannel(sub: Redis, channel: string): Promise<void> {
    const ms = Math.max(this.timeoutMs, this.#connectTimeoutMs);
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const waiter = {
        sent: false,
        send: (): void => {
          waiter.sent = true;
          sub.subscribe(channel).then(() => {
            if (!settled) {
              this.#handlers.set(channel, this.#handlers.get(channel) ?? new Set());
              finish(undefined);
            } else if (!this.#handlers.has(channel) && !this.#subscribing.has(channel) && !this.#closed && sub.status === 'ready') {
              sub.unsubscribe(channel).catch(() => undefined); // confirmed too late: nobody listens
            }
          }, (err: unknown) => finish(err ?? new Error('subscribe failed')));
        },
        fail: (err: unknown): void => finish(err),
      };
      const finish = (err: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#subscribeWaiters.delete(waiter);
        if (err === undefined) resolve();
        else reject(err);
      };
      const timer = setTimeout(() => finish(new RedisUnavailableError(`Redis subscribe ${channel} timed out after ${ms} ms`)), ms);
      this.#subscribeWaiters.add(waiter);
      if (sub.status === 'ready') waiter.send();
    });
  }

  /** Publishes `message` on `channel`; resolves with the number of receivers Redis reports. */
  async publish(channel: string, message: string, options: { timeoutMs?: number } = {}): Promise<number> {
    return (await this.command('PUBLISH', [channel, message], options)) as number;
  }

  #subscriberClient(): Redis {
    if (this.#subscriber !== undefined) return this.#subscriber;
    // Subscribing needs a connection of its own; commands wait for it to connect.
    // Subscribing waits for the connection (bounded by the subscribe timeout) instead of failing
    // at once while Redis reconnects; the command connection keeps failing fast. ioredis's
    // autoResubscribe is off: the 'ready' handler below resubscribes exactly what #handlers lists.
    const sub: Redis = this.client instanceof Cluster
      ? this.#clusterSubscriber(this.client)
      : adoptConnector(this.client.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null, autoResubscribe: false, enableAutoPipelining: false }));
    sub.on('error', (err: Error) => this.emit('redisError', this.#scrub(err)));
    // Subscribers must know when messages may have been missed: 'subscriber' 'down' when the
    // connection drops (once per outage, not per failed reconnect), 'up' once it is ready and our
    // channels are subscribed again.
    let wasReady = false;
    let live = false;
    let readyCount = 0;
    let stallDown = -1;
    let handshake: ReturnType<typeof setTimeout> | undefined;
    const hearing: HearingCheck | undefined = this.#subscriberCheckMs === 0 ? undefined : new HearingCheck(sub, {
      listening: (): boolean => this.#handlers.size - (this.#handlers.has(hearing!.channel) ? 1 : 0) > 0,
      live: () => live,
      subscribe: (channel, onMessage) => this.subscribe(channel, onMessage),
      publish: (channel, message) => this.#publishProbe(sub, channel, message),
      stall: () => {
        if (!live || this.#closed) return;
        live = false;
        stallDown = readyCount; // the 'down' this stall gave, on this connection
        this.emit('subscriber', 'down');
      },
      stallEnded: () => {
        // Only the 'down' a stall gave is ended here (not one of a reconnect still resubscribing).
        if (stallDown !== readyCount || live || this.#closed || sub.status !== 'ready') return;
        stallDown = -1;
        live = true;
        this.emit('subscriber', 'up');
      },
      drop: (reason) => {
        if (this.#closed) return;
        this.emit('redisError', new RedisUnavailableError(`Redis subscriber at ${String(sub.options.host)}:${String(sub.options.port)} ${reason}; reconnecting it`));
        dropConnection(sub);
      },
      problem: (message) => {
        if (this.#closed) return;
        this.emit('redisError', new RedisCommandError(message));
        process.emitWarning(`hotpath: ${message}`, { code: 'HOTPATH_REDIS_HEARING' });
      },
    }, { checkMs: this.#subscriberCheckMs, timeoutMs: this.timeoutMs, cluster: this.client instanceof Cluster });
    this.#hearing = hearing;
    if (hearing !== undefined && this.client instanceof Cluster) this.#readNodeTimeout(this.client, hearing);
    sub.on('connect', () => {
      hearing?.connected();
      // ioredis bounds the TCP connect (connectTimeout) but not the handshake after it: a node that
      // accepts connections and never answers (stopped, loading a large sync) would hold the
      // subscriber there for as long as it stalls. Past the deadline, reconnect (on a Cluster, to
      // the next node).
      clearTimeout(handshake);
      handshake = setTimeout(() => {
        if (!this.#closed && sub.status !== 'ready' && sub.status !== 'end') dropConnection(sub);
      }, Math.max(this.#connectTimeoutMs, 1000));
      handshake.unref?.();
    });
    sub.on('ready', () => {
      clearTimeout(handshake);
      const epoch = ++readyCount;
      const first = !wasReady;
      wasReady = true;
      stallDown = -1;
      if (first) live = true;
      else {
        // Subscribe our channels again (autoResubscribe is off) and announce 'up' only once they
        // are live, so nothing published between the two is missed by a listener that trusts 'up'.
        // Until then the connection is not live: a drop meanwhile is no second 'down'.
        const channels = [...this.#handlers.keys()];
        const up = (): void => {
          if (this.#closed || epoch !== readyCount || live) return;
          live = true;
          this.emit('subscriber', 'up');
        };
        if (channels.length === 0) up();
        else {
          withTimeout(sub.subscribe(...channels), Math.max(this.timeoutMs, 1000), 'resubscribe').then(up, () => {
            // Refused or silent (an ACL change, a stuck server): reconnect and try again, rather
            // than stay deaf without anyone knowing — unless this connection is gone already.
            if (!this.#closed && epoch === readyCount && sub.status === 'ready') dropConnection(sub);
          });
        }
      }
      // Subscribes that waited for a ready connection go out after the resubscribe above.
      for (const w of [...this.#subscribeWaiters]) if (!w.sent) w.send();
    });
    sub.on('close', () => {
      clearTimeout(handshake);
      hearing?.closed();
      if (live && !this.#closed) this.emit('subscriber', 'down');
      live = false;
    });
    sub.on('message', (channel: string, message: string) => {
      for (const h of this.#handlers.get(channel) ?? []) {
        try {
          h(message, channel);
        } catch (err) {
          this.emit('handlerError', err);
        }
      }
    });
    this.#subscriber = sub;
    return sub;
  }

  /**
   * Tells the hearing check the Cluster's cluster-node-timeout (the least of the masters'), read
   * once with CONFIG GET: stalls of the subscriber's node shorter than half of it lose nothing
   * (hearing.ts). Where CONFIG is refused (an ACL user without it, a managed service that hides
   * it) the check keeps treating every stall of a round as a loss, and says so once.
   */
  #readNodeTimeout(cluster: Cluster, hearing: HearingCheck, attempt = 0): void {
    if (this.#closed) return;
    const masters = cluster.nodes('master');
    if (masters.length === 0) {
      // No slot map yet (started while the Cluster was unreachable): once it has one.
      cluster.once('ready', () => this.#readNodeTimeout(cluster, hearing, attempt));
      return;
    }
    Promise.all(masters.map((n) => withTimeout(n.config('GET', 'cluster-node-timeout'), Math.max(this.timeoutMs, 1000), 'CONFIG GET cluster-node-timeout')))
      .then((replies) => {
        const ms = Math.min(...replies.map((r) => Number((r as string[] | undefined)?.[1])));
        if (!Number.isFinite(ms) || ms <= 0) throw new Error(`no cluster-node-timeout in the replies (${JSON.stringify(replies).slice(0, 120)})`);
        hearing.nodeTimeout(ms);
      })
      .catch((err: unknown) => {
        // Not a warning: the check stays safe, only more cautious (a stall of a round clears caches).
        if (this.#closed) return;
        const message = (err as Error)?.message ?? String(err);
        // Redis's own refusals (NOPERM; ERR unknown command for a renamed CONFIG): for good.
        const refused = /NOPERM|^ERR /.test(message);
        if (attempt === 0) {
          this.emit('redisError', new RedisCommandError(`the subscriber's hearing check could not read cluster-node-timeout (${message}): every stall of its node of ${hearing.gapMs} ms or more is taken for lost messages ('subscriber' down, then up)${refused ? '' : ' until it can'}`));
        }
        // A refusal is for good; a node down or slow is not: try again in a while.
        if (!refused) {
          this.#nodeTimeoutRetry = setTimeout(() => this.#readNodeTimeout(cluster, hearing, attempt + 1), 30_000);
          this.#nodeTimeoutRetry.unref?.();
        }
      });
  }

  /** PUBLISH of a hearing check: on a Cluster through a master other than the subscriber's node. */
  #publishProbe(sub: Redis, channel: string, message: string): Promise<unknown> {
    if (this.client instanceof Cluster) {
      const others = this.client.nodes('master').filter((n) => n.options.host !== sub.options.host || n.options.port !== sub.options.port);
      const node = others[Number(message) % Math.max(1, others.length)];
      if (node !== undefined) return withTimeout(node.publish(channel, message), this.timeoutMs, 'hearing check');
    }
    return this.command('PUBLISH', [channel, message]);
  }

  /**
   * The subscriber of a Cluster: a plain connection to one node, not ioredis's Cluster
   * subscriber. Classic PUBLISH reaches every node of a Cluster, so any node hears every
   * channel; a plain connection has the single-node gate and events ('ready', 'close'), while
   * ioredis's ClusterSubscriber moves to another node and resubscribes silently — no 'close',
   * no 'ready' — so messages published meanwhile were lost without a 'subscriber' 'down', and a
   * SUBSCRIBE written during the new node's handshake resolved on a connection that came back
   * deaf (review23). Each (re)connect goes to the next node the Cluster knows (its seeds before
   * it has a slot map): a node that died or left is skipped on the next attempt. The first node
   * is a random one, so many instances' subscribers spread over the Cluster.
   */
  #clusterSubscriber(cluster: Cluster): Redis {
    const seeds = isCluster(this.#config) ? this.#config.cluster.map(clusterNode) : [];
    // Start at a random node: the subscribers of many instances spread over the Cluster.
    let turn = Math.floor(Math.random() * 1024);
    const next = (): { host: string; port: number } => {
      const known = cluster.nodes('all').map((n) => ({ host: n.options.host ?? '127.0.0.1', port: n.options.port ?? 6379 }));
      const nodes = known.length > 0 ? known : seeds;
      return nodes[turn++ % nodes.length]!;
    };
    // The connector ioredis runs on every (re)connect, here with the next node's address.
    class RotatingConnector extends GuardedConnector {
      override connect(emit: Parameters<GuardedConnector['connect']>[0]): ReturnType<GuardedConnector['connect']> {
        Object.assign(this.options, next());
        return super.connect(emit);
      }
    }
    // host/port are set by the connector on each connect.
    return new Redis({
      ...cluster.options.redisOptions,
      Connector: RotatingConnector,
      retryStrategy: this.#retryStrategy,
      enableAutoPipelining: false, // a PING is written when sent: the hearing check times it from there
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      autoResubscribe: false,
    });
  }

  /** Closes both connections (QUIT, then disconnect if Redis does not answer). Idempotent. */
  /** close()'s one run: a second call waits for the first (review81: it returned at once). */
  #closing: Promise<void> | undefined;

  close(): Promise<void> {
    return (this.#closing ??= this.#close());
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#hearing?.dispose();
    clearTimeout(this.#nodeTimeoutRetry);
    for (const w of [...this.#subscribeWaiters]) w.fail(new RedisUnavailableError('the Redis connector is closed'));
    this.emit('closed');
    this.breaker.dispose();
    // Commands issued in this tick are still in ioredis's auto-pipeline, and QUIT is written at
    // once: it would overtake them and they would fail (review37). One turn flushes the pipeline;
    // Redis then answers them before QUIT.
    await new Promise<void>((resolve) => setImmediate(resolve));
    // The calls in flight are answered first while Redis answers (the sockets are destroyed below,
    // which would fail them): up to CLOSE_DRAIN_MS, then the rest are settled as closed.
    const drainUntil = performance.now() + CLOSE_DRAIN_MS;
    while (this.#deadlines.pending > 0 && performance.now() < drainUntil) await new Promise<void>((resolve) => setTimeout(resolve, 2));
    await Promise.all([this.client, this.#subscriber].map(async (c) => {
      if (c === undefined) return;
      if (c.status === 'ready') {
        await withTimeout(c.quit(), 500, 'quit').catch(() => undefined);
      }
      // Not a graceful end, which waits for the peer's FIN (a stalled server never sends it, and
      // ioredis rejects the calls still queued on the socket only when it gives up, 2 s later):
      // the sockets are destroyed; disconnect() first, so ioredis does not reconnect.
      const nodes: Redis[] = c instanceof Cluster ? c.nodes('all') : [c];
      c.disconnect();
      for (const n of nodes) destroySocket(n);
    }));
    // Every call still in flight (a stalled server, a call with no timeout) settles now, with
    // "closed while the command ran", before close() resolves (review79 D7).
    this.#deadlines.fireAll();
    // One turn, so the callers' own handlers of those rejections (and async wrappers such as
    // mget's) have run by the time close() resolves.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/**
 * Drops a connection at once, for ioredis to reconnect: its socket destroyed, not ended — a
 * graceful end waits for the peer's FIN, which a stalled server never sends (ioredis would then
 * destroy it only after its disconnectTimeout, 2 s).
 */
function dropConnection(c: Redis): void {
  if (!destroySocket(c)) c.disconnect(true);
}

/** Destroys `c`'s socket if it has a live one; true if it did. */
function destroySocket(c: Redis): boolean {
  const stream = c.stream as { destroyed?: boolean; destroy?: () => void } | undefined;
  if (stream?.destroy === undefined || stream.destroyed === true) return false;
  stream.destroy();
  return true;
}

/** How long close() lets the calls in flight be answered before it settles them as closed (ms). */
const CLOSE_DRAIN_MS = 500;

const KNOWN_OPTIONS: ReadonlySet<string> = new Set(['timeoutMs', 'connectTimeoutMs', 'breaker', 'reconnect', 'subscriberCheckMs', 'clock']);

/** TCP keep-alive's initial delay on every connection to Redis (ms). */
const KEEPALIVE_MS = 10_000;

/** Half-open probes in a row that time out on a 'ready' connection before it is dropped and reconnected. */
export const PROBE_TIMEOUTS_BEFORE_DROP = 2;

/** Probes by which a drop waits at most for calls still within their own timeout (#probeTimedOut). */
const MAX_POSTPONED = 2;

/**
 * Reply errors about the server's state, not the command's: Redis cannot serve calls now. They
 * count as failures for the breaker and reject with ERR_HOTPATH_REDIS_UNAVAILABLE (review79 D5).
 * BUSY (a script or module command running too long), LOADING (a restart loading its data),
 * MASTERDOWN (a replica that lost its master), CLUSTERDOWN, TRYAGAIN (a Cluster slot migrating or
 * failing over), READONLY (writes reaching a replica, as after a failover), MISCONF (writes refused
 * after a failed save), NOREPLICAS (min-replicas-to-write not met). BUSYKEY and BUSYGROUP are the
 * command's own errors (\b: they do not match).
 */
const SERVER_UNAVAILABLE = /^(?:BUSY (?:Redis|Valkey) is busy|LOADING (?:Redis|Valkey) is loading|MASTERDOWN Link with MASTER is down|CLUSTERDOWN (?:The cluster is down|Hash slot not served)|TRYAGAIN Multiple keys request|READONLY You can't write against a read only replica|MISCONF (?:(?:Redis|Valkey) is configured to save RDB snapshots|Errors writing to the AOF file)|NOREPLICAS Not enough good replicas)/;

function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'bigint') return `${v}n`;
  if (v === null) return 'null';
  if (typeof v === 'symbol') return 'a symbol';
  if (typeof v === 'function') return 'a function';
  if (typeof v !== 'object') return String(v);
  if (Array.isArray(v)) return 'an array';
  return Buffer.isBuffer(v) ? 'a Buffer' : 'an object';
}

/**
 * A TypeError naming what is wrong with a command's name or arguments, or undefined (a few typeof
 * checks, no allocation, when they are fine): a non-empty string name, an array of strings,
 * numbers and Buffers.
 */
function checkCommand(name: unknown, args: unknown): TypeError | undefined {
  if (typeof name !== 'string' || name === '') return new TypeError(`command name must be a non-empty string, got ${describeValue(name)}`);
  if (!Array.isArray(args)) return new TypeError(`${name}: args must be an array of strings, numbers or Buffers, got ${describeValue(args)}`);
  for (let i = 0; i < args.length; i++) {
    const a: unknown = args[i];
    if (typeof a !== 'string' && typeof a !== 'number' && typeof a !== 'bigint' && !Buffer.isBuffer(a)) {
      return new TypeError(`${name}: args[${i}] must be a string, a number, a bigint or a Buffer, got ${describeValue(a)}`);
    }
  }
  return undefined;
}

/** checkCommand for a list of keys (strings or Buffers). */
function checkKeys(what: string, keys: unknown): TypeError | undefined {
  if (!Array.isArray(keys)) return new TypeError(`${what}: keys must be an array of strings, got ${describeValue(keys)}`);
  for (let i = 0; i < keys.length; i++) {
    const k: unknown = keys[i];
    if (typeof k !== 'string' && !Buffer.isBuffer(k)) return new TypeError(`${what}: keys[${i}] must be a string, got ${describeValue(k)}`);
  }
  return undefined;
}

/**
 * An error ioredis threw while building a command from bad arguments (a TypeError or RangeError of
 * JavaScript itself, not one of Redis's replies or a socket's): the caller's mistake, never an outage.
 */
function isProgrammingError(err: unknown): boolean {
  return (err instanceof TypeError || err instanceof RangeError) && !(err instanceof HotpathError);
}

/** AUTH / HELLO arguments with the password replaced by '***'. */
function redactAuthArgs(name: string, args: unknown[]): unknown[] {
  if (name === 'auth') return args.length >= 2 ? [args[0], '***', ...args.slice(2).map(() => '***')] : args.map(() => '***');
  // HELLO protover [AUTH username password] [SETNAME clientname]
  const out = args.slice();
  for (let i = 0; i < out.length; i++) {
    if (String(out[i]).toUpperCase() === 'AUTH') {
      if (i + 2 < out.length) out[i + 2] = '***';
      i += 2;
    }
  }
  return out;
}

/** The passwords a config holds (to scrub from errors): URL, ioredis options, Cluster seed and node options, Sentinel. */
function secretsOf(config: RedisConfig): string[] {
  const out = new Set<string>();
  const fromUrl = (u: string): void => {
    try {
      const url = new URL(u.includes('://') ? u : `redis://${u}`);
      if (url.password !== '') {
        out.add(url.password);
        out.add(decodeURIComponent(url.password));
      }
    } catch {
      // not a URL: no secret in it
    }
  };
  const fromOptions = (o: unknown): void => {
    if (o === null || typeof o !== 'object') return;
    for (const k of ['password', 'sentinelPassword'] as const) {
      const v = (o as Record<string, unknown>)[k];
      if (typeof v === 'string' && v !== '') out.add(v);
    }
  };
  if (typeof config === 'string') fromUrl(config);
  else if (isCluster(config)) {
    for (const n of config.cluster) if (typeof n === 'string') fromUrl(n);
    fromOptions(config.options?.redisOptions);
  } else fromOptions(config);
  // Very short "passwords" would scrub ordinary words from messages; they are kept out of the
  // messages' scrub (AUTH/HELLO arguments are redacted whatever their length).
  return [...out].filter((p) => p.length >= 4);
}

/** The checks createEngine applies to `options.redis`, for the exported connector too (review79 D8). */
function checkConfig(config: unknown): void {
  if (typeof config === 'string') {
    let u: URL;
    try {
      u = new URL(config);
    } catch {
      throw new TypeError('the Redis config must be a redis:// or rediss:// URL, got an unparsable string');
    }
    if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new TypeError(`the Redis config must be a redis:// or rediss:// URL, got protocol ${JSON.stringify(u.protocol)}`);
    return;
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new TypeError(`the Redis config must be a redis:// URL, ioredis options or { cluster: [...] }, got ${describeValue(config)}`);
  }
  if ('cluster' in config) {
    const cluster = (config as { cluster: unknown }).cluster;
    if (!Array.isArray(cluster) || cluster.length === 0) throw new TypeError('the Redis config\'s cluster must be a non-empty array of URLs or { host, port }');
    for (const n of cluster) {
      if (typeof n !== 'string' && (n === null || typeof n !== 'object' || typeof (n as { host?: unknown }).host !== 'string')) {
        throw new TypeError(`the Redis config's cluster entries must be URLs or { host, port }, got ${describeValue(n)}`);
      }
    }
  }
}

function isReplyError(err: unknown): boolean {
  return err instanceof Error && (err.name === 'ReplyError' || err.constructor?.name === 'ReplyError');
}

/** ioredis's own refusal of a command whose keys span slots on a Cluster (it sends nothing). */
function isCrossSlot(err: unknown): boolean {
  return err instanceof Error && /should belong to the same slot|same slots allocation group|CROSSSLOT/.test(err.message);
}

/**
 * Two of `keys` that fall in different hash slots once `prefix` is put before them, or undefined:
 * on a Cluster one command (a script) runs on one node, so its keys must share a slot (a hash
 * tag: `{user:42}:a`, `{user:42}:b`).
 */
function crossSlot(keys: string[], prefix: string): [string, string] | undefined {
  if (keys.length < 2) return undefined;
  const first = calculateSlot(prefix + keys[0]!);
  for (let i = 1; i < keys.length; i++) {
    if (calculateSlot(prefix + keys[i]!) !== first) return [keys[0]!, keys[i]!];
  }
  return undefined;
}

/**
 * `p`, or ERR_HOTPATH_REDIS_UNAVAILABLE (`Redis <what> timed out after <ms> ms`) once `ms` pass;
 * a late rejection of `p` is handled (never unhandled). For calls on connections the connector
 * does not guard (BullMQ's, a node of a Cluster).
 */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      t = setTimeout(() => {
        p.catch(() => {});
        reject(new RedisUnavailableError(`Redis ${what} timed out after ${ms} ms`));
      }, ms);
    }),
  ]).finally(() => clearTimeout(t));
}
