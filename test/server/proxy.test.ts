/**
 * `hotpath serve --upstream …`: the reverse-proxy mode against real upstream servers on 127.0.0.1:
 * streaming, caching by Cache-Control, failover, a killed upstream mid-request, 502/503/504,
 * rate limits, hot reload of the upstream list, and configuration errors.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { resolveServeConfig, SERVE_DEFAULTS, type ServeConfig } from '../../engine/server/config.js';
import { startService, type Service } from '../../engine/server/server.js';
import { silentLog } from '../helpers.js';

let service: Service | undefined;
const upstreams: Upstream[] = [];
afterEach(async () => {
  await service?.close();
  service = undefined;
  for (const u of upstreams.splice(0)) await u.close();
});

interface Upstream {
  url: string;
  server: Server;
  hits: string[];
  close(): Promise<void>;
}

async function upstream(name: string, handler?: (req: IncomingMessage, res: ServerResponse) => void): Promise<Upstream> {
  const hits: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    if (handler !== undefined) return handler(req, res);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.setHeader('x-upstream', name);
      res.end(JSON.stringify({ upstream: name, method: req.method, url: req.url, body: Buffer.concat(chunks).toString(), xff: req.headers['x-forwarded-for'], via: req.headers.via }));
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const u: Upstream = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server, hits,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
  upstreams.push(u);
  return u;
}

async function start(overrides: Partial<ServeConfig>): Promise<Service> {
  service = await startService({ ...SERVE_DEFAULTS, port: 0, workers: 1, ...overrides }, silentLog);
  return service;
}

async function get(path: string, init: Parameters<typeof request>[1] = {}) {
  const res = await request(`${service!.url}${path}`, init);
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) as Record<string, unknown> };
}

describe('proxy mode', () => {
  it('forwards requests with their bodies, adds X-Forwarded-For and Via, keeps the service’s own routes', async () => {
    const a = await upstream('a');
    await start({ upstreams: [a.url], upstreamAlgorithm: 'round-robin' });
    const r = await get('/orders/7?x=1', { method: 'POST', body: 'hello upstream', headers: { 'content-type': 'text/plain' } });
    expect(r.status).toBe(200);
    expect(r.json()).toMatchObject({ upstream: 'a', method: 'POST', url: '/orders/7?x=1', body: 'hello upstream', xff: '127.0.0.1' });
    expect(String(r.json().via)).toMatch(/hotpath/);
    expect(r.headers['x-upstream']).toBe('a');
    expect((await get('/health')).json()).toEqual({ status: 'ok' });
    const ready = (await get('/ready')).json();
    expect(ready.ready).toBe(true);
    expect(ready.upstreams).toEqual([{ url: a.url, state: 'up', breaker: 'closed' }]);
    expect(a.hits).toEqual(['POST /orders/7?x=1']); // /health and /ready were not forwarded
    expect((await get('/metrics')).text).toMatch(/hotpath_http_requests_total\{route="proxy",status="200"\} 1/);
  });

  it('streams a large body both ways without holding it whole', async () => {
    const echo = await upstream('echo', (req, res) => {
      res.setHeader('content-type', 'application/octet-stream');
      req.pipe(res);
    });
    await start({ upstreams: [echo.url] });
    const body = Buffer.alloc(8 << 20, 7);
    const res = await request(`${service!.url}/echo`, { method: 'PUT', body });
    const back = Buffer.from(await res.body.arrayBuffer());
    expect(res.statusCode).toBe(200);
    expect(back.length).toBe(body.length);
    expect(back.equals(body)).toBe(true);
  });

  it('caches GET responses by Cache-Control, and only those', async () => {
    let n = 0;
    const origin = await upstream('cc', (req, res) => {
      n++;
      if (req.url === '/fresh') res.setHeader('cache-control', 'public, max-age=60');
      if (req.url === '/nostore') res.setHeader('cache-control', 'no-store');
      if (req.url === '/cookie') {
        res.setHeader('cache-control', 'max-age=60');
        res.setHeader('set-cookie', 'a=b');
      }
      res.end(`body ${n}`);
    });
    await start({ upstreams: [origin.url] });
    const first = await get('/fresh');
    const second = await get('/fresh');
    expect([first.headers['x-cache'], second.headers['x-cache']]).toEqual(['MISS', 'HIT']);
    expect(second.text).toBe(first.text);
    expect(second.headers.age).toBeDefined();
    expect(second.headers['cache-control']).toBe('public, max-age=60');
    for (const path of ['/nostore', '/nostore', '/cookie', '/cookie']) expect((await get(path)).headers['x-cache']).toBe('MISS');
    await get('/fresh', { headers: { 'cache-control': 'no-cache' } }); // the client asks to revalidate
    expect((await get('/fresh', { method: 'POST', body: 'x' })).headers['x-cache']).toBeUndefined();
    expect(origin.hits.filter((h) => h === 'GET /fresh')).toHaveLength(2);
    expect(origin.hits.filter((h) => h === 'GET /nostore')).toHaveLength(2);
  });

  it('fails over from a dead upstream and one that answers 503; later requests avoid them', async () => {
    const good = await upstream('good');
    const bad = await upstream('bad', (_req, res) => {
      res.statusCode = 503;
      res.end('overloaded');
    });
    const dead = await upstream('dead');
    await dead.close();
    await start({ upstreams: [dead.url, bad.url, good.url], upstreamAlgorithm: 'round-robin' });
    for (let i = 0; i < 20; i++) {
      const r = await get(`/item/${i}`);
      expect(r.status).toBe(200);
      expect(r.json().upstream).toBe('good');
    }
    // Breakers (5 failures) and ejection take the failing ones out: they see few requests.
    expect(bad.hits.length).toBeLessThanOrEqual(6);
  });

  it('a request with a body is not replayed: an upstream failure is a 502 with a clear body', async () => {
    const dead = await upstream('dead');
    await dead.close();
    await start({ upstreams: [dead.url] });
    const r = await get('/write', { method: 'POST', body: 'once' });
    expect(r.status).toBe(502);
    expect(r.json()).toMatchObject({ code: 'ERR_HOTPATH_UPSTREAM_FAILED' });
    expect(String(r.json().error)).toMatch(/upstream http:\/\/127\.0\.0\.1:\d+ failed: ECONNREFUSED/);
  });

  it('answers 504 when the upstream is too slow and 503 when no upstream may take the request', async () => {
    const slow = await upstream('slow', (_req, res) => void setTimeout(() => res.end('late'), 2000).unref());
    await start({ upstreams: [slow.url], upstreamTimeoutMs: 100 });
    const r = await get('/slow');
    expect(r.status).toBe(504);
    expect(r.json()).toMatchObject({ code: 'ERR_HOTPATH_TIMEOUT' });
    // Five failures open its breaker: then nothing may take the request.
    for (let i = 0; i < 4; i++) await get('/slow');
    const refused = await get('/slow');
    expect(refused.status).toBe(503);
    expect(refused.json()).toMatchObject({ code: 'ERR_HOTPATH_NO_BACKEND' });
    expect((await get('/ready')).status).toBe(503);
  });

  it('an upstream killed mid-response: the client’s connection is cut, never a short body passed as whole', async () => {
    const dying = await upstream('dying', (_req, res) => {
      res.setHeader('content-length', '100000');
      res.write(Buffer.alloc(1000, 1));
      setImmediate(() => res.socket?.destroy());
    });
    await start({ upstreams: [dying.url] });
    const res = await request(`${service!.url}/big`);
    expect(res.statusCode).toBe(200);
    await expect(res.body.arrayBuffer()).rejects.toThrow();
    // The service itself is fine.
    expect((await get('/health')).status).toBe(200);
  });

  it('a client that goes away aborts its upstream request (nothing left hanging upstream)', async () => {
    let arrived!: () => void;
    const arrival = new Promise<void>((r) => (arrived = r));
    let closed!: () => void;
    const upstreamClosed = new Promise<void>((r) => (closed = r));
    const hang = await upstream('hang', (req) => {
      req.socket.once('close', () => closed());
      arrived(); // and never answers
    });
    await start({ upstreams: [hang.url] });
    const ac = new AbortController();
    const pending = request(`${service!.url}/forever`, { signal: ac.signal }).catch((e: unknown) => e);
    await arrival;
    ac.abort();
    await pending;
    await upstreamClosed; // the proxy cut its upstream connection: the test would time out otherwise
    expect(service!.inflight).toBe(0);
  });

  it('rate limits per client before forwarding', async () => {
    const a = await upstream('a');
    await start({ upstreams: [a.url], limitPerSecond: 3, limitBurst: 3 });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await get('/x')).status);
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    expect(a.hits).toHaveLength(3);
  });

  it('takes a new upstream list live (hot reload), and turning it off brings back /process', async () => {
    const a = await upstream('a');
    const b = await upstream('b');
    await start({ upstreams: [a.url], upstreamAlgorithm: 'round-robin' });
    expect((await get('/who')).json().upstream).toBe('a');
    const applied = service!.reconfigure({ ...service!.config, upstreams: [b.url] });
    expect(applied.applied).toEqual(['upstreams']);
    for (let i = 0; i < 4; i++) expect((await get('/who')).json().upstream).toBe('b');
    service!.reconfigure({ ...service!.config, upstreams: [] });
    expect((await get('/who')).status).toBe(404);
    expect((await get('/process', { method: 'POST', body: 'x' })).status).toBe(200);
  });

  it('stores GET answers only: a HEAD never leaves an empty body for GETs, and is answered from a stored GET', async () => {
    const origin = await upstream('doc', (_req, res) => {
      res.setHeader('cache-control', 'max-age=60');
      res.end('the real body');
    });
    await start({ upstreams: [origin.url] });
    const head = await get('/doc', { method: 'HEAD' });
    expect(head.headers['x-cache']).toBe('MISS');
    const first = await get('/doc');
    expect([first.headers['x-cache'], first.text]).toEqual(['MISS', 'the real body']);
    const again = await get('/doc');
    expect([again.headers['x-cache'], again.text]).toEqual(['HIT', 'the real body']);
    const head2 = await get('/doc', { method: 'HEAD' });
    expect([head2.headers['x-cache'], head2.text, head2.headers['content-length']]).toEqual(['HIT', '', '13']);
    expect(origin.hits).toEqual(['HEAD /doc', 'GET /doc']);
  });

  it('a request the proxy cannot forward is the client’s fault (400), never counted against the upstream', async () => {
    const a = await upstream('a');
    await start({ upstreams: [a.url] });
    for (let i = 0; i < 6; i++) {
      // Expect: 100-continue (curl sends it for bodies over 1 KiB) is answered by node:http and
      // not forwarded (undici refuses it).
      expect(await expectContinue(`${service!.url}/upload`, 'x'.repeat(2000))).toBe(200);
    }
    const star = await rawRequest(service!.url, 'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(star).toMatch(/^HTTP\/1.1 400/);
    expect(star).toMatch(/ERR_HOTPATH_BAD_REQUEST/);
    const ready = (await get('/ready')).json();
    expect(ready.upstreams).toEqual([{ url: a.url, state: 'up', breaker: 'closed' }]);
  });

  it('clients leaving mid-response are not upstream failures (the breaker stays closed)', async () => {
    const streaming = await upstream('stream', (_req, res) => {
      res.write('first chunk');
      const t = setInterval(() => res.write('more'), 5);
      res.on('close', () => clearInterval(t));
    });
    await start({ upstreams: [streaming.url] });
    for (let i = 0; i < 6; i++) {
      const ac = new AbortController();
      const res = await request(`${service!.url}/events`, { signal: ac.signal });
      for await (const _chunk of res.body) break; // got the first chunk, then leave
      ac.abort();
    }
    const ready = (await get('/ready')).json();
    expect(ready.upstreams).toEqual([{ url: streaming.url, state: 'up', breaker: 'closed' }]);
    const lb = service!.engine.metrics;
    expect(await lb.text()).not.toMatch(/hotpath_balancer_calls_total\{balancer="upstreams",backend="[^"]+",result="failed"\} [1-9]/);
  });

  it('a chunked upstream answer cut short cuts the client connection too', async () => {
    const dying = await upstream('dying', (_req, res) => {
      res.write(Buffer.alloc(1000, 1)); // chunked: no Content-Length for the client to check
      setImmediate(() => res.socket?.destroy());
    });
    await start({ upstreams: [dying.url] });
    const res = await request(`${service!.url}/chunked`);
    await expect(res.body.arrayBuffer()).rejects.toThrow();
  });

  it('overwrites X-Forwarded-Host/-Proto from an untrusted client (no cache poisoning through them)', async () => {
    const a = await upstream('a', (req, res) => {
      res.setHeader('cache-control', 'max-age=60');
      res.end(`${String(req.headers['x-forwarded-proto'])}://${String(req.headers['x-forwarded-host'])}/login`);
    });
    await start({ upstreams: [a.url] });
    const attacker = await get('/page', { headers: { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' } });
    expect(attacker.text).not.toMatch(/evil/);
    const victim = await get('/page');
    expect(victim.text).toBe(attacker.text);
  });

  it('never replays a non-idempotent request on another upstream', async () => {
    const calls: string[] = [];
    const a = await upstream('a', (_req, res) => {
      calls.push('a');
      res.statusCode = 503;
      res.end('busy');
    });
    const b = await upstream('b', (_req, res) => {
      calls.push('b');
      res.end('done');
    });
    await start({ upstreams: [a.url, b.url], upstreamAlgorithm: 'round-robin' });
    const r = await get('/orders/7/charge', { method: 'POST' });
    expect(r.status).toBe(503); // a's answer, passed on
    expect(calls).toEqual(['a']);
  });

  it('HTTP/2: a request body without Content-Length is forwarded whole', async () => {
    const a = await upstream('a');
    await start({ upstreams: [a.url], http2: true });
    const { connect } = await import('node:http2');
    const session = connect(service!.url);
    const stream = session.request({ ':method': 'POST', ':path': '/h2' });
    stream.end('eleven byte');
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    session.close();
    expect(JSON.parse(Buffer.concat(chunks).toString()).body).toBe('eleven byte');
  });

  it('a live change of the algorithm keeps what is known of the upstreams: one known down gets no request (review49)', async () => {
    const good = await upstream('good');
    const dead = await upstream('dead');
    await dead.close();
    const s = await start({ upstreams: [good.url, dead.url], upstreamAlgorithm: 'least-connections' });
    // The health checks mark it down (fall: 2 failed checks, 2 s apart): polled on /ready.
    for (;;) {
      const ready = (await get('/ready')).json() as { upstreams: Array<{ url: string; state: string }> };
      if (ready.upstreams.find((u) => u.url === dead.url)?.state === 'down') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const algorithm of ['round-robin', 'p2c-ewma', 'consistent-hash', 'weighted']) {
      expect(s.reconfigure({ ...s.config, upstreamAlgorithm: algorithm }).applied).toEqual(['upstreamAlgorithm']);
      const ready = (await get('/ready')).json() as { upstreams: Array<{ url: string; state: string }> };
      expect(ready.upstreams.map((u) => [u.url, u.state])).toEqual([[good.url, 'up'], [dead.url, 'down']]);
      // Bodies: never failed over, so a pick of the dead one would be a 502.
      for (let i = 0; i < 4; i++) expect((await get(`/w/${algorithm}/${i}`, { method: 'POST', body: 'x' })).status).toBe(200);
    }
  });

  it('a new health path by reload: a new balancer of the same name replaces the old one, one set of metrics (review61 P10)', async () => {
    const a = await upstream('a');
    await start({ upstreams: [a.url], upstreamHealthPath: '/health' });
    expect(service!.reconfigure({ ...service!.config, upstreamHealthPath: '/healthz' }).applied).toEqual(['upstreamHealthPath']);
    expect((await get('/after')).json().upstream).toBe('a');
    const text = await service!.engine.metrics.text();
    expect(text.split('\n').filter((l) => l.startsWith('hotpath_balancer_backend_up{'))).toHaveLength(1);
  });

  it('proxy mode off and on again by reloads', async () => {
    const a = await upstream('a');
    await start({ upstreams: [a.url] });
    service!.reconfigure({ ...service!.config, upstreams: [] });
    expect(service!.reconfigure({ ...service!.config, upstreams: [a.url] }).applied).toEqual(['upstreams']);
    expect((await get('/back')).json().upstream).toBe('a');
  });

  it('validates the upstream settings, naming them', () => {
    expect(resolveServeConfig(undefined, { HOTPATH_UPSTREAMS: 'http://127.0.0.1:9001, http://127.0.0.1:9002/' }).upstreams).toEqual(['http://127.0.0.1:9001', 'http://127.0.0.1:9002']);
    expect(resolveServeConfig(undefined, {}, { upstream: ['http://a:1', 'http://b:2'], balance: 'least-connections' })).toMatchObject({ upstreams: ['http://a:1', 'http://b:2'], upstreamAlgorithm: 'least-connections' });
    expect(() => resolveServeConfig(undefined, {}, { upstream: ['ftp://a'] })).toThrow('--upstream: "ftp://a" must be an http: or https: URL');
    expect(() => resolveServeConfig(undefined, {}, { upstream: ['nope'] })).toThrow('--upstream: "nope" is not a URL');
    expect(() => resolveServeConfig(undefined, {}, { upstream: ['http://a:1/api'] })).toThrow(/must be an origin/);
    expect(() => resolveServeConfig(undefined, {}, { upstream: ['http://a:1', 'http://a:1/'] })).toThrow(/names an upstream twice/);
    expect(() => resolveServeConfig(undefined, {}, { balance: 'random' })).toThrow(/--balance must be one of round-robin/);
    expect(() => resolveServeConfig({ upstreamHealthPath: 'health' })).toThrow(/upstreamHealthPath must be a path starting with/);
  });

  it('a slow upload is not the upstream’s timeout: the deadline counts the waits on the upstream only (review61)', async () => {
    const a = await upstream('a');
    // Never reads past its first chunk, and never answers.
    const stuck = await upstream('stuck', (req) => void req.once('data', () => req.pause()));
    await start({ upstreams: [a.url], upstreamTimeoutMs: 400 });
    // The body in 8 parts 60 ms apart: longer than the timeout in all, each wait far shorter (a
    // loaded VM has 340 ms of slack per gap).
    const slow = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = httpRequest(`${service!.url}/upload`, { method: 'POST', headers: { 'content-length': '800' } }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => (text += c)).on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', reject);
      void (async () => {
        for (let i = 0; i < 8; i++) {
          if (i > 0) await sleep(60);
          req.write('x'.repeat(100));
        }
        req.end();
      })();
    });
    expect(slow.status).toBe(200);
    expect(JSON.parse(slow.text)).toMatchObject({ upstream: 'a', body: 'x'.repeat(800) });
    // A client whose body stops: its own timeout (408), its connection closed, not the upstream's.
    const stalled = rawUpload(service!.url, 'POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n', Buffer.alloc(100, 120));
    const head = await stalled.head;
    expect(head).toMatch(/^HTTP\/1.1 408 /);
    expect(head).toMatch(/\r\nconnection: close\r\n/i);
    expect(head).toMatch(/ERR_HOTPATH_TIMEOUT/);
    await stalled.closed;
    expect((await get('/ready')).json().upstreams).toEqual([{ url: a.url, state: 'up', breaker: 'closed' }]);
    expect(await service!.engine.metrics.text()).not.toMatch(/hotpath_balancer_calls_total\{balancer="upstreams",backend="[^"]+",result="failed"\} [1-9]/);
    // An upstream that stops taking the body is the upstream's timeout (504), and counted.
    service!.reconfigure({ ...service!.config, upstreams: [stuck.url] });
    const held = rawUpload(service!.url, `POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: ${64 << 20}\r\n\r\n`, Buffer.alloc(64 << 20, 120));
    expect(await held.head).toMatch(/^HTTP\/1.1 504 /);
    held.socket.destroy();
    expect(await service!.engine.metrics.text()).toMatch(/hotpath_balancer_calls_total\{balancer="upstreams",backend="[^"]+",result="failed"\} 1\n/);
  });

  it('an upstream that dies mid-body: the 502 closes the connection, whose rest of a body is never read (review61)', async () => {
    const dying = await upstream('dying', (req) => {
      let got = 0;
      req.on('data', (c: Buffer) => {
        got += c.length;
        if (got > 64 * 1024) req.socket.destroy();
      });
    });
    await start({ upstreams: [dying.url] });
    // A quarter of the body, the rest held back: it cannot have been read whole.
    const up = rawUpload(service!.url, `POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: ${1 << 20}\r\n\r\n`, Buffer.alloc(256 * 1024, 97), 16 * 1024);
    const head = await up.head;
    expect(head).toMatch(/^HTTP\/1.1 502 /);
    // Kept alive, the client's next request on it was never answered (its bytes were read as body).
    expect(head).toMatch(/\r\nconnection: close\r\n/i);
    await up.closed;
    expect((await get('/health')).status).toBe(200);
  });

  it('bounds the proxy cache’s L1 in bytes, not only in entries (review61)', async () => {
    const origin = await upstream('big', (req, res) => {
      res.setHeader('cache-control', 'max-age=60');
      res.end(Buffer.alloc(50_000, req.url!.length));
    });
    await start({ upstreams: [origin.url], proxyCacheMaxBytes: 64 * 1024, cacheL1MaxBytes: 256 * 1024 });
    for (let i = 0; i < 12; i++) expect((await get(`/obj/${i}`)).headers['x-cache']).toBe('MISS');
    const l1 = service!.engine.cache.stats().l1!;
    expect(l1.bytes).toBeLessThanOrEqual(256 * 1024);
    expect(l1.entries).toBeGreaterThan(0);
    // The setting: its default, the environment, a value refused with its name, and one that is
    // smaller than the largest answer the proxy may store.
    expect(SERVE_DEFAULTS.cacheL1MaxBytes).toBe(256 * 1024 * 1024);
    expect(resolveServeConfig(undefined, { HOTPATH_CACHE_L1_MAX_BYTES: '1048576' }).cacheL1MaxBytes).toBe(1024 * 1024);
    expect(() => resolveServeConfig(undefined, { HOTPATH_CACHE_L1_MAX_BYTES: '64m' })).toThrow(/^HOTPATH_CACHE_L1_MAX_BYTES must be an integer between 1024 and \d+, got "64m"$/);
    expect(() => resolveServeConfig({ cacheL1MaxBytes: 100 })).toThrow(/cacheL1MaxBytes must be an integer between 1024/);
    expect(() => resolveServeConfig(undefined, { HOTPATH_CACHE_L1_MAX_BYTES: '65536' })).toThrow(/proxyCacheMaxBytes \(1048576\) must not be larger than HOTPATH_CACHE_L1_MAX_BYTES \(65536\)/);
    expect(() => resolveServeConfig(undefined, { HOTPATH_CACHE_L1_MAX_BYTES: '65536', HOTPATH_PROXY_CACHE_MAX_BYTES: '0' })).not.toThrow();
  });

  it('an upstream refusing an upload early (413, Connection: close) is not counted as failing, whatever reaches the client (review61)', async () => {
    const a = await upstream('refuses', (_req, res) => {
      res.writeHead(413, { connection: 'close', 'content-type': 'text/plain' });
      res.end('too big');
    });
    await start({ upstreams: [a.url], limitPerSecond: 1e6, limitBurst: 1e6 });
    for (let i = 0; i < 8; i++) {
      // The body goes on arriving after the answer (the upstream resets the connection then); a
      // quarter of it, the rest held back.
      const up = rawUpload(service!.url, `POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: ${1 << 20}\r\n\r\n`, Buffer.alloc(256 * 1024, 97), 16 * 1024);
      const head = await up.head;
      // The 413 when undici read it before the reset of its next write; else a 502 (undici drops
      // the connection on a failed write: the answer waiting in it is lost). See README Limits.
      expect(['HTTP/1.1 413 Payload Too Large', 'HTTP/1.1 502 Bad Gateway']).toContain(head.split('\r\n')[0]);
      expect(head).toMatch(/\r\nconnection: close\r\n/i);
      await up.closed;
    }
    expect((await get('/ready')).json().upstreams).toEqual([{ url: a.url, state: 'up', breaker: 'closed' }]);
    expect(await service!.engine.metrics.text()).not.toMatch(/hotpath_balancer_calls_total\{balancer="upstreams",backend="[^"]+",result="failed"\} [1-9]/);
  });

  it('stores nothing of the answer to a request with Cache-Control: no-store (RFC 9111 §5.2.1.5, review61)', async () => {
    let n = 0;
    const origin = await upstream('cc', (_req, res) => {
      res.setHeader('cache-control', 'max-age=60');
      res.end(`answer ${++n}`);
    });
    await start({ upstreams: [origin.url] });
    const first = await get('/report', { headers: { 'cache-control': 'no-store' } });
    expect([first.headers['x-cache'], first.text]).toEqual(['MISS', 'answer 1']);
    const second = await get('/report');
    expect([second.headers['x-cache'], second.text]).toEqual(['MISS', 'answer 2']);
    const third = await get('/report'); // the plain request's answer is stored
    expect([third.headers['x-cache'], third.text]).toEqual(['HIT', 'answer 2']);
  });

  it('an upstream’s own 503 is passed on when no other upstream answers (review61)', async () => {
    const busy = await upstream('busy', (_req, res) => {
      res.writeHead(503, { 'retry-after': '120', 'content-type': 'text/plain' });
      res.end('maintenance until 12:00');
    });
    const dead = await upstream('dead');
    await dead.close();
    await start({ upstreams: [busy.url, dead.url], upstreamAlgorithm: 'round-robin' });
    for (let i = 0; i < 2; i++) {
      const r = await get(`/g/${i}`);
      expect([r.status, r.headers['retry-after'], r.text]).toEqual([503, '120', 'maintenance until 12:00']);
    }
    expect(busy.hits).toHaveLength(2);
  });

  it('a cache HIT carries Via too, as its MISS did (review61)', async () => {
    const origin = await upstream('via', (_req, res) => {
      res.setHeader('cache-control', 'max-age=60');
      res.setHeader('via', '1.1 cdn');
      res.end('x');
    });
    await start({ upstreams: [origin.url] });
    const miss = await get('/v');
    const hit = await get('/v');
    expect([miss.headers['x-cache'], miss.headers.via]).toEqual(['MISS', '1.1 cdn, 1.1 hotpath']);
    expect([hit.headers['x-cache'], hit.headers.via]).toEqual(['HIT', '1.1 cdn, 1.1 hotpath']);
  });

  it('a client that leaves while failover holds an upstream’s 503 unread does not take the service down (review65)', async () => {
    const busy = await upstream('busy', (_req, res) => {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('busy');
    });
    let arrived!: () => void;
    const atSlow = new Promise<void>((r) => (arrived = r));
    const answers: ServerResponse[] = [];
    let upstreamGone!: Promise<void>;
    const slow = await upstream('slow', (_req, res) => {
      answers.push(res);
      upstreamGone = new Promise<void>((r) => res.once('close', () => r()));
      arrived();
    });
    await start({ upstreams: [busy.url, slow.url], upstreamAlgorithm: 'round-robin' });
    // Round-robin from the first: 'busy' answers 503 (held), then 'slow' takes the request.
    const client = netConnect(Number(new URL(service!.url).port), '127.0.0.1');
    client.on('error', () => undefined);
    client.write('GET /held HTTP/1.1\r\nHost: x\r\n\r\n');
    await atSlow;
    client.destroy(); // the held 503's body is destroyed unread: before, an unhandled 'error' ended the process
    await upstreamGone; // the proxy gave the request up (the client left)
    for (const res of answers) res.end('late');
    expect((await get('/health')).status).toBe(200);
  });

  it('an early error of a route keeps a keep-alive connection when its small body arrived whole (review65)', async () => {
    await start({});
    const u = new URL(service!.url);
    const sock = netConnect(Number(u.port), u.hostname);
    sock.on('error', () => undefined);
    let text = '';
    sock.on('data', (c: Buffer) => (text += c.toString('latin1')));
    const until = (pred: () => boolean): Promise<void> => new Promise((resolve, reject) => {
      const check = (): void => {
        if (pred()) {
          sock.off('data', check);
          sock.off('close', fail);
          resolve();
        }
      };
      const fail = (): void => reject(new Error(`closed: ${JSON.stringify(text)}`));
      sock.on('data', check);
      sock.once('close', fail);
      check();
    });
    // One packet: the request and its 5-byte body (a 404 before the body is read).
    sock.write('POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello');
    await until(() => /^HTTP\/1.1 404 [\s\S]*\r\n\r\n[\s\S]*\}$/.test(text));
    expect(text).not.toMatch(/\r\nconnection: close\r\n/i); // before: closed, the next request lost
    const n = text.length;
    sock.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => text.slice(n).includes('"ok"'));
    expect(text.slice(n)).toMatch(/^HTTP\/1.1 200 /);
    sock.destroy();
  });

  it('a reload cannot raise proxyCacheMaxBytes past the running cacheL1MaxBytes (review65)', async () => {
    const a = await upstream('a');
    await start({ upstreams: [a.url], cacheL1MaxBytes: 1 << 20, proxyCacheMaxBytes: 512 * 1024 });
    const cfg = service!.config;
    // The file raises both; cacheL1MaxBytes needs a restart: the pair would not hold while it runs.
    expect(() => service!.reconfigure({ ...cfg, cacheL1MaxBytes: 8 << 20, proxyCacheMaxBytes: 4 << 20 })).toThrow(/running cacheL1MaxBytes/);
    expect(service!.config.proxyCacheMaxBytes).toBe(512 * 1024); // nothing changed
  });
});

/**
 * A raw HTTP/1.1 upload: `head` (written first), then `body` (in `chunk`-byte writes, each after
 * the last was taken). `head` resolves with the answer's status line, headers and what came of its
 * body once its header block is in; `closed` once the server has closed the connection.
 */
function rawUpload(url: string, head: string, body: Buffer, chunk = body.length): { head: Promise<string>; closed: Promise<void>; socket: Socket } {
  const u = new URL(url);
  const sock = netConnect(Number(u.port), u.hostname);
  sock.on('error', () => undefined); // (writes after the server closed: EPIPE, ECONNRESET)
  let text = '';
  const answer = new Promise<string>((resolve, reject) => {
    sock.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      if (text.includes('\r\n\r\n')) resolve(text);
    });
    sock.once('close', () => reject(new Error(`closed before an answer: ${JSON.stringify(text)}`)));
  });
  answer.catch(() => undefined);
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
  sock.once('connect', () => {
    sock.write(head);
    let at = 0;
    const next = (): void => {
      if (at >= body.length || sock.destroyed) return;
      const part = body.subarray(at, at + chunk);
      at += part.length;
      sock.write(part, () => setImmediate(next));
    };
    next();
  });
  return { head: answer, closed, socket: sock };
}

/** Sends raw bytes, returns everything the server answers until it closes. */
async function rawRequest(url: string, text: string): Promise<string> {
  const { connect } = await import('node:net');
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname, () => sock.write(text));
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('end', () => resolve(Buffer.concat(chunks).toString()));
    sock.on('error', reject);
  });
}

/** A POST with Expect: 100-continue through node:http (which waits for the 100 before the body). */
async function expectContinue(url: string, body: string): Promise<number> {
  const http = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { expect: '100-continue', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('continue', () => req.end(body));
    req.on('error', reject);
  });
}
