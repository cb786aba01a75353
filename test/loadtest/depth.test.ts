/**
 * How many requests a connection has in flight: `pipelining` is the load tester's to keep. The
 * undici Clients are built with a pipelining of at least 2 (so that a completion's next request
 * is written at once, not a loop turn later; see worker.ts), so this checks at the server that a
 * connection never carries more than `pipelining` requests at a time — 1 without pipelining —
 * and that with pipelining it does carry several (the depth is really used).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadtest } from '../../engine/loadtest/index.js';

interface DepthServer {
  url: string;
  /** the most requests one connection had received and not yet answered */
  maxDepth: number;
  connections: number;
  close(): Promise<void>;
}

/** Answers after 2 ms; counts, per socket, requests received minus responses finished. */
async function depthServer(): Promise<DepthServer> {
  const depth = new WeakMap<Socket, number>();
  const state = { maxDepth: 0, connections: 0 };
  const server: Server = createServer((req, res) => {
    const s = req.socket;
    const d = (depth.get(s) ?? 0) + 1;
    depth.set(s, d);
    if (d > state.maxDepth) state.maxDepth = d;
    res.on('finish', () => depth.set(s, depth.get(s)! - 1));
    req.resume();
    req.on('end', () => setTimeout(() => res.end('ok'), 2));
  });
  server.on('connection', () => state.connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    get maxDepth() {
      return state.maxDepth;
    },
    get connections() {
      return state.connections;
    },
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

describe('requests in flight per connection', () => {
  let target: DepthServer;
  beforeAll(async () => {
    target = await depthServer();
  });
  afterAll(async () => {
    await target.close();
  });

  it('closed model without pipelining: one request at a time on each connection', async () => {
    const r = await loadtest({ url: target.url, connections: 4, durationMs: 600, workers: 1 });
    expect(r.requests.errors).toBe(0);
    expect(r.requests.completed).toBeGreaterThan(100);
    expect(target.connections).toBe(4);
    expect(target.maxDepth).toBe(1);
  });

  it('open model without pipelining: an arrival never doubles up on a busy connection', async () => {
    const before = target.connections;
    // 2 connections × ~2 ms ≈ 1000/s at most; 1500/s asked, so arrivals find both busy and drop.
    const r = await loadtest({ url: target.url, rate: 1500, connections: 2, durationMs: 600, workers: 1 });
    expect(r.requests.errors).toBe(0);
    expect(r.requests.dropped).toBeGreaterThan(0);
    expect(target.connections - before).toBe(2);
    expect(target.maxDepth).toBe(1);
  });

  it('closed model with pipelining 4: up to 4 on a connection, and more than 1 is used', async () => {
    const own = await depthServer();
    try {
      const r = await loadtest({ url: own.url, connections: 2, pipelining: 4, durationMs: 600, workers: 1 });
      expect(r.requests.errors).toBe(0);
      expect(own.maxDepth).toBeGreaterThan(1);
      expect(own.maxDepth).toBeLessThanOrEqual(4);
    } finally {
      await own.close();
    }
  });
});
