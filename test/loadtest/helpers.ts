/**
 * A real HTTP target for the load tester's tests: node:http on 127.0.0.1 (port 0) in the test's
 * own process (the load comes from worker threads), answering after a known delay:
 *  - `delayMs` ± `jitterMs` (uniform) per request;
 *  - optionally a stall: during the first `stall.forMs` of every `stall.everyMs` window (counted
 *    from the server's start) nothing is answered; a request that arrives then is answered at the
 *    stall's end plus its delay — a GC pause or a lock held by the server, simulated with timers
 *    (no CPU is burnt, so the generator's own threads are not slowed down).
 * It counts arrivals per 100 ms bucket and how many arrived during a stall.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TargetOptions {
  delayMs?: number;
  jitterMs?: number;
  stall?: { everyMs: number; forMs: number };
  /** response body; default 'ok' */
  body?: string;
}

export interface Target {
  url: string;
  /** requests received */
  readonly arrivals: number;
  /** requests received during a stall */
  readonly arrivalsInStall: number;
  /** arrivals per 100 ms bucket since the server started */
  readonly buckets: number[];
  /** methods and paths seen, counted */
  readonly seen: Map<string, number>;
  close(): Promise<void>;
}

export async function startTarget(options: TargetOptions = {}): Promise<Target> {
  const delay = options.delayMs ?? 0;
  const jitter = options.jitterMs ?? 0;
  const body = options.body ?? 'ok';
  const t0 = performance.now();
  const state = { arrivals: 0, arrivalsInStall: 0, buckets: [] as number[], seen: new Map<string, number>() };
  const server: Server = createServer((req, res) => {
    const t = performance.now() - t0;
    state.arrivals++;
    const b = Math.floor(t / 100);
    state.buckets[b] = (state.buckets[b] ?? 0) + 1;
    const key = `${req.method} ${req.url}`;
    state.seen.set(key, (state.seen.get(key) ?? 0) + 1);
    let wait = delay + (jitter > 0 ? (Math.random() * 2 - 1) * jitter : 0);
    if (options.stall !== undefined) {
      const phase = t % options.stall.everyMs;
      if (phase < options.stall.forMs) {
        state.arrivalsInStall++;
        wait += options.stall.forMs - phase;
      }
    }
    req.resume();
    req.on('end', () => {
      if (wait <= 0) res.end(body);
      else setTimeout(() => res.end(body), wait);
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    get arrivals() { return state.arrivals; },
    get arrivalsInStall() { return state.arrivalsInStall; },
    get buckets() { return state.buckets; },
    get seen() { return state.seen; },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
