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
  it('nested AggregateErrors (16 × 16 × 16) stay within 64 errors in all, and say how many were left out', () => {
    const nest = (level: number): Error =>
      level === 0
        ? new RangeError('leaf', { cause: new Error('leaf cause') })
        : new AggregateError(Array.from({ length: 16 }, () => nest(level - 1)), `level ${level}`, { cause: new TypeError(`cause ${level}`) });
    const w = toWireError(nest(3));
    expect(count(w)).toBeLessThanOrEqual(64);
    // The root's 16 all cross; the budget runs out a level down, which says so.
    expect(w.errors).toHaveLength(16);
    const omitted = (x: WireError): number => (x.errorsOmitted ?? 0) + (x.errors ?? []).reduce((n, e) => n + omitted(e), 0);
    expect(omitted(w)).toBeGreaterThan(0);
    const back = fromWireError(w) as AggregateError;
    expect(back).toBeInstanceOf(AggregateError);
    expect(back.message).toBe('level 3');
    expect(back.errors[0]).toBeInstanceOf(AggregateError);
  });

  it('spends the budget breadth-first: the root keeps all its errors before any of theirs cross (review42)', () => {
    // Promise.any over 5 attempts, each failing with 16 errors: depth-first, the first four
    // attempts took the budget and the fifth was left out.
    const attempts = Array.from({ length: 5 }, (_, a) => new AggregateError(Array.from({ length: 16 }, (_, i) => new Error(`attempt ${a} sub ${i}`)), `attempt ${a} failed`));
    const w = toWireError(new AggregateError(attempts, 'all 5 attempts failed'));
    expect(count(w)).toBe(64);
    expect(w.errors).toHaveLength(5);
    expect(w.errorsOmitted).toBeUndefined();
    const kept = w.errors!.map((e) => e.errors!.length);
    expect(kept.reduce((a, b) => a + b, 0)).toBe(64 - 1 - 5);
    w.errors!.forEach((e, i) => expect(e.errorsOmitted ?? 0).toBe(16 - kept[i]!));
    // An AggregateError at the depth limit says how many errors it could not bring.
    let deep: Error = new AggregateError([new Error('a'), new Error('b'), new Error('c')], 'deep aggregate');
    for (let d = 0; d < 4; d++) deep = new Error(`wrapper ${d}`, { cause: deep });
    let r = fromWireError(toWireError(deep));
    while (r.cause instanceof Error) r = r.cause;
    expect(r).toBeInstanceOf(AggregateError);
    expect((r as AggregateError).errors).toEqual([]);
    expect((r as Error & { errorsOmitted?: number }).errorsOmitted).toBe(3);
  });

  it('never throws: a revoked proxy or a throwing getPrototypeOf trap (review43)', () => {
    const { proxy, revoke } = Proxy.revocable(new Error('x'), {});
    revoke();
    expect(toWireError(proxy).message).toMatch(/non-Error/);
    expect(toWireError(new Proxy(new Error('y'), { getPrototypeOf() { throw new Error('trap'); } })).message).toMatch(/non-Error/);
  });

  it('causes that are objects count against the budget too (review43: 16 × 16 of them made 128)', () => {
    const leaf = (): Error => new Error('leaf', { cause: { not: 'an error' } });
    const agg = (kids: Error[]): AggregateError => new AggregateError(kids, 'agg', { cause: { not: 'an error' } });
    const tree = agg(Array.from({ length: 16 }, () => agg(Array.from({ length: 16 }, leaf))));
    expect(count(toWireError(tree))).toBeLessThanOrEqual(64);
  });

  it('stays small enough to send: 64 errors of 64 Ki 3-byte characters encode under the codec limit (review44)', async () => {
    const { ValueCodec } = await import('../../engine/codec/codec.js');
    const big = (i: number): Error => new Error('€'.repeat(64 * 1024), { cause: new Error(`c${i}`) });
    const tree = new AggregateError(Array.from({ length: 16 }, (_, i) => new AggregateError(Array.from({ length: 16 }, (_, k) => big(k)), '€'.repeat(64 * 1024), { cause: big(i) })), 'root');
    const w = toWireError(tree);
    expect(count(w)).toBe(64);
    expect(new ValueCodec().encode(w).length).toBeLessThan(16 << 20);
  });

  it('one unreadable entry of errors becomes a placeholder; its siblings cross (review44)', () => {
    const { proxy, revoke } = Proxy.revocable(new Error('gone'), {});
    revoke();
    const w = toWireError(new AggregateError([new Error('a'), proxy, new Error('b')], 'three'));
    expect(w.errors!.map((e) => e.message)).toEqual(['a', '(an entry that could not be read)', 'b']);
  });

  it('reads stack once (a getter that answers a string, then undefined, keeps the error an error)', () => {
    const e = new Error('real message', { cause: new Error('c') });
    let reads = 0;
    Object.defineProperty(e, 'stack', { get: () => (reads++ === 0 ? 'a stack' : undefined) });
    const w = toWireError(e);
    expect(w).toMatchObject({ message: 'real message', stack: 'a stack', cause: { message: 'c' } });
  });

  it('review45: text never over budget, huge bigints described, unprintable messages keep the error, dropped lists return their text, pairs not cut', () => {
    // An unprintable message when under 13 characters of budget were left: the budget went
    // negative and the next message crossed whole.
    const unprintable = { toString() { throw new Error('no'); } };
    const big = (): Error => new Error('r'.repeat(64 * 1024));
    const odd = new Error('x');
    Object.defineProperty(odd, 'message', { value: unprintable });
    const tree = new AggregateError([...Array.from({ length: 15 }, big), odd, new Error('s'.repeat(5_000_000))], 'r'.repeat(64 * 1024));
    const w = toWireError(tree);
    const chars = (x: WireError): number => x.message.length + (x.stack?.length ?? 0) + (x.cause ? chars(x.cause) : 0) + (x.errors ?? []).reduce((n, e) => n + chars(e), 0);
    expect(chars(w)).toBeLessThanOrEqual(1 << 20);
    expect(w.errors!.every((e) => e.message.length <= 64 * 1024)).toBe(true);
    // A bigint cause of 140 M bits is described, not sent.
    expect(toWireError(new Error('boom', { cause: 1n << 140_000_000n })).causeValue).toMatch(/bigint of more than 1024 bits/);
    expect(toWireError(new Error('ok', { cause: 2n ** 100n })).causeValue).toBe(2n ** 100n);
    // An unprintable message makes V8's lazy stack throw: the error stays an error with its code and cause.
    const e = Object.assign(new Error('m', { cause: 'the real cause' }), { code: 'E_MINE' });
    Object.defineProperty(e, 'message', { value: unprintable });
    expect(toWireError(e)).toMatchObject({ message: '(unprintable)', code: 'E_MINE', causeValue: 'the real cause' });
    // A 64 Ki cut never splits a surrogate pair.
    const pairs = toWireError(new Error('a' + '😀'.repeat(40_000)));
    const last = pairs.message.charCodeAt(pairs.message.length - 1);
    expect(last >= 0xd800 && last <= 0xdbff).toBe(false);
  });

  it('placeholders and string causes count against the text budget too (review46)', () => {
    const big = (): Error => new Error('m'.repeat(64 * 1024), { cause: 'c'.repeat(64 * 1024) });
    const odd = (): unknown => ({ toString: () => 'o'.repeat(5000) });
    const tree = new AggregateError([...Array.from({ length: 8 }, big), ...Array.from({ length: 8 }, odd)], 'root', { cause: { not: 'an error' } });
    const w = toWireError(tree);
    const chars = (x: WireError): number => x.message.length + (x.stack?.length ?? 0) + (typeof x.causeValue === 'string' ? x.causeValue.length : 0)
      + (x.cause ? chars(x.cause) : 0) + (x.errors ?? []).reduce((n, e) => n + chars(e), 0);
    expect(chars(w)).toBeLessThanOrEqual(1 << 20);
    // The description of a huge bigint cause is text too (review47).
    const bigs = new AggregateError([...Array.from({ length: 8 }, () => new Error('m'.repeat(128 * 1024))), ...Array.from({ length: 16 }, () => new Error('b', { cause: 1n << 2000n }))], 'root');
    expect(chars(toWireError(bigs))).toBeLessThanOrEqual(1 << 20);
    // Once the budget is spent, the description is left out, not cut to '' (review51: the cause
    // then read as an empty string); each bigint cause is whole or absent.
    const spent = toWireError(new AggregateError(Array.from({ length: 16 }, () => new Error('m'.repeat(70_000), { cause: 1n << 2000n })), 'agg'));
    const causes = spent.errors!.map((e) => e.causeValue);
    expect(causes.every((c) => c === undefined || c === '(a bigint of more than 1024 bits)')).toBe(true);
    expect(causes).toContain(undefined);
    expect(chars(spent)).toBeLessThanOrEqual(1 << 20);
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
