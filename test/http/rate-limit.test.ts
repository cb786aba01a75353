/**
 * The HTTP rate-limit middleware over real HTTP on 127.0.0.1: a real express 5 app and a real
 * fastify 5 app, each listening on port 0, driven with Node's fetch. One behavioural suite runs
 * over both frameworks.
 *
 * The limiter is a small deterministic counting limiter written here against the RateLimiter
 * interface (a fixed allowance per key, no clock), so these tests pin down the middleware alone.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { expressRateLimit, fastifyRateLimit, type RateLimitOptions } from '../../engine/http/index.js';
import type { Decision, RateLimiter } from '../../engine/limiter/types.js';

/**
 * `limit` tokens per key until reset; every answer reports the fixed `resetMs`, and a denial
 * `retryAfterMs = resetMs` (or Infinity for a cost over the limit, which can never pass).
 */
class CountingLimiter implements RateLimiter {
  readonly algorithm = 'fixed-window' as const;
  /** Every call, in order: which method, key and cost. */
  readonly calls: Array<{ method: 'allow' | 'allowSync'; key: string; cost: number }> = [];
  /** When set, `allow` rejects with it (as a closed engine would). */
  failWith: Error | undefined;
  readonly #used = new Map<string, number>();

  constructor(
    readonly name: string,
    readonly limit: number,
    readonly windowMs = 60_000,
    readonly resetMs = 2_500,
  ) {}

  allowSync(key: string, cost = 1): Decision {
    this.calls.push({ method: 'allowSync', key, cost });
    return this.#decide(key, cost, true);
  }

  async allow(key: string, cost = 1): Promise<Decision> {
    this.calls.push({ method: 'allow', key, cost });
    if (this.failWith !== undefined) throw this.failWith;
    return this.#decide(key, cost, true);
  }

  peek(key: string, cost = 1): Decision {
    return this.#decide(key, cost, false);
  }

  async reset(key: string): Promise<void> {
    this.#used.delete(key);
  }

  #decide(key: string, cost: number, take: boolean): Decision {
    const used = this.#used.get(key) ?? 0;
    const allowed = used + cost <= this.limit;
    const after = allowed && take ? used + cost : used;
    if (take) this.#used.set(key, after);
    const retryAfterMs = allowed ? 0 : cost > this.limit ? Infinity : this.resetMs;
    return { allowed, limit: this.limit, remaining: this.limit - after, resetMs: after === 0 ? 0 : this.resetMs, retryAfterMs };
  }
}

interface Started {
  url: string;
  /** How many requests reached the route handler. */
  handled(): number;
}

interface Harness {
  name: string;
  /** Creates the middleware alone (for option validation). */
  create(limiter: RateLimiter, options?: RateLimitOptions<never>): unknown;
  /** An app with the middleware in front of GET / and GET /health, listening on 127.0.0.1:0. */
  start(limiter: RateLimiter, options?: RateLimitOptions<never>, extra?: { asyncOnSend?: boolean }): Promise<Started>;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((c) => c()));
});

const expressHarness: Harness = {
  name: 'express',
  create: (limiter, options) => expressRateLimit(limiter, options as RateLimitOptions),
  async start(limiter, options) {
    let handled = 0;
    const app = express();
    app.use(expressRateLimit(limiter, options as RateLimitOptions));
    app.get(['/', '/health'], (_req, res) => {
      handled++;
      res.json({ ok: true });
    });
    // The application's error handler: whatever the middleware passes to next(err) lands here.
    app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      res.status(500).json({ message: err.message });
    });
    const server: Server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections(); // fetch keeps connections alive
          server.close(() => resolve());
        }),
    );
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, handled: () => handled };
  },
};

const fastifyHarness: Harness = {
  name: 'fastify',
  create: (limiter, options) => fastifyRateLimit(limiter, options as RateLimitOptions),
  async start(limiter, options, extra = {}) {
    let handled = 0;
    const app: FastifyInstance = Fastify({ logger: false, forceCloseConnections: true });
    if (extra.asyncOnSend) {
      // Like a compression plugin: the response is not finished when onRequest's promise settles.
      app.addHook('onSend', async (_request, _reply, payload) => {
        await new Promise((resolve) => setImmediate(resolve));
        return payload;
      });
    }
    app.addHook('onRequest', fastifyRateLimit(limiter, options as RateLimitOptions));
    const route = async (): Promise<{ ok: boolean }> => {
      handled++;
      return { ok: true };
    };
    app.get('/', route);
    app.get('/health', route);
    // fastify's default error handler answers a rejected hook: 500 with { message, … }.
    await app.listen({ port: 0, host: '127.0.0.1' });
    cleanups.push(() => app.close());
    return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, handled: () => handled };
  },
};

interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
  text: string;
}

async function get(url: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(url, { headers });
  const text = await res.text();
  let body: unknown = text;
  if (res.headers.get('content-type')?.startsWith('application/json')) body = JSON.parse(text);
  return { status: res.status, headers: res.headers, body, text };
}

describe.each([expressHarness, fastifyHarness])('$name rate-limit middleware', (h) => {
  it('lets allowed requests through with RateLimit-Policy and RateLimit headers', async () => {
    const limiter = new CountingLimiter('api', 3);
    const { url, handled } = await h.start(limiter);
    for (const remaining of [2, 1, 0]) {
      const r = await get(url);
      expect(r.status).toBe(200);
      expect(r.body).toEqual({ ok: true });
      expect(r.headers.get('ratelimit-policy')).toBe('"api";q=3;w=60');
      expect(r.headers.get('ratelimit')).toBe(`"api";r=${remaining};t=3`);
      expect(r.headers.get('retry-after')).toBeNull();
    }
    expect(handled()).toBe(3);
    // The default key is the client's IP address.
    expect(new Set(limiter.calls.map((c) => c.key))).toEqual(new Set(['127.0.0.1']));
    expect(limiter.calls.every((c) => c.method === 'allow' && c.cost === 1)).toBe(true);
  });

  it('answers the (limit+1)-th request with 429, Retry-After and a JSON body, without the handler', async () => {
    const limiter = new CountingLimiter('api', 2);
    const { url, handled } = await h.start(limiter);
    await get(url);
    await get(url);
    const r = await get(url);
    expect(r.status).toBe(429);
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    expect(r.body).toEqual({ error: 'Too Many Requests', retryAfterMs: 2500 });
    const retryAfter = Number(r.headers.get('retry-after'));
    expect(Number.isInteger(retryAfter) && retryAfter >= 1).toBe(true);
    expect(retryAfter).toBe(3); // 2500 ms, rounded up
    expect(r.headers.get('ratelimit-policy')).toBe('"api";q=2;w=60');
    expect(r.headers.get('ratelimit')).toBe('"api";r=0;t=3');
    expect(handled()).toBe(2);
  });

  it('keeps keys apart with a custom key function', async () => {
    const limiter = new CountingLimiter('api', 1);
    const { url } = await h.start(limiter, {
      key: (req: { headers: Record<string, string | string[] | undefined> }) => String(req.headers['x-user']),
    });
    expect((await get(url, { 'x-user': 'alice' })).status).toBe(200);
    expect((await get(url, { 'x-user': 'alice' })).status).toBe(429);
    const bob = await get(url, { 'x-user': 'bob' });
    expect(bob.status).toBe(200);
    expect(bob.headers.get('ratelimit')).toBe('"api";r=0;t=3');
    expect(limiter.calls.map((c) => c.key)).toEqual(['alice', 'alice', 'bob']);
  });

  it('charges what the cost function says', async () => {
    const limiter = new CountingLimiter('api', 3);
    const { url } = await h.start(limiter, {
      cost: (req: { headers: Record<string, string | string[] | undefined> }) => Number(req.headers['x-cost'] ?? 1),
    });
    const first = await get(url, { 'x-cost': '2' });
    expect(first.status).toBe(200);
    expect(first.headers.get('ratelimit')).toBe('"api";r=1;t=3');
    expect((await get(url, { 'x-cost': '2' })).status).toBe(429); // 2 > 1 remaining
    expect((await get(url)).status).toBe(200); // a cost-1 request still fits
    expect(limiter.calls.map((c) => c.cost)).toEqual([2, 2, 1]);
  });

  it('does not consult the limiter (nor send headers) for skipped requests', async () => {
    const limiter = new CountingLimiter('api', 1);
    const { url, handled } = await h.start(limiter, {
      skip: (req: { url?: string }) => req.url === '/health',
    });
    for (let i = 0; i < 3; i++) {
      const r = await get(`${url}/health`);
      expect(r.status).toBe(200);
      expect(r.headers.get('ratelimit')).toBeNull();
      expect(r.headers.get('ratelimit-policy')).toBeNull();
    }
    expect(limiter.calls).toEqual([]);
    expect((await get(url)).status).toBe(200);
    expect((await get(url)).status).toBe(429);
    expect(handled()).toBe(4);
  });

  it('sends no RateLimit headers with headers: false, but still Retry-After on a denial', async () => {
    const limiter = new CountingLimiter('api', 1);
    const { url } = await h.start(limiter, { headers: false });
    const ok = await get(url);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('ratelimit')).toBeNull();
    expect(ok.headers.get('ratelimit-policy')).toBeNull();
    const denied = await get(url);
    expect(denied.status).toBe(429);
    expect(denied.headers.get('ratelimit')).toBeNull();
    expect(denied.headers.get('ratelimit-policy')).toBeNull();
    expect(denied.headers.get('retry-after')).toBe('3');
  });

  it('decides with allowSync when sync: true', async () => {
    const limiter = new CountingLimiter('api', 1);
    const { url } = await h.start(limiter, { sync: true });
    const ok = await get(url);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('ratelimit')).toBe('"api";r=0;t=3');
    expect((await get(url)).status).toBe(429);
    expect(limiter.calls.map((c) => c.method)).toEqual(['allowSync', 'allowSync']);
  });

  it('uses statusCode, message and policyName', async () => {
    const text = await h.start(new CountingLimiter('api', 1), { statusCode: 503, message: 'slow down', policyName: 'per-ip' });
    expect((await get(text.url)).headers.get('ratelimit-policy')).toBe('"per-ip";q=1;w=60');
    const a = await get(text.url);
    expect(a.status).toBe(503);
    expect(a.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(a.text).toBe('slow down');
    expect(a.headers.get('ratelimit-policy')).toBe('"per-ip";q=1;w=60');
    expect(a.headers.get('ratelimit')).toBe('"per-ip";r=0;t=3');
    expect(a.headers.get('retry-after')).toBe('3');

    const json = await h.start(new CountingLimiter('api', 1), { message: { code: 'RATE_LIMITED' } });
    await get(json.url);
    const b = await get(json.url);
    expect(b.status).toBe(429);
    expect(b.body).toEqual({ code: 'RATE_LIMITED' });
  });

  it('formats the fields as structured fields: escaped names, whole-second windows, unknowable retry', async () => {
    // 10 per 500 ms is stated as 10 per second (w must be whole seconds: rounded up, q stays the
    // limit — as 20 per second it was more than the limiter takes at once, review74); the quote
    // is escaped.
    const sub = await h.start(new CountingLimiter('a"b\\c', 10, 500, 200));
    const r = await get(sub.url);
    expect(r.headers.get('ratelimit-policy')).toBe('"a\\"b\\\\c";q=10;w=1');
    expect(r.headers.get('ratelimit')).toBe('"a\\"b\\\\c";r=9;t=1');

    // A cost over the limit can never pass: no Retry-After, retryAfterMs null.
    const never = await h.start(new CountingLimiter('api', 2), { cost: () => 5 });
    const n = await get(never.url);
    expect(n.status).toBe(429);
    expect(n.headers.get('retry-after')).toBeNull();
    expect(n.body).toEqual({ error: 'Too Many Requests', retryAfterMs: null });
    expect(n.headers.get('ratelimit')).toBe('"api";r=2');
  });

  it('hands a throwing or ill-typed key/cost function to the error handler and keeps serving', async () => {
    const limiter = new CountingLimiter('api', 100);
    const { url, handled } = await h.start(limiter, {
      key: (req: { headers: Record<string, string | string[] | undefined> }) => {
        const k = req.headers['x-key'];
        if (k === 'throw') throw new Error('key exploded');
        if (k === 'number') return 42 as unknown as string;
        return 'k';
      },
      cost: (req: { headers: Record<string, string | string[] | undefined> }) => Number(req.headers['x-cost'] ?? 1),
    });
    const thrown = await get(url, { 'x-key': 'throw' });
    expect(thrown.status).toBe(500);
    expect((thrown.body as { message: string }).message).toBe('key exploded');

    const number = await get(url, { 'x-key': 'number' });
    expect(number.status).toBe(500);
    expect((number.body as { message: string }).message).toBe('options.key must return a string, got 42');

    for (const bad of ['0', '-1', 'NaN', 'Infinity', '1.5']) {
      const r = await get(url, { 'x-cost': bad });
      expect(r.status).toBe(500);
      expect((r.body as { message: string }).message).toMatch(/^options\.cost must return a positive integer/);
    }
    expect(handled()).toBe(0);
    expect(limiter.calls).toEqual([]);

    const ok = await get(url);
    expect(ok.status).toBe(200);
    expect(handled()).toBe(1);
  });

  it('a skip that returns anything but a boolean (an async one: a Promise) is an error, not a pass (review55)', async () => {
    const limiter = new CountingLimiter('api', 1);
    const { url, handled } = await h.start(limiter, {
      skip: (async () => false) as unknown as (req: unknown) => boolean,
    });
    for (let i = 0; i < 3; i++) {
      const r = await get(url);
      expect(r.status).toBe(500); // before: 200 every time, the limiter never asked
      expect((r.body as { message: string }).message).toBe('options.skip must return a boolean, got a Promise');
    }
    expect(handled()).toBe(0);
  });

  it('an async skip, key or cost that rejects is refused and its rejection handled: no unhandled rejection (review56)', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      for (const which of ['skip', 'key', 'cost'] as const) {
        const limiter = new CountingLimiter('api', 10);
        const failing = async (): Promise<never> => {
          throw new Error(`${which} rejected`);
        };
        const { url } = await h.start(limiter, { [which]: failing } as never);
        const r = await get(url);
        expect(r.status).toBe(500);
        expect((r.body as { message: string }).message).toMatch(new RegExp(`^options\\.${which} must return .*, got a Promise`));
      }
      // Unhandled rejections are reported once the microtasks of a turn are done: one turn.
      await new Promise((r) => setImmediate(r));
      expect(unhandled).toEqual([]); // before: Node 20 ended the process on the first one
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('hands a rejection of limiter.allow to the error handler and keeps serving', async () => {
    const limiter = new CountingLimiter('api', 100);
    limiter.failWith = new Error('engine is closed');
    const { url, handled } = await h.start(limiter);
    const r = await get(url);
    expect(r.status).toBe(500);
    expect((r.body as { message: string }).message).toBe('engine is closed');
    expect(handled()).toBe(0);
    limiter.failWith = undefined;
    expect((await get(url)).status).toBe(200);
  });

  it('hands a throwing allowSync to the error handler (sync: true)', async () => {
    const limiter = new CountingLimiter('api', 100);
    limiter.allowSync = () => {
      throw new Error('sync failure');
    };
    const { url } = await h.start(limiter, { sync: true });
    const r = await get(url);
    expect(r.status).toBe(500);
    expect((r.body as { message: string }).message).toBe('sync failure');
  });

  it('rejects bad options at creation with an error naming the option', () => {
    const limiter = new CountingLimiter('api', 1);
    const bad = (options: unknown): unknown => h.create(limiter, options as RateLimitOptions<never>);
    expect(() => bad({ key: 'ip' })).toThrow(new TypeError('options.key must be a function, got "ip"'));
    expect(() => bad({ cost: 2 })).toThrow(new TypeError('options.cost must be a function, got 2'));
    expect(() => bad({ skip: true })).toThrow(new TypeError('options.skip must be a function, got true'));
    expect(() => bad({ headers: 'yes' })).toThrow(new TypeError('options.headers must be a boolean, got "yes"'));
    expect(() => bad({ sync: 1 })).toThrow(new TypeError('options.sync must be a boolean, got 1'));
    expect(() => bad({ statusCode: 200 })).toThrow(RangeError);
    expect(() => bad({ statusCode: 200 })).toThrow(/^options\.statusCode must be an integer between 400 and 599, got 200$/);
    expect(() => bad({ statusCode: 429.5 })).toThrow(/options\.statusCode/);
    expect(() => bad({ message: 5 })).toThrow(new TypeError('options.message must be a string or an object, got 5'));
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    expect(() => bad({ message: circular })).toThrow(/^options\.message must be JSON-serializable/);
    expect(() => bad({ policyName: 'café' })).toThrow(/^options\.policyName must be a non-empty string of printable ASCII/);
    expect(() => bad({ policyName: '' })).toThrow(/^options\.policyName/);
    expect(() => bad({ statuscode: 503 })).toThrow(/^options\.statuscode is not a known option/);
    expect(() => bad(null)).toThrow(new TypeError('options must be an object, got null'));

    expect(() => h.create(null as unknown as RateLimiter)).toThrow(/^limiter must be a RateLimiter/);
    const noSync = { ...limiter, name: 'api', windowMs: 1000, allow: limiter.allow, allowSync: undefined };
    expect(() => h.create(noSync as unknown as RateLimiter, { sync: true })).toThrow(/limiter\.allowSync is not a function/);
    const unnamed = new CountingLimiter('ünïcode', 1);
    expect(() => h.create(unnamed)).toThrow(/^limiter\.name \(the default policy name\).*set options\.policyName$/);
    expect(() => h.create(unnamed, { policyName: 'ok' })).not.toThrow();
  });
});

describe('fastify rate-limit hook with an async onSend hook', () => {
  it('still keeps a denied request from its route handler', async () => {
    const { url, handled } = await fastifyHarness.start(new CountingLimiter('api', 1), {}, { asyncOnSend: true });
    expect((await get(url)).status).toBe(200);
    const r = await get(url);
    expect(r.status).toBe(429);
    expect(r.body).toEqual({ error: 'Too Many Requests', retryAfterMs: 2500 });
    expect(handled()).toBe(1);
  });
});

describe('a token bucket with a burst above its limit', () => {
  it('reports r at most q: the policy says 10 a second, the burst lets 50 through, RateLimit says r ≤ 10', async () => {
    const { createEngine } = await import('../../engine/index.js');
    const engine = await createEngine({ workers: 1, metrics: false });
    try {
      const limiter = engine.limiter('burst', { algorithm: 'token-bucket', limit: 10, window: 1000, burst: 50 });
      const { url } = await expressHarness.start(limiter);
      const seen: number[] = [];
      for (let i = 0; i < 45; i++) {
        const r = await get(url);
        expect(r.status).toBe(200);
        expect(r.headers.get('ratelimit-policy')).toBe('"burst";q=10;w=1');
        seen.push(Number(/;r=(\d+)/.exec(r.headers.get('ratelimit') ?? '')![1]));
      }
      // 49, 48 … left in the bucket: reported as 10 until fewer than 10 are left.
      expect(Math.max(...seen)).toBe(10);
      expect(seen[0]).toBe(10);
      expect(seen[44]).toBeLessThanOrEqual(10);
    } finally {
      await engine.close();
    }
  });
});

describe('a window that is not whole seconds (review74)', () => {
  it('the policy states the limit over the window rounded up: a client that spends q at once is let through', async () => {
    const { createEngine } = await import('../../engine/index.js');
    let now = 1_700_000_000_000;
    const engine = await createEngine({ workers: 1, metrics: false, clock: { now: () => now } });
    try {
      const limiter = engine.limiter('odd-window', { algorithm: 'fixed-window', limit: 10, window: 1500 });
      const { url } = await expressHarness.start(limiter);
      const first = await get(url);
      expect(first.headers.get('ratelimit-policy')).toBe('"odd-window";q=10;w=2'); // was q=13;w=2
      const q = Number(/;q=(\d+)/.exec(first.headers.get('ratelimit-policy')!)![1]);
      now += 1500; // a fresh window: q requests at once
      const statuses: number[] = [];
      for (let i = 0; i < q; i++) statuses.push((await get(url)).status);
      expect(statuses.every((s) => s === 200)).toBe(true);
    } finally {
      await engine.close();
    }
  });
});
