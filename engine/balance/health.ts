/**
 * Active health checks of the balancer's backends: an HTTP GET (undici), a TCP connect, or a
 * function. A check answers true (healthy) or false; a throw, a rejection or the timeout count as
 * false. The rise/fall thresholds and the timer live in the balancer; this file only probes.
 */
import { connect } from 'node:net';
import { request } from 'undici';

/** A backend as the checks see it. */
export interface CheckTarget {
  readonly id: string;
  readonly url: string | undefined;
}

/** A check function: true (or undefined) = healthy; false, a throw or a rejection = unhealthy. */
export type CheckFunction = (backend: CheckTarget, signal: AbortSignal) => boolean | void | Promise<boolean | void>;

/** Options of the balancer's active health checks (`health`). Every field is optional. */
export interface HealthOptions {
  /**
   * What a check does: `'http'` (GET `url` + `path`; healthy on a status in `expectStatus`),
   * `'tcp'` (a TCP connect to the URL's host and port), or a function. Default `'http'` (backends
   * without a `url` then need a function, or `health: false`).
   */
  check?: 'http' | 'tcp' | CheckFunction;
  /** Path of the HTTP check. Default '/health'. */
  path?: string;
  /** Statuses of a healthy HTTP answer: [min, max] inclusive. Default [200, 399]. */
  expectStatus?: [number, number];
  /** Time between checks of a backend (ms). Default 5000. */
  intervalMs?: number;
  /** A check slower than this fails (ms). Default 2000. */
  timeoutMs?: number;
  /** Checks in a row that bring a down backend up. Default 2. */
  rise?: number;
  /** Checks in a row that take an up backend down. Default 3. */
  fall?: number;
}

export const HEALTH_DEFAULTS = {
  check: 'http' as const,
  path: '/health',
  expectStatus: [200, 399] as [number, number],
  intervalMs: 5000,
  timeoutMs: 2000,
  rise: 2,
  fall: 3,
};

export type ResolvedHealth = Omit<Required<HealthOptions>, 'check'> & { check: 'http' | 'tcp' | CheckFunction };

/** Validates `health` options (the balancer's public boundary calls this). */
export function resolveHealth(o: HealthOptions, where = 'options.health'): ResolvedHealth {
  if (o === null || typeof o !== 'object') throw new TypeError(`${where} must be an object or false, got ${String(o)}`);
  const check = o.check ?? HEALTH_DEFAULTS.check;
  if (check !== 'http' && check !== 'tcp' && typeof check !== 'function') {
    throw new TypeError(`${where}.check must be 'http', 'tcp' or a function, got ${String(check)}`);
  }
  const int = (k: 'intervalMs' | 'timeoutMs' | 'rise' | 'fall', min: number): number => {
    const v = o[k] ?? HEALTH_DEFAULTS[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > 2 ** 31 - 1) {
      throw new RangeError(`${where}.${k} must be an integer ≥ ${min}, got ${String(v)}`);
    }
    return v;
  };
  const path = o.path ?? HEALTH_DEFAULTS.path;
  if (typeof path !== 'string' || !path.startsWith('/')) throw new TypeError(`${where}.path must be a string starting with '/', got ${String(path)}`);
  const expect = o.expectStatus ?? HEALTH_DEFAULTS.expectStatus;
  if (!Array.isArray(expect) || expect.length !== 2 || !expect.every((n) => Number.isInteger(n) && n >= 100 && n <= 599) || expect[0] > expect[1]) {
    throw new RangeError(`${where}.expectStatus must be [min, max] HTTP statuses, got ${JSON.stringify(expect)}`);
  }
  return { check, path, expectStatus: [expect[0], expect[1]], intervalMs: int('intervalMs', 1), timeoutMs: int('timeoutMs', 1), rise: int('rise', 1), fall: int('fall', 1) };
}

/** Runs one check of `target`; resolves true (healthy) or false, never rejects, within timeoutMs. */
export function probe(target: CheckTarget, h: ResolvedHealth, stop?: AbortSignal): Promise<boolean> {
  const ac = new AbortController();
  return new Promise<boolean>((done) => {
    let settled = false;
    const onStop = (): void => finish(false);
    const finish = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stop?.removeEventListener('abort', onStop);
      ac.abort();
      done(ok);
    };
    const timer = setTimeout(() => finish(false), h.timeoutMs);
    timer.unref?.();
    // The balancer closed: the check ends now, its signal aborted (review61: it ran to its end).
    if (stop !== undefined) {
      if (stop.aborted) {
        finish(false);
        return;
      }
      stop.addEventListener('abort', onStop, { once: true });
    }
    let p: Promise<boolean>;
    try {
      if (typeof h.check === 'function') {
        p = Promise.resolve(h.check(target, ac.signal)).then((v) => v !== false);
      } else if (target.url === undefined) {
        p = Promise.resolve(false);
      } else if (h.check === 'tcp') {
        p = tcpCheck(target.url, ac.signal);
      } else {
        // url + path: a backend at http://h/api is checked at http://h/api/health.
        const u = new URL(target.url);
        u.pathname = u.pathname.replace(/\/+$/, '') + h.path;
        p = httpCheck(u, h.expectStatus, ac.signal);
      }
    } catch {
      p = Promise.resolve(false);
    }
    p.then(finish, () => finish(false));
  });
}

async function httpCheck(url: URL, [min, max]: [number, number], signal: AbortSignal): Promise<boolean> {
  const res = await request(url, { method: 'GET', signal, headers: { 'user-agent': 'hotpath-health' } });
  await res.body.dump().catch(() => undefined);
  return res.statusCode >= min && res.statusCode <= max;
}

function tcpCheck(url: string, signal: AbortSignal): Promise<boolean> {
  const u = new URL(url);
  const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  return new Promise((resolve) => {
    const socket = connect({ host: u.hostname.replace(/^\[|\]$/g, ''), port });
    const end = (ok: boolean): void => {
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve(ok);
    };
    const onAbort = (): void => end(false);
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => end(true));
    socket.once('error', () => end(false));
  });
}
