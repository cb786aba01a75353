import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, RedisConnector } from '../../engine/index.js';
import { canSpawnRedis, startRedis, type RedisProcess } from './servers.js';

const spawnable = canSpawnRedis('redis outage');

describe.runIf(spawnable)('Redis killed mid-run and restarted', () => {
  let server: RedisProcess;
  let r: RedisConnector;
  beforeAll(async () => {
    server = await startRedis();
    // The connector's defaults (a 2 s probe delay): the recovery measured is the one users get.
    r = await RedisConnector.connect(server.url, { timeoutMs: 50 });
  });
  afterAll(async () => {
    await r.close();
    await server.stop();
  });

  it('fails fast while down, never hangs, and is back within 5 s with scripts working', async () => {
    const script = r.defineScript('test-outage', "return redis.call('INCR', KEYS[1])");
    expect(await script.run(['{o}:n'], [])).toBe(1);
    const states: string[] = [];
    r.on('breaker', (to: string) => states.push(to));

    // Calls in flight when the server dies.
    const inflight = Array.from({ length: 200 }, (_, i) => (i % 2 ? r.command('INCR', ['{o}:n']) : script.run(['{o}:n'], [])).then(
      () => 'ok',
      (err: { code?: string }) => err.code,
    ));
    await server.kill();
    const outcomes = await Promise.all(inflight); // settles: nothing hangs
    for (const o of outcomes) expect(['ok', ErrorCodes.REDIS_UNAVAILABLE]).toContain(o);

    // Drive calls until the breaker opens, then every call fails at once.
    for (let i = 0; i < 50 && r.breaker.state !== 'open'; i++) await r.command('PING').catch(() => undefined);
    expect(r.breaker.state).toBe('open');
    const t0 = performance.now();
    for (let i = 0; i < 1000; i++) {
      await expect(r.command('GET', ['{o}:n'])).rejects.toMatchObject({ code: ErrorCodes.REDIS_UNAVAILABLE });
    }
    const perCall = (performance.now() - t0) / 1000;
    expect(perCall).toBeLessThan(5); // ms: well under the 50 ms timeout, as it never reaches Redis
    expect(r.available).toBe(false);

    // Back up on the same port: the connector reconnects and the breaker closes by itself.
    const restarted = performance.now();
    await server.restart();
    while (!r.available && performance.now() - restarted < 10_000) await new Promise((res) => setTimeout(res, 20));
    const recoveredIn = performance.now() - restarted;
    expect(r.available).toBe(true);
    expect(recoveredIn).toBeLessThan(5000);
    // The new server has no scripts cached: EVALSHA → NOSCRIPT → EVAL, transparently (or the
    // script was reloaded on ready). Either way the script runs.
    expect(await script.run(['{o}:n'], [])).toBe(1);
    expect(states).toContain('open');
    expect(states).toContain('half-open');
    expect(states.at(-1)).toBe('closed');
  }, 30_000);
});
