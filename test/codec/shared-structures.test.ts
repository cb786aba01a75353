import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FORMAT_SHARED, ValueCodec } from '../../engine/codec/index.js';
import { ErrorCodes, type Engine } from '../../engine/index.js';
import { testEngine } from '../helpers.js';

let engine: Engine;
beforeAll(async () => {
  engine = await testEngine();
});
afterAll(() => engine.close());

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
