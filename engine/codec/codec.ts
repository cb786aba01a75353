/**
 * The value codec: how values are stored in the shared L2, in Redis (L3) and sent to workers.
 *
 * Format: one version byte (CODEC_VERSION), then MessagePack written by msgpackr with
 * self-describing records (no shared structures: each value carries its record definitions, so
 * any process decodes it with no shared state) and the structured-clone extensions. Round-trips:
 * objects, arrays, strings, numbers, booleans, null, undefined, Buffers and typed arrays,
 * Dates, Maps, Sets, RegExps, Errors, BigInts of any size, and cycles.
 *
 * Refused at encode with a TypeError naming the path: functions, symbols, and own `__proto__`
 * keys (msgpackr would rename the key on decode rather than let it touch a prototype: we refuse
 * instead of storing something other than what was given). Decoding hostile bytes cannot
 * pollute a prototype. Values over `maxBytes` → ERR_HOTPATH_VALUE_TOO_LARGE; bytes that are not
 * a value of this codec → ERR_HOTPATH_CORRUPT_VALUE.
 */
import { Packr } from 'msgpackr';
import { CorruptValueError, ValueTooLargeError } from '../errors.js';

/** The first byte of every encoded value. */
export const CODEC_VERSION = 1;

/** Default largest encoded value: 16 MiB. */
export const DEFAULT_MAX_VALUE_BYTES = 16 * 1024 * 1024;

export interface CodecOptions {
  /** Largest encoded value in bytes (both directions). Default 16 MiB. */
  maxBytes?: number;
}

const PACKR_OPTIONS = {
  useRecords: true,
  // No structures shared between values: each value carries its own record definitions, so any
  // process decodes it alone (sequential mode shares and overflows its structure table).
  maxSharedStructures: 0,
  mapsAsObjects: false,
  structuredClone: true,
  moreTypes: true,
  int64AsType: 'bigint',
} as const;

export class ValueCodec {
  readonly maxBytes: number;
  readonly #packr = new Packr(PACKR_OPTIONS);

  /** @throws RangeError for a bad `maxBytes`. */
  constructor(options: CodecOptions = {}) {
    const max = options.maxBytes ?? DEFAULT_MAX_VALUE_BYTES;
    if (!Number.isInteger(max) || max < 16 || max > 2 ** 31) {
      throw new RangeError(`options.maxBytes must be an integer between 16 and 2^31, got ${String(max)}`);
    }
    this.maxBytes = max;
  }

  /**
   * Encodes `value`: the version byte, then MessagePack.
   * @throws TypeError for a function, symbol or own `__proto__` key inside `value` (names the path).
   * @throws ValueTooLargeError over `maxBytes`.
   */
  encode(value: unknown, what = 'value'): Buffer {
    checkEncodable(value, what);
    const body = this.#packr.pack(value);
    const total = body.length + 1;
    if (total > this.maxBytes) throw new ValueTooLargeError(total, this.maxBytes, what);
    const out = Buffer.allocUnsafe(total);
    out[0] = CODEC_VERSION;
    out.set(body, 1);
    return out;
  }

  /**
   * Decodes bytes written by `encode`.
   * @throws CorruptValueError for empty, wrong-version, truncated, trailing-garbage or oversize input.
   */
  decode(bytes: Uint8Array): unknown {
    if (!(bytes instanceof Uint8Array)) throw new TypeError(`decode expects a Uint8Array, got ${typeof bytes}`);
    if (bytes.length === 0) throw new CorruptValueError('empty input is not an encoded value');
    if (bytes.length > this.maxBytes) throw new CorruptValueError(`encoded value of ${bytes.length} bytes is over the limit of ${this.maxBytes}`);
    if (bytes[0] !== CODEC_VERSION) {
      throw new CorruptValueError(`unknown codec version ${bytes[0]} (this build reads version ${CODEC_VERSION})`);
    }
    const body = Buffer.from(bytes.buffer, bytes.byteOffset + 1, bytes.length - 1);
    let values: unknown[];
    try {
      // unpackMultiple reads everything: trailing bytes after the value show up as extra values.
      values = this.#packr.unpackMultiple(body) as unknown[];
    } catch (err) {
      throw new CorruptValueError(`corrupt encoded value: ${(err as Error).message}`, err);
    }
    if (values.length !== 1) throw new CorruptValueError(`corrupt encoded value: ${values.length} values where one was expected`);
    return values[0];
  }
}

/**
 * Walks `value` and throws a TypeError naming the path of anything the codec cannot carry
 * faithfully: a function, a symbol, an own `__proto__` key.
 */
export function checkEncodable(value: unknown, path = 'value'): void {
  if (typeof value === 'function' || typeof value === 'symbol') {
    throw new TypeError(`${path} is a ${typeof value} and cannot be encoded`);
  }
  if (typeof value === 'object' && value !== null) walk(value, path, new Set());
}

function walk(o: object, path: string, seen: Set<object>): void {
  if (seen.has(o) || ArrayBuffer.isView(o) || o instanceof ArrayBuffer || o instanceof Date || o instanceof RegExp) return;
  seen.add(o);
  if (o instanceof Map) {
    for (const [k, v] of o) {
      check(k, `${path}.<key ${describeKey(k)}>`, seen);
      check(v, `${path}.${describeKey(k)}`, seen);
    }
    return;
  }
  if (o instanceof Set) {
    let i = 0;
    for (const v of o) check(v, `${path}.<${i++}>`, seen);
    return;
  }
  if (Object.prototype.hasOwnProperty.call(o, '__proto__')) {
    throw new TypeError(`${path} has an own "__proto__" key, which cannot be stored faithfully`);
  }
  if (Array.isArray(o)) {
    for (let i = 0; i < o.length; i++) check(o[i], `${path}.${i}`, seen);
    return;
  }
  for (const k of Object.keys(o)) check((o as Record<string, unknown>)[k], `${path}.${k}`, seen);
}

function check(v: unknown, path: string, seen: Set<object>): void {
  if (typeof v === 'function' || typeof v === 'symbol') throw new TypeError(`${path} is a ${typeof v} and cannot be encoded`);
  if (typeof v === 'object' && v !== null) walk(v, path, seen);
}

function describeKey(k: unknown): string {
  return typeof k === 'string' ? k : String(k);
}
