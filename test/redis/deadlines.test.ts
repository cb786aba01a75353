/**
 * The connector's shared deadline timer (engine/redis/deadlines.ts) on a fake clock: deadlines fire
 * once, at or after their time, in order; cancelled ones never fire; lanes of different timeouts
 * share the one timer; answered calls do not pile up; callbacks may add and cancel.
 */
import { describe, expect, it } from 'vitest';
import { DeadlineQueue, type TimerApi } from '../../engine/redis/deadlines.js';

/** A fake timer API: one clock, timers fire when advance() passes them. */
function fakeTimers(early = 0): TimerApi & { advance(ms: number): void; armed(): number } {
  let now = 1000;
  let timers: Array<{ at: number; fn: () => void; id: number }> = [];
  let ids = 0;
  return {
    now: () => now,
    set: (fn, ms) => {
      const id = ++ids;
      timers.push({ at: now + ms - early, fn, id }); // `early`: the first timer fires before its time
      early = 0;
      return id;
    },
    clear: (id) => {
      timers = timers.filter((t) => t.id !== id);
    },
    advance(ms) {
      const end = now + ms;
      for (;;) {
        timers.sort((a, b) => a.at - b.at);
        const t = timers[0];
        if (t === undefined || t.at > end) break;
        timers.shift();
        now = t.at;
        t.fn();
      }
      now = end;
    },
    armed: () => timers.length,
  };
}

describe('DeadlineQueue', () => {
  it('fires each deadline once, not before its time, in order; a cancelled one never', () => {
    const t = fakeTimers();
    const q = new DeadlineQueue(t);
    const fired: string[] = [];
    const a = q.add(50, () => fired.push(`a@${t.now()}`));
    t.advance(10);
    const b = q.add(50, () => fired.push(`b@${t.now()}`));
    const c = q.add(50, () => fired.push(`c@${t.now()}`));
    q.cancel(b);
    expect(q.pending).toBe(2);
    t.advance(39);
    expect(fired).toEqual([]);
    t.advance(1);
    expect(fired).toEqual(['a@1050']);
    expect(a.fire).toBeNull();
    t.advance(100);
    expect(fired).toEqual(['a@1050', 'c@1060']);
    expect(q.pending).toBe(0);
    expect(q.held).toBe(0);
    expect(t.armed()).toBe(0); // nothing left: no timer
    q.cancel(c); // cancelling a fired entry is harmless
    expect(fired).toHaveLength(2);
  });

  it('lanes of different timeouts share one timer, armed for the earliest deadline', () => {
    const t = fakeTimers();
    const q = new DeadlineQueue(t);
    const fired: number[] = [];
    q.add(1000, () => fired.push(1000));
    q.add(5, () => fired.push(5));
    q.add(200, () => fired.push(200));
    expect(t.armed()).toBe(1);
    t.advance(5);
    expect(fired).toEqual([5]);
    t.advance(195);
    expect(fired).toEqual([5, 200]);
    t.advance(799);
    expect(fired).toEqual([5, 200]);
    t.advance(1);
    expect(fired).toEqual([5, 200, 1000]);
  });

  it('calls answered in order leave at once: the lane holds the calls in flight, not a timeout of finished ones', () => {
    const t = fakeTimers();
    const q = new DeadlineQueue(t);
    const inFlight = [];
    for (let i = 0; i < 10_000; i++) {
      inFlight.push(q.add(1000, () => {
        throw new Error('never fires');
      }));
      if (inFlight.length > 64) q.cancel(inFlight.shift()!); // answered oldest first, as Redis does
      expect(q.held).toBeLessThanOrEqual(65);
    }
    // One answered out of order stays until the head passes it, then leaves with it.
    const late = inFlight[0]!;
    q.cancel(inFlight[1]!);
    expect(q.held).toBe(64);
    q.cancel(late);
    expect(q.held).toBe(62);
    for (const e of inFlight) q.cancel(e);
    expect(q.held).toBe(0);
    t.advance(5000);
  });

  it('a timer that fires early fires nothing before its time and is armed again', () => {
    const t = fakeTimers(3);
    const q = new DeadlineQueue(t);
    const fired: number[] = [];
    q.add(50, () => fired.push(t.now()));
    t.advance(47); // the timer fires here, 3 ms early
    expect(fired).toEqual([]);
    expect(t.armed()).toBe(1);
    t.advance(3);
    expect(fired).toEqual([1050]);
  });

  it('Infinity never fires and arms no timer; a timeout that is not a positive number is refused', () => {
    const t = fakeTimers();
    const q = new DeadlineQueue(t);
    const never = q.add(Infinity, () => {
      throw new Error('never');
    });
    expect(t.armed()).toBe(0);
    t.advance(1e12);
    expect(q.pending).toBe(1);
    q.cancel(never);
    expect(q.held).toBe(0);
    for (const bad of [0, -5, Number.NaN]) expect(() => q.add(bad, () => {})).toThrow(RangeError);
  });

  it('a callback may add entries and cancel ones due at the same time behind it', () => {
    const t = fakeTimers();
    const q = new DeadlineQueue(t);
    const fired: string[] = [];
    let c: ReturnType<DeadlineQueue['add']> | undefined;
    q.add(10, () => {
      fired.push('a');
      q.cancel(c!); // c is due now too, queued behind a: it must not fire
      q.add(10, () => fired.push('d'));
    });
    c = q.add(10, () => fired.push('c'));
    t.advance(10);
    expect(fired).toEqual(['a']);
    t.advance(9);
    expect(fired).toEqual(['a']);
    t.advance(1);
    expect(fired).toEqual(['a', 'd']);
    expect(q.held).toBe(0);
  });
});
