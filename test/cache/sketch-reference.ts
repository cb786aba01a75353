/**
 * A plain-TypeScript reference of wasm/sketch.ts, written for clarity rather than speed: one byte
 * per 4-bit counter (counter c of u64 word w is `counters[w * 16 + c]`), the doorkeeper as one
 * byte per bit. The differential tests drive both with the same operations and compare estimates
 * and the whole state, word for word.
 */
export interface ReferenceShape {
  blocksLog2: number;
  samplePeriod: number;
  dkLog2: number;
  conservative: boolean;
}

export class SketchReference {
  readonly counters: Uint8Array;
  readonly doorkeeper: Uint8Array;
  additions = 0;
  resets = 0;
  readonly #shape: ReferenceShape;
  readonly #blocks: number;

  constructor(shape: ReferenceShape) {
    this.#shape = shape;
    this.#blocks = 2 ** shape.blocksLog2;
    this.counters = new Uint8Array(this.#blocks * 8 * 16);
    this.doorkeeper = new Uint8Array(shape.dkLog2 === 0 ? 0 : 2 ** shape.dkLog2);
  }

  /** The four (word, counter) cells of a hash, and its two doorkeeper bits. */
  cells(hash: number): { counters: number[]; dk: [number, number] } {
    const blockHash = hash >>> 0; // the caller's hash is used as is (already well mixed)
    const counterHash = Math.imul(blockHash, 0x31848bab) >>> 0;
    const ch = (counterHash ^ (counterHash >>> 14)) >>> 0;
    const block = blockHash % this.#blocks;
    const counters: number[] = [];
    for (let i = 0; i < 4; i++) {
      const b = (ch >>> (8 * i)) & 0xff;
      const word = block * 8 + 2 * i + (b & 1);
      counters.push(word * 16 + ((b >>> 1) & 15));
    }
    const bits = 2 ** this.#shape.dkLog2;
    // The top dkLog2 bits of each product (a 32-bit multiply).
    const dk: [number, number] = [
      Math.floor((Math.imul(blockHash, 0x9e3779b1) >>> 0) / (2 ** 32 / bits)),
      Math.floor((Math.imul(ch, 0x85ebca6b) >>> 0) / (2 ** 32 / bits)),
    ];
    return { counters, dk };
  }

  increment(hash: number): void {
    const { counters, dk } = this.cells(hash);
    let changed = false;
    if (this.#shape.dkLog2 !== 0 && !(this.doorkeeper[dk[0]] === 1 && this.doorkeeper[dk[1]] === 1)) {
      this.doorkeeper[dk[0]] = 1;
      this.doorkeeper[dk[1]] = 1;
      changed = true;
    } else {
      const min = Math.min(...counters.map((c) => this.counters[c]!));
      for (const c of counters) {
        const v = this.counters[c]!;
        if (v === 15) continue;
        if (this.#shape.conservative && v !== min) continue;
        this.counters[c] = v + 1;
        changed = true;
      }
    }
    if (changed && ++this.additions >= this.#shape.samplePeriod) this.reset();
  }

  frequency(hash: number): number {
    const { counters, dk } = this.cells(hash);
    const min = Math.min(...counters.map((c) => this.counters[c]!));
    const inDk = this.#shape.dkLog2 !== 0 && this.doorkeeper[dk[0]] === 1 && this.doorkeeper[dk[1]] === 1;
    return min + (inDk ? 1 : 0);
  }

  reset(): void {
    let odd = 0;
    for (let i = 0; i < this.counters.length; i++) {
      odd += this.counters[i]! & 1;
      this.counters[i] = this.counters[i]! >>> 1;
    }
    this.doorkeeper.fill(0);
    const lost = Math.floor(odd / 4);
    this.additions = Math.floor(Math.max(0, this.additions - lost) / 2);
    this.resets++;
  }

  /** The state packed as the kernel stores it (u64 words; u32 doorkeeper words). */
  packed(): { table: BigUint64Array; doorkeeper: Uint32Array } {
    const table = new BigUint64Array(this.counters.length / 16);
    for (let w = 0; w < table.length; w++) {
      let word = 0n;
      for (let c = 15; c >= 0; c--) word = (word << 4n) | BigInt(this.counters[w * 16 + c]!);
      table[w] = word;
    }
    const doorkeeper = new Uint32Array(this.doorkeeper.length / 32);
    for (let i = 0; i < this.doorkeeper.length; i++) if (this.doorkeeper[i] === 1) doorkeeper[i >>> 5]! |= 1 << (i & 31);
    return { table, doorkeeper };
  }
}
