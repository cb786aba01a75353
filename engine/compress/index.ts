/**
 * `hotpath/compress`: compression without an engine, and the compression types.
 *
 * The functions here share one lazily created private compressor. `compressSync` /
 * `decompressSync` and the streams run on the calling thread and never start a worker. `compress`
 * / `decompress` start a private worker pool on the first call that needs one (an input of at
 * least 64 KiB); its workers are unref'd while idle, so a script that only uses these functions
 * exits by itself. Importing this module starts no thread and opens no handle.
 * With an engine, use `engine.compress` / `engine.decompress` (the engine's workers) instead.
 */
import { availableParallelism } from 'node:os';
import { resolveOptions } from '../options.js';
import { Runtime } from '../runtime/runtime.js';
import { kernelModule } from '../runtime/wasm.js';
import { Compressor, type CompressOptions, type DecompressOptions, type Input } from './compressor.js';
import { Lz4CompressStream, Lz4DecompressStream, type Lz4StreamOptions } from './stream.js';

export { Compressor, COMPRESS_DEFAULTS, resolveCompressOptions } from './compressor.js';
export type { Codec, CompressOptions, DecompressOptions, CompressorOptions, CompressorDeps, Input } from './compressor.js';
export { Lz4CompressStream, Lz4DecompressStream, type Lz4StreamOptions } from './stream.js';
export { detect, HOTPATH_HEADER_BYTES, type Detected } from './formats.js';
export { Lz4Workspace } from './workspace.js';
export {
  HotpathError, ErrorCodes, CorruptFrameError, UnknownFormatError, OutputLimitError, CodecUnavailableError, CancelledError,
} from '../errors.js';

// The one exception to "no module-level mutable state" (DESIGN convention 5): the engine-less
// functions' private compressor and, once an async call needs one, its private runtime.
let shared: Compressor | undefined;

function privateCompressor(): Compressor {
  shared ??= new Compressor({
    module: kernelModule(),
    pool: async () => {
      // Small rings (parallel blocks go through staging slots, 3 per worker × 1 MiB) and an
      // arena sized for those slots.
      const workers = Math.max(1, availableParallelism());
      const settings = resolveOptions({ workers, memory: Math.max(16, 3 * workers + 8) << 20, channel: { ringBytes: 256 << 10 }, metrics: false });
      const runtime = await Runtime.create(settings.runtime);
      return runtime.pool;
    },
  });
  return shared;
}

/** Compresses on the calling thread (no worker is ever started). */
export function compressSync(data: Input, options?: CompressOptions): Buffer {
  return privateCompressor().compressSync(data, options);
}

/** Decompresses on the calling thread: hotpath frames, LZ4 frames, zstd, gzip, zlib (brotli with options.codec). */
export function decompressSync(data: Uint8Array, options?: DecompressOptions): Buffer {
  return privateCompressor().decompressSync(data, options);
}

/** Compresses; inputs of 64 KiB or more run on private, unref'd worker threads. */
export function compress(data: Input, options?: CompressOptions): Promise<Buffer> {
  return privateCompressor().compress(data, options);
}

/** Decompresses; large LZ4 and hotpath frames run on private, unref'd worker threads. */
export function decompress(data: Uint8Array, options?: DecompressOptions): Promise<Buffer> {
  return privateCompressor().decompress(data, options);
}

/** A Transform that compresses its input into one LZ4 frame (readable by `lz4 -d`). */
export function createCompressStream(options?: Lz4StreamOptions): Lz4CompressStream {
  return new Lz4CompressStream(privateCompressor().workspace, options);
}

/** A Transform that decompresses LZ4 frames (as `lz4 -d` writes them, or ours). */
export function createDecompressStream(options?: { maxOutputBytes?: number }): Lz4DecompressStream {
  return new Lz4DecompressStream(privateCompressor().workspace, options);
}
