/**
 * The multi-tier cache: L1 live objects per thread (W-TinyLFU or LRU), L2 bytes in the engine's
 * shared memory (every thread of the process), L3 Redis (every process), with single flight,
 * stale-while-revalidate / stale-if-error, versioned invalidation and a bloom filter that saves
 * the Redis round trip of a miss for a key that was never written.
 *
 * Consistency model (README "Cache"):
 * - Every write (set, delete, a load's store) carries a version from the process's shared clock
 *   (StampTable.nextVersion), taken when the write (or the load) starts. L2 and Redis refuse a write older than
 *   what they hold, deletes leave tombstones for `l3.tombstoneMs`, so a late write never
 *   resurrects a deleted key and a late invalidation never wipes a newer value.
 * - L1 entries remember the key's stamp (StampTable, shared memory) when they were filled; any
 *   thread's write or delete bumps the key's stamp inside L2's lock, and clear() bumps the cache
 *   epoch, after which each thread empties its L1 before its next read or fill — so a thread's
 *   L1 never serves a value older than a write another thread finished before the read began.
 * - Across processes, writes are published on one pub/sub channel from inside the write's Lua
 *   script. Messages for keys we hold at an older version drop them. After a pub/sub outage the
 *   local tiers are cleared (epoch bump): what was cached while deaf is not trusted.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { ClosedError, CorruptValueError, HotpathError, TimeoutError, ValueTooLargeError } from '../errors.js';
import { SYSTEM_CLOCK, type Clock } from '../options.js';
import { MAX_TIMER_MS } from '../timer.js';
import { CoarseClock } from '../runtime/coarse-clock.js';
import { KeyHash } from '../runtime/key-hash.js';
import type { ThreadRuntime } from '../runtime/thread.js';
import { ExactViews, ValueCodec, type ValueName } from '../codec/codec.js';
import type { RedisConnector } from '../redis/connector.js';
import type { Compressor } from '../compress/compressor.js';
import { L1Store } from './l1.js';
import { SharedStore, utf8Length, type L2Hold } from './l2.js';
import { StampTable } from './stamps.js';
import { SharedBloom } from './bloom.js';
import { FlightTable } from './flight.js';
import {
  FLAG_COMPRESSED, FLAG_TOMBSTONE, RedisTier, decodeEntry, encodeEntry, isUnavailable, parseBusMessage,
  type BusMessage, type StoredEntry,
} from './l3.js';

/** L1 settings (per thread). */
export interface L1Options {
  /** Most entries per thread. Default 10 000. */
  maxEntries?: number;
  /** Most bytes per thread (sizes from `sizeOf`, else the encoded size). Default: no byte bound. */
  maxBytes?: number;
  /** Admission/eviction: 'tinylfu' (W-TinyLFU, default) or 'lru'. */
  policy?: 'tinylfu' | 'lru';
  /** The size of a value in bytes for `maxBytes`. Default: its encoded size. */
  sizeOf?: (value: unknown, key: string) => number;
}

/** L2 settings (shared memory, every thread of the process). */
export interface L2Options {
  /** Bytes of shared memory for L2, carved from the engine's arena. Default 8 MiB. */
  bytes?: number;
  /** Largest key (UTF-8) + encoded value L2 stores. Default: L2's page size − 32 (bytes / 128 as a power of two, clamped to 64 KiB..1 MiB). */
  maxValueBytes?: number;
}

/** L3 settings (Redis; used when the engine has Redis). */
export interface L3Options {
  /** Timeout of each Redis call (ms). Default: the engine's redisTimeoutMs. */
  timeoutMs?: number;
  /** Encoded values of at least this many bytes are stored LZ4-compressed (when smaller so). Default 4096; 0 = never. */
  compressAbove?: number;
  /** How long a delete's tombstone stays (ms): late writes older than it are refused meanwhile. Default 60 000. */
  tombstoneMs?: number;
  /** getOrLoad takes a Redis lease (SET NX PX) so one instance loads a key at a time. Default false. */
  lease?: boolean;
  /** How long a lease holds (ms). Default: loaderTimeoutMs. */
  leaseMs?: number;
}

/** Bloom filter settings (a filter of keys known to exist in Redis; only with L3). */
export interface CacheBloomOptions {
  /** Keys the filter is sized for. Default 1 000 000. */
  expectedKeys?: number;
  /** Target false-positive rate. Default 0.01. */
  falsePositiveRate?: number;
  /**
   * A key stays in the filter at least this long after it was written (ms); the filter is trusted
   * only once it has listened this long without a gap, and a write with a longer TTL (or none)
   * suspends trust until that TTL passes. Default: how long Redis keeps an entry written with the
   * cache's defaults — `ttl` + max(`staleWhileRevalidate`, `staleIfError`) — or 1 hour without a
   * (finite) one. An entry another instance wrote with a longer lifetime before this one started
   * is not known to the filter: see README "Limits".
   */
  horizonMs?: number;
}

/** Options of the cache (`createEngine({ cache })` or `new Cache(options, deps)`). */
export interface CacheOptions {
  /** Name of the cache's shared regions (any thread opens it by name). Default 'default'. */
  name?: string;
  /** Default time to live (ms) of `set` and `getOrLoad`. Default: none (until evicted). */
  ttl?: number;
  /** getOrLoad default: serve a value this long past its ttl while it reloads in the background (ms). Default 0. */
  staleWhileRevalidate?: number;
  /** getOrLoad default: serve a value this long past its ttl when its loader fails (ms). Default 0. */
  staleIfError?: number;
  /** How long a loader may run before getOrLoad rejects with ERR_HOTPATH_TIMEOUT (ms). Default 10 000. */
  loaderTimeoutMs?: number;
  /** The largest encoded value any tier accepts (bytes); over it set rejects with ERR_HOTPATH_VALUE_TOO_LARGE. Default 8 MiB. */
  maxValueBytes?: number;
  /** L1 settings, or false for no L1. */
  l1?: L1Options | false;
  /** L2 settings, or false for no L2 (then there is no cross-thread sharing or single flight). */
  l2?: L2Options | false;
  /** L3 settings, or false to keep the cache off Redis even when the engine has it. */
  l3?: L3Options | false;
  /** Bloom filter settings, or false. Default: on when L3 is and a finite `ttl` (and stale windows) is set (a key without a ttl would keep the filter untrusted). */
  bloom?: CacheBloomOptions | false;
}

/** Per-call options of set / setMany. */
export interface SetOptions {
  /** Time to live (ms). Default: the cache's `ttl`. */
  ttl?: number;
  /** How long past `ttl` getOrLoad may still serve it as stale (ms). Default: the cache's max(staleWhileRevalidate, staleIfError). */
  staleMs?: number;
}

/** Per-call options of getOrLoad. */
export interface GetOrLoadOptions {
  ttl?: number;
  staleWhileRevalidate?: number;
  staleIfError?: number;
  /** Loader timeout (ms). Default: the cache's loaderTimeoutMs. */
  timeoutMs?: number;
}

/** What a loader receives besides the key. */
export interface LoaderContext {
  /** Aborted when the load times out. */
  signal: AbortSignal;
}

export type Loader<V = unknown> = (key: string, ctx: LoaderContext) => V | Promise<V>;

/** What the cache needs from its surroundings. */
export interface CacheDeps {
  runtime: ThreadRuntime;
  clock?: Clock;
  /** The engine's Redis connector (L3 is on when given, unless `l3: false`). */
  redis?: RedisConnector;
  /** Default timeout of Redis calls (ms). Default 50. */
  redisTimeoutMs?: number;
  /** Used to compress large values in Redis. */
  compressor?: Compressor;
}

/** Counters of one tier. */
export interface TierStats {
  hits: number;
  misses: number;
}

export interface CacheStats {
  l1: (TierStats & { entries: number; bytes: number; evictions: number; rejected: number }) | undefined;
  l2: (TierStats & { entries: number; bytes: number; capacityBytes: number; evictions: number; expired: number; refused: number; tooLarge: number }) | undefined;
  l3: (TierStats & { errors: number; droppedWrites: number; refusedWrites: number; bloomSkips: number; corrupt: number }) | undefined;
  loads: number;
  loadErrors: number;
  staleServed: number;
  /** getOrLoad calls that waited for another thread's load instead of loading. */
  sharedLoads: number;
  invalidations: number;
}

/**
 * L1 keeps the value itself in its slot and these numbers beside it (L1Store `meta`), so a hit
 * reads typed arrays and returns the value without touching any per-entry object. (No epoch per
 * entry: every entry L1 holds was filled in the epoch `#l1Epoch`; see #syncL1Epoch.)
 */
const M_EXPIRES = 0;
const M_STALE = 1;
const M_VERSION = 2;
const M_STAMP = 3;
const LANES = 4;

/** getOrLoad's resolved options. */
interface LoadOptions {
  ttl: number | undefined;
  swr: number;
  sie: number;
  timeoutMs: number;
}

interface Found {
  value: unknown;
  expires: number;
  stale: number;
  version: number;
}

const DEFAULTS = {
  name: 'default',
  loaderTimeoutMs: 10_000,
  maxValueBytes: 8 * 1024 * 1024,
  l1: { maxEntries: 10_000, policy: 'tinylfu' as const },
  l2Bytes: 8 * 1024 * 1024,
  l3: { compressAbove: 4096, tombstoneMs: 60_000 },
  bloomHorizonMs: 3_600_000,
};

/** The shared (cross-thread) part of the options: a worker's Cache.open reads them from shared memory. */
interface Spec {
  name: string;
  ttl: number | undefined;
  staleWhileRevalidate: number;
  staleIfError: number;
  loaderTimeoutMs: number;
  maxValueBytes: number;
  l1: { maxEntries: number; maxBytes: number | undefined; policy: 'tinylfu' | 'lru' } | false;
  l2: { bytes: number; maxValueBytes?: number } | false;
}

const KNOWN = new Set(['name', 'ttl', 'staleWhileRevalidate', 'staleIfError', 'loaderTimeoutMs', 'maxValueBytes', 'l1', 'l2', 'l3', 'bloom']);

/**
 * The cache. `engine.cache` is one; `new Cache(options, { runtime, redis })` builds one on any
 * runtime; `Cache.open(runtime, name)` attaches to one another thread created (L1 + shared L2).
 */
export class Cache extends EventEmitter {
  readonly name: string;
  readonly #spec: Spec;
  readonly #clock: Clock;
  readonly #coarse: CoarseClock | undefined;
  /** What reads use for time: the coarse clock, or an injected clock read every time. */
  readonly #readClock: Clock;
  readonly #rt: ThreadRuntime;
  readonly #hash = new KeyHash();
  /** This Cache's L2 reads copy into this one buffer; decoding copies out of it, through views kept in #scratchViews (see ValueCodec.decodeCopying). */
  readonly #scratch = { buf: Buffer.allocUnsafe(4096) };
  readonly #scratchViews = new ExactViews();
  readonly #l1: L1Store<unknown> | undefined;
  readonly #sizeOf: ((value: unknown, key: string) => number) | undefined;
  readonly #l2: SharedStore | undefined;
  readonly #stamps: StampTable;
  /** The stamp table's words, for the L1 hit check's plain loads (#l1Valid). */
  readonly #words: Int32Array;
  readonly #epochIndex: number;
  readonly #stampBase: number;
  readonly #stampMask: number;
  /**
   * The epoch every entry of this thread's L1 was filled in. Epochs only grow, and an entry of an
   * older one is never valid again, so when the epoch moves L1 is emptied at once (#syncL1Epoch)
   * rather than each entry checked: a hit compares one shared word with this field.
   */
  #l1Epoch = 0;
  /**
   * False while no entry L1 holds can expire (every one was stored without a ttl): then a
   * getSync hit reads neither the clock nor the entry's deadlines. Set by the first fill with a
   * finite expiry (its stale time may still be infinite: staleIfError: Infinity); reset when L1
   * is emptied.
   */
  #l1Timed = false;
  readonly #flight: FlightTable | undefined;
  readonly #l3: RedisTier | undefined;
  readonly #l3Options: { compressAbove: number; tombstoneMs: number; lease: boolean; leaseMs: number };
  readonly #bloom: SharedBloom | undefined;
  readonly #bloomHorizon: number;
  readonly #codec: ValueCodec;
  readonly #compressor: Compressor | undefined;
  readonly #inflight = new Map<string, Promise<unknown>>();
  /**
   * Keys this instance has a Redis read of on its way (until its reply is accepted or refused),
   * with how many: a bus message for one of them leaves a tombstone in L2 even when L2 holds
   * nothing of the key (#onBus). Only kept with L2 and L3; touched on the Redis path only.
   */
  readonly #reading = new Map<string, number>();
  /**
   * The flight-table token of each load this instance owns the slot of (#loadShared), so that the
   * load's own store does not count itself as another load in flight (#holdWanted).
   */
  readonly #claims = new Map<string, number>();
  /**
   * What L2 is told about a set it cannot hold (too large, no room): its tombstone lives at most
   * `tombstoneMs`, and is placed for a key L2 holds nothing of only when #holdWanted says a read or
   * load of the key is in flight (review76 N2). One object, made once: a set allocates nothing.
   */
  readonly #hold: L2Hold;
  /** Who is storing while L2 may call #holdWanted (set just before each l2.set): HOLD_SET, HOLD_LOAD or HOLD_FILL. */
  #holdFor = HOLD_SET;
  readonly #refreshing = new Set<string>();
  /** Keys deleted while this thread loads them: key → the delete's version (entries live as long as the load). */
  readonly #deletedDuringLoad = new Map<string, number>();
  readonly #instance = randomBytes(8).toString('hex');
  #unsubscribe: Promise<(() => Promise<void>) | undefined> | undefined;
  /** True while the bus is known not to be heard: the first subscription failed, or an outage. */
  #busDown = false;
  #localVersion = 0;
  /** Local writes or fills made while deaf (before the first subscription). */
  #deafWrites = 0;
  #subscribed = false;
  #readyPromise: Promise<void> | undefined;
  #resolveReady: (() => void) | undefined;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  readonly #onSubscriber: ((state: string) => void) | undefined;
  readonly #s = {
    l1Hits: 0, l1Misses: 0, l2Hits: 0, l2Misses: 0, l2TooLarge: 0, l3Hits: 0, l3Misses: 0, l3Errors: 0, dropped: 0,
    refusedWrites: 0, bloomSkips: 0, corrupt: 0, loads: 0, loadErrors: 0, stale: 0, shared: 0, invalidations: 0,
  };

  /**
   * @throws TypeError / RangeError naming a bad option; ERR_HOTPATH_ARENA_EXHAUSTED when L2 does
   *   not fit in the engine's memory; ERR_HOTPATH_REGION_CONFLICT when a cache of this name exists
   *   with other shared settings.
   */
  constructor(options: CacheOptions = {}, deps: CacheDeps) {
    super();
    if (deps === null || typeof deps !== 'object' || deps.runtime === undefined) throw new TypeError('new Cache(options, deps): deps.runtime is required');
    const o = checkOptions(options);
    this.#spec = o.spec;
    this.name = o.spec.name;
    this.#rt = deps.runtime;
    this.#clock = deps.clock ?? SYSTEM_CLOCK;
    // The system clock read on every get costs as much as an L1 hit: read a coarse one instead
    // (at most 1 ms stale, README "Cache"); an injected clock (tests) is read every time.
    this.#coarse = this.#clock === SYSTEM_CLOCK ? new CoarseClock(SYSTEM_CLOCK) : undefined;
    this.#readClock = this.#coarse ?? this.#clock;
    this.#codec = new ValueCodec({ maxBytes: Math.max(16, o.spec.maxValueBytes) });
    this.#compressor = deps.compressor;
    this.#sizeOf = o.sizeOf;
    const spec = this.#spec;
    publishSpec(this.#rt, spec);
    this.#stamps = StampTable.open(this.#rt, `hotpath:cache:${spec.name}:stamps`);
    ({ i32: this.#words, epochIndex: this.#epochIndex, stampBase: this.#stampBase } = this.#stamps.view);
    this.#stampMask = this.#stamps.words - 1;
    this.#l1Epoch = this.#stamps.epoch();
    this.#l1 = spec.l1 === false ? undefined : new L1Store<unknown>({
      metaLanes: LANES,
      maxEntries: spec.l1.maxEntries,
      ...(spec.l1.maxBytes !== undefined ? { maxBytes: spec.l1.maxBytes } : {}),
      policy: spec.l1.policy,
      module: this.#rt.module,
    });
    this.#l2 = spec.l2 === false ? undefined : SharedStore.open(this.#rt, `hotpath:cache:${spec.name}:l2`, {
      bytes: spec.l2.bytes, ...(spec.l2.maxValueBytes !== undefined ? { maxValueBytes: spec.l2.maxValueBytes } : {}), stamps: this.#stamps,
    });
    this.#flight = this.#l2 === undefined ? undefined : new FlightTable(this.#rt, spec.name);
    const l3 = o.l3;
    this.#l3Options = {
      compressAbove: l3 === false ? 0 : l3.compressAbove ?? DEFAULTS.l3.compressAbove,
      tombstoneMs: l3 === false ? DEFAULTS.l3.tombstoneMs : l3.tombstoneMs ?? DEFAULTS.l3.tombstoneMs,
      lease: l3 !== false && l3.lease === true,
      leaseMs: l3 === false ? spec.loaderTimeoutMs : l3.leaseMs ?? spec.loaderTimeoutMs,
    };
    // A held place outlives the loads it may have to stop: at least as long as a load with the
    // cache's loader timeout (and lease wait) can run — its flight claim's life (review78: capped
    // at a short tombstoneMs, a longer load stored its older value after it).
    const longestLoad = spec.loaderTimeoutMs + (this.#l3Options.lease ? this.#l3Options.leaseMs : 0) + 1000;
    this.#hold = { ms: Math.max(this.#l3Options.tombstoneMs, longestLoad), wanted: (key, hi, lo, now) => this.#holdWanted(key, hi, lo, now) };
    // The filter is on by default only when entries expire: a key without a ttl outlives any
    // horizon, so the filter could never be trusted again after one (explicit options win).
    // The default horizon is how long Redis keeps an entry written with the cache's defaults (its
    // PX: ttl + the stale window), not the ttl alone: an instance that starts distrusts its filter
    // that long, so every such entry written before it started has expired by then (review73 D4).
    // A ttl or stale window of Infinity: a filter that could never be trusted, so none by default.
    const defaultHorizon = spec.ttl === undefined ? undefined : spec.ttl + Math.max(spec.staleWhileRevalidate, spec.staleIfError);
    const bloom = o.bloom === undefined ? (defaultHorizon !== undefined && Number.isFinite(defaultHorizon) ? {} : false) : o.bloom;
    this.#bloomHorizon = bloom === false ? 0 : bloom.horizonMs ?? (defaultHorizon !== undefined && Number.isFinite(defaultHorizon) ? defaultHorizon : DEFAULTS.bloomHorizonMs);
    if (deps.redis !== undefined && l3 !== false) {
      this.#l3 = new RedisTier(deps.redis, l3.timeoutMs ?? deps.redisTimeoutMs ?? 50);
      if (bloom !== false) {
        const b = bloom;
        this.#bloom = SharedBloom.open(this.#rt, `hotpath:cache:${spec.name}:bloom`, {
          ...(b.expectedKeys !== undefined ? { expectedKeys: b.expectedKeys } : {}),
          ...(b.falsePositiveRate !== undefined ? { falsePositiveRate: b.falsePositiveRate } : {}),
          horizonMs: this.#bloomHorizon,
        });
        // Not trusted before it has heard every write for a whole horizon.
        this.#bloom.distrustUntil(this.#now() + this.#bloomHorizon);
      }
      const redis = deps.redis;
      this.#onSubscriber = (state: string) => this.#subscriberState(state);
      redis.on('subscriber', this.#onSubscriber);
      // Deaf until the first subscription is live (a round trip or two): what is cached before
      // that is dropped from the local tiers when it is (Redis keeps it). `await cache.ready()`
      // before the first use avoids that.
      this.#readyPromise = new Promise<void>((resolve) => (this.#resolveReady = resolve));
      this.#listen(redis, 0);
    }
  }

  /**
   * Subscribes to the bus, retrying with back-off while Redis refuses: a cache that cannot hear
   * invalidations is marked deaf (the bloom filter is not trusted, and the local tiers are cleared
   * once it hears again).
   */
  #listen(redis: RedisConnector, attempt: number): void {
    this.#unsubscribe = redis.subscribe(this.#l3!.busChannel, (message) => this.#onBus(message)).then(
      (off) => {
        if (this.#closed) {
          void off();
          return undefined;
        }
        if (!this.#subscribed) {
          this.#subscribed = true;
          this.#resolveReady?.();
          this.#busDown = false;
          // Anything cached before we could hear invalidations may already be stale.
          if (this.#deafWrites > 0) {
            this.#clearLocal();
            this.emit('invalidated', undefined);
          }
        } else if (this.#busDown) {
          this.#subscriberState('up');
        }
        return off;
      },
      (err: unknown) => {
        this.#busDown = true;
        this.emit('l3error', err);
        if (!this.#closed) {
          this.#retry = setTimeout(() => this.#listen(redis, attempt + 1), Math.min(5000, 100 * 2 ** Math.min(attempt, 6)));
          this.#retry.unref?.();
        }
        return undefined;
      },
    );
  }

  /**
   * Publishes the shared settings of a cache with `options` (validated as the constructor does)
   * without building it: a worker's `Cache.open` then finds it, and the first thread that opens it
   * carves its shared memory (L2, stamps, single-flight slots). For a queue's handler modules,
   * whose `ctx.cache` must work whether or not the main thread ever uses the cache, without
   * reserving its L2 (8 MiB by default) or subscribing to Redis until someone does (review40).
   * @throws TypeError / RangeError naming a bad option; ERR_HOTPATH_REGION_CONFLICT as the constructor.
   */
  static declare(runtime: ThreadRuntime, options: CacheOptions = {}): void {
    publishSpec(runtime, checkOptions(options).spec);
  }

  /**
   * Attaches to the cache `name` another thread of this engine created (its L1 is this thread's
   * own; L2 is shared). For workers: a task's `ctx.runtime`. Without Redis.
   * @throws ERR_HOTPATH_REGION_CONFLICT (via RangeError message) when no such cache exists.
   */
  static open(runtime: ThreadRuntime, name = DEFAULTS.name): Cache {
    // (Its L2, stamps and single-flight slots are carved here if no thread has yet: see declare.)
    const spec = readSpec(runtime, name);
    if (spec === undefined) throw new RangeError(`no cache named ${JSON.stringify(name)} exists in this engine (create it on the main thread first)`);
    return new Cache({
      name: spec.name,
      ...(spec.ttl !== undefined ? { ttl: spec.ttl } : {}),
      staleWhileRevalidate: spec.staleWhileRevalidate,
      staleIfError: spec.staleIfError,
      loaderTimeoutMs: spec.loaderTimeoutMs,
      maxValueBytes: spec.maxValueBytes,
      l1: spec.l1 === false ? false : { maxEntries: spec.l1.maxEntries, policy: spec.l1.policy, ...(spec.l1.maxBytes !== undefined ? { maxBytes: spec.l1.maxBytes } : {}) },
      l2: spec.l2,
      l3: false,
      bloom: false,
    }, { runtime });
  }

  // ------------------------------------------------------------------ reads

  /**
   * The value of `key` from L1 or L2 — no I/O — or undefined (a miss, or expired).
   * @throws TypeError for a key that is not a non-empty string; ERR_HOTPATH_CLOSED after close().
   */
  getSync(key: string): unknown {
    const l1 = this.#l1;
    if (l1 !== undefined && !this.#closed) {
      // The hot path: a Map lookup (V8 keeps the key string's hash), typed-array reads, the
      // value — no hashing in JS, no per-entry object; and while nothing in L1 can expire, no
      // clock. The key is checked on the miss path only: an invalid key (not a string, empty, too
      // long) is never in the index. The epoch and stamp words are read with plain loads
      // (#l1Valid says why).
      if (this.#words[this.#epochIndex] !== this.#l1Epoch) this.#syncL1Epoch();
      const i = l1.findHit(key);
      if (i !== 0) {
        if (this.#l1Timed) {
          const now = this.#now();
          if (this.#l1Valid(l1, i, now, M_EXPIRES)) {
            this.#s.l1Hits++;
            return l1.valueAt(i);
          }
          return this.#getSyncSlow(key, now, i);
        }
        if (this.#l2 === undefined || this.#l1StampHolds(l1, i)) {
          this.#s.l1Hits++;
          return l1.valueAt(i);
        }
        return this.#getSyncSlow(key, this.#now(), i);
      }
    }
    return this.#getSyncSlow(key, this.#now(), 0);
  }

  /** getSync past an L1 hit: `i` is the key's L1 slot holding a value not usable as it is (0: none). */
  #getSyncSlow(key: string, now: number, i: number): unknown {
    this.#checkKey(key);
    const l1 = this.#l1;
    if (l1 !== undefined) {
      const h = this.#hashed(key);
      if (i === 0) l1.recordMiss(h.lo);
      const found = this.#l1Miss(key, h, now, i);
      return found !== undefined && now <= found.expires ? found.value : undefined;
    }
    const found = this.#fromL2(this.#hashed(key), now, key);
    return found !== undefined && now <= found.expires ? found.value : undefined;
  }

  /**
   * The value of `key`: L1, then L2, then Redis; undefined on a miss. A Redis that is down or slow
   * (over its timeout) is a miss, never a hang or a rejection.
   * @throws (rejects) ERR_HOTPATH_CORRUPT_VALUE when Redis holds bytes that are not a cache entry.
   */
  get(key: string): Promise<unknown> {
    this.#checkKey(key);
    const now = this.#now();
    const local = this.#local(key, now);
    if (local !== undefined && now <= local.expires) return Promise.resolve(local.value);
    if (this.#l3 === undefined) return RESOLVED;
    return this.#remote(key, now, true).then((remote) => (remote !== undefined && now <= remote.expires ? remote.value : undefined));
  }

  /** Values of `keys` in order (undefined for misses): local tiers first, one MGET (per slot) for the rest. */
  getMany(keys: readonly string[]): Promise<unknown[]> {
    if (!Array.isArray(keys)) throw new TypeError('getMany(keys): keys must be an array of strings');
    for (const k of keys) this.#checkKey(k);
    return this.#getMany(keys);
  }

  async #getMany(keys: readonly string[]): Promise<unknown[]> {
    const now = this.#now();
    const out = new Array<unknown>(keys.length);
    const missing: number[] = [];
    for (let i = 0; i < keys.length; i++) {
      const f = this.#local(keys[i]!, now);
      if (f !== undefined && now <= f.expires) out[i] = f.value;
      else if (this.#l3 !== undefined && this.#mayExist(keys[i]!, now)) missing.push(i);
    }
    if (missing.length === 0 || this.#l3 === undefined) return out;
    const epoch = this.#stamps.epoch(); // before the round trip: a clear meanwhile voids the fills
    const guards = this.#l2 === undefined ? missing.map((i) => this.#fillGuard(keys[i]!)) : undefined; // (#fillGuard)
    const track = this.#l2 !== undefined;
    if (track) for (const i of missing) this.#startReading(keys[i]!);
    let j = 0;
    try {
      let replies: Array<Buffer | null>;
      try {
        replies = await this.#l3.getMany(missing.map((i) => keys[i]!));
      } catch (err) {
        this.#l3Failed(err);
        return out;
      }
      for (; j < missing.length; j++) {
        const i = missing[j]!;
        let f: Found | undefined;
        try {
          f = await this.#accept(keys[i]!, replies[j] ?? null, now, epoch, guards?.[j]);
        } catch (err) {
          this.emit('l3error', err); // one corrupt entry is a miss here, not a failed batch
          if (track) this.#endReading(keys[i]!);
          continue;
        }
        if (track) this.#endReading(keys[i]!);
        if (f !== undefined && now <= f.expires) out[i] = f.value;
      }
    } finally {
      // (keys not yet accepted: the batch failed, or the loop threw)
      if (track) for (; j < missing.length; j++) this.#endReading(keys[missing[j]!]!);
    }
    return out;
  }

  // ------------------------------------------------------------------ writes

  /**
   * Stores `value` under `key` in every tier it fits. Resolves once Redis has it — or once the
   * Redis write was given up (Redis down or slow: counted, 'dropped' emitted): it never rejects
   * because Redis is unavailable.
   * @throws TypeError (a bad key or option, a value the codec cannot carry) and
   *   ERR_HOTPATH_VALUE_TOO_LARGE over maxValueBytes, synchronously; nothing is stored then.
   */
  set(key: string, value: unknown, options?: SetOptions): Promise<void> {
    this.#checkKey(key);
    checkDefined(key, value);
    const now = this.#now();
    const life = this.#lifetime(now, options?.ttl, options?.staleMs, 'options');
    const version = this.#version();
    const bytes = this.#storeLocal(key, value, version, life.expires, life.stale, now);
    // Without Redis the write is done: no async function, no extra turn.
    if (bytes === false || this.#l3 === undefined) return RESOLVED;
    return this.#storeRemote(key, bytes!, version, life.expires, life.stale, now).then(NOTHING);
  }

  /**
   * set() that returns once L1 and L2 hold the value; the Redis write (if any) goes on in the
   * background — its failure is counted and emitted ('dropped'), as set()'s would be.
   * @throws TypeError / ERR_HOTPATH_VALUE_TOO_LARGE synchronously.
   */
  setSync(key: string, value: unknown, options?: SetOptions): void {
    this.#checkKey(key);
    checkDefined(key, value);
    const now = this.#now();
    const { expires, stale } = this.#lifetime(now, options?.ttl, options?.staleMs, 'options');
    const version = this.#version();
    const bytes = this.#storeLocal(key, value, version, expires, stale, now);
    if (bytes === false || this.#l3 === undefined) return;
    this.#storeRemote(key, bytes!, version, expires, stale, now).catch((err: unknown) => this.emit('l3error', err));
  }

  /**
   * set() for each entry (Redis writes pipelined). Every entry is checked — shape, key, value
   * (undefined, what the codec refuses, over maxValueBytes) and ttl — and every value encoded
   * before any is written, synchronously (a TypeError / RangeError / ERR_HOTPATH_VALUE_TOO_LARGE
   * naming the entry): a bad entry leaves nothing stored (review32, review34, review35).
   */
  setMany(entries: ReadonlyArray<{ key: string; value: unknown; ttl?: number } | readonly [string, unknown]>): Promise<void> {
    if (!Array.isArray(entries)) throw new TypeError('setMany(entries): entries must be an array');
    const now = this.#now();
    // Everything checked, and every value encoded, before anything is written.
    const list = entries.map((e: unknown, i) => {
      let key: unknown;
      let value: unknown;
      let ttl: number | undefined;
      if (Array.isArray(e)) {
        this.#checkKey(e[0], `setMany: entries[${i}][0]`);
        [key, value] = e as [string, unknown];
      } else {
        if (e === null || typeof e !== 'object') throw new TypeError(`setMany: entries[${i}] must be [key, value] or { key, value, ttl? }, got ${e === null ? 'null' : typeof e}`);
        const o = e as { key: unknown; value: unknown; ttl?: unknown };
        this.#checkKey(o.key, `setMany: entries[${i}].key`);
        key = o.key;
        value = o.value;
        ttl = o.ttl as number | undefined;
      }
      checkDefined(key as string, value);
      const life = this.#lifetime(now, ttl, undefined, `setMany: entries[${i}]`);
      const encoded = { bytes: this.#encodeValue(value, () => `setMany: entries[${i}] value`) };
      return { key: key as string, value, life, encoded };
    });
    const writes: Array<Promise<unknown>> = [];
    for (const e of list) {
      const version = this.#version();
      const bytes = this.#storeLocal(e.key, e.value, version, e.life.expires, e.life.stale, now, undefined, e.encoded);
      if (bytes !== false && this.#l3 !== undefined) writes.push(this.#storeRemote(e.key, bytes!, version, e.life.expires, e.life.stale, now));
    }
    return writes.length === 0 ? RESOLVED : Promise.all(writes).then(NOTHING);
  }

  /**
   * Deletes `key` from every tier, here and (through Redis) in every other instance; a tombstone
   * keeps older writes still in flight from bringing it back. Resolves true if a tier had it.
   */
  delete(key: string): Promise<boolean> {
    this.#checkKey(key);
    return this.#delete(key);
  }

  async #delete(key: string): Promise<boolean> {
    const now = this.#now();
    const version = this.#version();
    // A load of this key running now must not store what it read before this delete (L2's
    // tombstone says so for every thread; this covers a cache without L2).
    if (this.#inflight.has(key)) this.#deletedDuringLoad.set(key, version);
    const h = this.#hashOf(key);
    const until = now + this.#l3Options.tombstoneMs;
    if (this.#l2 === undefined && this.#l3 !== undefined) this.#stamps.bump(h.lo); // (see #fillGuard)
    // This thread's L1 counts only for a value it would still serve (review76 N3): an entry of
    // the current epoch, its stamp unmoved (with L2) and not past its stale time — what the reads
    // test (#l1Valid). An entry another thread's write or delete already invalidated, or one past
    // its stale time, is dropped here but is no value. (A moved stamp that L2 would revalidate —
    // another key's write shares the stamp word — means L2 holds this very version: hadL2 counts it.)
    let had = false;
    const l1 = this.#l1;
    if (l1 !== undefined) {
      const i = l1.slotOf(key);
      if (i !== 0) {
        had = this.#words[this.#epochIndex] === this.#l1Epoch && this.#l1Valid(l1, i, now, M_STALE);
        l1.delete(key, h.lo);
      }
    }
    const hadL2 = this.#l2 !== undefined && this.#l2.delete(key, h.hi, h.lo, now, version, until).deleted;
    if (this.#l3 === undefined) return had || hadL2;
    const entry = encodeEntry(version, FLAG_TOMBSTONE, until, until, EMPTY);
    let hadL3 = false;
    try {
      const r = await this.#l3.put(key, entry, this.#l3Options.tombstoneMs, this.#message('d', key, version, 0));
      if (r === 'refused') this.#s.refusedWrites++;
      hadL3 = r === 'replaced'; // (review73 D9: a key only Redis held resolved false)
    } catch (err) {
      this.#l3Failed(err, 'delete');
    }
    return had || hadL2 || hadL3;
  }

  /**
   * Empties every tier: this process's threads at once (an epoch bump), Redis (every
   * `hotpath:c:*` key) and, through the bus, every other instance.
   * @throws (rejects) ERR_HOTPATH_REDIS_UNAVAILABLE when Redis could not be cleared (local tiers are cleared anyway).
   */
  async clear(): Promise<void> {
    this.#assertOpen();
    this.#clearLocal();
    if (this.#l3 === undefined) return;
    await this.#l3.clear(JSON.stringify({ o: 'c', i: this.#instance }));
    // A read sent to Redis after the first clearLocal but answered before the UNLINK filled the
    // local tiers under the new epoch with a value Redis no longer has (review73 D2), and our own
    // 'c' message is not for us: clear them once more. A reply still on its way fails the epoch
    // check in #accept (the epoch moved after it was sent).
    if (!this.#closed) this.#clearLocal();
  }

  // ------------------------------------------------------------------ loading

  /**
   * The value of `key`, or what `loader(key, { signal })` returns — loaded once however many
   * callers miss together: per thread, across the threads of the process (through L2), and with
   * `l3.lease` across instances. A value past its ttl but within `staleWhileRevalidate` is served
   * while it reloads in the background; within `staleIfError` it is served when the loader fails.
   * Loader errors are not cached.
   * @throws (rejects) the loader's error; ERR_HOTPATH_TIMEOUT when it overruns `timeoutMs`.
   */
  getOrLoad<V = unknown>(key: string, loader: Loader<V>, options?: GetOrLoadOptions): Promise<V> {
    this.#checkKey(key);
    if (typeof loader !== 'function') throw new TypeError(`getOrLoad(key, loader): loader must be a function, got ${typeof loader}`);
    const o = this.#loadOptions(options);
    const now = this.#now();
    const local = this.#local(key, now);
    if (local !== undefined && now <= local.expires) return Promise.resolve(local.value as V);
    return this.#getOrLoad(key, loader as Loader, o, now, local) as Promise<V>;
  }

  async #getOrLoad(key: string, loader: Loader, o: LoadOptions, now: number, local: Found | undefined): Promise<unknown> {
    let found = local;
    if (this.#l3 !== undefined) {
      // Expired here (or absent) may be fresh in Redis: another instance may have reloaded it.
      const remote = await this.#remote(key, now, false);
      if (remote !== undefined && (found === undefined || remote.expires > found.expires)) found = remote;
    }
    if (found !== undefined) {
      if (now <= found.expires) return found.value;
      if (now <= found.expires + o.swr && now <= found.stale) {
        this.#s.stale++;
        this.#refresh(key, loader, o);
        return found.value;
      }
    }
    try {
      return await this.#load(key, loader, o);
    } catch (err) {
      if (found !== undefined && now <= found.expires + o.sie && this.#now() <= found.stale) {
        this.#s.stale++;
        this.emit('staleIfError', key, err);
        return found.value;
      }
      throw err;
    }
  }

  /**
   * Loads `keys` through `loader` (`concurrency` at a time, default 8) into every tier, emitting
   * 'progress' `{ done, total, failed }` after each. Resolves with the counts; a failed key does
   * not stop the others.
   */
  async warm(keys: Iterable<string>, loader: Loader, options: { concurrency?: number; ttl?: number } = {}): Promise<{ loaded: number; failed: number }> {
    const list = [...keys];
    for (const k of list) this.#checkKey(k);
    if (typeof loader !== 'function') throw new TypeError(`warm(keys, loader): loader must be a function, got ${typeof loader}`);
    const concurrency = options.concurrency ?? 8;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`options.concurrency must be a positive integer, got ${String(concurrency)}`);
    const o = this.#loadOptions(options.ttl !== undefined ? { ttl: options.ttl } : undefined);
    let next = 0;
    let loaded = 0;
    let failed = 0;
    const one = async (): Promise<void> => {
      while (next < list.length && !this.#closed) {
        const key = list[next++]!;
        try {
          await this.#load(key, loader, o);
          loaded++;
        } catch (err) {
          failed++;
          this.emit('warmError', key, err);
        }
        this.emit('progress', { done: loaded + failed, total: list.length, failed });
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, list.length) }, one));
    return { loaded, failed };
  }

  // ------------------------------------------------------------------ introspection

  /**
   * Changes this thread's L1 entry bound live, keeping its entries (shrinking evicts down to it by
   * the L1 policy's choice; see L1Store.resize). Other threads' L1s and L2 are unchanged.
   * @throws RangeError for a bad maxEntries; TypeError when this cache has no L1 (`l1: false`).
   */
  resizeL1(maxEntries: number): void {
    if (this.#l1 === undefined) throw new TypeError('this cache has no L1 (options.l1 is false)');
    this.#l1.resize(maxEntries);
  }

  /** Counters per tier (this thread's L1; L2's are the shared region's). */
  stats(): CacheStats {
    const s = this.#s;
    const l1 = this.#l1;
    const l2 = this.#l2?.stats();
    return {
      l1: l1 === undefined ? undefined : { hits: s.l1Hits, misses: s.l1Misses, entries: l1.size, bytes: l1.bytes, ...l1.stats() },
      l2: l2 === undefined ? undefined : { hits: s.l2Hits, misses: s.l2Misses, ...l2, tooLarge: s.l2TooLarge },
      l3: this.#l3 === undefined ? undefined : {
        hits: s.l3Hits, misses: s.l3Misses, errors: s.l3Errors, droppedWrites: s.dropped, refusedWrites: s.refusedWrites, bloomSkips: s.bloomSkips, corrupt: s.corrupt,
      },
      loads: s.loads,
      loadErrors: s.loadErrors,
      staleServed: s.stale,
      sharedLoads: s.shared,
      invalidations: s.invalidations,
    };
  }

  /**
   * Resolves true once the cache hears invalidations from other instances (its pub/sub
   * subscription is live; at once without Redis), false after `timeoutMs` (default 2000).
   */
  async ready(timeoutMs = 2000): Promise<boolean> {
    if (this.#readyPromise === undefined) return true;
    let t: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      t = setTimeout(() => resolve(false), timeoutMs);
    });
    try {
      return await Promise.race([this.#readyPromise.then(() => true), timeout]);
    } finally {
      clearTimeout(t);
    }
  }

  /** True when a Redis tier is configured. */
  get distributed(): boolean {
    return this.#l3 !== undefined;
  }

  /** Stops listening to the bus. The shared tiers stay for the engine's other threads. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#onSubscriber !== undefined) this.#l3?.connector.off('subscriber', this.#onSubscriber);
    clearTimeout(this.#retry);
    const off = await this.#unsubscribe;
    await off?.();
  }

  // ------------------------------------------------------------------ internals

  /**
   * True while invalidations may be missed: before the first subscription is live, and during a
   * bus outage. What is cached meanwhile is dropped once the cache hears again.
   */
  get #deaf(): boolean {
    return this.#l3 !== undefined && (!this.#subscribed || this.#busDown);
  }

  #now(): number {
    return this.#readClock.now();
  }

  #assertOpen(): void {
    if (this.#closed) throw new ClosedError('cache');
  }

  #checkKey(key: unknown, what?: string): asserts key is string {
    if (typeof key !== 'string' || key.length === 0 || key.length > 16_384) {
      throw new TypeError(`${what !== undefined ? `${what}: ` : ''}cache keys must be non-empty strings of at most 16384 chars, got ${typeof key === 'string' ? `a string of ${key.length}` : typeof key}`);
    }
    if (this.#closed) throw new ClosedError('cache');
  }

  /** `l1.sizeOf(value, key)`, checked. @throws TypeError naming the option for an answer that is not a finite number ≥ 0. */
  #userSize(value: unknown, key: string): number {
    const n = this.#sizeOf!(value, key);
    if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) {
      throw new TypeError(`options.cache.l1.sizeOf must return a finite number ≥ 0, got ${typeof n === 'string' ? JSON.stringify(n) : String(n)} for key ${JSON.stringify(key)}`);
    }
    return n;
  }

  #hashOf(key: string): KeyHash {
    this.#hash.set(key);
    return this.#hash;
  }

  /**
   * A version for a write starting now (StampTable.nextVersion: unique and in real order within the
   * process, tagged across processes). From the precise clock, not the coarse one.
   */
  #version(): number {
    // Versions order writes between threads (L2) and processes (Redis). A cache with neither only
    // compares them within this thread (a delete against a load): a counter does.
    if (this.#l2 === undefined && this.#l3 === undefined) return ++this.#localVersion;
    return this.#stamps.nextVersion(this.#clock.now());
  }


  #lifetime(now: number, ttl: number | undefined, staleMs: number | undefined, what: string): { expires: number; stale: number } {
    const t = ttl ?? this.#spec.ttl;
    if (t !== undefined && (typeof t !== 'number' || !(t > 0))) throw new RangeError(`${what}.ttl must be a positive number of ms, got ${String(t)}`);
    const extra = staleMs ?? Math.max(this.#spec.staleWhileRevalidate, this.#spec.staleIfError);
    if (typeof extra !== 'number' || !(extra >= 0)) throw new RangeError(`${what}.staleMs must be a number ≥ 0, got ${String(extra)}`);
    const expires = t === undefined ? Infinity : now + t;
    return { expires, stale: expires + extra };
  }

  #loadOptions(options: GetOrLoadOptions | undefined): LoadOptions {
    if (options !== undefined && (options === null || typeof options !== 'object')) throw new TypeError('getOrLoad options must be an object');
    const swr = options?.staleWhileRevalidate ?? this.#spec.staleWhileRevalidate;
    const sie = options?.staleIfError ?? this.#spec.staleIfError;
    const timeoutMs = options?.timeoutMs ?? this.#spec.loaderTimeoutMs;
    const ttl = options?.ttl ?? this.#spec.ttl;
    nonNegative('options.staleWhileRevalidate', swr);
    nonNegative('options.staleIfError', sie);
    if (!isTimerMs(timeoutMs)) throw new RangeError(`options.timeoutMs must be a positive number of ms up to ${MAX_TIMER_MS}, got ${String(timeoutMs)}`);
    if (ttl !== undefined && (typeof ttl !== 'number' || !(ttl > 0))) throw new RangeError(`options.ttl must be a positive number of ms, got ${String(ttl)}`);
    return { ttl, swr, sie, timeoutMs };
  }

  /** L1 then L2, stale entries included (the caller checks `expires`); fills L1 from L2. */
  #local(key: string, now: number): Found | undefined {
    const l1 = this.#l1;
    if (l1 !== undefined) {
      if (this.#words[this.#epochIndex] !== this.#l1Epoch) this.#syncL1Epoch();
      const i = l1.findHit(key);
      if (i !== 0 && this.#l1Valid(l1, i, now, M_STALE)) {
        const f = this.#l1Found(l1, i);
        // Past its expiry (within its stale window) it is no answer for get, and getOrLoad loads
        // (or serves it as stale, counted there): a miss here, as getSync counts it (review73 D7).
        if (now <= f.expires) this.#s.l1Hits++;
        else this.#s.l1Misses++;
        return f;
      }
      const h = this.#hashed(key);
      if (i === 0) l1.recordMiss(h.lo);
      return this.#l1Miss(key, h, now, i);
    }
    return this.#fromL2(this.#hashed(key), now, key);
  }

  /**
   * Whether L1's slot `i` may answer at `now`: within its `lane` deadline (M_EXPIRES for a fresh
   * answer, M_STALE for one getOrLoad may serve stale) and — with L2, where other threads write —
   * under the key's current stamp. (Without L2 each thread's L1 is its own.) The caller has
   * synced L1 with the epoch (#syncL1Epoch) before looking the key up.
   *
   * The epoch and stamp words are read with plain loads, not Atomics.load (a builtin call, ~4.5 ns
   * each, which was a fifth of an L1 hit). Aligned Int32Array reads cannot tear (ECMA-262's memory
   * model), and this thread recorded the entry's stamp and epoch (under L2's lock, or atomically)
   * before this read, so by coherence the plain load returns that word or a later one — at worst
   * not yet a bump racing with it, and then the entry answers with the value under the stamp it
   * records, as a read a moment earlier would have (publish-then-bump, stamps.ts). A write this
   * thread learned of through an acquire — an Atomics operation, an Atomics.wait/waitAsync wake, a
   * lock, or Node's MessagePort delivery (which takes a mutex; ECMA-262 itself does not order
   * memory across postMessage) — is seen, as it was with Atomics.load. A worker spinning in an
   * optimised getSync loop saw another thread's set within milliseconds (V8 does not hoist the
   * load). Recording a stamp or epoch before reading L2 or Redis keeps using the atomic methods.
   */
  #l1Valid(l1: L1Store<unknown>, i: number, now: number, lane: number): boolean {
    return now <= l1.meta[i * LANES + lane]! && (this.#l2 === undefined || this.#l1StampHolds(l1, i));
  }

  /** Whether L1's slot `i` was filled under its key's current stamp (with L2 only; plain loads: #l1Valid). */
  #l1StampHolds(l1: L1Store<unknown>, i: number): boolean {
    return l1.meta[i * LANES + M_STAMP] === this.#words[this.#stampBase + (l1.hashAt(i) & this.#stampMask)];
  }

  /**
   * Empties L1 when the epoch moved past the one its entries were filled in (a clear() on any
   * thread, or a bus outage ended): none of them may answer again. Called before a read looks a
   * key up, and before a fill.
   */
  #syncL1Epoch(): void {
    const epoch = this.#stamps.epoch();
    if (epoch === this.#l1Epoch) return;
    this.#l1Epoch = epoch;
    this.#l1?.clear();
    this.#l1Timed = false;
  }

  #l1Found(l1: L1Store<unknown>, i: number): Found {
    const m = l1.meta;
    const b = i * LANES;
    return { value: l1.valueAt(i), expires: m[b + M_EXPIRES]!, stale: m[b + M_STALE]!, version: m[b + M_VERSION]! };
  }

  /** `key` hashed into the shared KeyHash (hi/lo). */
  #hashed(key: string): KeyHash {
    this.#hash.set(key);
    return this.#hash;
  }

  /** L1 had nothing usable in slot `i` (0: absent): revalidate a moved stamp, or drop it; then L2. */
  #l1Miss(key: string, h: KeyHash, now: number, i: number): Found | undefined {
    const l1 = this.#l1!;
    if (i !== 0) {
      if (this.#l1Valid(l1, i, now, M_STALE)) {
        // Valid, only past its expiry (getSync wants fresh values): a miss for getSync, which
        // checks `expires`; kept for getOrLoad's stale-while-revalidate / stale-if-error.
        this.#s.l1Misses++;
        return this.#l1Found(l1, i);
      }
      const m = l1.meta;
      const b = i * LANES;
      if (this.#l2 !== undefined && this.#l1Epoch === this.#stamps.epoch() && now <= m[b + M_STALE]!) {
        // Only the stamp moved. Stamp words are shared by keys (lo & mask), so another key's write
        // may have moved it: if L2 still holds this very version, keep the entry (no decode).
        const hit = this.#l2.get(key, h.hi, h.lo, now, this.#scratch); // only its version is read
        if (hit !== undefined && hit.version === m[b + M_VERSION]) {
          m[b + M_STAMP] = hit.stamp;
          const f = this.#l1Found(l1, i);
          if (now <= f.expires) this.#s.l1Hits++;
          else this.#s.l1Misses++;
          return f;
        }
      }
      l1.delete(key, h.lo); // written elsewhere since, or past its stale time
    }
    this.#s.l1Misses++;
    return this.#fromL2(h, now, key);
  }


  /** Puts `value` in this thread's L1 with its numbers, unless L1 holds a newer version of it. */
  #fillL1(key: string, lo: number, value: unknown, bytes: number, expires: number, stale: number, version: number, stamp: number, epoch: number, mayBeOlder = true): void {
    const l1 = this.#l1!;
    if (epoch !== this.#l1Epoch) {
      // A value read before a clear (or an outage's end) must not land after it; a thread that
      // has not seen the epoch move yet empties its L1 first.
      this.#syncL1Epoch();
      if (epoch !== this.#l1Epoch) return;
    }
    const j = mayBeOlder ? l1.slotOf(key) : 0;
    // Without L2 nothing else orders a slow load against a set made meanwhile: L1 does (its
    // entries are all of this epoch).
    if (j !== 0 && l1.meta[j * LANES + M_VERSION]! > version) return;
    if (!l1.set(key, lo, value, bytes)) return;
    const b = l1.lastSlot * LANES;
    const m = l1.meta;
    m[b + M_EXPIRES] = expires;
    m[b + M_STALE] = stale;
    m[b + M_VERSION] = version;
    m[b + M_STAMP] = stamp;
    if (expires !== Infinity) this.#l1Timed = true; // (the stale time may be infinite where the expiry is not)
  }

  /** L2 (filling L1), or undefined. */
  #fromL2(h: KeyHash, now: number, key: string): Found | undefined {
    const { hi, lo } = h; // copied: a user sizeOf below may hash another key with the shared KeyHash
    const l2 = this.#l2;
    if (l2 === undefined) return undefined;
    const epoch = this.#stamps.epoch();
    const hit = l2.get(key, hi, lo, now, this.#scratch);
    if (hit === undefined) {
      this.#s.l2Misses++;
      return undefined;
    }
    let value: unknown;
    try {
      value = this.#rt.codec.decodeCopying(hit.bytes, hit.length, this.#scratchViews);
    } catch (err) {
      // Only this engine's threads write L2: a value it cannot decode is a bug, not an attack. Drop it.
      this.#s.corrupt++;
      l2.delete(key, hi, lo, now);
      this.emit('l2error', key, err);
      return undefined;
    }
    this.#s.l2Hits++;
    const l1 = this.#l1;
    if (l1 !== undefined) {
      const bytes = this.#sizeOf !== undefined ? this.#userSize(value, key) : hit.length;
      this.#fillL1(key, lo, value, bytes, hit.expires, hit.stale, hit.version, hit.stamp, epoch);
    }
    return { value, expires: hit.expires, stale: hit.stale, version: hit.version };
  }

  /** True unless the bloom filter (trusted) says Redis never had this key. */
  #mayExist(key: string, now: number): boolean {
    const b = this.#bloom;
    if (b === undefined || this.#deaf || !b.trusted(now)) return true; // deaf: it may have missed writes
    const h = this.#hashOf(key);
    if (b.mightContain(h.hi, h.lo, now)) return true;
    this.#s.bloomSkips++;
    return false;
  }

  /** The Redis tier's entry for `key` (stale included), filling L2 and L1; undefined on a miss or when Redis fails. */
  async #remote(key: string, now: number, rejectCorrupt: boolean): Promise<Found | undefined> {
    const l3 = this.#l3!;
    if (!this.#mayExist(key, now)) {
      this.#s.l3Misses++;
      return undefined;
    }
    const epoch = this.#stamps.epoch(); // before the round trip: a clear meanwhile voids the fill
    const guard = this.#fillGuard(key);
    const track = this.#l2 !== undefined;
    if (track) this.#startReading(key);
    try {
      let reply: Buffer | null;
      try {
        reply = await l3.get(key);
      } catch (err) {
        this.#l3Failed(err);
        return undefined;
      }
      try {
        return await this.#accept(key, reply, now, epoch, guard);
      } catch (err) {
        if (!rejectCorrupt) {
          this.emit('l3error', err);
          return undefined;
        }
        throw err;
      }
    } finally {
      if (track) this.#endReading(key);
    }
  }

  /** Counts a Redis read of `key` on its way (#reading). */
  #startReading(key: string): void {
    this.#reading.set(key, (this.#reading.get(key) ?? 0) + 1);
  }

  #endReading(key: string): void {
    const n = this.#reading.get(key)!;
    if (n <= 1) this.#reading.delete(key);
    else this.#reading.set(key, n - 1);
  }

  /**
   * Without L2, the key's stamp word before a Redis read: #onBus and #delete move it, and a reply
   * whose key moved is then answered (it was current when read) but not cached — there is no
   * tombstone to refuse it, and an entry without a ttl stayed stale for good (review32). With L2,
   * undefined: L2's versions and tombstones decide.
   */
  #fillGuard(key: string): number | undefined {
    return this.#l2 === undefined ? this.#stamps.stamp(this.#hashOf(key).lo) : undefined;
  }

  /** Decodes a Redis reply and fills the local tiers with it. Corrupt bytes → CorruptValueError. */
  async #accept(key: string, reply: Buffer | null, now: number, epoch: number, guard?: number): Promise<Found | undefined> {
    if (reply === null) {
      this.#s.l3Misses++;
      return undefined;
    }
    let entry: StoredEntry;
    let value: unknown;
    let bytes: Uint8Array;
    try {
      entry = decodeEntry(reply, key);
      this.#stamps.observe(entry.version, this.#clock.now()); // a write here after this read must outrank it
      if (entry.tombstone || now > entry.stale) {
        this.#s.l3Misses++;
        return undefined;
      }
      bytes = entry.compressed ? await this.#decompress(entry.payload) : entry.payload;
      value = this.#codec.decode(bytes);
    } catch (err) {
      this.#s.corrupt++;
      throw err instanceof CorruptValueError ? err : new CorruptValueError(`the Redis value of cache key ${JSON.stringify(key)} is corrupt: ${(err as Error).message}`, err);
    }
    this.#s.l3Hits++;
    const found: Found = { value, expires: entry.expires, stale: entry.stale, version: entry.version };
    // Cleared (here, by another thread, or after a bus outage) while the reply was on its way:
    // answer with it — it was current when read — but do not cache it.
    if (epoch !== this.#stamps.epoch()) return found;
    const h = this.#hashOf(key);
    const { hi, lo } = h;
    // Without L2: deleted or invalidated here meanwhile — the same: answer, do not cache (another
    // key of the same stamp word moving it only costs the fill). With L2 its version check below
    // decides: a bus message for the very write being read leaves a tombstone one below it.
    if (this.#l2 === undefined && guard !== undefined && guard !== this.#stamps.stamp(lo)) return found;
    if (this.#deaf) this.#deafWrites++;
    let stamp = 0;
    if (this.#l2 !== undefined) {
      // Always through L2's set: it refuses the fill when a newer write or a tombstone is there
      // (checked before the size), and drops an older value when this one is too large for it.
      this.#holdFor = HOLD_FILL;
      const r = this.#l2.set(key, hi, lo, bytes, { expires: entry.expires, stale: entry.stale, version: entry.version }, now, this.#hold);
      // L2 holds a newer version: its value, or a miss for a tombstone. (Answering the reply when
      // the tombstone came during the read was tried, keyed on the stamp word; but 2^16 keys share
      // a word, so another key's write could make a deleted value answer: review35. A miss is safe.)
      if (r.result === 'older') return this.#fromL2(this.#hashOf(key), now, key);
      if (r.result !== 'stored') this.#s.l2TooLarge++;
      stamp = r.stamp;
    }
    if (this.#l1 !== undefined) {
      const size = this.#sizeOf !== undefined ? this.#userSize(value, key) : bytes.length;
      this.#fillL1(key, lo, value, size, entry.expires, entry.stale, entry.version, stamp, epoch);
    }
    return found;
  }

  #decompress(payload: Buffer): Promise<Uint8Array> | Uint8Array {
    const c = this.#compressor;
    if (c === undefined) throw new CorruptValueError('a compressed cache entry reached a cache without a compressor');
    const max = this.#spec.maxValueBytes;
    return payload.length >= 64 * 1024 ? c.decompress(payload, { maxOutputBytes: max }) : c.decompressSync(payload, { maxOutputBytes: max });
  }

  /**
   * Writes one version of `key` to every tier it fits. Returns false when a newer version was
   * already there (the write lost; nothing changed).
   */
  async #store(key: string, value: unknown, version: number, expires: number, stale: number, now: number, epochAtStart?: number): Promise<boolean> {
    const bytes = this.#storeLocal(key, value, version, expires, stale, now, epochAtStart);
    if (bytes === false) return false;
    if (this.#l3 === undefined) return true;
    return this.#storeRemote(key, bytes!, version, expires, stale, now);
  }

  /** Whether a tier stores values as bytes: L2, L3, or an L1 bounded by bytes without a sizeOf. */
  #bytesNeeded(): boolean {
    return this.#l2 !== undefined || this.#l3 !== undefined || (this.#l1 !== undefined && this.#spec.l1 !== false && this.#spec.l1.maxBytes !== undefined && this.#sizeOf === undefined);
  }

  /**
   * The bytes the tiers store for `value` (undefined when no tier needs any: an L1-only cache
   * holds live objects). `what` names the value in errors; pass a function when building the
   * name costs (it is called only for an error).
   * @throws TypeError for what the codec refuses; ERR_HOTPATH_VALUE_TOO_LARGE over maxValueBytes.
   */
  #encodeValue(value: unknown, what: ValueName): Uint8Array | undefined {
    if (!this.#bytesNeeded()) return undefined;
    // Values bound for Redis are self-contained; L2-only values may use the engine's shared structures.
    let bytes: Uint8Array;
    if (this.#l3 !== undefined) {
      bytes = this.#codec.encode(value, what);
    } else {
      try {
        bytes = this.#rt.codec.encode(value, what);
      } catch (err) {
        // The engine codec stops at its own limit (16 MiB): a value over both is over the cache's,
        // and the error names that one, the limit the caller set (review73 D10).
        if (err instanceof ValueTooLargeError && err.maxBytes > this.#spec.maxValueBytes) {
          throw new ValueTooLargeError(err.bytes, this.#spec.maxValueBytes, typeof what === 'string' ? what : what(), /at least/.test(err.message));
        }
        throw err;
      }
    }
    if (bytes.length > this.#spec.maxValueBytes) throw new ValueTooLargeError(bytes.length, this.#spec.maxValueBytes, typeof what === 'string' ? what : what());
    return bytes;
  }

  /**
   * The synchronous part of a write: encode, L2, L1. Returns the encoded bytes (undefined when no
   * tier needed them), or false when the write lost to a newer version or to a clear().
   * `encoded`: the value's bytes from #encodeValue when the caller has them already (setMany).
   */
  #storeLocal(key: string, value: unknown, version: number, expires: number, stale: number, now: number, epochAtStart?: number, encoded?: { bytes: Uint8Array | undefined }): Uint8Array | undefined | false {
    if (this.#deaf) this.#deafWrites++;
    const l2 = this.#l2;
    const l3 = this.#l3;
    // The value's name is built only for an error: JSON.stringify of the key on every set was
    // ~20 % of an L1-only setSync.
    const bytes = encoded !== undefined ? encoded.bytes : this.#bytesNeeded() ? this.#encodeValue(value, () => `the value of ${JSON.stringify(key)}`) : undefined;
    // The user's size before any tier is written: a sizeOf that throws (or answers nonsense)
    // leaves nothing stored — before, L2 already held the value (review32).
    const userSize = this.#l1 !== undefined && this.#sizeOf !== undefined ? this.#userSize(value, key) : undefined;
    if (epochAtStart !== undefined && epochAtStart !== this.#stamps.epoch()) return false; // cleared while loading
    const h = this.#hashOf(key);
    const { hi, lo } = h;
    const epoch = this.#stamps.epoch();
    let stamp: number;
    if (l2 !== undefined) {
      // L2 checks the version first (a newer write or a tombstone wins), then the size: a value too
      // large for it drops the key's older value there and tells every thread's L1 (stamp bump).
      this.#holdFor = epochAtStart !== undefined ? HOLD_LOAD : HOLD_SET;
      const r = l2.set(key, hi, lo, bytes!, { expires, stale, version }, now, this.#hold);
      if (r.result === 'older') {
        this.#s.refusedWrites++;
        return false;
      }
      if (r.result !== 'stored') {
        this.#s.l2TooLarge++;
        if (r.result === 'too-large') this.emit('tooLarge', key, 'l2', bytes!.length);
      }
      stamp = r.stamp;
    } else {
      stamp = 0; // no L2: no stamps (each thread's L1 is its own)
    }
    if (this.#l1 !== undefined) {
      const size = userSize ?? bytes?.length ?? 0;
      // A plain set's version was drawn just now from this process's clock: nothing L1 holds is
      // newer (values from other threads passed L2's version check above) — unless Redis filled
      // L1 with another process's write, or this is a load that began earlier. Only then is L1's
      // entry looked up first (an extra Map lookup per set otherwise: ~10 % of setSync).
      this.#fillL1(key, lo, value, size, expires, stale, version, stamp, epoch, epochAtStart !== undefined || l3 !== undefined);
    }
    return bytes;
  }

  /** The Redis part of a write. Resolves false when Redis holds a newer version; never rejects for unavailability. */
  async #storeRemote(key: string, bytes: Uint8Array, version: number, expires: number, stale: number, now: number): Promise<boolean> {
    const l3 = this.#l3!;
    const l2 = this.#l2;
    const { hi, lo } = this.#hashOf(key);
    this.#bloomAdd(key, now, stale); // Redis keeps it until its stale time (PX)
    let payload: Uint8Array = bytes;
    let flags = 0;
    const above = this.#l3Options.compressAbove;
    if (above > 0 && payload.length >= above && this.#compressor !== undefined) {
      const z = payload.length >= 64 * 1024 ? await this.#compressor.compress(payload, { codec: 'lz4' }) : this.#compressor.compressSync(payload, { codec: 'lz4' });
      if (z.length < payload.length) {
        payload = z;
        flags = FLAG_COMPRESSED;
      }
    }
    const entry = encodeEntry(version, flags, expires, stale, payload);
    const ttl = Number.isFinite(stale) ? stale - now : 0; // how long Redis keeps it (0: no PX)
    try {
      const stored = await l3.put(key, entry, stale - now, this.#message('s', key, version, ttl));
      if (stored === 'refused') {
        this.#s.refusedWrites++;
        // Redis holds a newer version: ours must not linger locally either.
        this.#l1?.delete(key, lo);
        if (l2 !== undefined) l2.delete(key, hi, lo, now, version);
        return false;
      }
    } catch (err) {
      this.#l3Failed(err, 'set');
    }
    return true;
  }

  #message(o: 's' | 'd', key: string, version: number, ttl: number): string {
    return JSON.stringify({ o, i: this.#instance, k: key, v: version, t: ttl });
  }

  #bloomAdd(key: string, now: number, until: number): void {
    const b = this.#bloom;
    if (b === undefined) return;
    const h = this.#hashOf(key);
    b.add(h.hi, h.lo, now);
    // Past the horizon the filter forgets the key while Redis may still hold it: until then, do
    // not trust the filter's "no".
    if (until - now > this.#bloomHorizon) b.distrustUntil(until);
  }

  /** Redis failed: a miss for reads, a dropped write for writes. Never throws for unavailability. */
  #l3Failed(err: unknown, op?: 'set' | 'delete'): void {
    if (op !== undefined) {
      this.#s.dropped++;
      this.emit('dropped', op, err);
    } else {
      this.#s.l3Errors++;
    }
    if (!isUnavailable(err) && !(err instanceof HotpathError)) throw err;
    this.emit('l3error', err);
  }

  #load(key: string, loader: Loader, o: LoadOptions): Promise<unknown> {
    const pending = this.#inflight.get(key);
    if (pending !== undefined) return pending;
    const p = this.#loadShared(key, loader, o).finally(() => {
      this.#inflight.delete(key);
      this.#deletedDuringLoad.delete(key);
    });
    this.#inflight.set(key, p);
    return p;
  }

  #refresh(key: string, loader: Loader, o: LoadOptions): void {
    if (this.#refreshing.has(key)) return;
    this.#refreshing.add(key);
    this.#load(key, loader, o).then(
      () => this.#refreshing.delete(key),
      (err) => {
        this.#refreshing.delete(key);
        this.emit('refreshError', key, err);
      },
    );
  }

  /** Cross-thread single flight through the flight table and L2. */
  async #loadShared(key: string, loader: Loader, o: LoadOptions): Promise<unknown> {
    const flight = this.#flight;
    if (flight === undefined) return this.#runLoader(key, loader, o);
    const now = this.#now();
    const { hi, lo } = this.#hashOf(key);
    // The slot's deadline covers the lease wait too: only then may a waiter take a slot over.
    const lease = this.#l3 !== undefined && this.#l3Options.lease ? this.#l3Options.leaseMs : 0;
    const claim = flight.claim(hi, lo, now, now + o.timeoutMs + lease + 1000);
    if (claim.kind === 'busy') return this.#runLoader(key, loader, o);
    if (claim.kind === 'owner') {
      this.#claims.set(key, claim.token);
      try {
        // Another thread may have finished loading between our miss and the claim.
        const done = this.#recheck(key, now);
        if (done !== undefined && now <= done.expires) return done.value;
        return await this.#runLoader(key, loader, o);
      } finally {
        this.#claims.delete(key);
        flight.release(claim.slot, claim.token);
      }
    }
    this.#s.shared++;
    // Wait for the owner, but no longer than this caller's own loader timeout.
    const until = Math.min(claim.deadline, now + o.timeoutMs);
    await flight.wait(claim.slot, claim.token, until - now);
    this.#assertOpen();
    const after = this.#now();
    const done = this.#recheck(key, after);
    if (done !== undefined && after <= done.expires) return done.value;
    if (after >= now + o.timeoutMs) throw new TimeoutError(`waiting for another thread's load of cache key ${JSON.stringify(key)}`, o.timeoutMs);
    // The owner failed, returned nothing, or its value does not fit L2: load here, at once (every
    // waiter does so in parallel, not one after another).
    return this.#runLoader(key, loader, o);
  }

  /**
   * #local for a request already counted (getOrLoad counted its miss before it came to load): the
   * look again after a claim or a wait must not count it a second time (review73 D7). Corrupt
   * values found meanwhile are still counted.
   */
  #recheck(key: string, now: number): Found | undefined {
    const s = this.#s;
    const { l1Hits, l1Misses, l2Hits, l2Misses } = s;
    try {
      return this.#local(key, now);
    } finally {
      s.l1Hits = l1Hits;
      s.l1Misses = l1Misses;
      s.l2Hits = l2Hits;
      s.l2Misses = l2Misses;
    }
  }

  /** Runs the loader (under a Redis lease when configured) with a timeout, and stores what it returns. */
  async #runLoader(key: string, loader: Loader, o: LoadOptions): Promise<unknown> {
    const start = this.#now();
    // Versioned at the start: a delete or invalidation that lands while it loads wins over it.
    const version = this.#version();
    const epoch = this.#stamps.epoch();
    let leased = false;
    if (this.#l3 !== undefined && this.#l3Options.lease) {
      const remote = await this.#leaseOrWait(key, o);
      if (remote !== undefined) return remote.value;
      leased = true;
    }
    this.#s.loads++;
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const loading = Promise.resolve().then(() => loader(key, { signal: controller.signal }));
      loading.catch(() => {}); // a loader that fails after its timeout must not reject unhandled
      const value = await Promise.race([
        loading,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            controller.abort(new TimeoutError(`the loader of cache key ${JSON.stringify(key)}`, o.timeoutMs));
            reject(controller.signal.reason);
          }, o.timeoutMs);
          timer.unref?.();
        }),
      ]);
      clearTimeout(timer);
      const now = this.#now();
      const t = o.ttl;
      const expires = t === undefined ? Infinity : now + t;
      const deleted = this.#deletedDuringLoad.get(key);
      if (value !== undefined && !this.#closed && (deleted === undefined || deleted < version)) {
        try {
          await this.#store(key, value, version, expires, expires + Math.max(o.swr, o.sie), now, epoch);
        } catch (err) {
          // The loader did its job; a value the cache cannot hold (too large, not encodable) is
          // still the answer. Reported, not thrown.
          this.emit('storeError', key, err);
        }
      }
      return value;
    } catch (err) {
      this.#s.loadErrors++;
      throw err;
    } finally {
      clearTimeout(timer);
      if (leased) this.#l3!.unlease(key, this.#instance).catch(() => undefined);
    }
  }

  /**
   * Takes the cross-instance lease of `key`, or — while another instance holds it — polls Redis
   * for the value it stores. Resolves undefined once this caller should load (lease taken, or
   * Redis unavailable: load locally rather than wait on a dead Redis).
   */
  async #leaseOrWait(key: string, o: { timeoutMs: number }): Promise<Found | undefined> {
    const l3 = this.#l3!;
    const deadline = this.#now() + this.#l3Options.leaseMs;
    let delay = 2;
    for (;;) {
      try {
        if (await l3.lease(key, this.#instance, this.#l3Options.leaseMs)) return undefined;
      } catch {
        return undefined;
      }
      await new Promise((r) => setTimeout(r, delay).unref?.());
      delay = Math.min(delay * 2, 50);
      const now = this.#now();
      const f = await this.#remote(key, now, false);
      if (f !== undefined && now <= f.expires) return f;
      if (now > deadline + o.timeoutMs) return undefined;
    }
  }

  /**
   * Whether a Redis read or a load of `key` that may store an older value than the one being
   * stored is in flight in this process: a Redis read of this instance (#reading), a load of this
   * instance (#inflight), or a load of any thread that claimed the key's slot in the shared flight
   * table (workers' loads included). The store asking is not counted: a load's own #inflight entry
   * and flight slot (HOLD_LOAD), a fill's own #reading count (HOLD_FILL). Called by L2 under a
   * stripe lock, for a set it cannot hold of a key it has no entry of (L2Hold.wanted).
   * Not seen: a load that found its flight slot held by another key ('busy') or that loads after
   * its slot's owner failed (waiters load without a slot), in another thread.
   */
  #holdWanted(key: string, hi: number, lo: number, now: number): boolean {
    const mode = this.#holdFor;
    if ((this.#reading.get(key) ?? 0) > (mode === HOLD_FILL ? 1 : 0)) return true;
    if (mode !== HOLD_LOAD && this.#inflight.has(key)) return true;
    return this.#flight !== undefined && this.#flight.busy(hi, lo, now, mode === HOLD_LOAD ? this.#claims.get(key) ?? 0 : 0);
  }

  // ------------------------------------------------------------------ bus

  #onBus(text: string): void {
    if (this.#closed) return;
    const m: BusMessage | undefined = parseBusMessage(text);
    if (m === undefined || m.i === this.#instance) return;
    this.#s.invalidations++;
    const now = this.#now();
    if (m.o === 'c') {
      this.#clearLocal();
      this.emit('invalidated', undefined);
      return;
    }
    const h = this.#hashOf(m.k);
    const { hi, lo } = h;
    this.#stamps.observe(m.v, this.#clock.now()); // a write here after this message must outrank its version
    if (this.#l2 === undefined) this.#stamps.bump(lo); // a Redis read of the key in flight must not fill L1 (#fillGuard)
    // Drop our copies older than the message's version (a newer one we hold stays in L2; every
    // thread's L1 rereads it). The tombstone stops a late, older fill from bringing one back.
    // For a set elsewhere the tombstone is one below its version: that very write, read from
    // Redis, may fill us; anything older may not. A delete's tombstone blocks its own version too.
    const floor = m.o === 's' ? m.v - 1 : m.v;
    // The tombstone only where it has something to stop: a key L2 holds (a value, or a tombstone
    // that a newer one replaces), one this instance is reading from Redis right now (its reply
    // may be older than the message), or one being loaded anywhere in the process — a getOrLoad
    // of this instance (#inflight), or of any thread, workers included, that claimed the key's
    // slot in the shared flight table: the loader may have read the source before the write this
    // message announces, and its store would otherwise land in L2 for every thread until its ttl
    // (review76 N1). Every other key only has its stamp bumped (L1 copies in any thread go).
    // Before, every message left one — 60 s, referenced — and other instances' writes of keys
    // never held here evicted this instance's values (review73 D3).
    // A read that starts after this message reads Redis after the write it announces, and a load
    // that starts after it draws a newer version (observe above).
    // Not covered: a load in another thread that found the key's flight slot held by another key
    // (claim 'busy': it loads without cross-thread single flight), or that a waiter runs after its
    // slot's owner failed (no slot is claimed then) — their older value can still land.
    if (this.#l2 !== undefined) {
      const wanted = this.#reading.has(m.k) || this.#inflight.has(m.k) || (this.#flight !== undefined && this.#flight.busy(hi, lo, now));
      this.#l2.delete(m.k, hi, lo, now, floor, now + this.#l3Options.tombstoneMs, !wanted);
    }
    this.#l1?.delete(m.k, lo);
    if (m.o === 's') this.#bloomAdd(m.k, now, m.t > 0 ? now + m.t : Infinity);
    this.emit('invalidated', m.k);
  }

  #subscriberState(state: string): void {
    if (!this.#subscribed) return; // the first subscription's outcome decides (#listen)
    if (state === 'down') {
      this.#busDown = true;
      return;
    }
    if (state === 'up' && this.#busDown) {
      // Deaf for a while: whatever was cached meanwhile may have been overwritten elsewhere.
      this.#busDown = false;
      this.#clearLocal();
      this.emit('invalidated', undefined);
    }
  }

  #clearLocal(): void {
    this.#stamps.bumpEpoch();
    this.#l2?.clear();
    this.#syncL1Epoch(); // empties L1
    const now = this.#now();
    if (this.#bloom !== undefined) {
      this.#bloom.clear(now);
      this.#bloom.distrustUntil(now + this.#bloomHorizon);
    }
  }
}

const EMPTY = new Uint8Array(0);
/** Cache.#holdFor: a set, a load's store, a Redis fill. */
const HOLD_SET = 0;
const HOLD_LOAD = 1;
const HOLD_FILL = 2;
const RESOLVED: Promise<void> = Promise.resolve();
const NOTHING = (): void => undefined;

function nonNegative(name: string, v: unknown): void {
  if (typeof v !== 'number' || !(v >= 0)) throw new RangeError(`${name} must be a number ≥ 0 (ms), got ${String(v)}`);
}

function positiveInt(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new RangeError(`${name} must be a positive integer, got ${String(v)}`);
  return v;
}

function object(name: string, v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TypeError(`${name} must be an object or false, got ${v === null ? 'null' : typeof v}`);
  return v as Record<string, unknown>;
}

/** Validates cache options (createEngine calls it up front; the constructor again). */
export function checkOptions(options: CacheOptions): {
  spec: Spec; sizeOf: ((value: unknown, key: string) => number) | undefined; l3: L3Options | false; bloom: CacheBloomOptions | false | undefined;
} {
  const o = object('cache options', options);
  for (const k of Object.keys(o)) if (!KNOWN.has(k)) throw new TypeError(`options.cache.${k} is not a cache option (known: ${[...KNOWN].join(', ')})`);
  const name = o.name ?? DEFAULTS.name;
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,16}$/.test(name)) throw new TypeError(`options.cache.name must be 1–16 chars of [A-Za-z0-9_.-], got ${JSON.stringify(name)}`);
  const ttl = o.ttl;
  if (ttl !== undefined && (typeof ttl !== 'number' || !(ttl > 0))) throw new RangeError(`options.cache.ttl must be a positive number of ms, got ${String(ttl)}`);
  const swr = o.staleWhileRevalidate ?? 0;
  const sie = o.staleIfError ?? 0;
  nonNegative('options.cache.staleWhileRevalidate', swr);
  nonNegative('options.cache.staleIfError', sie);
  const loaderTimeoutMs = o.loaderTimeoutMs ?? DEFAULTS.loaderTimeoutMs;
  if (!isTimerMs(loaderTimeoutMs)) throw new RangeError(`options.cache.loaderTimeoutMs must be a positive number of ms up to ${MAX_TIMER_MS}, got ${String(loaderTimeoutMs)}`);
  const maxValueBytes = positiveInt('options.cache.maxValueBytes', o.maxValueBytes ?? DEFAULTS.maxValueBytes);
  if (maxValueBytes > 512 * 1024 * 1024) throw new RangeError(`options.cache.maxValueBytes must be at most 512 MiB (Redis's string limit), got ${maxValueBytes}`);

  let l1: Spec['l1'] = false;
  let sizeOf: ((value: unknown, key: string) => number) | undefined;
  if (o.l1 !== false) {
    const l = o.l1 === undefined ? {} : object('options.cache.l1', o.l1);
    for (const k of Object.keys(l)) if (!['maxEntries', 'maxBytes', 'policy', 'sizeOf'].includes(k)) throw new TypeError(`options.cache.l1.${k} is not an L1 option`);
    const maxEntries = positiveInt('options.cache.l1.maxEntries', l.maxEntries ?? DEFAULTS.l1.maxEntries);
    const maxBytes = l.maxBytes === undefined ? undefined : positiveInt('options.cache.l1.maxBytes', l.maxBytes);
    const policy = l.policy ?? DEFAULTS.l1.policy;
    if (policy !== 'tinylfu' && policy !== 'lru') throw new TypeError(`options.cache.l1.policy must be 'tinylfu' or 'lru', got ${JSON.stringify(policy)}`);
    if (l.sizeOf !== undefined && typeof l.sizeOf !== 'function') throw new TypeError('options.cache.l1.sizeOf must be a function');
    sizeOf = l.sizeOf as typeof sizeOf;
    l1 = { maxEntries, maxBytes, policy };
  }
  let l2: Spec['l2'] = false;
  if (o.l2 !== false) {
    const l = o.l2 === undefined ? {} : object('options.cache.l2', o.l2);
    for (const k of Object.keys(l)) if (!['bytes', 'maxValueBytes'].includes(k)) throw new TypeError(`options.cache.l2.${k} is not an L2 option`);
    const bytes = positiveInt('options.cache.l2.bytes', l.bytes ?? DEFAULTS.l2Bytes);
    l2 = { bytes, ...(l.maxValueBytes !== undefined ? { maxValueBytes: positiveInt('options.cache.l2.maxValueBytes', l.maxValueBytes) } : {}) };
  }
  let l3: L3Options | false = {};
  if (o.l3 === false) l3 = false;
  else if (o.l3 !== undefined) {
    const l = object('options.cache.l3', o.l3);
    for (const k of Object.keys(l)) if (!['timeoutMs', 'compressAbove', 'tombstoneMs', 'lease', 'leaseMs'].includes(k)) throw new TypeError(`options.cache.l3.${k} is not an L3 option`);
    if (l.timeoutMs !== undefined && !isTimerMs(l.timeoutMs)) throw new RangeError(`options.cache.l3.timeoutMs must be a positive number of ms up to ${MAX_TIMER_MS}, got ${String(l.timeoutMs)}`);
    if (l.compressAbove !== undefined) nonNegative('options.cache.l3.compressAbove', l.compressAbove);
    if (l.tombstoneMs !== undefined && (typeof l.tombstoneMs !== 'number' || !(l.tombstoneMs > 0))) throw new RangeError(`options.cache.l3.tombstoneMs must be a positive number of ms, got ${String(l.tombstoneMs)}`);
    if (l.lease !== undefined && typeof l.lease !== 'boolean') throw new TypeError(`options.cache.l3.lease must be a boolean, got ${typeof l.lease}`);
    if (l.leaseMs !== undefined && !isTimerMs(l.leaseMs)) throw new RangeError(`options.cache.l3.leaseMs must be a positive number of ms up to ${MAX_TIMER_MS}, got ${String(l.leaseMs)}`);
    l3 = l as L3Options;
  }
  let bloom: CacheBloomOptions | false | undefined;
  if (o.bloom === false) bloom = false;
  else if (o.bloom !== undefined) {
    const b = object('options.cache.bloom', o.bloom);
    for (const k of Object.keys(b)) if (!['expectedKeys', 'falsePositiveRate', 'horizonMs'].includes(k)) throw new TypeError(`options.cache.bloom.${k} is not a bloom option`);
    if (b.horizonMs !== undefined && (typeof b.horizonMs !== 'number' || !(b.horizonMs > 0))) throw new RangeError(`options.cache.bloom.horizonMs must be a positive number of ms, got ${String(b.horizonMs)}`);
    bloom = b as CacheBloomOptions;
  }
  return {
    spec: { name, ttl: ttl as number | undefined, staleWhileRevalidate: swr as number, staleIfError: sie as number, loaderTimeoutMs: loaderTimeoutMs as number, maxValueBytes, l1, l2 },
    sizeOf, l3, bloom,
  };
}

// ------------------------------------------------------------------ spec region

const SPEC_BYTES = 2048;
const SPEC_READY = 0x43505348; // 'HSPC'

/** Writes the cache's shared settings into `hotpath:cache:<name>:spec` (first creator), or checks them. */
function publishSpec(rt: ThreadRuntime, spec: Spec): void {
  const r = rt.arena.region(`hotpath:cache:${spec.name}:spec`, SPEC_BYTES);
  const json = Buffer.from(specJson(spec));
  if (json.length > SPEC_BYTES - 8) throw new RangeError('cache options too large to share');
  const w = r.offset >>> 2;
  if (r.created) {
    new Uint8Array(rt.memory.buffer, r.offset + 8, json.length).set(json);
    Atomics.store(rt.i32, w + 1, json.length);
    Atomics.store(rt.i32, w, SPEC_READY);
    return;
  }
  const theirs = readSpec(rt, spec.name);
  if (theirs !== undefined && (JSON.stringify(theirs.l2) !== JSON.stringify(spec.l2))) {
    throw new HotpathError('ERR_HOTPATH_REGION_CONFLICT', `cache "${spec.name}" exists in this engine with other L2 settings (${JSON.stringify(theirs.l2)})`);
  }
}

function readSpec(rt: ThreadRuntime, name: string): Spec | undefined {
  const r = rt.arena.find(`hotpath:cache:${name}:spec`);
  if (r === undefined) return undefined;
  const w = r.offset >>> 2;
  for (let spins = 0; Atomics.load(rt.i32, w) !== SPEC_READY; spins++) {
    if (spins > 100) Atomics.wait(rt.i32, w, 0, 1);
    if (spins > 1100) return undefined;
  }
  const len = Atomics.load(rt.i32, w + 1);
  return JSON.parse(Buffer.from(new Uint8Array(rt.memory.buffer, r.offset + 8, len).slice()).toString(), reviveInfinity) as Spec;
}

/**
 * The spec as JSON, `Infinity` (a valid ttl or stale window) written as a string JSON would
 * otherwise turn into `null` (review73 D5: Cache.open then refused `ttl: null`, and read a null
 * stale window as 0). No string of a spec can be it: names are [A-Za-z0-9_.-], policies words.
 */
function specJson(spec: Spec): string {
  return JSON.stringify(spec, (_k, v: unknown) => (v === Infinity ? INFINITY : v));
}

const INFINITY = '+Infinity';

function reviveInfinity(_k: string, v: unknown): unknown {
  return v === INFINITY ? Infinity : v;
}


/** A timeout a Node timer can hold (review32: Infinity fired after 1 ms, so a loader "without a limit" timed out at once). */
function isTimerMs(v: unknown): v is number {
  return typeof v === 'number' && v > 0 && v <= MAX_TIMER_MS;
}

/**
 * A cache holds values, not absences: `undefined` is what every read answers for a missing key, so
 * a stored one would read as a miss while getOrLoad took it for a hit and never called its loader
 * (review32). A loader that answers undefined is not stored either.
 * @throws TypeError for an undefined value.
 */
function checkDefined(key: string, value: unknown): void {
  if (value === undefined) throw new TypeError(`the value of ${JSON.stringify(key)} is undefined: a cache holds values, not absences (use delete() to remove a key; null is a value)`);
}
