/**
 * The cross-thread single-flight table on one thread: a key's slot is claimed once, a second
 * claim of the same key waits, a different key on the same slot is 'busy', release frees it — and
 * keys whose KeyHash collides in the low bits (what a client could craft offline: KeyHash is
 * public) do not share slots, because the table mixes in its random seed.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { FlightTable } from '../../engine/cache/flight.js';
import { NO_METRICS, ThreadRuntime } from '../../engine/runtime/thread.js';
import { createSharedMemory, kernelModule } from '../../engine/runtime/wasm.js';

let rt: ThreadRuntime;
beforeAll(() => {
  rt = new ThreadRuntime(createSharedMemory(8 << 20), kernelModule(), 'test:flight', 4096, NO_METRICS, true);
});

describe('FlightTable', () => {
  it('owner, then wait for the same key; release frees the slot; a second table by name shares it', () => {
    const a = new FlightTable(rt, 'one');
    const b = new FlightTable(rt, 'one'); // another thread's view of the same table
    const first = a.claim(11, 22, 0, 1000);
    expect(first.kind).toBe('owner');
    const second = b.claim(11, 22, 0, 1000);
    expect(second.kind).toBe('wait');
    if (first.kind !== 'owner' || second.kind !== 'wait') return;
    expect(second.slot).toBe(first.slot);
    a.release(first.slot, first.token);
    expect(b.claim(11, 22, 0, 1000).kind).toBe('owner');
  });

  it('busy: a claimed, unexpired slot of the key, seen by every view; not another key\'s, not the token excepted (review76 N1)', () => {
    const a = new FlightTable(rt, 'busy');
    const b = new FlightTable(rt, 'busy');
    expect(b.busy(11, 22, 0)).toBe(false);
    const c = a.claim(11, 22, 0, 1000);
    expect(c.kind).toBe('owner');
    if (c.kind !== 'owner') return;
    expect(b.busy(11, 22, 0)).toBe(true);
    expect(b.busy(11, 22, 1000)).toBe(true);
    expect(b.busy(11, 22, 1001)).toBe(false); // past its deadline: its owner is gone or overran
    expect(b.busy(12, 22, 0)).toBe(false); // same slot (lo), another key
    expect(a.busy(11, 22, 0, c.token)).toBe(false); // the caller's own claim
    a.release(c.slot, c.token);
    expect(b.busy(11, 22, 0)).toBe(false);
  });

  it('keys equal in their low 12 bits (one slot each, unseeded) land on different slots', () => {
    const t = new FlightTable(rt, 'crafted');
    const slots = new Set<number>();
    let busy = 0;
    for (let i = 0; i < 64; i++) {
      const c = t.claim(i, 0x777 + i * 4096, 0, 1000); // lo & 4095 is 0x777 for every one
      if (c.kind === 'owner') slots.add(c.slot);
      else busy++;
    }
    // 64 keys over 4096 seeded slots: a collision or two by chance, never most of them.
    expect(slots.size).toBeGreaterThan(56);
    expect(busy).toBe(64 - slots.size);
  });
});
