/**
 * LZ4 frames: what we write the `lz4` tool reads, what it writes we read — every frame option the
 * tool has (block sizes, linked blocks, block checksums, content size, no content checksum),
 * concatenated and skippable frames — and the streaming Transforms.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { Lz4Workspace } from '../../engine/compress/workspace.js';
import { LZ4_FRAME_DEFAULTS, lz4FrameDecode, lz4FrameEncode } from '../../engine/compress/lz4-frame.js';
import { Lz4CompressStream, Lz4DecompressStream } from '../../engine/compress/stream.js';
import { ErrorCodes } from '../../engine/errors.js';
import { haveTool, runTool } from './tools.js';

const ws = new Lz4Workspace();
const LIMIT = { maxOutputBytes: 1 << 30 };

/** Deterministic test data: text-like with repeats, then noise, `n` bytes. */
function sample(n: number, seed = 1): Buffer {
  let s = seed;
  const rnd = (): number => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
  const words = ['lorem', 'ipsum', 'dolor', '{"a":1}', 'sit', 'amet', '\n', 'consectetur', '0123456789'];
  const out = Buffer.alloc(n);
  let i = 0;
  while (i < n) {
    if (rnd() % 8 === 0) {
      out[i++] = rnd() >>> 24;
    } else {
      i += out.write(words[rnd() % words.length]! + ' ', i);
    }
  }
  return out;
}

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);

const tool = haveTool('lz4');

describe.skipIf(!tool)('LZ4 frames and the lz4 tool', () => {
  const sizes = [0, 1, 13, 100, 65_536, 1_000_000, 5_000_000];

  it('the tool reads our frames (all sizes, 64 KiB to 4 MiB blocks, with and without content size)', () => {
    for (const n of sizes) {
      const data = sample(n, n);
      for (const blockSize of [64 << 10, 1 << 20, 4 << 20]) {
        for (const contentSize of [true, false]) {
          const frame = lz4FrameEncode(ws, data, { ...LZ4_FRAME_DEFAULTS, blockSize, contentSize });
          expect(same(runTool('lz4', ['-d', '-c'], frame), data)).toBe(true);
        }
      }
    }
  });

  it('our frames are the size of the tool\'s -1 frames at the same block size (plus 8 bytes of content size)', () => {
    const data = sample(3_000_000);
    const ours = lz4FrameEncode(ws, data, { ...LZ4_FRAME_DEFAULTS, blockSize: 4 << 20, contentSize: false });
    const theirs = runTool('lz4', ['-1', '-c'], data);
    expect(ours.length).toBe(theirs.length); // the same matches: the same algorithm
  });

  it('we read the tool\'s frames with every frame option it has', () => {
    const options = [[], ['-B4'], ['-B5'], ['-B6'], ['-BD'], ['-B4', '-BD'], ['--content-size'], ['--no-frame-crc'], ['-BX'], ['-9'], ['--fast=5']];
    for (const n of sizes) {
      const data = sample(n, n + 7);
      for (const o of options) {
        const frame = runTool('lz4', ['-c', ...o], data);
        expect(same(lz4FrameDecode(ws, frame, LIMIT), data), `${n} bytes, lz4 ${o.join(' ')}`).toBe(true);
      }
    }
  });

  it('concatenated frames decode to the concatenation; skippable frames are skipped', () => {
    const a = sample(70_000, 1);
    const b = sample(5_000, 2);
    const skippable = Buffer.from([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9]);
    const input = Buffer.concat([runTool('lz4', ['-c'], a), skippable, lz4FrameEncode(ws, b)]);
    expect(same(lz4FrameDecode(ws, input, LIMIT), Buffer.concat([a, b]))).toBe(true);
    expect(same(runTool('lz4', ['-d', '-c'], input), Buffer.concat([a, b]))).toBe(true);
  });

  it('the streams: compress piece by piece for the tool, decompress the tool\'s output in 1-byte to 100 KiB pieces', async () => {
    const data = sample(2_500_000, 3);
    const chunks = (buf: Uint8Array, step: number): Uint8Array[] => {
      const out: Uint8Array[] = [];
      for (let i = 0; i < buf.length; i += step) out.push(buf.subarray(i, i + step));
      return out;
    };
    const collect = async (source: Uint8Array[], t: NodeJS.ReadWriteStream): Promise<Buffer> => {
      const got: Buffer[] = [];
      await pipeline(Readable.from(source), t, async (src: AsyncIterable<Buffer>) => {
        for await (const c of src) got.push(c);
      });
      return Buffer.concat(got);
    };
    for (const step of [7777, 100_000]) {
      const frame = await collect(chunks(data, step), new Lz4CompressStream(ws, { blockSize: 64 << 10 }));
      expect(same(runTool('lz4', ['-d', '-c'], frame), data)).toBe(true);
    }
    const theirs = runTool('lz4', ['-c', '-BD', '-B4'], data); // linked blocks: the window crosses pushes
    for (const step of [1, 333, 100_000]) {
      const input = step === 1 ? chunks(theirs.subarray(0, 20_000), 1).concat([theirs.subarray(20_000)]) : chunks(theirs, step);
      expect(same(await collect(input, new Lz4DecompressStream(ws)), data)).toBe(true);
    }
  });
});

describe('LZ4 frame errors', () => {
  const data = sample(300_000);
  const frame = lz4FrameEncode(ws, data, { ...LZ4_FRAME_DEFAULTS, blockSize: 64 << 10 });
  const code = (f: () => unknown): string | undefined => {
    try {
      f();
    } catch (err) {
      return (err as { code?: string }).code;
    }
    return undefined;
  };

  it('every truncation is ERR_HOTPATH_CORRUPT_FRAME (or, under 4 bytes, not a frame)', () => {
    for (let cut = 0; cut < frame.length; cut += cut < 64 ? 1 : 997) {
      const c = code(() => lz4FrameDecode(ws, frame.subarray(0, cut), LIMIT));
      expect(c, `cut at ${cut}`).toBe(cut < 4 ? ErrorCodes.UNKNOWN_FORMAT : ErrorCodes.CORRUPT_FRAME);
    }
  });

  it('a flipped content byte fails the content checksum; a flipped header byte the header check', () => {
    const bad = Buffer.from(frame);
    bad[bad.length - 100]! ^= 0x01;
    expect(code(() => lz4FrameDecode(ws, bad, LIMIT))).toBe(ErrorCodes.CORRUPT_FRAME);
    const badHeader = Buffer.from(frame);
    badHeader[5]! ^= 0x10; // BD
    expect(code(() => lz4FrameDecode(ws, badHeader, LIMIT))).toBe(ErrorCodes.CORRUPT_FRAME);
  });

  it('maxOutputBytes: refused from the declared content size, and without it while decoding', () => {
    expect(code(() => lz4FrameDecode(ws, frame, { maxOutputBytes: 1000 }))).toBe(ErrorCodes.OUTPUT_LIMIT);
    const noSize = lz4FrameEncode(ws, data, { ...LZ4_FRAME_DEFAULTS, blockSize: 64 << 10, contentSize: false });
    expect(code(() => lz4FrameDecode(ws, noSize, { maxOutputBytes: 100_000 }))).toBe(ErrorCodes.OUTPUT_LIMIT);
    expect(lz4FrameDecode(ws, noSize, { maxOutputBytes: data.length }).length).toBe(data.length);
  });

  it('a 1 GiB bomb of zeros (4 KiB of frame) stops at the limit without allocating the gigabyte', () => {
    const zeros = Buffer.alloc(4 << 20);
    const block = Buffer.from(ws.compressBlock(zeros, 1));
    const head = lz4FrameEncode(ws, Buffer.alloc(0), { ...LZ4_FRAME_DEFAULTS, blockSize: 4 << 20, contentSize: false }).subarray(0, 7);
    const size = Buffer.alloc(4);
    size.writeUInt32LE(block.length);
    const bomb = Buffer.concat([head, ...Array.from({ length: 256 }, () => Buffer.concat([size, block]))]);
    expect(bomb.length).toBeLessThan(6 << 20);
    expect(code(() => lz4FrameDecode(ws, bomb, { maxOutputBytes: 16 << 20 }))).toBe(ErrorCodes.OUTPUT_LIMIT);
  });

  it('a skippable frame claiming 4 GiB is skipped as it streams, not buffered; an empty stored block at the very end', async () => {
    const d = new Lz4DecompressStream(ws);
    d.write(Buffer.from([0x5f, 0x2a, 0x4d, 0x18, 0xff, 0xff, 0xff, 0xff]));
    for (let i = 0; i < 64; i++) d.write(Buffer.alloc(1 << 20)); // 64 MiB of skipped bytes
    const err = await new Promise<unknown>((resolve) => {
      d.on('error', resolve);
      d.end();
    });
    expect((err as { code?: string }).code).toBe(ErrorCodes.CORRUPT_FRAME); // ends inside the skippable frame
    const head = lz4FrameEncode(ws, Buffer.alloc(0), { ...LZ4_FRAME_DEFAULTS, contentSize: false }).subarray(0, 7);
    const dec = lz4FrameDecode;
    expect(code(() => dec(ws, Buffer.concat([head, Buffer.from([0, 0, 0, 0x80])]), LIMIT))).toBe(ErrorCodes.CORRUPT_FRAME);
  });

  it('a content size the rest of the frame cannot hold is refused before the output is allocated', () => {
    const f = Buffer.from(lz4FrameEncode(ws, Buffer.alloc(1000), { ...LZ4_FRAME_DEFAULTS, contentSize: true }));
    f.writeBigUInt64LE(200n << 20n, 6);
    f[14] = (ws.xxh32(f.subarray(4, 14)) >>> 8) & 0xff; // a valid header check for the forged size
    expect(() => lz4FrameDecode(ws, f, LIMIT)).toThrow(/more than its \d+ remaining bytes can hold/);
  });

  it('frames needing a dictionary, reserved bits and unknown versions are refused by name', () => {
    const withFlg = (flg: number): Buffer => {
      const f = Buffer.from(frame);
      f[4] = flg;
      return f;
    };
    expect(() => lz4FrameDecode(ws, withFlg(0x60 | 0x04 | 0x01), LIMIT)).toThrow(/dictionary/);
    expect(() => lz4FrameDecode(ws, withFlg(0x80 | 0x20), LIMIT)).toThrow(/version/);
    expect(() => lz4FrameDecode(ws, withFlg(0x60 | 0x02), LIMIT)).toThrow(/reserved/);
  });
});
