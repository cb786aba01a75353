/**
 * What the load tester does with its connections, against real servers on 127.0.0.1: a request
 * undici writes again after its connection closed is counted (requests.resent), a GET or DELETE
 * with a body keeps its connection alive like any other request (review48), and a HEAD does not
 * (review51: against a server that sends a body with it, that is what keeps it harmless).
 */
import { createServer, type Server } from 'node:http';
import { createServer as netServer, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CSV_COLUMNS, loadtest, loadtestCsv } from '../../engine/loadtest/index.js';

interface Counting {
  url: string;
  requests: number;
  sockets: number;
  server: Server;
}

async function serve(closeEach: boolean): Promise<Counting> {
  const c: Counting = { url: '', requests: 0, sockets: 0, server: undefined as never };
  c.server = createServer((req, res) => {
    c.requests++;
    req.resume();
    req.on('end', () => {
      if (closeEach) res.setHeader('connection', 'close');
      res.end('ok');
    });
  });
  c.server.on('connection', () => c.sockets++);
  c.server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => c.server.listen(0, '127.0.0.1', resolve));
  c.url = `http://127.0.0.1:${(c.server.address() as AddressInfo).port}/`;
  return c;
}

let open: Counting | undefined;
afterEach(async () => {
  if (open === undefined) return;
  open.server.closeAllConnections();
  await new Promise<void>((resolve) => open!.server.close(() => resolve()));
  open = undefined;
});

describe('loadtest connections', () => {
  it('keeps its connections against a server whose Keep-Alive hint is short (timeout=1) (review80)', async () => {
    // Node sends "Keep-Alive: timeout=1" for a keepAliveTimeout of 1–1.9 s; undici took 2 s off
    // every hint, so each connection closed after one response: one connect per request.
    open = await serve(false);
    open.server.keepAliveTimeout = 1500;
    const r = await loadtest({ url: open.url, connections: 2, durationMs: 300, workers: 1, gracefulStopMs: 1000 });
    expect(r.requests.completed).toBeGreaterThan(50);
    expect(r.requests.errors).toBe(0);
    expect(open.sockets).toBeLessThanOrEqual(4); // was one per request
  });

  it('an onProgress that throws rejects the run with its error; nothing is left running (review80)', async () => {
    open = await serve(false);
    const boom = new Error('progress display broke');
    await expect(loadtest({ url: open.url, connections: 1, durationMs: 400, intervalMs: 50, workers: 1, onProgress: () => { throw boom; } })).rejects.toBe(boom);
  });

  it('counts the requests undici writes again when a pipelined connection closes under them', async () => {
    // Every response closes its connection: the requests pipelined behind it are written again
    // on the next one. The server then sees more requests than were sent once each.
    open = await serve(true);
    const r = await loadtest({ url: open.url, connections: 2, pipelining: 4, durationMs: 400, workers: 1, gracefulStopMs: 1000 });
    expect(r.requests.completed).toBeGreaterThan(10);
    expect(r.requests.resent).toBeGreaterThan(0);
    // Before: requests.total alone, 3.9× below what the server saw.
    expect(open.requests).toBeGreaterThan(r.requests.total);
    expect(open.requests).toBeLessThanOrEqual(r.requests.total + r.requests.resent);
    // The time series and its CSV carry them too (the CSV had no column for them: review48).
    expect(r.timeline.reduce((a, row) => a + row.resent, 0)).toBe(r.requests.resent);
    const csv = loadtestCsv(r).trimEnd().split('\n').map((l) => l.split(','));
    const at = CSV_COLUMNS.indexOf('resent');
    expect(csv.slice(1, -1).reduce((a, row) => a + Number(row[at]), 0)).toBe(r.requests.resent);
    expect(Number(csv.at(-1)![at])).toBe(r.requests.resent);
  });

  it('without pipelining nothing is written twice', async () => {
    open = await serve(true);
    const r = await loadtest({ url: open.url, connections: 2, durationMs: 300, workers: 1, gracefulStopMs: 1000 });
    expect(r.requests.resent).toBe(0);
    expect(open.requests).toBe(r.requests.total);
  });

  it.each([
    ['GET', 'a body'],
    ['DELETE', '{"id":1}'],
  ])('%s (body %s) keeps its connections alive', async (method, body) => {
    // undici closes the connection after these unless told otherwise: each request paid a new one.
    open = await serve(false);
    const r = await loadtest({ url: open.url, method, ...(body === undefined ? {} : { body }), connections: 2, durationMs: 300, workers: 1 });
    expect(r.requests.completed).toBeGreaterThan(20);
    expect(r.requests.errors).toBe(0);
    expect(open.requests).toBe(r.requests.total);
    expect(open.sockets).toBeLessThanOrEqual(2);
  });

  it('HEAD against a server that wrongly sends a body with its answer: no errors (a connection per HEAD)', async () => {
    // review51: kept alive, the stray body was parsed as the next response (HTTPParserError on
    // half the requests, and on the GETs mixed with them). undici's close after a HEAD avoids it.
    let requests = 0;
    let sockets = 0;
    const raw = netServer((sock) => {
      sockets++;
      let buf = '';
      sock.on('error', () => {});
      sock.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        for (let i = buf.indexOf('\r\n\r\n'); i >= 0; i = buf.indexOf('\r\n\r\n')) {
          buf = buf.slice(i + 4);
          requests++;
          sock.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello');
        }
      });
    });
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(raw.address() as AddressInfo).port}/`;
      const r = await loadtest({ url, method: 'HEAD', connections: 2, durationMs: 300, workers: 1, gracefulStopMs: 1000 });
      expect(r.requests.completed).toBeGreaterThan(5);
      expect(r.requests.errors).toBe(0);
      expect(requests).toBe(r.requests.total);
      expect(sockets).toBe(r.requests.total); // one connection per HEAD, as undici does it
    } finally {
      await new Promise<void>((resolve) => raw.close(() => resolve()));
    }
  });
});
