/**
 * Timeouts for many in-flight calls on one timer: the Redis connector gives every command a
 * deadline, and a node timer per command (created, then cleared when the answer comes first —
 * nearly always) was a Timeout object, a promise and a Promise.race per command: with 64 commands
 * in flight, a tenth of the client's CPU and much of its garbage.
 *
 * Entries wait in one FIFO lane per timeout value (a connector uses one or a few), so deadlines
 * within a lane only grow: adding is a push, and the one timer is armed for the earliest head.
 * An entry answered in time is cancelled by clearing its callback, and cancelled entries at a
 * lane's head leave it at once: Redis answers a connection's commands in order, so a lane holds
 * about the calls in flight, not a timeout's worth of finished ones (which would live long enough
 * to be promoted by the GC). The timer is unref'd: a pending command keeps the process alive by
 * its socket, not by its deadline.
 */

/** One call's deadline: `fire` runs once when it passes, unless cancelled first. */
export interface Deadline {
  /** When it passes (ms, on the queue's clock). */
  at: number;
  /** Called when the deadline passes; null once fired or cancelled. */
  fire: ((entry: Deadline) => void) | null;
  /** The lane it waits in. */
  readonly lane: Lane;
}

interface Lane {
  items: Array<Deadline | undefined>;
  head: number;
}

/** The timer functions (node's by default; tests pass a fake). */
export interface TimerApi {
  now(): number;
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const NODE_TIMERS: TimerApi = {
  now: () => performance.now(),
  set: (fn, ms) => setTimeout(fn, ms).unref(),
  clear: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** Node's longest timer delay (ms). */
const MAX_DELAY = 2 ** 31 - 1;

/** Entries a lane's passed head may leave behind before the array is compacted. */
const COMPACT_AT = 1024;

export class DeadlineQueue {
  readonly #timers: TimerApi;
  readonly #lanes = new Map<number, Lane>();
  #handle: unknown;
  /** When the armed timer fires (Infinity: none armed). */
  #armedAt = Infinity;

  constructor(timers: TimerApi = NODE_TIMERS) {
    this.#timers = timers;
  }

  /**
   * Calls `fire(entry)` once `timeoutMs` from now (> 0; Infinity: never), unless `cancel(entry)`
   * comes first. Returns the entry (to cancel). `fire` must not throw.
   * @throws RangeError for a timeout that is not a positive number.
   */
  add(timeoutMs: number, fire: (entry: Deadline) => void): Deadline {
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0)) throw new RangeError(`timeoutMs must be a positive number, got ${String(timeoutMs)}`);
    let lane = this.#lanes.get(timeoutMs);
    if (lane === undefined) {
      lane = { items: [], head: 0 };
      this.#lanes.set(timeoutMs, lane);
    }
    const entry: Deadline = { at: this.#timers.now() + timeoutMs, fire, lane };
    lane.items.push(entry);
    if (entry.at < this.#armedAt) this.#arm(entry.at);
    return entry;
  }

  /** Forgets the entry's deadline (its callback will not run). */
  cancel(entry: Deadline): void {
    entry.fire = null;
    const lane = entry.lane;
    if (lane.items[lane.head] === entry) this.#drop(lane);
  }

  /**
   * Fires every entry still waiting, whatever its deadline (Infinity too), now: for a close that
   * must settle every call in flight before it resolves. The queue is empty after it.
   */
  fireAll(): void {
    if (this.#handle !== undefined) this.#timers.clear(this.#handle);
    this.#handle = undefined;
    this.#armedAt = Infinity;
    this.#sweep(Infinity);
    for (const [timeoutMs, lane] of this.#lanes) if (lane.head >= lane.items.length) this.#lanes.delete(timeoutMs);
  }

  /** Entries still waiting for their deadline (cancelled ones not counted). */
  get pending(): number {
    let n = 0;
    for (const lane of this.#lanes.values()) {
      for (let i = lane.head; i < lane.items.length; i++) if (lane.items[i]!.fire !== null) n++;
    }
    return n;
  }

  /** Entries held, cancelled ones included (for tests: the lanes stay about as long as the calls in flight). */
  get held(): number {
    let n = 0;
    for (const lane of this.#lanes.values()) n += lane.items.length - lane.head;
    return n;
  }

  /** Pops the cancelled entries at the lane's head. */
  #drop(lane: Lane): void {
    const items = lane.items;
    while (lane.head < items.length && items[lane.head]!.fire === null) items[lane.head++] = undefined;
    this.#compact(lane);
  }

  #compact(lane: Lane): void {
    if (lane.head === lane.items.length) {
      lane.items.length = 0;
      lane.head = 0;
    } else if (lane.head >= COMPACT_AT && lane.head * 2 >= lane.items.length) {
      lane.items = lane.items.slice(lane.head);
      lane.head = 0;
    }
  }

  #arm(at: number): void {
    if (at === Infinity) return; // a deadline that never comes needs no timer
    if (this.#handle !== undefined) this.#timers.clear(this.#handle);
    this.#armedAt = at;
    // Whole milliseconds, rounded up: a timer never fires before the deadline it was armed for
    // (if the clock says it did, the sweep finds nothing due and arms again). Node's longest delay
    // is 2^31 − 1 ms: a later deadline is reached in steps.
    this.#handle = this.#timers.set(this.#expire, Math.min(MAX_DELAY, Math.max(1, Math.ceil(at - this.#timers.now()))));
  }

  readonly #expire = (): void => {
    this.#handle = undefined;
    this.#armedAt = Infinity;
    try {
      this.#sweep(this.#timers.now());
    } finally {
      // Armed again for the earliest live deadline, even if a callback threw.
      let next = Infinity;
      for (const [timeoutMs, lane] of this.#lanes) {
        if (lane.head < lane.items.length) next = Math.min(next, lane.items[lane.head]!.at);
        else this.#lanes.delete(timeoutMs); // empty: a later add makes a new one
      }
      if (next < this.#armedAt) this.#arm(next);
    }
  };

  /** Fires every entry due at `now`, drops the cancelled ones at each lane's head. */
  #sweep(now: number): void {
    for (const lane of this.#lanes.values()) {
      // lane.items is read afresh each time: a callback's cancel may have popped or compacted it.
      while (lane.head < lane.items.length) {
        const e = lane.items[lane.head]!;
        if (e.fire !== null) {
          if (e.at > now) break;
          const fire = e.fire;
          e.fire = null;
          fire(e); // may add or cancel entries: added ones land behind, with later deadlines
        }
        if (lane.items[lane.head] === e) lane.items[lane.head++] = undefined;
      }
      this.#compact(lane);
    }
  }
}
