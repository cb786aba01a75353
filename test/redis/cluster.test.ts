import calculateSlot from 'cluster-key-slot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, RedisConnector } from '../../engine/index.js';
import { canSpawnRedis, startCluster } from './servers.js';

const spawnable = canSpawnRedis('redis cluster');

describe.runIf(spawnable)('a 3-master Redis Cluster', () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let r: RedisConnector;
  beforeAll(async () => {
    cluster = await startCluster();
    r = await RedisConnector.connect({ cluster: cluster.urls }, { timeoutMs: 1000, connectTimeoutMs: 10_000 });
    expect(r.isCluster).toBe(true);
    expect(r.available).toBe(true);
  }, 60_000);
  afterAll(async () => {
    await r?.close();
    await cluster?.stop();
  });

  // Tags whose slots fall on different masters (slots 0–5460, 5461–10922, 10923–16383).
  const tags = ((): string[] => {
    const byNode = new Map<number, string>();
    for (let i = 0; byNode.size < 3; i++) byNode.set(Math.floor(calculateSlot(`t${i}`) / 5462), `t${i}`);
    return [...byNode.values()];
  })();

  it('runs scripts on hash-tagged keys on every master', async () => {
    const s = r.defineScript('test-cluster', "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[1]); return redis.call('GET', KEYS[2])");
    for (const t of tags) expect(await s.run([`hotpath:{${t}}:a`, `hotpath:{${t}}:b`], [t])).toBe(t);
  });

  it('splits MGET by slot and answers in key order', async () => {
    const keys = tags.flatMap((t) => [`hotpath:{${t}}:a`, `hotpath:{${t}}:missing`]);
    expect(await r.mget(keys)).toEqual(tags.flatMap((t) => [t, null]));
  });

  it('publishes and subscribes', async () => {
    let received: (m: string) => void = () => {};
    const got = new Promise<string>((resolve) => (received = resolve));
    const unsubscribe = await r.subscribe('hotpath:test:cluster-chan', (m) => received(m));
    await r.publish('hotpath:test:cluster-chan', 'across');
    expect(await got).toBe('across');
    await unsubscribe();
  });

  it('createEngine accepts { cluster: [urls] }', async () => {
    const e = await createEngine({ workers: 1, memory: 16 << 20, channel: { ringBytes: 65536 }, redis: { cluster: cluster.urls }, redisConnectTimeoutMs: 10_000, redisTimeoutMs: 1000 });
    try {
      expect(e.redis?.available).toBe(true);
      expect(await e.redis!.command('GET', [`hotpath:{${tags[0]}}:a`])).toBe(tags[0]);
    } finally {
      await e.close();
    }
  });

  it('the distributed limiter runs on every master: its keys spread over the slots', async () => {
    const e = await createEngine({ workers: 1, memory: 16 << 20, channel: { ringBytes: 65536 }, redis: { cluster: cluster.urls }, redisConnectTimeoutMs: 10_000, redisTimeoutMs: 1000 });
    try {
      for (const algorithm of ['gcra', 'sliding-window'] as const) {
        const l = e.limiter(`cl-${algorithm}`, { algorithm, limit: 2, window: 60_000 });
        for (const tag of tags) {
          expect((await l.allow(tag)).allowed).toBe(true);
          expect((await l.allow(tag)).allowed).toBe(true);
          expect((await l.allow(tag)).allowed).toBe(false);
          expect(l.fallback).toBe(false);
        }
        // one key per master: each lives in its own slot range
        const slots = tags.map((t) => Math.floor(calculateSlot(`hotpath:l:cl-${algorithm}:{${t}}`) / 5462));
        expect(new Set(slots).size).toBe(3);
        for (const t of tags) expect(await e.redis!.command('EXISTS', [`hotpath:l:cl-${algorithm}:{${t}}`])).toBe(1);
        // Decisions asked in one tick for keys on every master: one script call per slot, each
        // holding its key three times (decided in order, on its own master).
        const burst = e.limiter(`cl-burst-${algorithm}`, { algorithm, limit: 2, window: 60_000 });
        const got = await Promise.all(tags.flatMap((t) => [burst.allow(t), burst.allow(t), burst.allow(t)]));
        expect(got.map((d) => d.allowed)).toEqual(tags.flatMap(() => [true, true, false]));
        expect(burst.fallback).toBe(false);
      }
    } finally {
      await e.close();
    }
  });
});
