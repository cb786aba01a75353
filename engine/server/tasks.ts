/**
 * The service's worker task: the CPU part of `POST /process` — the body compressed (LZ4, in the
 * hotpath frame) and checksummed (xxHash32), on a worker thread so the event loop stays free. It
 * is the handler of the service's `process` queue (server.ts), so its tasks show in
 * `/admin/queue/process`, its failures in the queue's dead letters, and its depth and durations
 * in the queue metrics.
 */
import type { HandlerContext } from '../queue/types.js';
import { compressSync } from '../compress/index.js';
import { HOTPATH_HEADER_BYTES } from '../compress/formats.js';

export interface ProcessResult {
  /** Body bytes. */
  bytes: number;
  /** Bytes of its LZ4 hotpath frame. */
  compressedBytes: number;
  /** xxHash32 of the body, as 8 hex digits. */
  checksum: string;
}

export function process(body: unknown, _ctx: HandlerContext): ProcessResult {
  const bytes = body instanceof Uint8Array ? body : new Uint8Array(0);
  const frame = compressSync(bytes, { codec: 'lz4' });
  // The hotpath frame carries the xxHash32 of its content (bytes 16..19, little-endian): the
  // compressor has hashed the body already.
  const checksum = new DataView(frame.buffer, frame.byteOffset, HOTPATH_HEADER_BYTES).getUint32(16, true);
  return {
    bytes: bytes.length,
    compressedBytes: frame.length,
    checksum: checksum.toString(16).padStart(8, '0'),
  };
}
