/**
 * The plain-TS reference of the task heap (wasm/heap.ts behind engine/queue/heap.ts): an array kept
 * sorted by (key, seq) with a binary-search insert. Obviously correct rather than fast; the
 * differential tests run both on the same operations and compare every answer.
 *
 * Its sequence counter is a plain number that never wraps, so it also checks the kernel's
 * renumbering: the pop order must not change when the kernel's u32 counter is renumbered.
 */
export class HeapReference {
  #entries: Array<{ key: number; seq: number; slot: number }> = [];
  #seq = 0;

  get size(): number {
    return this.#entries.length;
  }

  push(key: number, slot: number): void {
    // -0 and +0 are one key (equal under <=); the kernel stores -0 as +0, and so does this.
    key += 0;
    const seq = this.#seq++;
    const list = this.#entries;
    // First index whose entry orders after (key, seq): seq is the largest so far, so after every
    // entry with key <= key.
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (list[mid]!.key <= key) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, { key, seq, slot });
  }

  pop(): number {
    const e = this.#entries.shift();
    return e === undefined ? -1 : e.slot;
  }

  peekSlot(): number {
    return this.#entries.length === 0 ? -1 : this.#entries[0]!.slot;
  }

  peekKey(): number {
    return this.#entries.length === 0 ? NaN : this.#entries[0]!.key;
  }

  clear(): void {
    this.#entries = [];
    this.#seq = 0;
  }

  pushBatch(keys: ArrayLike<number>, slots: ArrayLike<number>, n = keys.length): void {
    for (let i = 0; i < n; i++) this.push(keys[i]!, slots[i]!);
  }

  popBatch(out: Uint32Array, n = out.length): number {
    let done = 0;
    while (done < n && this.#entries.length > 0) out[done++] = this.pop();
    return done;
  }

  retain(keep: (slot: number) => boolean): number {
    const before = this.#entries.length;
    this.#entries = this.#entries.filter((e) => keep(e.slot));
    return before - this.#entries.length;
  }

  /** Entries in pop order (for tests). */
  sorted(): ReadonlyArray<{ key: number; seq: number; slot: number }> {
    return this.#entries;
  }
}
