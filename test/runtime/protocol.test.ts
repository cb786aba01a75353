/**
 * How a task's error crosses the channel (engine/runtime/protocol.ts), without a worker: the wire
 * picture stays bounded however the error nests, and rebuilds as the same classes.
 */
import { describe, expect, it } from 'vitest';
import { fromWireError, toWireError, type WireError } from '../../engine/runtime/protocol.js';

function count(w: WireError): number {
  return 1 + (w.cause ? count(w.cause) : 0) + (w.errors ?? []).reduce((n, e) => n + count(e), 0);
}

describe('wire errors', () => {
  it('nested AggregateErrors (16 × 16 × 16 …) stay within 64 errors in all, and say how many were left out', () => {
    const nest = (level: number): Error =>
      level === 0
        ? new RangeError('leaf', { cause: new Error('leaf cause') })
        : new AggregateError(Array.from({ length: 16 }, () => nest(level - 1)), `level ${level}`, { cause: new TypeError(`cause ${level}`) });
    const w = toWireError(nest(4));
    expect(count(w)).toBeLessThanOrEqual(64);
    expect(w.errorsOmitted).toBeGreaterThan(0);
    const back = fromWireError(w) as AggregateError;
    expect(back).toBeInstanceOf(AggregateError);
    expect(back.message).toBe('level 4');
    expect(back.errors[0]).toBeInstanceOf(AggregateError);
  });

  it('an errors getter that throws drops the errors, not the error', () => {
    const agg = new AggregateError([new Error('x')], 'outer');
    Object.defineProperty(agg, 'errors', { get() { throw new Error('no'); } });
    const back = fromWireError(toWireError(agg));
    expect(back.message).toBe('outer');
    expect(back.name).toBe('AggregateError');
    expect(back).toBeInstanceOf(AggregateError);
    expect((back as AggregateError).errors).toEqual([]);
  });
});
