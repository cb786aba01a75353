/**
 * `hotpath serve --http2`: cleartext HTTP/2 (h2c, prior knowledge) and HTTP/2 over TLS with a
 * certificate made by openssl for the test (HTTP/1.1 still answered over TLS); a graceful close
 * lets an open stream finish.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { connect, constants, type ClientHttp2Session } from 'node:http2';
import { connect as netConnect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SERVE_DEFAULTS, type ServeConfig } from '../../engine/server/config.js';
import { startService, type Service } from '../../engine/server/server.js';
import { silentLog } from '../helpers.js';

const hasOpenssl = spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;

let service: Service | undefined;
let client: ClientHttp2Session | undefined;
afterEach(async () => {
  client?.close();
  client = undefined;
  await service?.close();
  service = undefined;
});

async function start(overrides: Partial<ServeConfig>): Promise<Service> {
  service = await startService({ ...SERVE_DEFAULTS, port: 0, workers: 1, http2: true, ...overrides }, silentLog);
  return service;
}

function h2(session: ClientHttp2Session, path: string, method = 'GET', body?: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':path': path, ':method': method });
    let headers: Record<string, unknown> = {};
    let text = '';
    req.on('response', (h) => (headers = h));
    req.setEncoding('utf8');
    req.on('data', (d: string) => (text += d));
    req.on('end', () => resolve({ status: Number(headers[':status']), headers, body: text }));
    req.on('error', reject);
    req.end(body);
  });
}

describe('hotpath serve over HTTP/2', () => {
  it('h2c: /process (MISS then HIT, with its headers), /health and /metrics', async () => {
    const s = await start({});
    client = connect(s.url);
    const first = await h2(client, '/process', 'POST', 'over http/2 '.repeat(20));
    expect(first.status).toBe(200);
    expect(first.headers['x-cache']).toBe('MISS');
    expect(first.headers.ratelimit).toMatch(/^"process";r=99/);
    const second = await h2(client, '/process', 'POST', 'over http/2 '.repeat(20));
    expect(second.headers['x-cache']).toBe('HIT');
    expect(second.body).toBe(first.body);
    expect(JSON.parse((await h2(client, '/health')).body)).toEqual({ status: 'ok' });
    expect((await h2(client, '/metrics')).body).toContain('hotpath_http_requests_total{route="/process",status="200"} 2');
  });

  it.runIf(hasOpenssl || process.env.CI === 'true')('TLS: HTTP/2 for clients that offer h2, HTTP/1.1 for the others', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hotpath-tls-'));
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    const s = await start({ cert, key });
    expect(s.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const ca = readFileSync(cert);
    client = connect(s.url, { ca });
    expect(JSON.parse((await h2(client, '/health')).body)).toEqual({ status: 'ok' });
    const h1 = await new Promise<{ status: number; version: string }>((resolve, reject) => {
      const req = httpsRequest(`${s.url}/ready`, { ca }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, version: res.httpVersion }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(h1).toEqual({ status: 200, version: '1.1' });
  });

  it('an upload the client resets is neither cached nor counted as served (review29)', async () => {
    // node:http2's compatibility layer ends a reset stream's body before it says 'aborted'.
    const s = await start({});
    client = connect(s.url);
    const body = `cut short ${Date.now()}`;
    const cut = client.request({ ':method': 'POST', ':path': '/process' });
    cut.on('error', () => undefined);
    cut.write(body);
    await new Promise<void>((r) => {
      const poll = (): void => (s.inflight > 0 ? r() : void setImmediate(poll));
      poll();
    });
    cut.close(constants.NGHTTP2_CANCEL);
    await new Promise<void>((r) => {
      const poll = (): void => (s.inflight === 0 ? r() : void setImmediate(poll));
      poll();
    });
    const full = await h2(client, '/process', 'POST', body);
    expect(full.headers['x-cache']).toBe('MISS');
    expect((await h2(client, '/metrics')).body).toContain('hotpath_http_requests_total{route="/process",status="200"} 1');
  });

  it('a body over the limit: 413, then the stream is reset, not read on (review29)', async () => {
    const s = await start({ bodyLimit: 1024 });
    client = connect(s.url);
    const req = client.request({ ':method': 'POST', ':path': '/process' });
    let status = 0;
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('error', () => undefined);
    req.resume();
    const chunk = Buffer.alloc(16 * 1024, 1);
    let sent = 0;
    // The server's RST_STREAM marks the stream closed ('close' itself waits for the writes still
    // buffered here, which the server will never take).
    const reset = new Promise<void>((r) => {
      const poll = (): void => (req.closed ? r() : void setImmediate(poll));
      poll();
    });
    // Write until the server ends the stream: it must, long before 64 MiB (flow control stops
    // this writer at once when the server does not read).
    while (!req.closed && !req.destroyed && sent < 64 << 20) {
      if (!req.write(chunk)) await Promise.race([new Promise((r) => req.once('drain', r)), reset]);
      sent += chunk.length;
    }
    await reset;
    expect(status).toBe(413);
    expect(sent).toBeLessThan(16 << 20);
    req.destroy();
    expect(s.inflight).toBe(0);
  });

  it('Expect: 100-continue over the body limit: 413 without a 100 first; within it: the 100, then the answer (review49)', async () => {
    const s = await start({ bodyLimit: 1000 });
    client = connect(s.url);
    const session = client;
    const ask = (length: number, body?: string): Promise<{ informational: unknown[]; status: number }> => new Promise((resolve, reject) => {
      const req = session.request({ ':method': 'POST', ':path': '/process', expect: '100-continue', 'content-length': String(length) });
      const informational: unknown[] = [];
      let status = 0;
      req.on('headers', (h) => informational.push(h[':status'])); // 1xx
      req.on('continue', () => req.end(body));
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('error', reject);
      req.resume();
      req.on('close', () => resolve({ informational, status }));
    });
    expect(await ask(2000)).toEqual({ informational: [], status: 413 });
    expect(await ask(5, 'small')).toEqual({ informational: [100], status: 200 });
  });

  it('a session with no stream open is closed after the keep-alive time; a connection that sends nothing after the header time (review29)', async () => {
    const s = await start({ headersTimeoutMs: 300, keepAliveTimeoutMs: 200 });
    client = connect(s.url);
    const session = client;
    expect(JSON.parse((await h2(session, '/health')).body)).toEqual({ status: 'ok' });
    const t0 = performance.now();
    await new Promise((r) => session.once('close', r));
    expect(performance.now() - t0).toBeLessThan(5000);
    const { port } = new URL(s.url);
    const raw = netConnect(Number(port), '127.0.0.1');
    raw.on('error', () => undefined);
    await new Promise((r) => raw.once('close', r)); // reset by the server at the header timeout
  });

  it.runIf(hasOpenssl || process.env.CI === 'true')('TLS: an HTTP/1.1 client that sends nothing, stays idle after a response, or sends its body too slowly (408) is closed (review29)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hotpath-tls-'));
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    const s = await start({ cert, key, headersTimeoutMs: 300, keepAliveTimeoutMs: 200, requestTimeoutMs: 400 });
    const ca = readFileSync(cert);
    const port = Number(new URL(s.url).port);
    const open = async (): Promise<TLSSocket> => {
      const socket = tlsConnect({ port, host: '127.0.0.1', ca, ALPNProtocols: ['http/1.1'] });
      socket.on('error', () => undefined);
      await new Promise((r) => socket.once('secureConnect', r));
      expect(socket.alpnProtocol).toBe('http/1.1');
      return socket;
    };
    const silent = await open(); // a slowloris that has not even begun
    await new Promise((r) => silent.once('close', r));
    const idle = await open();
    let text = '';
    idle.setEncoding('utf8');
    idle.on('data', (d: string) => (text += d));
    idle.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await new Promise((r) => idle.once('close', r)); // answered, then closed once idle
    expect(text).toMatch(/^HTTP\/1\.1 200/);
    const slow = await open();
    let slowText = '';
    slow.setEncoding('utf8');
    slow.on('data', (d: string) => (slowText += d));
    slow.write('POST /process HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nonly ten b');
    await new Promise((r) => slow.once('close', r));
    expect(slowText).toBe('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n');
    const metrics = await new Promise<string>((resolve, reject) => {
      const m = tlsConnect({ port, host: '127.0.0.1', ca, ALPNProtocols: ['http/1.1'] });
      let got = '';
      m.setEncoding('utf8');
      m.on('data', (d: string) => (got += d));
      m.on('error', reject);
      m.on('close', () => resolve(got));
      m.write('GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    });
    expect(metrics).toContain('hotpath_http_requests_total{route="/process",status="408"} 1');
    expect(s.inflight).toBe(0);
  });

  it('a graceful close lets an open HTTP/2 stream finish', async () => {
    const s = await start({});
    client = connect(s.url);
    const session = client;
    const inflight = h2(session, '/process', 'POST', 'closing '.repeat(100));
    await new Promise<void>((r) => {
      const poll = (): void => (s.inflight > 0 ? r() : void setImmediate(poll));
      poll();
    });
    const closing = s.close();
    const res = await inflight;
    expect(res.status).toBe(200);
    await closing;
    service = undefined;
  });
});

describe.runIf(hasOpenssl || process.env.CI === 'true')('graceful shutdown over TLS (review52)', () => {
  const pair = (): { cert: string; key: string } => {
    const dir = mkdtempSync(join(tmpdir(), 'hotpath-tls-'));
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    return { cert, key };
  };
  /**
   * A relay to `port` that passes a client's first 10 bytes at once (the server has read bytes: a
   * handshake under way) and holds the rest until `release()`.
   */
  const holdingRelay = async (port: number): Promise<{ relay: ReturnType<typeof createNetServer>; release: () => void }> => {
    let release: () => void = () => {};
    const relay = createNetServer((down) => {
      const up = netConnect(port, '127.0.0.1');
      down.on('error', () => undefined);
      up.on('error', () => undefined);
      up.pipe(down);
      let first = true;
      let open = false;
      const held: Buffer[] = [];
      release = () => {
        open = true;
        for (const c of held) up.write(c);
      };
      down.on('data', (c: Buffer) => {
        if (open) up.write(c);
        else if (first) {
          first = false;
          up.write(c.subarray(0, 10));
          held.push(c.subarray(10));
        } else held.push(c);
      });
      down.on('close', () => up.destroy());
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    return { relay, release: () => release() };
  };
  const closedWithin = (socket: { once(e: 'close', l: () => void): unknown }, ms: number): Promise<string> =>
    Promise.race([new Promise<string>((r) => socket.once('close', () => r('closed'))), new Promise<string>((r) => setTimeout(() => r('still open'), ms).unref())]);

  it('HTTP/1.1 on the HTTP/2 TLS port: a pipelined request whose first bytes came with the one before is answered, not cut', async () => {
    const { cert, key } = pair();
    const s = await start({ cert, key, headersTimeoutMs: 600_000, keepAliveTimeoutMs: 600_000, shutdownTimeoutMs: 600_000 });
    const ca = readFileSync(cert);
    const port = Number(new URL(s.url).port);
    const open = async (): Promise<TLSSocket> => {
      const socket = tlsConnect({ port, host: '127.0.0.1', ca, ALPNProtocols: ['http/1.1'] });
      socket.on('error', () => undefined);
      await new Promise((r) => socket.once('secureConnect', r));
      return socket;
    };
    const marker = await open(); // silent: its close says the grace is over
    const busy = await open();
    let text = '';
    busy.setEncoding('utf8');
    busy.on('data', (d: string) => (text += d));
    busy.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /hea'); // the second request's first bytes with the first
    while (!text.includes('\r\n\r\n')) await new Promise((r) => setImmediate(r));
    const closing = s.close();
    expect(await closedWithin(marker, 20_000)).toBe('closed');
    expect(busy.destroyed).toBe(false); // before: closed with the idle ones (its bytes were counted as "idle")
    const ended = new Promise((r) => busy.once('close', r));
    busy.write('lth HTTP/1.1\r\nHost: x\r\n\r\n');
    await ended;
    expect(text.match(/HTTP\/1\.1 200 /g)).toHaveLength(2);
    await closing;
    service = undefined;
  });

  it('an HTTP/2 session whose TLS handshake ends after the grace gets a GOAWAY after a grace of its own (review56)', async () => {
    const { cert, key } = pair();
    const s = await start({ cert, key, headersTimeoutMs: 600_000, keepAliveTimeoutMs: 600_000, shutdownTimeoutMs: 600_000 });
    const port = Number(new URL(s.url).port);
    const accepted: Array<{ bytesRead: number }> = [];
    s.server.on('connection', (sock: { bytesRead: number }) => accepted.push(sock));
    const { relay, release } = await holdingRelay(port);
    try {
      const marker = netConnect(port, '127.0.0.1'); // silent: its close says the grace is over
      marker.on('error', () => undefined);
      const relayPort = (relay.address() as AddressInfo).port;
      const session = connect(`https://127.0.0.1:${relayPort}`, {
        createConnection: () => tlsConnect({ port: relayPort, host: '127.0.0.1', ca: readFileSync(cert), ALPNProtocols: ['h2'] }),
      });
      session.on('error', () => undefined);
      while (accepted.length < 2 || !accepted.some((x) => x.bytesRead > 0)) await new Promise((r) => setImmediate(r));
      const closing = s.close();
      expect(await closedWithin(marker, 20_000)).toBe('closed');
      const connected = new Promise((r) => session.once('connect', r));
      release();
      await connected;
      // Before: no GOAWAY ever came (closeIdle had run); the shutdown waited for its timeout.
      expect(await closedWithin(session, 20_000)).toBe('closed');
      await closing;
      service = undefined;
    } finally {
      relay.close();
    }
  });

  it('a TLS handshake that ends after the grace, then sends nothing, is closed after a grace of its own', async () => {
    const { cert, key } = pair();
    // HTTPS (HTTP/1), header and shutdown timeouts far beyond the test's: only a grace may close it.
    const s = await startService({ ...SERVE_DEFAULTS, port: 0, workers: 1, cert, key, headersTimeoutMs: 600_000, shutdownTimeoutMs: 600_000 }, silentLog);
    service = s;
    const port = Number(new URL(s.url).port);
    const accepted: Array<{ bytesRead: number }> = [];
    s.server.on('connection', (sock: { bytesRead: number }) => accepted.push(sock));
    const { relay, release } = await holdingRelay(port);
    try {
      const marker = netConnect(port, '127.0.0.1'); // silent: its close says the grace is over
      marker.on('error', () => undefined);
      const late = tlsConnect({ port: (relay.address() as AddressInfo).port, host: '127.0.0.1', ca: readFileSync(cert), ALPNProtocols: ['http/1.1'] });
      late.on('error', () => undefined);
      // Both connected, and the server has read the late one's first bytes.
      while (accepted.length < 2 || !accepted.some((x) => x.bytesRead > 0)) await new Promise((r) => setImmediate(r));
      const closing = s.close();
      expect(await closedWithin(marker, 20_000)).toBe('closed');
      expect(late.destroyed).toBe(false); // mid-handshake: left to finish
      const secure = new Promise((r) => late.once('secureConnect', r));
      release();
      await secure;
      // Before: held the shutdown for the header timeout (here 10 minutes).
      expect(await closedWithin(late, 20_000)).toBe('closed');
      await closing;
      service = undefined;
    } finally {
      relay.close();
    }
  });
});
