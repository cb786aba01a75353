/**
 * The reverse-proxy mode of `hotpath serve --upstream URL…`: every request that is not one of the
 * service's own routes goes to an upstream picked by the engine's balancer (health checks,
 * passive ejection, a breaker per upstream), over undici (its Agent keeps one connection pool per
 * upstream origin: hotpath does not rebuild HTTP connection pooling).
 *
 * - Bodies stream both ways; nothing is buffered except a response being cached.
 * - GET responses are cached by their Cache-Control (`s-maxage` or `max-age`; never with no-store,
 *   no-cache, private, Set-Cookie, Vary or Authorization on the request), up to
 *   `proxyCacheMaxBytes`, keyed by method, host and URL; a hit answers `X-Cache: HIT` with `Age`.
 * - Failover: a request with no body (GET, HEAD, a bodiless DELETE …) that fails before its
 *   response starts (connection refused or reset, a 502/503/504 from the upstream, a timeout) is
 *   tried on another upstream, up to 3 in all. A request with a body is sent once: its body is a
 *   stream that cannot be replayed.
 * - Errors: no upstream may take the request → 503; an upstream refused, reset or sent a broken
 *   response → 502; it did not answer within `upstreamTimeoutMs` → 504. Each with a JSON body
 *   `{ error, code }`. An upstream that dies after its response started cannot be reported to the
 *   client any more: the client's connection is cut (a truncated response is never passed off as
 *   complete).
 * - Hop-by-hop headers are dropped both ways; X-Forwarded-For/-Proto/-Host and Via are added.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { Agent, errors as undiciErrors, type Dispatcher } from 'undici';
import type { Engine } from '../engine.js';
import type { Balancer, Backend, BalancerAlgorithm } from '../balance/balancer.js';
import { ErrorCodes, HotpathError, NoBackendError, type ErrorCode } from '../errors.js';
import { plainAddress } from './address.js';
import type { Logger } from './server.js';

/** What the proxy needs from the service's configuration (hot-reloadable through `configure`). */
export interface ProxySettings {
  upstreams: string[];
  upstreamAlgorithm: string;
  upstreamTimeoutMs: number;
  upstreamHealthPath: string | undefined;
  proxyCacheMaxBytes: number;
}

/** A cached upstream response. */
interface Stored {
  status: number;
  headers: Array<[string, string | string[]]>;
  body: Buffer;
  at: number;
}

/** Request headers not forwarded (hop-by-hop, RFC 9110 §7.6.1) — plus those the proxy sets itself. */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-authenticate', 'host', 'http2-settings', 'expect', 'via']);
/** Methods a retry cannot do twice harm with (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
/** Statuses from an upstream that mean "try another one" for a replayable request. */
const RETRY_STATUS = new Set([502, 503, 504]);
const MAX_ATTEMPTS = 3;

/** A request the proxy answers itself with `status` (4xx/5xx) and a JSON body naming `code`. */
export class ProxyError extends HotpathError {
  readonly status: number;
  constructor(status: number, message: string, code: ErrorCode) {
    super(code, message);
    this.status = status;
  }
}

/** How long a response may be cached (ms), from its Cache-Control, or 0. */
export function freshnessMs(headers: IncomingHttpHeaders): number {
  if (headers['set-cookie'] !== undefined || headers.vary !== undefined) return 0;
  const cc = headers['cache-control'];
  if (typeof cc !== 'string') return 0;
  const directives = new Map<string, string | undefined>();
  for (const part of cc.toLowerCase().split(',')) {
    const [k, v] = part.trim().split('=', 2) as [string, string | undefined];
    if (k.length > 0) directives.set(k, v?.replace(/^"|"$/g, ''));
  }
  if (directives.has('no-store') || directives.has('no-cache') || directives.has('private')) return 0;
  const age = directives.get('s-maxage') ?? directives.get('max-age');
  const n = age === undefined ? NaN : Number(age);
  return Number.isInteger(n) && n > 0 ? Math.min(n, 365 * 24 * 3600) * 1000 : 0;
}

export interface Proxy {
  /**
   * Forwards one request (the caller has rate-limited it); `client` is its address for
   * X-Forwarded-For, `peerTrusted` whether the socket's peer is a trusted proxy (whose
   * X-Forwarded-Host/-Proto are kept). Rejects with ProxyError for the answers it makes itself.
   */
  handle(req: IncomingMessage, res: ServerResponse, client: string, peerTrusted: boolean): Promise<void>;
  /**
   * Applies new upstreams / algorithm / timeouts: upstreams added and removed, and the algorithm
   * changed, in place (what is known of each upstream stays); a new health path is a new balancer.
   */
  configure(next: ProxySettings): void;
  readonly balancer: Balancer;
  close(): Promise<void>;
}

/** @throws TypeError naming a bad setting. */
export function createProxy(engine: Engine, settings: ProxySettings, log: Logger): Proxy {
  let s = settings;
  const agent = new Agent({ connections: 256, keepAliveTimeout: 4_000, connect: { timeout: Math.min(10_000, s.upstreamTimeoutMs) } });
  const makeBalancer = (x: ProxySettings): Balancer => engine.balancer({
    name: 'upstreams',
    algorithm: x.upstreamAlgorithm as BalancerAlgorithm,
    backends: x.upstreams.map((url) => ({ id: url, url })),
    health: x.upstreamHealthPath !== undefined ? { check: 'http', path: x.upstreamHealthPath, intervalMs: 2000, timeoutMs: 1000, fall: 2, rise: 2 } : { check: 'tcp', intervalMs: 2000, timeoutMs: 1000, fall: 2, rise: 2 },
    outlier: { consecutiveFailures: 5, ejectMs: 5_000, maxEjectMs: 60_000, maxEjectedPercent: 50 },
    breaker: { consecutiveFailures: 5, errorRate: 0.5, volume: 20, windowMs: 10_000, resetMs: 5_000 },
  });
  let lb = makeBalancer(s);
  lb.on('state', (b: Backend, to: string, from: string) => log.warn({ upstream: b.id, from, to }, 'upstream state changed'));
  const cache = engine.cache;

  async function handle(req: IncomingMessage, res: ServerResponse, client: string, peerTrusted: boolean): Promise<void> {
    // Noticed from the start: a client that leaves during a cache lookup, a failover or the relay
    // ends its upstream attempt and is never counted against an upstream.
    let attempt: AbortController | undefined;
    let gone = res.destroyed;
    const onClose = (): void => {
      if (res.writableFinished) return;
      gone = true;
      attempt?.abort();
    };
    res.once('close', onClose);
    try {
      await forward(req, res, client, peerTrusted, () => gone, (ac) => (attempt = ac));
    } finally {
      res.off('close', onClose);
    }
  }

  async function forward(req: IncomingMessage, res: ServerResponse, client: string, peerTrusted: boolean,
    isGone: () => boolean, setAttempt: (ac: AbortController) => void): Promise<void> {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    // origin-form only: `OPTIONS *` or an absolute URL would be sent somewhere else (undici refuses them).
    if (!url.startsWith('/')) throw new ProxyError(400, `the proxy forwards origin-form request targets (/path), got ${JSON.stringify(url.slice(0, 100))}`, ErrorCodes.BAD_REQUEST);
    const host = String(req.headers.host ?? req.headers[':authority'] ?? '');
    const peer = plainAddress(req.socket.remoteAddress ?? '');
    const tls = 'encrypted' in req.socket && req.socket.encrypted === true;
    // X-Forwarded-Host/-Proto: a client's own values are believed only from a trusted proxy.
    const fwdHost = peerTrusted && typeof req.headers['x-forwarded-host'] === 'string' ? req.headers['x-forwarded-host'] : host;
    const fwdProto = peerTrusted && typeof req.headers['x-forwarded-proto'] === 'string' ? req.headers['x-forwarded-proto'] : tls ? 'https' : 'http';
    const lookup = s.proxyCacheMaxBytes > 0 && (method === 'GET' || method === 'HEAD') && req.headers.authorization === undefined;
    // Only GET answers are stored (a HEAD answer has no body); HEAD is answered from a stored GET.
    // The key holds what the upstream sees of the request's origin, so no header it builds links
    // from can differ between two requests of one key.
    const cacheKey = lookup ? `proxy:${fwdProto}://${fwdHost}${url}` : '';
    const revalidate = /no-cache|no-store/i.test(String(req.headers['cache-control'] ?? ''));
    if (lookup && !revalidate) {
      let found = cache.getSync(cacheKey) as Stored | undefined;
      if (found === undefined && engine.redis !== undefined) found = (await cache.get(cacheKey)) as Stored | undefined;
      if (isGone()) return;
      if (found !== undefined && typeof found === 'object' && Buffer.isBuffer(found.body)) {
        res.statusCode = found.status;
        for (const [k, v] of found.headers) res.setHeader(k, v);
        res.setHeader('Age', String(Math.max(0, Math.floor((engine.clock.now() - found.at) / 1000))));
        res.setHeader('X-Cache', 'HIT');
        res.setHeader('Content-Length', found.body.length);
        res.end(method === 'HEAD' ? undefined : found.body);
        return;
      }
    }
    const headers: Record<string, string | string[]> = {};
    const connectionListed = String(req.headers.connection ?? '').toLowerCase().split(',').map((x) => x.trim());
    for (const [k, v] of Object.entries(req.headers)) {
      if (v === undefined || HOP.has(k) || k.startsWith(':') || connectionListed.includes(k)) continue;
      headers[k] = v;
    }
    const prior = req.headers['x-forwarded-for'];
    headers['x-forwarded-for'] = prior === undefined ? client : `${Array.isArray(prior) ? prior.join(', ') : prior}, ${peer}`;
    headers['x-forwarded-proto'] = fwdProto;
    if (fwdHost.length > 0) headers['x-forwarded-host'] = fwdHost;
    else delete headers['x-forwarded-host'];
    const via = req.headers.via;
    headers.via = `${via !== undefined ? `${via}, ` : ''}${req.httpVersionMajor >= 2 ? '2' : req.httpVersion} hotpath`;
    // HTTP/2 bodies need no length: a stream has a body unless it ended with its headers.
    const h2 = req.httpVersionMajor >= 2;
    const stream = (req as unknown as { stream?: { endAfterHeaders?: boolean } }).stream;
    const hasBody = h2
      ? stream?.endAfterHeaders !== true
      : req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
    // Tried on another upstream only when that cannot do the work twice: idempotent methods
    // (RFC 9110 §9.2.2) without a body; any bodiless request whose connection was refused.
    const idempotent = IDEMPOTENT.has(method) && !hasBody;
    const attempts = hasBody ? 1 : Math.min(MAX_ATTEMPTS, Math.max(1, lb.backends().length));
    // One deadline for the whole request, failovers included.
    const deadline = performance.now() + s.upstreamTimeoutMs;
    const tried = new Set<string>();
    let last: ProxyError | undefined;
    for (let i = 0; i < attempts; i++) {
      if (isGone()) return;
      const left = deadline - performance.now();
      if (left <= 0) break;
      let b: Backend;
      try {
        b = lb.pick({ key: client, exclude: tried });
      } catch (err) {
        if (err instanceof NoBackendError) {
          if (last !== undefined) break;
          throw new ProxyError(503, `no upstream can take the request: ${err.message}`, ErrorCodes.NO_BACKEND);
        }
        throw err;
      }
      tried.add(b.id);
      const t0 = performance.now();
      let answer: Dispatcher.ResponseData;
      // Our own timer for the response headers: undici's headersTimeout ticks in whole seconds.
      let timedOut = false;
      const ac = new AbortController();
      setAttempt(ac);
      const timer = setTimeout(() => {
        timedOut = true;
        ac.abort();
      }, left);
      try {
        answer = await agent.request({
          origin: b.url!, path: url, method: method as Dispatcher.HttpMethod, headers,
          body: hasBody ? req : undefined,
          signal: ac.signal,
          headersTimeout: s.upstreamTimeoutMs + 1000, bodyTimeout: s.upstreamTimeoutMs,
        });
      } catch (err) {
        if (isGone()) {
          lb.release(b);
          return; // the client is gone
        }
        if (!timedOut && isClientError(err)) {
          lb.release(b); // the request itself is at fault, not the upstream
          throw new ProxyError(400, `the request cannot be forwarded: ${(err as Error).message}`, ErrorCodes.BAD_REQUEST);
        }
        lb.report(b, { ok: false, latencyMs: performance.now() - t0 });
        last = timedOut ? timeout(b.id) : classify(err, b.id);
        if (!idempotent && !(isRefused(err) && !hasBody)) break;
        continue;
      } finally {
        clearTimeout(timer);
      }
      if (RETRY_STATUS.has(answer.statusCode) && idempotent && i + 1 < attempts) {
        lb.report(b, { ok: false, latencyMs: performance.now() - t0 });
        await answer.body.dump().catch(() => undefined);
        last = new ProxyError(502, `upstream ${b.id} answered ${answer.statusCode}`, ErrorCodes.UPSTREAM_FAILED);
        continue;
      }
      await relay(answer, b, t0, method === 'GET' ? cacheKey : '', method === 'HEAD' || method === 'GET' ? cacheKey !== '' : false, res, isGone);
      return;
    }
    throw last ?? timeout(tried.size > 0 ? [...tried].join(', ') : 'none');
  }

  /** Streams an upstream answer to the client (and into the cache when it may be cached). */
  async function relay(answer: Dispatcher.ResponseData, b: Backend, t0: number, storeKey: string, looked: boolean, res: ServerResponse, isGone: () => boolean): Promise<void> {
    const status = answer.statusCode;
    const kept: Array<[string, string | string[]]> = [];
    const connectionListed = String(answer.headers.connection ?? '').toLowerCase().split(',').map((x) => x.trim());
    for (const [k, v] of Object.entries(answer.headers)) {
      if (v === undefined || HOP.has(k) || k === 'via' || connectionListed.includes(k)) continue;
      kept.push([k, v]);
    }
    res.statusCode = status;
    for (const [k, v] of kept) res.setHeader(k, v);
    const via = answer.headers.via;
    res.setHeader('Via', `${via !== undefined ? `${Array.isArray(via) ? via.join(', ') : via}, ` : ''}1.1 hotpath`);
    // Freshness left: the upstream's max-age minus the Age it reports (a cache in front of it).
    const upstreamAge = Number(answer.headers.age ?? 0);
    const ageMs = Number.isFinite(upstreamAge) && upstreamAge > 0 ? upstreamAge * 1000 : 0;
    const fresh = storeKey !== '' && status === 200 ? freshnessMs(answer.headers as IncomingHttpHeaders) - ageMs : 0;
    if (looked) res.setHeader('X-Cache', 'MISS');
    const chunks: Buffer[] | undefined = fresh > 0 ? [] : undefined;
    let size = 0;
    let tooBig = false;
    let failed = false;
    try {
      for await (const chunk of answer.body as AsyncIterable<Buffer>) {
        if (chunks !== undefined && !tooBig) {
          size += chunk.length;
          if (size > s.proxyCacheMaxBytes) tooBig = true;
          else chunks.push(chunk);
        }
        if (res.destroyed) break;
        if (!res.write(chunk)) {
          await new Promise<void>((resolve) => {
            if (res.destroyed) return resolve();
            const go = (): void => {
              res.off('drain', go);
              res.off('close', go);
              resolve();
            };
            res.once('drain', go);
            res.once('close', go);
          });
          if (res.destroyed) break;
        }
      }
    } catch (err) {
      failed = true;
      if (!isGone()) log.warn({ upstream: b.id, err: (err as Error).message }, 'upstream response broke off');
    }
    if (isGone() || res.destroyed) {
      lb.release(b); // the client left: says nothing about the upstream
      answer.body.destroy();
      return;
    }
    if (failed) {
      lb.report(b, { ok: false, latencyMs: performance.now() - t0 });
      res.destroy(); // the client must not take a truncated body for a whole one
      return;
    }
    lb.report(b, { ok: status < 500, latencyMs: performance.now() - t0 });
    if (chunks !== undefined && !tooBig) {
      const stored: Stored = { status, headers: kept.filter(([k]) => k !== 'age'), body: Buffer.concat(chunks, size), at: engine.clock.now() - ageMs };
      await cache.set(storeKey, stored, { ttl: fresh }).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'proxy cache write failed'));
    }
    res.end();
  }

  function isClientError(err: unknown): boolean {
    const code = (err as { code?: string }).code;
    return code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED' || code === 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH';
  }

  function isRefused(err: unknown): boolean {
    const code = (err as { code?: string }).code;
    return code === 'ECONNREFUSED' || code === 'UND_ERR_CONNECT_TIMEOUT';
  }

  function timeout(upstream: string): ProxyError {
    return new ProxyError(504, `upstream ${upstream} did not answer within ${s.upstreamTimeoutMs} ms`, ErrorCodes.TIMEOUT);
  }

  function classify(err: unknown, upstream: string): ProxyError {
    if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError || err instanceof undiciErrors.ConnectTimeoutError) {
      return timeout(upstream);
    }
    const code = (err as { code?: string }).code ?? '';
    return new ProxyError(502, `upstream ${upstream} failed: ${code !== '' ? `${code} ` : ''}${(err as Error).message}`, ErrorCodes.UPSTREAM_FAILED);
  }

  return {
    handle,
    get balancer() {
      return lb;
    },
    configure(next: ProxySettings): void {
      if (next.upstreamHealthPath !== s.upstreamHealthPath) {
        // Another health check is a balancer of its own: its upstreams start up and are checked anew.
        const old = lb;
        lb = makeBalancer(next);
        lb.on('state', (b: Backend, to: string, from: string) => log.warn({ upstream: b.id, from, to }, 'upstream state changed'));
        old.close();
      } else {
        // Changed in place: what is known of the upstreams (down, ejected, breaker open) stays —
        // a new balancer would send requests to one known to be down (review49).
        lb.setAlgorithm(next.upstreamAlgorithm as BalancerAlgorithm);
        const want = new Set(next.upstreams);
        for (const b of lb.backends()) if (!want.has(b.id)) lb.remove(b.id);
        for (const url of next.upstreams) if (!lb.backends().some((b) => b.id === url)) lb.add({ id: url, url });
      }
      s = next;
    },
    async close(): Promise<void> {
      lb.close();
      await agent.close().catch(() => undefined);
    },
  };
}

