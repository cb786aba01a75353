/**
 * The LZ4 frame format (lz4's doc/lz4_Frame_format.md), written and read so that the `lz4` tool
 * reads our frames and we read its frames.
 *
 * ```
 * magic      u32 LE 0x184D2204
 * FLG        u8     version 01 (bits 7-6), B.Indep (5), B.Checksum (4), C.Size (3),
 *                   C.Checksum (2), reserved 0 (1), DictID (0)
 * BD         u8     block maximum size (bits 6-4: 4 = 64 KiB, 5 = 256 KiB, 6 = 1 MiB, 7 = 4 MiB)
 * [size]     u64 LE content size, when C.Size
 * [dictID]   u32 LE when DictID (we reject such frames: no dictionary support)
 * HC         u8     (xxh32(FLG..dictID) >> 8) & 0xFF
 * blocks     u32 LE size (bit 31: stored uncompressed), data, [u32 xxh32(data) when B.Checksum]
 * end mark   u32 0
 * [checksum] u32 LE xxh32(content), when C.Checksum
 * ```
 * Skippable frames (magic 0x184D2A50..5F) are skipped; concatenated frames decode to the
 * concatenation of their contents, as the lz4 tool does.
 *
 * We write what `lz4 -1` writes by default — independent blocks, no block checksums, the content
 * checksum — but with 1 MiB blocks (lz4's -B6; the tool's default is 4 MiB: see COMPRESS_DEFAULTS)
 * and the content size in one-shot frames (see LZ4_FRAME_DEFAULTS).
 */
import { CorruptFrameError, OutputLimitError, UnknownFormatError } from '../errors.js';
import { LZ4_OUTPUT, type Lz4Workspace } from './workspace.js';

export const LZ4_MAGIC = 0x184d2204;
const SKIPPABLE_MIN = 0x184d2a50;
const SKIPPABLE_MAX = 0x184d2a5f;
const UNCOMPRESSED = 0x80000000;

/** Block sizes the frame format can declare, by their BD code. */
export const LZ4_BLOCK_SIZES: Readonly<Record<number, number>> = { 4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20 };

/** How to write a frame. */
export interface Lz4FrameOptions {
  /** 1 (the lz4 tool's default) .. 65537; higher is faster and compresses less. */
  acceleration: number;
  /** 64 KiB, 256 KiB, 1 MiB (our default) or 4 MiB (the lz4 tool's default). */
  blockSize: number;
  /** Writes the content size into the header (lz4 --content-size). */
  contentSize: boolean;
}

/**
 * One-shot frames carry the content size (8 bytes; the lz4 tool reads it): the decoder then
 * refuses a bomb before decoding and fills one output buffer instead of joining blocks. Streams
 * cannot know the size and leave it out, as `lz4` does.
 */
export const LZ4_FRAME_DEFAULTS: Lz4FrameOptions = { acceleration: 1, blockSize: 1 << 20, contentSize: true };

function blockCode(blockSize: number): number {
  for (let code = 4; code <= 7; code++) if (LZ4_BLOCK_SIZES[code] === blockSize) return code;
  throw new RangeError(`options.blockSize must be 65536, 262144, 1048576 or 4194304, got ${blockSize}`);
}

/** The frame header for content of `size` bytes. */
export function lz4FrameHeader(ws: Lz4Workspace, options: Lz4FrameOptions, size: number): Uint8Array {
  const h = new Uint8Array(options.contentSize ? 15 : 7);
  const dv = new DataView(h.buffer);
  dv.setUint32(0, LZ4_MAGIC, true);
  h[4] = 0x40 | 0x20 | 0x04 | (options.contentSize ? 0x08 : 0); // version 01, independent, content checksum
  h[5] = blockCode(options.blockSize) << 4;
  if (options.contentSize) dv.setBigUint64(6, BigInt(size), true);
  h[h.length - 1] = (ws.xxh32(h.subarray(4, h.length - 1)) >>> 8) & 0xff;
  return h;
}

/**
 * Compresses `src` as one block and returns it framed as the format wants it: u32 size (bit 31
 * when stored because it did not compress), then the data. A fresh buffer.
 */
export function lz4EncodeBlock(ws: Lz4Workspace, src: Uint8Array, acceleration: number, hashState?: Uint8Array): Uint8Array {
  const block = ws.compressBlock(src, acceleration, hashState);
  const stored = block.length >= src.length;
  const body = stored ? src : block;
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, stored ? (UNCOMPRESSED | src.length) >>> 0 : body.length, true);
  out.set(body, 4);
  return out;
}

/** The end mark and the content checksum. */
export function lz4FrameTrailer(checksum: number): Uint8Array {
  const t = new Uint8Array(8);
  new DataView(t.buffer).setUint32(4, checksum >>> 0, true);
  return t;
}

/** Compresses `data` into one LZ4 frame (on the calling thread). */
export function lz4FrameEncode(ws: Lz4Workspace, data: Uint8Array, options: Lz4FrameOptions = LZ4_FRAME_DEFAULTS): Buffer {
  const hash = ws.hashState();
  const parts: Uint8Array[] = [lz4FrameHeader(ws, options, data.length)];
  for (let off = 0; off < data.length; off += options.blockSize) {
    parts.push(lz4EncodeBlock(ws, data.subarray(off, Math.min(data.length, off + options.blockSize)), options.acceleration, hash));
  }
  parts.push(lz4FrameTrailer(ws.hashDigest(hash)));
  return Buffer.concat(parts);
}

/** Limits of a decoder. */
export interface DecodeLimits {
  maxOutputBytes: number;
}

const S_MAGIC = 0;
const S_FLG = 7;
const S_HEADER = 1;
const S_BLOCK_SIZE = 2;
const S_BLOCK = 3;
const S_CHECKSUM = 4;
const S_SKIP_SIZE = 5;
const S_SKIP = 6;

/**
 * A streaming LZ4 frame decoder: push() input in chunks of any size, get the decoded output;
 * end() when the input is complete. Holds at most one block of input (≤ 4 MiB + 8) and 64 KiB of
 * previous output (linked blocks). Every failure is a CorruptFrameError, an OutputLimitError or
 * (for bytes that are not an LZ4 frame at all) an UnknownFormatError.
 */
export class Lz4FrameDecoder {
  readonly #ws: Lz4Workspace;
  readonly #max: number;
  #chunks: Uint8Array[] = [];
  #avail = 0;
  #state = S_MAGIC;
  #need = 4;
  #frames = 0;
  #output = 0; // bytes decoded over all frames
  #frameOutput = 0;
  // The current frame's descriptor.
  #flg = 0;
  #blockMax = 0;
  #contentSize = -1;
  #blockSize = 0;
  #blockStored = false;
  #hash: Uint8Array | undefined;
  #window: Uint8Array | undefined;
  readonly #whole: boolean;
  /** With `whole`: the frame's output buffer, when its header declares the content size. */
  #target: Buffer | undefined;

  /**
   * `whole`: the caller wants whole frames (one-shot decoding). A frame that declares its content
   * size is then decoded into one buffer, returned when the frame ends, instead of block by block.
   */
  constructor(ws: Lz4Workspace, limits: DecodeLimits, whole = false) {
    this.#ws = ws;
    this.#max = limits.maxOutputBytes;
    this.#whole = whole;
  }

  /** Bytes decoded so far. */
  get outputBytes(): number {
    return this.#output;
  }

  /** Decodes what `chunk` completes; returns the output (fresh buffers, possibly none). */
  push(chunk: Uint8Array): Buffer[] {
    const out: Buffer[] = [];
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#avail += chunk.length;
    }
    for (;;) {
      if (this.#state === S_SKIP) {
        // Skipped bytes are dropped as they arrive, never buffered (a skippable frame may claim 4 GiB).
        const n = Math.min(this.#avail, this.#need);
        this.#drop(n);
        this.#need -= n;
        if (this.#need > 0) break;
        this.#skipped();
        continue;
      }
      if (this.#avail < this.#need) break;
      this.#step(this.#take(this.#need), out);
    }
    return out;
  }

  /** The input is complete: throws CorruptFrameError if it stopped inside a frame. */
  end(): void {
    if (this.#state === S_MAGIC && this.#avail === 0 && this.#frames > 0) return;
    if (this.#frames === 0 && this.#state === S_MAGIC) {
      throw new UnknownFormatError(`not an LZ4 frame: ${this.#avail} bytes, shorter than the 4-byte magic`);
    }
    throw new CorruptFrameError(`truncated LZ4 frame: the input ended ${this.#where()}`);
  }

  #where(): string {
    switch (this.#state) {
      case S_FLG: case S_HEADER: return 'inside the frame header';
      case S_BLOCK_SIZE: return `before the end mark, after ${this.#frameOutput} bytes of content`;
      case S_BLOCK: return `inside a block, after ${this.#frameOutput} bytes of content`;
      case S_CHECKSUM: return 'before the content checksum';
      case S_SKIP_SIZE: case S_SKIP: return 'inside a skippable frame';
      default: return `after ${this.#avail} bytes of a next frame's magic`;
    }
  }

  /** Discards the next `n` bytes of input. */
  #drop(n: number): void {
    this.#avail -= n;
    while (n > 0) {
      const c = this.#chunks[0]!;
      if (c.length <= n) {
        this.#chunks.shift();
        n -= c.length;
      } else {
        this.#chunks[0] = c.subarray(n);
        n = 0;
      }
    }
  }

  /** The next `n` bytes of input (a view when they lie in one chunk). */
  #take(n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0);
    this.#avail -= n;
    const first = this.#chunks[0]!;
    if (first.length >= n) {
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const c = this.#chunks[0]!;
      const k = Math.min(c.length, n - filled);
      out.set(c.subarray(0, k), filled);
      filled += k;
      if (k === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    return out;
  }

  #step(b: Uint8Array, out: Buffer[]): void {
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    switch (this.#state) {
      case S_MAGIC: {
        const magic = dv.getUint32(0, true);
        if (magic === LZ4_MAGIC) {
          this.#state = S_FLG;
          this.#need = 1;
        } else if (magic >= SKIPPABLE_MIN && magic <= SKIPPABLE_MAX) {
          this.#state = S_SKIP_SIZE;
          this.#need = 4;
        } else if (this.#frames === 0) {
          throw new UnknownFormatError(`not an LZ4 frame: magic 0x${magic.toString(16).padStart(8, '0')}, expected 0x184d2204`);
        } else {
          throw new CorruptFrameError(`bytes after the LZ4 frame are not a frame (magic 0x${magic.toString(16).padStart(8, '0')})`);
        }
        return;
      }
      case S_FLG: {
        this.#flg = b[0]!;
        this.#state = S_HEADER;
        this.#need = 2 + (this.#flg & 0x08 ? 8 : 0) + (this.#flg & 0x01 ? 4 : 0); // BD, [size], [dictID], HC
        return;
      }
      case S_HEADER: {
        this.#header(b);
        return;
      }
      case S_BLOCK_SIZE: {
        const word = dv.getUint32(0, true);
        if (word === 0) {
          if (this.#flg & 0x04) {
            this.#state = S_CHECKSUM;
            this.#need = 4;
          } else {
            this.#endFrame(out);
          }
          return;
        }
        this.#blockStored = (word & UNCOMPRESSED) !== 0;
        this.#blockSize = word & 0x7fffffff;
        if (this.#blockSize > this.#blockMax) {
          throw new CorruptFrameError(`LZ4 block of ${this.#blockSize} bytes exceeds the frame's block maximum of ${this.#blockMax}`);
        }
        this.#state = S_BLOCK;
        this.#need = this.#blockSize + (this.#flg & 0x10 ? 4 : 0);
        return;
      }
      case S_BLOCK: {
        this.#block(b, out);
        this.#state = S_BLOCK_SIZE;
        this.#need = 4;
        return;
      }
      case S_CHECKSUM: {
        const expected = dv.getUint32(0, true);
        const actual = this.#ws.hashDigest(this.#hash!);
        if (expected !== actual) {
          throw new CorruptFrameError(`LZ4 content checksum mismatch: frame says 0x${expected.toString(16)}, content hashes to 0x${actual.toString(16)}`);
        }
        this.#endFrame(out);
        return;
      }
      case S_SKIP_SIZE: {
        this.#state = S_SKIP; // push() drops the bytes
        this.#need = dv.getUint32(0, true);
        return;
      }
    }
  }

  #skipped(): void {
    this.#frames++;
    this.#state = S_MAGIC;
    this.#need = 4;
  }

  /** `b`: the descriptor after FLG (BD, [content size], [dictID], HC). */
  #header(b: Uint8Array): void {
    const flg = this.#flg;
    const desc = new Uint8Array(b.length); // FLG..dictID, the bytes HC covers
    desc[0] = flg;
    desc.set(b.subarray(0, b.length - 1), 1);
    if (flg >> 6 !== 1) throw new CorruptFrameError(`unsupported LZ4 frame version ${flg >> 6} (FLG 0x${flg.toString(16)})`);
    if (flg & 0x02) throw new CorruptFrameError('LZ4 frame descriptor has a reserved FLG bit set');
    if (flg & 0x01) throw new CorruptFrameError('LZ4 frames that need a dictionary (DictID) are not supported');
    const bd = b[0]!;
    const code = (bd >> 4) & 7;
    const blockMax = LZ4_BLOCK_SIZES[code];
    if (blockMax === undefined || (bd & 0x8f) !== 0) throw new CorruptFrameError(`invalid LZ4 block descriptor 0x${bd.toString(16)}`);
    const hc = b[b.length - 1]!;
    const actual = (this.#ws.xxh32(desc) >>> 8) & 0xff;
    if (hc !== actual) throw new CorruptFrameError(`LZ4 frame header checksum mismatch (0x${hc.toString(16)} != 0x${actual.toString(16)})`);
    this.#blockMax = blockMax;
    this.#contentSize = -1;
    if (flg & 0x08) {
      const size = new DataView(b.buffer, b.byteOffset + 1, 8).getBigUint64(0, true);
      if (size > BigInt(this.#max - this.#output)) throw new OutputLimitError(this.#max, `the LZ4 frame declares ${size} bytes of content`);
      this.#contentSize = Number(size);
      if (this.#whole) {
        // LZ4 expands at most ~255×: a size the rest of the input cannot hold is forged.
        if (this.#contentSize > this.#avail * 255 + 65536) {
          throw new CorruptFrameError(`LZ4 frame declares ${this.#contentSize} bytes of content, more than its ${this.#avail} remaining bytes can hold`);
        }
        this.#target = Buffer.allocUnsafe(this.#contentSize);
      }
    }
    this.#hash = flg & 0x04 ? this.#ws.hashState() : undefined;
    this.#window = undefined;
    this.#frameOutput = 0;
    this.#state = S_BLOCK_SIZE;
    this.#need = 4;
  }

  #block(b: Uint8Array, out: Buffer[]): void {
    const size = this.#blockSize;
    const data = b.subarray(0, size);
    if (this.#flg & 0x10) {
      const expected = new DataView(b.buffer, b.byteOffset + size, 4).getUint32(0, true);
      const actual = this.#ws.xxh32(data);
      if (expected !== actual) throw new CorruptFrameError(`LZ4 block checksum mismatch after ${this.#frameOutput} bytes of content`);
    }
    const room = Math.min(this.#blockMax, this.#max - this.#output);
    let decoded: Uint8Array;
    if (this.#blockStored) {
      if (size > this.#max - this.#output) throw new OutputLimitError(this.#max);
      decoded = data;
      if (this.#hash !== undefined) this.#ws.hashUpdate(this.#hash, decoded);
    } else {
      const linked = (this.#flg & 0x20) === 0;
      const r = this.#ws.decompressBlock(data, room, linked ? this.#window : undefined, this.#hash);
      if (typeof r === 'number') {
        if (r === LZ4_OUTPUT && room < this.#blockMax) throw new OutputLimitError(this.#max);
        throw new CorruptFrameError(`corrupt LZ4 block after ${this.#frameOutput} bytes of content`);
      }
      decoded = r; // a view of the workspace
    }
    if (this.#contentSize >= 0 && this.#frameOutput + decoded.length > this.#contentSize) {
      throw new CorruptFrameError(`LZ4 frame holds more content than the ${this.#contentSize} bytes its header declares`);
    }
    // One copy out of the workspace (or of the caller's input): into the frame's buffer, or a fresh one.
    let kept: Uint8Array;
    if (this.#target !== undefined) {
      this.#target.set(decoded, this.#frameOutput);
      kept = this.#target.subarray(this.#frameOutput, this.#frameOutput + decoded.length);
    } else {
      kept = Buffer.from(decoded);
      if (kept.length > 0) out.push(kept as Buffer);
    }
    this.#output += decoded.length;
    this.#frameOutput += decoded.length;
    if ((this.#flg & 0x20) === 0) this.#remember(kept);
  }

  /** Keeps the last 64 KiB of output for linked blocks. */
  #remember(decoded: Uint8Array): void {
    const W = 64 * 1024;
    if (decoded.length >= W) {
      this.#window = new Uint8Array(decoded.subarray(decoded.length - W)); // a copy (Buffer#slice would be a view of output the caller owns)
      return;
    }
    const prev = this.#window ?? new Uint8Array(0);
    const keep = Math.min(prev.length, W - decoded.length);
    const w = new Uint8Array(keep + decoded.length);
    w.set(prev.subarray(prev.length - keep), 0);
    w.set(decoded, keep);
    this.#window = w;
  }

  #endFrame(out: Buffer[]): void {
    if (this.#contentSize >= 0 && this.#frameOutput !== this.#contentSize) {
      throw new CorruptFrameError(`LZ4 frame holds ${this.#frameOutput} bytes of content, its header declares ${this.#contentSize}`);
    }
    if (this.#target !== undefined) {
      if (this.#target.length > 0) out.push(this.#target);
      this.#target = undefined;
    }
    this.#frames++;
    this.#state = S_MAGIC;
    this.#need = 4;
    this.#window = undefined;
    this.#hash = undefined;
  }
}

/** Decodes a whole LZ4 frame (or concatenated frames). */
export function lz4FrameDecode(ws: Lz4Workspace, frame: Uint8Array, limits: DecodeLimits): Buffer {
  const d = new Lz4FrameDecoder(ws, limits, true);
  const parts = d.push(frame);
  d.end();
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}
