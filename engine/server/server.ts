/**
 * `hotpath serve`: a node:http service over one engine.
 *
 *   POST /process      the demo pipeline: rate limit per client → cache lookup by content hash →
 *                      on a miss, a task on the worker pool (compress + checksum the body) whose
 *                      result is cached before the response is sent. Answers JSON with
 *                      X-Cache: HIT|MISS, the RateLimit headers and Server-Timing.
 *   GET  /health       liveness;  GET /ready: readiness (503 while closing or Redis is down);
 *   GET  /metrics      Prometheus text.
 *   /admin/…           off unless an admin token is configured; then it requires
 *                      `Authorization: Bearer <token>` (see ADMIN_ROUTES below).
 *   anything else      with upstreams configured (proxy mode, proxy.ts): rate limited per client,
 *                      then forwarded to an upstream picked by the balancer (GETs cached by their
 *                      Cache-Control). Without upstreams: 404.
 *
 * Graceful shutdown (`close()`): stop accepting, let requests in flight finish (up to
 * shutdownTimeoutMs; responses then carry `Connection: close`), close idle connections (kept alive,
 * or that have sent nothing yet) after a short grace, close the engine.
 */
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { constants as h2constants, createSecureServer, createServer as createH2cServer, type Http2Server, type Http2Session, type Http2Stream } from 'node:http2';
import { readFileSync } from 'node:fs';
import { Server as NetServer, type Socket } from 'node:net';
import { createSecureContext } from 'node:tls';
import { hash, timingSafeEqual, createHash } from 'node:crypto';
import { createReadStream, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeHeapSnapshot } from 'node:v8';
import { Session } from 'node:inspector/promises';
import type { AddressInfo } from 'node:net';
import { createEngine, type Engine } from '../engine.js';
import { compileRateLimit } from '../http/rate-limit.js';
import type { Decision } from '../limiter/types.js';
import { distUrl } from '../runtime/paths.js';
import { ErrorCodes, HotpathError } from '../errors.js';
import type { ServeConfig } from './config.js';
import { createProxy, ProxyError, type Proxy } from './proxy.js';
import { plainAddress } from './address.js';

export { plainAddress };
import type { ProcessResult } from './tasks.js';

/** What the service logs through (pino's shape; tests pass a silent one). */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface Service {
  /** `http://host:port` it listens on. */
  readonly url: string;
  readonly engine: Engine;
  /** node:http, node:https, or (with http2) a node:http2 server in compatibility mode. */
  readonly server: Server | Http2Server;
  /** Requests being answered now. */
  readonly inflight: number;
  /** Requests received since start (their handler ran). */
  readonly accepted: number;
  /** Responses sent in full since start. */
  readonly served: number;
  /** Requests still in flight when close() hit shutdownTimeoutMs and cut their connections. */
  readonly cut: number;
  /**
   * Requests whose response was not sent in full because the client went away first (it closed
   * or reset the connection or stream; a load tester ending its run does): accepted = served +
   * abandoned + cut + inflight.
   */
  readonly abandoned: number;
  /** Graceful shutdown (idempotent). */
  close(): Promise<void>;
  /**
   * Applies a new configuration live where it can (limits, trusted proxies, admin token, body
   * limit, timeouts); the settings that need a restart are listed and left as they were.
   */
  reconfigure(next: ServeConfig): { applied: Array<keyof ServeConfig>; needRestart: Array<keyof ServeConfig> };
  /** The configuration in force. */
  readonly config: ServeConfig;
}

/** Settings of the proxy mode (all of them applied live). */
const PROXY_KEYS: ReadonlyArray<keyof ServeConfig> = ['upstreams', 'upstreamAlgorithm', 'upstreamTimeoutMs', 'upstreamHealthPath', 'proxyCacheMaxBytes'];

/** Settings fixed for the life of a service (the engine, the socket, the cache's size). */
const RESTART_ONLY: ReadonlyArray<keyof ServeConfig> = ['host', 'port', 'workers', 'redisUrl', 'http2', 'cert', 'key', 'cacheL1MaxBytes'];

/** Distinct /process limits a service takes live before it needs a restart. */
export const MAX_LIMITER_SHAPES = 16;

/** The queue that runs /process misses on the workers (visible under /admin/queue/process). */
export const PROCESS_QUEUE = 'process';
/**
 * Misses waiting for a worker beyond those already in the workers' rings: past it, /process
 * answers 503 with Retry-After (each waiting miss holds its body).
 */
export const PROCESS_MAX_QUEUED = 1024;
/** Dead letters of the process queue: failed misses, with their bodies (bounded in bytes too). */
const PROCESS_DEAD_LETTERS = 1000;
const JSON_TYPE = 'application/json; charset=utf-8';
/** GET /health's answer, built once: a liveness probe costs about what a hello-world does. */
const HEALTH_BODY = '{"status":"ok"}';
const HEALTH_HEADERS: readonly string[] = ['Content-Type', JSON_TYPE, 'Content-Length', String(Buffer.byteLength(HEALTH_BODY))];

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly headers?: Readonly<Record<string, string>>) {
    super(message);
  }
}

/** The client's address: the socket's, or (from a trusted proxy) the last untrusted X-Forwarded-For hop. */
export function clientAddress(req: IncomingMessage, trusted: ReadonlySet<string>): string {
  const peer = plainAddress(req.socket.remoteAddress ?? 'unknown');
  if (trusted.size === 0 || !trusted.has(peer)) return peer;
  const header = req.headers['x-forwarded-for'];
  const hops = (Array.isArray(header) ? header.join(',') : header ?? '').split(',').map((h) => plainAddress(h.trim())).filter((h) => h.length > 0);
  for (let i = hops.length - 1; i >= 0; i--) if (!trusted.has(hops[i]!)) return hops[i]!;
  return hops[0] ?? peer;
}


function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  res.statusCode = status;
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  if (!res.hasHeader('Content-Type')) res.setHeader('Content-Type', typeof body === 'string' ? 'text/plain; charset=utf-8' : JSON_TYPE);
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}

/** The admin API's routes below /admin: segments (null: any name) and the method each takes. */
const ADMIN_SHAPES: ReadonlyArray<readonly [ReadonlyArray<string | null>, string]> = [
  [['cache'], 'GET'], [['cache', 'clear'], 'POST'], [['cache', 'warm'], 'POST'],
  [['limiter', null], 'GET'], [['limiter', null, 'reset'], 'POST'],
  [['queue', null], 'GET'], [['queue', null, 'dead'], 'GET'], [['queue', null, 'requeue', null], 'POST'],
  [['debug', 'profile'], 'GET'], [['debug', 'heap'], 'GET'],
];

/** The methods the admin route of these segments takes, or undefined when there is no such route. */
function adminAllow(segments: readonly string[]): string[] | undefined {
  const methods = ADMIN_SHAPES
    .filter(([shape]) => shape.length === segments.length && shape.every((x, i) => x === null || x === segments[i]))
    .map(([, m]) => m);
  return methods.length === 0 ? undefined : [...new Set(methods)];
}

/** An HTTP/1.1 connection of the HTTP/2 TLS port: its requests being answered, and its idle deadline. */
interface FallbackDeadline {
  busy: number;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * How long, at most, a shutdown keeps idle keep-alive connections open once the requests in
 * flight are answered, for requests already on their way over them (ms).
 */
const SHUTDOWN_GRACE_MS = 500;

/** The HTTP/2 stream of a request (undefined for HTTP/1). */
function h2StreamOf(req: IncomingMessage): Http2Stream | undefined {
  return (req as unknown as { stream?: Http2Stream }).stream;
}

/**
 * The body of `req` will not be read (an answer before it: 413, 429): stop taking it once the
 * answer is out. HTTP/1 is answered with `Connection: close` by the caller (the socket ends after
 * the response); an HTTP/2 stream is reset with NO_ERROR after the complete response (RFC 9113
 * §8.1), or its flow control would keep letting the client send.
 */
function refuseBody(req: IncomingMessage): void {
  const stream = h2StreamOf(req);
  if (stream === undefined) return;
  const close = (): void => {
    if (!stream.closed && !stream.destroyed) stream.close(h2constants.NGHTTP2_NO_ERROR);
  };
  if (stream.writableFinished) close();
  else stream.once('finish', close);
}

/**
 * Requests that came with `Expect: 100-continue` (the server's 'checkContinue' event) and have not
 * been invited to send their body yet. The 100 is sent when the body is about to be read — after
 * the rate limit and the Content-Length check — so a request refused before (413, 429, 404 …)
 * gets its final status alone, and its client never sends the body (RFC 9110 §10.1.1). Node would
 * otherwise answer 100 at once, before any of it was decided.
 */
const expecting = new WeakMap<IncomingMessage, ServerResponse>();

/** Sends the 100 Continue `req` waits for, if it waits for one (once). */
function invite(req: IncomingMessage): void {
  const res = expecting.get(req);
  if (res === undefined) return;
  expecting.delete(req);
  if (!res.headersSent && !res.destroyed) res.writeContinue();
}

/** Whether `req` comes with a body still to read (a length above 0, chunked, or an HTTP/2 stream not ended). */
function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return len !== '0';
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const stream = h2StreamOf(req);
  return stream !== undefined && !stream.readableEnded;
}

/** Whether the client is gone: its HTTP/2 stream reset, or the request aborted or destroyed. */
function abandoned(res: ServerResponse): boolean {
  const req = res.req;
  const stream = req === undefined ? undefined : h2StreamOf(req);
  return res.destroyed || req?.aborted === true || (stream !== undefined && ((stream.rstCode ?? 0) !== 0 || stream.destroyed));
}

/** A client that reset or dropped its request mid-body. */
function abortedError(): Error {
  return Object.assign(new Error('the client aborted the request'), { code: 'ECONNRESET' });
}

/**
 * Reads the body, refusing more than `limit` bytes with 413: `done(body)` once it is all here,
 * else `failed(error)` — exactly one of the two, once. Callbacks, not a promise: this is on the
 * hot path of POST /process, which answers a hit without a promise. A body the client aborted
 * (HTTP/2's compatibility layer emits 'aborted' then 'end') is a failure, never a short body.
 */
function readBody(req: IncomingMessage, limit: number, done: (body: Buffer) => void, failed: (err: unknown) => void): void {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    failed(new HttpError(413, `the body is over the limit of ${limit} bytes`));
    refuseBody(req);
    return;
  }
  invite(req);
  const chunks: Buffer[] = [];
  let size = 0;
  let settled = false;
  req.on('data', (c: Buffer) => {
    if (settled) return;
    size += c.length;
    if (size > limit) {
      settled = true;
      chunks.length = 0;
      failed(new HttpError(413, `the body is over the limit of ${limit} bytes`));
      req.resume(); // drain what is in flight; HTTP/1's answer closes the connection, HTTP/2's the stream
      refuseBody(req);
      return;
    }
    chunks.push(c);
  });
  req.on('aborted', () => {
    if (settled) return;
    settled = true;
    failed(abortedError());
  });
  req.on('end', () => {
    if (settled) return;
    settled = true;
    // (HTTP/2's compatibility layer also ends the body of a stream the client reset, a moment
    // before 'aborted', with nothing at 'end' to tell it apart: the /process miss checks
    // abandoned() before it caches what it computed.)
    done(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
  });
  req.on('error', (err) => {
    if (settled) return;
    settled = true;
    failed(err);
  });
}

/** A duration in ms with two decimals (as toFixed(2), at a third of its cost: this is per request). */
function dur(ms: number): string {
  const h = Math.round(ms * 100);
  const whole = Math.floor(h / 100);
  const frac = h - whole * 100;
  return `${whole}${frac < 10 ? '.0' : '.'}${frac}`;
}

/** Options of {@link startService}. */
export interface StartOptions {
  /** The TLS certificate and key already read (resolveServeConfig's `read`): not read again. */
  tls?: { cert?: Buffer; key?: Buffer };
}

/**
 * Starts the service: an engine (embedded, or on Redis when configured) and the HTTP server.
 * @throws what createEngine throws; the listen error (EADDRINUSE …).
 */
export async function startService(config: ServeConfig, log: Logger, options: StartOptions = {}): Promise<Service> {
  // TLS first: a missing file or an unusable pair fails before any thread starts (a failure
  // after createEngine left its threads running: the process never exited, review52).
  let tls: { cert: Buffer; key: Buffer } | undefined;
  if (config.cert !== undefined || config.key !== undefined) {
    if (config.cert === undefined || config.key === undefined) throw new TypeError('TLS needs both --cert and --key (HOTPATH_TLS_CERT, HOTPATH_TLS_KEY)');
    tls = { cert: options.tls?.cert ?? readFileSync(config.cert), key: options.tls?.key ?? readFileSync(config.key) };
    createSecureContext(tls);
  }
  const engine = await createEngine({
    ...(config.workers !== undefined ? { workers: config.workers } : {}),
    ...(config.redisUrl !== undefined ? { redis: config.redisUrl } : {}),
    // Bounded in bytes too: the proxy stores answers of up to proxyCacheMaxBytes each, and
    // maxEntries of them alone came to gigabytes (review61).
    cache: { l1: { maxEntries: config.cacheL1Entries, maxBytes: config.cacheL1MaxBytes } },
  });
  // Misses go through a queue of the engine's: its depth, durations and failures show in the
  // metrics and under /admin/queue/process, and one body's concurrent misses share one task (the
  // task id is the body's hash).
  const work = engine.queue<Buffer, ProcessResult>(PROCESS_QUEUE, {
    handler: distUrl('engine/server/tasks.js'), handlerExport: 'process',
    maxQueued: PROCESS_MAX_QUEUED, deadLetterRetention: PROCESS_DEAD_LETTERS,
  });
  let cfg = config;
  let proxy: Proxy | undefined;
  try {
    proxy = config.upstreams.length > 0 ? createProxy(engine, config, log) : undefined;
  } catch (err) {
    await engine.close();
    throw err;
  }
  let snapshotting = false;
  let profiling = false;
  /** Aborted by close(): long admin calls (a CPU profile) end instead of holding the process. */
  const stopping = new AbortController();
  // A limiter's shape is fixed in shared memory: a new limit is a new limiter (its buckets start
  // full), made once per shape (a limit set back reuses its limiter, state and all), at most
  // MAX_LIMITER_SHAPES of them: each takes a table of the fixed arena.
  const shapes = new Map<string, ReturnType<Engine['limiter']>>();
  const limiterFor = (c: ServeConfig): ReturnType<Engine['limiter']> => {
    const shape = `${c.limitPerSecond}:${c.limitBurst}`;
    let l = shapes.get(shape);
    if (l === undefined) {
      if (shapes.size >= MAX_LIMITER_SHAPES) throw new RangeError(`limits changed to ${shapes.size + 1} different values since start (at most ${MAX_LIMITER_SHAPES} without a restart: each is a table in shared memory)`);
      l = engine.limiter(shapes.size === 0 ? 'process' : `process.v${shapes.size}`, { algorithm: 'token-bucket', limit: c.limitPerSecond, window: 1000, burst: c.limitBurst });
      shapes.set(shape, l);
    }
    return l;
  };
  let limiter = limiterFor(config);
  let trusted = new Set(config.trustProxy.map(plainAddress));
  // Embedded, the decision is local shared memory: decided synchronously, no promise per request.
  const limitFor = (l: typeof limiter): ReturnType<typeof compileRateLimit> =>
    compileRateLimit(l, { key: (req) => clientAddress(req, trusted), sync: config.redisUrl === undefined, policyName: 'process' });
  let limit = limitFor(limiter);
  const cache = engine.cache;
  let token = config.adminToken === undefined ? undefined : Buffer.from(config.adminToken);
  const histogram = engine.metrics.histogram('hotpath_http_request_duration_seconds', 'HTTP request durations of hotpath serve.');
  const requests = engine.metrics.counter('hotpath_http_requests_total', 'HTTP requests answered by hotpath serve, by route and status code.', ['route', 'status']);
  // Bound children by (route, status) as one number: no string is built per request.
  const series = new Map<number, { inc(n?: number): void }>();
  const ROUTES = ['/process', '/health', '/ready', '/metrics', '/admin', 'other', 'proxy'];
  const routeIndex = (url: string | undefined): number => {
    const raw = url ?? '/';
    const q = raw.indexOf('?');
    const path = q < 0 ? raw : raw.slice(0, q);
    const i = ROUTES.indexOf(path);
    if (i >= 1 && i < 4) return i;
    if (path === '/admin' || path.startsWith('/admin/')) return 4;
    if (proxy !== undefined) return 6;
    return i === 0 ? 0 : 5;
  };
  let inflight = 0;
  let served = 0;
  let accepted = 0;
  let cut = 0;
  let cutting = false;
  let gone = 0; // the `abandoned` count (a name the abandoned() check below already has)
  let closing: Promise<void> | undefined;
  let idle: (() => void) | undefined;

  /**
   * The rate limit of /process and of proxied requests: the RateLimit headers to send with the
   * answer (a fresh array), or false when the request was denied and answered here (429).
   * Embedded (sync decisions: shared memory) it returns without a promise.
   * @throws what the key function throws (answered by the route's error handler).
   */
  function limited(req: IncomingMessage, res: ServerResponse): string[] | false | Promise<string[] | false> {
    const c = limit;
    const decided = c.decide(req);
    if (decided === undefined) return [];
    if (c.sync) return admitted(res, c, decided as Decision);
    return Promise.resolve(decided).then((d) => admitted(res, c, d));
  }

  function admitted(res: ServerResponse, c: typeof limit, d: Decision): string[] | false {
    const headers = c.headers(d);
    if (d.allowed) return headers;
    const [type, text] = c.body(d);
    headers.push('Content-Type', type, 'Content-Length', String(Buffer.byteLength(text)));
    // Denied before its body was read: a client over its limit must not make the server take in
    // the rest (Node would read and discard it, up to the request timeout).
    const req = res.req;
    const pending = req !== undefined && hasBody(req);
    if (pending && req.httpVersionMajor < 2) headers.push('Connection', 'close');
    res.writeHead(c.statusCode, headers);
    res.end(text);
    if (pending) refuseBody(req);
    return false;
  }

  /**
   * POST /process. A hot-cache hit on an embedded service runs without a promise: the limit in
   * shared memory, the body by its events, the cache's getSync, one writeHead — the cost of
   * each shows in bench/service.bench.ts against a bare node:http server.
   */
  function processRoute(req: IncomingMessage, res: ServerResponse, t0: number): void | Promise<void> {
    const go = limited(req, res);
    if (go === false) return; // 429 answered
    if (Array.isArray(go)) {
      readProcessBody(req, res, t0, go);
      return;
    }
    return go.then((h) => {
      if (h !== false) readProcessBody(req, res, t0, h);
    });
  }

  function readProcessBody(req: IncomingMessage, res: ServerResponse, t0: number, headers: string[]): void {
    const limitMs = performance.now() - t0;
    readBody(req, cfg.bodyLimit, (body) => {
      try {
        const p = answerProcess(res, t0, limitMs, headers, body);
        if (p !== undefined) p.catch((err: unknown) => failed(req, res, err));
      } catch (err) {
        failed(req, res, err);
      }
    }, (err) => failed(req, res, err));
  }

  /** `t0`: when the request's handler started (Server-Timing's total); `limitMs`: the limit decision's time. */
  function answerProcess(res: ServerResponse, t0: number, limitMs: number, headers: string[], body: Buffer): void | Promise<void> {
    const key = `process:${hash('sha256', body, 'base64url')}`;
    const t1 = performance.now();
    // The cache holds the response body itself (JSON text): a hit sends it as it is. L1/L2 first,
    // without a promise; Redis (when configured) only on a local miss.
    const found = cache.getSync(key);
    // Anything else under a process: key (an admin warm, say) is not a response: a miss.
    if (typeof found === 'string') {
      const t2 = performance.now();
      sendProcess(res, headers, found, true, `limit;dur=${dur(limitMs)}, cache;dur=${dur(t2 - t1)}, work;dur=0.00, total;dur=${dur(t2 - t0)}`);
      return;
    }
    return missProcess(res, t0, t1, limitMs, headers, body, key);
  }

  async function missProcess(res: ServerResponse, t0: number, t1: number, limitMs: number, headers: string[], body: Buffer, key: string): Promise<void> {
    const remote = engine.redis !== undefined ? await cache.get(key) : undefined;
    let text = typeof remote === 'string' ? remote : undefined;
    const tCache = dur(performance.now() - t1);
    let tWork = '0.00';
    const hit = text !== undefined;
    if (text === undefined) {
      const t2 = performance.now();
      let task;
      try {
        task = work.submit(body, { id: key.slice('process:'.length) });
      } catch (err) {
        if (err instanceof HotpathError && err.code === ErrorCodes.QUEUE_FULL) throw new HttpError(503, 'the service is at capacity: retry shortly', { 'Retry-After': '1' });
        throw err;
      }
      const result = await task.result;
      tWork = dur(performance.now() - t2);
      // A client that reset its request meanwhile may have cut its body short (HTTP/2 ends such a
      // body before it says 'aborted'): nothing of it is cached, and nobody is answered.
      if (abandoned(res)) {
        res.destroy();
        return;
      }
      text = JSON.stringify({ ...result, key: key.slice('process:'.length) });
      await cache.set(key, text); // cached before the response is sent
    }
    sendProcess(res, headers, text, hit, `limit;dur=${dur(limitMs)}, cache;dur=${tCache}, work;dur=${tWork}, total;dur=${dur(performance.now() - t0)}`);
  }

  function sendProcess(res: ServerResponse, headers: string[], text: string, hit: boolean, timing: string): void {
    headers.push('Content-Type', JSON_TYPE, 'X-Cache', hit ? 'HIT' : 'MISS', 'Server-Timing', timing, 'Content-Length', String(Buffer.byteLength(text)));
    res.writeHead(200, headers);
    res.end(text);
  }

  function authorised(req: IncomingMessage): boolean {
    const h = req.headers.authorization;
    // The scheme is case-insensitive (RFC 9110 §11.1): "bearer" is as good as "Bearer".
    if (token === undefined || typeof h !== 'string' || h.length < 7 || h.slice(0, 7).toLowerCase() !== 'bearer ') return false;
    // Digests of equal length: the comparison's time tells nothing, not even the token's length.
    const digest = (b: Buffer | string): Buffer => createHash('sha256').update(b).digest();
    return timingSafeEqual(digest(h.slice(7)), digest(token));
  }

  /** An engine lookup by name; an unknown name is a 404. */
  function lookup<T>(find: () => T, missing: string): T {
    try {
      return find();
    } catch (err) {
      if (err instanceof TypeError) throw new HttpError(404, missing);
      throw err;
    }
  }

  async function admin(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    if (token === undefined) throw new HttpError(404, 'the admin API is off: set HOTPATH_ADMIN_TOKEN (or --admin-token)');
    if (!authorised(req)) {
      res.setHeader('WWW-Authenticate', 'Bearer');
      throw new HttpError(401, 'a valid bearer token is required');
    }
    let parts: string[];
    try {
      parts = url.pathname.split('/').filter((p) => p.length > 0).map(decodeURIComponent); // ['admin', …]
    } catch {
      throw new HttpError(400, 'the path has a malformed percent-encoding');
    }
    const [, area, name, action, arg] = parts;
    const method = req.method ?? 'GET';
    // The route's shape first: an unknown one (extra segments too) is 404, a known one asked with
    // another method 405 with its Allow.
    const allow = adminAllow(parts.slice(1));
    if (allow === undefined) throw new HttpError(404, `no admin route ${method} ${url.pathname}`);
    if (!allow.includes(method)) throw notAllowed(res, allow.join(', '), url.pathname);
    const key = url.searchParams.get('key');
    if (area === 'cache' && name === undefined && method === 'GET') return send(res, 200, cache.stats());
    if (area === 'cache' && name === 'clear' && method === 'POST') {
      await cache.clear();
      return send(res, 200, { cleared: true });
    }
    if (area === 'cache' && name === 'warm' && method === 'POST') {
      const input = JSON.parse((await new Promise<Buffer>((resolve, reject) => readBody(req, cfg.bodyLimit, resolve, reject))).toString('utf8') || '{}') as { entries?: Array<{ key: string; value: unknown; ttl?: number }> };
      if (input === null || typeof input !== 'object' || !Array.isArray(input.entries)) throw new HttpError(400, 'expected {"entries": [{"key", "value", "ttl"?}, …]}');
      // Every entry checked before any is written: a bad batch changes nothing.
      input.entries.forEach((e, i) => {
        if (typeof e?.key !== 'string' || e.key.length === 0) throw new HttpError(400, `entry ${i}: "key" must be a non-empty string`);
        if (!('value' in e)) throw new HttpError(400, `entry ${i}: "value" is missing`);
        if (e.ttl !== undefined && (typeof e.ttl !== 'number' || !(e.ttl > 0))) throw new HttpError(400, `entry ${i}: "ttl" must be a positive number of ms`);
      });
      let n = 0;
      for (const e of input.entries) {
        await cache.set(e.key, e.value, e.ttl !== undefined ? { ttl: e.ttl } : undefined);
        n++;
      }
      return send(res, 200, { warmed: n });
    }
    if (area === 'limiter' && name !== undefined) {
      if (key === null) throw new HttpError(400, 'the ?key= parameter is required');
      // 'process' is the /process limiter in force (after a reload, a limiter of another name).
      const l = name === 'process' ? limiter : lookup(() => engine.limiter(name), `no limiter named ${JSON.stringify(name)}`);
      if (action === undefined && method === 'GET') return send(res, 200, { limiter: name, key, decision: l.peek(key) });
      if (action === 'reset' && method === 'POST') {
        await l.reset(key);
        return send(res, 200, { limiter: name, key, reset: true });
      }
    }
    if (area === 'queue' && name !== undefined) {
      const q = lookup(() => engine.queue(name), `no queue named ${JSON.stringify(name)}`);
      if (action === undefined && method === 'GET') return send(res, 200, { queue: name, counts: await q.counts(), totals: q.totals() });
      if (action === 'dead' && method === 'GET') return send(res, 200, await q.deadLetters());
      if (action === 'requeue' && arg !== undefined && method === 'POST') {
        const h = await q.requeue(arg);
        if (h === undefined) throw new HttpError(404, `no dead letter ${JSON.stringify(arg)}`);
        h.result.catch(() => undefined);
        return send(res, 200, { requeued: h.id });
      }
    }
    if (area === 'debug' && name === 'profile' && method === 'GET') {
      const raw = url.searchParams.get('seconds') ?? '5';
      const seconds = /^\d+(\.\d+)?$/.test(raw) ? Number(raw) : NaN; // decimal only: Number() would take 0x10
      if (!(seconds > 0) || seconds > 300) throw new HttpError(400, '?seconds= must be a decimal number in (0, 300]');
      // One at a time: profiles started together would each stop the profiler for the others.
      if (profiling) throw new HttpError(409, 'a CPU profile is being taken already');
      profiling = true;
      // A client that goes away ends its profile early (nobody would read it).
      const gone = new AbortController();
      res.once('close', () => gone.abort());
      const session = new Session();
      session.connect();
      try {
        await session.post('Profiler.enable');
        await session.post('Profiler.start');
        await sleep(seconds * 1000, undefined, { signal: AbortSignal.any([stopping.signal, gone.signal]) }).catch(() => {
          throw new HttpError(503, 'the service is shutting down');
        });
        const { profile } = await session.post('Profiler.stop');
        res.setHeader('Content-Disposition', `attachment; filename="hotpath-${Date.now()}.cpuprofile"`);
        return send(res, 200, profile);
      } finally {
        profiling = false;
        session.disconnect();
      }
    }
    if (area === 'debug' && name === 'heap' && method === 'GET') {
      if (snapshotting) throw new HttpError(409, 'a heap snapshot is being taken already');
      snapshotting = true;
      // Written to a file first (V8 blocks this thread while it writes), then streamed with
      // back-pressure: the snapshot is never held in memory beside the heap it describes.
      const file = join(tmpdir(), `hotpath-${process.pid}-${Date.now()}.heapsnapshot`);
      try {
        writeHeapSnapshot(file);
        res.statusCode = 200;
        res.setHeader('Content-Type', JSON_TYPE);
        res.setHeader('Content-Disposition', `attachment; filename="hotpath-${Date.now()}.heapsnapshot"`);
        await pipeline(createReadStream(file), res);
      } finally {
        snapshotting = false;
        try {
          unlinkSync(file);
        } catch {
          // not written
        }
      }
      return;
    }
    throw new HttpError(404, `no admin route ${method} ${url.pathname}`);
  }

  async function proxied(p: Proxy, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const got = limited(req, res);
    const headers = Array.isArray(got) || got === false ? got : await got;
    if (headers === false) return; // 429 answered
    for (let i = 0; i < headers.length; i += 2) res.setHeader(headers[i]!, headers[i + 1]!);
    invite(req); // the body goes upstream as it comes
    await p.handle(req, res, clientAddress(req, trusted), trusted.has(plainAddress(req.socket.remoteAddress ?? '')));
  }

  /**
   * Answers the request (`t0`: when its handler started); a promise when the answer is
   * asynchronous (errors: thrown or rejected).
   */
  function route(req: IncomingMessage, res: ServerResponse, t0: number): void | Promise<void> {
    const raw = req.url ?? '/';
    const q = raw.indexOf('?');
    const path = q < 0 ? raw : raw.slice(0, q); // a URL object only for the admin routes
    const method = req.method ?? 'GET';
    const p = proxy;
    if (p !== undefined && path !== '/health' && path !== '/ready' && path !== '/metrics' && path !== '/admin' && !path.startsWith('/admin/')) {
      return proxied(p, req, res);
    }
    if (path === '/process') {
      if (method !== 'POST') throw notAllowed(res, 'POST', path);
      return processRoute(req, res, t0);
    }
    if ((path === '/health' || path === '/ready' || path === '/metrics') && method !== 'GET' && method !== 'HEAD') {
      throw notAllowed(res, 'GET, HEAD', path);
    }
    if (path === '/health') {
      res.writeHead(200, HEALTH_HEADERS as string[]);
      res.end(HEALTH_BODY);
      return;
    }
    if (path === '/ready') {
      const redis = engine.redis === undefined ? 'none' : engine.redis.available ? 'up' : 'down';
      // Proxy mode: ready while at least one upstream may take requests.
      const upstreams = p?.balancer.backends().map((b) => ({ url: b.id, state: b.state, breaker: b.breakerState }));
      const upstreamsUp = upstreams?.filter((u) => u.state === 'up' && u.breaker !== 'open').length;
      const ready = closing === undefined && redis !== 'down' && (upstreamsUp === undefined || upstreamsUp > 0);
      return send(res, ready ? 200 : 503, { ready, redis, closing: closing !== undefined, workers: engine.runtime.pool.threads, ...(upstreams !== undefined ? { upstreams } : {}) });
    }
    if (path === '/metrics') return engine.metrics.text().then((text) => send(res, 200, text, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' }));
    if (path === '/admin' || path.startsWith('/admin/')) return admin(req, res, new URL(raw, 'http://localhost'));
    throw new HttpError(404, `no route ${method} ${path}`);
  }

  /** A 405 for `path`, with the Allow header RFC 9110 requires on it. */
  function notAllowed(res: ServerResponse, allow: string, path: string): HttpError {
    res.setHeader('Allow', allow);
    return new HttpError(405, `use ${allow.split(', ')[0]} ${path}`);
  }

  /** Answers a request whose route threw or rejected: its HTTP error, or 500 (logged). */
  function failed(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    // Headers already out, or the client gone mid-request (its body cut short: 'aborted',
    // ECONNRESET): nobody to answer and nothing wrong here to log.
    if (res.headersSent || (req.destroyed && (err as { code?: unknown } | null)?.code === 'ECONNRESET')) {
      res.destroy();
      return;
    }
    // The body was being read and is not all read — an upstream that failed mid-body (undici
    // stopped reading it, or destroyed the request stream): the connection closes after this
    // answer (HTTP/1), or the client's next request on it was never answered (review61). A body
    // nobody started to read (a route that failed before reading it: 404, 405, 401 …) is read
    // and dropped by node:http after the answer as usual, and the connection stays (review65:
    // keep-alive clients lost their next request).
    if (hasBody(req) && !req.readableEnded && req.readableDidRead && !req.complete) {
      if (req.httpVersionMajor < 2) res.setHeader('Connection', 'close');
      refuseBody(req);
    }
    if (err instanceof HttpError) {
      // HTTP/2 has no Connection header (it is connection-specific).
      if (err.status === 413 && req.httpVersionMajor < 2) res.setHeader('Connection', 'close');
      if (err.headers !== undefined) for (const [k, v] of Object.entries(err.headers)) res.setHeader(k, v);
      send(res, err.status, { error: err.message });
    } else if (err instanceof ProxyError) {
      send(res, err.status, { error: err.message, code: err.code });
    } else if (err instanceof SyntaxError) {
      send(res, 400, { error: `bad JSON: ${err.message}` });
    } else if (err instanceof HotpathError && err.code === 'ERR_HOTPATH_VALUE_TOO_LARGE') {
      send(res, 413, { error: err.message, code: err.code });
    } else if (err instanceof HotpathError && err.code === 'ERR_HOTPATH_REDIS_UNAVAILABLE') {
      send(res, 503, { error: err.message, code: err.code });
    } else {
      log.error({ err, url: req.url }, 'request failed');
      send(res, 500, { error: 'internal error', ...(err instanceof HotpathError ? { code: err.code } : {}) });
    }
  }

  /** One answer in hotpath_http_requests_total. */
  function countAnswer(route: number, status: number): void {
    const k = status * 8 + route;
    let c = series.get(k);
    if (c === undefined) {
      c = requests.labels(ROUTES[route]!, String(status));
      series.set(k, c);
    }
    c.inc();
  }

  /**
   * What node:http answers itself, before or instead of the handler — a malformed request (400,
   * 431 for headers too large, 413 for chunk extensions), a header or request timeout (408) — is
   * answered as Node would (the same bytes, under the same condition: any other error is Node's
   * 400, when the socket can still be written — a reset one cannot) and counted: an operator sees
   * slow or broken clients in the metrics.
   */
  const onClientError = (err: NodeJS.ErrnoException, socket: Socket): void => {
    const code = err.code ?? '';
    const status = code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : code === 'HPE_HEADER_OVERFLOW' ? 431 : code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW' ? 413 : 400;
    const message = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage ?? undefined;
    if (socket.writable && (message === undefined || !message.headersSent)) {
      socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\n\r\n`);
      // A request whose handler ran (its body too slow) is counted under its route.
      countAnswer(message?.req !== undefined ? routeIndex(message.req.url) : ROUTES.indexOf('other'), status);
    }
    socket.destroy(err);
  };

  /**
   * HTTP/1 connections that have had no request yet, each with its bytesRead when it was opened
   * (TLS: when its handshake ended): a connection still at that count has sent nothing, and a
   * shutdown closes it after the grace (closeIdle). node:http's closeIdleConnections covers a
   * connection between two requests, but counts a new one as busy from its start (a guard of its
   * own against clients that connect and send nothing), so a client that had connected and not
   * sent a byte held the shutdown until the header timeout (review49); a request whose headers
   * are partly received has read bytes, and is left to finish. Here: every connection of an
   * HTTP/1 or TLS server, and the HTTP/1.1 connections of the HTTP/2 TLS port, until their first
   * request (TLS: the TCP socket until it sends a handshake, then the TLS socket). Not between
   * two requests on the HTTP/2 TLS port (node:http2 keeps no parser state for them to read): a
   * byte count taken when a response ended already included a pipelined next request's first
   * bytes, and that request was cut (review52); their keep-alive deadline closes them instead.
   */
  const idleSince = new Map<Socket, number>();
  /** Set once the shutdown's grace is over: connections that become secure later get one of their own. */
  let graceOver = false;
  /** A new connection (or one whose TLS handshake just ended): idle until it sends a byte. */
  const untilIdle = (socket: Socket): void => {
    const read = socket.bytesRead;
    idleSince.set(socket, read);
    socket.once('close', () => idleSince.delete(socket));
    if (graceOver) {
      // A handshake that ended after the grace (closeIdle ran before): the same grace, then
      // closed if it has still sent nothing (it held the shutdown for the header timeout, review52).
      setTimeout(() => {
        if (idleSince.get(socket) === read && socket.bytesRead === read) socket.destroy();
      }, SHUTDOWN_GRACE_MS).unref();
    }
  };

  /** Per HTTP/1 connection, the ends of its requests whose responses wait behind another (see handler). */
  const pipelined = new WeakMap<object, Set<() => void>>();
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    inflight++;
    accepted++;
    idleSince.delete(req.socket);
    const t0 = performance.now();
    // HTTP/2 has no Connection header (it is connection-specific); its shutdown is a GOAWAY.
    if (closing !== undefined && req.httpVersionMajor < 2) res.setHeader('Connection', 'close');
    // HTTP/1.1 on the HTTP/2 TLS port: its idle deadline is ours to keep (see fallback below).
    const fb = fallback?.get(req.socket);
    if (fb !== undefined) {
      fb.busy++;
      clearTimeout(fb.timer);
      // node:http2 keeps no request timeout for them either: a body slower than
      // requestTimeoutMs is answered 408 and its connection closed, as node:http would.
      if (config.requestTimeoutMs > 0 && !req.complete) {
        const slow = setTimeout(() => {
          if (!req.complete) onClientError(Object.assign(new Error('request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), req.socket);
        }, config.requestTimeoutMs);
        slow.unref();
        req.once('end', () => clearTimeout(slow));
        res.once('close', () => clearTimeout(slow));
      }
    }
    // Once per request: the response's 'close' ('close' follows 'finish' when the response was
    // sent in full) — or, for an HTTP/1 response still queued behind an earlier one on its
    // connection (pipelining), the connection's: node:http drops such a response without a
    // 'close' of its own when the connection closes first (behind an answer with `Connection:
    // close`, as during a shutdown), and it stayed in flight for good; the shutdown then waited
    // for its timeout and exited 1 (review56). Not the request's 'close': a pipelined request's
    // comes once its body is read, long before its answer (review58).
    let ended = false;
    /** The connection's responses queued behind another (see below), this one among them. */
    let queued: Set<() => void> | undefined;
    const end = (): void => {
      if (ended) return;
      ended = true;
      if (queued !== undefined) queued.delete(end);
      inflight--;
      if (fb !== undefined && --fb.busy === 0) armFallback(req.socket, fb, config.keepAliveTimeoutMs);
      // (An HTTP/2 response the client reset, or that was destroyed, may still read as finished.)
      if (res.writableFinished && (h2StreamOf(req)?.rstCode ?? 0) === 0) {
        served++;
        countAnswer(routeIndex(req.url), res.statusCode);
      } else if (!cutting) {
        gone++; // (those the shutdown timeout cut are counted in `cut`)
      }
      histogram.record(performance.now() - t0);
      if (inflight === 0) idle?.();
    };
    res.on('close', end);
    if (req.httpVersionMajor < 2 && res.socket === null) {
      // Queued behind another response: ended by the connection's close if it is never sent.
      queued = pipelined.get(req.socket);
      if (queued === undefined) {
        const set = (queued = new Set());
        pipelined.set(req.socket, set);
        req.socket.once('close', () => {
          for (const drop of [...set]) drop();
        });
      }
      queued.add(end);
    }
    let answer: void | Promise<void>;
    try {
      answer = route(req, res, t0);
    } catch (err) {
      failed(req, res, err);
      return;
    }
    if (answer !== undefined) answer.catch((err: unknown) => failed(req, res, err));
  };

  let server: Server | Http2Server;
  const sessions = new Set<Http2Session>();
  /**
   * HTTP/1.1 connections of the HTTP/2 TLS port (ALPN fallback): node:http2 applies none of
   * HTTP/1's header or keep-alive timeouts to them. Each gets a deadline of our own while no
   * request of it is being answered — the header time after the handshake, the keep-alive time
   * after a response: a request whose headers have not arrived by then (slowloris) or an idle
   * connection is closed. A body slower than the request timeout is cut (see the handler).
   */
  let fallback: WeakMap<object, FallbackDeadline> | undefined;
  const armFallback = (socket: object, fb: FallbackDeadline, ms: number): void => {
    clearTimeout(fb.timer);
    if (ms <= 0) return;
    fb.timer = setTimeout(() => {
      if (fb.busy === 0) (socket as Socket).destroy();
    }, ms);
    fb.timer.unref();
  };
  if (config.http2) {
    // TLS: HTTP/2 with HTTP/1.1 for clients that do not offer h2 (ALPN); cleartext: h2c (prior knowledge).
    const h2 = tls !== undefined
      ? createSecureServer({ ...tls, allowHTTP1: true, handshakeTimeout: config.headersTimeoutMs }, handler as never)
      : createH2cServer(handler as never);
    if (tls !== undefined) {
      const fbs = (fallback = new WeakMap());
      h2.on('secureConnection', (socket: Socket & { alpnProtocol?: string | false }) => {
        if (socket.alpnProtocol === 'h2') return;
        const fb: FallbackDeadline = { busy: 0, timer: undefined };
        untilIdle(socket);
        fbs.set(socket, fb);
        armFallback(socket, fb, config.headersTimeoutMs);
        socket.once('close', () => clearTimeout(fb.timer));
      });
    }
    if (tls === undefined) {
      // A cleartext connection that has sent nothing (no preface) by the header timeout is reset:
      // neither its session's destroy() nor the socket's destroy() closes it (node:http2 holds the
      // handle of a session that never started); resetAndDestroy() does.
      h2.on('connection', (socket: Socket) => {
        const t = setTimeout(() => {
          if (socket.bytesRead === 0 && !socket.destroyed) socket.resetAndDestroy();
        }, config.headersTimeoutMs);
        t.unref();
        socket.once('close', () => clearTimeout(t));
      });
    }
    h2.on('session', (session: Http2Session) => {
      sessions.add(session);
      session.once('close', () => sessions.delete(session));
      // A session whose handshake ended after the shutdown's grace (closeIdle's GOAWAY went to
      // the sessions there were): a grace of its own, then a GOAWAY — its streams finish, and
      // one with none closes (review56: it held the shutdown until the header timeout).
      if (graceOver) setTimeout(() => session.close(), SHUTDOWN_GRACE_MS).unref();
      // No stream timeout: node:http2's setTimeout is an inactivity timeout that would cut a
      // handler still working (a CPU profile, a slow task). But a session with no stream open —
      // one that never sent a request, or is done with its last — is closed after the keep-alive
      // time (the header timeout before its first stream), as HTTP/1 closes an idle connection.
      let open = 0;
      let first = true;
      session.on('stream', (stream: Http2Stream) => {
        open++;
        if (first) {
          first = false;
          session.setTimeout(config.keepAliveTimeoutMs);
        }
        // The keep-alive time counts from the last stream's close: the inactivity timer is not
        // re-armed after it fires, so a timeout let pass while a stream was open (below) left an
        // idle session open for good (a Node 24 CI run hung here once).
        stream.once('close', () => {
          if (--open === 0 && !session.closed && !session.destroyed) session.setTimeout(config.keepAliveTimeoutMs);
        });
      });
      // ('timeout' with on(): setTimeout's own callback is a once-listener, and a timeout while a
      // stream is open is let pass: the stream's close re-arms it.)
      session.on('timeout', () => {
        if (open !== 0 || session.closed || session.destroyed) return;
        session.close(); // GOAWAY; the socket goes once the peer has had a moment to read it
        setTimeout(() => {
          if (!session.destroyed) session.destroy();
        }, 1000).unref();
      });
      session.setTimeout(config.headersTimeoutMs);
    });
    server = h2;
  } else {
    // Node checks header/request timeouts every connectionsCheckingInterval (30 s by default):
    // check often enough that a 10 s header timeout is one.
    const checking = { connectionsCheckingInterval: Math.max(100, Math.min(1000, config.headersTimeoutMs)) };
    const h1 = tls !== undefined ? createHttpsServer({ ...tls, ...checking }, handler) : createServer(checking, handler);
    h1.headersTimeout = config.headersTimeoutMs;
    h1.requestTimeout = config.requestTimeoutMs;
    h1.keepAliveTimeout = config.keepAliveTimeoutMs;
    h1.on('clientError', onClientError);
    if (tls !== undefined) h1.on('secureConnection', untilIdle);
    server = h1;
  }
  // Expect: 100-continue: the handler decides, and sends the 100 when it reads the body (invite).
  // (node:http2's compatibility layer has the same event, HTTP/1.1 on its TLS port too.)
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    expecting.set(req, res);
    handler(req, res);
  });
  // Connections of an HTTP/1.1 server (also under HTTP/2 with allowHTTP1): closed on shutdown.
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    // (h2c: a session begins with the connection, and closes on its GOAWAY when it has no stream.)
    if (!config.http2 || tls !== undefined) untilIdle(socket);
  });
  const closeIdle = (): void => {
    graceOver = true;
    if ('closeIdleConnections' in server) server.closeIdleConnections();
    for (const [socket, read] of idleSince) if (socket.bytesRead === read) socket.destroy();
    for (const session of sessions) session.close(); // GOAWAY: open streams finish, no new ones
  };
  const closeAll = (): void => {
    if ('closeAllConnections' in server) server.closeAllConnections();
    for (const session of sessions) session.destroy();
    for (const socket of sockets) socket.destroy();
  };

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await engine.close();
    throw err;
  }
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `${tls !== undefined ? 'https' : 'http'}://${host}:${addr.port}`;

  const close = (): Promise<void> => {
    closing ??= (async () => {
      stopping.abort();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          log.warn({ inflight }, 'shutdown timeout: closing the connections still open');
          cut = inflight;
          cutting = true;
          closeAll();
        }, cfg.shutdownTimeoutMs);
        // Stop accepting; the callback runs once every connection is gone. http.Server#close
        // would also close the idle keep-alive connections at once, resetting a request a client
        // sent on one before it could see the shutdown (review29: 16 of ~16k under load): HTTP/1
        // stops listening through net.Server's close instead, and idle connections get a grace.
        const stopListening = ('closeIdleConnections' in server ? NetServer.prototype.close : server.close) as (this: unknown, done: () => void) => unknown;
        stopListening.call(server, () => {
          clearTimeout(timer);
          resolve();
        });
        for (const session of sessions) session.close(); // HTTP/2: GOAWAY says which streams were taken
        const drained = new Promise<void>((r) => {
          if (inflight === 0) r();
          else idle = r;
        });
        void drained.then(async () => {
          // Every request in flight is answered (responses now carry Connection: close). A request
          // already on its way over a kept-alive connection gets a moment to arrive and be
          // answered; then idle connections close, and the others as their requests end (the
          // timeout ends whatever is left).
          await sleep(Math.min(SHUTDOWN_GRACE_MS, cfg.keepAliveTimeoutMs, cfg.shutdownTimeoutMs), undefined, { ref: false });
          closeIdle();
          idle = closeIdle;
        });
      });
      await proxy?.close();
      await engine.close();
    })();
    return closing;
  };

  const reconfigure = (next: ServeConfig): { applied: Array<keyof ServeConfig>; needRestart: Array<keyof ServeConfig> } => {
    const changed = (Object.keys(next) as Array<keyof ServeConfig>).filter((k) => JSON.stringify(next[k]) !== JSON.stringify(cfg[k]));
    // HTTP/2 servers have no header/request/keep-alive timeouts to change.
    const fixed = 'headersTimeout' in server ? RESTART_ONLY : [...RESTART_ONLY, 'headersTimeoutMs', 'requestTimeoutMs', 'keepAliveTimeoutMs'] as Array<keyof ServeConfig>;
    const needRestart = changed.filter((k) => fixed.includes(k));
    const applied = changed.filter((k) => !fixed.includes(k));
    if (applied.length === 0) return { applied, needRestart };
    const c: ServeConfig = { ...next };
    for (const k of fixed) (c as unknown as Record<string, unknown>)[k] = cfg[k]; // kept as they were
    // The file's own pair was checked; the running one is what counts (review65: a reload raising
    // both left answers up to the new proxyCacheMaxBytes buffered whole, never cached).
    if (c.proxyCacheMaxBytes > c.cacheL1MaxBytes) {
      throw new RangeError(`proxyCacheMaxBytes (${c.proxyCacheMaxBytes}) must not be larger than the running cacheL1MaxBytes (${c.cacheL1MaxBytes}), which changes only with a restart`);
    }
    // What can throw comes first, so a rejected reload changes nothing: the limiter past
    // MAX_LIMITER_SHAPES, a new proxy (built before the old one is dropped).
    const nextLimiter = applied.includes('limitPerSecond') || applied.includes('limitBurst') ? limiterFor(c) : undefined;
    if (PROXY_KEYS.some((k) => applied.includes(k))) {
      if (c.upstreams.length === 0) {
        void proxy?.close();
        proxy = undefined;
      } else if (proxy === undefined) {
        proxy = createProxy(engine, c, log);
      } else {
        proxy.configure(c);
      }
    }
    if (nextLimiter !== undefined) {
      limiter = nextLimiter;
      limit = limitFor(limiter);
    }
    // The serving thread's L1 (the cache /process and the proxy read), resized in place: its
    // entries stay (a smaller bound evicts down to it).
    if (applied.includes('cacheL1Entries')) cache.resizeL1(c.cacheL1Entries);
    if (applied.includes('trustProxy')) trusted = new Set(c.trustProxy.map(plainAddress));
    if (applied.includes('adminToken')) token = c.adminToken === undefined ? undefined : Buffer.from(c.adminToken);
    if ('headersTimeout' in server) {
      server.headersTimeout = c.headersTimeoutMs;
      server.requestTimeout = c.requestTimeoutMs;
      server.keepAliveTimeout = c.keepAliveTimeoutMs;
    }
    cfg = c; // bodyLimit and shutdownTimeoutMs are read from here
    return { applied, needRestart };
  };

  return {
    url, engine, server, close, reconfigure,
    get config() {
      return cfg;
    },
    get inflight() {
      return inflight;
    },
    get served() {
      return served;
    },
    get accepted() {
      return accepted;
    },
    get abandoned() {
      return gone;
    },
    get cut() {
      return cut;
    },
  };
}
