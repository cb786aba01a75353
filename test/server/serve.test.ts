/**
 * `hotpath serve` over real HTTP on 127.0.0.1: configuration precedence and validation, the
 * /process pipeline (rate limit, cache by content hash, worker task), health, readiness,
 * metrics, the admin API's token, body limits, trusted proxies, and a graceful shutdown by SIGTERM
 * under load that loses no accepted request (a child process running bin/hotpath.js).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveServeConfig, SERVE_DEFAULTS, type ServeConfig } from '../../engine/server/config.js';
import { clientAddress, MAX_LIMITER_SHAPES, PROCESS_MAX_QUEUED, PROCESS_QUEUE, startService, type Service } from '../../engine/server/server.js';
import { xxh32Bytes } from '../../engine/runtime/hash.js';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { silentLog } from '../helpers.js';
import { REDIS_URL, sharedRedisReachable } from '../redis/servers.js';

const redisReachable = await sharedRedisReachable('hotpath serve on Redis');
const hasPromtool = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;
const BIN = new URL('../../bin/hotpath.js', import.meta.url).pathname;

let service: Service | undefined;
afterEach(async () => {
  await service?.close();
  service = undefined;
});

async function start(overrides: Partial<ServeConfig> = {}): Promise<Service> {
  service = await startService({ ...SERVE_DEFAULTS, port: 0, workers: 1, ...overrides }, silentLog);
  return service;
}

describe('configuration', () => {
  it('flags > environment > config file > defaults; an empty variable means unset', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hotpath-serve-'));
    const file = join(dir, 'hotpath.json');
    writeFileSync(file, JSON.stringify({ port: 9000, host: '127.0.0.2', limitPerSecond: 5, trustProxy: ['10.0.0.1'] }));
    const c = resolveServeConfig(file, { HOTPATH_PORT: '9100', HOTPATH_HOST: '', HOTPATH_REDIS_URL: '' }, { port: '9200' });
    // The burst follows the limit unless a layer sets it (review38: a limit of 5 kept a burst of 100).
    expect(c).toMatchObject({ port: 9200, host: '127.0.0.2', limitPerSecond: 5, trustProxy: ['10.0.0.1'], redisUrl: undefined, limitBurst: 5 });
    expect(resolveServeConfig(undefined, { HOTPATH_LIMIT_PER_SECOND: '7' })).toMatchObject({ limitPerSecond: 7, limitBurst: 7 });
    expect(resolveServeConfig(file, { HOTPATH_LIMIT_BURST: '40' })).toMatchObject({ limitPerSecond: 5, limitBurst: 40 });
    expect(resolveServeConfig({ limitBurst: 9 }, { HOTPATH_LIMIT_PER_SECOND: '50' })).toMatchObject({ limitPerSecond: 50, limitBurst: 9 });
    expect(resolveServeConfig(undefined, { HOTPATH_TRUST_PROXY: '10.0.0.1, 10.0.0.2' }).trustProxy).toEqual(['10.0.0.1', '10.0.0.2']);
    expect(resolveServeConfig(undefined)).toEqual(SERVE_DEFAULTS);
  });

  it('a bad value names its field and where it came from', () => {
    expect(() => resolveServeConfig(undefined, { HOTPATH_PORT: '80a' })).toThrow('HOTPATH_PORT must be an integer between 0 and 65535, got "80a"');
    // review29: a bad Redis URL was the engine's error, exit 1; a blank variable counted as set.
    expect(() => resolveServeConfig(undefined, { HOTPATH_REDIS_URL: 'notaurl' })).toThrow('HOTPATH_REDIS_URL must be a redis:// or rediss:// URL, got "notaurl"');
    expect(() => resolveServeConfig(undefined, {}, { redis: 'http://127.0.0.1:6379' })).toThrow(/--redis must be a redis:\/\/ or rediss:\/\/ URL/);
    expect(resolveServeConfig(undefined, { HOTPATH_REDIS_URL: '  ' }).redisUrl).toBeUndefined();
    expect(resolveServeConfig(undefined, { HOTPATH_REDIS_URL: 'rediss://u:p@h:6380/0' }).redisUrl).toBe('rediss://u:p@h:6380/0');
    // A trusted proxy is matched by its address as it is: a name or a range would never match.
    expect(() => resolveServeConfig(undefined, { HOTPATH_TRUST_PROXY: '10.0.0.1, lb.internal' })).toThrow(/"lb.internal" is not an IP address/);
    expect(() => resolveServeConfig({ trustProxy: ['10.0.0.0/8'] })).toThrow(/"10.0.0.0\/8" is not an IP address/);
    expect(() => resolveServeConfig(undefined, {}, { workers: '0' })).toThrow('--workers must be an integer between 1 and 64, got "0"');
    expect(() => resolveServeConfig({ port: 'x' })).toThrow(/the config file: port must be an integer/);
    expect(() => resolveServeConfig({ colour: 'red' })).toThrow(/"colour" is not a setting/);
    expect(() => resolveServeConfig('/nonexistent/hotpath.json')).toThrow(/cannot read the config file/);
  });
});

describe('the service', () => {
  it('POST /process: MISS then HIT by content hash, the result cached before the response; RateLimit and Server-Timing headers', async () => {
    const s = await start();
    const body = 'compress me '.repeat(100);
    const first = await fetch(`${s.url}/process`, { method: 'POST', body });
    expect(first.status).toBe(200);
    expect(first.headers.get('x-cache')).toBe('MISS');
    expect(first.headers.get('ratelimit-policy')).toBe('"process";q=100;w=1');
    expect(first.headers.get('ratelimit')).toMatch(/^"process";r=99;t=\d+$/);
    expect(first.headers.get('server-timing')).toMatch(/limit;dur=[\d.]+, cache;dur=[\d.]+, work;dur=[\d.]+, total;dur=[\d.]+/);
    const r = (await first.json()) as { bytes: number; compressedBytes: number; checksum: string; key: string };
    expect(r.bytes).toBe(1200);
    expect(r.compressedBytes).toBeLessThan(200);
    expect(r.checksum).toMatch(/^[0-9a-f]{8}$/);
    // Cached (the response body itself) by the time the client has read the response.
    expect(JSON.parse(s.engine.cache.getSync(`process:${r.key}`) as string)).toEqual(r);
    const second = await fetch(`${s.url}/process`, { method: 'POST', body });
    expect(second.headers.get('x-cache')).toBe('HIT');
    expect(await second.json()).toEqual(r);
    const other = await fetch(`${s.url}/process`, { method: 'POST', body: 'something else' });
    expect(other.headers.get('x-cache')).toBe('MISS');
    await other.arrayBuffer();
  });

  it('misses are tasks of the process queue: concurrent misses of one body share one task; the checksum is the body\'s xxHash32; /admin/queue/process counts them', async () => {
    const s = await start({ adminToken: 'tok' });
    const q = s.engine.queue(PROCESS_QUEUE);
    q.pause();
    const body = `shared body ${process.pid} ${Date.now()}`;
    const misses = (): number => s.engine.cache.stats().l2!.misses;
    const before = misses();
    const answers = Array.from({ length: 4 }, () => fetch(`${s.url}/process`, { method: 'POST', body })
      .then(async (r) => ({ status: r.status, cache: r.headers.get('x-cache'), json: (await r.json()) as { checksum: string } })));
    // Each request submits in the same tick as its cache miss: four misses, four submits.
    const until = performance.now() + 10_000;
    while (misses() < before + 4) {
      if (performance.now() > until) throw new Error('the four requests never reached the cache');
      await new Promise((r) => setImmediate(r));
    }
    expect(q.counts()).toMatchObject({ queued: 1, running: 0 });
    q.resume();
    const got = await Promise.all(answers);
    expect(got.map((a) => `${a.status} ${a.cache}`)).toEqual(['200 MISS', '200 MISS', '200 MISS', '200 MISS']);
    expect(new Set(got.map((a) => JSON.stringify(a.json))).size).toBe(1);
    expect(q.totals()).toMatchObject({ submitted: 1, completed: 1, failed: 0 });
    expect(got[0]!.json.checksum).toBe(xxh32Bytes(Buffer.from(body), 0, Buffer.byteLength(body)).toString(16).padStart(8, '0'));
    const status = await fetch(`${s.url}/admin/queue/${PROCESS_QUEUE}`, { headers: { Authorization: 'Bearer tok' } });
    expect(await status.json()).toMatchObject({ queue: PROCESS_QUEUE, counts: { queued: 0, running: 0, dead: 0 }, totals: { completed: 1 } });
  });

  it('a /process body over the codec\'s 16 MiB but within the body limit is processed (review34: it was a 413)', async () => {
    const s = await start({ bodyLimit: 32 << 20 });
    const body = Buffer.alloc(17 << 20, 'abcdefgh');
    const res = await fetch(`${s.url}/process`, { method: 'POST', body });
    expect(res.status).toBe(200);
    const r = (await res.json()) as { bytes: number; checksum: string };
    expect(r.bytes).toBe(body.length);
    expect(r.checksum).toBe(xxh32Bytes(body, 0, body.length).toString(16).padStart(8, '0'));
  });

  it('a full process queue answers 503 with Retry-After, and takes misses again once it drains', async () => {
    const s = await start();
    const q = s.engine.queue<Buffer, unknown>(PROCESS_QUEUE);
    q.pause();
    const fillers = Array.from({ length: PROCESS_MAX_QUEUED }, (_, i) => q.submit(Buffer.from(`filler ${i}`)));
    const full = await fetch(`${s.url}/process`, { method: 'POST', body: 'one more' });
    expect(full.status).toBe(503);
    expect(full.headers.get('retry-after')).toBe('1');
    expect(await full.json()).toEqual({ error: 'the service is at capacity: retry shortly' });
    q.resume();
    await Promise.all(fillers.map((h) => h.result));
    const again = await fetch(`${s.url}/process`, { method: 'POST', body: 'one more' });
    expect(again.status).toBe(200);
    expect(again.headers.get('x-cache')).toBe('MISS');
    await again.arrayBuffer();
  });

  it('limits per client: the burst passes, then 429 with Retry-After; a trusted proxy\'s X-Forwarded-For names the client', async () => {
    const s = await start({ limitPerSecond: 1, limitBurst: 3, trustProxy: ['127.0.0.1'] });
    const post = (client: string): Promise<Response> => fetch(`${s.url}/process`, { method: 'POST', body: 'x', headers: { 'X-Forwarded-For': `203.0.113.9, ${client}` } });
    const codes: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await post('198.51.100.1');
      codes.push(res.status);
      if (res.status === 429) expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      await res.arrayBuffer();
    }
    expect(codes).toEqual([200, 200, 200, 429]);
    const another = await post('198.51.100.2'); // another client behind the same proxy
    expect(another.status).toBe(200);
    await another.arrayBuffer();
  });

  it.runIf(redisReachable)('on Redis (limit decided there, by a promise): MISS then HIT, the RateLimit headers, then 429 with Retry-After', async () => {
    const s = await start({ redisUrl: REDIS_URL, limitPerSecond: 1, limitBurst: 2, trustProxy: ['127.0.0.1'] });
    // A client and a body of this run only: the shared Redis outlives runs and other test files.
    const client = `198.51.100.${1 + Math.floor(Math.random() * 250)}`;
    const body = `on redis ${process.pid} ${Date.now()}`;
    const post = (): Promise<Response> => fetch(`${s.url}/process`, { method: 'POST', body, headers: { 'X-Forwarded-For': client } });
    const first = await post();
    expect(first.status).toBe(200);
    expect(first.headers.get('x-cache')).toBe('MISS');
    expect(first.headers.get('ratelimit-policy')).toBe('"process";q=1;w=1');
    const r = await first.json();
    const second = await post();
    expect(second.headers.get('x-cache')).toBe('HIT');
    expect(second.headers.get('ratelimit')).toMatch(/^"process";r=0;t=\d+$/);
    expect(await second.json()).toEqual(r);
    const third = await post();
    expect(third.status).toBe(429);
    expect(Number(third.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(third.headers.get('content-type')).toMatch(/^application\/json/);
    await third.arrayBuffer();
  });

  it('a client that goes away in the middle of its body is no error: nothing logged, nothing left in flight', async () => {
    const errors: unknown[] = [];
    service = await startService({ ...SERVE_DEFAULTS, port: 0, workers: 1 }, { ...silentLog, error: (...a: unknown[]) => void errors.push(a) });
    const s = service;
    const { connect } = await import('node:net');
    const port = Number(new URL(s.url).port);
    // Resolves when the server has closed the request's response (its 'close' event).
    const closed = new Promise<void>((resolve) => (s.server as import('node:http').Server).once('request', (_req, res) => res.once('close', () => resolve())));
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write('POST /process HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly part of it');
    await new Promise<void>((resolve) => setImmediate(resolve));
    socket.destroy();
    await closed;
    await new Promise<void>((resolve) => setImmediate(resolve)); // failed() runs on the request's 'error', beside 'close'
    expect(errors).toEqual([]);
    expect(s.inflight).toBe(0);
    // and the service goes on answering
    expect((await fetch(`${s.url}/health`)).status).toBe(200);
  });

  it('what node:http answers itself is answered as Node would and counted: 408 for headers or a body too slow, 400 for a malformed request', async () => {
    const s = await start({ headersTimeoutMs: 200, requestTimeoutMs: 400 });
    const { port } = new URL(s.url);
    /** Sends `text` on a fresh connection; resolves with everything read until the server closes it. */
    const raw = (text: string): Promise<string> => new Promise((resolve) => {
      const socket = netConnect(Number(port), '127.0.0.1');
      let got = '';
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => (got += d));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(got));
      socket.write(text);
    });
    const [headersSlow, bodySlow, malformed] = await Promise.all([
      raw('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n'), // the blank line never comes
      raw('POST /process HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nonly ten b'),
      raw('NOT HTTP AT ALL\r\n\r\n'),
    ]);
    expect(headersSlow).toBe('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n');
    expect(bodySlow).toBe('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n');
    expect(malformed).toBe('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    const text = await (await fetch(`${s.url}/metrics`)).text();
    expect(text).toContain('hotpath_http_requests_total{route="other",status="408"} 1');
    expect(text).toContain('hotpath_http_requests_total{route="/process",status="408"} 1');
    expect(text).toContain('hotpath_http_requests_total{route="other",status="400"} 1');
    expect(s.inflight).toBe(0);
  });

  it('health, readiness, metrics; 404 and 405; a body over the limit is refused with 413', async () => {
    const s = await start({ bodyLimit: 1000 });
    const health = await fetch(`${s.url}/health`); // a prebuilt answer: headers and body as send() writes them
    expect(health.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(health.headers.get('content-length')).toBe('15');
    expect(await health.json()).toEqual({ status: 'ok' });
    expect(await (await fetch(`${s.url}/ready`)).json()).toMatchObject({ ready: true, redis: 'none', closing: false });
    await (await fetch(`${s.url}/process`, { method: 'POST', body: 'warm' })).arrayBuffer();
    const metrics = await fetch(`${s.url}/metrics`);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain; version=0.0.4/);
    const text = await metrics.text();
    expect(text).toContain('hotpath_http_request_duration_seconds_count');
    expect(text).toMatch(/hotpath_limiter_decisions_total\{limiter="process",result="allowed"/);
    expect(text).toContain('hotpath_cache_requests_total');
    expect((await fetch(`${s.url}/nope`)).status).toBe(404);
    const getProcess = await fetch(`${s.url}/process`);
    expect([getProcess.status, getProcess.headers.get('allow')]).toEqual([405, 'POST']);
    for (const [method, path] of [['POST', '/health'], ['DELETE', '/ready'], ['PUT', '/metrics']] as const) {
      const r = await fetch(`${s.url}${path}`, { method, ...(method === 'DELETE' ? {} : { body: 'x' }) });
      expect([method, path, r.status, r.headers.get('allow'), await r.json()]).toEqual([method, path, 405, 'GET, HEAD', { error: `use GET ${path}` }]);
    }
    const head = await fetch(`${s.url}/health`, { method: 'HEAD' });
    expect([head.status, head.headers.get('content-length'), await head.text()]).toEqual([200, '15', '']);
    const big = await fetch(`${s.url}/process`, { method: 'POST', body: 'x'.repeat(5000) });
    expect(big.status).toBe(413);
  });

  it.runIf(hasPromtool || process.env.CI === 'true')('/metrics, with every component in use, passes promtool check metrics', async () => {
    const s = await start();
    await (await fetch(`${s.url}/process`, { method: 'POST', body: 'metrics' })).arrayBuffer();
    const q = s.engine.queue('jobs', { handler: (n: number) => n + 1 });
    await q.submit(1).result;
    const text = await (await fetch(`${s.url}/metrics`)).text();
    expect(text).toContain('hotpath_queue_tasks_total{queue="jobs",event="completed"} 1');
    const out = execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(out.trim()).toBe('');
  });

  it('the admin API is off without a token; with one it requires it as a bearer token', async () => {
    let s = await start();
    expect((await fetch(`${s.url}/admin/cache`)).status).toBe(404);
    await s.close();
    s = await start({ adminToken: 's3cret' });
    expect((await fetch(`${s.url}/admin/cache`)).status).toBe(401);
    expect((await fetch(`${s.url}/admin/cache`, { headers: { Authorization: 'Bearer wrong!' } })).status).toBe(401);
    const auth = { Authorization: 'Bearer s3cret' };
    const stats = await fetch(`${s.url}/admin/cache`, { headers: auth });
    expect(stats.status).toBe(200);
    expect(await stats.json()).toHaveProperty('l1');
    const warm = await fetch(`${s.url}/admin/cache/warm`, { method: 'POST', headers: auth, body: JSON.stringify({ entries: [{ key: 'k1', value: { v: 1 } }] }) });
    expect(await warm.json()).toEqual({ warmed: 1 });
    expect(s.engine.cache.getSync('k1')).toEqual({ v: 1 });
    expect((await fetch(`${s.url}/admin/cache/clear`, { method: 'POST', headers: auth })).status).toBe(200);
    expect(s.engine.cache.getSync('k1')).toBeUndefined();
    const peek = await fetch(`${s.url}/admin/limiter/process?key=1.2.3.4`, { headers: auth });
    expect(await peek.json()).toMatchObject({ limiter: 'process', key: '1.2.3.4', decision: { allowed: true, limit: 100 } });
    expect((await fetch(`${s.url}/admin/limiter/process`, { headers: auth })).status).toBe(400);
    const profile = await fetch(`${s.url}/admin/debug/profile?seconds=0.2`, { headers: auth });
    expect(await profile.json()).toHaveProperty('nodes');
  });
});

describe('edges found in review', () => {
  it('a request denied (429) before its body is read closes its connection; admin warm refuses a null body or a missing value with 400 (review29)', async () => {
    const s = await start({ limitPerSecond: 1, limitBurst: 1, adminToken: 'tok' });
    const first = await fetch(`${s.url}/process`, { method: 'POST', body: 'x' });
    expect(first.status).toBe(200);
    await first.arrayBuffer();
    const denied = await new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
      const req = httpRequest(`${s.url}/process`, { method: 'POST', headers: { 'Content-Length': String(1 << 20) } }, (res) => {
        res.resume();
        resolve({ status: res.statusCode!, connection: res.headers.connection });
      });
      req.on('error', () => undefined); // the server may close while the rest is still being sent
      req.write(Buffer.alloc(64 * 1024));
      req.on('close', () => reject(new Error('closed without an answer')));
    });
    expect(denied).toEqual({ status: 429, connection: 'close' });
    const warm = (body: string): Promise<Response> => fetch(`${s.url}/admin/cache/warm`, { method: 'POST', body, headers: { Authorization: 'Bearer tok' } });
    const nullBody = await warm('null');
    expect(nullBody.status).toBe(400);
    expect((await nullBody.json()).error).toMatch(/expected \{"entries"/);
    const noValue = await warm('{"entries":[{"key":"k"}]}');
    expect(noValue.status).toBe(400);
    expect((await noValue.json()).error).toBe('entry 0: "value" is missing');
  });

  it('a dual-stack socket address (::ffff:a.b.c.d) matches a trusted proxy given as a.b.c.d', () => {
    const req = { socket: { remoteAddress: '::ffff:127.0.0.1' }, headers: { 'x-forwarded-for': '198.51.100.7, ::ffff:127.0.0.1' } } as unknown as IncomingMessage;
    expect(clientAddress(req, new Set(['127.0.0.1']))).toBe('198.51.100.7');
    expect(clientAddress(req, new Set())).toBe('127.0.0.1');
  });

  it('admin: malformed percent-encoding is a 400, unknown names are 404, a non-response cached under process: is a miss', async () => {
    const s = await start({ adminToken: 't' });
    const auth = { Authorization: 'Bearer t' };
    expect((await fetch(`${s.url}/admin/queue/%E0%A4%A`, { headers: auth })).status).toBe(400);
    expect((await fetch(`${s.url}/admin/queue/nope`, { headers: auth })).status).toBe(404);
    expect((await fetch(`${s.url}/admin/limiter/nope?key=k`, { headers: auth })).status).toBe(404);
    // A known route asked with another method is a 405 naming the right one; extra segments are
    // no route (review29: 404 for the one, 200 for the other).
    const wrongMethod = await fetch(`${s.url}/admin/cache/clear`, { headers: auth });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('POST');
    expect((await fetch(`${s.url}/admin/cache/extra`, { headers: auth })).status).toBe(404);
    expect((await fetch(`${s.url}/admin/debug/heap/more`, { headers: auth })).status).toBe(404);
    const warmBad = await fetch(`${s.url}/admin/cache/warm`, { method: 'POST', headers: auth, body: JSON.stringify({ entries: [{ key: 'ok', value: 1 }, { key: '' }] }) });
    expect(warmBad.status).toBe(400);
    expect(s.engine.cache.getSync('ok')).toBeUndefined(); // nothing of a bad batch was applied
    const { createHash } = await import('node:crypto');
    await s.engine.cache.set(`process:${createHash('sha256').update('x').digest('base64url')}`, { not: 'a response' });
    const r = await fetch(`${s.url}/process`, { method: 'POST', body: 'x' });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-cache')).toBe('MISS');
    await r.arrayBuffer();
  });

  it('a heap snapshot streams from a file, one at a time; a CPU profile in progress ends when the service closes', async () => {
    const s = await start({ adminToken: 't' });
    const auth = { Authorization: 'Bearer t' };
    const heap = await fetch(`${s.url}/admin/debug/heap`, { headers: auth });
    expect(heap.status).toBe(200);
    expect((await heap.text()).startsWith('{"snapshot":')).toBe(true);
    const profile = fetch(`${s.url}/admin/debug/profile?seconds=100`, { headers: auth }).then((res) => res.status, () => 'closed');
    while (s.inflight === 0) await new Promise((r) => setImmediate(r));
    // One profile at a time; a decimal number of seconds only; the scheme in any case (review29).
    const second = await fetch(`${s.url}/admin/debug/profile?seconds=1`, { headers: { Authorization: 'bearer t' } });
    expect(second.status).toBe(409);
    await second.arrayBuffer();
    const hex = await fetch(`${s.url}/admin/debug/profile?seconds=0x10`, { headers: auth });
    expect(hex.status).toBe(400);
    await hex.arrayBuffer();
    await s.close(); // would wait 100 s if the profile held on
    service = undefined;
    expect([503, 'closed']).toContain(await profile);
  });

  it('limits changed live reuse the limiter of a shape seen before, and refuse more than MAX_LIMITER_SHAPES shapes', async () => {
    const s = await start();
    for (let i = 1; i < MAX_LIMITER_SHAPES; i++) s.reconfigure({ ...s.config, limitPerSecond: 100 + i });
    expect(() => s.reconfigure({ ...s.config, limitPerSecond: 999 })).toThrow(/at most 16/);
    expect(s.reconfigure({ ...s.config, limitPerSecond: 100 }).applied).toEqual(['limitPerSecond']); // the first shape: reused
    const r = await fetch(`${s.url}/process`, { method: 'POST', body: 'still limited' });
    expect(r.headers.get('ratelimit-policy')).toBe('"process";q=100;w=1');
    await r.arrayBuffer();
  });

  it('an empty value from a flag or the file is refused (an empty admin token would lock the admin API)', () => {
    expect(() => resolveServeConfig(undefined, {}, { 'admin-token': '' })).toThrow('--admin-token must not be empty');
    expect(() => resolveServeConfig({ toString: 5 })).toThrow(/"toString" is not a setting/);
  });

  it('an admin token no client can present is refused, naming its source: blanks, non-ASCII (review49)', () => {
    expect(() => resolveServeConfig(undefined, { HOTPATH_ADMIN_TOKEN: 'tok ' })).toThrow(/^HOTPATH_ADMIN_TOKEN must be visible ASCII characters only/);
    expect(() => resolveServeConfig(undefined, { HOTPATH_ADMIN_TOKEN: 'pässwort' })).toThrow(/^HOTPATH_ADMIN_TOKEN must be visible ASCII/);
    expect(() => resolveServeConfig(undefined, {}, { 'admin-token': ' tok' })).toThrow(/^--admin-token must be visible ASCII/);
    expect(() => resolveServeConfig({ adminToken: 'a\tb' })).toThrow(/^the config file: adminToken must be visible ASCII/);
    expect(resolveServeConfig(undefined, { HOTPATH_ADMIN_TOKEN: 'A-z_0.9~+/=!' }).adminToken).toBe('A-z_0.9~+/=!');
  });

  it('a host is trimmed, and refused with a port; TLS needs both a certificate and its key (review49)', () => {
    expect(resolveServeConfig(undefined, { HOTPATH_HOST: ' 127.0.0.1' }).host).toBe('127.0.0.1');
    expect(resolveServeConfig(undefined, {}, { host: '::1' }).host).toBe('::1');
    expect(() => resolveServeConfig(undefined, { HOTPATH_HOST: '127.0.0.1:8080' })).toThrow(/^HOTPATH_HOST must be a host without a port/);
    expect(() => resolveServeConfig({ host: 'localhost:80' })).toThrow(/^the config file: host must be a host without a port/);
    expect(() => resolveServeConfig(undefined, {}, { host: 'http://x' })).toThrow(/^--host must be a host name or an IP address/);
    expect(() => resolveServeConfig(undefined, {}, { host: '[::1]' })).toThrow(/^--host must be an IP address without brackets/);
    expect(() => resolveServeConfig(undefined, { HOTPATH_TLS_CERT: 'cert.pem' })).toThrow(/^HOTPATH_TLS_CERT is set but the key is not/);
    expect(() => resolveServeConfig({ key: 'key.pem' })).toThrow(/^the config file: key is set but the certificate is not/);
  });

  it.runIf(spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0 || process.env.CI === 'true')('the certificate and key are read once: what the configuration read is what the service serves with (review52: a pipe read twice was empty)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hotpath-serve-'));
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    const read: { cert?: Buffer; key?: Buffer } = {};
    const config = resolveServeConfig(undefined, {}, { cert, key, port: '0', workers: '1' }, { readFiles: true, read });
    expect(read.cert?.toString('latin1')).toMatch(/BEGIN CERTIFICATE/);
    writeFileSync(cert, ''); // as a pipe would be at a second read
    writeFileSync(key, '');
    const s = await startService(config, silentLog, { tls: read });
    service = s;
    expect(s.url).toMatch(/^https:/);
    // An unusable pair fails before the engine (and its threads) start: nothing left running.
    await expect(startService(config, silentLog)).rejects.toThrow(/PEM|no start line|key/i);
  });

  it('serve: a bad host, a certificate without its key, an unreadable --cert or a bad admin token exit 2 naming the setting, before anything starts (review49)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hotpath-serve-'));
    const key = join(dir, 'key.pem');
    writeFileSync(key, 'not a key');
    const cases: Array<[Record<string, string>, string[], RegExp]> = [
      [{ HOTPATH_HOST: '127.0.0.1:8080' }, [], /HOTPATH_HOST must be a host without a port/],
      [{ HOTPATH_TLS_CERT: key }, [], /HOTPATH_TLS_CERT is set but the key is not/],
      [{}, ['--cert', join(dir, 'missing.pem'), '--key', key], /--cert: cannot read ".*missing\.pem"/],
      [{}, ['--cert', key, '--key', key], /--cert and --key: not a usable certificate and key/],
      [{ HOTPATH_ADMIN_TOKEN: 'tok ' }, [], /HOTPATH_ADMIN_TOKEN must be visible ASCII/],
    ];
    for (const [env, args, message] of cases) {
      const r = spawnSync(process.execPath, [BIN, 'serve', '--port', '0', '--workers', '1', ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30_000 });
      expect({ status: r.status, stderr: r.stderr }).toMatchObject({ status: 2, stderr: expect.stringMatching(message) });
      expect(r.stdout).toBe(''); // nothing started, nothing logged
    }
  });
});

/** Sends raw bytes; resolves with everything the server answers until it closes the connection. */
function raw(url: string, text: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = netConnect(Number(u.port), u.hostname, () => sock.write(text));
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    sock.on('error', reject);
  });
}

/** A POST with Expect: 100-continue through node:http (which sends the body on the 100 only). */
function postExpecting(url: string, body: string): Promise<{ status: number; continued: boolean }> {
  return new Promise((resolve, reject) => {
    let continued = false;
    const req = httpRequest(url, { method: 'POST', headers: { Expect: '100-continue', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, continued }));
    });
    req.on('continue', () => {
      continued = true;
      req.end(body);
    });
    req.on('error', reject);
  });
}

describe('Expect: 100-continue', () => {
  it('a body over the limit by its Content-Length, or a client over its rate limit, gets its final status without a 100; an allowed request gets the 100, then its answer (review49)', async () => {
    const s = await start({ bodyLimit: 1000, limitPerSecond: 1000, limitBurst: 1000 });
    const big = await raw(s.url, 'POST /process HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2000\r\n\r\n');
    expect(big).toMatch(/^HTTP\/1\.1 413 /); // not "HTTP/1.1 100 Continue" first
    expect(big).toMatch(/\r\nConnection: close\r\n/i);
    expect(await postExpecting(`${s.url}/process`, 'within the limit')).toEqual({ status: 200, continued: true });
    s.reconfigure({ ...s.config, limitPerSecond: 1, limitBurst: 1 }); // a new limiter: its bucket starts full (1)
    expect(await postExpecting(`${s.url}/process`, 'the one allowed')).toEqual({ status: 200, continued: true });
    const denied = await raw(s.url, 'POST /process HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n');
    expect(denied).toMatch(/^HTTP\/1\.1 429 /);
    expect(denied).not.toContain('100 Continue');
    // A route that reads no body answers without a 100 as well.
    expect(await raw(s.url, 'POST /health HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n')).toMatch(/^HTTP\/1\.1 405 /);
  });
});

describe('graceful shutdown', () => {
  it('a connection that has sent nothing is closed after the grace, as an idle one is; one whose request headers are partly in is not cut (review49)', async () => {
    // Header and shutdown timeouts far beyond the test's: only the grace may close the silent one.
    const s = await start({ headersTimeoutMs: 600_000, shutdownTimeoutMs: 600_000 });
    const port = Number(new URL(s.url).port);
    const accepted: Socket[] = [];
    s.server.on('connection', (sock: Socket) => accepted.push(sock));
    const silent = netConnect(port, '127.0.0.1');
    const partial = netConnect(port, '127.0.0.1');
    silent.on('error', () => undefined);
    partial.on('error', () => undefined);
    try {
      partial.write('GET /health HTTP/1.1\r\nHost: x\r\n');
      // Both connections accepted, and the partial headers read by the server.
      while (accepted.length < 2 || !accepted.some((x) => x.bytesRead > 0)) await new Promise((r) => setImmediate(r));
      const silentClosed = new Promise<string>((r) => silent.once('close', () => r('closed')));
      const closed = s.close();
      // Generous: the grace is 500 ms; the header timeout (what closed it before) 10 minutes.
      expect(await Promise.race([silentClosed, new Promise((r) => setTimeout(() => r('still open'), 20_000).unref())])).toBe('closed');
      expect(partial.destroyed).toBe(false);
      const answer = new Promise<string>((resolve) => {
        const chunks: Buffer[] = [];
        partial.on('data', (c: Buffer) => chunks.push(c));
        partial.once('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
      });
      partial.write('\r\n'); // the rest of its headers
      const text = await answer;
      expect(text).toMatch(/^HTTP\/1\.1 200 /);
      expect(text).toMatch(/\r\nConnection: close\r\n/i);
      await closed;
      expect(s.served).toBe(1);
    } finally {
      silent.destroy();
      partial.destroy();
    }
  });

  it('a pipelined request dropped behind a Connection: close answer during shutdown does not stay in flight (review56)', async () => {
    const s = await start({ shutdownTimeoutMs: 600_000, headersTimeoutMs: 600_000, keepAliveTimeoutMs: 600_000, limitPerSecond: 1000, limitBurst: 1000 });
    const port = Number(new URL(s.url).port);
    // A POST in flight when the shutdown begins (its body arrives later), and a kept-alive connection.
    const post = netConnect(port, '127.0.0.1');
    post.on('error', () => undefined);
    post.write('POST /process HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf');
    const pipe = netConnect(port, '127.0.0.1');
    pipe.on('error', () => undefined);
    let piped = '';
    pipe.setEncoding('latin1');
    pipe.on('data', (d: string) => (piped += d));
    while (s.inflight === 0) await new Promise((r) => setImmediate(r));
    const closing = s.close();
    // Two pipelined requests: the first is answered with Connection: close, the second dropped.
    const pipeClosed = new Promise((r) => pipe.once('close', r));
    pipe.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    await pipeClosed;
    expect(piped.match(/HTTP\/1\.1 200 /g)).toHaveLength(1);
    expect(piped).toMatch(/\r\nConnection: close\r\n/i);
    post.write('sixsix'); // the POST ends (10 bytes in all): nothing is in flight any more
    const done = await Promise.race([closing.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still closing'), 20_000).unref())]);
    expect(done).toBe('closed'); // before: waited for the shutdown timeout (cut: 1, exit 1)
    service = undefined;
    expect(s.cut).toBe(0);
    expect(s.inflight).toBe(0);
    expect(s.accepted).toBe(s.served + s.abandoned + s.cut);
    post.destroy();
  });

  it('pipelined requests with bodies are served and counted as served, each once (review58)', async () => {
    const s = await start({ limitPerSecond: 1000, limitBurst: 1000 });
    const port = Number(new URL(s.url).port);
    const sock = netConnect(port, '127.0.0.1');
    sock.on('error', () => undefined);
    let text = '';
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => (text += d));
    const body = (i: number): string => `pipelined body ${i}`;
    sock.write([0, 1, 2].map((i) => `POST /process HTTP/1.1\r\nHost: x\r\nContent-Length: ${body(i).length}\r\n\r\n${body(i)}`).join(''));
    while ((text.match(/HTTP\/1\.1 200 /g) ?? []).length < 3 || s.inflight > 0) await new Promise((r) => setImmediate(r));
    // Before: the 2nd and 3rd were counted abandoned once their bodies were read, and never served.
    expect(s.served).toBe(3);
    expect(s.abandoned).toBe(0);
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toContain('hotpath_http_requests_total{route="/process",status="200"} 3');
    sock.destroy();
  });

  it('a request still in flight at the shutdown timeout is cut and counted (serve then exits 1: review29)', async () => {
    const s = await start({ shutdownTimeoutMs: 200 });
    const req = httpRequest(`${s.url}/process`, { method: 'POST', headers: { 'Content-Length': '1000' } });
    req.on('error', () => undefined);
    req.write('a body that never ends');
    while (s.inflight === 0) await new Promise((r) => setImmediate(r));
    await s.close();
    service = undefined;
    expect(s.cut).toBe(1);
    expect(s.accepted - s.served).toBe(1);
    expect(s.abandoned).toBe(0); // cut, not abandoned
  });

  it('a request whose client leaves before its answer is counted as abandoned: accepted = served + abandoned + cut (review38)', async () => {
    const s = await start({});
    const req = httpRequest(`${s.url}/process`, { method: 'POST', headers: { 'Content-Length': '1000' } });
    req.on('error', () => undefined);
    req.write('a body that never ends');
    while (s.inflight === 0) await new Promise((r) => setImmediate(r));
    req.destroy(); // the client goes away mid-body
    while (s.inflight > 0) await new Promise((r) => setImmediate(r));
    expect(s.abandoned).toBe(1);
    expect(s.accepted).toBe(s.served + s.abandoned + s.cut);
  });

  it('SIGTERM under load: no new connections, every accepted request answered, the engine closed, exit 0', async () => {
    const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--workers', '1'], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, HOTPATH_LIMIT_PER_SECOND: '1000000', HOTPATH_LIMIT_BURST: '1000000' } });
    const lines = createInterface({ input: child.stdout! });
    const logs: Array<Record<string, unknown>> = [];
    let onListening!: (url: string) => void;
    const listening = new Promise<string>((r) => (onListening = r));
    let onShutdown!: () => void;
    const shuttingDown = new Promise<void>((r) => (onShutdown = r));
    lines.on('line', (l) => {
      const entry = JSON.parse(l) as Record<string, unknown>;
      logs.push(entry);
      if (typeof entry.url === 'string') onListening(entry.url);
      if (entry.msg === 'shutting down') onShutdown();
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const url = await listening;
    let ok = 0;
    let onLoaded!: () => void;
    const loaded = new Promise<void>((r) => (onLoaded = r));
    let refused = 0;
    let sent = 0;
    const other: string[] = [];
    // 16 clients, each posting distinct bodies (cache misses: a worker task each) until refused.
    const client = async (c: number): Promise<void> => {
      for (let i = 0; ; i++) {
        sent++;
        try {
          const res = await fetch(`${url}/process`, { method: 'POST', body: `client ${c} request ${i} `.repeat(50) });
          await res.arrayBuffer();
          if (res.status !== 200) other.push(`status ${res.status}`);
          else if (++ok === 200) onLoaded();
        } catch (err) {
          // Not accepted: the server no longer takes connections (or closed an idle one first).
          const code = (err as { cause?: { code?: string } }).cause?.code ?? String(err);
          if (code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') refused++;
          else other.push(code);
          return;
        }
      }
    };
    const clients = Array.from({ length: 16 }, (_, c) => client(c));
    await loaded; // under load: 200 answered, 16 more in flight
    child.kill('SIGTERM');
    await shuttingDown;
    // the clients go on until the server refuses them
    await Promise.all(clients);
    expect(await exited).toBe(0);
    const stopped = logs.find((l) => l.msg === 'stopped') as { accepted: number; served: number } | undefined;
    expect(stopped).toBeDefined();
    expect(other).toEqual([]);
    // Every request the server accepted was answered in full and reached its client as a 200:
    // a connection error a client saw was for a request the server never received.
    expect(stopped!.served).toBe(stopped!.accepted);
    expect(ok).toBe(stopped!.accepted);
    expect(refused).toBeGreaterThan(0);
    expect(logs.some((l) => l.msg === 'shutting down')).toBe(true);
  });
});
