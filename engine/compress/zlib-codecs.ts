/**
 * gzip, deflate (zlib format), brotli and zstd through node:zlib, with fzstd as the zstd decoder
 * where node:zlib has no zstd (before Node 22.15).
 *
 * Async calls run on libuv's thread pool (node:zlib's own offload) behind a semaphore: each
 * in-flight zlib stream holds its window and state (hundreds of KiB for deflate, MiBs for brotli
 * and zstd), so thousands of concurrent calls would hold thousands of them (nodejs/node#15301).
 * Decompression always passes `maxOutputLength`, so a bomb stops at the limit instead of
 * allocating what it claims.
 */
import * as zlib from 'node:zlib';
import { Decompress as FzstdDecompress, decompress as fzstdOneShot } from 'fzstd';
import { CodecUnavailableError, CorruptFrameError, HotpathError, OutputLimitError } from '../errors.js';
import type { Lz4Workspace } from './workspace.js';

export type ZlibCodec = 'gzip' | 'deflate' | 'brotli' | 'zstd';

/** Default levels: zlib's 6; brotli 4 (node's default 11 runs at ~1 MB/s); zstd's 3. */
export const DEFAULT_LEVELS: Readonly<Record<ZlibCodec, number>> = { gzip: 6, deflate: 6, brotli: 4, zstd: 3 };
/** Valid levels per codec. */
export const LEVEL_RANGES: Readonly<Record<ZlibCodec, readonly [number, number]>> = { gzip: [0, 9], deflate: [0, 9], brotli: [0, 11], zstd: [1, 19] };

interface ZstdZlib {
  zstdCompressSync(buf: Uint8Array, options?: object): Buffer;
  zstdDecompressSync(buf: Uint8Array, options?: object): Buffer;
  zstdCompress(buf: Uint8Array, options: object, cb: (err: Error | null, out: Buffer) => void): void;
  zstdDecompress(buf: Uint8Array, options: object, cb: (err: Error | null, out: Buffer) => void): void;
  constants: Record<string, number>;
}
const z = zlib as unknown as typeof zlib & Partial<ZstdZlib>;

/** True when node:zlib has zstd (Node ≥ 22.15; also 23.8+). */
export const NATIVE_ZSTD = typeof z.zstdCompressSync === 'function' && typeof z.zstdDecompress === 'function';

function zstdUnavailable(): CodecUnavailableError {
  return new CodecUnavailableError(`zstd compression needs node:zlib's zstd, which arrived in Node 22.15 (this is Node ${process.versions.node}); decompression works here (fzstd)`);
}

function compressOptions(codec: ZlibCodec, level: number): object {
  if (codec === 'brotli') return { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: level } };
  // With a content checksum, as the zstd tool writes by default: libzstd's own default has none,
  // and a frame without one cannot tell corruption from content (ZSTD_c_checksumFlag = 201).
  if (codec === 'zstd') return { params: { [z.constants.ZSTD_c_compressionLevel ?? 100]: level, [z.constants.ZSTD_c_checksumFlag ?? 201]: 1 } };
  return { level };
}

/** Compresses on the calling thread. */
export function zlibCompressSync(codec: ZlibCodec, data: Uint8Array, level: number): Buffer {
  const o = compressOptions(codec, level);
  switch (codec) {
    case 'gzip': return zlib.gzipSync(data, o);
    case 'deflate': return zlib.deflateSync(data, o);
    case 'brotli': return zlib.brotliCompressSync(data, o);
    case 'zstd':
      if (!NATIVE_ZSTD) throw zstdUnavailable();
      return z.zstdCompressSync!(data, o);
  }
}

function asDecodeError(codec: ZlibCodec, err: unknown, maxOutputBytes: number): Error {
  const code = (err as { code?: string }).code;
  if (code === 'ERR_BUFFER_TOO_LARGE') return new OutputLimitError(maxOutputBytes, `${codec} data decodes to more`);
  return new CorruptFrameError(`corrupt ${codec} data: ${(err as Error).message}`, err);
}

/** The zstd tool's default window limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT = 27): larger needs --long. */
const ZSTD_MAX_WINDOW = 2 ** 27;
const ZSTD_MAX_BLOCK = 128 * 1024;

/**
 * Walks every frame and block header of zstd data (RFC 8878) without decoding anything, and
 * refuses what fzstd must not see: a structure that leaves the input, a dictionary, a window over
 * 128 MiB, declared content sizes over `maxOutputBytes`. fzstd trusts headers — a 44-byte
 * hostile frame kept it busy for seconds — so nothing reaches it unchecked.
 */
export interface ZstdFrame {
  /** Byte range of the frame in the input. */
  start: number;
  end: number;
  /** The stored content checksum (low 32 bits of XXH64), when the frame has one. */
  checksum?: number;
  /** The declared content size, or -1. */
  size: number;
  /** Window bytes × blocks: what fzstd's streaming decoder copies (it shifts its window per block). */
  work: number;
}

export function checkZstdFrames(data: Uint8Array, maxOutputBytes: number): ZstdFrame[] {
  const frames: ZstdFrame[] = [];
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const fail = (why: string): never => {
    throw new CorruptFrameError(`corrupt zstd data: ${why}`);
  };
  let p = 0;
  let declared = 0;
  while (p < data.length) {
    if (data.length - p < 4) fail('truncated frame magic');
    const magic = dv.getUint32(p, true);
    if ((magic & 0xfffffff0) >>> 0 === 0x184d2a50) {
      if (data.length - p < 8) fail('truncated skippable frame');
      p += 8 + dv.getUint32(p + 4, true);
      if (p > data.length) fail('truncated skippable frame');
      continue;
    }
    if (magic !== 0xfd2fb528) fail(`not a zstd frame at byte ${p} (magic 0x${magic.toString(16)})`);
    const start = p;
    p += 4;
    if (p >= data.length) fail('truncated frame header');
    const fhd = data[p++]!;
    const fcsFlag = fhd >> 6;
    const single = (fhd & 0x20) !== 0;
    if (fhd & 0x08) fail('reserved bit set in the frame header');
    const dictBytes = [0, 1, 2, 4][fhd & 3]!;
    const fcsBytes = [single ? 1 : 0, 2, 4, 8][fcsFlag]!;
    const headerRest = (single ? 0 : 1) + dictBytes + fcsBytes;
    if (data.length - p < headerRest) fail('truncated frame header');
    let window = 0;
    if (!single) {
      const wd = data[p++]!;
      const base = 2 ** (10 + (wd >> 3));
      window = base + (base / 8) * (wd & 7);
    }
    let dict = 0;
    for (let i = 0; i < dictBytes; i++) dict += data[p++]! * 2 ** (8 * i);
    if (dict !== 0) fail(`the frame needs dictionary ${dict} (not supported)`);
    let fcs = -1;
    if (fcsBytes > 0) {
      fcs = 0;
      for (let i = 0; i < fcsBytes; i++) fcs += data[p++]! * 2 ** (8 * i);
      if (fcsBytes === 2) fcs += 256;
      if (single) window = fcs;
      declared += fcs;
      if (declared > maxOutputBytes) throw new OutputLimitError(maxOutputBytes, `zstd frames declare ${declared} bytes`);
    }
    if (window > ZSTD_MAX_WINDOW) fail(`window of ${window} bytes exceeds the 128 MiB limit`);
    let blocks = 0;
    for (;;) {
      blocks++;
      if (data.length - p < 3) fail('truncated block header');
      const bh = data[p]! | (data[p + 1]! << 8) | (data[p + 2]! << 16);
      p += 3;
      const type = (bh >> 1) & 3;
      const size = bh >>> 3;
      if (type === 3) fail('reserved block type');
      if (size > ZSTD_MAX_BLOCK) fail(`block of ${size} bytes exceeds 128 KiB`);
      p += type === 1 ? 1 : size;
      if (p > data.length) fail('truncated block');
      if (bh & 1) break;
    }
    if (fhd & 0x04) {
      p += 4;
      if (p > data.length) fail('truncated content checksum');
      frames.push({ start, end: p, checksum: dv.getUint32(p - 4, true), size: fcs, work: window * blocks });
    } else {
      frames.push({ start, end: p, size: fcs, work: window * blocks });
    }
  }
  return frames;
}

/**
 * A zstd frame whose content is not the size its header declares: corrupt (the zstd tool refuses
 * it too). Checked for every frame that declares one, so a frame without a content checksum
 * cannot pass a damaged size off as content (review30).
 */
function sizeMismatch(declared: number, decoded: number): CorruptFrameError {
  return new CorruptFrameError(`corrupt zstd data: the frame declares ${declared} bytes of content and decodes to ${decoded}`);
}

/**
 * A copy of one zstd frame (checked by checkZstdFrames: no dictionary) without its content size
 * field. A single-segment frame, which has no window descriptor (its window is its size), gets
 * the smallest window of the form 2^n (n ≥ 10) that holds its content.
 */
function withoutContentSize(frame: Uint8Array): Uint8Array {
  const fhd = frame[4]!;
  const single = (fhd & 0x20) !== 0;
  const fcsBytes = [single ? 1 : 0, 2, 4, 8][fhd >> 6]!;
  let p = 5;
  let wd: number;
  if (single) {
    let fcs = 0;
    for (let i = 0; i < fcsBytes; i++) fcs += frame[p + i]! * 2 ** (8 * i);
    if (fcsBytes === 2) fcs += 256;
    let exp = 0;
    while (2 ** (10 + exp) < fcs) exp++;
    wd = exp << 3;
  } else {
    wd = frame[p++]!;
  }
  const rest = p + fcsBytes;
  const out = new Uint8Array(6 + frame.length - rest);
  out.set(frame.subarray(0, 4));
  out[4] = fhd & ~0xe0; // no content size, not single-segment
  out[5] = wd;
  out.set(frame.subarray(rest), 6);
  return out;
}

/** Most bytes fzstd's streaming decoder may shift for one input (~0.2 s of memmove here). */
const FZSTD_WORK_BUDGET = 2 ** 30;

/**
 * fzstd, frame by frame after checkZstdFrames, verifying each frame's content checksum (fzstd
 * does not). A frame that declares its size and carries a checksum (what the zstd tool writes by
 * default) is decoded in one shot into a buffer of that size. Any other frame streams, so the
 * output limit holds whatever the header claims — but fzstd's streaming decoder shifts its whole
 * window once per block, so a hostile frame of tiny blocks under a 128 MiB window costs seconds
 * per kilobyte: frames over FZSTD_WORK_BUDGET are refused with ERR_HOTPATH_CODEC_UNAVAILABLE
 * (node:zlib's zstd, Node ≥ 22.15, decodes them).
 */
function fzstdDecode(data: Uint8Array, maxOutputBytes: number, ws: Lz4Workspace): Buffer {
  const parts: Uint8Array[] = [];
  let total = 0;
  for (const frame of checkZstdFrames(data, maxOutputBytes)) {
    const bytes = data.subarray(frame.start, frame.end);
    try {
      if (frame.size >= 0 && frame.checksum !== undefined) {
        // No output buffer of ours: fzstd then allocates the declared size itself and decodes into
        // it — the same bound. Given one, its header reader compares the buffer with 1 (`w == 1`),
        // which turns the whole buffer into a string: ten times slower (3.8 MB: 80 ms against 8).
        const out = fzstdOneShot(bytes);
        if (out.length !== frame.size) throw sizeMismatch(frame.size, out.length);
        const hash = ws.hash64State();
        ws.hash64Update(hash, out);
        if (Number(ws.hash64Digest(hash) & 0xffffffffn) !== frame.checksum) throw new CorruptFrameError('zstd content checksum mismatch');
        total += out.length; // within the limit: checkZstdFrames summed the declared sizes
        parts.push(out);
        continue;
      }
      if (frame.work > FZSTD_WORK_BUDGET) {
        throw new CodecUnavailableError(`this zstd frame (${frame.size < 0 ? 'no declared size' : 'no content checksum'}, ${frame.work} bytes of window shifting) is beyond the fzstd fallback; node:zlib's zstd (Node 22.15+) decodes it (this is Node ${process.versions.node})`);
      }
      const hash = frame.checksum === undefined ? undefined : ws.hash64State();
      let frameBytes = 0;
      const d = new FzstdDecompress((chunk) => {
        total += chunk.length;
        frameBytes += chunk.length;
        if (total > maxOutputBytes) throw new OutputLimitError(maxOutputBytes, 'zstd data decodes to more');
        if (hash !== undefined) ws.hash64Update(hash, chunk);
        parts.push(chunk);
      });
      // fzstd sizes its output by the declared size and fills it whatever the blocks hold: it
      // decodes a copy without the size, which is then compared with what came out.
      d.push(frame.size >= 0 ? withoutContentSize(bytes) : bytes, true);
      if (frame.size >= 0 && frameBytes !== frame.size) throw sizeMismatch(frame.size, frameBytes);
      if (hash !== undefined && Number(ws.hash64Digest(hash) & 0xffffffffn) !== frame.checksum) {
        throw new CorruptFrameError('zstd content checksum mismatch');
      }
    } catch (err) {
      if (err instanceof OutputLimitError || err instanceof CorruptFrameError || err instanceof CodecUnavailableError) throw err;
      throw new CorruptFrameError(`corrupt zstd data: ${(err as Error).message}`, err);
    }
  }
  return Buffer.concat(parts, total);
}

/** node:zlib's answer with `info: true`: the output and the engine, which counts the input it read. */
interface Decoded {
  buffer: Buffer;
  engine: { bytesWritten: number };
}

/**
 * The output of a gzip, deflate (zlib) or brotli stream that used all of its input. node:zlib
 * stops at the stream's end and drops what follows, so bytes appended to one passed as good
 * (review30). gzip reads on into further members, and refuses bytes that are not one — unless
 * they begin with a zero byte: then it stops and drops them too (review54: `\0\0` and any text
 * after a gzip member decoded). As the gzip tool, a gzip stream may end in zero bytes only
 * (block padding, as tape or dd leave: `gzip -d` accepts it silently, review56); anything else
 * after it is corrupt, as there.
 */
function whole(codec: ZlibCodec, r: Decoded, input: Uint8Array): Buffer {
  const read = r.engine.bytesWritten;
  if (read !== input.length && !(codec === 'gzip' && zeros(input, read))) {
    throw new CorruptFrameError(`corrupt ${codec} data: ${input.length - read} bytes after the end of the stream`);
  }
  return r.buffer;
}

/** Whether `bytes` from `from` to the end are all zero. */
function zeros(bytes: Uint8Array, from: number): boolean {
  for (let i = from; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Decompresses on the calling thread, stopping at `maxOutputBytes`. */
/** `ws` hashes zstd content where fzstd decodes it (Node < 22.15). */
export function zlibDecompressSync(codec: ZlibCodec, data: Uint8Array, maxOutputBytes: number, ws: Lz4Workspace): Buffer {
  const o = { maxOutputLength: maxOutputBytes };
  try {
    switch (codec) {
      case 'gzip': return whole(codec, zlib.gunzipSync(data, { ...o, info: true }) as unknown as Decoded, data);
      case 'deflate': return whole(codec, zlib.inflateSync(data, { ...o, info: true }) as unknown as Decoded, data);
      case 'brotli': return whole(codec, zlib.brotliDecompressSync(data, { ...o, info: true } as zlib.BrotliOptions) as unknown as Decoded, data);
      case 'zstd': {
        if (!NATIVE_ZSTD) return fzstdDecode(data, maxOutputBytes, ws);
        // node:zlib decodes the first frame and ignores what follows: decode frame by frame.
        const parts: Buffer[] = [];
        let total = 0;
        for (const f of checkZstdFrames(data, maxOutputBytes)) {
          const out = z.zstdDecompressSync!(data.subarray(f.start, f.end), { maxOutputLength: Math.max(1, maxOutputBytes - total) });
          if (f.size >= 0 && out.length !== f.size) throw sizeMismatch(f.size, out.length);
          total += out.length;
          if (total > maxOutputBytes) throw new OutputLimitError(maxOutputBytes, 'zstd data decodes to more');
          parts.push(out);
        }
        return parts.length === 1 ? parts[0]! : Buffer.concat(parts, total);
      }
    }
  } catch (err) {
    if (err instanceof HotpathError) throw err;
    throw asDecodeError(codec, err, maxOutputBytes);
  }
}

type Callback = (err: Error | null, out: Buffer) => void;

/**
 * At most `limit` async zlib calls at once; the rest wait in FIFO order. The waiting calls hold
 * only their input (no zlib state), which is what keeps memory bounded.
 */
export class ZlibGate {
  readonly limit: number;
  #active = 0;
  // A FIFO with a moving head (Array#shift is O(n): 100k waiters made it quadratic).
  #waiting: Array<(() => void) | undefined> = [];
  #head = 0;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Calls in flight in zlib. */
  get active(): number {
    return this.#active;
  }

  /** Calls waiting for a turn. */
  get waiting(): number {
    return this.#waiting.length - this.#head;
  }

  async #run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#active >= this.limit) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#active++;
    try {
      return await fn();
    } finally {
      if (this.#head < this.#waiting.length) {
        const next = this.#waiting[this.#head]!;
        this.#waiting[this.#head++] = undefined;
        if (this.#head === this.#waiting.length || (this.#head > 1024 && this.#head * 2 > this.#waiting.length)) {
          this.#waiting = this.#waiting.slice(this.#head); // drop the consumed front
          this.#head = 0;
        }
        next(); // the slot passes to the next caller
      } else {
        this.#active--;
      }
    }
  }

  compress(codec: ZlibCodec, data: Uint8Array, level: number): Promise<Buffer> {
    if (codec === 'zstd' && !NATIVE_ZSTD) return Promise.reject(zstdUnavailable());
    const o = compressOptions(codec, level);
    return this.#run(() => new Promise<Buffer>((resolve, reject) => {
      const cb: Callback = (err, out) => (err ? reject(err) : resolve(out));
      switch (codec) {
        case 'gzip': zlib.gzip(data, o, cb); break;
        case 'deflate': zlib.deflate(data, o, cb); break;
        case 'brotli': zlib.brotliCompress(data, o, cb); break;
        case 'zstd': z.zstdCompress!(data, o, cb); break;
      }
    }));
  }

  decompress(codec: ZlibCodec, data: Uint8Array, maxOutputBytes: number, ws: Lz4Workspace): Promise<Buffer> {
    if (codec === 'zstd' && !NATIVE_ZSTD) {
      try {
        return Promise.resolve(fzstdDecode(data, maxOutputBytes, ws));
      } catch (err) {
        return Promise.reject(err);
      }
    }
    if (codec === 'zstd') {
      let frames: ZstdFrame[];
      try {
        frames = checkZstdFrames(data, maxOutputBytes);
      } catch (err) {
        return Promise.reject(err);
      }
      // node:zlib decodes the first frame and ignores what follows: decode frame by frame.
      return this.#run(async () => {
        const parts: Buffer[] = [];
        let total = 0;
        for (const f of frames) {
          const limit = Math.max(1, maxOutputBytes - total);
          const out = await new Promise<Buffer>((resolve, reject) => {
            z.zstdDecompress!(data.subarray(f.start, f.end), { maxOutputLength: limit }, (err, b) => (err ? reject(asDecodeError(codec, err, maxOutputBytes)) : resolve(b)));
          });
          if (f.size >= 0 && out.length !== f.size) throw sizeMismatch(f.size, out.length);
          total += out.length;
          if (total > maxOutputBytes) throw new OutputLimitError(maxOutputBytes, 'zstd data decodes to more');
          parts.push(out);
        }
        return parts.length === 1 ? parts[0]! : Buffer.concat(parts, total);
      });
    }
    const o = { maxOutputLength: maxOutputBytes };
    return this.#run(() => new Promise<Buffer>((resolve, reject) => {
      const done = (err: Error | null, r: unknown): void => {
        if (err !== null) return void reject(asDecodeError(codec, err, maxOutputBytes));
        try {
          resolve(whole(codec, r as Decoded, data));
        } catch (e) {
          reject(e);
        }
      };
      if (codec === 'gzip') zlib.gunzip(data, { ...o, info: true }, done as never);
      else if (codec === 'deflate') zlib.inflate(data, { ...o, info: true }, done as never);
      else zlib.brotliDecompress(data, { ...o, info: true } as zlib.BrotliOptions, done as never);
    }));
  }
}
