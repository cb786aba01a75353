/**
 * The pool with real resources: TCP connections to an echo server on 127.0.0.1. Connections are
 * reused (the server sees at most `max`), one the server kills is caught by `validate` and
 * replaced, a refused server opens the create breaker (PoolCreateError, cause ECONNREFUSED), and
 * drain() closes every connection.
 */
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../engine/errors.js';
import { createPool, type Pool } from '../../engine/pool/pool.js';
import { rejection } from '../helpers.js';

/** An echo server that keeps its server-side sockets, so a test can kill one. */
async function echoServer(): Promise<{ server: net.Server; port: number; sockets: Set<net.Socket>; accepted: () => number }> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((s) => {
    accepted++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as net.AddressInfo).port, sockets, accepted: () => accepted };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.off('error', reject);
      s.on('error', () => undefined); // a reset later is seen by validate (destroyed), not thrown
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Sends `text` and reads the echo back. */
async function roundTrip(s: net.Socket, text: string): Promise<string> {
  s.write(text);
  let got = '';
  while (got.length < text.length) {
    const [chunk] = (await once(s, 'data')) as [Buffer];
    got += chunk.toString();
  }
  return got;
}

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function socketPool(port: number, extra: Partial<Parameters<typeof createPool<net.Socket>>[0]> = {}): Pool<net.Socket> {
  const p = createPool<net.Socket>({
    create: () => connect(port),
    destroy: (s) => {
      s.destroy();
    },
    validate: (s) => !s.destroyed && s.readyState === 'open',
    max: 2,
    ...extra,
  });
  cleanup.push(() => p.drain({ timeoutMs: 1000 }));
  return p;
}

describe('a pool of TCP connections', () => {
  it('reuses at most max connections for many concurrent users', async () => {
    const srv = await echoServer();
    cleanup.push(() => new Promise((r) => srv.server.close(r)));
    const p = socketPool(srv.port);
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => p.use((s) => roundTrip(s, `hello ${i};`))));
    expect(answers).toEqual(Array.from({ length: 20 }, (_, i) => `hello ${i};`));
    expect(srv.accepted()).toBe(2);
    expect(p.stats()).toMatchObject({ created: 2, idle: 2, borrowed: 0 });
  });

  it('replaces a connection the server killed (validation on borrow)', async () => {
    const srv = await echoServer();
    cleanup.push(() => new Promise((r) => srv.server.close(r)));
    const p = socketPool(srv.port, { max: 1 });
    const first = await p.acquire();
    expect(await roundTrip(first, 'a')).toBe('a');
    p.release(first);
    const closed = once(first, 'close');
    for (const s of srv.sockets) s.destroy(); // the server drops it while it is idle
    await closed;
    const failed = once(p, 'validationFailed');
    const second = await p.acquire();
    await failed;
    expect(second).not.toBe(first);
    expect(await roundTrip(second, 'b')).toBe('b');
    p.release(second);
    expect(srv.accepted()).toBe(2);
    expect(p.stats()).toMatchObject({ validationFailures: 1, created: 2, destroyed: 1 });
  });

  it('a refused server opens the create breaker: callers fail fast with the ECONNREFUSED cause', async () => {
    const srv = await echoServer();
    const port = srv.port;
    await new Promise((r) => srv.server.close(r)); // nothing listens on this port now
    const p = socketPool(port, { breaker: { consecutiveFailures: 3, resetMs: 60_000 }, createRetry: { delayMs: 1, maxDelayMs: 4, jitter: false } });
    const err = await rejection(p.acquire());
    expect(err.code).toBe(ErrorCodes.POOL_CREATE_FAILED);
    expect((err as unknown as { cause: { code: string } }).cause.code).toBe('ECONNREFUSED');
    expect(p.stats()).toMatchObject({ createFailures: 3, breaker: 'open' });
    const fast = await rejection(p.acquire());
    expect(fast.code).toBe(ErrorCodes.POOL_CREATE_FAILED);
    expect(p.stats().createFailures).toBe(3); // no connect attempted while open
  });

  it('drain() closes every connection, including one returned late', async () => {
    const srv = await echoServer();
    cleanup.push(() => new Promise((r) => srv.server.close(r)));
    const p = socketPool(srv.port);
    const [a, b] = await Promise.all([p.acquire(), p.acquire()]);
    p.release(a!);
    const drained = p.drain();
    expect(a!.destroyed).toBe(true);
    expect(b!.destroyed).toBe(false);
    p.release(b!);
    await drained;
    expect(b!.destroyed).toBe(true);
    while (srv.sockets.size > 0) await once([...srv.sockets][0]!, 'close');
    expect(p.stats()).toMatchObject({ size: 0, created: 2, destroyed: 2 });
  });
});
