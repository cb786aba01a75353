/**
 * The compression component: LZ4 (our WebAssembly codec), zstd, gzip, deflate and brotli, in the
 * hotpath frame or in each codec's own standard format; on the calling thread (…Sync) or off it.
 *
 * Where the work runs (async calls):
 *  - LZ4 below `offloadBytes` (64 KiB): on the calling thread — a 64 KiB block takes ~0.2 ms,
 *    less than a round trip through a worker's wake-up.
 *  - LZ4 from `offloadBytes`: on one worker of the pool; from two blocks (2 × 4 MiB) when the pool
 *    has several workers: the blocks are compressed in parallel on every worker, through staging
 *    slots in the shared arena, while this thread computes the content checksum block by block.
 *  - gzip / deflate / brotli / zstd in their own format: node:zlib's async API (libuv's threads)
 *    behind a semaphore (see zlib-codecs.ts). In a hotpath frame, from `offloadBytes`: on a worker.
 * Bytes travel to workers through the channel's rings (copied, never structured-cloned).
 */
import {
  ArenaExhaustedError, CancelledError, CodecUnavailableError, CorruptFrameError, ErrorCodes, OutputLimitError, TaskFailedError,
  UnknownFormatError,
} from '../errors.js';
import { randomUUID } from 'node:crypto';
import { constants as bufferConstants } from 'node:buffer';
import type { PoolCall, WorkerPool } from '../runtime/pool.js';
import { distUrl } from '../runtime/paths.js';
import {
  CODEC_IDS, CODEC_NAMES, HOTPATH_HEADER_BYTES, HOTPATH_MAGIC, HOTPATH_VERSION, describe, detect, type HotpathHeader, type StoredCodec,
} from './formats.js';
import { LZ4_FRAME_DEFAULTS, lz4EncodeBlock, lz4FrameDecode, lz4FrameEncode, lz4FrameHeader, lz4FrameTrailer } from './lz4-frame.js';
import { HASH_STATE_BYTES, LZ4_OUTPUT, Lz4Workspace } from './workspace.js';
import { instantiateKernels } from '../runtime/wasm.js';
import { DEFAULT_LEVELS, LEVEL_RANGES, NATIVE_ZSTD, ZlibGate, zlibCompressSync, zlibDecompressSync, type ZlibCodec } from './zlib-codecs.js';

/** The codecs. */
export type Codec = 'lz4' | 'zstd' | 'gzip' | 'deflate' | 'brotli';

export interface CompressOptions {
  /**
   * 'lz4' (default), 'zstd', 'gzip', 'deflate', 'brotli'; 'auto' picks lz4, or stores the data
   * raw when a probe finds it does not compress; 'none' stores it raw (hotpath frame only).
   */
  codec?: Codec | 'auto' | 'none';
  /** gzip/deflate 0-9 (6), brotli 0-11 (4), zstd 1-19 (3); lz4 has level 1 only. */
  level?: number;
  /** LZ4 only: 1 (default, as `lz4 -1`) .. 65537; higher is faster and compresses less. */
  acceleration?: number;
  /**
   * 'hotpath' (default): the hotpath frame (codec, size and checksum; see formats.ts).
   * 'native': the codec's own format — an LZ4 frame, a zstd frame, gzip, zlib, raw brotli.
   */
  format?: 'hotpath' | 'native';
  /** Rejects with ERR_HOTPATH_CANCELLED when aborted before the result is ready. */
  signal?: AbortSignal;
}

export interface DecompressOptions {
  /** Refuses to produce more (ERR_HOTPATH_OUTPUT_LIMIT). Default 256 MiB. */
  maxOutputBytes?: number;
  /**
   * The codec, when the data cannot say: raw brotli has no magic. Without it the format is
   * recognised: hotpath frame, LZ4 frame, zstd, gzip, zlib.
   */
  codec?: Codec;
  signal?: AbortSignal;
}

export interface CompressorOptions {
  /** Async calls with at least this many input bytes run off the calling thread. Default 64 KiB. */
  offloadBytes?: number;
  /**
   * LZ4 block size: 64 KiB, 256 KiB, 1 MiB (default) or 4 MiB (the lz4 tool's default). Blocks are
   * the unit of parallel compression and of the shared staging slots; 1 MiB blocks compress
   * within 0.3% of 4 MiB ones (the match window is 64 KiB either way).
   */
  blockSize?: number;
  /** Most node:zlib calls in flight at once (default 8). */
  zlibConcurrency?: number;
  /** Default of DecompressOptions.maxOutputBytes (256 MiB). */
  maxOutputBytes?: number;
}

export const COMPRESS_DEFAULTS = {
  offloadBytes: 64 * 1024,
  blockSize: 1 << 20,
  zlibConcurrency: 8,
  maxOutputBytes: 256 * 1024 * 1024,
} as const;

/** What a Compressor runs on. */
export interface CompressorDeps {
  /** The compiled kernels (kernelModule()). */
  module: WebAssembly.Module;
  /**
   * The worker pool for offloaded calls, or a function that creates it on first use. Without
   * one, async calls run on the calling thread.
   */
  pool?: WorkerPool | (() => Promise<WorkerPool>);
  /** The calling thread's LZ4 workspace, when several compressors on one thread share one. */
  workspace?: Lz4Workspace;
}

/** Input accepted by compress: bytes, or a string (encoded as UTF-8). */
export type Input = Uint8Array | string;

/** Staging slots (byte offsets in the shared arena) and the runners waiting for one. */
interface Staging {
  slots: number;
  free: number[];
  waiting: Array<(slot: number) => void>;
  /**
   * Adds the `len` bytes at arena offset `ptr` to the streaming xxHash32 `state` (kept by the
   * caller), reading them where they are staged: no copy into the workspace.
   */
  hash(state: Uint8Array, ptr: number, len: number): void;
}

interface Resolved {
  codec: Codec | 'auto' | 'none';
  level: number;
  acceleration: number;
  native: boolean;
}

const CODECS = new Set(['lz4', 'zstd', 'gzip', 'deflate', 'brotli']);
// Workers run built JavaScript (DESIGN pitfall 5), also when this module runs from source (tests).
const TASK_MODULE = distUrl('engine/compress/tasks.js');
export const TASK_COMPRESS = 'hotpath:compress';
export const TASK_DECOMPRESS = 'hotpath:decompress';
export const TASK_LZ4_BLOCK = 'hotpath:lz4-block';
export const TASK_LZ4_STAGED = 'hotpath:lz4-staged';
/** Bytes of the header in front of an offloaded payload (see tasks.ts). */
export const TASK_HEADER = 24;
const AUTO_MIN = 64;

function toBytes(data: Input, what: string): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  const kind = data === null ? 'null' : ArrayBuffer.isView(data) || (data as unknown) instanceof ArrayBuffer ? `a ${(data as object).constructor.name} (wrap its bytes in a Uint8Array)` : typeof data;
  throw new TypeError(`${what}: data must be a Uint8Array, a Buffer or a string, got ${kind}`);
}

function checkInteger(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, got ${describeValue(value)}`);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${String(value)}`);
  }
  return value;
}

/** A value as an error message shows it: strings quoted, so `'3'` is not read as 3. */
function describeValue(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : value === null ? 'null' : typeof value === 'object' ? 'an object' : String(value);
}

/**
 * The largest output a limit may allow: one Buffer's maximum length (4 GiB on Node 20, 2^53 − 1
 * from Node 22 on). A larger `maxOutputBytes` would turn a frame declaring more into Node's untyped
 * ERR_OUT_OF_RANGE.
 */
export const MAX_OUTPUT_LIMIT = bufferConstants.MAX_LENGTH;

/** @throws TypeError unless `signal` is undefined or an AbortSignal. */
function checkSignal(signal: unknown): void {
  if (signal === undefined) return;
  const s = signal as { aborted?: unknown; addEventListener?: unknown; removeEventListener?: unknown } | null;
  if (s === null || typeof s !== 'object' || typeof s.aborted !== 'boolean' || typeof s.addEventListener !== 'function' || typeof s.removeEventListener !== 'function') {
    throw new TypeError(`options.signal must be an AbortSignal, got ${describeValue(signal)}`);
  }
}

/** Validates compress options (throws TypeError/RangeError naming the option). */
export function resolveCompressOptions(options: CompressOptions | undefined): Resolved {
  if (options !== undefined && (options === null || typeof options !== 'object')) throw new TypeError('options must be an object');
  checkSignal(options?.signal);
  const codec = options?.codec === undefined ? 'lz4' : options.codec;
  if (!CODECS.has(codec as string) && codec !== 'auto' && codec !== 'none') {
    throw new RangeError(`options.codec must be one of lz4, zstd, gzip, deflate, brotli, auto, none, got ${describeValue(codec)}`);
  }
  const format = options?.format ?? 'hotpath';
  if (format !== 'hotpath' && format !== 'native') throw new RangeError(`options.format must be 'hotpath' or 'native', got ${String(format)}`);
  if (format === 'native' && (codec === 'auto' || codec === 'none')) {
    throw new RangeError(`options.codec '${codec}' needs format 'hotpath' (no standard format records how the data was stored)`);
  }
  let level = 1;
  if (codec === 'lz4' || codec === 'auto' || codec === 'none') {
    if (options?.level !== undefined && options.level !== 1) {
      throw new RangeError(`options.level: lz4 has level 1 only (no high-compression mode); use options.acceleration to trade ratio for speed, got ${String(options.level)}`);
    }
  } else {
    const [lo, hi] = LEVEL_RANGES[codec];
    level = options?.level === undefined ? DEFAULT_LEVELS[codec] : checkInteger(options.level, 'options.level', lo, hi);
  }
  const acceleration = options?.acceleration === undefined ? 1 : checkInteger(options.acceleration, 'options.acceleration', 1, 65537);
  if (options?.acceleration !== undefined && codec !== 'lz4' && codec !== 'auto') {
    throw new RangeError(`options.acceleration applies to lz4 only, not ${codec}`);
  }
  return { codec, level, acceleration, native: format === 'native' };
}

function checkMaxOutput(options: DecompressOptions | undefined, fallback: number): number {
  if (options !== undefined && (options === null || typeof options !== 'object')) throw new TypeError('options must be an object');
  checkSignal(options?.signal);
  if (options?.codec !== undefined && !CODECS.has(options.codec)) {
    throw new RangeError(`options.codec must be one of lz4, zstd, gzip, deflate, brotli, got ${describeValue(options.codec)}`);
  }
  return options?.maxOutputBytes === undefined ? fallback : checkInteger(options.maxOutputBytes, 'options.maxOutputBytes', 1, MAX_OUTPUT_LIMIT);
}

/**
 * The content size a hotpath frame or an LZ4 frame declares in its header, when it is at most
 * `max` (a larger one fails at once wherever it is decoded); else 0.
 */
function declaredSize(data: Uint8Array, kind: string, max: number): number {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let size = 0;
  if (kind === 'hotpath' && data.length >= 16) size = Number(dv.getBigUint64(8, true));
  // LZ4 frame: magic, FLG (bit 3: a content size follows BD), BD, then the size.
  else if (kind === 'lz4' && data.length >= 14 && dv.getUint32(0, true) === 0x184d2204 && (data[4]! & 0x08) !== 0) size = Number(dv.getBigUint64(6, true));
  return size <= max ? size : 0;
}

/** Turns a worker's error back into the typed error it was. */
function unwrapTaskError(err: unknown, maxOutputBytes: number): unknown {
  if (!(err instanceof TaskFailedError)) return err;
  const cause = err.cause as { code?: string; message?: string } | undefined;
  const msg = cause?.message ?? '';
  switch (cause?.code) {
    case ErrorCodes.CORRUPT_FRAME: return new CorruptFrameError(msg);
    case ErrorCodes.UNKNOWN_FORMAT: return new UnknownFormatError(msg);
    case ErrorCodes.CODEC_UNAVAILABLE: return new CodecUnavailableError(msg);
    case ErrorCodes.OUTPUT_LIMIT: return Object.assign(new OutputLimitError(maxOutputBytes), { message: msg });
    default: return err;
  }
}


/**
 * `work`, rejected with ERR_HOTPATH_CANCELLED as soon as `signal` aborts (work already handed to
 * node:zlib or a worker runs on; its result is dropped and a late failure is handled, not leaked).
 */
function whileNotAborted(work: Promise<Buffer>, signal: AbortSignal | undefined, what: string): Promise<Buffer> {
  if (signal === undefined) return work;
  try {
    checkSignal(signal);
  } catch {
    return work; // it rejects with the TypeError naming options.signal (checked again there)
  }
  if (signal.aborted) {
    work.catch(() => {});
    return Promise.reject(new CancelledError(what, signal.reason));
  }
  return new Promise<Buffer>((resolve, reject) => {
    const onAbort = (): void => reject(new CancelledError(what, signal.reason));
    // The work's outcome is handled first: nothing below can leave its rejection unhandled.
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export class Compressor {
  readonly #module: WebAssembly.Module;
  readonly #poolDep: CompressorDeps['pool'];
  #pool: WorkerPool | undefined;
  #poolPromise: Promise<WorkerPool> | undefined;
  #ws: Lz4Workspace | undefined;
  readonly #gate: ZlibGate;
  readonly #offloadBytes: number;
  readonly #blockSize: number;
  readonly #maxOutput: number;
  /** Staging slots in the shared arena for parallel blocks; null when the arena had no room. */
  #staging: Staging | null | undefined;

  /** `optionsName` is how errors name the options object (createEngine passes 'options.compress'). */
  constructor(deps: CompressorDeps, options?: CompressorOptions, optionsName = 'options') {
    this.#module = deps.module;
    this.#poolDep = deps.pool;
    this.#ws = deps.workspace;
    if (options !== undefined && (options === null || typeof options !== 'object')) throw new TypeError(`${optionsName} must be an object`);
    const o = options ?? {};
    this.#offloadBytes = o.offloadBytes === undefined ? COMPRESS_DEFAULTS.offloadBytes : checkInteger(o.offloadBytes, `${optionsName}.offloadBytes`, 0, Number.MAX_SAFE_INTEGER);
    this.#blockSize = o.blockSize ?? COMPRESS_DEFAULTS.blockSize;
    if (![64 << 10, 256 << 10, 1 << 20, 4 << 20].includes(this.#blockSize)) {
      throw new RangeError(`${optionsName}.blockSize must be 65536, 262144, 1048576 or 4194304, got ${String(o.blockSize)}`);
    }
    this.#gate = new ZlibGate(o.zlibConcurrency === undefined ? COMPRESS_DEFAULTS.zlibConcurrency : checkInteger(o.zlibConcurrency, `${optionsName}.zlibConcurrency`, 1, 1024));
    this.#maxOutput = o.maxOutputBytes === undefined ? COMPRESS_DEFAULTS.maxOutputBytes : checkInteger(o.maxOutputBytes, `${optionsName}.maxOutputBytes`, 1, MAX_OUTPUT_LIMIT);
  }

  /** The LZ4 block size (bytes). */
  get blockSize(): number {
    return this.#blockSize;
  }

  /** True when this runtime can compress zstd (node:zlib's zstd, Node ≥ 22.15). */
  static get zstdCompression(): boolean {
    return NATIVE_ZSTD;
  }

  /** The calling thread's LZ4 workspace (created on first use). */
  get workspace(): Lz4Workspace {
    this.#ws ??= new Lz4Workspace();
    return this.#ws;
  }

  /** node:zlib calls in flight and waiting (the semaphore's state). */
  get zlibCalls(): { active: number; waiting: number; limit: number } {
    return { active: this.#gate.active, waiting: this.#gate.waiting, limit: this.#gate.limit };
  }

  // ---------------------------------------------------------------- synchronous

  /** Compresses on the calling thread, whatever the size. */
  compressSync(data: Input, options?: CompressOptions): Buffer {
    const bytes = toBytes(data, 'compressSync');
    return this.#compressResolved(bytes, resolveCompressOptions(options));
  }

  /** Compresses with options already validated (the worker tasks call this). */
  compressResolved(bytes: Uint8Array, o: Resolved): Buffer {
    return this.#compressResolved(bytes, o);
  }

  #compressResolved(bytes: Uint8Array, o: Resolved): Buffer {
    const codec = o.codec === 'auto' ? this.#pick(bytes, o.acceleration) : o.codec;
    if (o.native) {
      if (codec === 'lz4') return lz4FrameEncode(this.workspace, bytes, { ...LZ4_FRAME_DEFAULTS, acceleration: o.acceleration, blockSize: this.#blockSize });
      return zlibCompressSync(codec as ZlibCodec, bytes, o.level);
    }
    const ws = this.workspace;
    if (codec === 'lz4') {
      const hash = ws.hashState();
      const blocks: Uint8Array[] = [];
      for (let off = 0; off < bytes.length; off += this.#blockSize) {
        blocks.push(lz4EncodeBlock(ws, bytes.subarray(off, Math.min(bytes.length, off + this.#blockSize)), o.acceleration, hash));
      }
      return Buffer.concat([this.#header('lz4', bytes.length, ws.hashDigest(hash)), ...blocks]);
    }
    const checksum = ws.xxh32(bytes);
    const payload = codec === 'none' ? bytes : zlibCompressSync(codec as ZlibCodec, bytes, o.level);
    return Buffer.concat([this.#header(codec, bytes.length, checksum), payload]);
  }

  /** 'auto': store raw when tiny or when LZ4 saves under 5% on a sample; else lz4. */
  #pick(bytes: Uint8Array, acceleration: number): 'lz4' | 'none' {
    if (bytes.length < AUTO_MIN) return 'none';
    const ws = this.workspace;
    const S = 4096;
    let raw = 0;
    let packed = 0;
    const starts = bytes.length <= 3 * S ? [0] : [0, (bytes.length >>> 1) - S / 2, bytes.length - S];
    for (const s of starts) {
      const sample = bytes.subarray(s, Math.min(bytes.length, s + S));
      raw += sample.length;
      packed += ws.compressBlock(sample, acceleration).length;
    }
    return packed > raw * 0.95 ? 'none' : 'lz4';
  }

  #header(codec: StoredCodec, size: number, checksum: number): Uint8Array {
    const h = new Uint8Array(HOTPATH_HEADER_BYTES);
    const dv = new DataView(h.buffer);
    h.set(HOTPATH_MAGIC, 0);
    h[4] = HOTPATH_VERSION;
    h[5] = CODEC_IDS[codec];
    h[6] = codec === 'lz4' ? Math.log2(this.#blockSize) : 0;
    dv.setBigUint64(8, BigInt(size), true);
    dv.setUint32(16, checksum >>> 0, true);
    h[7] = this.#headerCheck(h);
    return h;
  }

  #headerCheck(h: Uint8Array): number {
    const covered = new Uint8Array(19);
    covered.set(h.subarray(0, 7), 0);
    covered.set(h.subarray(8, 20), 7);
    return this.workspace.xxh32(covered) & 0xff;
  }

  /** Parses and checks a hotpath frame header. */
  parseHeader(frame: Uint8Array, maxOutputBytes: number): HotpathHeader {
    if (frame.length < HOTPATH_HEADER_BYTES) throw new CorruptFrameError(`truncated hotpath frame: ${frame.length} bytes, the header alone is ${HOTPATH_HEADER_BYTES}`);
    if (frame[4] !== HOTPATH_VERSION) throw new CorruptFrameError(`unsupported hotpath frame version ${frame[4]} (this build reads version ${HOTPATH_VERSION})`);
    if (frame[7] !== this.#headerCheck(frame)) throw new CorruptFrameError('hotpath frame header check failed (the header is corrupt)');
    const codec = CODEC_NAMES[frame[5]!];
    if (codec === undefined) throw new CorruptFrameError(`hotpath frame names unknown codec id ${frame[5]}`);
    const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    const size64 = dv.getBigUint64(8, true);
    if (size64 > BigInt(maxOutputBytes)) throw new OutputLimitError(maxOutputBytes, `the hotpath frame declares ${size64} bytes`);
    const size = Number(size64);
    const log = frame[6]!;
    let blockSize = 0;
    if (codec === 'lz4') {
      if (log < 16 || log > 22) throw new CorruptFrameError(`hotpath frame: invalid lz4 block size log ${log}`);
      blockSize = 2 ** log;
    } else if (log !== 0) {
      throw new CorruptFrameError(`hotpath frame: block size log ${log} set for codec ${codec}`);
    }
    return { codec, blockSize, size, checksum: dv.getUint32(16, true) };
  }

  /** Decompresses on the calling thread: hotpath frames, LZ4 frames, zstd, gzip, zlib (and brotli with options.codec). */
  decompressSync(data: Uint8Array, options?: DecompressOptions): Buffer {
    if (!(data instanceof Uint8Array)) throw new TypeError(`decompressSync: data must be a Uint8Array or a Buffer, got ${data === null ? 'null' : typeof data}`);
    const max = checkMaxOutput(options, this.#maxOutput);
    return this.decompressChecked(data, max, options?.codec);
  }

  /** decompressSync with options already validated (the worker tasks call this). */
  decompressChecked(data: Uint8Array, max: number, hint: Codec | undefined): Buffer {
    const kind = hint === undefined ? detect(data) : hint === 'lz4' ? 'lz4' : hint;
    switch (kind) {
      case 'hotpath': return this.#decodeHotpath(data, max);
      case 'lz4': return lz4FrameDecode(this.workspace, data, { maxOutputBytes: max });
      case 'zstd': case 'gzip': case 'deflate': case 'brotli': return zlibDecompressSync(kind, data, max, this.workspace);
      default: throw new UnknownFormatError(`not a format hotpath reads (hotpath frame, LZ4 frame, zstd, gzip, zlib; raw brotli needs options.codec): ${describe(data)}`);
    }
  }

  #decodeHotpath(frame: Uint8Array, max: number): Buffer {
    const h = this.parseHeader(frame, max);
    const payload = frame.subarray(HOTPATH_HEADER_BYTES);
    const ws = this.workspace;
    let out: Buffer;
    let actual: number | undefined;
    if (h.codec === 'none') {
      if (payload.length !== h.size) throw new CorruptFrameError(`hotpath frame: ${payload.length} stored bytes, the header declares ${h.size}`);
      out = Buffer.from(payload);
    } else if (h.codec === 'lz4') {
      const hash = ws.hashState();
      out = this.#decodeLz4Blocks(payload, h, hash); // hashed in the workspace as decoded: no copy back in
      actual = ws.hashDigest(hash);
    } else {
      // The declared size bounds the output: more is corruption, not a bomb the limit must catch.
      try {
        out = zlibDecompressSync(h.codec, payload, Math.max(1, h.size), ws);
      } catch (err) {
        if (err instanceof OutputLimitError) throw new CorruptFrameError(`hotpath frame: the ${h.codec} payload decodes to more than the ${h.size} bytes declared`);
        throw err;
      }
      if (out.length !== h.size) throw new CorruptFrameError(`hotpath frame: the ${h.codec} payload decodes to ${out.length} bytes, the header declares ${h.size}`);
    }
    actual ??= ws.xxh32(out);
    if (actual !== h.checksum) throw new CorruptFrameError(`hotpath frame checksum mismatch: header 0x${h.checksum.toString(16)}, content 0x${actual.toString(16)}`);
    return out;
  }

  #decodeLz4Blocks(payload: Uint8Array, h: HotpathHeader, hash: Uint8Array): Buffer {
    // LZ4 expands at most ~255× (a match of n bytes costs at least n/255 bytes of length codes):
    // refuse a forged size before allocating it.
    const blocks = Math.ceil(h.size / h.blockSize);
    if (h.size > payload.length * 255 + blocks * 4096) {
      throw new CorruptFrameError(`hotpath frame declares ${h.size} bytes, more than ${payload.length} bytes of lz4 can hold`);
    }
    const ws = this.workspace;
    const out = Buffer.allocUnsafe(h.size);
    const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    let ip = 0;
    let op = 0;
    while (op < h.size) {
      const expect = Math.min(h.blockSize, h.size - op);
      if (payload.length - ip < 4) throw new CorruptFrameError(`truncated hotpath frame: the payload ends after ${op} of ${h.size} bytes`);
      const word = dv.getUint32(ip, true);
      ip += 4;
      const len = word & 0x7fffffff;
      if (len > payload.length - ip) throw new CorruptFrameError(`truncated hotpath frame: a block of ${len} bytes, ${payload.length - ip} left`);
      const block = payload.subarray(ip, ip + len);
      ip += len;
      if ((word & 0x80000000) !== 0) {
        if (len !== expect) throw new CorruptFrameError(`hotpath frame: a stored block of ${len} bytes where ${expect} were due`);
        ws.hashUpdate(hash, block);
        out.set(block, op);
      } else {
        // We store a block that does not shrink; a longer one is forged (and would grow the workspace).
        if (len >= expect) throw new CorruptFrameError(`hotpath frame: an lz4 block of ${len} bytes for ${expect} bytes of content`);
        const r = ws.decompressBlock(block, expect, undefined, hash);
        if (typeof r === 'number') {
          throw new CorruptFrameError(r === LZ4_OUTPUT ? `hotpath frame: an lz4 block decodes to more than the ${expect} bytes due` : `corrupt lz4 block in a hotpath frame after ${op} bytes`);
        }
        if (r.length !== expect) throw new CorruptFrameError(`hotpath frame: an lz4 block decodes to ${r.length} bytes where ${expect} were due`);
        out.set(r, op);
      }
      op += expect;
    }
    if (ip !== payload.length) throw new CorruptFrameError(`hotpath frame: ${payload.length - ip} bytes after the last block`);
    return out;
  }

  // ---------------------------------------------------------------- asynchronous

  /** Compresses; large inputs run off the calling thread (see the module comment). */
  compress(data: Input, options?: CompressOptions): Promise<Buffer> {
    return whileNotAborted(this.#compress(data, options), options?.signal, 'compress');
  }

  /** Decompresses; large LZ4 and hotpath frames run on a worker, zlib formats on libuv's threads. */
  decompress(data: Uint8Array, options?: DecompressOptions): Promise<Buffer> {
    return whileNotAborted(this.#decompress(data, options), options?.signal, 'decompress');
  }

  async #compress(data: Input, options?: CompressOptions): Promise<Buffer> {
    const bytes = toBytes(data, 'compress');
    const o = resolveCompressOptions(options);
    const signal = options?.signal;
    if (signal?.aborted) throw new CancelledError('compress', signal.reason);
    const codec = o.codec === 'auto' ? this.#pick(bytes, o.acceleration) : o.codec;
    const r: Resolved = { ...o, codec };
    if (codec === 'lz4' || codec === 'none') {
      if (bytes.length < this.#offloadBytes || codec === 'none') return this.#compressResolved(bytes, r);
      const pool = await this.#getPool();
      if (pool === undefined) return this.#compressResolved(bytes, r);
      if (bytes.length >= 2 * this.#blockSize) return this.#parallelLz4(pool, bytes, r, signal);
      return this.#offload(pool, TASK_COMPRESS, bytes, r, 0, signal);
    }
    if (r.native) return this.#gate.compress(codec, bytes, r.level);
    if (bytes.length < this.#offloadBytes) {
      const payload = await this.#gate.compress(codec, bytes, r.level);
      return Buffer.concat([this.#header(codec, bytes.length, this.workspace.xxh32(bytes)), payload]);
    }
    const pool = await this.#getPool();
    if (pool === undefined) return this.#compressResolved(bytes, r);
    return this.#offload(pool, TASK_COMPRESS, bytes, r, 0, signal);
  }

  async #decompress(data: Uint8Array, options?: DecompressOptions): Promise<Buffer> {
    if (!(data instanceof Uint8Array)) throw new TypeError(`decompress: data must be a Uint8Array or a Buffer, got ${data === null ? 'null' : typeof data}`);
    const max = checkMaxOutput(options, this.#maxOutput);
    const signal = options?.signal;
    if (signal?.aborted) throw new CancelledError('decompress', signal.reason);
    const hint = options?.codec;
    const kind = hint === undefined ? detect(data) : hint;
    if (kind === 'zstd' && !NATIVE_ZSTD && data.length >= this.#offloadBytes) {
      // fzstd is JavaScript on the calling thread: large inputs go to a worker instead.
      const pool = await this.#getPool();
      if (pool !== undefined) return this.#offload(pool, TASK_DECOMPRESS, data, { codec: 'zstd', level: 0, acceleration: 1, native: true }, max, signal);
    }
    if (kind === 'zstd' || kind === 'gzip' || kind === 'deflate' || kind === 'brotli') return this.#gate.decompress(kind, data, max, this.workspace);
    // The work is the output, which a small frame may declare large (a 425-byte brotli frame of
    // 250 MiB): a frame stays on this thread only when both are small (review30).
    if (kind === 'unknown' || Math.max(data.length, declaredSize(data, kind, max)) < this.#offloadBytes) return this.decompressChecked(data, max, hint);
    const r: Resolved = { codec: hint ?? 'auto', level: 0, acceleration: 1, native: false }; // 'auto': the worker detects
    const pool = await this.#getPool();
    if (pool === undefined) return this.decompressChecked(data, max, hint);
    return this.#offload(pool, TASK_DECOMPRESS, data, r, max, signal);
  }

  /** The worker pool, or undefined when this compressor has none (then async calls run here). */
  async #getPool(): Promise<WorkerPool | undefined> {
    if (this.#pool !== undefined) return this.#pool;
    const dep = this.#poolDep;
    if (dep === undefined) return undefined;
    if (typeof dep !== 'function') {
      this.#pool = dep;
    } else {
      this.#poolPromise ??= dep();
      this.#pool = await this.#poolPromise;
    }
    Compressor.registerTasks(this.#pool);
    return this.#pool;
  }

  /** Registers the compression tasks on `pool` (idempotent). */
  static registerTasks(pool: WorkerPool): void {
    pool.register(TASK_COMPRESS, TASK_MODULE, 'compress');
    pool.register(TASK_DECOMPRESS, TASK_MODULE, 'decompress');
    pool.register(TASK_LZ4_BLOCK, TASK_MODULE, 'lz4Block');
    pool.register(TASK_LZ4_STAGED, TASK_MODULE, 'lz4Staged');
  }

  #payload(bytes: Uint8Array, r: Resolved, maxOutputBytes: number): Uint8Array {
    const p = new Uint8Array(TASK_HEADER + bytes.length);
    const dv = new DataView(p.buffer);
    p[0] = r.codec === 'auto' ? 254 : r.codec === 'none' ? 0 : CODEC_IDS[r.codec];
    p[1] = r.native ? 1 : 0;
    dv.setInt32(4, r.level, true);
    dv.setUint32(8, r.acceleration, true);
    dv.setUint32(12, this.#blockSize, true);
    dv.setFloat64(16, maxOutputBytes, true);
    p.set(bytes, TASK_HEADER);
    return p;
  }

  async #offload(pool: WorkerPool, task: string, bytes: Uint8Array, r: Resolved, max: number, signal: AbortSignal | undefined): Promise<Buffer> {
    try {
      return (await pool.run(task, this.#payload(bytes, r, max), signal === undefined ? undefined : { signal })) as Buffer;
    } catch (err) {
      throw unwrapTaskError(err, max);
    }
  }

  /**
   * Slots in the engine's shared arena, three per worker, each holding one block: the blocks of a
   * parallel compression travel through them instead of through the channel's rings, so a block
   * costs one copy in and one copy out on this thread and a few bytes of message; the worker
   * compresses it in place (tasks.ts lz4Staged: its output region is in the arena too). Carved on
   * first use (about 3 × workers × blockSize bytes; three per worker keep a worker fed while the
   * calling thread waits for a core on a busy machine); if the arena has no room, blocks go through
   * the rings instead.
   */
  #stagingSlots(pool: WorkerPool): Staging | null {
    if (this.#staging !== undefined) return this.#staging;
    const slotBytes = (this.#blockSize + 4 + 63) & ~63; // a block or its encoding (≤ 4 + block)
    const count = Math.max(2, pool.threads * 3);
    try {
      // The slots, then 64 bytes for a hash state (this thread's alone: used synchronously).
      const region = pool.arena.region(`hotpath:cz:${randomUUID().slice(0, 13)}`, slotBytes * count + 64);
      const stateAt = region.offset + slotBytes * count;
      // This thread's instance of the kernels on the arena, to hash a block where it is staged
      // (the workspace's would copy each block in first: 64 MiB of copying on this thread for a
      // 64 MiB input, while the workers want both cores).
      const kernels = instantiateKernels(this.#module, pool.arena.memory);
      const hash = (state: Uint8Array, ptr: number, len: number): void => {
        const mem = new Uint8Array(pool.arena.memory.buffer);
        mem.set(state, stateAt);
        kernels.xxh32Update(stateAt, ptr, len);
        state.set(mem.subarray(stateAt, stateAt + HASH_STATE_BYTES));
      };
      this.#staging = { slots: count, free: Array.from({ length: count }, (_, i) => region.offset + i * slotBytes), waiting: [], hash };
    } catch (err) {
      if (!(err instanceof ArenaExhaustedError)) throw err;
      this.#staging = null;
    }
    return this.#staging;
  }

  /**
   * The parallel compressions' staging slots: how many, and how many are free now (all of them
   * when no parallel compression runs). Undefined before the first one, or when the arena had no
   * room for them (blocks then travel through the rings). For tests and diagnostics.
   */
  get staging(): { slots: number; free: number } | undefined {
    const s = this.#staging;
    return s === undefined || s === null ? undefined : { slots: s.slots, free: s.free.length };
  }

  /**
   * A staged block's answer: its compressed length. A cancel interrupts the call but still waits
   * for the worker's answer (or its exit, or a call never sent), so the caller's slot is never
   * reused while a worker writes to it, and no slot is lost to a cancel (review30).
   */
  async #untilAnswered(call: PoolCall, signal: AbortSignal | undefined): Promise<number> {
    if (signal === undefined) return (await call.result) as number;
    const onAbort = (): void => call.interrupt();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const len = (await call.result) as number;
      if (signal.aborted) throw new CancelledError('compress', signal.reason);
      return len;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Cuts `bytes` into blocks compressed in parallel on every worker (at most three per worker in
   * flight); this thread hashes each block as it hands it out, between the workers' answers. The
   * blocks are independent, so the frame is their concatenation — the same bytes compressSync
   * writes.
   */
  async #parallelLz4(pool: WorkerPool, bytes: Uint8Array, r: Resolved, signal: AbortSignal | undefined): Promise<Buffer> {
    const ws = this.workspace;
    const bs = this.#blockSize;
    const count = Math.ceil(bytes.length / bs);
    // The LZ4 frame's header is known now; the hotpath frame's carries the checksum: written last.
    const head = r.native ? lz4FrameHeader(ws, { ...LZ4_FRAME_DEFAULTS, blockSize: bs }, bytes.length) : undefined;
    const out = new BlockAssembly(bytes.length, bs, head?.length ?? HOTPATH_HEADER_BYTES, r.native ? LZ4_TRAILER_BYTES : 0);
    const staging = this.#stagingSlots(pool);
    // Concurrent compressions share the slots: a runner waits for one (FIFO) and keeps it for its blocks.
    const runners = Math.min(count, staging === null ? Math.max(2, pool.threads * 2) : staging.slots);
    const options = signal === undefined ? undefined : { signal };
    const hash = ws.hashState();
    let next = 0;
    let failed: unknown;
    const runOne = async (): Promise<void> => {
      let slot = -1;
      if (staging !== null) {
        slot = staging.free.pop() ?? (await new Promise<number>((resolve) => staging.waiting.push(resolve)));
      }
      try {
        while (next < count && failed === undefined) {
          if (signal?.aborted) {
            failed = new CancelledError('compress', signal.reason);
            break;
          }
          const i = next++;
          const block = bytes.subarray(i * bs, Math.min(bytes.length, (i + 1) * bs));
          // Blocks are taken in order and hashed before the first await: the checksum sees them in
          // order (a staged block is hashed in its slot, before its task may overwrite it).
          if (slot < 0) ws.hashUpdate(hash, block);
          try {
            if (slot < 0) {
              out.put(i, (await pool.run(TASK_LZ4_BLOCK, this.#payload(block, r, 0), options)) as Uint8Array, true);
            } else {
              const mem = new Uint8Array(pool.arena.memory.buffer);
              mem.set(block, slot);
              staging!.hash(hash, slot, block.length);
              const msg = new Uint8Array(16);
              const dv = new DataView(msg.buffer);
              dv.setUint32(0, slot, true);
              dv.setUint32(4, block.length, true);
              dv.setUint32(8, r.acceleration, true);
              dv.setUint32(12, bs, true); // the worker's output region is sized for the block size, once

              const len = await this.#untilAnswered(pool.call(TASK_LZ4_STAGED, msg), signal);
              // Copied out of the slot (to its place, or aside) before the slot takes the next block.
              if (failed === undefined) out.put(i, new Uint8Array(pool.arena.memory.buffer, slot, len), false);
            }
          } catch (err) {
            failed ??= unwrapTaskError(err, 0);
          }
        }
      } finally {
        // #untilAnswered settled only once no worker held the slot any more: it is free again.
        if (slot >= 0) {
          const waiter = staging!.waiting.shift();
          if (waiter !== undefined) waiter(slot);
          else staging!.free.push(slot);
        }
      }
    };
    const running: Promise<void>[] = [];
    for (let k = 0; k < runners; k++) running.push(runOne());
    await Promise.all(running);
    if (failed !== undefined) throw failed;
    const checksum = ws.hashDigest(hash);
    const frame = out.finish();
    if (head !== undefined) {
      frame.set(head, 0);
      frame.set(lz4FrameTrailer(checksum), frame.length - LZ4_TRAILER_BYTES);
    } else {
      frame.set(this.#header('lz4', bytes.length, checksum), 0);
    }
    return frame;
  }
}

/** The LZ4 frame's end: the end mark and the content checksum (lz4FrameTrailer). */
const LZ4_TRAILER_BYTES = 8;

/**
 * The frame of a parallel compression, assembled as its blocks come back (`put`, in any order):
 * a block whose predecessors are all placed is copied straight to its place in one output buffer,
 * one that comes back early is kept aside (a copy, unless the caller hands it over) until they
 * are. Before, every block was copied out of its staging slot and all of them concatenated at the
 * end: the output written twice, and the second time after the last worker finished — on the
 * critical path of every call (15 ms for a 64 MiB input here).
 *
 * The buffer is sized when the first block is placed: the space reserved for the header and
 * trailer, plus the rest of the input at that block's ratio with 1/16 and 64 KiB to spare, capped
 * by the worst case (a stored block is its bytes + 4). A later block that does not fit moves what
 * is placed to a buffer of the worst case, which is never outgrown. The frame returned is a view of
 * its start: its ArrayBuffer may be longer by up to an eighth (see finish).
 * @internal exported for its tests
 */
export class BlockAssembly {
  #out: Buffer | undefined;
  /** Where the next block goes in #out. */
  #pos: number;
  /** The next block to place, and the input bytes of those placed. */
  #next = 0;
  #inputPlaced = 0;
  readonly #early = new Map<number, Uint8Array>();
  readonly #inputBytes: number;
  readonly #blockSize: number;
  readonly #tail: number;
  readonly #spare: number;

  /**
   * `head` / `tail`: bytes reserved before and after the blocks (the caller writes them);
   * `spare`: bytes the first estimate adds (a parameter for the tests, which use small blocks).
   */
  constructor(inputBytes: number, blockSize: number, head: number, tail: number, spare = 65_536) {
    this.#spare = spare;
    this.#inputBytes = inputBytes;
    this.#blockSize = blockSize;
    this.#pos = head;
    this.#tail = tail;
  }

  /**
   * Block `i`'s encoding (u32 size, then its bytes: at most its input + 4). `owned`: the caller
   * hands the array over (kept as it is if early); else it is copied before put returns.
   */
  put(i: number, block: Uint8Array, owned: boolean): void {
    if (i !== this.#next) {
      if (i < this.#next || this.#early.has(i)) throw new Error(`block ${i} was already placed`);
      this.#early.set(i, owned ? block : block.slice());
      return;
    }
    this.#place(block);
    for (let b = this.#early.get(this.#next); b !== undefined; b = this.#early.get(this.#next)) {
      this.#early.delete(this.#next);
      this.#place(b);
    }
  }

  #place(block: Uint8Array): void {
    const input = Math.min(this.#blockSize, this.#inputBytes - this.#inputPlaced);
    if (this.#out === undefined || this.#pos + block.length + this.#tail > this.#out.length) this.#grow(block.length, input);
    this.#out!.set(block, this.#pos);
    this.#pos += block.length;
    this.#inputPlaced += input;
    this.#next++;
  }

  #grow(blockBytes: number, input: number): void {
    const rest = this.#inputBytes - this.#inputPlaced - input;
    const worst = this.#pos + blockBytes + rest + 4 * Math.ceil(rest / this.#blockSize) + this.#tail;
    const size = this.#out === undefined
      ? Math.min(worst, this.#pos + blockBytes + Math.ceil((rest * blockBytes / Math.max(1, input)) * 1.0625) + this.#spare + this.#tail)
      : worst;
    const grown = Buffer.allocUnsafe(size);
    if (this.#out !== undefined) grown.set(this.#out.subarray(0, this.#pos));
    this.#out = grown;
  }

  /**
   * The frame: the reserved head, every block in order, the reserved tail. When its buffer is
   * larger by more than an eighth — a first block that compressed worse than the rest, or a frame
   * so small that the estimate's 64 KiB spare dwarfs it — the frame is copied to a buffer of its
   * size: the spare may be memory the allocator had already touched (a freed buffer's), which the
   * frame would otherwise keep resident, and it counts as the frame's in V8's external memory
   * (review77: 1500 frames of 562 bytes held 94 MiB).
   * @throws if a block is missing.
   */
  finish(): Buffer {
    if (this.#inputPlaced !== this.#inputBytes || this.#early.size > 0) throw new Error(`blocks missing: ${this.#next} placed`);
    if (this.#out === undefined) this.#grow(0, 0); // no input: head and tail alone
    const used = this.#pos + this.#tail;
    const out = this.#out!;
    if (out.length - used <= used >>> 3) return out.subarray(0, used);
    const exact = Buffer.allocUnsafeSlow(used); // its own memory, not a slice of Node's 8 KiB pool (review78)
    exact.set(out.subarray(0, this.#pos)); // (the tail is the caller's to write)
    return exact;
  }
}
