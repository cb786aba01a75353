/**
 * HTTP rate-limit middleware for express and fastify, over any {@link RateLimiter}.
 *
 * Neither framework is imported at runtime: the request/reply types below are the minimal
 * structural shapes the middleware touches, so `hotpath/http` loads without either installed.
 *
 * Response headers follow draft-ietf-httpapi-ratelimit-headers-10 (27 September 2025,
 * https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/10/), whose two fields are
 * Structured Field Lists (RFC 9651) of one Item each — the policy name as an sf-string:
 *
 *     RateLimit-Policy: "api";q=100;w=60     q = quota (requests), w = window (integer seconds)
 *     RateLimit: "api";r=42;t=17             r = remaining quota, t = seconds until it is all back
 *     Retry-After: 3                         on a denial only (RFC 9110 §10.2.3, delay-seconds)
 *
 * q is the Decision's `limit`, w the limiter's `windowMs` in seconds (a window that is not whole
 * seconds is restated as the same rate over whole seconds), r the Decision's `remaining`, t its
 * `resetMs` rounded up — except on a denial, where t equals Retry-After (`retryAfterMs` rounded up,
 * at least 1), since the draft says Retry-After SHOULD NOT point earlier than t. A duration the
 * limiter reports as non-finite (a cost that can never pass) leaves out t and Retry-After.
 *
 * Earlier revisions (≤ -06) used separate RateLimit-Limit / -Remaining / -Reset fields; those are
 * not sent.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Decision, RateLimiter } from '../limiter/types.js';

/**
 * The options of {@link expressRateLimit} and {@link fastifyRateLimit}. All optional; validated
 * once, when the middleware is created.
 *
 * `Req` is the framework's request type (express `Request`, fastify `FastifyRequest`); the
 * callbacks receive it. A callback that throws, or returns a value of the wrong type, does not
 * crash the server: the error goes to the framework's error handler (express `next(err)`,
 * fastify a rejected hook), which answers — by default with 500.
 */
export interface RateLimitOptions<Req = unknown> {
  /**
   * The rate-limit key of a request. Default: the client IP — express `req.ip`, fastify
   * `request.ip`, else the socket's `remoteAddress`, else `'unknown'`. Must return a string.
   * Behind a proxy, configure the framework's `trust proxy` / `trustProxy` so `ip` is the client's.
   */
  key?: (req: Req) => string;
  /** What a request costs, in tokens: a positive integer, at most the limiter's burst (or limit). Default 1. */
  cost?: (req: Req) => number;
  /**
   * Return true to let a request through without consulting the limiter (and without headers).
   * Synchronous, and a boolean: anything else (a Promise from an async function) is an error.
   */
  skip?: (req: Req) => boolean;
  /**
   * Send `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10, see the
   * module comment) on every limited response, allowed or not. Default true. `Retry-After` is
   * sent on every denial regardless: it is the standard answer to a 429, not quota disclosure.
   */
  headers?: boolean;
  /** Status code of a denial, an integer in 400..599. Default 429. */
  statusCode?: number;
  /**
   * Body of a denial: a string is sent as `text/plain`, an object as JSON (serialized once, here).
   * Default: `{ "error": "Too Many Requests", "retryAfterMs": <ms> }` as JSON.
   */
  message?: string | object;
  /**
   * The policy name in the headers: printable ASCII (it is sent as a structured-field string).
   * Default: the limiter's `name`.
   */
  policyName?: string;
  /**
   * Decide with `limiter.allowSync` (local shared-memory state, no I/O, no promise) instead of
   * `limiter.allow` (distributed when the engine has Redis). Default false.
   */
  sync?: boolean;
}

/** The part of an express request the middleware reads (an express `Request` is one). */
export interface ExpressLikeRequest extends IncomingMessage {
  /** express's client address (honours `trust proxy`); absent on a bare node:http request. */
  ip?: string | undefined;
}

/** An express middleware; also usable as a plain node:http `(req, res, next)` handler. */
export type ExpressRateLimitMiddleware<Req extends ExpressLikeRequest = ExpressLikeRequest> = (
  req: Req,
  res: ServerResponse,
  next: (err?: unknown) => void,
) => void;

/** The part of a fastify request the middleware reads (a `FastifyRequest` is one). */
export interface FastifyLikeRequest {
  /** fastify's client address (honours `trustProxy`). */
  ip?: string | undefined;
  raw?: { socket?: { remoteAddress?: string | undefined } | null | undefined } | undefined;
}

/** The part of a fastify reply the middleware uses (a `FastifyReply` is one). */
export interface FastifyLikeReply {
  code(statusCode: number): unknown;
  header(name: string, value: string): unknown;
  send(payload?: unknown): unknown;
}

/** A fastify `onRequest` hook: `app.addHook('onRequest', fastifyRateLimit(limiter))`. */
export type FastifyRateLimitHook<Req extends FastifyLikeRequest = FastifyLikeRequest> = (
  request: Req,
  reply: FastifyLikeReply,
) => Promise<void>;

/** The defaults of {@link RateLimitOptions}. */
const DEFAULTS = {
  headers: true,
  statusCode: 429,
  sync: false,
} as const;

const KNOWN = new Set(['key', 'cost', 'skip', 'headers', 'statusCode', 'message', 'policyName', 'sync']);

/** Largest sf-integer (RFC 9651 §3.3.1: at most 15 digits). */
const SF_INT_MAX = 999_999_999_999_999;

const JSON_TYPE = 'application/json; charset=utf-8';
const TEXT_TYPE = 'text/plain; charset=utf-8';

/**
 * Express middleware (tested with express 5; it uses only node:http APIs) that limits requests
 * with `limiter`:
 * `app.use(expressRateLimit(engine.limiter('api', { limit: 100, window: 60_000 })))`.
 *
 * An allowed request gets the `RateLimit-Policy` / `RateLimit` headers and goes on (`next()`).
 * A denied one is answered here — `statusCode` (429), the headers, `Retry-After` and `message` —
 * and does not reach later handlers. A failure (a callback throws or returns a bad value, the
 * limiter throws or rejects) is passed to `next(err)`, so express's error handler answers; the
 * request is never left hanging.
 *
 * @param limiter The limiter to consult (`engine.limiter(name, options)`, or any {@link RateLimiter}).
 * @param options See {@link RateLimitOptions}.
 * @throws TypeError / RangeError naming the bad option (or `limiter`), at creation only.
 */
export function expressRateLimit<Req extends ExpressLikeRequest = ExpressLikeRequest>(
  limiter: RateLimiter,
  options: RateLimitOptions<Req> = {},
): ExpressRateLimitMiddleware<Req> {
  const c = compile(limiter, options, expressIp);

  const respond = (res: ServerResponse, next: (err?: unknown) => void, d: Decision): void => {
    try {
      const h = c.headers(d);
      for (let i = 0; i < h.length; i += 2) res.setHeader(h[i]!, h[i + 1]!);
      if (!d.allowed) {
        const [type, body] = c.body(d);
        res.statusCode = c.statusCode;
        res.setHeader('Content-Type', type);
        res.setHeader('Content-Length', Buffer.byteLength(body));
        res.end(body);
        return;
      }
    } catch (err) {
      // e.g. headers already sent by an earlier middleware
      next(err);
      return;
    }
    next();
  };

  return function rateLimit(req, res, next): void {
    let decided: Decision | PromiseLike<Decision> | undefined;
    try {
      decided = c.decide(req);
    } catch (err) {
      next(err);
      return;
    }
    if (decided === undefined) next();
    else if (c.sync) respond(res, next, decided as Decision);
    // A rejection goes to next(err) too: the request is answered either way.
    else Promise.resolve(decided).then((d) => respond(res, next, d), next);
  };
}

/**
 * A fastify `onRequest` hook (tested with fastify 5) that limits requests with `limiter`:
 * `app.addHook('onRequest', fastifyRateLimit(limiter))` (or in a plugin, to limit some routes).
 *
 * An allowed request gets the `RateLimit-Policy` / `RateLimit` headers (on the reply, so on the
 * eventual response) and goes on. A denied one is answered here — `statusCode` (429), the
 * headers, `Retry-After` and `message` — and its route handler does not run. A failure (a
 * callback throws or returns a bad value, the limiter throws or rejects) rejects the hook, so
 * fastify's error handler answers.
 *
 * @param limiter The limiter to consult (`engine.limiter(name, options)`, or any {@link RateLimiter}).
 * @param options See {@link RateLimitOptions}.
 * @throws TypeError / RangeError naming the bad option (or `limiter`), at creation only.
 */
export function fastifyRateLimit<Req extends FastifyLikeRequest = FastifyLikeRequest>(
  limiter: RateLimiter,
  options: RateLimitOptions<Req> = {},
): FastifyRateLimitHook<Req> {
  const c = compile(limiter, options, fastifyIp);

  return async function rateLimit(request, reply): Promise<void> {
    const decided = c.decide(request);
    if (decided === undefined) return;
    const d = c.sync ? (decided as Decision) : await decided;
    const h = c.headers(d);
    for (let i = 0; i < h.length; i += 2) reply.header(h[i]!, h[i + 1]!);
    if (!d.allowed) {
      const [type, body] = c.body(d);
      reply.code(c.statusCode);
      reply.header('Content-Type', type);
      reply.send(body);
      // fastify skips the route handler only if the reply has *ended* when this hook settles,
      // and an async onSend hook (compression, …) can still hold it open. A FastifyReply is a
      // thenable that settles when the response has ended: awaiting it is fastify's documented
      // "return reply" (a reply that is not thenable is awaited as a plain value).
      await reply;
    }
  };
}

function expressIp(req: ExpressLikeRequest): string {
  return req.ip ?? req.socket?.remoteAddress ?? 'unknown';
}

function fastifyIp(req: FastifyLikeRequest): string {
  return req.ip ?? req.raw?.socket?.remoteAddress ?? 'unknown';
}

/** What the adapters share: the validated options, turned into three functions. */
export interface Compiled<Req> {
  statusCode: number;
  /** Whether `decide` answers with `allowSync` (a Decision) rather than `allow` (a promise). */
  sync: boolean;
  /** The limiter's answer, or undefined when `skip` says so. Throws on a bad key/cost. */
  decide(req: Req): Decision | PromiseLike<Decision> | undefined;
  /** Header names and values, flattened: [name, value, name, value, …]. */
  headers(d: Decision): string[];
  /** [content type, body] of a denial. */
  body(d: Decision): [string, string];
}

/**
 * The limiter check without an adapter, for a bare node:http server that writes its own headers
 * (`hotpath serve` sends them with one `writeHead` call): `decide`, then `headers(d)` to send
 * (a fresh array the caller may extend), and on a denial `statusCode` and `body(d)`.
 * Same options and validation as {@link expressRateLimit}; the default key is the socket's address.
 * @internal (hotpath serve's; not part of the package's API)
 */
export function compileRateLimit<Req extends IncomingMessage>(limiter: RateLimiter, options: RateLimitOptions<Req> = {}): Compiled<Req> {
  return compile(limiter, options, (req) => req.socket?.remoteAddress ?? 'unknown');
}

/** Validates everything once (caller mistakes throw here, never per request). */
function compile<Req>(limiter: RateLimiter, options: RateLimitOptions<Req>, ipOf: (req: Req) => string): Compiled<Req> {
  if (limiter === null || typeof limiter !== 'object') {
    throw new TypeError(`limiter must be a RateLimiter (engine.limiter(name, options)), got ${describe(limiter)}`);
  }
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`options must be an object, got ${describe(options)}`);
  }
  for (const k of Object.keys(options)) {
    if (!KNOWN.has(k)) throw new TypeError(`options.${k} is not a known option (known: ${[...KNOWN].join(', ')})`);
  }
  const keyFn = optionalFunction('key', options.key);
  const costFn = optionalFunction('cost', options.cost);
  const skipFn = optionalFunction('skip', options.skip);
  const sendHeaders = optionalBoolean('headers', options.headers) ?? DEFAULTS.headers;
  const sync = optionalBoolean('sync', options.sync) ?? DEFAULTS.sync;

  const statusCode = options.statusCode ?? DEFAULTS.statusCode;
  if (typeof statusCode !== 'number' || !Number.isInteger(statusCode) || statusCode < 400 || statusCode > 599) {
    throw new RangeError(`options.statusCode must be an integer between 400 and 599, got ${describe(statusCode)}`);
  }

  // A fixed message is serialized once; the default one carries the decision's retryAfterMs.
  let fixedBody: [string, string] | undefined;
  const message: unknown = options.message;
  if (typeof message === 'string') {
    fixedBody = [TEXT_TYPE, message];
  } else if (message !== undefined) {
    if (message === null || typeof message !== 'object') {
      throw new TypeError(`options.message must be a string or an object, got ${describe(message)}`);
    }
    let json: string | undefined;
    try {
      json = JSON.stringify(message);
    } catch (err) {
      throw new TypeError(`options.message must be JSON-serializable: ${(err as Error).message}`, { cause: err });
    }
    fixedBody = [JSON_TYPE, json];
  }

  if (typeof (sync ? limiter.allowSync : limiter.allow) !== 'function') {
    throw new TypeError(`limiter must be a RateLimiter: limiter.${sync ? 'allowSync' : 'allow'} is not a function`);
  }
  const windowMs = limiter.windowMs;
  if (typeof windowMs !== 'number' || !(windowMs > 0) || !Number.isFinite(windowMs)) {
    throw new TypeError(`limiter must be a RateLimiter: limiter.windowMs must be a positive number, got ${describe(windowMs)}`);
  }
  const policyName = options.policyName ?? limiter.name;
  if (typeof policyName !== 'string' || policyName.length === 0 || !/^[\x20-\x7e]+$/.test(policyName)) {
    const what = options.policyName === undefined ? `limiter.name (the default policy name)` : 'options.policyName';
    throw new TypeError(`${what} must be a non-empty string of printable ASCII, got ${describe(policyName)}` +
      (options.policyName === undefined ? '; set options.policyName' : ''));
  }
  const name = sfString(policyName);

  // RateLimit-Policy changes only when the limit does (adaptive limiters); keep the last one.
  let policyLimit = NaN;
  let policy = '';
  let policyQ = 0;
  const policyFor = (limit: number): string => {
    if (limit !== policyLimit) {
      policyLimit = limit;
      const [q, w] = quotaParams(limit, windowMs);
      policyQ = q;
      policy = `${name};q=${q};w=${w}`;
    }
    return policy;
  };

  return {
    statusCode,
    sync,

    decide(req) {
      if (skipFn !== undefined) {
        const skip: unknown = skipFn(req);
        // A boolean only: an async skip returned a Promise, which is truthy, and every request
        // went through unlimited, silently (review55). Fail closed, as a bad key or cost does.
        if (typeof skip !== 'boolean') {
          quiet(skip);
          throw new TypeError(`options.skip must return a boolean, got ${describe(skip)}`);
        }
        if (skip) return undefined;
      }
      let key: string;
      if (keyFn === undefined) {
        key = ipOf(req);
      } else {
        const k: unknown = keyFn(req);
        if (typeof k !== 'string') {
          quiet(k);
          throw new TypeError(`options.key must return a string, got ${describe(k)}`);
        }
        key = k;
      }
      let cost = 1;
      if (costFn !== undefined) {
        const n: unknown = costFn(req);
        // The limiter takes whole tokens, at most its capacity (review41: the docs said any
        // positive number, and 1.5 then failed inside the limiter with another message).
        if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) {
          quiet(n);
          throw new RangeError(`options.cost must return a positive integer, got ${describe(n)}`);
        }
        cost = n;
      }
      return sync ? limiter.allowSync(key, cost) : limiter.allow(key, cost);
    },

    headers(d) {
      const retry = d.allowed ? undefined : retryAfterSeconds(d.retryAfterMs);
      const out: string[] = [];
      if (sendHeaders) {
        // t: seconds until the key's full allowance is back (Decision.resetMs); on a denial, the
        // Retry-After value instead, because the draft (§ Server Behavior) says Retry-After
        // SHOULD NOT point earlier than t, and that is when this client may come back.
        const resetS = retry ?? Math.ceil(d.resetMs / 1000);
        const p = policyFor(d.limit);
        // r at most q: a token bucket with a burst above its limit can have more left than the
        // policy's quota, and a remaining over the quota reads as a broken header. The client
        // is told less than it may do, never more.
        let item = `${name};r=${Math.min(sfInt(Math.floor(d.remaining)), policyQ)}`;
        // t is optional: left out when the limiter cannot say (a non-finite duration).
        if (Number.isFinite(resetS)) item += `;t=${sfInt(resetS)}`;
        out.push('RateLimit-Policy', p, 'RateLimit', item);
      }
      // A request that can never be allowed (its cost over the limiter's capacity) has a
      // non-finite retryAfterMs: retrying does not help, so no Retry-After.
      if (retry !== undefined && Number.isFinite(retry)) out.push('Retry-After', String(retry));
      return out;
    },

    body(d) {
      if (fixedBody !== undefined) return fixedBody;
      // JSON has no Infinity: a request that can never pass says retryAfterMs: null.
      const retryAfterMs = Number.isFinite(d.retryAfterMs) ? Math.ceil(d.retryAfterMs) : null;
      return [JSON_TYPE, JSON.stringify({ error: 'Too Many Requests', retryAfterMs })];
    },
  };
}

/** Retry-After of a denial: whole seconds, rounded up, at least 1 (0 would invite a retry storm). */
function retryAfterSeconds(ms: number): number {
  if (Number.isNaN(ms)) return 1;
  return Math.max(1, Math.ceil(ms / 1000));
}

/**
 * `q` and `w` of a RateLimit-Policy item: the limit per window. `w` must be a whole number of
 * seconds (≥ 1); a window that is not is rounded up, and `q` stays the limit (e.g. 10 per 1500 ms
 * → q=10;w=2): a client that spends q at once, or spreads it over w, stays within the limit. The
 * same rate restated over the longer w (q=13;w=2) was more than the limiter admits at once: a
 * client that took the policy at its word was denied 3 of 13 (review74).
 */
function quotaParams(limit: number, windowMs: number): [q: number, w: number] {
  return [sfInt(Math.floor(limit)), sfInt(Math.ceil(windowMs / 1000))];
}

/** An sf-integer: clamped to 0..10^15-1 (a negative or huge value would make the field invalid). */
function sfInt(n: number): number {
  return Number.isFinite(n) ? Math.min(Math.max(0, n), SF_INT_MAX) : 0;
}

/** An sf-string (RFC 9651 §3.3.3) of printable ASCII: quoted, with `\` and `"` escaped. */
function sfString(s: string): string {
  return `"${s.replace(/[\\"]/g, '\\$&')}"`;
}

function optionalFunction<F>(name: string, v: F | undefined): F | undefined {
  if (v !== undefined && typeof v !== 'function') {
    throw new TypeError(`options.${name} must be a function, got ${describe(v)}`);
  }
  return v;
}

function optionalBoolean(name: string, v: unknown): boolean | undefined {
  if (v !== undefined && typeof v !== 'boolean') {
    throw new TypeError(`options.${name} must be a boolean, got ${describe(v)}`);
  }
  return v;
}

/**
 * A callback's answer that is a thenable (an async callback) is refused; its rejection, should it
 * come, must not be an unhandled one — Node would end the process (review56).
 */
function quiet(v: unknown): void {
  if (v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function') {
    try {
      (v as PromiseLike<unknown>).then(undefined, () => {});
    } catch {
      // a thenable whose then throws: nothing pending to handle
    }
  }
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'function') return 'a function';
  if (v === null || typeof v !== 'object') return String(v);
  if (typeof (v as { then?: unknown }).then === 'function') return 'a Promise'; // an async callback: they must be synchronous
  return Array.isArray(v) ? 'an array' : 'an object';
}
