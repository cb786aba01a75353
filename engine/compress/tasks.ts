/**
 * The compression tasks, run on the worker threads (registered by Compressor.registerTasks).
 * Each payload is a 24-byte header and the data (see Compressor#payload):
 * ```
 * +0  u8  codec id (formats.ts CODEC_IDS; 254 = auto on compress, detect on decompress)
 * +1  u8  1 = the codec's native format
 * +4  i32 level   +8 u32 acceleration   +12 u32 LZ4 block size   +16 f64 maxOutputBytes
 * ```
 * Each worker keeps one Compressor (and so one LZ4 workspace) per thread runtime.
 */
import type { TaskContext } from '../runtime/worker.js';
import type { ThreadRuntime } from '../runtime/thread.js';
import { CODEC_NAMES } from './formats.js';
import { Compressor, TASK_HEADER, type Codec } from './compressor.js';
import { lz4EncodeBlock } from './lz4-frame.js';
import { lz4Bound } from './workspace.js';
import { ArenaExhaustedError } from '../errors.js';

// Per thread runtime: one workspace, one compressor per block size in use (usually one).
const compressors = new WeakMap<ThreadRuntime, Map<number, Compressor>>();

function compressorOf(ctx: TaskContext, blockSize: number): Compressor {
  let byBlock = compressors.get(ctx.runtime);
  if (byBlock === undefined) compressors.set(ctx.runtime, (byBlock = new Map()));
  let c = byBlock.get(blockSize);
  if (c === undefined) {
    const workspace = byBlock.values().next().value?.workspace;
    c = new Compressor({ module: ctx.runtime.module, ...(workspace ? { workspace } : {}) }, { blockSize });
    byBlock.set(blockSize, c);
  }
  return c;
}

interface Header {
  codec: Codec | 'auto' | 'none';
  native: boolean;
  level: number;
  acceleration: number;
  blockSize: number;
  maxOutputBytes: number;
  data: Uint8Array;
}

function parse(payload: unknown): Header {
  if (!(payload instanceof Uint8Array) || payload.length < TASK_HEADER) throw new TypeError('compression task: malformed payload');
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const id = payload[0]!;
  const codec = id === 254 ? 'auto' : (CODEC_NAMES[id] as Codec | 'none' | undefined);
  if (codec === undefined) throw new TypeError(`compression task: unknown codec id ${id}`);
  return {
    codec,
    native: payload[1] === 1,
    level: dv.getInt32(4, true),
    acceleration: dv.getUint32(8, true),
    blockSize: dv.getUint32(12, true),
    maxOutputBytes: dv.getFloat64(16, true),
    data: payload.subarray(TASK_HEADER),
  };
}

export function compress(payload: unknown, ctx: TaskContext): Buffer {
  const h = parse(payload);
  return compressorOf(ctx, h.blockSize).compressResolved(h.data, { codec: h.codec, level: h.level, acceleration: h.acceleration, native: h.native });
}

export function decompress(payload: unknown, ctx: TaskContext): Buffer {
  const h = parse(payload);
  const hint = h.codec === 'auto' || h.codec === 'none' ? undefined : h.codec;
  return compressorOf(ctx, h.blockSize).decompressChecked(h.data, h.maxOutputBytes, hint);
}

/** One independent LZ4 block, framed (u32 length, data), for a parallel compression. */
export function lz4Block(payload: unknown, ctx: TaskContext): Uint8Array {
  const h = parse(payload);
  return lz4EncodeBlock(compressorOf(ctx, h.blockSize).workspace, h.data, h.acceleration);
}

/**
 * One block staged in the shared arena by Compressor#parallelLz4: payload = u32 offset, u32
 * length, u32 acceleration, u32 the compressor's block size. Compresses the block and writes its framed encoding (u32 length,
 * data; never more than 4 + length bytes) over it; answers that encoding's length. The slot is
 * this task's alone until it answers (the channel's publish orders the bytes both ways).
 */
export function lz4Staged(payload: unknown, ctx: TaskContext): number {
  if (!(payload instanceof Uint8Array) || payload.length !== 16) throw new TypeError('lz4Staged: malformed payload');
  const dv = new DataView(payload.buffer, payload.byteOffset, 16);
  const offset = dv.getUint32(0, true);
  const length = dv.getUint32(4, true);
  const acceleration = dv.getUint32(8, true);
  const blockSize = dv.getUint32(12, true);
  if (length > blockSize) throw new TypeError('lz4Staged: a block longer than its block size');
  const out = stagedOutput(ctx, blockSize);
  const mem = new Uint8Array(ctx.runtime.memory.buffer); // (the engine's memory is fixed: never grown)
  let at: number; // where the encoding is
  let len: number;
  if (out !== undefined) {
    // The kernel reads the block where it is staged: no copy into the private workspace.
    len = ctx.runtime.kernels.lz4Compress(offset, length, out + TABLE_BYTES, out, acceleration);
    at = out + TABLE_BYTES;
  } else {
    const block = compressorOf(ctx, 1 << 20).workspace.compressBlock(mem.subarray(offset, offset + length), acceleration);
    len = block.length;
    at = -1;
    if (len < length) mem.set(block, offset + 4);
  }
  // Written in place, as lz4EncodeBlock frames it: u32 length (bit 31: stored), then the bytes.
  const head = new DataView(mem.buffer, offset, 4);
  if (len >= length) {
    mem.copyWithin(offset + 4, offset, offset + length); // did not compress: store it
    head.setUint32(0, (0x80000000 | length) >>> 0, true);
    return 4 + length;
  }
  if (at >= 0) mem.copyWithin(offset + 4, at, at + len);
  head.setUint32(0, len, true);
  return 4 + len;
}

/** The LZ4 kernel's hash table (4096 × u32), at the start of a worker's staged-output region. */
const TABLE_BYTES = 16 * 1024;
/** Slack the kernel may write past its output (wildcopy). */
const WILD = 32;
/** Per thread runtime: the staged-output region's offset by block size (null: the arena had no room). */
const stagedRegions = new WeakMap<ThreadRuntime, Map<number, number | null>>();

/**
 * The offset of this worker's region in the shared arena for the staged blocks of a compressor
 * of `blockSize`: the kernel's hash table, then room for a block's worst-case encoding. Named by
 * the worker's pool slot, so a replacement worker (which takes the slot only once the old thread
 * has exited) reuses it instead of carving another, and by the block size (one region per worker
 * for the engine's compressor; review40: one per power of two of the blocks' lengths took up to
 * 2 × the block size per worker, for good). Undefined when the arena has no room: the block then
 * goes through the private workspace (one more copy each way).
 */
function stagedOutput(ctx: TaskContext, blockSize: number): number | undefined {
  let bySize = stagedRegions.get(ctx.runtime);
  if (bySize === undefined) stagedRegions.set(ctx.runtime, (bySize = new Map()));
  let at = bySize.get(blockSize);
  if (at === undefined) {
    try {
      at = ctx.runtime.arena.region(`hotpath:czo:${ctx.slot}:${blockSize}`, TABLE_BYTES + lz4Bound(blockSize) + WILD).offset;
    } catch (err) {
      if (!(err instanceof ArenaExhaustedError)) throw err;
      at = null;
    }
    bySize.set(blockSize, at);
  }
  return at ?? undefined;
}
