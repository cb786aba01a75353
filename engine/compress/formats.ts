/**
 * The hotpath frame, and recognising every format the decompressor reads by its magic.
 *
 * Hotpath frame (little-endian):
 * ```
 * +0   4  magic        0x89 'H' 'P' 'Z'   (a high first byte, as PNG's, so text never matches)
 * +4   1  version      1
 * +5   1  codec        0 none (stored), 1 lz4, 2 zstd, 3 gzip, 4 deflate (zlib format), 5 brotli
 * +6   1  block log    lz4: log2 of the block size (16..22); 0 for the other codecs
 * +7   1  header check the low byte of xxh32(bytes 0..6 and 8..19)
 * +8   8  size         original (content) size, u64
 * +16  4  checksum     xxh32 of the content (seed 0)
 * +20     payload      none: the content; lz4: ceil(size / block size) blocks, each a u32 length
 *                      (bit 31 set: stored uncompressed) and its bytes — the block encoding of the
 *                      LZ4 frame format, without its end mark; other codecs: their own stream
 * ```
 * The size lets the decoder refuse a bomb before doing any work and allocate the output once;
 * the checksum makes any corruption a typed error rather than wrong data.
 */
export const HOTPATH_MAGIC = [0x89, 0x48, 0x50, 0x5a] as const;
export const HOTPATH_VERSION = 1;
export const HOTPATH_HEADER_BYTES = 20;

export const CODEC_IDS = { none: 0, lz4: 1, zstd: 2, gzip: 3, deflate: 4, brotli: 5 } as const;
export type StoredCodec = keyof typeof CODEC_IDS;
export const CODEC_NAMES: readonly StoredCodec[] = ['none', 'lz4', 'zstd', 'gzip', 'deflate', 'brotli'];

/** What a buffer's first bytes say it is. */
export type Detected = 'hotpath' | 'lz4' | 'zstd' | 'gzip' | 'deflate' | 'unknown';

const LZ4_MAGIC = 0x184d2204;
const ZSTD_MAGIC = 0xfd2fb528;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE = 0x184d2a50; // LZ4 and zstd share this range of skippable-frame magics

/** Recognises a format by its magic (skippable frames in front are looked past). */
export function detect(data: Uint8Array): Detected {
  let off = 0;
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  while (data.length - off >= 8 && (dv.getUint32(off, true) & SKIPPABLE_MASK) >>> 0 === SKIPPABLE) {
    off += 8 + dv.getUint32(off + 4, true);
  }
  if (off > 0 && data.length - off < 4) return 'lz4'; // only skippable frames: the LZ4 decoder says so
  if (data.length - off >= 4) {
    const m = dv.getUint32(off, true);
    if (m === LZ4_MAGIC) return 'lz4';
    if (m === ZSTD_MAGIC) return 'zstd';
    if (off === 0 && data[0] === HOTPATH_MAGIC[0] && data[1] === HOTPATH_MAGIC[1] && data[2] === HOTPATH_MAGIC[2] && data[3] === HOTPATH_MAGIC[3]) return 'hotpath';
  }
  if (off === 0 && data.length >= 2) {
    if (data[0] === 0x1f && data[1] === 0x8b) return 'gzip';
    // zlib: CM 8 (deflate), CINFO ≤ 7, and the 16-bit header a multiple of 31.
    const cmf = data[0]!;
    if ((cmf & 0x0f) === 8 && cmf >> 4 <= 7 && ((cmf << 8) | data[1]!) % 31 === 0) return 'deflate';
  }
  return 'unknown';
}

/** A short description of bytes nobody recognised, for the error message. */
export function describe(data: Uint8Array): string {
  const head = Buffer.from(data.subarray(0, 8)).toString('hex').replace(/(..)/g, '$1 ').trim();
  return `${data.length} bytes starting ${head === '' ? '(nothing)' : head}`;
}

/** A parsed hotpath frame header. */
export interface HotpathHeader {
  codec: StoredCodec;
  blockSize: number;
  size: number;
  checksum: number;
}
