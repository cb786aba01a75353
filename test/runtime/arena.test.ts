import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ArenaExhaustedError, ErrorCodes, RegionConflictError } from '../../engine/index.js';
import { Arena, ARENA_BASE } from '../../engine/runtime/arena.js';
import { createSharedMemory } from '../../engine/runtime/wasm.js';

const MiB = 1024 * 1024;

describe('Arena', () => {
  it('carves aligned, disjoint regions and lists them in order', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ bytes: fc.integer({ min: 1, max: 5000 }), alignLog: fc.integer({ min: 3, max: 12 }) }), { maxLength: 40 }), (specs) => {
        const arena = new Arena(createSharedMemory(2 * MiB), true);
        const made = specs.map((s, i) => arena.region(`r${i}`, s.bytes, 1 << s.alignLog));
        made.forEach((r, i) => {
          expect(r.offset % (1 << specs[i]!.alignLog)).toBe(0);
          expect(r.bytes).toBeGreaterThanOrEqual(specs[i]!.bytes);
          expect(r.offset).toBeGreaterThan(ARENA_BASE);
          if (i > 0) expect(r.offset).toBeGreaterThanOrEqual(made[i - 1]!.offset + made[i - 1]!.bytes);
        });
        expect(arena.regions().map((r) => r.name)).toEqual(specs.map((_, i) => `r${i}`));
      }),
      { numRuns: 50 },
    );
  });

  it('finds an existing region instead of creating it twice; another view of the memory sees it', () => {
    const memory = createSharedMemory(2 * MiB);
    const a = new Arena(memory, true);
    const r1 = a.region('limiter:api', 1000);
    expect(r1.created).toBe(true);
    const r2 = a.region('limiter:api', 1000);
    expect(r2).toEqual({ ...r1, created: false });
    const other = new Arena(memory);
    expect(other.find('limiter:api')).toEqual({ name: 'limiter:api', offset: r1.offset, bytes: r1.bytes });
    expect(other.find('nope')).toBeUndefined();
  });

  it('new regions start zeroed', () => {
    const a = new Arena(createSharedMemory(2 * MiB), true);
    const r = a.region('z', 4096);
    expect(new Uint8Array(a.memory.buffer, r.offset, r.bytes).every((b) => b === 0)).toBe(true);
  });

  it('throws ArenaExhaustedError naming the memory option', () => {
    const a = new Arena(createSharedMemory(MiB), true);
    const err = (() => {
      try {
        a.region('big', 2 * MiB);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ArenaExhaustedError);
    expect((err as ArenaExhaustedError).code).toBe(ErrorCodes.ARENA_EXHAUSTED);
    expect((err as Error).message).toMatch(/`memory` option/);
    // The failed request left the arena usable.
    expect(a.region('small', 100).bytes).toBe(104);
  });

  it('rejects a size conflict, bad names, sizes and alignments', () => {
    const a = new Arena(createSharedMemory(2 * MiB), true);
    a.region('t', 64);
    expect(() => a.region('t', 128)).toThrow(RegionConflictError);
    expect(() => a.region('', 8)).toThrow(RangeError);
    // Names are kept as UTF-8: a lone surrogate would make 'n\ud800' and 'n\ufffd' one region.
    expect(() => a.region('n\ud800', 8)).toThrow(/well-formed/);
    expect(() => a.region('x'.repeat(49), 8)).toThrow(/1\.\.48/);
    expect(() => a.region('ok', 0)).toThrow(/positive integer/);
    expect(() => a.region('ok', 1.5)).toThrow(RangeError);
    expect(() => a.region('ok', 8, 12)).toThrow(/power of two/);
  });

  it('refuses to attach to memory that holds no arena', () => {
    expect(() => new Arena(createSharedMemory(MiB))).toThrow(/no hotpath arena/);
  });
});
