export { ValueCodec, ExactViews, CODEC_VERSION, FORMAT_PLAIN, FORMAT_RECORDS, FORMAT_SHARED, DEFAULT_MAX_VALUE_BYTES, checkEncodable, type CodecOptions } from './codec.js';
export { SharedStructures } from './structures.js';
