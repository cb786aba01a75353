/** `hotpath cache status|clear|warm` against a running service's admin API, and on Redis directly. */
import { spawn } from 'node:child_process';
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
