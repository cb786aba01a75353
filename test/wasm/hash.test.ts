import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Arena } from '../../engine/runtime/arena.js';
import { KeyHasher, WASM_HASH_MIN_LENGTH, xxh32Ascii, xxh32Bytes } from '../../engine/runtime/hash.js';
import { xxh64Reference } from '../../engine/runtime/hash-reference.js';
import { createSharedMemory, instantiateKernels, kernelModule, type KernelExports } from '../../engine/runtime/wasm.js';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

let kernels: KernelExports;
let hasher: KeyHasher;
let scratch: { offset: number; bytes: number };
let mem: Uint8Array;

beforeAll(() => {
  const memory = createSharedMemory(2 * 1024 * 1024);
  const arena = new Arena(memory, true);
  kernels = instantiateKernels(kernelModule(), memory);
  scratch = arena.region('test:scratch', 64 * 1024);
  hasher = new KeyHasher(kernels, memory, scratch.offset, scratch.bytes);
  mem = new Uint8Array(memory.buffer);
});

function wasm32(bytes: Uint8Array, seed = 0): number {
  mem.set(bytes, scratch.offset);
  return kernels.xxh32(scratch.offset, bytes.length, seed) >>> 0;
}
function wasm64(bytes: Uint8Array, seed = 0n): bigint {
  mem.set(bytes, scratch.offset);
  return BigInt.asUintN(64, kernels.xxh64(scratch.offset, bytes.length, BigInt.asIntN(64, seed)));
}

// Published vectors: the xxHash test suite and python-xxhash documentation.
const V32: Array<[string, number, number]> = [
  ['', 0, 0x02cc5d05],
  ['', 1, 0x0b2cb792],
  ['a', 0, 0x550d7456],
  ['abc', 0, 0x32d153ff],
  ['foo', 0, 0xe20f0dd9],
  ['Nobody inspects the spammish repetition', 0, 0xe2293b2f],
];
const V64: Array<[string, bigint, bigint]> = [
  ['', 0n, 0xef46db3751d8e999n],
  ['abc', 0n, 0x44bc2cf5ad770999n],
  ['foo', 0n, 0x33bf00a859c4ba3fn],
  ['xxhash', 20141025n, 0xb559b98d844e0635n],
];

describe('xxHash32', () => {
  it.each(V32)('matches the published vector for %j seed %i', (s, seed, want) => {
    const b = utf8(s);
    expect(wasm32(b, seed)).toBe(want);
    expect(xxh32Bytes(b, 0, b.length, seed)).toBe(want);
    expect(xxh32Ascii(s, seed)).toBe(want);
    expect(hasher.hash(s, seed)).toBe(want);
  });

  it('WASM kernel equals the TS reference on any bytes and seed', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 0xffffffff }), (b, seed) => {
        expect(wasm32(b, seed)).toBe(xxh32Bytes(b, 0, b.length, seed));
      }),
      { numRuns: 2000 },
    );
  });

  it('reads at an offset without touching bytes outside the range', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 100 }), fc.nat(20), fc.nat(20), (b, pre, post) => {
        const padded = new Uint8Array(pre + b.length + post).fill(0xaa);
        padded.set(b, pre);
        expect(xxh32Bytes(padded, pre, b.length)).toBe(xxh32Bytes(b, 0, b.length));
      }),
    );
  });

  it('hashes string keys to xxh32 of their UTF-8 bytes on both the JS and the WASM path', () => {
    const key = fc.oneof(
      fc.string({ unit: 'grapheme', maxLength: 200 }),
      fc.string({ unit: 'binary', maxLength: 200 }),
      fc.string({ minLength: WASM_HASH_MIN_LENGTH - 5, maxLength: WASM_HASH_MIN_LENGTH + 40 }),
    );
    fc.assert(
      fc.property(key, fc.integer({ min: 0, max: 0xffffffff }), (s, seed) => {
        const b = utf8(s);
        expect(hasher.hash(s, seed)).toBe(xxh32Bytes(b, 0, b.length, seed));
      }),
      { numRuns: 3000 },
    );
  });

  it('hashes keys longer than the scratch area', () => {
    const s = 'k'.repeat(100_000) + 'é';
    const b = utf8(s);
    expect(hasher.hash(s)).toBe(xxh32Bytes(b, 0, b.length));
  });

  it('hashBytes equals the reference below, at and above the WASM threshold', () => {
    for (const n of [0, 1, 15, 16, WASM_HASH_MIN_LENGTH - 1, WASM_HASH_MIN_LENGTH, 4096, 70_000]) {
      const b = new Uint8Array(n).map((_, i) => (i * 131 + 7) & 255);
      expect(hasher.hashBytes(b)).toBe(xxh32Bytes(b, 0, n));
    }
  });
});

describe('xxHash64', () => {
  it.each(V64)('matches the published vector for %j seed %i', (s, seed, want) => {
    const b = utf8(s);
    expect(wasm64(b, seed)).toBe(want);
    expect(xxh64Reference(b, seed)).toBe(want);
    expect(hasher.hash64(b, seed)).toBe(want);
  });

  it('WASM kernel equals the TS reference on any bytes and seed', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (b, seed) => {
        expect(wasm64(b, seed)).toBe(xxh64Reference(b, seed));
      }),
      { numRuns: 1000 },
    );
  });
});

// The real xxhsum tool (Debian package "xxhash"), when installed: interoperability on files.
const hasXxhsum = (() => {
  try {
    execFileSync('xxhsum', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe.runIf(hasXxhsum || process.env.CI === 'true')('agrees with the xxhsum tool', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'hotpath-xxh-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('on files of assorted lengths', () => {
    const lengths = [0, 1, 3, 4, 15, 16, 17, 31, 32, 33, 63, 64, 100, 1000, 4097, 60_000];
    const files = lengths.map((n, i) => {
      const b = new Uint8Array(n).map((_, j) => (j * 2654435761 + i) >>> 24);
      const f = join(dir, `f${i}`);
      writeFileSync(f, b);
      return { f, b };
    });
    const parse = (out: string): Map<string, string> =>
      new Map(out.trim().split('\n').map((l) => { const [h, f] = l.split(/\s+/); return [f!, h!]; }));
    const h32 = parse(execFileSync('xxhsum', ['-H0', ...files.map((x) => x.f)], { encoding: 'utf8' }));
    const h64 = parse(execFileSync('xxhsum', ['-H1', ...files.map((x) => x.f)], { encoding: 'utf8' }));
    for (const { f, b } of files) {
      expect(wasm32(b).toString(16).padStart(8, '0')).toBe(h32.get(f));
      expect(wasm64(b).toString(16).padStart(16, '0')).toBe(h64.get(f));
    }
  });
});
