/**
 * The Compressor's public behaviour: every codec in both formats, 'auto', the hotpath frame's
 * checks, output limits against bombs, typed errors, option validation, the zlib semaphore.
 */
import * as zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { kernelModule } from '../../engine/runtime/wasm.js';
import { Compressor, type Codec } from '../../engine/compress/compressor.js';
import { NATIVE_ZSTD } from '../../engine/compress/zlib-codecs.js';
import { createCompressStream, createDecompressStream } from '../../engine/compress/index.js';
import { CorruptFrameError, ErrorCodes, HotpathError } from '../../engine/errors.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { constants as bufferConstants } from 'node:buffer';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { haveTool, runTool } from './tools.js';

const c = new Compressor({ module: kernelModule() });
const text = Buffer.from(Array.from({ length: 4000 }, (_, i) => `line ${i % 97}: the quick brown fox ${i % 13}\n`).join(''));
const codes = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (err) {
    return err instanceof HotpathError ? err.code : `untyped ${(err as Error).name}: ${(err as Error).message}`;
  }
  return undefined;
};
const CODECS: Codec[] = ['lz4', 'gzip', 'deflate', 'brotli', 'zstd'];

describe('round trips', () => {
  for (const codec of CODECS) {
    for (const format of ['hotpath', 'native'] as const) {
      it(`${codec} in the ${format} format, sync and async, empty to 3 MiB`, async () => {
        for (const data of [Buffer.alloc(0), Buffer.from('x'), text, Buffer.concat(Array(20).fill(text))]) {
          if (codec === 'zstd' && !NATIVE_ZSTD) {
            expect(codes(() => c.compressSync(data, { codec, format }))).toBe(ErrorCodes.CODEC_UNAVAILABLE);
            await expect(c.compress(data, { codec, format })).rejects.toMatchObject({ code: ErrorCodes.CODEC_UNAVAILABLE, message: expect.stringMatching(/22\.15/) });
            continue;
          }
          const hint = codec === 'brotli' && format === 'native' ? { codec } : {};
          const frame = c.compressSync(data, { codec, format });
          expect(c.decompressSync(frame, hint).equals(data)).toBe(true);
          expect((await c.decompress(frame, hint)).equals(data)).toBe(true);
          const asyncFrame = await c.compress(data, { codec, format });
          expect(c.decompressSync(asyncFrame, hint).equals(data)).toBe(true);
        }
      });
    }
  }

  it('strings are compressed as UTF-8', () => {
    expect(c.decompressSync(c.compressSync('héllo ✓')).toString('utf8')).toBe('héllo ✓');
  });

  it("native formats are the codecs' own: node:zlib reads gzip, zlib and brotli", () => {
    expect(zlib.gunzipSync(c.compressSync(text, { codec: 'gzip', format: 'native' })).equals(text)).toBe(true);
    expect(zlib.inflateSync(c.compressSync(text, { codec: 'deflate', format: 'native' })).equals(text)).toBe(true);
    expect(zlib.brotliDecompressSync(c.compressSync(text, { codec: 'brotli', format: 'native' })).equals(text)).toBe(true);
  });

  it.skipIf(!haveTool('zstd'))('zstd: we read the zstd tool\'s frames (fzstd before Node 22.15, checksum verified); it reads ours where we can write them', () => {
    for (const level of ['-1', '-19', '--no-check']) {
      expect(c.decompressSync(runTool('zstd', ['-c', level], text)).equals(text)).toBe(true);
    }
    const two = Buffer.concat([runTool('zstd', ['-c'], text), runTool('zstd', ['-c'], Buffer.from('tail'))]);
    expect(c.decompressSync(two).toString().endsWith('tail')).toBe(true);
    if (NATIVE_ZSTD) expect(runTool('zstd', ['-d', '-c'], c.compressSync(text, { codec: 'zstd', format: 'native' })).equals(text)).toBe(true);
  });

  it.skipIf(!haveTool('zstd'))('zstd: a frame whose content is not the size its header declares is corrupt, checksum or not (review30)', async () => {
    const data = Buffer.from('abcdefghij'.repeat(5000) + 'tail');
    // From a file: the tool writes the content size only when it knows it (not from a pipe).
    const file = join(mkdtempSync(join(tmpdir(), 'hotpath-zstd-')), 'data');
    writeFileSync(file, data);
    for (const args of [['-3'], ['-3', '--no-check']]) {
      const frame = runTool('zstd', ['-c', ...args, file], Buffer.alloc(0));
      const fhd = frame[4]!;
      const single = (fhd & 0x20) !== 0;
      const fcsBytes = [single ? 1 : 0, 2, 4, 8][fhd >> 6]!;
      expect(fcsBytes).toBeGreaterThan(0);
      const at = 5 + (single ? 0 : 1) + [0, 1, 2, 4][fhd & 3]!;
      for (const delta of [-1, -4, 1, 1000]) {
        const bad = Buffer.from(frame);
        let v = data.length + delta - (fcsBytes === 2 ? 256 : 0); // (a 2-byte size is stored less 256)
        for (let i = 0; i < fcsBytes; i++, v = Math.floor(v / 256)) bad[at + i] = v & 0xff;
        expect(() => c.decompressSync(bad), `${args.join(' ')} size ${delta}`).toThrow(CorruptFrameError);
        await expect(c.decompress(bad)).rejects.toBeInstanceOf(CorruptFrameError);
      }
    }
  });
});

describe("codec 'auto'", () => {
  it('stores tiny and incompressible data raw, compresses the rest with lz4', () => {
    let seed = 7;
    const noise = Buffer.from(Array.from({ length: 20_000 }, () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24));
    const header = (b: Buffer): number => b[5]!;
    expect(header(c.compressSync(Buffer.from('tiny'), { codec: 'auto' }))).toBe(0);
    expect(header(c.compressSync(noise, { codec: 'auto' }))).toBe(0);
    expect(c.compressSync(noise, { codec: 'auto' }).length).toBe(noise.length + 20);
    expect(header(c.compressSync(text, { codec: 'auto' }))).toBe(1);
    expect(c.decompressSync(c.compressSync(noise, { codec: 'auto' })).equals(noise)).toBe(true);
  });
});

describe('the hotpath frame refuses what it must', () => {
  const frame = c.compressSync(text, { codec: 'lz4' });

  it('any single flipped bit is a typed error (header check, checksum or structure), never other content', () => {
    for (let i = 0; i < frame.length; i += 1 + (i >> 4)) {
      for (const bit of [0, 7]) {
        const bad = Buffer.from(frame);
        bad[i]! ^= 1 << bit;
        const code = codes(() => c.decompressSync(bad));
        expect([ErrorCodes.CORRUPT_FRAME, ErrorCodes.UNKNOWN_FORMAT, ErrorCodes.OUTPUT_LIMIT], `byte ${i} bit ${bit}: ${code}`).toContain(code);
      }
    }
  });

  it('truncated anywhere: ERR_HOTPATH_CORRUPT_FRAME', () => {
    for (const cut of [4, 10, 19, 20, 21, frame.length - 1]) expect(codes(() => c.decompressSync(frame.subarray(0, cut)))).toBe(ErrorCodes.CORRUPT_FRAME);
  });

  it('a forged size (with a recomputed header check) larger than the payload can hold is refused before allocating', () => {
    const forged = Buffer.from(c.compressSync(Buffer.alloc(100), { codec: 'lz4' }));
    forged.writeBigUInt64LE(200n << 20n, 8); // 200 MiB from a 30-byte payload
    const covered = Buffer.concat([forged.subarray(0, 7), forged.subarray(8, 20)]);
    forged[7] = c.workspace.xxh32(covered) & 0xff;
    expect(() => c.decompressSync(forged)).toThrow(/more than \d+ bytes of lz4 can hold/);
  });

  it('a forged block length cannot grow the thread\'s workspace', () => {
    const w = new Compressor({ module: kernelModule() });
    const frame = Buffer.from(w.compressSync(Buffer.alloc(100_000, 1), { codec: 'lz4' }));
    const before = w.workspace.bytes;
    const forged = Buffer.concat([frame.subarray(0, 20), Buffer.from([0, 0, 0, 2]), Buffer.alloc(64 << 10)]); // "32 MiB block"
    expect(codes(() => w.decompressSync(forged))).toBe(ErrorCodes.CORRUPT_FRAME);
    expect(w.workspace.bytes).toBe(before);
  });

  it('a version it does not know is named', () => {
    const v2 = Buffer.from(frame);
    v2[4] = 2;
    expect(() => c.decompressSync(v2)).toThrow(/version 2/);
  });
});

describe('output limits (decompression bombs)', () => {
  const zeros = Buffer.alloc(64 << 20);
  for (const codec of CODECS) {
    it(`${codec}: 64 MiB of zeros stop at maxOutputBytes = 1 MiB, sync and async, both formats`, async () => {
      if (codec === 'zstd' && !NATIVE_ZSTD) {
        if (!haveTool('zstd')) return;
        const bomb = runTool('zstd', ['-c', '-1'], zeros);
        expect(codes(() => c.decompressSync(bomb, { maxOutputBytes: 1 << 20 }))).toBe(ErrorCodes.OUTPUT_LIMIT);
        const noSize = runTool('zstd', ['-c', '-1', '--no-content-size'], zeros);
        expect(codes(() => c.decompressSync(noSize, { maxOutputBytes: 1 << 20 }))).toBe(ErrorCodes.OUTPUT_LIMIT);
        return;
      }
      for (const format of ['hotpath', 'native'] as const) {
        const frame = c.compressSync(zeros, { codec, format });
        const hint = codec === 'brotli' && format === 'native' ? { codec } : {};
        expect(codes(() => c.decompressSync(frame, { maxOutputBytes: 1 << 20, ...hint }))).toBe(ErrorCodes.OUTPUT_LIMIT);
        await expect(c.decompress(frame, { maxOutputBytes: 1 << 20, ...hint })).rejects.toMatchObject({ code: ErrorCodes.OUTPUT_LIMIT });
      }
    });
  }
});

describe('hostile zstd', () => {
  it('a 518-byte frame of 128 one-byte blocks under a 128 MiB window: decoded (node:zlib) or refused as needing it (fzstd), promptly', () => {
    const blocks = Array.from({ length: 128 }, (_, i) => Buffer.from([(1 << 3) | (i === 127 ? 1 : 0), 0, 0, 65]));
    const hostile = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x88]), ...blocks]);
    if (NATIVE_ZSTD) expect(c.decompressSync(hostile).toString()).toBe('A'.repeat(128));
    else expect(codes(() => c.decompressSync(hostile))).toBe(ErrorCodes.CODEC_UNAVAILABLE);
  });
});

describe('bad input and options', () => {
  it('unknown formats say what they saw; raw brotli needs the hint', () => {
    expect(() => c.decompressSync(Buffer.from('hello world'))).toThrow(/11 bytes starting 68 65 6c/);
    expect(codes(() => c.decompressSync(Buffer.alloc(0)))).toBe(ErrorCodes.UNKNOWN_FORMAT);
    expect(codes(() => c.decompressSync(c.compressSync(text, { codec: 'brotli', format: 'native' })))).toBe(ErrorCodes.UNKNOWN_FORMAT);
  });

  it('bytes after the end of a deflate or brotli stream are corrupt, not dropped (review30)', async () => {
    const deflated = Buffer.concat([zlib.deflateSync(text), Buffer.from('trailing')]);
    const brotli = Buffer.concat([zlib.brotliCompressSync(text), Buffer.from('xx')]);
    expect(() => c.decompressSync(deflated)).toThrow(/8 bytes after the end of the stream/);
    await expect(c.decompress(deflated)).rejects.toBeInstanceOf(CorruptFrameError);
    expect(() => c.decompressSync(brotli, { codec: 'brotli' })).toThrow(CorruptFrameError);
    await expect(c.decompress(brotli, { codec: 'brotli' })).rejects.toThrow(/2 bytes after the end of the stream/);
    // The streams alone still decode.
    expect(c.decompressSync(zlib.deflateSync(text)).equals(text)).toBe(true);
    expect((await c.decompress(zlib.brotliCompressSync(text), { codec: 'brotli' })).equals(text)).toBe(true);
  });

  it('bytes after a gzip member that begin with a zero are corrupt too, not dropped (review54) — unless all are zero, as gzip reads them (review56)', async () => {
    // node:zlib reads on into a further member, but stops at a zero byte and drops the rest.
    const member = zlib.gzipSync(text);
    for (const tail of [Buffer.from('\0\0anything'), Buffer.from([0, 0, 0, 1])]) {
      const data = Buffer.concat([member, tail]);
      expect(() => c.decompressSync(data)).toThrow(new RegExp(`${tail.length} bytes after the end of the stream`));
      await expect(c.decompress(data)).rejects.toBeInstanceOf(CorruptFrameError);
    }
    // Zero padding (a block device's, dd's): the gzip tool accepts it without a word.
    for (const pad of [1, 2, 512]) {
      const data = Buffer.concat([member, Buffer.alloc(pad)]);
      expect(c.decompressSync(data).equals(text)).toBe(true);
      expect((await c.decompress(data)).equals(text)).toBe(true);
    }
    expect(codes(() => c.decompressSync(Buffer.concat([member, Buffer.from('xyz')])))).toBe(ErrorCodes.CORRUPT_FRAME); // refused before too
    // Concatenated members are one gzip stream (as the gzip tool reads them).
    const two = Buffer.concat([member, member]);
    expect(c.decompressSync(two).equals(Buffer.concat([text, text]))).toBe(true);
    expect((await c.decompress(two)).equals(Buffer.concat([text, text]))).toBe(true);
  });

  it('hostile bytes under a hint are corrupt frames, not crashes', () => {
    for (const codec of CODECS) expect(codes(() => c.decompressSync(Buffer.from('definitely not compressed'), { codec }))).toMatch(/ERR_HOTPATH_(CORRUPT_FRAME|UNKNOWN_FORMAT)/);
  });

  it('options are validated, naming the option', async () => {
    expect(() => c.compressSync(text, { codec: 'lzma' as Codec })).toThrow(/options\.codec/);
    expect(() => c.compressSync(text, { codec: 'gzip', level: 10 })).toThrow(/options\.level must be an integer from 0 to 9/);
    expect(() => c.compressSync(text, { codec: 'lz4', level: 9 })).toThrow(/level 1 only/);
    expect(() => c.compressSync(text, { acceleration: 0 })).toThrow(/options\.acceleration/);
    expect(() => c.compressSync(text, { codec: 'gzip', acceleration: 2 })).toThrow(/lz4 only/);
    expect(() => c.compressSync(text, { codec: 'none', format: 'native' })).toThrow(/format 'hotpath'/);
    expect(() => c.compressSync(42 as unknown as Buffer)).toThrow(TypeError);
    expect(() => c.decompressSync(text, { maxOutputBytes: 0 })).toThrow(/options\.maxOutputBytes/);
    // review30: over one Buffer's maximum, a large declared size became Node's untyped ERR_OUT_OF_RANGE.
    // (4 GiB on Node 20; 2^53 − 1 from Node 22 on.)
    expect(() => c.decompressSync(text, { maxOutputBytes: bufferConstants.MAX_LENGTH + 1 })).toThrow(/options\.maxOutputBytes must be an integer from 1 to/);
    // Strings are quoted ('3' is not 3); a wrong type is a TypeError; null is not "lz4".
    expect(() => c.compressSync(text, { codec: 'gzip', level: '3' as unknown as number })).toThrow(/options\.level must be a number, got "3"/);
    expect(() => c.compressSync(text, { codec: null as unknown as Codec })).toThrow(/options\.codec .* got null/);
    expect(() => c.compressSync(new Uint16Array(4) as unknown as Buffer)).toThrow(/got a Uint16Array/);
    expect(() => createCompressStream(null as never)).toThrow(/options must be an object, got null/);
    expect(() => createDecompressStream(null as never)).toThrow(/options must be an object, got null/);
    await expect(c.compress(text, { level: -1 })).rejects.toThrow(RangeError);
    expect(() => new Compressor({ module: kernelModule() }, { blockSize: 1000 })).toThrow(/options\.blockSize/);
    expect(() => new Compressor({ module: kernelModule() }, { zlibConcurrency: 0 }, 'options.compress')).toThrow(/options\.compress\.zlibConcurrency/);
  });

  it('async without a pool runs on the calling thread, whatever the size', async () => {
    const big = Buffer.concat(Array(40).fill(text));
    expect((await c.decompress(await c.compress(big))).equals(big)).toBe(true);
  });

  it('an aborted signal rejects with ERR_HOTPATH_CANCELLED', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(c.compress(text, { signal: ac.signal })).rejects.toMatchObject({ code: ErrorCodes.CANCELLED });
  });
});

describe('the zlib semaphore', () => {
  it('a call aborted while it waits for its turn rejects at once with ERR_HOTPATH_CANCELLED; the others finish', async () => {
    const gated = new Compressor({ module: kernelModule() }, { zlibConcurrency: 1 });
    const ac = new AbortController();
    const calls = Array.from({ length: 20 }, (_, i) => gated.compress(text, { codec: 'brotli', format: 'native', ...(i === 19 ? { signal: ac.signal } : {}) }));
    ac.abort();
    await expect(calls[19]).rejects.toMatchObject({ code: ErrorCodes.CANCELLED });
    expect(gated.zlibCalls.waiting).toBeGreaterThan(0); // it was still queued when it rejected
    const done = await Promise.all(calls.slice(0, 19));
    expect(done.every((f) => zlib.brotliDecompressSync(f).equals(text))).toBe(true);
  });

  it('2000 concurrent gzip calls: never more than zlibConcurrency in zlib at once, all answered in order of their data', async () => {
    const gated = new Compressor({ module: kernelModule() }, { zlibConcurrency: 3 });
    let peak = 0;
    const timer = setInterval(() => (peak = Math.max(peak, gated.zlibCalls.active)), 0);
    const inputs = Array.from({ length: 2000 }, (_, i) => Buffer.from(`payload ${i} `.repeat(50)));
    const frames = await Promise.all(inputs.map((d) => gated.compress(d, { codec: 'gzip', format: 'native' }).then((f) => {
      peak = Math.max(peak, gated.zlibCalls.active);
      return f;
    })));
    clearInterval(timer);
    expect(peak).toBeLessThanOrEqual(3);
    expect(peak).toBeGreaterThan(0);
    frames.forEach((f, i) => expect(zlib.gunzipSync(f).equals(inputs[i]!)).toBe(true));
    expect(gated.zlibCalls).toMatchObject({ active: 0, waiting: 0 });
  });
});
