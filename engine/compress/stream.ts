/**
 * Node streams of LZ4 frames: a Transform that writes one frame (what `lz4 -1` writes) and one
 * that reads LZ4 frames (concatenated and skippable frames too). Both run on the calling thread,
 * one block at a time: memory stays at one block (≤ 4 MiB by default) plus the workspace; for
 * large streams choose a smaller blockSize to keep each event-loop turn short.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { CorruptFrameError } from '../errors.js';
import { LZ4_FRAME_DEFAULTS, Lz4FrameDecoder, lz4EncodeBlock, lz4FrameHeader, lz4FrameTrailer, type Lz4FrameOptions } from './lz4-frame.js';
import type { Lz4Workspace } from './workspace.js';

export interface Lz4StreamOptions {
  /** 1 .. 65537 (default 1). */
  acceleration?: number;
  /** 64 KiB, 256 KiB, 1 MiB (default) or 4 MiB. */
  blockSize?: number;
}

/** @throws TypeError unless `options` is an object (null included: `createCompressStream(null)`). */
function checkOptionsObject(options: unknown): void {
  if (options === null || typeof options !== 'object') throw new TypeError(`options must be an object, got ${options === null ? 'null' : typeof options}`);
}

/** Compresses a byte stream into one LZ4 frame. */
export class Lz4CompressStream extends Transform {
  readonly #ws: Lz4Workspace;
  readonly #o: Lz4FrameOptions;
  readonly #hash: Uint8Array;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #started = false;

  constructor(ws: Lz4Workspace, options: Lz4StreamOptions = {}) {
    super();
    checkOptionsObject(options);
    const acceleration = options.acceleration ?? 1;
    if (!Number.isInteger(acceleration) || acceleration < 1 || acceleration > 65537) {
      throw new RangeError(`options.acceleration must be an integer from 1 to 65537, got ${String(options.acceleration)}`);
    }
    this.#ws = ws;
    this.#o = { acceleration, blockSize: options.blockSize ?? LZ4_FRAME_DEFAULTS.blockSize, contentSize: false };
    lz4FrameHeader(ws, this.#o, 0); // validates blockSize now, not at the first write
    this.#hash = ws.hashState();
  }

  override _transform(chunk: unknown, encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      // A copy: pending bytes outlive this callback, and a producer may reuse its buffer after it.
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : Buffer.from(chunk as Uint8Array);
      this.#start();
      const bs = this.#o.blockSize;
      let off = 0;
      while (off < bytes.length) {
        const take = Math.min(bs - this.#pendingBytes, bytes.length - off);
        this.#pending.push(bytes.subarray(off, off + take));
        this.#pendingBytes += take;
        off += take;
        if (this.#pendingBytes === bs) this.#emitBlock();
      }
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.#start();
      if (this.#pendingBytes > 0) this.#emitBlock();
      this.push(lz4FrameTrailer(this.#ws.hashDigest(this.#hash)));
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  #start(): void {
    if (this.#started) return;
    this.#started = true;
    this.push(lz4FrameHeader(this.#ws, this.#o, 0));
  }

  #emitBlock(): void {
    const block = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    this.push(lz4EncodeBlock(this.#ws, block, this.#o.acceleration, this.#hash));
  }
}

/** Decompresses a stream of LZ4 frames; errors are typed (ERR_HOTPATH_CORRUPT_FRAME, …_OUTPUT_LIMIT, …_UNKNOWN_FORMAT). */
export class Lz4DecompressStream extends Transform {
  readonly #decoder: Lz4FrameDecoder;

  constructor(ws: Lz4Workspace, options: { maxOutputBytes?: number } = {}) {
    super();
    checkOptionsObject(options);
    const max = options.maxOutputBytes ?? Number.MAX_SAFE_INTEGER;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`options.maxOutputBytes must be a positive integer, got ${String(options.maxOutputBytes)}`);
    this.#decoder = new Lz4FrameDecoder(ws, { maxOutputBytes: max });
  }

  override _transform(chunk: unknown, encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      // A copy: the decoder keeps views of input it has not consumed yet, past this callback.
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : Buffer.from(chunk as Uint8Array);
      for (const out of this.#decoder.push(bytes)) this.push(out);
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.#decoder.end();
      callback();
    } catch (err) {
      callback(err instanceof Error ? err : new CorruptFrameError(String(err)));
    }
  }
}
