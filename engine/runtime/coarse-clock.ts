/**
 * A coarse clock for hot paths where reading the clock dominates (DESIGN "Time and timers"):
 * `Date.now()` costs ~45 ns here, more than a limiter decision's own work.
 *
 * It caches the last reading and reads the real clock again when either
 *  - the cache was marked stale by a 1 ms timer (unref'd; it stops itself after a millisecond
 *    without calls, so an idle process never wakes for it), or
 *  - REFRESH_EVERY calls have used the cached value (while the event loop is busy, e.g. in a
 *    synchronous loop of decisions, the timer cannot fire).
 * Staleness bound: a reading is at most ~1 ms (plus timer lateness) old while the event loop is
 * free, and at most REFRESH_EVERY - 1 calls old while it is blocked. Never ahead of the clock.
 */
import type { Clock } from '../options.js';

const REFRESH_EVERY = 64;

export class CoarseClock implements Clock {
  readonly #source: Clock;
  #now = 0;
  #stale = true;
  #uses = 0;
  #used = false;
  #timer: ReturnType<typeof setInterval> | undefined;
  readonly #idle: Array<() => void> = [];

  constructor(source: Clock) {
    this.#source = source;
  }

  now(): number {
    this.#used = true;
    if (this.#stale || ++this.#uses === REFRESH_EVERY) {
      this.#now = this.#source.now();
      this.#stale = false;
      this.#uses = 0;
      if (this.#timer === undefined) this.#start();
    }
    return this.#now;
  }

  /**
   * Runs `fn` when the clock goes idle (a millisecond without calls; the timer stops then).
   * Users that batch work per clock tick flush their remainder here.
   */
  onIdle(fn: () => void): void {
    this.#idle.push(fn);
  }

  #start(): void {
    this.#timer = setInterval(() => {
      this.#stale = true;
      if (!this.#used) {
        this.stop();
        for (const fn of this.#idle) fn();
      }
      this.#used = false;
    }, 1);
    this.#timer.unref?.();
  }

  /** Stops the refresh timer (the next call reads the real clock and starts it again). */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#stale = true;
  }
}
