/**
 * The Redis tier (L3) of the cache: the stored entry format, the versioned write scripts and the
 * invalidation bus, on the engine's one connector (timeouts, breaker, hash-tagged keys).
 *
 * Entry format (the Redis string at `hotpath:c:{<key>}`):
 * ```
 * +0   u8   magic 0xC7 (hotpath cache entry, format 1)
 * +1   u64  version, big-endian (an integer < 2^53; larger is newer)
 * +9   u8   flags: bit 0 tombstone (a deleted key, kept briefly so a late write cannot resurrect it)
 *                  bit 1 the payload is a hotpath compression frame of the encoded value
 * +10  f64  expires (ms since the epoch, big-endian; Infinity = never)
 * +18  f64  stale-until (ms; ≥ expires: how long a stale value may still be served)
 * +26  payload: the value as the codec encodes it (self-contained format), possibly compressed
 * ```
 * Writes go through one Lua script: it stores the entry only when no version as new is there
 * (reading the 8 version bytes of the current value), sets PX, and on success publishes the
 * invalidation message on the bus — in the same atomic step, so every subscriber hears of a
 * write only after it is visible, and a late, older write (a loader that started before a
 * delete) is refused by Redis itself.
 */
import calculateSlot from 'cluster-key-slot';
import { CorruptValueError, HotpathError, RedisUnavailableError } from '../errors.js';
import { withTimeout, type RedisConnector, type Script } from '../redis/connector.js';

export const ENTRY_MAGIC = 0xc7;
export const HEADER_BYTES = 26;
export const FLAG_TOMBSTONE = 1;
export const FLAG_COMPRESSED = 2;
/** The pub/sub channel of invalidations (after the client's keyPrefix: RedisTier.busChannel). */
export const BUS_CHANNEL = 'hotpath:c:bus';

/** A decoded entry header and its payload (a view into the reply). */
export interface StoredEntry {
  version: number;
  tombstone: boolean;
  compressed: boolean;
  expires: number;
  stale: number;
  payload: Buffer;
}

/** The Redis key of cache key `key`: `hotpath:c:{key}` (a hash tag: one slot per key on a Cluster). */
export function redisKey(key: string): string {
  return `hotpath:c:{${key}}`;
}

/** Builds a stored entry around `payload` (copied once). */
export function encodeEntry(version: number, flags: number, expires: number, stale: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  out[0] = ENTRY_MAGIC;
  out.writeUInt32BE(Math.floor(version / 2 ** 32), 1);
  out.writeUInt32BE(version >>> 0, 5);
  out[9] = flags;
  out.writeDoubleBE(expires, 10);
  out.writeDoubleBE(stale, 18);
  out.set(payload, HEADER_BYTES);
  return out;
}

/**
 * Parses a stored entry. Bytes that are not one (another program's value under our prefix, a
 * truncated or hostile value) → ERR_HOTPATH_CORRUPT_VALUE.
 */
export function decodeEntry(buf: Buffer, key: string): StoredEntry {
  if (buf.length < HEADER_BYTES || buf[0] !== ENTRY_MAGIC) {
    throw new CorruptValueError(`the Redis value of cache key ${JSON.stringify(key)} is not a hotpath cache entry (${buf.length} bytes, first byte ${buf[0] ?? 'none'})`);
  }
  const hi = buf.readUInt32BE(1);
  const flags = buf[9]!;
  const expires = buf.readDoubleBE(10);
  const stale = buf.readDoubleBE(18);
  if (hi >= 2 ** 21 || (flags & ~3) !== 0 || Number.isNaN(expires) || Number.isNaN(stale) || stale < expires) {
    throw new CorruptValueError(`the Redis value of cache key ${JSON.stringify(key)} has a corrupt header`);
  }
  return {
    version: hi * 2 ** 32 + buf.readUInt32BE(5),
    tombstone: (flags & FLAG_TOMBSTONE) !== 0,
    compressed: (flags & FLAG_COMPRESSED) !== 0,
    expires,
    stale,
    payload: buf.subarray(HEADER_BYTES),
  };
}

// KEYS[1] the entry; ARGV[1] the new entry, ARGV[2] PX (0 = none), ARGV[3] the bus message ('' = none),
// ARGV[4] the bus channel. Returns 0 refused (a version as new or newer is there: one version is
// one write), 2 stored over a value (an entry that is not a tombstone), 1 stored otherwise.
const SET_IF_NEWER = `
local cur = redis.call('GET', KEYS[1])
local had = 0
if cur and string.byte(cur, 1) == 0xC7 and string.len(cur) >= 10 then
  local a, b = 0, 0
  for i = 2, 9 do
    a = a * 256 + string.byte(cur, i)
    b = b * 256 + string.byte(ARGV[1], i)
  end
  if a >= b then return 0 end
  if string.byte(cur, 10) % 2 == 0 then had = 1 end
end
if ARGV[2] == '0' then redis.call('SET', KEYS[1], ARGV[1]) else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[3]) end
return 1 + had
`;

/**
 * The longest PX sent (ms, about 285 000 years): Redis refuses a PX that is not an integer (a
 * ttl of 1e300 was sent as "1e+300") or that overflows its clock (review73 D8). An entry still
 * carries its own expiry and stale time; only how long Redis keeps it is capped.
 */
export const MAX_PX = Number.MAX_SAFE_INTEGER;

/** A message on the invalidation bus. */
export type BusMessage =
  | { o: 's' | 'd'; i: string; k: string; v: number; t: number }
  | { o: 'c'; i: string };

/** Parses a bus message; anything malformed → undefined (ignored, never thrown into the subscriber). */
export function parseBusMessage(text: string): BusMessage | undefined {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof m !== 'object' || m === null) return undefined;
  const o = m as Record<string, unknown>;
  if (typeof o.i !== 'string') return undefined;
  if (o.o === 'c') return { o: 'c', i: o.i };
  if ((o.o === 's' || o.o === 'd') && typeof o.k === 'string' && typeof o.v === 'number' && Number.isFinite(o.v) && typeof o.t === 'number') {
    return { o: o.o, i: o.i, k: o.k, v: o.v, t: o.t };
  }
  return undefined;
}

interface PendingGet {
  key: string;
  resolve: (value: Buffer | null) => void;
  reject: (err: unknown) => void;
}

/** Most keys per MGET of coalesced gets. */
const GET_BATCH = 256;

/** The Redis operations of the cache. Every method fails with a HotpathError (unavailable, reply error). */
export class RedisTier {
  readonly #redis: RedisConnector;
  readonly #setScript: Script;
  readonly #unleaseScript: Script;
  readonly #timeoutMs: number;
  /**
   * The invalidation channel: BUS_CHANNEL after the client's keyPrefix, so caches of applications
   * with different prefixes on one Redis do not hear (and clear on) each other's messages.
   */
  readonly busChannel: string;
  /** Gets asked for in this tick, sent as one MGET by #flushGets. */
  #gets: PendingGet[] = [];

  constructor(redis: RedisConnector, timeoutMs: number) {
    this.#redis = redis;
    this.#timeoutMs = timeoutMs;
    this.busChannel = `${redis.keyPrefix}${BUS_CHANNEL}`;
    this.#setScript = redis.defineScript('hotpath-cache-set', SET_IF_NEWER);
    this.#unleaseScript = redis.defineScript('hotpath-cache-unlease', UNLEASE);
  }

  get connector(): RedisConnector {
    return this.#redis;
  }

  /** True when a command would be sent now (connected, breaker closed). */
  get available(): boolean {
    return this.#redis.available;
  }

  /**
   * The entry of `key`. The gets asked for in one tick go out together as one MGET — sent at once
   * on a single node; on a Cluster one per slot, through the auto-pipeline — one command for Redis
   * and for ioredis instead of one GET each (64 concurrent gets: 6.1-6.8 → 2.4-3.7 µs per get on
   * this VM). They succeed or fail (or time out) together, as one call for the breaker.
   */
  get(key: string): Promise<Buffer | null> {
    return new Promise<Buffer | null>((resolve, reject) => {
      this.#gets.push({ key: redisKey(key), resolve, reject });
      if (this.#gets.length === 1) queueMicrotask(this.#flushGets);
    });
  }

  readonly #flushGets = (): void => {
    const all = this.#gets;
    this.#gets = [];
    for (let at = 0; at < all.length; at += GET_BATCH) {
      const batch = all.length <= GET_BATCH ? all : all.slice(at, at + GET_BATCH);
      this.#redis.mgetBuffer(batch.map((g) => g.key), { timeoutMs: this.#timeoutMs, direct: true }).then(
        (values) => {
          for (let i = 0; i < batch.length; i++) batch[i]!.resolve(values[i] ?? null);
        },
        (err: unknown) => {
          for (const g of batch) g.reject(err);
        },
      );
    }
  };

  getMany(keys: string[]): Promise<Array<Buffer | null>> {
    return this.#redis.mgetBuffer(keys.map(redisKey), { timeoutMs: this.#timeoutMs });
  }

  /**
   * Stores `entry` unless a newer version is there; publishes `message` when stored. Resolves
   * 'refused' (a version as new or newer is there), 'replaced' (stored over a value that was not a
   * tombstone: what delete() reports as "Redis had it") or 'stored'.
   */
  async put(key: string, entry: Buffer, pxMs: number, message: string): Promise<'refused' | 'stored' | 'replaced'> {
    const px = Number.isFinite(pxMs) ? Math.min(MAX_PX, Math.max(1, Math.ceil(pxMs))) : 0;
    const r = await this.#setScript.run([redisKey(key)], [entry, px, message, this.busChannel], { timeoutMs: this.#timeoutMs });
    return r === 0 ? 'refused' : r === 2 ? 'replaced' : 'stored';
  }

  /** Takes the load lease of `key` for `ttlMs` (SET NX PX); true when this caller holds it. */
  async lease(key: string, owner: string, ttlMs: number): Promise<boolean> {
    return (await this.#redis.command('SET', [`${redisKey(key)}:lease`, owner, 'NX', 'PX', Math.max(1, Math.ceil(ttlMs))], { timeoutMs: this.#timeoutMs })) === 'OK';
  }

  /** Gives the lease back if this owner still holds it. */
  async unlease(key: string, owner: string): Promise<void> {
    await this.#unleaseScript.run([`${redisKey(key)}:lease`], [owner], { timeoutMs: this.#timeoutMs });
  }

  /**
   * Deletes every cache entry (`hotpath:c:*`) on every master, SCAN + UNLINK in batches, then
   * tells every instance to clear its local tiers. Bounded by `timeoutMs` per command.
   */
  async clear(message: string): Promise<number> {
    if (!this.#redis.available) throw new RedisUnavailableError('Redis unavailable: the cache\'s Redis tier was not cleared');
    const client = this.#redis.client;
    const cluster = this.#redis.isCluster;
    const nodes = cluster && 'nodes' in client && typeof client.nodes === 'function' ? client.nodes('master') : [client];
    // SCAN patterns are not prefixed by ioredis, keys are: scan for the prefixed names, and hand
    // UNLINK the names without the prefix its connection adds (review38: with a keyPrefix,
    // clear() scanned for — and could delete — another application's unprefixed entries).
    const prefix = this.#redis.keyPrefix;
    let removed = 0;
    try {
      for (const node of nodes) {
        const nodePrefix = (node.options as { keyPrefix?: string }).keyPrefix ?? '';
        let cursor = '0';
        do {
          const [next, found] = (await withTimeout(node.scan(cursor, 'MATCH', `${globEscape(prefix)}hotpath:c:{*`, 'COUNT', 1000), this.#timeoutMs * 20, 'clear')) as [string, string[]];
          cursor = next;
          const keys = found.filter((k) => k.startsWith(nodePrefix)).map((k) => k.slice(nodePrefix.length));
          if (keys.length === 0) continue;
          // On a Cluster one UNLINK may only name keys of one slot.
          const groups = cluster ? groupBySlot(keys) : [keys];
          for (const g of groups) removed += Number(await withTimeout(node.unlink(...g), this.#timeoutMs * 20, 'clear'));
        } while (cursor !== '0');
      }
    } catch (err) {
      throw err instanceof HotpathError ? err : new RedisUnavailableError(`Redis clear failed: ${(err as Error).message}`, err);
    }
    await this.#redis.publish(this.busChannel, message, { timeoutMs: this.#timeoutMs });
    return removed;
  }
}

/** `s` with the glob specials of a SCAN MATCH pattern escaped (a keyPrefix may hold any of them). */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

function groupBySlot(keys: string[]): string[][] {
  const by = new Map<number, string[]>();
  for (const k of keys) {
    const slot = calculateSlot(k);
    let g = by.get(slot);
    if (g === undefined) by.set(slot, (g = []));
    g.push(k);
  }
  return [...by.values()];
}

const UNLEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;


/** True for the failures that mean "Redis is unavailable" (as opposed to a reply error or corrupt data). */
export function isUnavailable(err: unknown): boolean {
  return err instanceof HotpathError && err.code === 'ERR_HOTPATH_REDIS_UNAVAILABLE';
}
