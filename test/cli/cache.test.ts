/** `hotpath cache status|clear|warm` against a running service's admin API, and on Redis directly. */
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SERVE_DEFAULTS } from '../../engine/server/config.js';
import { startService, type Service } from '../../engine/server/server.js';
import { REDIS_URL, sharedRedisReachable } from '../redis/servers.js';
import { silentLog } from '../helpers.js';

const BIN = new URL('../../bin/hotpath.js', import.meta.url).pathname;
const reachable = await sharedRedisReachable('hotpath cache --redis');

/** Runs the CLI without blocking this process's event loop (the service answers from here). */
function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, 'cache', ...args], { env: { ...process.env, HOTPATH_ADMIN_TOKEN: '', ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => resolve({ code, out, err }));
  });
}

let service: Service | undefined;
afterEach(async () => {
  await service?.close();
  service = undefined;
});

describe('hotpath cache', () => {
  it('warm, status and clear through the admin API, with the token from the environment', async () => {
    service = await startService({ ...SERVE_DEFAULTS, port: 0, workers: 1, adminToken: 'tok' }, silentLog);
    const s = service;
    const file = join(mkdtempSync(join(tmpdir(), 'hotpath-cache-')), 'entries.json');
    writeFileSync(file, JSON.stringify(Array.from({ length: 1200 }, (_, i) => ({ key: `k${i}`, value: { i } }))));
    const env = { HOTPATH_ADMIN_TOKEN: 'tok' };
    const warm = await cli(['warm', '--url', s.url, '--file', file], env);
    expect(warm.code).toBe(0);
    expect(JSON.parse(warm.out)).toEqual({ warmed: 1200 });
    expect(s.engine.cache.getSync('k1199')).toEqual({ i: 1199 });
    const status = await cli(['status', '--url', s.url], env);
    expect(status.code).toBe(0);
    expect((JSON.parse(status.out) as { l1: { entries: number } }).l1.entries).toBeGreaterThan(0);
    expect((await cli(['clear', '--url', s.url], env)).code).toBe(0);
    expect(s.engine.cache.getSync('k1')).toBeUndefined();
    const wrong = await cli(['status', '--url', s.url, '--token', 'nope']);
    expect(wrong.code).toBe(1);
    expect(wrong.err).toMatch(/HTTP 401/);
    expect((await cli(['status', '--url', s.url])).code).toBe(2); // no token
    expect((await cli(['purge'])).code).toBe(2);
  });

  it('warm checks the whole file before sending anything: a bad entry is named by its index in the file, exit 2 (review54)', async () => {
    service = await startService({ ...SERVE_DEFAULTS, port: 0, workers: 1, adminToken: 'tok' }, silentLog);
    const dir = mkdtempSync(join(tmpdir(), 'hotpath-cache-'));
    const entries: unknown[] = Array.from({ length: 1200 }, (_, i) => ({ key: `w${i}`, value: `v${i}` }));
    entries[1100] = { key: '', value: 1 };
    writeFileSync(join(dir, 'bad.json'), JSON.stringify(entries));
    entries[1100] = { key: 'w1100', value: 1 };
    entries[3] = { key: 'w3' };
    entries[7] = { key: 'w7', value: 1, ttl: -5 };
    writeFileSync(join(dir, 'bad2.json'), JSON.stringify(entries));
    const env = { HOTPATH_ADMIN_TOKEN: 'tok' };
    const [badKey, badValue] = await Promise.all([
      cli(['warm', '--url', service.url, '--file', join(dir, 'bad.json')], env),
      cli(['warm', '--url', service.url, '--file', join(dir, 'bad2.json')], env),
    ]);
    expect(badKey.code).toBe(2);
    expect(badKey.err).toMatch(/entry 1100: "key" must be a non-empty string; nothing was sent/);
    expect(badValue.code).toBe(2);
    expect(badValue.err).toMatch(/entry 3: "value" is missing/); // the first bad one
    expect(service.engine.cache.getSync('w0')).toBeUndefined();
    expect(service.engine.cache.getSync('w1099')).toBeUndefined();
  });

  it('warm: a request the server still refuses says how many entries went in before it and which ones it held (review54)', async () => {
    // A body limit the second request passes over: the first 500 entries are written, then 413.
    service = await startService({ ...SERVE_DEFAULTS, port: 0, workers: 1, adminToken: 'tok', bodyLimit: 200 * 1024 }, silentLog);
    const file = join(mkdtempSync(join(tmpdir(), 'hotpath-cache-')), 'entries.json');
    const entries: unknown[] = Array.from({ length: 700 }, (_, i) => ({ key: `b${i}`, value: i }));
    entries[600] = { key: 'b600', value: 'x'.repeat(300 * 1024) };
    writeFileSync(file, JSON.stringify(entries));
    const r = await cli(['warm', '--url', service.url, '--file', file], { HOTPATH_ADMIN_TOKEN: 'tok' });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/entries 500-699 refused \(.*HTTP 413.*\); 500 of 700 entries \(0-499\) were warmed before it, none after/);
    expect(service.engine.cache.getSync('b499')).toBe(499);
    expect(service.engine.cache.getSync('b500')).toBeUndefined();
  });

  it('warm: an "entry I" in the server\'s refusal is given as the file index', async () => {
    // A server whose rules differ from the client's (another version): it refuses the second
    // request's entry 7, which is the file's entry 507.
    let calls = 0;
    const fake: Server = createServer((req, res) => {
      req.resume().on('end', () => {
        calls++;
        res.writeHead(calls === 1 ? 200 : 400, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(calls === 1 ? { warmed: 500 } : { error: 'entry 7: "key" is too long' }));
      });
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    try {
      const file = join(mkdtempSync(join(tmpdir(), 'hotpath-cache-')), 'entries.json');
      writeFileSync(file, JSON.stringify(Array.from({ length: 1200 }, (_, i) => ({ key: `f${i}`, value: i }))));
      const r = await cli(['warm', '--url', `http://127.0.0.1:${(fake.address() as AddressInfo).port}`, '--file', file], { HOTPATH_ADMIN_TOKEN: 'tok' });
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/entries 500-999 refused \(.*HTTP 400 .*entry 507 of .*entries\.json: \\"key\\" is too long.*\); 500 of 1200 entries \(0-499\) were warmed before it/);
      expect(calls).toBe(2);
    } finally {
      await new Promise((resolve) => fake.close(resolve));
    }
  });

  it('-h is --help', async () => {
    const r = await cli(['-h']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^usage: hotpath cache/);
  });

  it.runIf(reachable)('--redis: counts and deletes the shared tier\'s keys directly', async () => {
    // A database of its own: `clear` deletes every hotpath:c:* key, and other suites share db 0.
    const db = new URL(REDIS_URL);
    db.pathname = '/7';
    const redisUrl = db.href;
    service = await startService({ ...SERVE_DEFAULTS, port: 0, workers: 1, redisUrl }, silentLog);
    await service.engine.cache.set(`cli-test:${process.pid}`, { on: 'redis' });
    const before = await cli(['status', '--redis', redisUrl]);
    expect(before.code).toBe(0);
    expect((JSON.parse(before.out) as { keys: number }).keys).toBeGreaterThan(0);
    const cleared = await cli(['clear', '--redis', redisUrl]);
    expect(cleared.code).toBe(0);
    expect((JSON.parse(cleared.out) as { deleted: number }).deleted).toBeGreaterThan(0);
    expect(JSON.parse((await cli(['status', '--redis', redisUrl])).out)).toMatchObject({ keys: 0 });
    expect((await cli(['warm', '--redis', redisUrl, '--file', 'x'])).code).toBe(2);
  });
});
