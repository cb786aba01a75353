/**
 * `hotpath/compress` — the engine-less compression entry point.
 *
 * The codecs (LZ4 in WebAssembly, zstd, gzip, deflate, brotli) arrive with the compression
 * component; until then this entry exports only the error types its functions will raise, so
 * that the subpath resolves (with types) for consumers. Importing it starts no thread.
 */
export { HotpathError, ErrorCodes } from '../errors.js';
