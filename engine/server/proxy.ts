/**
 * The reverse-proxy mode of `hotpath serve --upstream URL…`: every request that is not one of the
 * service's own routes goes to an upstream picked by the engine's balancer (health checks,
 * passive ejection, a breaker per upstream), over undici (its Agent keeps one connection pool per
 * upstream origin: hotpath does not rebuild HTTP connection pooling).
 *
 * - Bodies stream both ways; nothing is buffered except a response being cached.
 * - GET responses are cached by their Cache-Control (`s-maxage` or `max-age`; never with no-store,
 *   no-cache, private, Set-Cookie, Vary, nor for a request with Authorization or no-store), up to
 *   `proxyCacheMaxBytes` each (the cache's L1 is bounded in bytes: `cacheL1MaxBytes`), keyed by
 *   method, host and URL; a hit answers `X-Cache: HIT` with `Age` and its MISS's `Via`.
 * - Failover: a request with no body (GET, HEAD, a bodiless DELETE …) that fails before its
 *   response starts (connection refused or reset, a 502/503/504 from the upstream, a timeout) is
 *   tried on another upstream, up to 3 in all; when no other gives an answer, the last upstream's
 *   own 502/503/504 is passed on. A request with a body is sent once: its body is a stream that
 *   cannot be replayed.
 * - Errors: no upstream may take the request → 503; an upstream refused, reset or sent a broken
 *   response → 502; it did not answer within `upstreamTimeoutMs` → 504 (for a request with a body,
 *   the time spent waiting on the client's upload is not counted: see watchBody; a body that
 *   stalls that long is the client's 408). Each with a JSON body
 *   `{ error, code }`. An upstream that dies after its response started cannot be reported to the
 *   client any more: the client's connection is cut (a truncated response is never passed off as
 *   complete).
 * - Hop-by-hop headers are dropped both ways; X-Forwarded-For/-Proto/-Host and Via are added.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { Agent, errors as undiciErrors, type Dispatcher } from 'undici';
import { constants as h2constants, type Http2Stream } from 'node:http2';
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

/**
 * `res` goes out while the body of `req` has not all been read: the connection cannot take another
 * request after it (its next bytes would be the rest of the body, which nobody reads: the client's
 * next request was never answered, review61). HTTP/1: `Connection: close` (before the headers);
 * HTTP/2: the stream is closed with NO_ERROR once the answer is complete (as server.ts refuseBody).
 */
function closeAfterAnswer(req: IncomingMessage, res: ServerResponse): void {
  const stream = (req as unknown as { stream?: Http2Stream }).stream;
  if (stream === undefined) {
    res.setHeader('Connection', 'close');
    return;
  }
  stream.once('finish', () => {
    if (!stream.closed && !stream.destroyed) stream.close(h2constants.NGHTTP2_NO_ERROR);
  });
}

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
    const requestCc = lookup ? req.headers['cache-control'] : undefined;
    // A request's no-store: nothing of its answer is stored (RFC 9111 §5.2.1.5); like no-cache,
    // it skips the lookup too.
    const noStore = requestCc !== undefined && /no-store/i.test(requestCc);
    const revalidate = noStore || (requestCc !== undefined && /no-cache/i.test(requestCc));
    if (lookup && !revalidate) {
      let found = cache.getSync(cacheKey) as Stored | undefined;
      if (found === undefined && engine.redis !== undefined) found = (await cache.get(cacheKey)) as Stored | undefined;
      if (isGone()) return;
      if (found !== undefined && typeof found === 'object' && Buffer.isBuffer(found.body)) {
        res.statusCode = found.status;
        for (const [k, v] of found.headers) res.setHeader(k, v);
        // (Stored with the Via the MISS answered with; an entry stored before had none.)
        if (!res.hasHeader('via')) res.setHeader('Via', '1.1 hotpath');
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
    // One deadline for the whole request, failovers included — for a request with a body (sent
    // once), the time the proxy waits on its upstream only: see watchBody.
    const deadline = performance.now() + s.upstreamTimeoutMs;
    const tried = new Set<string>();
    let last: ProxyError | undefined;
    // A 502/503/504 answer kept (unread) while another upstream is tried: passed on when none
    // gives an answer (the upstream's own status, Retry-After and body, not a 502 of ours).
    let held: { answer: Dispatcher.ResponseData; b: Backend; t0: number } | undefined;
    const storeKey = method === 'GET' && !noStore ? cacheKey : '';
    const looked = (method === 'HEAD' || method === 'GET') && cacheKey !== '';
    try {
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
        // Our own timer for the response headers: undici's headersTimeout ticks in whole seconds
        // (and, for a body, covers the client's upload: it is off then, review61).
        // `expired`: whose wait ran out — the upstream's, or the client's (its body stalled).
        let expired: 'upstream' | 'client' | undefined;
        const ac = new AbortController();
        setAttempt(ac);
        const timer = setTimeout(() => {
          if (expired !== undefined) return; // (re-armed by a late chunk before the abort landed)
          expired = hasBody && req.readableFlowing === true && !req.readableEnded ? 'client' : 'upstream';
          ac.abort();
        }, hasBody ? s.upstreamTimeoutMs : left);
        const unwatch = hasBody ? watchBody(req, timer) : undefined;
        try {
          answer = await agent.request({
            origin: b.url!, path: url, method: method as Dispatcher.HttpMethod, headers,
            body: hasBody ? req : undefined,
            signal: ac.signal,
            headersTimeout: hasBody ? 0 : s.upstreamTimeoutMs + 1000, bodyTimeout: s.upstreamTimeoutMs,
          });
        } catch (err) {
          if (isGone()) {
            lb.release(b);
            return; // the client is gone
          }
          if (expired === 'client') {
            lb.release(b); // the client's body stalled: nothing to do with the upstream
            throw new ProxyError(408, `the request body stalled: nothing of it arrived for ${s.upstreamTimeoutMs} ms`, ErrorCodes.TIMEOUT);
          }
          if (expired === undefined && isClientError(err)) {
            lb.release(b); // the request itself is at fault, not the upstream
            throw new ProxyError(400, `the request cannot be forwarded: ${(err as Error).message}`, ErrorCodes.BAD_REQUEST);
          }
          if (expired === undefined && hasBody && !req.readableEnded && isReset(err)) {
            // Reset while the body was being sent: an upstream that refuses a body with an early
            // answer (413 + Connection: close) resets the connection when the rest arrives, and
            // the reset often beats its answer (never read then). Not counted: it may have answered.
            lb.release(b);
            last = new ProxyError(502, `upstream ${b.id} closed the connection while the request body was being sent (it may have refused the body): ${(err as { code?: string }).code} ${(err as Error).message}`, ErrorCodes.UPSTREAM_FAILED);
            break;
          }
          lb.report(b, { ok: false, latencyMs: performance.now() - t0 });
          last = expired !== undefined ? timeout(b.id) : classify(err, b.id);
          if (!idempotent && !(isRefused(err) && !hasBody)) break;
          continue;
        } finally {
          clearTimeout(timer);
          unwatch?.();
        }
        if (RETRY_STATUS.has(answer.statusCode) && idempotent && i + 1 < attempts) {
          lb.report(b, { ok: false, latencyMs: performance.now() - t0 });
          if (held !== undefined) void held.answer.body.dump().catch(() => undefined);
          held = { answer, b, t0 };
          last = new ProxyError(502, `upstream ${b.id} answered ${answer.statusCode}`, ErrorCodes.UPSTREAM_FAILED);
          continue;
        }
        if (held !== undefined) {
          void held.answer.body.dump().catch(() => undefined);
          held = undefined;
        }
        await relay(answer, b, t0, storeKey, looked, req, res, isGone, hasBody, false);
        return;
      }
      if (held !== undefined) {
        // No other upstream gave an answer: the last one's own is passed on (already counted).
        const h = held;
        held = undefined;
        await relay(h.answer, h.b, h.t0, '', looked, req, res, isGone, hasBody, true);
        return;
      }
    } finally {
      if (held !== undefined) {
        // Nobody reads it now (the client left, the deadline passed, a pick threw): undici's body
        // emits an 'error' when destroyed unread, which with no listener ended the process
        // (review65).
        held.answer.body.on('error', () => undefined);
        held.answer.body.destroy();
      }
    }
    throw last ?? timeout(tried.size > 0 ? [...tried].join(', ') : 'none');
  }

  /**
   * Moves the timer of a request with a body along with its body, so the deadline measures only
   * the time the proxy waits on its upstream (review61: a slow upload was an upstream's 504 and
   * failure): it runs from the pick until undici starts reading the body (connect, queue); then
   * restarts with each chunk the client sends — while undici holds the body back (the upstream
   * does not take it: it paused the stream) the wait is the upstream's, while it reads it the
   * client's (answered 408, not counted) — and once more when the body has all been read, for the
   * response headers. Listeners on the body only: a request without one pays nothing.
   * @returns the function that detaches them.
   */
  function watchBody(req: IncomingMessage, timer: ReturnType<typeof setTimeout>): () => void {
    let reading = false;
    const refresh = (): void => {
      timer.refresh();
    };
    const onResume = (): void => {
      timer.refresh();
      // 'data' only once undici reads (its own listener made the stream flow): ours would start it.
      if (!reading) {
        reading = true;
        req.on('data', refresh);
      }
    };
    req.on('resume', onResume);
    req.on('end', refresh);
    return () => {
      req.off('resume', onResume);
      req.off('end', refresh);
      req.off('data', refresh);
    };
  }

  /**
   * Streams an upstream answer to the client (and into the cache when it may be cached).
   * `accounted`: the answer was reported to the balancer already (a failover's last answer).
   */
  async function relay(answer: Dispatcher.ResponseData, b: Backend, t0: number, storeKey: string, looked: boolean,
    req: IncomingMessage, res: ServerResponse, isGone: () => boolean, hasBody: boolean, accounted: boolean): Promise<void> {
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
    const viaOut = `${via !== undefined ? `${Array.isArray(via) ? via.join(', ') : via}, ` : ''}1.1 hotpath`;
    res.setHeader('Via', viaOut);
    // An answer that begins before the request's body has all been read (an upstream refusing an
    // upload early, 413 + Connection: close): the rest of the body may never be read — the
    // connection closes after the answer rather than wait for it (review61).
    if (hasBody && !req.readableEnded) closeAfterAnswer(req, res);
    // Freshness left: the upstream's max-age minus the Age it reports (a cache in front of it).
    const upstreamAge = Number(answer.headers.age ?? 0);
    const ageMs = Number.isFinite(upstreamAge) && upstreamAge > 0 ? upstreamAge * 1000 : 0;
    const fresh = storeKey !== '' && status === 200 ? freshnessMs(answer.headers as IncomingHttpHeaders) - ageMs : 0;
    if (looked) res.setHeader('X-Cache', 'MISS');
    const chunks: Buffer[] | undefined = fresh > 0 ? [] : undefined;
    let size = 0;
    let tooBig = false;
    let failed = false;
    let neutral = false;
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
      // Reset while the request's body was still being sent: as in forward, not counted.
      if (hasBody && !req.readableEnded && isReset(err)) neutral = true;
      if (!isGone()) log.warn({ upstream: b.id, err: (err as Error).message }, 'upstream response broke off');
    }
    if (isGone() || res.destroyed) {
      if (!accounted) lb.release(b); // the client left: says nothing about the upstream
      answer.body.destroy();
      return;
    }
    if (failed) {
      if (!accounted && neutral) lb.release(b);
      else if (!accounted) lb.report(b, { ok: false, latencyMs: performance.now() - t0 });
      res.destroy(); // the client must not take a truncated body for a whole one
      return;
    }
    if (!accounted) lb.report(b, { ok: status < 500, latencyMs: performance.now() - t0 });
    if (chunks !== undefined && !tooBig) {
      // Stored with the Via this answer went out with: a HIT is a message of this proxy too.
      const headers = kept.filter(([k]) => k !== 'age');
      headers.push(['via', viaOut]);
      const stored: Stored = { status, headers, body: Buffer.concat(chunks, size), at: engine.clock.now() - ageMs };
      await cache.set(storeKey, stored, { ttl: fresh }).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'proxy cache write failed'));
    }
    res.end();
  }

  function isClientError(err: unknown): boolean {
    const code = (err as { code?: string }).code;
    return code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED' || code === 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH';
  }

  /** A connection reset or a write into a closed one (EPIPE). */
  function isReset(err: unknown): boolean {
    const code = (err as { code?: string }).code;
    return code === 'ECONNRESET' || code === 'EPIPE';
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
        // The old one is closed first: the engine refuses a second live balancer of one name (both
        // would export the same metric series). Calls it picked still report to it.
        lb.close();
        lb = makeBalancer(next);
        lb.on('state', (b: Backend, to: string, from: string) => log.warn({ upstream: b.id, from, to }, 'upstream state changed'));
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

