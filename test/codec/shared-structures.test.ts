import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FORMAT_SHARED, ValueCodec } from '../../engine/codec/index.js';
import { ErrorCodes, type Engine } from '../../engine/index.js';
import { testEngine } from '../helpers.js';

let engine: Engine;
beforeAll(async () => {
  engine = await testEngine();
});
afterAll(() => engine.close());

/** Shared structures of a private 2 MiB memory (`bytes`: the region's size, as SharedStructures takes it). */
async function sharedStructures(bytes?: number): Promise<import('../../engine/codec/index.js').SharedStructures> {
  const { Arena } = await import('../../engine/runtime/arena.js');
  const { createSharedMemory } = await import('../../engine/runtime/wasm.js');
  const { SharedStructures } = await import('../../engine/codec/index.js');
  return new SharedStructures(new Arena(createSharedMemory(2 << 20), true), bytes);
}

describe('record structures shared by the threads of one engine', () => {
  it('values encoded concurrently in two workers and the main thread decode everywhere', async () => {
    const n = 60; // more shapes than msgpackr shares (32): the rest stay inline, still decodable
    const [a, b] = (await Promise.all([
      engine.run('encodeShapes', { n, tag: 'a' }),
      engine.run('encodeShapes', { n, tag: 'b' }),
    ])) as Buffer[][];
    const codec = engine.runtime.thread.codec;
    const mine = Array.from({ length: n }, (_, i) => codec.encode({ [`m_${i}`]: i, common: 'm', nested: { [`n${i % 7}`]: [i] } }));
    for (const [tag, list] of [['a', a!], ['b', b!], ['m', mine]] as const) {
      list.forEach((buf, i) => {
        expect(buf[0]).toBe(FORMAT_SHARED);
        expect(codec.decode(buf)).toEqual({ [`${tag}_${i}`]: i, common: tag, nested: { [`n${i % 7}`]: [i] } });
      });
    }
    // And a worker decodes what the main thread wrote (echo decodes the payload, re-encodes the result).
    expect(await engine.run('echo', codec.decode(mine[5]!))).toEqual({ m_5: 5, common: 'm', nested: { n5: [5] } });
  });

  it('a shared-format value cannot be read by a codec outside the engine (typed error)', () => {
    const local = engine.runtime.thread.codec.encode({ shape: 1 });
    expect(() => new ValueCodec().decode(local)).toThrow(expect.objectContaining({ code: ErrorCodes.CORRUPT_VALUE }));
  });
});

describe('the engine-local format refuses what cannot be copied (review28)', () => {
  it('a WeakMap, WeakSet, WeakRef or Promise anywhere in a value is a TypeError naming it, not {}', async () => {
    const codec = new ValueCodec({ structures: await sharedStructures() });
    expect(codec.decode(codec.encode({ ok: { n: 1 } }))).toEqual({ ok: { n: 1 } });
    expect(() => codec.encode({ job: { cache: new WeakMap() } })).toThrow(/value\.job\.cache is a WeakMap/);
    expect(() => codec.encode({ pending: Promise.resolve(1) })).toThrow(/value\.pending is a Promise/);
    expect(() => codec.encode([new WeakSet()])).toThrow(/value\.0 is a WeakSet/);
  });
});

describe('when the shared structures cannot take more shapes', () => {
  it('dictionary-like objects (many keys) are written self-contained, never shared, and round-trip', async () => {
    const codec = new ValueCodec({ structures: await sharedStructures() });
    for (let n = 0; n < 20; n++) {
      const dict = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`${n}-${i}-${'k'.repeat(30)}`, i]));
      expect(codec.decode(codec.encode(dict))).toEqual(dict);
    }
  });

  it('a full region makes the codec fall back to the self-contained format, not loop', async () => {
    const tiny = await sharedStructures(1024);
    const codec = new ValueCodec({ structures: tiny });
    const formats = new Set<number>();
    for (let n = 0; n < 40; n++) {
      const v = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`shape${n}_key${i}`, i]));
      const bytes = codec.encode(v);
      formats.add(bytes[0]!);
      expect(codec.decode(bytes)).toEqual(v);
    }
    expect(formats.has(FORMAT_SHARED)).toBe(true);
    expect([...formats].some((f) => f !== FORMAT_SHARED)).toBe(true);
  });
});
