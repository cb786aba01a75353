/**
 * Many callers at once against a small pool whose create, validate and destroy are async and
 * sometimes fail, with timeouts and aborts in the mix. The checker fails on a resource handed to
 * two holders at once, a destroyed resource lent again, a resource destroyed twice, or counts
 * that do not add up (created − destroyed = idle + borrowed + validating). A second test replays
 * random operation sequences (fast-check) on fake timers and checks the same invariants, plus
 * the waiters' order, after every step.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createPool, type Pool } from '../../engine/pool/pool.js';

interface Res {
  id: number;
}

/** Yields to the event loop `n` times (other callers run; no timer involved). */
async function ticks(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
}

/** A seeded PRNG so that a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('pool under concurrency', () => {
  for (const fifo of [false, true]) {
    it(`never lends one resource twice and loses none (fifo: ${fifo})`, async () => {
      const random = rng(fifo ? 7 : 42);
      let nextId = 0;
      const alive = new Set<Res>();
      const destroyedOnce = new Set<Res>();
      const problems: string[] = [];
      const p: Pool<Res> = createPool<Res>({
        create: async () => {
          await ticks(Math.floor(random() * 3));
          if (random() < 0.1) throw new Error('create failed');
          const r = { id: ++nextId };
          alive.add(r);
          return r;
        },
        destroy: async (r) => {
          if (destroyedOnce.has(r)) problems.push(`destroyed twice: ${r.id}`);
          destroyedOnce.add(r);
          alive.delete(r);
          await ticks(Math.floor(random() * 2));
        },
        validate: (r) => {
          if (!alive.has(r)) problems.push(`validate of a destroyed resource ${r.id}`);
          const ok = random() > 0.05;
          return random() < 0.5 ? ok : ticks(1).then(() => ok);
        },
        max: 5,
        min: 1,
        fifo,
        breaker: false,
        createRetry: { delayMs: 1, jitter: false },
        acquireTimeoutMs: 60_000,
      });
      const holders = new Map<Res, number>();
      let served = 0;
      let timeouts = 0;
      let cancelled = 0;

      const worker = async (w: number): Promise<void> => {
        for (let i = 0; i < 150; i++) {
          const roll = random();
          let r: Res;
          try {
            if (roll < 0.05) r = await p.acquire({ signal: AbortSignal.abort() });
            else if (roll < 0.1) {
              const ac = new AbortController();
              const got = p.acquire({ signal: ac.signal });
              setImmediate(() => ac.abort());
              r = await got;
            } else r = await p.acquire();
          } catch (err) {
            const code = (err as { code?: string }).code;
            if (code === 'ERR_HOTPATH_CANCELLED') cancelled++;
            else if (code === 'ERR_HOTPATH_POOL_TIMEOUT') timeouts++;
            else problems.push(`unexpected ${String(err)}`);
            continue;
          }
          if (holders.has(r)) problems.push(`resource ${r.id} handed to ${w} while ${holders.get(r)} holds it`);
          if (!alive.has(r)) problems.push(`destroyed resource ${r.id} lent to ${w}`);
          holders.set(r, w);
          served++;
          await ticks(Math.floor(random() * 3));
          holders.delete(r);
          if (random() < 0.1) await p.destroy(r);
          else p.release(r);
        }
      };
      await Promise.all(Array.from({ length: 24 }, (_, w) => worker(w)));

      expect(problems).toEqual([]);
      expect(served).toBeGreaterThan(24 * 150 * 0.8);
      expect(cancelled).toBeGreaterThan(0);
      const s = p.stats();
      expect(s.borrowed).toBe(0);
      expect(s.waiters).toBe(0);
      expect(s.size).toBeLessThanOrEqual(5);
      expect(s.created - s.destroyed).toBe(s.idle + s.borrowed + s.validating);
      expect(s.validationFailures).toBeGreaterThan(0);
      expect(s.createFailures).toBeGreaterThan(0);
      expect(timeouts).toBe(0);
      await p.drain();
      const after = p.stats();
      expect(after.size).toBe(0);
      expect(after.created).toBe(after.destroyed);
      expect(alive.size).toBe(0); // every resource created was destroyed exactly once
      expect(destroyedOnce.size).toBe(nextId);
    });
  }
});

describe('random operation sequences (fast-check, fake timers)', () => {
  type Op =
    | { kind: 'acquire'; timeoutMs: number | undefined }
    | { kind: 'release'; pick: number }
    | { kind: 'destroy'; pick: number }
    | { kind: 'break'; pick: number }
    | { kind: 'failCreates'; on: boolean }
    | { kind: 'advance'; ms: number };
  const op: fc.Arbitrary<Op> = fc.oneof(
    { arbitrary: fc.record({ kind: fc.constant('acquire' as const), timeoutMs: fc.option(fc.integer({ min: 1, max: 3000 }), { nil: undefined }) }), weight: 4 },
    { arbitrary: fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }), weight: 3 },
    fc.record({ kind: fc.constant('destroy' as const), pick: fc.nat() }),
    { arbitrary: fc.record({ kind: fc.constant('break' as const), pick: fc.nat() }), weight: 2 },
    fc.record({ kind: fc.constant('failCreates' as const), on: fc.boolean() }),
    fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 2000 }) }),
  );

  it('keeps its invariants after every step', async () => {
    await fc.assert(fc.asyncProperty(fc.array(op, { maxLength: 80 }), fc.boolean(), fc.integer({ min: 1, max: 4 }), async (ops, fifo, max) => {
      vi.useFakeTimers();
      let nextId = 0;
      let failing = false;
      const broken = new Set<Res>();
      const p = createPool<Res>({
        create: async () => {
          if (failing) throw new Error('down');
          return { id: ++nextId };
        },
        validate: (r) => !broken.has(r),
        max,
        min: max > 1 ? 1 : 0,
        fifo,
        idleMs: 1500,
        maxLifetimeMs: 5000,
        acquireTimeoutMs: 1000,
        createRetry: { delayMs: 50, maxDelayMs: 400, jitter: false },
        breaker: { consecutiveFailures: 3, resetMs: 1000 },
      });
      const held: Res[] = [];
      const servedOrder: number[] = [];
      const open = new Map<number, number>(); // unsettled acquires: number → deadline
      let asked = 0;
      const check = (): void => {
        const s = p.stats();
        expect(s.created - s.destroyed).toBe(s.idle + s.borrowed + s.validating);
        expect(s.size + s.pending).toBeLessThanOrEqual(max);
        expect(s.borrowed).toBe(held.length);
        expect(new Set(held).size).toBe(held.length);
        // nobody waits past its timeout (the shared timer of default-timeout waiters included)
        for (const deadline of open.values()) expect(Date.now()).toBeLessThan(deadline);
        // FIFO of waiters: callers are served in the order they asked
        for (let i = 1; i < servedOrder.length; i++) expect(servedOrder[i]!).toBeGreaterThan(servedOrder[i - 1]!);
      };
      try {
        for (const o of ops) {
          if (o.kind === 'acquire') {
            const n = asked++;
            // undefined: the default timeout (the waiters' shared timer); a number: its own timer
            open.set(n, Date.now() + (o.timeoutMs ?? 1000));
            p.acquire(o.timeoutMs === undefined ? undefined : { timeoutMs: o.timeoutMs }).then((r) => {
              open.delete(n);
              held.push(r);
              servedOrder.push(n);
            }, () => void open.delete(n));
          } else if ((o.kind === 'release' || o.kind === 'destroy') && held.length > 0) {
            const [r] = held.splice(o.pick % held.length, 1);
            if (o.kind === 'release') p.release(r!);
            else void p.destroy(r!);
          } else if (o.kind === 'break' && held.length > 0) {
            broken.add(held[o.pick % held.length]!);
          } else if (o.kind === 'failCreates') {
            failing = o.on;
          } else if (o.kind === 'advance') {
            await vi.advanceTimersByTimeAsync(o.ms);
          }
          await vi.advanceTimersByTimeAsync(0);
          check();
        }
        for (const r of held.splice(0)) p.release(r);
        await vi.advanceTimersByTimeAsync(0);
        check();
      } finally {
        const drained = p.drain({ timeoutMs: 10 });
        await vi.advanceTimersByTimeAsync(10);
        await drained;
        vi.useRealTimers();
      }
      const s = p.stats();
      expect(s.size).toBe(0);
      expect(s.created).toBe(s.destroyed);
    }), { numRuns: 300 });
  });
});
