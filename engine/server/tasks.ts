/**
 * The service's worker task: the CPU part of `POST /process` — the body compressed (LZ4, in the
 * hotpath frame) and checksummed (xxHash32), on a worker thread so the event loop stays free.
 */
import type { TaskContext } from '../runtime/worker.js';
import { compressSync } from '../compress/index.js';

export interface ProcessResult {
  /** Body bytes. */
  bytes: number;
  /** Bytes of its LZ4 hotpath frame. */
  compressedBytes: number;
  /** xxHash32 of the body, as 8 hex digits. */
  checksum: string;
}

export function process(body: unknown, ctx: TaskContext): ProcessResult {
  const bytes = body instanceof Uint8Array ? body : new Uint8Array(0);
  const frame = compressSync(bytes, { codec: 'lz4' });
  return {
    bytes: bytes.length,
    compressedBytes: frame.length,
    checksum: ctx.runtime.hasher.hashBytes(bytes).toString(16).padStart(8, '0'),
  };
}
