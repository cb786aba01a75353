/**
 * BlockAssembly: the frame of a parallel compression put together from blocks that come back in
 * any order — checked against the plain concatenation for random block counts, sizes (up to the
 * worst case: input + 4), orders and ownership, including the estimate from the first block that
 * later blocks outgrow.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlockAssembly } from '../../engine/compress/compressor.js';

describe('BlockAssembly', () => {
  it('places blocks put in any order exactly as their concatenation, with the head and tail reserved', () => {
    const arb = fc.record({
      blockSize: fc.constantFrom(16, 64, 256),
      head: fc.integer({ min: 0, max: 20 }),
      tail: fc.constantFrom(0, 8),
      // No spare beyond the first block's ratio (the engine adds 64 KiB): later blocks outgrow it.
      spare: fc.constantFrom(0, 16),
    }).chain(({ blockSize, head, tail, spare }) => fc.record({
      blockSize: fc.constant(blockSize), head: fc.constant(head), tail: fc.constant(tail), spare: fc.constant(spare),
      // The input: whole blocks and a last one of any length.
      input: fc.integer({ min: 1, max: blockSize * 12 }),
    })).chain((c) => {
      const count = Math.ceil(c.input / c.blockSize);
      const lengthOf = (i: number): number => Math.min(c.blockSize, c.input - i * c.blockSize);
      return fc.record({
        c: fc.constant(c),
        // Each block's encoding: 1 byte up to its worst case (its input + 4).
        blocks: fc.tuple(...Array.from({ length: count }, (_, i) => fc.uint8Array({ minLength: 1, maxLength: lengthOf(i) + 4 }))),
        order: fc.shuffledSubarray(Array.from({ length: count }, (_, i) => i), { minLength: count, maxLength: count }),
        owned: fc.array(fc.boolean(), { minLength: count, maxLength: count }),
      });
    });
    fc.assert(fc.property(arb, ({ c, blocks, order, owned }) => {
      const a = new BlockAssembly(c.input, c.blockSize, c.head, c.tail, c.spare);
      for (const i of order) {
        // A block not handed over lives in a slot the next block overwrites: put must copy it.
        const src = owned[i] ? blocks[i]! : Uint8Array.from(blocks[i]!);
        a.put(i, src, owned[i]!);
        if (!owned[i]) src.fill(0xee);
      }
      const frame = a.finish();
      const body = Buffer.concat(blocks);
      expect(frame.length).toBe(c.head + body.length + c.tail);
      expect(Buffer.compare(frame.subarray(c.head, c.head + body.length), body)).toBe(0);
    }), { numRuns: 500 });
  });

  it('refuses a block put twice, and a finish with blocks missing', () => {
    const a = new BlockAssembly(64, 16, 4, 0);
    a.put(1, new Uint8Array(3), true);
    expect(() => a.put(1, new Uint8Array(3), true)).toThrow(/already placed/);
    a.put(0, new Uint8Array(5), true);
    expect(() => a.put(0, new Uint8Array(5), true)).toThrow(/already placed/);
    expect(() => a.finish()).toThrow(/missing/);
    a.put(3, new Uint8Array(2), true);
    expect(() => a.finish()).toThrow(/missing/);
    a.put(2, new Uint8Array(20), true);
    expect(a.finish().length).toBe(4 + 3 + 5 + 20 + 2);
  });
});
