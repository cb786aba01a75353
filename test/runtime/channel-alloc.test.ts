import { PerformanceObserver, performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { Ring, ringBytes } from '../../engine/runtime/channel.js';

describe('channel hot path', () => {
  it('writes and reads a million messages without allocating (no GC runs during the loop)', async () => {
    const capacity = 1 << 16;
    const buf = new SharedArrayBuffer(ringBytes(capacity) + 64);
    const producer = new Ring(buf, 64, capacity);
    const consumer = new Ring(buf, 64, capacity);
    const body = new Uint8Array(48).fill(7);
    let sum = 0;
    const onFrame = (_t: number, a: number, _b: number, _u8: Uint8Array, _off: number, len: number): void => {
      sum = (sum + a + len) | 0; // stays a small integer: no heap number per update
    };
    const loop = (n: number): void => {
      for (let i = 0; i < n; i++) {
        if (!producer.tryWrite(1, i, 0, body, 0, body.length)) {
          producer.publish();
          consumer.read(onFrame);
          producer.tryWrite(1, i, 0, body, 0, body.length);
        }
      }
      producer.publish();
      consumer.read(onFrame);
    };
    loop(200_000); // warm up: let the JIT settle first

    const gcs: number[] = [];
    const obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) gcs.push(e.startTime);
    });
    obs.observe({ entryTypes: ['gc'] });
    const t0 = performance.now();
    sum = 0;
    loop(1_000_000);
    const t1 = performance.now();
    await new Promise((r) => setTimeout(r, 50)); // gc entries are delivered asynchronously
    obs.disconnect();
    expect(sum).toBe(((1_000_000 * 999_999) / 2 + 48 * 1_000_000) | 0);
    // A loop that allocated even 16 bytes per message would fill the young generation and
    // trigger scavenges here.
    expect(gcs.filter((t) => t >= t0 && t <= t1)).toEqual([]);
  });
});
