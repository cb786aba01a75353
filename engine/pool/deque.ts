/**
 * A double-ended queue on a growable power-of-two ring buffer: push/pop/shift/unshift are O(1)
 * and allocate only when the ring doubles. The pool keeps its idle resources in one (taken from
 * the tail for LIFO reuse, from the head for FIFO; evicted from the head, where the longest idle
 * ones are) and its waiters in another (FIFO; a waiter that failed validation goes back to the
 * head). `Array#shift` is O(n) once an array leaves V8's fast path, hence this.
 */
export class Deque<T> {
  #buf: Array<T | undefined>;
  #mask: number;
  #head = 0;
  #length = 0;

  constructor(capacity = 16) {
    let size = 4;
    while (size < capacity) size *= 2;
    this.#buf = new Array<T | undefined>(size).fill(undefined);
    this.#mask = size - 1;
  }

  get length(): number {
    return this.#length;
  }

  /** Appends at the tail. */
  push(value: T): void {
    if (this.#length === this.#buf.length) this.#grow();
    this.#buf[(this.#head + this.#length) & this.#mask] = value;
    this.#length++;
  }

  /** Inserts at the head. */
  unshift(value: T): void {
    if (this.#length === this.#buf.length) this.#grow();
    this.#head = (this.#head - 1) & this.#mask;
    this.#buf[this.#head] = value;
    this.#length++;
  }

  /** Removes and returns the tail (undefined when empty). */
  pop(): T | undefined {
    if (this.#length === 0) return undefined;
    this.#length--;
    const i = (this.#head + this.#length) & this.#mask;
    const v = this.#buf[i];
    this.#buf[i] = undefined; // no reference kept for the GC
    return v;
  }

  /** Removes and returns the head (undefined when empty). */
  shift(): T | undefined {
    if (this.#length === 0) return undefined;
    const v = this.#buf[this.#head];
    this.#buf[this.#head] = undefined;
    this.#head = (this.#head + 1) & this.#mask;
    this.#length--;
    return v;
  }

  /** The head without removing it. */
  peek(): T | undefined {
    return this.#length === 0 ? undefined : this.#buf[this.#head];
  }

  /** The i-th element from the head (0-based), undefined when out of range. */
  at(i: number): T | undefined {
    return i < 0 || i >= this.#length ? undefined : this.#buf[(this.#head + i) & this.#mask];
  }

  /** Keeps the elements `keep` says true to, in order; O(n). Returns how many were removed. */
  retain(keep: (value: T) => boolean): number {
    const n = this.#length;
    let out = 0;
    for (let k = 0; k < n; k++) {
      const v = this.#buf[(this.#head + k) & this.#mask] as T;
      if (keep(v)) this.#buf[(this.#head + out++) & this.#mask] = v;
    }
    for (let k = out; k < n; k++) this.#buf[(this.#head + k) & this.#mask] = undefined;
    this.#length = out;
    return n - out;
  }

  /** Removes everything and returns it, head first. */
  drain(): T[] {
    const out: T[] = [];
    while (this.#length > 0) out.push(this.shift() as T);
    return out;
  }

  #grow(): void {
    const old = this.#buf;
    const size = old.length * 2;
    const buf = new Array<T | undefined>(size).fill(undefined);
    for (let k = 0; k < this.#length; k++) buf[k] = old[(this.#head + k) & this.#mask];
    this.#buf = buf;
    this.#mask = size - 1;
    this.#head = 0;
  }
}
