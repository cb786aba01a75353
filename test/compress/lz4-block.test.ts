/**
 * The WASM LZ4 block codec (wasm/lz4.ts) against the plain-TS reference decoder: every block we
 * compress decodes (by both) to its input, and for ANY bytes — valid, mutated or random — the
 * WASM decoder and the reference give the same output or the same error.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { kernelModule } from '../../engine/runtime/wasm.js';
import { Lz4Workspace, lz4Bound } from '../../engine/compress/workspace.js';
import { literalBlock, referenceDecode } from './lz4-reference.js';

// The workspace the codec uses: the kernels built for a plain (not shared) memory.
const ws = new Lz4Workspace();
// The same kernels built for the engine's shared memory: the two builds must agree byte for byte.
const wsShared = new Lz4Workspace(kernelModule());

/** The WASM decoder's answer as the reference gives it (a copy, or the error code). */
function wasmDecode(block: Uint8Array, cap: number, window?: Uint8Array): Uint8Array | number {
  const r = ws.decompressBlock(block, cap, window);
  return typeof r === 'number' ? r : r.slice();
}

/** Data with structure: runs, repeats at many distances, text and noise. */
const structured = fc.array(
  fc.oneof(
    fc.uint8Array({ minLength: 0, maxLength: 64 }),
    fc.record({ byte: fc.integer({ min: 0, max: 255 }), n: fc.integer({ min: 1, max: 600 }) }).map(({ byte, n }) => new Uint8Array(n).fill(byte)),
    fc.string({ maxLength: 80 }).map((s) => new TextEncoder().encode(s)),
    fc.constantFrom(...['the quick brown fox ', '{"id":1,"name":"x"},', 'abcabcabcabc'].map((s) => new TextEncoder().encode(s))),
  ),
  { maxLength: 60 },
).map((parts) => {
  // Repeat earlier parts at random-ish distances so matches of every offset occur.
  const out: number[] = [];
  parts.forEach((p, i) => {
    out.push(...p);
    if (i % 3 === 2 && out.length > 8) out.push(...out.slice(out.length >> 1, (out.length >> 1) + 40));
  });
  return Uint8Array.from(out);
});

describe('LZ4 block: compress then decode', () => {
  it('round-trips structured and random data through both decoders', () => {
    fc.assert(
      fc.property(fc.oneof(structured, fc.uint8Array({ maxLength: 3000 })), fc.integer({ min: 1, max: 40 }), (data, acceleration) => {
        const block = ws.compressBlock(data, acceleration).slice();
        expect(block.length).toBeLessThanOrEqual(lz4Bound(data.length));
        expect(referenceDecode(block, data.length)).toEqual(data);
        expect(wasmDecode(block, data.length)).toEqual(data);
        // One byte less room than the content needs: "output too large", never a truncated success.
        if (data.length > 0) expect(wasmDecode(block, data.length - 1)).toBe(-2);
      }),
      { numRuns: 600 },
    );
  });

  it('round-trips large inputs: 4 MiB of text-like data and of zeros, 1 MiB of noise', () => {
    const words = ['alpha', 'beta', 'gamma', 'delta', '{"k":', '},', '\n', '  return x;', 'function f() {'];
    let seed = 12345;
    const rnd = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
    const text = new TextEncoder().encode(Array.from({ length: 700_000 }, () => words[rnd() % words.length]).join(' ')).subarray(0, 4 << 20);
    const noise = Uint8Array.from({ length: 1 << 20 }, () => rnd() >>> 24);
    for (const data of [text, new Uint8Array(4 << 20), noise]) {
      const block = ws.compressBlock(data, 1).slice();
      const back = wasmDecode(block, data.length);
      // Buffer.equals: a deep toEqual over megabytes takes seconds.
      expect(back instanceof Uint8Array && Buffer.from(back).equals(data)).toBe(true);
    }
  });

  it('the shared-memory build of the kernels gives the same blocks, decodes and hashes as the private one', () => {
    expect(ws.shared).toBe(false);
    expect(wsShared.shared).toBe(true);
    fc.assert(
      fc.property(fc.oneof(structured, fc.uint8Array({ maxLength: 3000 })), fc.integer({ min: 1, max: 40 }), (data, acceleration) => {
        const a = ws.compressBlock(data, acceleration).slice();
        expect(wsShared.compressBlock(data, acceleration).slice()).toEqual(a);
        const back = wsShared.decompressBlock(a, data.length);
        expect(back instanceof Uint8Array ? back.slice() : back).toEqual(data);
        expect(wsShared.xxh32(data, acceleration)).toBe(ws.xxh32(data, acceleration));
      }),
      { numRuns: 300 },
    );
  });

  it('grows for a larger block and works after growing (a plain memory replaces its buffer on growth)', () => {
    const small = new Lz4Workspace();
    const bytesBefore = small.bytes;
    const big = new Uint8Array(4 << 20).fill(65);
    big[12345] = 7;
    const block = small.compressBlock(big, 1).slice();
    expect(small.bytes).toBeGreaterThan(bytesBefore);
    const back = small.decompressBlock(block, big.length);
    expect(back instanceof Uint8Array && Buffer.from(back).equals(big)).toBe(true);
    expect(small.xxh32(big)).toBe(wsShared.xxh32(big));
  });

  it('the smallest inputs: 0 to 13 bytes are literals only (the format reserves the last 5 and MFLIMIT 12)', () => {
    for (let n = 0; n <= 13; n++) {
      const data = new Uint8Array(n).fill(7);
      const block = ws.compressBlock(data, 1).slice();
      if (n < 13) expect(block).toEqual(literalBlock(data));
      expect(wasmDecode(block, n)).toEqual(data);
    }
  });

  it('linked blocks: matches reach back into the window', () => {
    const window = new TextEncoder().encode('0123456789abcdef'.repeat(10));
    // token: 0 literals, match len 4 + 11 = 15; offset 160 (the window's start); then 5 literals.
    const block = Uint8Array.from([0x0b, 160, 0, 0x50, ...new TextEncoder().encode('WXYZ!')]);
    const expected = new TextEncoder().encode('0123456789abcde' + 'WXYZ!');
    expect(referenceDecode(block, 100, window)).toEqual(expected);
    expect(wasmDecode(block, 100, window)).toEqual(expected);
    expect(wasmDecode(block, 100)).toBe(-1); // without the window the offset leaves the output
  });
});

describe('LZ4 block: the WASM decoder agrees with the reference on any bytes', () => {
  it('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 0, max: 5000 }), (bytes, cap) => {
        expect(wasmDecode(bytes, cap)).toEqual(referenceDecode(bytes, cap));
      }),
      { numRuns: 3000 },
    );
  });

  it('valid blocks with bytes flipped, cut or inserted', () => {
    fc.assert(
      fc.property(structured, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 2 })), { minLength: 1, maxLength: 4 }), (data, edits) => {
        let block = Array.from(ws.compressBlock(data, 1));
        for (const [pos, value, kind] of edits) {
          const p = block.length === 0 ? 0 : pos % block.length;
          if (kind === 0) block[p] = value;
          else if (kind === 1) block = block.slice(0, p);
          else block.splice(p, 0, value);
        }
        const bytes = Uint8Array.from(block);
        const cap = data.length + 16;
        expect(wasmDecode(bytes, cap)).toEqual(referenceDecode(bytes, cap));
      }),
      { numRuns: 3000 },
    );
  });

  it('hostile lengths: a literal run claiming 2^32 bytes, a match length past the output, offset 0', () => {
    const huge = Uint8Array.from([0xf0, ...new Array(16_843_010).fill(255).slice(0, 200), 0]);
    expect(wasmDecode(huge, 1 << 20)).toBe(-1);
    const zeroOffset = Uint8Array.from([0x14, 65, 0, 0, 0x50, 1, 2, 3, 4, 5]);
    expect(wasmDecode(zeroOffset, 100)).toBe(-1);
    const longMatch = Uint8Array.from([0x1f, 65, 1, 0, 255, 255, 255, 10, 0x50, 1, 2, 3, 4, 5]);
    expect(wasmDecode(longMatch, 100)).toBe(-2);
    expect(referenceDecode(longMatch, 100)).toBe(-2);
    const endsOnMatch = Uint8Array.from([0x10, 65, 1, 0]);
    expect(wasmDecode(endsOnMatch, 100)).toBe(-1);
    expect(wasmDecode(new Uint8Array(0), 100)).toBe(-1);
  });
});

describe('streaming xxHash32', () => {
  it('equals the one-shot hash however the input is split', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat({ max: 300 }), { maxLength: 6 }), fc.nat(), (data, cuts, seed) => {
        const state = ws.hashState(seed);
        const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
        let prev = 0;
        for (const p of [...points, data.length]) {
          ws.hashUpdate(state, data.subarray(prev, p));
          prev = p;
        }
        expect(ws.hashDigest(state)).toBe(ws.xxh32(data, seed));
      }),
      { numRuns: 500 },
    );
  });

  it('matches the xxHash32 test vectors', () => {
    expect(ws.xxh32(new Uint8Array(0))).toBe(0x02cc5d05);
    expect(ws.xxh32(new TextEncoder().encode('abc'))).toBe(0x32d153ff);
  });
});
