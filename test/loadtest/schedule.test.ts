/**
 * The open model's schedule: arrival k at the t where ∫rate = k, over piecewise-linear stages;
 * checked against a plain numeric integration and by properties (fast-check).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Arrivals, arrivalShare, levelAt, scheduledArrivals } from '../../engine/loadtest/schedule.js';
import type { Stage } from '../../engine/loadtest/options.js';

function all(from: number, stages: Stage[], offsets = [0], period = 1): number[] {
  const a = new Arrivals(from, stages, offsets, period);
  const out: number[] = [];
  for (let t = a.next(); t !== Infinity; t = a.next()) out.push(t);
  return out;
}

/** ∫₀ᵗ rate, by the trapezoid rule on 1 µs steps' worth of precision (the reference). */
function integral(from: number, stages: Stage[], t: number): number {
  const n = 20_000;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const a = (t * i) / n;
    const b = (t * (i + 1)) / n;
    sum += ((levelAt(from, stages, a) + levelAt(from, stages, b)) / 2) * ((b - a) / 1000);
  }
  return sum;
}

describe('schedule', () => {
  it('a constant rate: evenly spaced arrivals, exactly rate × duration of them', () => {
    const t = all(200, [{ durationMs: 2000, target: 200 }]);
    expect(t.length).toBe(400);
    t.forEach((x, k) => expect(x).toBeCloseTo(k * 5, 9));
    expect(scheduledArrivals(200, [{ durationMs: 2000, target: 200 }])).toBe(400);
  });

  it('levelAt interpolates each stage from the previous target', () => {
    const stages = [{ durationMs: 1000, target: 100 }, { durationMs: 2000, target: 100 }, { durationMs: 1000, target: 0 }];
    expect(levelAt(0, stages, 0)).toBe(0);
    expect(levelAt(0, stages, 500)).toBe(50);
    expect(levelAt(0, stages, 2000)).toBe(100);
    expect(levelAt(0, stages, 3500)).toBe(50);
    expect(levelAt(0, stages, 9999)).toBe(0);
  });

  it('a ramp: arrival k is where the integral of the rate reaches k', () => {
    const stages = [{ durationMs: 1000, target: 400 }, { durationMs: 500, target: 400 }, { durationMs: 1000, target: 50 }];
    const t = all(0, stages);
    expect(t.length).toBe(scheduledArrivals(0, stages));
    for (const k of [1, 10, 100, 200, 250, 300, 400, t.length - 1]) expect(integral(0, stages, t[k]!)).toBeCloseTo(k, 1);
  });

  it('workers sharing the schedule by their connections cover it exactly once, each in proportion to its connections (review31)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 40 }), (workers, extra) => {
        const connections = workers + extra - 1; // every worker owns at least one
        const stages = [{ durationMs: 1000, target: 600 }];
        const whole = all(600, stages);
        const parts = Array.from({ length: workers }, (_, w) => {
          const { offsets, period } = arrivalShare(w, workers, connections);
          return all(600, stages, offsets, period);
        });
        const merged = parts.flat().sort((a, b) => a - b);
        expect(merged.length).toBe(whole.length);
        let same = true;
        for (let i = 0; i < merged.length; i++) if (Math.abs(merged[i]! - whole[i]!) > 1e-6) same = false;
        expect(same).toBe(true);
        parts.forEach((p, w) => {
          const owned = Math.ceil((connections - w) / workers);
          expect(Math.abs(p.length - (whole.length * owned) / connections)).toBeLessThanOrEqual(owned);
        });
      }),
      { numRuns: 100 },
    );
  });

  it('a schedule of rate 0 throughout has 0 arrivals, not −0', () => {
    // fast-check found it (seed −695274543): Math.ceil(−1e−9) is −0.
    expect(Object.is(scheduledArrivals(0, [{ durationMs: 1, target: 0 }]), 0)).toBe(true);
  });

  it('workers sharing the schedule (w of W takes w, w+W, …) cover it exactly once', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 500 }),
        fc.array(fc.record({ durationMs: fc.integer({ min: 1, max: 3000 }), target: fc.integer({ min: 0, max: 2000 }) }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 1, max: 4 }),
        (from, stages, workers) => {
          const whole = all(from, stages);
          // nondecreasing, within the run, as many as the integral says (plain loops: expect()
          // per element made this test take seconds)
          const total = stages.reduce((a, s) => a + s.durationMs, 0);
          let ordered = true;
          for (let i = 0; i < whole.length; i++) {
            if (whole[i]! < 0 || whole[i]! > total || (i > 0 && whole[i]! < whole[i - 1]! - 1e-9)) ordered = false;
          }
          expect(ordered).toBe(true);
          expect(whole.length).toBe(scheduledArrivals(from, stages));
          const parts = Array.from({ length: workers }, (_, w) => all(from, stages, [w], workers));
          const merged = parts.flat().sort((a, b) => a - b);
          expect(merged.length).toBe(whole.length);
          let same = true;
          for (let i = 0; i < merged.length; i++) if (Math.abs(merged[i]! - whole[i]!) > 1e-6) same = false;
          expect(same).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });
});
