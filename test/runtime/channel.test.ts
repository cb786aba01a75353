import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChannelReader, ChannelWriter, Doorbell, Ring, ringBytes } from '../../engine/runtime/channel.js';

function makeRing(capacity = 4096): { buf: SharedArrayBuffer; producer: Ring; consumer: Ring } {
  const buf = new SharedArrayBuffer(ringBytes(capacity) + 64);
  return { buf, producer: new Ring(buf, 64, capacity), consumer: new Ring(buf, 64, capacity) };
}

function body(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (seed * 31 + i * 7) & 255;
  return b;
}

interface Got { tag: number; a: number; b: number; bytes: number[] }
const collect = (out: Got[]) => (tag: number, a: number, b: number, u8: Uint8Array, off: number, len: number): void => {
  out.push({ tag, a, b, bytes: [...u8.subarray(off, off + len)] });
};

describe('Ring', () => {
  it('rejects a bad capacity or offset', () => {
    const buf = new SharedArrayBuffer(1 << 16);
    expect(() => new Ring(buf, 0, 1000)).toThrow(/power of two/);
    expect(() => new Ring(buf, 8, 4096)).toThrow(/aligned/);
  });

  it('publishes frames only on publish()', () => {
    const { producer, consumer } = makeRing();
    const out: Got[] = [];
    expect(producer.tryWrite(4, 1, 2, body(10, 1), 0, 10)).toBe(true);
    expect(consumer.read(collect(out))).toBe(0);
    producer.publish();
    expect(consumer.read(collect(out))).toBe(1);
    expect(out[0]).toEqual({ tag: 4, a: 1, b: 2, bytes: [...body(10, 1)] });
  });

  it('returns false when full and never overwrites unread frames', () => {
    const { producer, consumer } = makeRing(4096);
    let n = 0;
    while (producer.tryWrite(0, n, 0, body(100, n), 0, 100)) n++;
    producer.publish();
    expect(n).toBe(Math.floor(4096 / 120)); // 16 header + 100 body, padded to 120
    const out: Got[] = [];
    consumer.read(collect(out));
    expect(out.map((g) => g.a)).toEqual([...Array(n).keys()]);
    for (const g of out) expect(g.bytes).toEqual([...body(100, g.a)]);
  });

  it('wraps around with a pad frame, in order, across many laps', () => {
    const { producer, consumer } = makeRing(4096);
    const out: Got[] = [];
    let sent = 0;
    for (let lap = 0; lap < 200; lap++) {
      const len = (lap * 37) % 700;
      while (producer.tryWrite(0, sent, len, body(len, sent), 0, len)) sent++;
      producer.publish();
      consumer.read(collect(out));
    }
    expect(out.length).toBe(sent);
    out.forEach((g, i) => {
      expect(g.a).toBe(i);
      expect(g.bytes).toEqual([...body(g.b, i)]);
    });
  });

  it('behaves like a FIFO queue under any interleaving (model test)', () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant('w' as const), len: fc.nat(1000) }),
      fc.record({ k: fc.constant('p' as const) }),
      fc.record({ k: fc.constant('r' as const) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const { producer, consumer } = makeRing(4096);
        const written: number[] = [];
        let published = 0;
        const read: number[] = [];
        let seq = 0;
        for (const o of ops) {
          if (o.k === 'w') {
            if (producer.tryWrite(0, seq, o.len, body(o.len, seq), 0, o.len)) written.push(seq++);
          } else if (o.k === 'p') {
            producer.publish();
            published = written.length;
          } else {
            const got: Got[] = [];
            consumer.read(collect(got));
            for (const g of got) {
              expect(g.bytes).toEqual([...body(g.b, g.a)]);
              read.push(g.a);
            }
            expect(read).toEqual(written.slice(0, published));
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('ChannelWriter / ChannelReader', () => {
  it('fragments and reassembles a message larger than the ring, with back-pressure', async () => {
    const { buf, producer, consumer } = makeRing(4096);
    const bell = new Doorbell(new Int32Array(buf), 0);
    const writer = new ChannelWriter(producer, bell);
    const got: Array<{ a: number; bytes: Uint8Array }> = [];
    const reader = new ChannelReader(consumer, (_t, a, _b, u8, off, len) => got.push({ a, bytes: u8.slice(off, off + len) }));
    const big = body(50_000, 9);
    writer.send(3, 1, 0, body(10, 1));
    writer.send(3, 2, 0, big);
    writer.send(3, 3, 0, body(20, 3));
    expect(writer.backlog).toBeGreaterThan(0);
    // Drain as a consumer thread would; the writer's pump resumes each time space is freed.
    for (let i = 0; i < 10_000 && got.length < 3; i++) {
      reader.poll();
      await new Promise((r) => setImmediate(r));
    }
    expect(got.map((g) => g.a)).toEqual([1, 2, 3]);
    expect(got[1]!.bytes).toEqual(big);
    expect(got[2]!.bytes).toEqual(body(20, 3));
    expect(writer.backlog).toBe(0);
  });

  it('batches: several sends in one tick are published with one store', async () => {
    const { buf, producer, consumer } = makeRing();
    const i32 = new Int32Array(buf);
    const writer = new ChannelWriter(producer, new Doorbell(i32, 0));
    for (let i = 0; i < 5; i++) writer.send(1, i, 0, null);
    expect(consumer.hasData()).toBe(false); // nothing visible before the batch closes
    await Promise.resolve();
    const out: Got[] = [];
    expect(consumer.read(collect(out))).toBe(5);
  });

  it('rings a sleeping consumer once per batch', async () => {
    const { buf, producer } = makeRing();
    const i32 = new Int32Array(buf);
    const bell = new Doorbell(i32, 0);
    const writer = new ChannelWriter(producer, bell);
    const seq = bell.prepareSleep();
    const wait = bell.waitAsync(seq);
    expect(wait).toBeDefined();
    for (let i = 0; i < 10; i++) writer.send(1, i, 0, null);
    await expect(wait).resolves.toBe('ok');
    expect(Atomics.load(i32, 0)).toBe(seq + 1);
  });
});
