export { ValueCodec, CODEC_VERSION, DEFAULT_MAX_VALUE_BYTES, checkEncodable, type CodecOptions } from './codec.js';
