/**
 * The value codec: how values are stored in the shared L2, in Redis (L3) and sent to workers.
 *
 * Format: one format byte, then MessagePack written by msgpackr; no state is shared between
 * values, so any thread or process decodes any value alone.
 *   FORMAT_PLAIN (1)   objects as msgpack maps (the fast path: no Map anywhere in the value)
 *   FORMAT_RECORDS (2) objects as self-describing msgpackr records, msgpack maps as `Map`s,
 *                      and structured clone (cycles) — chosen only when the value holds a Map
 *                      (which plain msgpack cannot tell apart from an object) or a cycle
 *   FORMAT_SHARED (3)  objects as records whose structures live in the engine's shared memory
 *                      (structures.ts): the fastest and smallest, but only the threads of the
 *                      engine that wrote it can read it — used for the shared L2 and worker
 *                      payloads, never for Redis. Written only by a codec given `structures`.
 * Shared (non-cyclic) references are written once per use and decode as equal copies; -0 decodes
 * as 0 (msgpack integers have no sign of zero). Round-trips: objects, arrays, strings, numbers,
 * booleans, null, undefined, Buffers and typed arrays, Dates, Maps, Sets, RegExps, BigInts of any
 * size, cycles, and Errors (their class, message and cause: msgpackr writes no more).
 *
 * Refused at encode with a TypeError naming the path: functions, symbols, own `__proto__`
 * keys (msgpackr would rename the key on decode rather than let it touch a prototype: we refuse
 * instead of storing something other than what was given), and what structured clone cannot copy
 * either — a WeakMap, WeakSet, WeakRef or Promise (msgpackr would write an empty object). Decoding hostile bytes cannot
 * pollute a prototype. Values over `maxBytes` → ERR_HOTPATH_VALUE_TOO_LARGE — before anything is
 * written when the walk already knows (shared objects are written once per use: a small value
 * can stand for an enormous one); bytes that are not a value of this codec →
 * ERR_HOTPATH_CORRUPT_VALUE, in time linear in their length (see boundedStringify).
 */
import { addExtension, Packr, RESERVE_START_SPACE } from 'msgpackr';
import { CorruptValueError, ValueTooLargeError } from '../errors.js';
import { MAX_SHARED_KEYS, type SharedStructures } from './structures.js';

/** Format byte: plain msgpack. */
export const FORMAT_PLAIN = 1;
/** Format byte: msgpackr records, maps decoded as Map. */
export const FORMAT_RECORDS = 2;
/** Format byte: records with structures shared in the engine's memory. */
export const FORMAT_SHARED = 3;
/** The format byte the codec writes for a value without Maps (kept for callers that check it). */
export const CODEC_VERSION = FORMAT_PLAIN;

/** decode copies inputs up to this size into a scratch buffer of its own (see decode). */
const SCRATCH_BYTES = 1024;
/** unpack's options: the value starts after the format byte (one object: msgpackr only reads it). */
const FROM_1 = Object.freeze({ start: 1 });

/**
 * The engine-local format is written without a walk (see the constructor). Past this many plain
 * objects in one value the writer looks up, then remembers, one object in 16 (drawn at random, so
 * no pattern of sharing escapes it); one found again (a shared object, written once per use in
 * this format) stops the write: the value is walked first (its size, every use counted) and then
 * written. A shared part of k objects written twice is caught with probability 1 - (255/256)^k,
 * and each further write is another draw: a value that expands exponentially is caught after a
 * few thousand objects more. Values of distinct objects are never walked; remembering every
 * object cost +128 % for a million rows (review70).
 */
const UNWALKED_OBJECTS = 65_536;
/** Thrown by the engine-local writer's object hook (see UNWALKED_OBJECTS; never leaves encode). */
const WALK_FIRST: unique symbol = Symbol('walk first');
/** Where msgpackr starts a write after `position` in its buffer (it word-aligns the start). */
function align8(position: number): number {
  return (position + 7) & 0x7ffffff8;
}

/**
 * msgpackr's unpack, finding bytes left over after a value, builds its error message with
 * `JSON.stringify(value, replacer)` of the whole value read (a 100-character preview, which
 * `corrupt` drops). For hostile bytes that string is enormous: shared back-references expand
 * (exponential in their depth: 1.2 KB of them took minutes and gigabytes, review62), a record's
 * keys are repeated in every object that uses it (quadratic), a BigInt's decimal digits are
 * quadratic in its length (review68). While one of our decodes runs, JSON.stringify is
 * boundedStringify: a call with a replacer function — msgpackr's — stops past STRINGIFY_BUDGET
 * (characters of keys, strings and BigInts' hex digits, plus one per value visited) by throwing,
 * which msgpackr catches ("JSON view not available"); the decode then fails at once. Any other call
 * (msgpackr's `JSON.stringify(key)` when it compiles a record reader, review68) and any call once
 * no decode runs (a module that kept the function) is JSON.stringify's own.
 *
 * The swap is synchronous and undone in a `finally`. Where JSON.stringify cannot be replaced
 * (`--frozen-intrinsics`, or JSON frozen later), decodes run unguarded. Another way, reading in
 * msgpackr's sequential mode (unpackMultiple), was tried and reverted: it is not reentrant and
 * keeps record definitions across decodes (review67).
 */
const nativeStringify = JSON.stringify;
const STRINGIFY_BUDGET = 100_000;
let canGuard = Object.getOwnPropertyDescriptor(JSON, 'stringify')?.writable === true;
/** Guarded decodes under way (nested ones included). */
let guarding = 0;

class StringifyBudgetError extends RangeError {}

function boundedStringify(value: unknown, replacer?: unknown, space?: string | number): string {
  if (guarding === 0 || typeof replacer !== 'function') return nativeStringify(value, replacer as never, space);
  const user = replacer as (this: unknown, key: string, value: unknown) => unknown;
  let left = STRINGIFY_BUDGET;
  return nativeStringify(value, function bounded(this: unknown, key: string, v: unknown): unknown {
    left -= 1 + key.length + (typeof v === 'string' ? v.length : typeof v === 'bigint' ? hexDigits(v) : 0);
    if (left < 0) throw new StringifyBudgetError('JSON.stringify over its budget inside a decode');
    return user.call(this, key, v);
  }, space);
}

/** Hex digits of a BigInt: linear in its size (its decimal digits are not). */
function hexDigits(v: bigint): number {
  return (v < 0n ? -v : v).toString(16).length;
}

/**
 * msgpackr's own decoders of an Error (extension 0x65: [name, message, cause]) and a RegExp (0x78:
 * [source, flags]) are replaced, process-wide, by these (review62, review68):
 *  - they turned fields into strings as JavaScript does, so hostile bytes holding a graph of
 *    shared arrays (back-references) there expanded it — 355 bytes took 19 s and made a message of
 *    134 million characters. Here a field that is not a primitive is named by its kind only;
 *  - the Error class was looked up by name in an ordinary object: 'valueOf' decoded as msgpackr's
 *    table itself (mutable, shared by every msgpackr user of the process), 'constructor' as a
 *    String. Here the table has no prototype;
 *  - AggregateError was called as (message, { cause }), garbling it (its first parameter is the
 *    list of errors, which msgpackr does not write): here it keeps its message, with no errors.
 * What msgpackr writes for an Error or a RegExp decodes as before.
 */
const ERROR_CLASSES: Record<string, ErrorConstructor | AggregateErrorConstructor | undefined> = Object.assign(Object.create(null) as object, {
  Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError,
  ...(typeof AggregateError === 'function' ? { AggregateError } : {}),
});

/** A decoded field as text without expanding it: a string as is, a primitive as String(), anything else by its kind. */
function fieldText(v: unknown): string | undefined {
  if (v === undefined || typeof v === 'string') return v;
  if (v === null || typeof v !== 'object') return String(v as never);
  return Object.prototype.toString.call(v);
}

function decodeError(data: unknown): Error {
  if (!Array.isArray(data)) throw new TypeError('an Error extension that does not hold [name, message, cause]');
  const raw = data[0] as unknown;
  const name = fieldText(raw);
  const options = { cause: data[2] as unknown };
  const message = fieldText(data[1]);
  const Class = name === undefined ? undefined : ERROR_CLASSES[name];
  if (Class === undefined) {
    const e = new Error(message, options);
    e.name = (raw !== null && typeof raw === 'object' ? name : raw) as string; // a primitive as msgpackr left it
    return e;
  }
  return Class === (AggregateError as unknown) ? new AggregateError([], message, options) : new (Class as ErrorConstructor)(message, options);
}

function decodeRegExp(data: unknown): RegExp {
  if (!Array.isArray(data)) throw new TypeError('a RegExp extension that does not hold [source, flags]');
  try {
    return new RegExp(fieldText(data[0]) as string, fieldText(data[1]));
  } catch {
    // Not the SyntaxError itself: its message quotes the whole pattern, a value's contents (review70).
    throw new SyntaxError('a RegExp extension whose source or flags are not a valid regular expression');
  }
}

let decodersReplaced = false;
function replaceDecoders(): void {
  if (decodersReplaced) return;
  decodersReplaced = true;
  addExtension({ type: 0x65, read: decodeError });
  addExtension({ type: 0x78, read: decodeRegExp });
}

/** ExactViews keeps views of up to this length in an array, longer ones in a bounded map. */
const ARRAY_VIEWS = 2048;
const MAP_VIEWS_MAX = 64;

/**
 * Views of one reused buffer, each exactly a value's length, kept per length (see
 * ValueCodec.decodeCopying): msgpackr then reads nothing past the value, and makes its DataView
 * once per view. Keep one ExactViews per reused buffer: given another buffer object (the same
 * one grown, or another caller's), it drops what it kept and starts again, so buffers used in
 * turn through one ExactViews cost a view (and DataView) per call. Bounded: 2049 slots (24 KiB,
 * made on first use) and at most 64 longer views.
 */
export class ExactViews {
  #of: Uint8Array | undefined;
  /** Whether #of is memory of a SharedArrayBuffer: then `of` answers a private copy (see ValueCodec.decode). */
  #shared = false;
  /** Which generation (buffer) each short view belongs to: a new buffer is one increment, not a sweep. */
  #gen = 0;
  #gens: Int32Array | undefined;
  #short: Array<Uint8Array | undefined> | undefined;
  readonly #long = new Map<number, Uint8Array>();

  /**
   * `buf[0 .. len)`, as a view kept for this buffer and length — or, for memory of a
   * SharedArrayBuffer, a private copy made on each call.
   */
  of(buf: Uint8Array, len: number): Uint8Array {
    if (buf !== this.#of) {
      this.#of = buf;
      this.#shared = buf.buffer instanceof SharedArrayBuffer; // (a getter call: once per buffer)
      this.#gen++;
      this.#long.clear();
    }
    if (this.#shared) return new Uint8Array(buf.subarray(0, len));
    if (len <= ARRAY_VIEWS) {
      // Sized up front: stores far past an empty array's end would turn it into a dictionary.
      const short = this.#short ??= new Array<Uint8Array | undefined>(ARRAY_VIEWS + 1);
      const gens = this.#gens ??= new Int32Array(ARRAY_VIEWS + 1);
      if (gens[len] === this.#gen) return short[len]!;
      gens[len] = this.#gen;
      return short[len] = buf.subarray(0, len);
    }
    let v = this.#long.get(len);
    if (v === undefined) {
      if (this.#long.size >= MAP_VIEWS_MAX) this.#long.clear();
      v = buf.subarray(0, len);
      this.#long.set(len, v);
    }
    return v;
  }
}

/** Default largest encoded value: 16 MiB. */
export const DEFAULT_MAX_VALUE_BYTES = 16 * 1024 * 1024;

export interface CodecOptions {
  /** Largest encoded value in bytes (both directions). Default 16 MiB. */
  maxBytes?: number;
  /**
   * The engine's shared record structures: with them the codec writes FORMAT_SHARED (for values
   * that stay inside this engine's threads). Without, only self-contained formats.
   */
  structures?: SharedStructures;
}

const COMMON = { moreTypes: true, int64AsType: 'bigint' } as const;

/**
 * How errors name the value being encoded: a string, or a function that builds one — called only
 * when an error is thrown, so a hot caller (the cache's set, naming the key) builds no string.
 */
export type ValueName = string | (() => string);

function nameOf(what: ValueName): string {
  return typeof what === 'string' ? what : what();
}

export class ValueCodec {
  readonly maxBytes: number;
  // Format 1 still reads back-references: the first builds wrote it with structured clone (review68).
  readonly #plain = new Packr({ ...COMMON, useRecords: false });
  /** For an object of 65 536 keys or more: msgpackr's fast map writer counts keys in 16 bits. Made on first use. */
  #plainWide: Packr | undefined;
  // No structures shared between values: each carries its own record definitions. The only
  // format with structuredClone (cycles), whose per-value reference tracking costs time.
  readonly #records = new Packr({ ...COMMON, structuredClone: true, useRecords: true, maxSharedStructures: 0, mapsAsObjects: false });
  readonly #shared: Packr | undefined;
  /** Plain objects the engine-local writer writes before it remembers them (see UNWALKED_OBJECTS). */
  #unwalked = 0;
  /** The objects it looks up and remembers, past UNWALKED_OBJECTS: one in 16, drawn by #draw. */
  #seen: Set<object> | undefined;
  /** msgpackr's write position when this engine-local write began (+Infinity: not checked). */
  #packFrom = 0;
  /** xorshift32 state: which objects #seen keeps. */
  #draw = 0x9e3779b9 | 0;
  readonly #walk = newWalkState();
  /** decode's copy of a small input (see decode); made on first use. */
  #scratch: Buffer | undefined;
  /** Views of #scratch, by length. */
  readonly #ownViews = new ExactViews();
  #inScratch = false;
  /** decodeCopying's views when its caller keeps none. */
  readonly #views = new ExactViews();

  /** @throws RangeError for a bad `maxBytes`. */
  constructor(options: CodecOptions = {}) {
    const max = options.maxBytes ?? DEFAULT_MAX_VALUE_BYTES;
    if (!Number.isInteger(max) || max < 16 || max > 2 ** 31) {
      throw new RangeError(`options.maxBytes must be an integer between 16 and 2^31, got ${String(max)}`);
    }
    this.maxBytes = max;
    replaceDecoders();
    const store = options.structures;
    if (store !== undefined) {
      // The hot path: no separate walk. msgpackr itself refuses what we refuse — a function
      // (writeFunction), a symbol (unknown type), an own `__proto__` key (checked as each object
      // is written) — and a cycle overflows the stack; on any failure encode() walks the value
      // to name the path, or falls back to the structured-clone format for a cycle. Past
      // UNWALKED_OBJECTS objects, an object met twice makes encode() walk the value first (its size).
      // No back-references in this format: bytes holding one are refused.
      this.#shared = new Packr({
        ...COMMON, mapsAsObjects: false, structuredClone: false,
        useRecords: (o: object) => {
          // Already past maxBytes: stop, and let the walk refuse it before more is written.
          // msgpackr's write position, from where this write began; when it falls, msgpackr moved
          // to a new buffer, where the write starts at 0 (review72: an old start kept made the
          // check late by up to that buffer's size).
          if (this.#packFrom !== Infinity) { // (Infinity: not checked, the write after a walk)
            const pos = this.#shared!.position;
            if (pos < this.#packFrom) this.#packFrom = 0;
            if (pos - this.#packFrom > this.maxBytes) throw WALK_FIRST;
          }
          if (--this.#unwalked < 0) {
            let r = this.#draw;
            r ^= r << 13;
            r ^= r >>> 17;
            r ^= r << 5;
            this.#draw = r;
            if ((r & 15) === 0) {
              const seen = this.#seen ??= new Set();
              if (seen.has(o)) throw WALK_FIRST;
              seen.add(o);
            }
          }
          if (Object.prototype.hasOwnProperty.call(o, '__proto__')) throw new TypeError('own "__proto__" key');
          if (Object.getPrototypeOf(o) !== Object.prototype && uncopyable(o) !== undefined) throw new TypeError('uncopyable');
          return true;
        },
        writeFunction: () => {
          throw new TypeError('function');
        },
        structures: [], maxSharedStructures: 32,
        shouldShareStructure: (keys: string[]) => keys.length <= MAX_SHARED_KEYS,
        getStructures: () => store.get(),
        saveStructures: (structures: unknown[], isCompatible: ((existing: unknown[]) => boolean) | boolean) => {
          const saved = store.save(structures, isCompatible);
          // Declined: msgpackr writes the value again from where this attempt ended (review72).
          if (!saved && this.#packFrom !== Infinity) this.#packFrom = align8(this.#shared!.position);
          return saved;
        },
      } as never);
    }
  }

  /** True when this codec writes (and reads) FORMAT_SHARED values. */
  get shared(): boolean {
    return this.#shared !== undefined;
  }

  /**
   * Encodes `value`: the format byte, then MessagePack.
   * @throws TypeError for a function, symbol or own `__proto__` key inside `value` (names the path).
   * @throws ValueTooLargeError over `maxBytes`.
   */
  encode(value: unknown, what: ValueName = 'value'): Buffer {
    // msgpackr reserves the format byte in its own buffer: no second copy. The subarray it
    // returns stays valid (msgpackr moves on to fresh space for the next value).
    let out: Buffer | undefined;
    // An encode from inside this one (a getter that encodes) counts its own objects, then gives
    // the outer write its count back (review68).
    const outerLeft = this.#unwalked;
    const outerSeen = this.#seen;
    const outerFrom = this.#packFrom;
    try {
      if (this.#shared !== undefined) {
        this.#unwalked = UNWALKED_OBJECTS;
        this.#seen = undefined;
        this.#packFrom = align8(this.#shared.position); // where msgpackr starts (or 0, a new buffer)
        try {
          out = this.#shared.pack(value, RESERVE_START_SPACE | 1);
          out[0] = FORMAT_SHARED;
        } catch (err) {
          // Slow path: the walk names a refused function, symbol or __proto__ key (it throws);
          // anything else (a cycle, a full structures region) is written self-contained below.
          out = err === WALK_FIRST ? this.#sharedWalked(value, what) : undefined;
        }
      }
      out ??= this.#selfContained(value, what);
    } catch (err) {
      if (err instanceof RangeError && /call stack/i.test(err.message)) {
        throw new TypeError(`${nameOf(what)} is nested too deeply to encode`, { cause: err });
      }
      throw err;
    } finally {
      this.#unwalked = outerLeft;
      this.#seen = outerSeen;
      this.#packFrom = outerFrom;
    }
    if (out.length > this.maxBytes) throw new ValueTooLargeError(out.length, this.maxBytes, nameOf(what));
    return out;
  }

  /**
   * The engine-local format for a value in which the writer met an object twice past
   * UNWALKED_OBJECTS: walked first (its refusals, its size), then written without counting.
   * Undefined for a value to write self-contained: one with a cycle, or whose write failed.
   */
  #sharedWalked(value: unknown, what: ValueName): Buffer | undefined {
    const st = this.#walked(value, what);
    if ((st.flags & CYCLE) !== 0) return undefined;
    this.#tooLarge(st, what); // shared objects are written once per use in this format
    this.#unwalked = 2 ** 30;
    this.#seen = undefined;
    this.#packFrom = Infinity;
    try {
      const out = this.#shared!.pack(value, RESERVE_START_SPACE | 1);
      out[0] = FORMAT_SHARED;
      return out;
    } catch {
      return undefined;
    }
  }

  #selfContained(value: unknown, what: ValueName): Buffer {
    const st = this.#walked(value, what);
    const shape = st.flags;
    let out: Buffer;
    if ((shape & (MAP | CYCLE)) !== 0) {
      // Structured clone: an object used twice is written once, then referred to.
      out = this.#records.pack(value, RESERVE_START_SPACE | 1);
      out[0] = FORMAT_RECORDS;
    } else {
      this.#tooLarge(st, what); // plain msgpack writes a shared object once per use
      const packr = (shape & WIDE) !== 0 ? this.#plainWide ??= new Packr({ ...COMMON, useRecords: false, variableMapSize: true }) : this.#plain;
      out = packr.pack(value, RESERVE_START_SPACE | 1);
      out[0] = FORMAT_PLAIN;
    }
    return out;
  }

  /** The walk of `value`, in the codec's own state unless a walk is under way (a getter that encodes). */
  #walked(value: unknown, what: ValueName): WalkState {
    const st = this.#walk.busy ? newWalkState() : this.#walk;
    walkValue(value, what, st);
    return st;
  }

  /** @throws ValueTooLargeError when the walk found the value, written out, over maxBytes. */
  #tooLarge(st: WalkState, what: ValueName): void {
    if (st.bytes > this.maxBytes) throw new ValueTooLargeError(st.bytes, this.maxBytes, nameOf(what), true);
  }

  /**
   * Decodes the value in `bytes[0 .. end)` — a buffer the caller reuses (the Cache's L2 scratch):
   * binary fields are copied out (msgpackr's copyBuffers), so nothing decoded aliases it.
   *
   * msgpackr reads through a view of exactly `end` bytes, as when decoding the value's own Buffer,
   * so it sees nothing past the value: it bounds reads by one check of the final position, which
   * its bundled-strings extension (always registered, never written here) defeats — from the whole
   * buffer, a crafted value (from Redis, say, copied into L2 after it decoded from its own bytes)
   * read whatever an earlier value left past its end. The views are kept in `views` (the
   * caller's, one per reused buffer; else the codec's own, shared by every caller that has none),
   * so msgpackr's DataView per new source object is made once per length.
   * @throws RangeError when `end` is not an integer in [0, bytes.length].
   * @throws CorruptValueError as `decode`.
   */
  decodeCopying(bytes: Uint8Array, end: number, views: ExactViews = this.#views): unknown {
    if (!Number.isInteger(end) || end < 0 || end > bytes.length) {
      throw new RangeError(`end must be an integer in [0, ${bytes.length}], got ${String(end)}`);
    }
    return this.#decodeCopies(views.of(bytes, end));
  }

  /**
   * Decodes bytes written by `encode`.
   *
   * An input of up to 1 KiB is copied into a scratch buffer of the codec's own and decoded there
   * through a view of exactly its length (see decodeCopying): msgpackr makes a DataView for each
   * new source object, and every fresh Buffer decoded — an encode's output, a Redis reply, a
   * worker's message — paid for one. So a small value's binary fields are copies (Buffers); a
   * larger one's are views of `bytes`, as msgpackr gives them.
   * @throws CorruptValueError for empty, unknown-format, truncated, trailing-garbage or oversize input.
   */
  decode(bytes: Uint8Array): unknown {
    if (!(bytes instanceof Uint8Array)) throw new TypeError(`decode expects a Uint8Array, got ${typeof bytes}`);
    const len = bytes.length;
    // Not while a decode is under way (none re-enters today; one would overwrite the outer
    // value), and only for a real typed array (a Proxy could run code while it is copied).
    if (len > 0 && len <= SCRATCH_BYTES && !this.#inScratch && ArrayBuffer.isView(bytes)) {
      const scratch = this.#scratch ??= Buffer.alloc(SCRATCH_BYTES);
      this.#inScratch = true;
      try {
        scratch.set(bytes);
        return this.#decodeCopies(this.#ownViews.of(scratch, len));
      } finally {
        this.#inScratch = false;
      }
    }
    if (len === 0) throw new CorruptValueError('empty input is not an encoded value');
    if (len > this.maxBytes) throw new CorruptValueError(`encoded value of ${len} bytes is over the limit of ${this.maxBytes}`);
    // msgpackr-extract's native string reader crashes the process on memory of a
    // SharedArrayBuffer (garbage strings, then SIGSEGV): such input is copied out first.
    if (bytes.buffer instanceof SharedArrayBuffer) bytes = new Uint8Array(bytes);
    const format = bytes[0]!;
    return unpackValue(this.#packrFor(format), bytes, format !== FORMAT_SHARED);
  }

  /** Decodes all of `view` (its own length: see decodeCopying), binary fields copied out. */
  #decodeCopies(view: Uint8Array): unknown {
    if (view.length === 0) throw new CorruptValueError('empty input is not an encoded value');
    if (view.length > this.maxBytes) throw new CorruptValueError(`encoded value of ${view.length} bytes is over the limit of ${this.maxBytes}`);
    const format = view[0]!;
    const packr = this.#packrFor(format);
    const p = packr as unknown as { copyBuffers?: boolean };
    const before = p.copyBuffers;
    p.copyBuffers = true;
    try {
      return unpackValue(packr, view, format !== FORMAT_SHARED);
    } finally {
      p.copyBuffers = before;
    }
  }

  /** The decoder of a format byte. @throws CorruptValueError for one this codec does not read. */
  #packrFor(format: number): Packr {
    const packr = format === FORMAT_PLAIN ? this.#plain : format === FORMAT_RECORDS ? this.#records : format === FORMAT_SHARED ? this.#shared : undefined;
    if (packr === undefined) {
      throw new CorruptValueError(
        format === FORMAT_SHARED
          ? 'a value in the engine-local shared format reached a codec without the engine\'s structures'
          : `unknown codec format ${format} (this build reads ${FORMAT_PLAIN}, ${FORMAT_RECORDS} and ${FORMAT_SHARED})`,
      );
    }
    return packr;
  }
}

/**
 * msgpackr's unpack of `bytes` after the format byte; with `guard`, JSON.stringify bounded
 * meanwhile (see boundedStringify). The engine-local format goes unguarded (the swap cost 7 % of
 * its decode): it is written and read only by the threads of one engine — the codecs that read
 * Redis have no structures and refuse it — and it refuses back-references, so hostile bytes could
 * only repeat a record key per object (quadratic, capped by V8's longest string).
 */
function unpackValue(packr: Packr, bytes: Uint8Array, guard: boolean): unknown {
  let installed = false;
  let outer: typeof JSON.stringify | undefined;
  if (guard && canGuard) {
    outer = JSON.stringify;
    try {
      JSON.stringify = boundedStringify as typeof JSON.stringify;
      installed = true;
      guarding++;
    } catch {
      // JSON frozen since this module loaded: decodes run unguarded from now on (review68).
      canGuard = false;
    }
  }
  try {
    return packr.unpack(bytes, FROM_1 as never);
  } catch (err) {
    throw corrupt(err);
  } finally {
    if (installed) {
      guarding--;
      try {
        JSON.stringify = outer!;
      } catch {
        // JSON frozen during the decode (by an extension): the bounded function stays, and is the
        // native one whenever no decode runs (review70).
        canGuard = false;
      }
    }
  }
}

/**
 * The CorruptValueError for a decode that msgpackr refused. Its "end of buffer not reached" error
 * carries the first 100 characters of the value it decoded (as JSON): that text is left out of
 * the message, and the error out of `cause`, so a value's contents never reach an error message
 * or a log line.
 */
function corrupt(err: unknown): CorruptValueError {
  const message = err instanceof Error ? err.message : String(err);
  if (message.startsWith('Data read, but end of buffer not reached')) {
    return new CorruptValueError('corrupt encoded value: bytes left over after the value');
  }
  return new CorruptValueError(`corrupt encoded value: ${message}`, err);
}

/**
 * Walks `value` and throws a TypeError naming the path of anything the codec cannot carry
 * faithfully: a function, a symbol, an own `__proto__` key. Returns bit flags: MAP when it holds
 * a Map (plain msgpack cannot tell one from an object), CYCLE when something contains itself
 * (only the structured-clone format can write that), WIDE when an object has 65 536 keys or more;
 * 0 for the common case.
 *
 * It is on the hot path of every encode, so it allocates one small state object, tracks the
 * path as a stack (the path string is built only for an error) and keeps the sizes of objects
 * already walked only past 10 000 objects (against exponential walks of shared references).
 */
export function checkEncodable(value: unknown, path: ValueName = 'value', reuse?: WalkState): number {
  return walkValue(value, path, reuse !== undefined && !reuse.busy ? reuse : newWalkState());
}

/**
 * checkEncodable in a given state (not busy), which keeps the walk's results: its flags, and in
 * `bytes` a lower bound of the value's size written out with every shared object written once per
 * use (one byte per value, a string's length, a binary's byte length; object keys not counted, as
 * records do not repeat them).
 */
export function walkValue(value: unknown, path: ValueName, st: WalkState): number {
  st.flags = 0;
  st.bytes = 0;
  if (typeof value === 'function' || typeof value === 'symbol') {
    throw new TypeError(`${nameOf(path)} is a ${typeof value} and cannot be encoded`);
  }
  if (typeof value !== 'object' || value === null || isLeaf(value)) return 0;
  const json = jsonOf(value);
  if (json !== value) return walkValue(json, path, st);
  st.busy = true;
  st.visits = 0;
  st.sizes = undefined;
  st.root = path;
  st.ancestors.length = 0;
  st.keys.length = 0;
  try {
    st.bytes = walk(value, st);
    return st.flags;
  } finally {
    st.busy = false;
    st.sizes = undefined;
    // After a throw (a refusal, a getter's error) these still held the value (review70).
    st.ancestors.length = 0;
    st.keys.length = 0;
  }
}

/** A walk's scratch state; a codec keeps one to reuse (a getter that encodes re-enters: then a fresh one). */
export function newWalkState(): WalkState {
  return { busy: false, flags: 0, bytes: 0, ancestors: [], keys: [], visits: 0, sizes: undefined, root: 'value' };
}

/** checkEncodable flag: the value holds a Map. */
export const MAP = 1;
/** checkEncodable flag: the value contains itself. */
export const CYCLE = 2;
/** checkEncodable flag: an object of 65 536 keys or more (msgpackr's fast writer counts 16 bits). */
export const WIDE = 4;

export interface WalkState {
  busy: boolean;
  flags: number;
  /** Lower bound of the value's written size, shared objects counted per use (see walkValue). */
  bytes: number;
  ancestors: object[];
  keys: Array<string | number>;
  visits: number;
  /** Written sizes of the objects walked so far, kept past 10 000 visits. */
  sizes: Map<object, number> | undefined;
  root: ValueName;
}

/** The name of a kind of object that holds nothing copyable (written as `{}` otherwise), or undefined. */
function uncopyable(o: object): string | undefined {
  if (o instanceof Promise) return 'Promise';
  if (o instanceof WeakMap) return 'WeakMap';
  if (o instanceof WeakSet) return 'WeakSet';
  if (typeof WeakRef !== 'undefined' && o instanceof WeakRef) return 'WeakRef';
  return undefined;
}

function isLeaf(o: object): boolean {
  const proto = Object.getPrototypeOf(o);
  if (proto === Object.prototype || proto === Array.prototype || proto === null) return false;
  return ArrayBuffer.isView(o) || o instanceof ArrayBuffer || o instanceof Date || o instanceof RegExp || o instanceof Error;
}

function fail(st: WalkState, key: string | number | undefined, what: string): never {
  const parts = [nameOf(st.root), ...st.keys.map(String)];
  if (key !== undefined) parts.push(String(key));
  throw new TypeError(`${parts.join('.')} ${what}`);
}

/**
 * What msgpackr writes for `o`: for an instance of a class with a `toJSON` (not a plain object,
 * array, Map or Set), what toJSON returns — so that is what the walk checks and measures
 * (review68: an instance holding megabytes that writes 8 bytes was refused). toJSON is then called
 * twice, by the walk and by msgpackr, as JSON.stringify would call it once.
 */
function jsonOf(o: object): unknown {
  const ctor = (o as { constructor?: unknown }).constructor;
  if (ctor === Object || ctor === Array || ctor === Map || ctor === Set || Array.isArray(o)) return o;
  const toJSON = (o as { toJSON?: unknown }).toJSON;
  if (!toJSON) return o;
  return (toJSON as (this: object) => unknown).call(o); // not a function: msgpackr throws the same
}

/** Lower bound of the written size of a value that is not walked into. */
function leafBytes(v: object): number {
  if (!ArrayBuffer.isView(v) && !(v instanceof ArrayBuffer)) return 1;
  // A subclass with a toJSON of its own is written by msgpackr as what that returns (review70).
  const toJSON = (v as { toJSON?: unknown }).toJSON;
  return toJSON === undefined || toJSON === Buffer.prototype.toJSON ? 1 + v.byteLength : 1;
}

/** Checks `v` (a value at `key`); returns a lower bound of its written size (see walkValue). */
function visit(v: unknown, key: string | number, st: WalkState): number {
  if (typeof v === 'object') {
    if (v === null) return 1;
    if (isLeaf(v)) return leafBytes(v);
    const json = jsonOf(v);
    if (json !== v) return visit(json, key, st);
    st.keys.push(key);
    const bytes = walk(v, st);
    st.keys.pop();
    return bytes;
  }
  if (typeof v === 'string') return 1 + v.length;
  if (typeof v === 'function' || typeof v === 'symbol') fail(st, key, `is a ${typeof v} and cannot be encoded`);
  return 1;
}

function walk(o: object, st: WalkState): number {
  if (st.ancestors.includes(o)) {
    st.flags |= CYCLE;
    return 1;
  }
  if (++st.visits > 10_000) {
    const known = (st.sizes ??= new Map()).get(o);
    if (known !== undefined) return known;
  }
  st.ancestors.push(o);
  let bytes = 1;
  if (Array.isArray(o)) {
    for (let i = 0; i < o.length; i++) bytes += visit(o[i], i, st);
  } else if (o instanceof Map) {
    st.flags |= MAP;
    for (const [k, v] of o) {
      if (typeof k === 'function' || typeof k === 'symbol') fail(st, `<key ${String(k)}>`, `is a ${typeof k} and cannot be encoded`);
      bytes += typeof k === 'object' && k !== null ? visit(k, `<key>`, st) : typeof k === 'string' ? 1 + k.length : 1;
      bytes += visit(v, typeof k === 'string' || typeof k === 'number' ? k : String(k), st);
    }
  } else if (o instanceof Set) {
    let i = 0;
    for (const v of o) bytes += visit(v, `<${i++}>`, st);
  } else {
    if (Object.prototype.hasOwnProperty.call(o, '__proto__')) fail(st, undefined, 'has an own "__proto__" key, which cannot be stored faithfully');
    const kind = Object.getPrototypeOf(o) === Object.prototype ? undefined : uncopyable(o);
    if (kind !== undefined) fail(st, undefined, `is a ${kind}, which holds nothing that can be copied`);
    let n = 0;
    for (const k in o) {
      if (Object.prototype.hasOwnProperty.call(o, k)) {
        bytes += visit((o as Record<string, unknown>)[k], k, st);
        n++;
      }
    }
    if (n > 0xffff) st.flags |= WIDE;
  }
  st.ancestors.pop();
  if (st.sizes !== undefined) st.sizes.set(o, bytes);
  return bytes;
}
