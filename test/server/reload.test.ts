/**
 * Configuration changes while the service runs: `reconfigure()` applies what it can live (limits,
 * body limit, admin token …) and lists what needs a restart; `hotpath serve --config FILE` watches
 * the file, applies a valid change and rejects an invalid one, keeping the running configuration.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { SERVE_DEFAULTS } from '../../engine/server/config.js';
import { startService, type Service } from '../../engine/server/server.js';
import { silentLog } from '../helpers.js';

const BIN = new URL('../../bin/hotpath.js', import.meta.url).pathname;

let service: Service | undefined;
afterEach(async () => {
  await service?.close();
  service = undefined;
});

const post = async (url: string, body: string): Promise<number> => {
  const res = await fetch(`${url}/process`, { method: 'POST', body });
  await res.arrayBuffer();
  return res.status;
};

describe('live configuration', () => {
  it('reconfigure(): limits, body limit and admin token change at once; what needs a restart is listed, not applied', async () => {
    service = await startService({ ...SERVE_DEFAULTS, port: 0, workers: 1, limitPerSecond: 1, limitBurst: 2, bodyLimit: 1000 }, silentLog);
    const s = service;
    expect([await post(s.url, 'a'), await post(s.url, 'b'), await post(s.url, 'c')]).toEqual([200, 200, 429]);
    const r = s.reconfigure({ ...s.config, limitBurst: 4, bodyLimit: 10, adminToken: 'new', port: 1 });
    expect(r.applied.sort()).toEqual(['adminToken', 'bodyLimit', 'limitBurst']);
    expect(r.needRestart.sort()).toEqual(['port']);
    expect(s.config.port).toBe(0); // unchanged (0: the port the test asked for)
    // A new limit is a new limiter: its buckets start full (burst 4).
    expect([await post(s.url, 'd'), await post(s.url, 'e'), await post(s.url, 'f'), await post(s.url, 'g'), await post(s.url, 'h')]).toEqual([200, 200, 200, 200, 429]);
    s.reconfigure({ ...s.config, limitBurst: 1000, limitPerSecond: 1000 });
    expect(await post(s.url, 'x'.repeat(100))).toBe(413); // the body limit of 10
    expect((await fetch(`${s.url}/admin/cache`, { headers: { Authorization: 'Bearer new' } })).status).toBe(200);
  });

  it('the L1 size changes live, keeping what fits: the cached /process answers stay hits', async () => {
    service = await startService({ ...SERVE_DEFAULTS, port: 0, workers: 1, cacheL1Entries: 100, limitPerSecond: 1e6, limitBurst: 1e6 }, silentLog);
    const s = service;
    const xcache = async (body: string): Promise<string | null> => {
      const res = await fetch(`${s.url}/process`, { method: 'POST', body });
      await res.arrayBuffer();
      return res.headers.get('x-cache');
    };
    for (let i = 0; i < 50; i++) expect(await xcache(`body ${i}`)).toBe('MISS');
    expect(s.reconfigure({ ...s.config, cacheL1Entries: 2000 }).applied).toEqual(['cacheL1Entries']);
    expect(s.engine.cache.stats().l1!.entries).toBe(50); // nothing lost growing
    expect(await xcache('body 7')).toBe('HIT');
    s.reconfigure({ ...s.config, cacheL1Entries: 10 });
    expect(s.engine.cache.stats().l1!.entries).toBeLessThanOrEqual(10); // evicted down at once
  });

  it('serve --config FILE: a valid change is applied live, an invalid one is rejected and the running configuration stays', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'hotpath-reload-')), 'hotpath.json');
    writeFileSync(file, JSON.stringify({ bodyLimit: 100000 }));
    const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--workers', '1', '--config', file], { stdio: ['ignore', 'pipe', 'inherit'] });
    const waiting: Array<{ msg: string; resolve: (e: Record<string, unknown>) => void }> = [];
    const seen: Array<Record<string, unknown>> = [];
    createInterface({ input: child.stdout! }).on('line', (l) => {
      const e = JSON.parse(l) as Record<string, unknown>;
      const w = waiting.findIndex((x) => String(e.msg).startsWith(x.msg));
      if (w >= 0) waiting.splice(w, 1)[0]!.resolve(e);
      else seen.push(e);
    });
    const next = (msg: string): Promise<Record<string, unknown>> => {
      const i = seen.findIndex((e) => String(e.msg).startsWith(msg));
      if (i >= 0) return Promise.resolve(seen.splice(i, 1)[0]!);
      return new Promise((resolve) => waiting.push({ msg, resolve }));
    };
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    try {
      const url = (await next('listening')).url as string;
      expect(await post(url, 'x'.repeat(1000))).toBe(200);
      writeFileSync(file, JSON.stringify({ bodyLimit: 500, port: 1 }));
      expect((await next('config reloaded')).applied).toEqual(['bodyLimit']); // not port: --port wins over the file
      expect(await post(url, 'x'.repeat(1000))).toBe(413);
      writeFileSync(file, '{ "bodyLimit": ');
      expect(String((await next('config rejected')).error)).toMatch(/not valid JSON/);
      writeFileSync(file, JSON.stringify({ bodyLimit: -3 }));
      expect(String((await next('config rejected')).error)).toMatch(/bodyLimit must be an integer between 0/);
      expect(await post(url, 'x'.repeat(1000))).toBe(413); // still 500
      expect(await post(url, 'small')).toBe(200);
      // A change that needs a restart is said once, not again at every later reload (review29).
      writeFileSync(file, JSON.stringify({ bodyLimit: 500, http2: true }));
      expect((await next('config changes that need a restart')).needRestart).toEqual(['http2']);
      writeFileSync(file, JSON.stringify({ bodyLimit: 600, http2: true }));
      expect((await next('config reloaded')).applied).toEqual(['bodyLimit']);
      writeFileSync(file, JSON.stringify({ bodyLimit: 700, http2: true }));
      expect((await next('config reloaded')).applied).toEqual(['bodyLimit']);
      expect(seen.filter((e) => String(e.msg).startsWith('config changes that need a restart'))).toEqual([]);
    } finally {
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
  });

  it('serve --config FILE: a change made while the service is starting is applied once it runs (review49)', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'hotpath-reload-')), 'hotpath.json');
    writeFileSync(file, JSON.stringify({ limitPerSecond: 5 }));
    // A "Redis" that holds the start-up: its first connection says the file has been read (the
    // engine starts after the configuration), and the file is changed then; the connection is
    // then dropped (the service starts with Redis down, after its connect attempts).
    const sockets = new Set<Socket>();
    const redis = createNetServer((sock) => {
      sockets.add(sock);
      sock.on('error', () => undefined);
      if (sockets.size === 1) {
        writeFileSync(file, JSON.stringify({ limitPerSecond: 7 }));
        redis.close();
        for (const x of sockets) x.destroy();
      } else {
        sock.destroy();
      }
    });
    await new Promise<void>((r) => redis.listen(0, '127.0.0.1', r));
    const redisUrl = `redis://127.0.0.1:${(redis.address() as AddressInfo).port}`;
    const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--workers', '1', '--config', file], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, HOTPATH_REDIS_URL: redisUrl } });
    const logs: Array<Record<string, unknown>> = [];
    let onListening!: (url: string) => void;
    const listening = new Promise<string>((r) => (onListening = r));
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (l) => {
      const e = JSON.parse(l) as Record<string, unknown>;
      logs.push(e);
      if (String(e.msg).startsWith('listening')) onListening(String(e.url));
    });
    // Exited, and every line it wrote read.
    const exited = Promise.all([new Promise<number | null>((r) => child.once('exit', r)), new Promise((r) => lines.once('close', r))]);
    try {
      const url = await listening;
      expect(sockets.size).toBeGreaterThan(0); // the change was made during the start-up
      // The limit in force is the file's new one (the re-check runs as the service starts, in the
      // same turn as its "listening" line: answered after it).
      const res = await fetch(`${url}/process`, { method: 'POST', body: 'x' });
      await res.arrayBuffer();
      expect(res.headers.get('ratelimit-policy')).toBe('"process";q=7;w=1');
    } finally {
      child.kill('SIGTERM');
      await exited;
      redis.close();
    }
    const msgs = logs.map((e) => String(e.msg));
    const reloaded = logs.find((e) => e.msg === 'config reloaded');
    expect(reloaded?.applied).toEqual(['limitPerSecond', 'limitBurst']); // (the burst follows the limit)
    expect(msgs.indexOf('config reloaded')).toBeGreaterThan(msgs.findIndex((m) => m.startsWith('listening')));
    expect(msgs.indexOf('config reloaded')).toBeLessThan(msgs.indexOf('shutting down'));
  });
});
