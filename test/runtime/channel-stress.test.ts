import { Worker } from 'node:worker_threads';
import { setImmediate } from 'node:timers';
import { describe, expect, it } from 'vitest';
import { ChannelReader, ChannelWriter, Doorbell, Ring, ringBytes } from '../../engine/runtime/channel.js';
// @ts-expect-error plain JS fixture shared with the worker thread
import { checkMessage, produceAll } from '../fixtures/stress-messages.mjs';

// The counts CI runs; HOTPATH_SOAK=1 runs ten times as many.
const SOAK = process.env.HOTPATH_SOAK === '1' ? 10 : 1;
const COUNT_A = 10_000_000 * SOAK; // main → worker
const COUNT_B = 1_000_000 * SOAK; // worker → main, concurrently

describe('channel stress between real threads', () => {
  it(`moves ${COUNT_A} + ${COUNT_B} messages of random lengths with no loss, duplicate, reorder or tear`, async () => {
    const capacity = 64 * 1024; // small, so the ring wraps and fills constantly
    const aOffset = 128;
    const bOffset = aOffset + ringBytes(capacity);
    const buf = new SharedArrayBuffer(bOffset + ringBytes(capacity));
    const mainBell = 0; // i32 index 0..1: the main thread's doorbell
    const i32 = new Int32Array(buf);
    const ringA = new Ring(buf, aOffset, capacity);
    const ringB = new Ring(buf, bOffset, capacity);
    const writer = new ChannelWriter(ringA, ringA.doorbell());
    const bell = new Doorbell(i32, mainBell);

    const worker = new Worker(new URL('../fixtures/channel-stress.mjs', import.meta.url), {
      workerData: { buf, aOffset, bOffset, capacity, countA: COUNT_A, countB: COUNT_B, mainBell },
    });
    let workerDied: (err: Error) => void = () => {};
    const died = new Promise<never>((_, reject) => {
      workerDied = reject;
    });
    const report = new Promise<{ received: number; errors: string[] }>((resolve) => {
      worker.once('message', resolve);
      worker.once('error', (err) => workerDied(err));
      worker.once('exit', (code) => workerDied(new Error(`stress worker exited with ${code} before reporting`)));
    });
    died.catch(() => {});

    let expected = 0;
    const reader = new ChannelReader(ringB, (tag, a, b, u8, off, len) => {
      const err = checkMessage(expected, tag, a, b, u8, off, len);
      if (err !== null) throw new Error(`main side: ${err}`);
      expected++;
    });

    const consume = async (): Promise<void> => {
      while (expected < COUNT_B) {
        if (reader.poll() > 0) {
          if ((expected & 4095) === 0) await new Promise((r) => setImmediate(r));
          continue;
        }
        const seq = bell.prepareSleep();
        if (ringB.hasData()) { bell.awake(); continue; }
        const w = bell.waitAsync(seq, 1000);
        if (w !== undefined) await w;
        bell.awake();
      }
    };
    // If the peer dies, fail at once instead of waiting for messages that will never come.
    await Promise.race([Promise.all([produceAll(writer, COUNT_A), consume()]), died]);
    const peer = await Promise.race([report, died]);
    await worker.terminate();
    expect(expected).toBe(COUNT_B);
    expect(peer.errors).toEqual([]);
    expect(peer.received).toBe(COUNT_A);
  }, 600_000);
});
