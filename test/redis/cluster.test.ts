import { spawnSync } from 'node:child_process';
import calculateSlot from 'cluster-key-slot';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createEngine, ErrorCodes, RedisConnector } from '../../engine/index.js';
import { canSpawnRedis, holdingProxy, startCluster, type RedisProcess } from './servers.js';

const spawnable = canSpawnRedis('redis cluster');

/** SIGSTOPs `node` until the connector has said 'down', then resumes it and waits for its 'up'. */
async function stallUntilDown(node: RedisProcess, events: string[]): Promise<void> {
  node.pause();
  try {
    await vi.waitFor(() => expect(events).toEqual(['down']), { timeout: 5000 });
  } finally {
    node.resume();
  }
  await vi.waitFor(() => expect(events).toEqual(['down', 'up']), { timeout: 5000 });
}

/** PUBSUB NUMSUB of `channel` on each node, in node order. */
const numsub = async (admins: Redis[], channel: string): Promise<number[]> =>
  Promise.all(admins.map(async (a) => ((await a.call('PUBSUB', 'NUMSUB', channel)) as [string, number])[1]));

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

  it('keys of several slots in one call are the caller\'s mistake: a TypeError or a command error, never a tripped breaker (review37)', async () => {
    const s = r.defineScript('test-cross', "return redis.call('GET', KEYS[1])");
    const [a, b] = [`hotpath:{${tags[0]}}:x`, `hotpath:{${tags[1]}}:y`];
    await expect(s.run([a, b], [])).rejects.toThrow(/share a hash slot/);
    // With a keyPrefix that is itself a hash tag, every key lands in its slot: allowed.
    const tagged = await RedisConnector.connect({ cluster: cluster.urls, options: { keyPrefix: '{pfx}:' } }, { timeoutMs: 1000, connectTimeoutMs: 10_000 });
    try {
      expect(await tagged.defineScript('test-cross', "return redis.call('GET', KEYS[1])").run(['x', 'y'], [])).toBeNull();
    } finally {
      await tagged.close();
    }
    // A command ioredis itself refuses to send (its keys span slots): not an outage.
    for (let i = 0; i < 10; i++) {
      await expect(r.command('DEL', [a, b])).rejects.toMatchObject({ code: ErrorCodes.REDIS_ERROR });
    }
    expect(r.breaker.state).toBe('closed');
    expect(await r.command('PING')).toBe('PONG');
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

  it('a node\'s socket that errors twice is no uncaught exception (guarded.ts); the node reconnects', async () => {
    const c = await RedisConnector.connect({ cluster: cluster.urls }, { timeoutMs: 1000, connectTimeoutMs: 10_000, reconnect: { minMs: 10, maxMs: 50 } });
    try {
      const nodes = (c.client as Cluster).nodes('master');
      expect(nodes).toHaveLength(3);
      for (const node of nodes) {
        const first = new Promise((resolve) => node.stream.once('error', resolve));
        node.stream.destroy(new Error('first (test)'));
        await first;
        expect(() => node.stream.emit('error', new Error('tlsv1 alert decode error (test)'))).not.toThrow();
      }
      const s = c.defineScript('test-cluster-guard', "return redis.call('SET', KEYS[1], ARGV[1])");
      await vi.waitFor(async () => {
        for (const t of tags) expect(await s.run([`hotpath:{${t}}:guard`], [t])).toBe('OK');
      }, { timeout: 5000 });
    } finally {
      await c.close();
    }
  });

  it('a dropped subscriber connection is announced (down, then up), resubscribed on the next node, and hears again', async () => {
    // ioredis's own Cluster subscriber moved to another node silently: no 'down', so a cache
    // never learned it had missed invalidations (review23). Ours is a plain connection per node.
    const c = await RedisConnector.connect({ cluster: cluster.urls }, { timeoutMs: 1000, connectTimeoutMs: 10_000, reconnect: { minMs: 10, maxMs: 50 } });
    const admins = cluster.nodes.map((n) => new Redis(n.url));
    const events: string[] = [];
    c.on('subscriber', (s: string) => events.push(s));
    try {
      const heard: string[] = [];
      await c.subscribe('cl-drop', (m) => heard.push(m));
      const before = await numsub(admins, 'cl-drop');
      expect(before.reduce((a, b) => a + b)).toBe(1); // one subscriber connection, on one node
      await Promise.all(admins.map((a) => a.call('CLIENT', 'KILL', 'TYPE', 'pubsub')));
      await vi.waitFor(() => expect(events).toEqual(['down', 'up']), { timeout: 5000 });
      const after = await numsub(admins, 'cl-drop');
      expect(after.reduce((a, b) => a + b)).toBe(1);
      expect(after.indexOf(1)).not.toBe(before.indexOf(1)); // each reconnect goes to the next node
      // Published on a node the subscriber is not on: classic PUBLISH reaches every node.
      await admins[(after.indexOf(1) + 1) % 3]!.publish('cl-drop', 'after');
      await vi.waitFor(() => expect(heard).toEqual(['after']));
    } finally {
      for (const a of admins) a.disconnect();
      await c.close();
    }
  });

  it('a subscribe made during the handshake of the subscriber\'s reconnect is live once it is ready', async () => {
    // Every node behind a proxy that can hold Redis's answers (natMap rewrites the addresses the
    // Cluster announces), so the subscriber's new connection stays in its handshake. ioredis's
    // Cluster subscriber wrote the SUBSCRIBE at once; its node connection then failed its ready
    // check and the channel was never subscribed again, though subscribe() had resolved (review23).
    const proxies = await Promise.all(cluster.nodes.map((n) => holdingProxy(n.port)));
    const natMap = Object.fromEntries(cluster.nodes.map((n, i) => [`127.0.0.1:${n.port}`, { host: '127.0.0.1', port: proxies[i]!.port }]));
    const c = await RedisConnector.connect({ cluster: proxies.map((p) => `redis://127.0.0.1:${p.port}`), options: { natMap } }, { timeoutMs: 1000, connectTimeoutMs: 10_000, reconnect: { minMs: 10, maxMs: 50 } });
    const admins = cluster.nodes.map((n) => new Redis(n.url));
    const events: string[] = [];
    c.on('subscriber', (s: string) => events.push(s));
    try {
      expect(c.available).toBe(true);
      const heard = new Set<string>();
      await c.subscribe('cl-hs-a', (m) => heard.add(`a:${m}`));
      for (const p of proxies) p.holdNew();
      const handshake = Promise.race(proxies.map((p) => p.nextHeldWrite()));
      await Promise.all(admins.map((a) => a.call('CLIENT', 'KILL', 'TYPE', 'pubsub')));
      await handshake; // the subscriber's new connection is in its handshake
      const b = c.subscribe('cl-hs-b', (m) => heard.add(`b:${m}`));
      for (const p of proxies) p.release();
      await b;
      await vi.waitFor(() => expect(events).toEqual(['down', 'up']), { timeout: 5000 });
      expect(await numsub(admins, 'cl-hs-a').then((n) => n.reduce((x, y) => x + y))).toBe(1);
      expect(await numsub(admins, 'cl-hs-b').then((n) => n.reduce((x, y) => x + y))).toBe(1);
      await admins[0]!.publish('cl-hs-a', '1');
      await admins[0]!.publish('cl-hs-b', '1');
      await vi.waitFor(() => expect(heard).toEqual(new Set(['a:1', 'b:1'])));
    } finally {
      for (const a of admins) a.disconnect();
      await c.close();
      for (const p of proxies) await p.close();
    }
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

  it('with a keyPrefix that is a hash tag, the limiter sends a tick\'s decisions as one script call (review40)', async () => {
    const e = await createEngine({ workers: 1, memory: 16 << 20, channel: { ringBytes: 65536 }, redis: { cluster: cluster.urls, options: { keyPrefix: '{lim}:' } }, redisConnectTimeoutMs: 10_000, redisTimeoutMs: 1000 });
    try {
      const l = e.limiter('cl-prefixed', { algorithm: 'gcra', limit: 5, window: 60_000 });
      expect((await l.allow('warm')).allowed).toBe(true);
      const before = e.redis!.stats().commands;
      const got = await Promise.all(Array.from({ length: 64 }, (_, i) => l.allow(`k${i}`)));
      expect(got.every((d) => d.allowed)).toBe(true);
      expect(l.fallback).toBe(false);
      expect(e.redis!.stats().commands - before).toBe(1); // every key in {lim}'s slot: one batch
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

  it('a stall of the subscriber\'s node is a down (messages relayed meanwhile may be lost), and up once it answers, on the same connection', async () => {
    // The other nodes drop their bus links to a node stalled for half the cluster-node-timeout:
    // PUBLISHes relayed meanwhile are lost, the TCP connection survives (review24). The connection
    // is kept (what the node queued for it still arrives); listeners are told to distrust.
    const c = await RedisConnector.connect({ cluster: cluster.urls }, { timeoutMs: 200, connectTimeoutMs: 10_000, subscriberCheckMs: 200, reconnect: { minMs: 10, maxMs: 50 } });
    const admins = cluster.nodes.map((n) => new Redis(n.url));
    const events: string[] = [];
    c.on('subscriber', (s: string) => events.push(s));
    try {
      const heard: string[] = [];
      await c.subscribe('cl-stall', (m) => heard.push(m));
      const on = (await numsub(admins, 'cl-stall')).indexOf(1);
      const reconnects = c.stats().reconnects;
      await stallUntilDown(cluster.nodes[on]!, events);
      expect(c.stats().reconnects).toBe(reconnects); // the same connection, on the same node
      expect((await numsub(admins, 'cl-stall'))[on]).toBe(1);
      await admins[(on + 1) % 3]!.publish('cl-stall', 'after');
      await vi.waitFor(() => expect(heard).toContain('after'));
    } finally {
      for (const a of admins) a.disconnect();
      await c.close();
    }
  });

  it('a PING answered -BUSY (a long script) still counts: a later stall gives down and then up', async () => {
    // review26: a PING answered with an error was taken for a lost connection; no PING was sent on
    // it again, and the next stall's 'down' never got its 'up' (the cache stayed deaf).
    const c = await RedisConnector.connect({ cluster: cluster.urls }, { timeoutMs: 200, connectTimeoutMs: 10_000, subscriberCheckMs: 100, reconnect: { minMs: 10, maxMs: 50 } });
    const admins = cluster.nodes.map((n) => new Redis(n.url));
    const events: string[] = [];
    c.on('subscriber', (s: string) => events.push(s));
    try {
      await c.subscribe('cl-busy', () => {});
      const on = (await numsub(admins, 'cl-busy')).indexOf(1);
      const node = admins[on]!;
      await node.config('SET', 'busy-reply-threshold', '50');
      const pingsBefore = Number(/cmdstat_ping:calls=(\d+)/.exec(String(await node.info('commandstats')))?.[1] ?? 0);
      // 700 ms of script: every PING meanwhile is answered -BUSY.
      await node.eval("local s = redis.call('TIME'); local t = s; repeat t = redis.call('TIME') until (t[1] - s[1]) * 1000000 + t[2] - s[2] > 700000; return 1", 0);
      const rejected = Number(/cmdstat_ping:.*rejected_calls=(\d+)/.exec(String(await node.info('commandstats')))?.[1] ?? 0);
      expect(rejected).toBeGreaterThan(0);
      // PINGs go on after the -BUSY answers.
      await vi.waitFor(async () => expect(Number(/cmdstat_ping:calls=(\d+)/.exec(String(await node.info('commandstats')))?.[1] ?? 0)).toBeGreaterThan(pingsBefore + 2));
      expect(events).toEqual([]); // a busy node answers: no stall
      await stallUntilDown(cluster.nodes[on]!, events);
    } finally {
      for (const a of admins) {
        await a.config('SET', 'busy-reply-threshold', '5000').catch(() => undefined);
        a.disconnect();
      }
      await c.close();
    }
  });

  it('a stall shorter than half the cluster-node-timeout loses nothing and gives no down', async () => {
    // The other nodes queue what they relay to a stalled node until half their node timeout
    // (2000 ms here) has passed, then drop the link: before that nothing is lost, and a 'down'
    // would clear every cache listening for nothing. lossMs = 2000 / 2 - 250 ms since the write of
    // the last PING the node answered.
    const c = await RedisConnector.connect({ cluster: cluster.urls }, { timeoutMs: 100, connectTimeoutMs: 10_000, subscriberCheckMs: 100, reconnect: { minMs: 10, maxMs: 50 } });
    const admins = cluster.nodes.map((n) => new Redis(n.url));
    const events: string[] = [];
    const errors: string[] = [];
    c.on('subscriber', (s: string) => events.push(s));
    c.on('redisError', (e: Error) => errors.push(e.message));
    try {
      const heard: string[] = [];
      await c.subscribe('cl-short', (m) => heard.push(m));
      await vi.waitFor(() => expect(c.stats().subscriberLossMs).toBe(750));
      const on = (await numsub(admins, 'cl-short')).indexOf(1);
      const node = admins[on]!;
      const other = admins[(on + 1) % 3]!;
      const reconnects = c.stats().reconnects;
      const pings = async (): Promise<number> => Number(/cmdstat_ping:calls=(\d+)/.exec(String(await node.info('commandstats')))?.[1] ?? 0);
      // 300 ms of stall (three rounds of silence: a 'down' before this change), a message relayed
      // in the middle of it.
      cluster.nodes[on]!.pause();
      try {
        await other.publish('cl-short', 'during');
        await new Promise((r) => setTimeout(r, 300)); // the stall's length: the fault injected
      } finally {
        cluster.nodes[on]!.resume();
      }
      await vi.waitFor(() => expect(heard).toEqual(['during']));
      // Rounds go on after it (nonces published across the stall are not judged): no drop either.
      const after = await pings();
      await vi.waitFor(async () => expect(await pings()).toBeGreaterThan(after + 3));
      await other.publish('cl-short', 'after');
      await vi.waitFor(() => expect(heard).toEqual(['during', 'after']));
      expect(events).toEqual([]);
      expect(c.stats().reconnects).toBe(reconnects);
      expect(errors).toEqual([]);
      // A stall past lossMs is still a down, then up.
      await stallUntilDown(cluster.nodes[on]!, events);
    } finally {
      for (const a of admins) a.disconnect();
      await c.close();
    }
  });

  it('a stall past half the node timeout that began while the event loop was blocked is still a down (review27)', async () => {
    // The silence is counted from a PING written after the block; how long the node has not been
    // known to run is counted from the last PING it answered, before the stall.
    const c = await RedisConnector.connect({ cluster: cluster.urls }, { timeoutMs: 100, connectTimeoutMs: 10_000, subscriberCheckMs: 100, reconnect: { minMs: 10, maxMs: 50 } });
    const admins = cluster.nodes.map((n) => new Redis(n.url));
    const events: string[] = [];
    c.on('subscriber', (s: string) => events.push(s));
    try {
      await c.subscribe('cl-blocked', () => {});
      await vi.waitFor(() => expect(c.stats().subscriberLossMs).toBe(750));
      const node = cluster.nodes[(await numsub(admins, 'cl-blocked')).indexOf(1)]!;
      node.pause();
      const resume = setTimeout(() => node.resume(), 1500); // the fault: 1.5 s of stall
      try {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000); // this process blocked for its first second
        await vi.waitFor(() => expect(events).toEqual(['down', 'up']), { timeout: 5000 });
      } finally {
        clearTimeout(resume);
        node.resume();
      }
    } finally {
      for (const a of admins) a.disconnect();
      await c.close();
    }
  });

  it('where CONFIG is refused, every stall of a round is a down, and the connector says why', async () => {
    const admins = cluster.nodes.map((n) => new Redis(n.url));
    try {
      for (const a of admins) await a.call('ACL', 'SETUSER', 'noconfig', 'on', '>pw', '~*', '&*', '+@all', '-config');
      const urls = cluster.nodes.map((n) => `redis://noconfig:pw@127.0.0.1:${n.port}`);
      const c = await RedisConnector.connect({ cluster: urls }, { timeoutMs: 100, connectTimeoutMs: 10_000, subscriberCheckMs: 100, reconnect: { minMs: 10, maxMs: 50 } });
      const errors: string[] = [];
      c.on('redisError', (e: Error) => errors.push(e.message));
      try {
        await c.subscribe('cl-noconfig', () => {});
        await vi.waitFor(() => expect(errors.some((m) => m.includes('cluster-node-timeout') && m.includes('NOPERM'))).toBe(true));
        expect(c.stats().subscriberLossMs).toBe(100); // gapMs: a round
      } finally {
        await c.close();
      }
    } finally {
      for (const a of admins) {
        await a.call('ACL', 'DELUSER', 'noconfig').catch(() => undefined);
        a.disconnect();
      }
    }
  });

  // Last: it kills a master (the Cluster is not whole afterwards).
  it('a subscriber whose node dies moves to a live node and hears again', async () => {
    const c = await RedisConnector.connect({ cluster: cluster.urls }, { timeoutMs: 1000, connectTimeoutMs: 10_000, reconnect: { minMs: 10, maxMs: 50 } });
    const admins = cluster.nodes.map((n) => new Redis(n.url, { retryStrategy: () => null }));
    admins.forEach((a) => a.on('error', () => undefined));
    const events: string[] = [];
    c.on('subscriber', (s: string) => events.push(s));
    try {
      const heard: string[] = [];
      await c.subscribe('cl-dead', (m) => heard.push(m));
      const on = (await numsub(admins, 'cl-dead')).indexOf(1);
      await cluster.nodes[on]!.kill();
      await vi.waitFor(() => expect(events).toEqual(['down', 'up']), { timeout: 5000 });
      const live = admins.filter((_, i) => i !== on);
      expect((await numsub(live, 'cl-dead')).reduce((a, b) => a + b)).toBe(1);
      await live[0]!.publish('cl-dead', 'moved');
      await live[1]!.publish('cl-dead', 'moved');
      await vi.waitFor(() => expect(heard).toEqual(['moved', 'moved']));
    } finally {
      for (const a of admins) a.disconnect();
      await c.close();
    }
  });
});

describe.runIf(spawnable)('a Redis Cluster with a replica', () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  beforeAll(async () => {
    cluster = await startCluster({ replicas: 1 });
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('a subscriber on a node removed from the Cluster fails its hearing check and moves to a member', async () => {
    // redis-cli --cluster del-node: the others forget the node, which keeps running (reset to a
    // lone node) with its clients; no PUBLISH of the Cluster reaches it. Nothing on the connection
    // shows it: only the hearing check (a nonce published through another node) does (review24).
    const c = await RedisConnector.connect({ cluster: cluster.urls }, { timeoutMs: 1000, connectTimeoutMs: 10_000, subscriberCheckMs: 300, reconnect: { minMs: 10, maxMs: 50 } });
    const replica = cluster.replicas[0]!;
    const all = [...cluster.nodes, replica];
    const admins = all.map((n) => new Redis(n.url));
    const events: string[] = [];
    const errors: string[] = [];
    c.on('subscriber', (s: string) => events.push(s));
    c.on('redisError', (e: Error) => errors.push(e.message));
    const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
    try {
      const pool = (): number[] => (c.client as unknown as { nodes(role: string): Array<{ options: { port: number } }> }).nodes('all').map((n) => n.options.port);
      await vi.waitFor(() => expect(pool()).toContain(replica.port), { timeout: 10_000 }); // (slot maps refresh every 5 s)
      const heard: string[] = [];
      await c.subscribe('cl-removed', (m) => heard.push(m));
      // Each reconnect goes to the next node the Cluster knows: drop it until it is on the replica.
      for (let i = 0; i < 8 && (await numsub(admins, 'cl-removed'))[3] !== 1; i++) {
        await Promise.all(admins.map((a) => a.call('CLIENT', 'KILL', 'TYPE', 'pubsub')));
        await vi.waitFor(async () => expect(sum(await numsub(admins, 'cl-removed'))).toBe(1));
      }
      expect(await numsub(admins, 'cl-removed')).toEqual([0, 0, 0, 1]);
      await vi.waitFor(() => expect(events.at(-1) ?? 'up').toBe('up')); // (it may have started there)
      events.length = 0;
      const id = String(await admins[3]!.call('CLUSTER', 'MYID'));
      const del = spawnSync('redis-cli', ['--cluster', 'del-node', `127.0.0.1:${cluster.nodes[0]!.port}`, id], { encoding: 'utf8', timeout: 30_000 });
      expect(del.status).toBe(0);
      // Deaf, not disconnected: the check's nonce does not come, the subscriber reconnects.
      await vi.waitFor(async () => {
        expect(events[0]).toBe('down');
        expect(events.at(-1)).toBe('up');
        expect(sum(await numsub(admins.slice(0, 3), 'cl-removed'))).toBe(1);
      }, { timeout: 15_000, interval: 100 });
      expect(errors.some((m) => /did not hear its check/.test(m))).toBe(true);
      await admins[0]!.publish('cl-removed', 'member');
      await vi.waitFor(() => expect(heard).toContain('member'));
    } finally {
      for (const a of admins) a.disconnect();
      await c.close();
    }
  }, 60_000);
});
