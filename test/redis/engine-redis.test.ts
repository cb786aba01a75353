import { describe, expect, it } from 'vitest';
import { createEngine } from '../../engine/index.js';
import { REDIS_URL, sharedRedisReachable, sparePort } from './servers.js';

const shared = await sharedRedisReachable('engine with redis');
const small = { workers: 1, memory: 16 << 20, channel: { ringBytes: 65536 } } as const;

describe('createEngine with redis', () => {
  it.runIf(shared)('connects, exposes the connector and its metrics, and closes it', async () => {
    const e = await createEngine({ ...small, redis: REDIS_URL });
    expect(e.redis?.available).toBe(true);
    expect(await e.redis!.command('PING')).toBe('PONG');
    const text = await e.metrics.text();
    expect(text).toMatch(/^hotpath_redis_up 1$/m);
    expect(text).toMatch(/^hotpath_redis_breaker_state 0$/m);
    await e.close();
    expect(e.redis!.available).toBe(false);
  });

  it('with no Redis answering, resolves after redisConnectTimeoutMs in fallback mode with a warning', async () => {
    const port = await sparePort(); // nothing listens there
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }): void => {
      if (w.code === 'HOTPATH_REDIS_FALLBACK') warnings.push(w.message);
    };
    process.on('warning', onWarning);
    try {
      const t0 = performance.now();
      const e = await createEngine({ ...small, redis: `redis://127.0.0.1:${port}`, redisConnectTimeoutMs: 300 });
      const took = performance.now() - t0;
      try {
        expect(took).toBeLessThan(5000);
        expect(e.redis?.available).toBe(false);
        await expect(e.redis!.command('GET', ['k'])).rejects.toMatchObject({ code: 'ERR_HOTPATH_REDIS_UNAVAILABLE' });
        await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
        expect(warnings.join()).toMatch(/not ready after 300 ms/);
        expect(warnings.join()).not.toMatch(/password/);
      } finally {
        await e.close();
      }
    } finally {
      process.off('warning', onWarning);
    }
  });

  it.each([
    ['http://localhost', /redis:\/\/ or rediss:\/\//],
    ['not a url', /unparsable/],
    [{ cluster: [] }, /non-empty array/],
    [{ cluster: [5] }, /entries must be URLs/],
  ])('refuses redis: %j', async (redis, message) => {
    await expect(createEngine({ ...small, redis: redis as never })).rejects.toThrow(message);
  });

  it("treats redis: '' as no Redis", async () => {
    const e = await createEngine({ ...small, redis: '' });
    expect(e.redis).toBeUndefined();
    await e.close();
  });
});
