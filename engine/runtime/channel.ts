/**
 * The channel: a lock-free single-producer / single-consumer ring of variable-length messages
 * in shared memory, one per direction per worker, plus the doorbell a sleeping consumer waits on.
 *
 * Ring region layout (`ringBytes(capacity)` bytes, 64-byte aligned):
 * ```
 * +0    i32 head             bytes ever written, mod 2^32 (stored by the producer only)
 * +8    i32 bell.seq         doorbell of this ring's consumer (see Doorbell)
 * +12   i32 bell.sleeping
 * +64   i32 tail             bytes ever consumed, mod 2^32 (stored by the consumer only)
 * +68   i32 producerWaiting  1 while the producer waits for space
 * +128  data[capacity]       capacity is a power of two ≥ 4096
 * ```
 * head and tail sit on separate cache lines so producer and consumer do not false-share.
 *
 * A frame in `data` is 8-byte aligned and never wraps:
 * ```
 * +0 i32 len   body bytes, or -1 for a PAD frame that fills the rest of the data area
 * +4 i32 tag   bits 0..1 fragment kind (0 whole, 1 first, 2 middle, 3 last), bits 2..31 user tag
 * +8 i32 a     two user words (the worker pool puts the request id and task id here)
 * +12 i32 b
 * +16 body, then padding to a multiple of 8
 * ```
 * Protocol: the producer writes frames past `head` with plain stores and then publishes them all
 * with one seq-cst store of `head` (a batch); the consumer loads `head` (seq-cst), reads frames
 * with plain loads, and publishes the space with one store of `tail`. The seq-cst store/load
 * pair orders the plain accesses (ECMAScript memory model: synchronizes-with). The producer
 * never writes past `tail + capacity`: when the ring is full it gets `false` (tryWrite) or
 * waits for the consumer to free space (ChannelWriter), never overwrites.
 *
 * Messages larger than a quarter of the ring travel as fragments (first/middle/last) that the
 * reader reassembles, so any size passes through a bounded ring with back-pressure.
 */

const HEAD = 0; // i32 index offsets within the ring header
const BELL_SEQ = 2;
const BELL_SLEEPING = 3;
const TAIL = 16;
const PRODUCER_WAITING = 17;
const DATA = 128;
const FRAME_HEADER = 16;
const PAD = -1;

export const FRAG_WHOLE = 0;
export const FRAG_FIRST = 1;
export const FRAG_MIDDLE = 2;
export const FRAG_LAST = 3;

/** Region bytes needed for a ring whose data area holds `capacity` bytes. */
export function ringBytes(capacity: number): number {
  return DATA + capacity;
}

/** Validates a ring capacity (power of two, 4 KiB .. 1 GiB). */
export function checkCapacity(capacity: number, option = 'capacity'): void {
  if (!Number.isInteger(capacity) || capacity < 4096 || capacity > 2 ** 30 || (capacity & (capacity - 1)) !== 0) {
    throw new RangeError(`options.${option} must be a power of two between 4096 and 2^30, got ${capacity}`);
  }
}

/**
 * A doorbell: a sequence word and a "sleeping" flag. The one consumer sets `sleeping`, re-checks
 * its rings, then waits on `seq`; producers, after publishing, ring it only when it sleeps, so a
 * busy consumer costs producers one load per batch and no notify.
 *
 * Why no wake-up is lost: the consumer stores sleeping=1 then checks for data; the producer
 * stores head then loads sleeping. All four are seq-cst, so either the consumer sees the data or
 * the producer sees sleeping=1 and bumps `seq` — and a waitAsync on a stale `seq` returns at once.
 */
export class Doorbell {
  readonly #i32: Int32Array;
  readonly #seq: number;
  readonly #sleeping: number;

  constructor(i32: Int32Array, seqIndex: number, sleepingIndex: number = seqIndex + 1) {
    this.#i32 = i32;
    this.#seq = seqIndex;
    this.#sleeping = sleepingIndex;
  }

  /** Producer side: wakes the consumer if it sleeps. Cheap when it does not. */
  ring(): void {
    const a = this.#i32;
    if (Atomics.load(a, this.#sleeping) !== 0 && Atomics.exchange(a, this.#sleeping, 0) !== 0) {
      Atomics.add(a, this.#seq, 1);
      Atomics.notify(a, this.#seq, 1);
    }
  }

  /**
   * Consumer side: announces sleep and returns the sequence value to wait on. The caller must
   * re-check its rings after this call and, if they hold data, call `awake()` instead of waiting.
   */
  prepareSleep(): number {
    Atomics.store(this.#i32, this.#sleeping, 1);
    return Atomics.load(this.#i32, this.#seq);
  }

  /** Consumer side: waits (without blocking the thread) until rung or `timeoutMs` passes. */
  waitAsync(seq: number, timeoutMs = Infinity): Promise<unknown> | undefined {
    const r = Atomics.waitAsync(this.#i32, this.#seq, seq, timeoutMs);
    return r.async ? r.value : undefined;
  }

  /** Consumer side: cancels a sleep announced by `prepareSleep`. */
  awake(): void {
    Atomics.store(this.#i32, this.#sleeping, 0);
  }

  /** Forces a wake-up of a waiting consumer (used on close). */
  wake(): void {
    Atomics.store(this.#i32, this.#sleeping, 0);
    Atomics.add(this.#i32, this.#seq, 1);
    Atomics.notify(this.#i32, this.#seq);
  }
}

/** Called for every message a reader delivers. `u8` is valid only during the call. */
export type MessageHandler = (tag: number, a: number, b: number, u8: Uint8Array, offset: number, length: number) => void;

/**
 * One side of one ring. Each thread makes its own `Ring` over the same region; a `Ring` is used
 * either as the producer or as the consumer, never both.
 */
export class Ring {
  readonly i32: Int32Array;
  readonly u8: Uint8Array;
  readonly capacity: number;
  /** Largest body that travels in one frame; larger bodies are fragmented. */
  readonly maxFrameBody: number;
  readonly #base: number; // byte offset of the region
  readonly #h: number; // i32 index of the region
  readonly #data: number; // byte offset of data[0]
  readonly #mask: number;
  // Producer-local state.
  #head = 0;
  #tailSeen = 0;
  // Consumer-local state.
  #tail = 0;

  constructor(buffer: ArrayBufferLike, offset: number, capacity: number) {
    checkCapacity(capacity);
    if (offset % 64 !== 0) throw new RangeError(`ring offset must be 64-byte aligned, got ${offset}`);
    this.i32 = new Int32Array(buffer);
    this.u8 = new Uint8Array(buffer);
    this.capacity = capacity;
    this.maxFrameBody = (capacity >>> 2) - FRAME_HEADER;
    this.#base = offset;
    this.#h = offset >>> 2;
    this.#data = offset + DATA;
    this.#mask = capacity - 1;
    this.#head = Atomics.load(this.i32, this.#h + HEAD);
    this.#tailSeen = Atomics.load(this.i32, this.#h + TAIL);
    this.#tail = this.#tailSeen;
  }

  /** Byte offset of the ring's region. */
  get offset(): number {
    return this.#base;
  }

  /** This ring's consumer doorbell (request rings use it; response rings ring a shared one). */
  doorbell(): Doorbell {
    return new Doorbell(this.i32, this.#h + BELL_SEQ, this.#h + BELL_SLEEPING);
  }

  /** Zeroes the ring's control words. Only when neither side is running (a dead worker's slot). */
  reset(): void {
    const a = this.i32;
    for (const w of [HEAD, BELL_SEQ, BELL_SLEEPING, TAIL, PRODUCER_WAITING]) Atomics.store(a, this.#h + w, 0);
    this.#head = this.#tailSeen = this.#tail = 0;
    // Wake every waiter left on the old ring (a writer blocked for space, a sleeping reader), so
    // none lingers to be woken later in place of a waiter of the ring's next user.
    Atomics.notify(a, this.#h + TAIL);
    Atomics.notify(a, this.#h + BELL_SEQ);
  }

  // ---------------------------------------------------------------- producer

  /**
   * Writes one frame after the last unpublished one. Returns false, writing nothing, when the
   * ring lacks room; the frame is visible to the consumer only after `publish()`.
   * `len` must be ≤ `maxFrameBody`.
   */
  tryWrite(tag: number, a: number, b: number, body: Uint8Array | null, bodyOffset: number, len: number): boolean {
    const need = (FRAME_HEADER + len + 7) & ~7;
    let head = this.#head;
    let pos = head & this.#mask;
    let contiguous = this.capacity - pos;
    if (need > contiguous) {
      // Pad to the end of the data area and start over at 0 — only if the pad itself fits.
      if (!this.#room(contiguous)) return false;
      this.i32[(this.#data + pos) >>> 2] = PAD;
      head = (head + contiguous) | 0;
      this.#head = head;
      pos = 0;
      contiguous = this.capacity;
    }
    if (!this.#room(need)) return false;
    const at = this.#data + pos;
    const w = at >>> 2;
    const i32 = this.i32;
    i32[w] = len;
    i32[w + 1] = tag;
    i32[w + 2] = a;
    i32[w + 3] = b;
    if (len > 0 && body !== null) {
      this.u8.set(len === body.length && bodyOffset === 0 ? body : body.subarray(bodyOffset, bodyOffset + len), at + FRAME_HEADER);
    }
    this.#head = (head + need) | 0;
    return true;
  }

  #room(bytes: number): boolean {
    if (this.capacity - ((this.#head - this.#tailSeen) >>> 0) >= bytes) return true;
    this.#tailSeen = Atomics.load(this.i32, this.#h + TAIL);
    return this.capacity - ((this.#head - this.#tailSeen) >>> 0) >= bytes;
  }

  /** True when frames were written but not yet published. */
  get unpublished(): boolean {
    return this.#head !== Atomics.load(this.i32, this.#h + HEAD);
  }

  /** Makes every frame written so far visible to the consumer (one seq-cst store). */
  publish(): void {
    Atomics.store(this.i32, this.#h + HEAD, this.#head);
  }

  /**
   * Producer: resolves when the consumer has freed space since the last failed write (or at
   * once if it already has). Never blocks the thread.
   */
  waitForSpace(): Promise<unknown> | undefined {
    const a = this.i32;
    Atomics.store(a, this.#h + PRODUCER_WAITING, 1);
    const tail = Atomics.load(a, this.#h + TAIL);
    if (tail !== this.#tailSeen) {
      Atomics.store(a, this.#h + PRODUCER_WAITING, 0);
      this.#tailSeen = tail;
      return undefined;
    }
    const r = Atomics.waitAsync(a, this.#h + TAIL, tail);
    return r.async ? r.value : undefined;
  }

  // ---------------------------------------------------------------- consumer

  /** Consumer: true when published frames wait to be read. */
  hasData(): boolean {
    return Atomics.load(this.i32, this.#h + HEAD) !== this.#tail;
  }

  /**
   * Consumer: hands every published frame to `onFrame`, then frees their space with one store
   * of `tail` (and wakes a producer waiting for space). Returns the number of frames read.
   */
  read(onFrame: MessageHandler): number {
    const i32 = this.i32;
    const head = Atomics.load(i32, this.#h + HEAD);
    let tail = this.#tail;
    if (head === tail) return 0;
    let frames = 0;
    try {
      while (tail !== head) {
        const pos = tail & this.#mask;
        const at = this.#data + pos;
        const w = at >>> 2;
        const len = i32[w]!;
        if (len === PAD) {
          tail = (tail + (this.capacity - pos)) | 0;
          continue;
        }
        // Consumed before the handler runs: a frame whose handler throws is never read again.
        tail = (tail + ((FRAME_HEADER + len + 7) & ~7)) | 0;
        frames++;
        onFrame(i32[w + 1]!, i32[w + 2]!, i32[w + 3]!, this.u8, at + FRAME_HEADER, len);
      }
    } finally {
      this.#tail = tail;
      Atomics.store(i32, this.#h + TAIL, tail);
      if (Atomics.load(i32, this.#h + PRODUCER_WAITING) !== 0) {
        Atomics.store(i32, this.#h + PRODUCER_WAITING, 0);
        Atomics.notify(i32, this.#h + TAIL); // all: only one producer waits, never a stale one
      }
    }
    return frames;
  }
}

interface Pending {
  tag: number;
  a: number;
  b: number;
  body: Uint8Array | null;
  sent: number; // body bytes already written (fragments)
}

/**
 * The producer end of a ring: batches frames and publishes them with one store and at most one
 * notify per batch (at the end of the current microtask checkpoint, or on `flush()`), fragments
 * large bodies, and queues — in order — what does not fit until the consumer frees space.
 * The queue is the only place that allocates; a message that fits goes straight into the ring.
 */
export class ChannelWriter {
  readonly ring: Ring;
  readonly #bell: Doorbell;
  readonly #queue: Pending[] = [];
  #pumping = false;
  #flushScheduled = false;
  /** Frames published by publish() that the consumer has not been rung for. */
  #unrung = false;
  #closed = false;
  #drainWaiters: Array<() => void> = [];
  readonly #flushTask = (): void => {
    this.#flushScheduled = false;
    this.flush();
  };

  /** `bell` is the doorbell of this ring's consumer. */
  constructor(ring: Ring, bell: Doorbell) {
    this.ring = ring;
    this.#bell = bell;
  }

  /** Messages waiting for space (not yet in the ring). */
  get backlog(): number {
    return this.#queue.length;
  }

  /**
   * Sends a message. The `tag` must fit in 30 bits. `body` is copied into the ring at once, or,
   * when the ring is full, into the queue: the caller may reuse it as soon as send() returns.
   */
  send(tag: number, a: number, b: number, body: Uint8Array | null): void {
    if (this.#closed) return;
    const len = body === null ? 0 : body.length;
    if (this.#queue.length === 0 && len <= this.ring.maxFrameBody && this.ring.tryWrite(tag << 2, a, b, body, 0, len)) {
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        queueMicrotask(this.#flushTask);
      }
      return;
    }
    // Queued: copy, so a caller reusing its buffer after send() returns changes nothing sent.
    // (new Uint8Array(x) copies; Buffer#slice would not.)
    this.#queue.push({ tag, a, b, body: body === null ? null : new Uint8Array(body), sent: 0 });
    if (!this.#pumping) void this.#pump();
  }

  /**
   * Resolves once every queued message is in the ring (at once if none is queued): a producer
   * that awaits it when `backlog > 0` keeps its memory bounded.
   */
  whenDrained(): Promise<void> {
    if (this.#queue.length === 0 || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /**
   * Publishes every written frame without ringing: a consumer that polls (or reads the ring after
   * this thread is gone) sees them; one asleep is woken by the next flush(). One atomic store.
   */
  publish(): void {
    if (!this.#closed && this.ring.unpublished) {
      this.ring.publish();
      this.#unrung = true;
    }
  }

  /** Publishes every written frame and rings the consumer once. A closed writer publishes nothing. */
  flush(): void {
    if (!this.#closed && (this.ring.unpublished || this.#unrung)) {
      this.ring.publish();
      this.#unrung = false;
      this.#bell.ring();
    }
  }

  /** Stops the pump; queued messages are dropped (the caller fails their tasks). */
  close(): void {
    this.#closed = true;
    this.#queue.length = 0;
    this.#releaseDrainWaiters();
  }

  #releaseDrainWaiters(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const w of waiters) w();
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        if (this.#writeQueued()) continue;
        this.flush();
        const wait = this.ring.waitForSpace();
        if (wait !== undefined) await wait;
      }
      this.flush();
    } finally {
      this.#pumping = false;
      this.#releaseDrainWaiters();
    }
  }

  /** Writes as much of the queue as fits. Returns true if the queue emptied. */
  #writeQueued(): boolean {
    const ring = this.ring;
    const max = ring.maxFrameBody;
    while (this.#queue.length > 0) {
      const m = this.#queue[0]!;
      const len = m.body === null ? 0 : m.body.length;
      if (len <= max) {
        if (!ring.tryWrite(m.tag << 2, m.a, m.b, m.body, 0, len)) return false;
      } else {
        while (m.sent < len) {
          let ok: boolean;
          if (m.sent === 0) {
            // The first fragment carries the total body length in front of its chunk.
            const chunk = Math.min(max - 4, len);
            const first = new Uint8Array(chunk + 4);
            new DataView(first.buffer).setUint32(0, len, true);
            first.set(m.body!.subarray(0, chunk), 4);
            ok = ring.tryWrite((m.tag << 2) | FRAG_FIRST, m.a, m.b, first, 0, chunk + 4);
            if (ok) m.sent = chunk;
          } else {
            const chunk = Math.min(max, len - m.sent);
            const kind = m.sent + chunk === len ? FRAG_LAST : FRAG_MIDDLE;
            ok = ring.tryWrite((m.tag << 2) | kind, m.a, m.b, m.body, m.sent, chunk);
            if (ok) m.sent += chunk;
          }
          if (!ok) return false;
        }
      }
      this.#queue.shift();
    }
    return true;
  }
}

/**
 * The consumer end of a ring: delivers whole messages, reassembling fragmented ones into a
 * buffer of their own. Whole-frame messages are delivered as a view of the ring (no copy).
 */
export class ChannelReader {
  readonly ring: Ring;
  readonly #onMessage: MessageHandler;
  #asm: Uint8Array | null = null;
  #asmFilled = 0;
  readonly #onFrame: MessageHandler = (tag, a, b, u8, off, len) => this.#frame(tag, a, b, u8, off, len);

  constructor(ring: Ring, onMessage: MessageHandler) {
    this.ring = ring;
    this.#onMessage = onMessage;
  }

  /** Delivers every published message; returns the number of frames read. */
  poll(): number {
    return this.ring.read(this.#onFrame);
  }

  #frame(tag: number, a: number, b: number, u8: Uint8Array, off: number, len: number): void {
    const kind = tag & 3;
    if (kind === FRAG_WHOLE) {
      this.#onMessage(tag >>> 2, a, b, u8, off, len);
      return;
    }
    if (kind === FRAG_FIRST) {
      const total = (u8[off]! | (u8[off + 1]! << 8) | (u8[off + 2]! << 16) | (u8[off + 3]! << 24)) >>> 0;
      this.#asm = new Uint8Array(total);
      this.#asm.set(u8.subarray(off + 4, off + len), 0);
      this.#asmFilled = len - 4;
      return;
    }
    const asm = this.#asm;
    if (asm === null) throw new Error('channel protocol error: fragment without a first fragment');
    asm.set(u8.subarray(off, off + len), this.#asmFilled);
    this.#asmFilled += len;
    if (kind === FRAG_LAST) {
      this.#asm = null;
      this.#onMessage(tag >>> 2, a, b, asm, 0, asm.length);
    }
  }
}
