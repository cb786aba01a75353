import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { addExtension, Packr } from 'msgpackr';
import { describe, expect, it, vi } from 'vitest';
import { CODEC_VERSION, ExactViews, FORMAT_PLAIN, FORMAT_RECORDS, FORMAT_SHARED, SharedStructures, ValueCodec } from '../../engine/codec/index.js';
import { newWalkState, walkValue } from '../../engine/codec/codec.js';
import { ErrorCodes } from '../../engine/index.js';
import { Arena } from '../../engine/runtime/arena.js';
import { createSharedMemory } from '../../engine/runtime/wasm.js';

const selfContained = new ValueCodec();
const engineLocal = new ValueCodec({ structures: new SharedStructures(new Arena(createSharedMemory(2 << 20), true)) });

/** What a decode answers: `{ value }`, or undefined when it refused with ERR_HOTPATH_CORRUPT_VALUE (any other throw fails). */
function decodedOrCorrupt(decode: () => unknown): { value: unknown } | undefined {
  try {
    return { value: decode() };
  } catch (err) {
    expect((err as { code?: string }).code).toBe(ErrorCodes.CORRUPT_VALUE);
    return undefined;
  }
}

// Values the codec promises to round-trip (fast-check's `anything` minus what it refuses).
const value = fc.letrec((tie) => ({
  leaf: fc.oneof(
    fc.constant(null), fc.constant(undefined), fc.boolean(), fc.integer(),
    fc.double({ noNaN: false }).map((d) => (Object.is(d, -0) ? 0 : d)), // -0 decodes as 0 (documented)
    fc.string({ unit: 'binary' }), fc.bigInt({ min: -(1n << 200n), max: 1n << 200n }),
    fc.date({ noInvalidDate: true }), fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
  ),
  node: fc.oneof(
    { depthSize: 'small' },
    tie('leaf'),
    fc.array(tie('node'), { maxLength: 5 }),
    fc.dictionary(fc.string().filter((k) => k !== '__proto__'), tie('node'), { maxKeys: 5 }),
    fc.array(fc.tuple(fc.oneof(fc.string(), fc.integer()), tie('node')), { maxLength: 4 }).map((e) => new Map(e)),
    fc.array(fc.oneof(fc.string(), fc.integer()), { maxLength: 4 }).map((e) => new Set(e)),
  ),
})).node;

describe.each([
  ['self-contained', selfContained],
  ['engine-local (shared structures)', engineLocal],
])('ValueCodec, %s', (_kind, codec) => {
  it('round-trips any supported value (property)', () => {
    fc.assert(
      fc.property(value, (v) => {
        const bytes = codec.encode(v);
        expect([FORMAT_PLAIN, FORMAT_RECORDS, FORMAT_SHARED]).toContain(bytes[0]);
        expect(codec.decode(bytes)).toEqual(v);
      }),
      { numRuns: 1000 },
    );
  });

  it('the walk\'s size bound never exceeds the written size (it refuses values before writing them)', () => {
    const st = newWalkState();
    fc.assert(
      fc.property(value, (v) => {
        walkValue(v, 'value', st);
        expect(st.bytes).toBeLessThanOrEqual(codec.encode(v).length);
      }),
      { numRuns: 1000 },
    );
  });

  it('keeps Buffers as Buffers, Maps as Maps, BigInts as BigInts, and cycles', () => {
    const v: Record<string, unknown> = { b: Buffer.from('hi'), m: new Map<unknown, unknown>([[1, 'one'], ['k', { z: 1n << 100n }]]), d: new Date(7) };
    v.self = v;
    const back = codec.decode(codec.encode(v)) as Record<string, unknown>;
    expect(Buffer.isBuffer(back.b)).toBe(true);
    expect(back.m).toBeInstanceOf(Map);
    expect((back.m as Map<unknown, { z: bigint }>).get('k')!.z).toBe(1n << 100n);
    expect(back.self).toBe(back);
  });

  it.runIf(codec === selfContained)('decodes in a fresh codec (no shared record state)', () => {
    const a = new ValueCodec();
    const objs = Array.from({ length: 5 }, (_, i) => ({ id: i, name: `n${i}`, tags: ['a', 'b'] }));
    const encoded = objs.map((o) => a.encode(o));
    for (let i = encoded.length - 1; i >= 0; i--) expect(new ValueCodec().decode(encoded[i]!)).toEqual(objs[i]);
  });

  it('refuses functions, symbols and own __proto__ keys, naming the path', () => {
    expect(() => codec.encode({ a: { f: () => 1 } })).toThrow(/value\.a\.f is a function/);
    expect(() => codec.encode([1, Symbol('s')])).toThrow(/value\.1 is a symbol/);
    expect(() => codec.encode(new Map([['k', () => 1]]))).toThrow(/value\.k is a function/);
    expect(() => codec.encode(JSON.parse('{"x":{"__proto__":{"polluted":true}}}'))).toThrow(/value\.x has an own "__proto__" key/);
    // What structured clone cannot copy either was written as {} (review28): refused.
    expect(() => codec.encode({ a: new WeakMap() })).toThrow(/value\.a is a WeakMap/);
    expect(() => codec.encode([new WeakSet()])).toThrow(/value\.0 is a WeakSet/);
    expect(() => codec.encode(Promise.resolve(1))).toThrow(/value is a Promise/);
    expect(() => codec.encode({ r: new WeakRef({}) })).toThrow(/value\.r is a WeakRef/);
  });

  it('builds a name given as a function only for an error', () => {
    let calls = 0;
    const name = () => {
      calls++;
      return 'the value of "k"';
    };
    expect(codec.decode(codec.encode({ a: [1, 'x'] }, name))).toEqual({ a: [1, 'x'] });
    expect(calls).toBe(0);
    expect(() => codec.encode({ a: { f: () => 1 } }, name)).toThrow(/the value of "k"\.a\.f is a function/);
    expect(() => codec.encode(Symbol('s'), name)).toThrow(/the value of "k" is a symbol/);
    const small = new ValueCodec({ maxBytes: 64 });
    expect(() => small.encode('x'.repeat(200), name)).toThrow(/the value of "k"/);
    expect(calls).toBeGreaterThanOrEqual(3);
  });

  it('decoding hostile records (format 2: self-describing structures) cannot pollute prototypes either', () => {
    // msgpackr records whose key is "__proto__" (written as __proto_x, then patched), four of
    // them so that msgpackr's generated (optimised) reader for the structure runs too.
    // No structured clone: format 1 refuses back-references.
    const packr = new Packr({ useRecords: true, moreTypes: true });
    const obj = { __proto_x: { polluted: true }, b: 2 };
    const packed = Buffer.from(packr.pack([obj, obj, obj, obj]).toString('latin1').split('__proto_x').join('__proto__'), 'latin1');
    for (const format of [FORMAT_RECORDS, FORMAT_PLAIN]) {
      const out = codec.decode(Buffer.concat([Buffer.from([format]), packed])) as Array<Record<string, unknown>>;
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect(out).toHaveLength(4);
      for (const o of out) {
        expect(Object.getPrototypeOf(o)).toBe(Object.prototype); // the key was renamed, not applied
        expect(o.polluted).toBeUndefined();
        expect(o.b).toBe(2);
      }
    }
  });

  it('decoding hostile bytes cannot pollute prototypes', () => {
    // Hand-written msgpack: {"__proto__": {"polluted": true}, "constructor": {"prototype": {"p": 1}}}
    const map = (entries: Array<[string, Buffer]>): Buffer =>
      Buffer.concat([Buffer.from([0x80 | entries.length]), ...entries.flatMap(([k, v]) => [str(k), v])]);
    const str = (s: string): Buffer => Buffer.concat([Buffer.from([0xa0 | s.length]), Buffer.from(s)]);
    const hostile = map([
      ['__proto__', map([['polluted', Buffer.from([0xc3])]])],
      ['constructor', map([['prototype', map([['p', Buffer.from([0x01])]])]])],
    ]);
    const out = codec.decode(Buffer.concat([Buffer.from([CODEC_VERSION]), hostile]));
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((Object.prototype as unknown as Record<string, unknown>).p).toBeUndefined();
    expect(out).toBeDefined();
    if (out !== null && typeof out === 'object' && !(out instanceof Map)) {
      expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
      expect((out as Record<string, unknown>).polluted).toBeUndefined();
    }
  });

  it.each([
    ['empty input', Buffer.alloc(0)],
    ['an unknown format byte', Buffer.from([0x7f, 0xc0])],
    ['a version byte alone', Buffer.from([CODEC_VERSION])],
    ['trailing bytes', Buffer.concat([selfContained.encode({ a: 1 }), Buffer.from([1, 2, 3])])],
  ])('rejects %s with ERR_HOTPATH_CORRUPT_VALUE', (_label, bytes) => {
    expect(() => codec.decode(bytes)).toThrow(expect.objectContaining({ code: ErrorCodes.CORRUPT_VALUE }));
  });

  it('a value followed by more bytes is refused without its contents in the error or its cause', () => {
    const secret = { token: 'do-not-log-me' };
    const bytes = Buffer.concat([codec.encode(secret), Buffer.from([1])]);
    for (const decode of [() => codec.decode(bytes), () => codec.decodeCopying(bytes, bytes.length)]) {
      let err: unknown;
      try {
        decode();
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ code: ErrorCodes.CORRUPT_VALUE, message: 'corrupt encoded value: bytes left over after the value' });
      expect(JSON.stringify(err) + String((err as Error).cause)).not.toContain('do-not-log-me');
    }
  });

  it('rejects every truncation of a valid value with a typed error, never a crash or a wrong value', () => {
    fc.assert(
      fc.property(value, fc.nat(), (v, cut) => {
        const bytes = codec.encode(v);
        if (bytes.length < 2) return;
        const n = 1 + (cut % (bytes.length - 1));
        let out: unknown;
        try {
          out = codec.decode(bytes.subarray(0, n));
        } catch (err) {
          expect((err as { code?: string }).code).toBe(ErrorCodes.CORRUPT_VALUE);
          return;
        }
        // A prefix that happens to be a complete, different value would be a silent wrong read.
        expect(out).toEqual(v);
      }),
      { numRuns: 500 },
    );
  });

  // msgpackr bounds reads by one check of the final position, and its bundled-strings extension
  // (0x62, always registered; this codec never writes it) moves the position after its read —
  // forward, or back with a negative size. Values share ArrayBuffers with other data (one
  // ioredis reply chunk holds every value of an MGET; Node's pool; msgpackr's output slab): a
  // decode must read the value's own bytes only (a faster decode through a view of the whole
  // slab leaked both ways, found in review).
  it('never returns bytes lying past the end of the input in the same ArrayBuffer', () => {
    const slab = Buffer.alloc(256);
    // format | fixext4 0x62 size 6 | bin8 of 40 bytes | the bundle: "" ""
    const crafted = [FORMAT_PLAIN, 0xd6, 0x62, 0, 0, 0, 6, 0xc4, 40, 0xa0, 0xa0];
    slab.set(crafted, 0);
    slab.write('SECRET-neighbour-value-0123456789abcdef', crafted.length, 'latin1');
    for (const input of [slab.subarray(0, crafted.length), Buffer.from(crafted)]) {
      const out = decodedOrCorrupt(() => codec.decode(input));
      if (out === undefined) continue;
      // msgpackr clamps the over-long binary at the input's end: whatever comes back lies inside it.
      expect((out.value as Uint8Array).length).toBeLessThanOrEqual(crafted.length);
      expect(Buffer.from(out.value as Uint8Array).toString('latin1')).not.toContain('SECRET');
    }
  });

  it('never returns bytes lying before the start of the input in the same ArrayBuffer', () => {
    const slab = Buffer.alloc(256);
    const victim = selfContained.encode({ token: 'secret-session-abc' });
    slab.set(victim, 0);
    const strAt = victim.indexOf(0xb2); // the fixstr header of the 18-character secret
    const o = victim.length; // the crafted value starts right after it
    // format | fixarray 2 | fixext4 0x62 with a negative size landing on the secret's header |
    // 0xc1 -18 (18 characters of bundle string 0) | fixext4 0x62 size 5 | nil | bundle "" ""
    const size = ((strAt - (o + 8)) + 4 + 2 ** 32) >>> 0;
    const crafted = [FORMAT_PLAIN, 0x92, 0xd6, 0x62, size >>> 24, (size >>> 16) & 255, (size >>> 8) & 255, size & 255, 0xc1, 0xee,
      0xd6, 0x62, 0, 0, 0, 5, 0xc0, 0xa0, 0xa0];
    slab.set(crafted, o);
    const out = decodedOrCorrupt(() => codec.decode(slab.subarray(o, o + crafted.length)));
    if (out !== undefined) expect(JSON.stringify(out.value)).not.toContain('secret-session');
  });

  it('survives random garbage and mutated values in every format it reads (typed error or a value, never another throw)', () => {
    const formats = codec.shared ? [FORMAT_PLAIN, FORMAT_RECORDS, FORMAT_SHARED] : [FORMAT_PLAIN, FORMAT_RECORDS];
    const check = (b: Uint8Array): void => {
      try {
        codec.decode(b);
      } catch (err) {
        expect((err as { code?: string }).code).toBe(ErrorCodes.CORRUPT_VALUE);
      }
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    };
    fc.assert(
      fc.property(fc.constantFrom(...formats), fc.uint8Array({ minLength: 1, maxLength: 64 }), (format, b) => {
        b[0] = format;
        check(b);
      }),
      { numRuns: 2000 },
    );
    // Real values (each format: plain, records with a Map and a Date, engine-local records),
    // with a few bytes overwritten.
    const seeds = [
      codec.encode({ id: 7, name: 'x', tags: ['a', 'b'], nested: { deep: [1, 2.5, null, true] } }),
      codec.encode({ m: new Map<unknown, unknown>([['k', { v: 1 }], [2, new Date(0)]]), big: 1n << 70n, buf: Buffer.from('abc') }),
      codec.encode([{ a: 1, b: 'two' }, { a: 3, b: 'four' }, { a: 5, b: 'six' }]),
    ];
    fc.assert(
      fc.property(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), (seed, edits) => {
        const b = Buffer.from(seed);
        for (const [at, v] of edits) b[1 + (at % (b.length - 1))] = v; // the format byte stays
        check(b);
      }),
      { numRuns: 3000 },
    );
  });

  it('enforces maxBytes both ways', () => {
    const small = new ValueCodec({ maxBytes: 100 });
    expect(() => small.encode('x'.repeat(200))).toThrow(expect.objectContaining({ code: ErrorCodes.VALUE_TOO_LARGE }));
    expect(small.decode(small.encode('x'.repeat(50)))).toBe('x'.repeat(50));
    const big = selfContained.encode('y'.repeat(500));
    expect(() => small.decode(big)).toThrow(expect.objectContaining({ code: ErrorCodes.CORRUPT_VALUE }));
    expect(() => new ValueCodec({ maxBytes: -1 })).toThrow(/options\.maxBytes/);
  });
});

describe('formats', () => {
  const codec = selfContained;
  it('writes plain msgpack unless the value holds a Map', () => {
    expect(codec.encode({ a: [1, { b: 2 }] })[0]).toBe(FORMAT_PLAIN);
    expect(codec.encode({ a: [1, { b: new Map() }] })[0]).toBe(FORMAT_RECORDS);
  });

  it.each([['self-contained', selfContained], ['engine-local', engineLocal]])('%s: walks deep and cyclic values without stack or time blow-ups', (_k, codec) => {
    let deep: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 200; i++) deep = { next: deep };
    expect(codec.decode(codec.encode(deep))).toEqual(deep);
    const ring: Array<Record<string, unknown>> = Array.from({ length: 100 }, () => ({}));
    ring.forEach((o, i) => (o.next = ring[(i + 1) % 100]));
    const back = codec.decode(codec.encode(ring[0])) as Record<string, unknown>;
    let p = back;
    for (let i = 0; i < 100; i++) p = p.next as Record<string, unknown>;
    expect(p).toBe(back);
  });
});

describe('hostile bytes and values cost time linear in their size (review62)', () => {
  /** A value of shared references, `depth` levels of [x, x, pad]: tiny written once per object, 2^depth objects walked out. */
  function dag(depth: number, leaf: unknown): unknown {
    let x = leaf;
    for (let i = 0; i < depth; i++) x = [x, x, `pad-${i}`];
    return x;
  }

  /** Bytes of one array of `n` records of a single `keyLength`-character key: the key is written once, used n times. */
  function reusedRecordKey(n: number, keyLength: number): Buffer {
    const key = 'k'.repeat(keyLength);
    const packr = new Packr({ useRecords: true, maxSharedStructures: 0 } as never);
    return packr.pack(Array.from({ length: n }, (_, i) => ({ [key]: i })));
  }

  it('finds bytes left over without formatting the value: a DAG of back-references, a record key used thousands of times', () => {
    const records = selfContained.encode(dag(40, new Map([['k', 'v']]))); // a Map: format 2, with back-references
    const hostile = [
      Buffer.concat([records, Buffer.from([0xc0])]),
      // format 1 with an inline record definition: a 20 000-character key in each of 5 000 objects
      Buffer.concat([Buffer.from([FORMAT_PLAIN]), reusedRecordKey(5_000, 20_000), Buffer.from([0xc0])]),
    ];
    const native = JSON.stringify;
    // msgpackr's unpack formats what it read with JSON.stringify for its "end of buffer not reached"
    // message: every shared reference expanded, every record key repeated — minutes and gigabytes.
    const spy = vi.spyOn(JSON, 'stringify');
    try {
      for (const bad of hostile) {
        for (const decode of [() => selfContained.decode(bad), () => selfContained.decodeCopying(bad, bad.length), () => engineLocal.decode(bad)]) {
          expect(decode).toThrow(expect.objectContaining({ code: ErrorCodes.CORRUPT_VALUE, message: 'corrupt encoded value: bytes left over after the value' }));
        }
      }
      expect(spy).not.toHaveBeenCalled(); // before: called with the decoded value
      expect(JSON.stringify).toBe(spy); // put back as it was
    } finally {
      spy.mockRestore();
    }
    expect(JSON.stringify).toBe(native);
    // the value itself decodes, its references shared again (toEqual would walk 2^40 paths)
    let node = selfContained.decode(records) as unknown[];
    for (let i = 39; i >= 0; i--) {
      expect(node[0]).toBe(node[1]);
      expect(node[2]).toBe(`pad-${i}`);
      node = node[0] as unknown[];
    }
    expect(node).toEqual(new Map([['k', 'v']]));
  });

  it('reads back-references in format 1 (the first builds wrote them there), refuses them in format 3', () => {
    const shared = { a: 1 };
    const records = selfContained.encode([shared, shared, new Map()]); // format 2: `shared` written once, then a pointer
    expect(selfContained.decode(records)).toEqual([{ a: 1 }, { a: 1 }, new Map()]);
    const old = Buffer.from(records);
    old[0] = FORMAT_PLAIN;
    expect((engineLocal.decode(old) as unknown[])[1]).toEqual({ a: 1 });
    const forged = Buffer.from(records);
    forged[0] = FORMAT_SHARED;
    expect(() => engineLocal.decode(forged)).toThrow(expect.objectContaining({ code: ErrorCodes.CORRUPT_VALUE }));
  });

  it.each([
    ['self-contained', () => new ValueCodec({ maxBytes: 1024 })],
    ['engine-local', () => new ValueCodec({ maxBytes: 1024, structures: new SharedStructures(new Arena(createSharedMemory(2 << 20), true)) })],
  ])('%s: a value of shared objects over maxBytes once written out is refused before it is written', (_kind, make) => {
    const c = make();
    for (const depth of [16, 60]) { // depth 60: 2^60 objects written out
      let x: unknown = { leaf: 'x'.repeat(50) };
      for (let i = 0; i < depth; i++) x = { a: x, b: x };
      // before: written out in full (depth 16: 6 MB, then the error; 60: never ends)
      expect(() => c.encode(x, 'the value')).toThrow(expect.objectContaining({ code: ErrorCodes.VALUE_TOO_LARGE, message: expect.stringMatching(/^the value encodes to at least \d/) }));
    }
    // the same sharing under the limit is written, each use a copy
    let y: unknown = { leaf: 'y' };
    for (let i = 0; i < 4; i++) y = { a: y, b: y };
    expect(c.decode(c.encode(y))).toEqual(y);
  });

  it('engine-local: past 65 536 objects a shared object makes it walk first; distinct objects are just written', () => {
    const rows = Array.from({ length: 70_000 }, (_, i) => ({ id: i }));
    const bytes = engineLocal.encode(rows);
    expect(bytes[0]).toBe(FORMAT_SHARED);
    expect(engineLocal.decode(bytes)).toEqual(rows);
    const shared = { s: 'x'.repeat(100) };
    const sharing = rows.map((r) => ({ ...r, shared })); // 70 000 uses of one object: over 1 MiB written
    const small = new ValueCodec({ maxBytes: 1 << 20, structures: new SharedStructures(new Arena(createSharedMemory(2 << 20), true)) });
    expect(() => small.encode(sharing)).toThrow(expect.objectContaining({ code: ErrorCodes.VALUE_TOO_LARGE, message: expect.stringContaining('at least') }));
    const withFunction = rows.map((r, i) => (i === 69_500 ? { ...r, f: () => 1 } : r));
    expect(() => engineLocal.encode(withFunction)).toThrow('value.69500.f is a function and cannot be encoded');
    const cyclic: Record<string, unknown>[] = rows.map((r) => ({ ...r }));
    cyclic[69_999]!.self = cyclic;
    const c = engineLocal.decode(engineLocal.encode(cyclic)) as Record<string, unknown>[];
    expect(c[69_999]!.self).toBe(c);
  });

  it('engine-local: a write that passes maxBytes stops at the next object and the walk refuses the value', () => {
    const c = new ValueCodec({ maxBytes: 1 << 20, structures: new SharedStructures(new Arena(createSharedMemory(2 << 20), true)) });
    const blob = Buffer.alloc(256 << 10);
    const rows = Array.from({ length: 100 }, (_, i) => ({ i, blob })); // 25 MiB once written
    // before: written out in full, then "encodes to 26215... bytes"
    expect(() => c.encode(rows)).toThrow(expect.objectContaining({ code: ErrorCodes.VALUE_TOO_LARGE, message: expect.stringContaining('at least') }));
    expect(c.decode(c.encode(rows.slice(0, 3)))).toEqual(rows.slice(0, 3));
  });

  it('engine-local: the maxBytes stop is measured from 0 when msgpackr moves to a new buffer (review72)', () => {
    // msgpackr keeps one write buffer for the process: fill it to within 1 KiB of its end, so the
    // next write starts a new buffer at 0 (before: measured from the old position, the stop came
    // only past that position plus maxBytes — the whole value was written)
    const other = new Packr();
    other.useBuffer(Buffer.alloc(16 << 20));
    other.pack(Buffer.alloc((16 << 20) - 1024));
    const c = new ValueCodec({ maxBytes: 1 << 20, structures: new SharedStructures(new Arena(createSharedMemory(2 << 20), true)) });
    const blob = Buffer.alloc(256 << 10);
    const rows = Array.from({ length: 48 }, (_, i) => ({ i, blob })); // 12 MiB: less than the old position
    expect(() => c.encode(rows)).toThrow(expect.objectContaining({ code: ErrorCodes.VALUE_TOO_LARGE, message: expect.stringContaining('at least') }));
  });

  it('engine-local: the write after a walk is not size-checked again (it stays in the engine-local format)', () => {
    const other = new Packr();
    other.useBuffer(Buffer.alloc(4 << 20));
    other.pack(Buffer.alloc(900_000)); // msgpackr's next write starts ~900 kB into its buffer
    const c = new ValueCodec({ maxBytes: 1 << 20, structures: new SharedStructures(new Arena(createSharedMemory(2 << 20), true)) });
    const shared = { s: 'x' };
    const rows = Array.from({ length: 70_000 }, (_, i) => ({ i, shared })); // walked (a shared object), ~700 kB
    const bytes = c.encode(rows);
    expect(bytes[0]).toBe(FORMAT_SHARED); // before: the re-check counted from 0 and fell back to format 1
    expect(c.decode(bytes)).toEqual(rows);
  });

  it('engine-local: an encode from inside an encode (a getter) keeps the outer write\'s count', () => {
    const c = new ValueCodec({ maxBytes: 1 << 20, structures: new SharedStructures(new Arena(createSharedMemory(2 << 20), true)) });
    // every node of a DAG of 2^20 objects written out has a getter that encodes: before, each one
    // reset the count, so the DAG was written out in full and never walked ("encodes to N bytes")
    let x: object = { leaf: 1 };
    for (let i = 0; i < 20; i++) {
      const below = x;
      x = { a: below, b: below, get g() { return c.encode(i).length; } };
    }
    expect(() => c.encode(x)).toThrow(expect.objectContaining({ code: ErrorCodes.VALUE_TOO_LARGE, message: expect.stringContaining('at least') }));
  });

  it('a class instance is measured and checked by what its toJSON returns, as msgpackr writes it', () => {
    class Cached {
      readonly cache = Buffer.alloc(2 << 20);
      constructor(readonly id: number) {}
      toJSON(): unknown {
        return { id: this.id };
      }
    }
    for (const c of [new ValueCodec({ maxBytes: 1 << 20 }), new ValueCodec({ maxBytes: 1 << 20, structures: new SharedStructures(new Arena(createSharedMemory(2 << 20), true)) })]) {
      expect(c.decode(c.encode({ item: new Cached(7) }))).toEqual({ item: { id: 7 } }); // before: refused, "at least 2097155 bytes"
      let dag: unknown = { leaf: 'x' };
      for (let i = 0; i < 40; i++) dag = { a: dag, b: dag };
      class Wrapper {
        toJSON(): unknown {
          return dag;
        }
      }
      expect(() => c.encode([new Wrapper()])).toThrow(expect.objectContaining({ code: ErrorCodes.VALUE_TOO_LARGE }));
    }
  });

  it('writes an object of 65 536 keys or more in the self-contained format', () => {
    const c = new ValueCodec({ maxBytes: 8 << 20 });
    const big: Record<string, number> = {};
    for (let i = 0; i < 70_000; i++) big[`k${i}`] = i;
    const bytes = c.encode(big); // before: msgpackr's plain Error ("use the variableMapSize option")
    expect(bytes[0]).toBe(FORMAT_PLAIN);
    expect(c.decode(bytes)).toEqual(big);
    expect(engineLocal.decode(engineLocal.encode(big))).toEqual(big);
  });

  it('an Error named after an inherited property decodes as an Error of that name, never msgpackr\'s error table', () => {
    for (const name of ['valueOf', 'constructor', 'hasOwnProperty', 'toString', '__proto__', 'isPrototypeOf', '__lookupGetter__']) {
      // extension 0x65 (an Error): [name, message, cause]
      const body = new Packr().pack([name, 'm', undefined]);
      const bytes = Buffer.concat([Buffer.from([FORMAT_RECORDS, 0xd4, 0x65, 0x00]), body]);
      const decoded = selfContained.decode(bytes);
      expect(decoded).toBeInstanceOf(Error); // before: the table itself for 'valueOf', a String, a boolean …
      expect(decoded).toMatchObject({ name, message: 'm' });
    }
    const again = selfContained.decode(selfContained.encode(new TypeError('still a TypeError', { cause: new RangeError('r') }))) as TypeError;
    expect(again).toBeInstanceOf(TypeError);
    expect(again.cause).toBeInstanceOf(RangeError);
    expect(selfContained.decode(selfContained.encode(/a+b/gi))).toEqual(/a+b/gi);
  });

  it('an AggregateError keeps its class and message (its errors are not carried)', () => {
    const decoded = selfContained.decode(selfContained.encode(new AggregateError([new Error('one')], 'both failed'))) as AggregateError;
    expect(decoded).toBeInstanceOf(AggregateError);
    expect(decoded.message).toBe('both failed'); // before: "[object Object]", and `errors` its message's characters
    expect(decoded.errors).toEqual([]);
  });

  it('an Error or RegExp field holding shared references is named by its kind, never expanded into a string', () => {
    const packr = new Packr({ structuredClone: true, useRecords: true, maxSharedStructures: 0, moreTypes: true });
    const dag = (depth: number): unknown => {
      let x: unknown = ['a'];
      for (let i = 0; i < depth; i++) x = [x, x];
      return x;
    };
    for (const depth of [3, 60]) { // 60: 2^60 copies of 'a' once joined (before: 355 bytes of depth 26 took 19 s)
      const message = selfContained.decode(Buffer.from([FORMAT_RECORDS, 0xd4, 0x65, 0x00, ...packr.pack(['Error', dag(depth), undefined])])) as Error;
      expect(message.message).toBe('[object Array]');
      const name = selfContained.decode(Buffer.from([FORMAT_RECORDS, 0xd4, 0x65, 0x00, ...packr.pack([dag(depth), 'm', undefined])])) as Error;
      expect(name.name).toBe('[object Array]');
      expect(() => selfContained.decode(Buffer.from([FORMAT_RECORDS, 0xd4, 0x78, 0x00, ...packr.pack([dag(depth), 'g'])]))).not.toThrow();
    }
  });

  it('review70: a binary subclass with its own toJSON is measured by it; an Error\'s primitive name is kept; a bad RegExp is refused without quoting it', () => {
    class Packed extends Uint8Array {
      toJSON(): unknown {
        return { n: this.length };
      }
    }
    const c = new ValueCodec({ maxBytes: 1 << 20 });
    expect(c.decode(c.encode({ x: new Packed(2 << 20) }))).toEqual({ x: { n: 2 << 20 } }); // before: "at least 2097155 bytes"
    const named = selfContained.decode(Buffer.from([FORMAT_RECORDS, 0xd4, 0x65, 0x00, ...new Packr().pack([42, 'm', undefined])])) as Error;
    expect(named.name).toBe(42); // as msgpackr's own decoder leaves it (before: '42')
    const secret = 'secret-(((';
    let err: unknown;
    try {
      selfContained.decode(Buffer.from([FORMAT_RECORDS, 0xd4, 0x78, 0x00, ...new Packr().pack([secret, ''])]));
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: ErrorCodes.CORRUPT_VALUE });
    expect(String((err as Error).message) + String((err as Error).cause)).not.toContain(secret);
  });

  it('a big BigInt followed by a stray byte is refused (its decimal digits are not written: quadratic)', () => {
    const big = (1n << (8n * 2n ** 20n)) - 1n; // 1 MiB of bits: msgpackr's preview of it took seconds (review68)
    const bytes = selfContained.encode({ big });
    expect(selfContained.decode(bytes)).toEqual({ big });
    expect(() => selfContained.decode(Buffer.concat([bytes, Buffer.from([0xc0])]))).toThrow(expect.objectContaining({ code: ErrorCodes.CORRUPT_VALUE }));
  });

  it('decodes as before when JSON is frozen after the codec loaded (built dist/, a child process)', () => {
    const dist = new URL('../../dist/engine/', import.meta.url).href;
    const code = `
      const { ValueCodec, SharedStructures } = await import('${dist}codec/index.js');
      const { Arena } = await import('${dist}runtime/arena.js');
      const { createSharedMemory } = await import('${dist}runtime/wasm.js');
      const plain = new ValueCodec();
      const local = new ValueCodec({ structures: new SharedStructures(new Arena(createSharedMemory(2 << 20), true)) });
      const values = [plain.encode({ a: 1 }), plain.encode(new Map([[1, 2]])), local.encode({ b: 2 }), plain.encode({ s: 'x'.repeat(2000) })];
      Object.freeze(JSON);
      const out = values.map((v) => { try { const d = (v[0] === 3 ? local : plain).decode(v); return typeof d; } catch (e) { return e.constructor.name + ': ' + e.message; } });
      let trailing;
      try { plain.decode(Buffer.concat([values[0], Buffer.from([0xc0])])); } catch (e) { trailing = e.code; }
      console.log(JSON.stringify([...out, trailing]));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    // before: every format 1/2 decode threw "Cannot assign to read only property 'stringify'"
    expect(JSON.parse(r.stdout)).toEqual(['object', 'object', 'object', 'object', ErrorCodes.CORRUPT_VALUE]);
  });

  it('the bounded JSON.stringify applies to msgpackr\'s check only: other calls inside a decode, and any call after it, are the native ones', () => {
    // msgpackr calls JSON.stringify(key) when it compiles a record reader: bounded, a long key made
    // it throw and msgpackr turned compiled readers off for the thread (review68); a module loaded
    // inside a decode could keep the bounded function for good.
    const big = { s: 'x'.repeat(300_000) };
    let inside = '';
    let kept: typeof JSON.stringify | undefined;
    addExtension({ type: 0x21, read: () => {
      inside = JSON.stringify(big);
      kept = JSON.stringify;
      return 'ok';
    } });
    expect(selfContained.decode(Buffer.from([FORMAT_PLAIN, 0xd4, 0x21, 0x00, 0xc0]))).toBe('ok');
    expect(inside).toHaveLength(300_008);
    expect(kept!(big, (_k, v: unknown) => v)).toHaveLength(300_008);
  });
});

describe('decodeCopying (a reused buffer)', () => {
  it('copies binary fields out, so rewriting the buffer does not change what was decoded', () => {
    const c = new ValueCodec();
    const enc = c.encode({ blob: Buffer.alloc(8, 1), u: new Uint8Array([1, 2, 3]) });
    const scratch = Buffer.alloc(256);
    enc.copy(scratch);
    const v = c.decodeCopying(scratch, enc.length) as { blob: Buffer; u: Uint8Array };
    scratch.fill(9);
    expect([...v.blob]).toEqual(Array(8).fill(1));
    expect([...v.u]).toEqual([1, 2, 3]);
    expect(() => c.decodeCopying(scratch, 0)).toThrow(expect.objectContaining({ code: 'ERR_HOTPATH_CORRUPT_VALUE' }));
  });

  it('reads the value only: a crafted value that reads past its end finds no earlier value', () => {
    // The crafted value decodes from its own bytes (msgpackr clamps the bin), so it can reach L2
    // from Redis; its bundled-strings extension then hides a read running past `end`.
    const c = new ValueCodec();
    const crafted = Buffer.from([FORMAT_PLAIN, 0xd6, 0x62, 0, 0, 0, 6, 0xc4, 40, 0xa0, 0xa0]);
    expect(c.decode(crafted)).toBeInstanceOf(Uint8Array);
    const scratch = Buffer.alloc(256);
    const secret = c.encode('SECRET-another-key-value-0123456789abcdefgh');
    secret.copy(scratch);
    expect(c.decodeCopying(scratch, secret.length)).toMatch(/^SECRET/); // an earlier L2 hit
    crafted.copy(scratch); // the next one, shorter: the earlier value's tail lies past its end
    const out = decodedOrCorrupt(() => c.decodeCopying(scratch, crafted.length));
    if (out !== undefined) {
      // Read through a view of exactly the value: the same answer as decoding its own bytes.
      expect([...(out.value as Uint8Array)]).toEqual([...(c.decode(crafted) as Uint8Array)]);
      expect((out.value as Uint8Array).length).toBeLessThanOrEqual(crafted.length);
    }
    // The same over 1 KiB (a padding string first; views of longer values are kept apart).
    const big = Buffer.concat([Buffer.from([FORMAT_PLAIN, 0x92, 0xda, 0x05, 0x00]), Buffer.alloc(0x500, 0x61), Buffer.from(crafted.subarray(1))]);
    const stale = Buffer.alloc(4096, 0x53); // 'S'
    big.copy(stale);
    const bigOut = decodedOrCorrupt(() => c.decodeCopying(stale, big.length));
    if (bigOut !== undefined) expect(JSON.stringify(bigOut.value)).toBe(JSON.stringify(c.decode(big)));
  });

  it('decodes values in a SharedArrayBuffer (copied out: msgpackr-extract crashes on that memory)', () => {
    const c = new ValueCodec();
    for (const v of [{ s: 'short text', n: 1 }, { s: 'y'.repeat(3000), list: ['abc', 'déjà vu'] }]) {
      const enc = c.encode(v);
      const shared = new Uint8Array(new SharedArrayBuffer(enc.length + 16), 8, enc.length);
      shared.set(enc);
      expect(c.decode(shared)).toEqual(v);
      const reused = new Uint8Array(new SharedArrayBuffer(8192));
      reused.set(enc);
      expect(c.decodeCopying(reused, enc.length)).toEqual(v);
    }
  });

  it('keeps views per buffer: two reused buffers in turn, values of one length with different contents', () => {
    const c = new ValueCodec();
    const [a, b] = [Buffer.alloc(8192), Buffer.alloc(8192)];
    const [va, vb] = [new ExactViews(), new ExactViews()];
    for (const n of [5, 1500, 5000]) {
      for (let i = 0; i < 4; i++) {
        const ea = c.encode('a'.repeat(n));
        const eb = c.encode('b'.repeat(n));
        ea.copy(a);
        eb.copy(b);
        expect(c.decodeCopying(a, ea.length, va)).toBe('a'.repeat(n));
        expect(c.decodeCopying(b, eb.length, vb)).toBe('b'.repeat(n));
        // the codec's own views, which follow the buffer last given
        expect(c.decodeCopying(i % 2 === 0 ? a : b, ea.length)).toBe((i % 2 === 0 ? 'a' : 'b').repeat(n));
      }
    }
  });

  it('refuses an end outside the buffer; views of many lengths and of a replaced buffer', () => {
    const c = new ValueCodec({ maxBytes: 64 });
    const scratch = Buffer.alloc(256);
    for (const bad of [NaN, -1, 1.5, 257]) expect(() => c.decodeCopying(scratch, bad)).toThrow(RangeError);
    Buffer.from([0x7f, 1, 2, 3]).copy(scratch);
    expect(() => c.decodeCopying(scratch, 4)).toThrow(expect.objectContaining({ code: ErrorCodes.CORRUPT_VALUE }));
    expect(() => c.decodeCopying(scratch, 100)).toThrow(expect.objectContaining({ code: ErrorCodes.CORRUPT_VALUE })); // over maxBytes
    for (const buf of [scratch, Buffer.alloc(256), scratch]) {
      for (let n = 0; n < 30; n++) {
        const enc = c.encode('x'.repeat(n));
        enc.copy(buf);
        expect(c.decodeCopying(buf, enc.length)).toBe('x'.repeat(n));
      }
    }
  });
});
