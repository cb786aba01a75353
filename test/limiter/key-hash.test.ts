import { describe, expect, it } from 'vitest';
import { KeyHash } from '../../engine/limiter/table-region.js';

describe('the limiter key hash (64 bits, one pass)', () => {
  const h = new KeyHash();
  const of = (key: string): string => {
    h.set(key);
    return `${h.hi}:${h.lo}`;
  };

  it('has no collision over 200 000 similar keys, and both halves vary', () => {
    const seen = new Set<string>();
    const his = new Set<number>();
    const keys = [''];
    for (let i = 0; i < 100_000; i++) keys.push(`user:${i}`, `10.0.${i >> 8}.${i & 255}`);
    for (const k of keys) {
      seen.add(of(k));
      his.add(h.hi);
    }
    expect(seen.size).toBe(keys.length);
    expect(his.size).toBeGreaterThan(keys.length - 10); // the high half alone is nearly unique
  });

  it('tells apart keys that differ only in length, order or a non-ASCII unit', () => {
    const keys = ['a', 'a\u0000', 'ab', 'ba', 'é', 'e\u0301', '😀', '\ud83d', 'x'.repeat(1000), 'x'.repeat(1001)];
    expect(new Set(keys.map(of)).size).toBe(keys.length);
  });

  it('flips about half the bits when one char changes (avalanche)', () => {
    let flipped = 0;
    let trials = 0;
    for (let i = 0; i < 2000; i++) {
      h.set(`key-${i}-a`);
      const [a1, a2] = [h.hi, h.lo];
      h.set(`key-${i}-b`);
      for (const x of [a1 ^ h.hi, a2 ^ h.lo]) {
        for (let b = 0; b < 32; b++) flipped += (x >>> b) & 1;
        trials += 32;
      }
    }
    expect(flipped / trials).toBeGreaterThan(0.45);
    expect(flipped / trials).toBeLessThan(0.55);
  });
});
