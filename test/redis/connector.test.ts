import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ErrorCodes, RedisConnector } from '../../engine/index.js';
import { canSpawnRedis, holdingProxy, REDIS_URL, sharedRedisReachable, startRedis, type RedisProcess } from './servers.js';

const shared = await sharedRedisReachable('redis connector');
const spawnable = canSpawnRedis('redis connector (own server)');
const prefix = `hotpath:test:${process.pid}:${Date.now()}:`;

describe.runIf(shared)('RedisConnector on the shared Redis', () => {
  let r: RedisConnector;
  beforeAll(async () => {
    r = await RedisConnector.connect(REDIS_URL, { timeoutMs: 1000 });
    expect(r.available).toBe(true);
  });
  afterAll(async () => {
    const keys = (await r.command('KEYS', [`${prefix}*`])) as string[];
    if (keys.length > 0) await r.command('DEL', keys);
    await r.close();
  });

  it('sends commands and returns their answers', async () => {
    expect(await r.command('SET', [`${prefix}a`, 'x'])).toBe('OK');
    expect(await r.command('GET', [`${prefix}a`])).toBe('x');
    expect(await r.command('GET', [`${prefix}missing`])).toBeNull();
  });

  it('runs a script by EVALSHA with hash-tagged keys', async () => {
    const s = r.defineScript('test-incr', "return redis.call('INCRBY', KEYS[1], ARGV[1]) + redis.call('INCRBY', KEYS[2], ARGV[1])");
    expect(s.sha).toMatch(/^[0-9a-f]{40}$/);
    expect(await s.run([`${prefix}{k}:1`, `${prefix}{k}:2`], [5])).toBe(10);
    expect(await s.run([`${prefix}{k}:1`, `${prefix}{k}:2`], [1])).toBe(12);
    expect(() => r.defineScript('test-incr', 'return 1')).toThrow(/different script/);
  });

  it('a Redis reply error rejects with ERR_HOTPATH_REDIS_ERROR and does not trip the breaker', async () => {
    await r.command('SET', [`${prefix}str`, 'v']);
    for (let i = 0; i < 10; i++) {
      await expect(r.command('LPUSH', [`${prefix}str`, 'x'])).rejects.toMatchObject({ code: ErrorCodes.REDIS_ERROR });
    }
    expect(r.breaker.state).toBe('closed');
    const bad = r.defineScript('test-bad', 'return redis.call("NOPE")');
    await expect(bad.run([`${prefix}x`], [])).rejects.toMatchObject({ code: ErrorCodes.REDIS_ERROR });
  });

  it('MGET returns values in key order', async () => {
    await r.command('MSET', [`${prefix}m1`, '1', `${prefix}m3`, '3']);
    expect(await r.mget([`${prefix}m1`, `${prefix}m2`, `${prefix}m3`])).toEqual(['1', null, '3']);
    expect(await r.mget([])).toEqual([]);
  });

  it('concurrent subscribes to one channel all take effect', async () => {
    const got: string[] = [];
    let done: () => void = () => {};
    const all = new Promise<void>((resolve) => (done = resolve));
    const offs = await Promise.all(['x', 'y', 'z'].map((who) => r.subscribe(`${prefix}conc`, (m) => {
      got.push(`${who}:${m}`);
      if (got.length === 3) done();
    })));
    await r.publish(`${prefix}conc`, 'm');
    await all;
    expect(got.sort()).toEqual(['x:m', 'y:m', 'z:m']);
    for (const off of offs) await off();
  });

  it('pub/sub over one shared subscriber connection', async () => {
    const got: string[] = [];
    let done: () => void = () => {};
    const both = new Promise<void>((resolve) => (done = resolve));
    const record = (who: string) => (m: string): void => {
      got.push(`${who}:${m}`);
      if (got.length === 2) done();
    };
    const offA = await r.subscribe(`${prefix}chan`, record('a'));
    const offB = await r.subscribe(`${prefix}chan`, record('b'));
    expect(await r.publish(`${prefix}chan`, 'hi')).toBe(1); // one subscriber connection
    await both;
    expect(got.sort()).toEqual(['a:hi', 'b:hi']);
    await offA();
    await offB();
  });
});

describe.runIf(spawnable)('RedisConnector on its own server', () => {
  let server: RedisProcess;
  let r: RedisConnector;
  beforeAll(async () => {
    server = await startRedis();
    r = await RedisConnector.connect(server.url, { timeoutMs: 50, breaker: { resetMs: 300 } });
  });
  afterAll(async () => {
    await r.close();
    await server.stop();
  });

  it('recovers from NOSCRIPT (a flushed script cache) by EVAL', async () => {
    const s = r.defineScript('test-echo', 'return ARGV[1]');
    expect(await s.run(['k'], ['one'])).toBe('one');
    await r.command('SCRIPT', ['FLUSH']);
    expect(await s.run(['k'], ['two'])).toBe('two');
    expect(await r.command('SCRIPT', ['EXISTS', s.sha])).toEqual([1]); // EVAL cached it again
    // The same sent directly (no auto-pipelining hold), as the limiter sends its batches.
    expect(await s.run(['k'], ['three'], { direct: true })).toBe('three');
    await r.command('SCRIPT', ['FLUSH']);
    expect(await s.run(['k'], ['four'], { direct: true })).toBe('four');
    expect(await r.command('SCRIPT', ['EXISTS', s.sha])).toEqual([1]);
  });

  it('a direct send never overtakes a command issued before it and held for auto-pipelining', async () => {
    const key = `order-${process.pid}-${Date.now()}`;
    const set = r.command('SET', [key, 'first']); // held until setImmediate (auto-pipelining)
    const got = r.commandBuffer('GET', [key], { direct: true });
    const many = r.mgetBuffer([key, `${key}:none`], { direct: true });
    const viaScript = r.defineScript('test-order', "return redis.call('GET', KEYS[1])").run([key], [], { direct: true });
    expect(await set).toBe('OK');
    expect(String(await got)).toBe('first');
    expect((await many).map((b) => (b === null ? null : String(b)))).toEqual(['first', null]);
    expect(await viaScript).toBe('first');
    // The first command of a tick is written at once, the next one waits for the pipeline, and a
    // direct send after it joins the pipeline behind it.
    const a = r.command('SET', [key, 'a']);
    const b = r.command('SET', [key, 'b']);
    const after = r.commandBuffer('GET', [key], { direct: true });
    expect([await a, await b, String(await after)]).toEqual(['OK', 'OK', 'b']);
    await r.command('DEL', [key]);
  });

  it('ioredis keyPrefix applies to direct sends as to auto-pipelined ones', async () => {
    const port = Number(new URL(server.url).port);
    const p = await RedisConnector.connect({ host: '127.0.0.1', port, keyPrefix: 'app1:' }, { timeoutMs: 1000 });
    try {
      await p.command('SET', ['pk', 'v']);
      expect(String(await p.commandBuffer('GET', ['pk'], { direct: true }))).toBe('v');
      expect((await p.mgetBuffer(['pk'], { direct: true })).map(String)).toEqual(['v']);
      const incr = p.defineScript('test-prefix-incr', "return redis.call('INCR', KEYS[1])");
      await incr.run(['ctr'], [], { direct: true }); // nothing held: sent at once
      // The first PING is written at once, the second is held for the pipeline: the script joins it.
      await Promise.all([p.command('PING'), p.command('PING'), incr.run(['ctr'], [], { direct: true })]);
      expect(await r.command('GET', ['app1:ctr'])).toBe('2');
      expect(await r.command('EXISTS', ['ctr'])).toBe(0);
    } finally {
      await p.close();
    }
  });

  it('a command answers the same whether it is the first of its tick (written at once) or not (pipelined)', async () => {
    const key = `shape-${process.pid}-${Date.now()}`;
    await r.command('HSET', [key, 'a', '1', 'b', '2']);
    const [first, second] = await Promise.all([r.command('hgetall', [key]), r.command('hgetall', [key])]);
    expect(second).toEqual(first);
    const [up1, up2] = await Promise.all([r.command('HGETALL', [key]), r.command('HGETALL', [key])]);
    expect(up2).toEqual(up1);
    // A buffer command ioredis has no named Buffer method for keeps its name in the pipeline too
    // (ioredis's auto-pipelining drops callBuffer's name): both calls reach Redis as JSON.GET.
    const calls = await Promise.allSettled([r.commandBuffer('JSON.GET', ['ECHO', 'dropped']), r.commandBuffer('JSON.GET', ['ECHO', 'dropped'])]);
    for (const c of calls) {
      expect(c.status).toBe('rejected');
      expect(((c as PromiseRejectedResult).reason as Error).message).toMatch(/unknown command/i);
    }
    await r.command('DEL', [key]);
  });

  it('refuses a timeout that is not a positive number, before sending anything', async () => {
    for (const bad of [0, -1, Number.NaN]) {
      await expect(r.command('PING', [], { timeoutMs: bad })).rejects.toThrow(RangeError);
    }
    expect(await r.command('PING', [], { timeoutMs: Infinity })).toBe('PONG');
  });

  it('times a stalled command out with a typed error, and the late answer is handled', async () => {
    const { Redis } = await import('ioredis');
    const admin = new Redis(server.url);
    try {
      await admin.call('CLIENT', 'PAUSE', '300', 'ALL');
      const t0 = performance.now();
      const err = await r.command('GET', ['k'], { timeoutMs: 40 }).catch((e: unknown) => e);
      const took = performance.now() - t0;
      expect(err).toMatchObject({ code: ErrorCodes.REDIS_UNAVAILABLE });
      expect((err as Error).message).toMatch(/timed out after 40 ms/);
      expect(took).toBeLessThan(250);
      const direct = await r.defineScript('test-direct', 'return 1').run(['k'], [], { timeoutMs: 40, direct: true }).catch((e: unknown) => e);
      expect(direct).toMatchObject({ code: ErrorCodes.REDIS_UNAVAILABLE });
      // The paused GET answers later: that late answer must not surface as an unhandled rejection
      // (vitest fails the run on one). Wait for the pause to end and Redis to answer again.
      expect(await r.command('PING', [], { timeoutMs: 2000 }).catch(async () => {
        await new Promise((res) => setTimeout(res, 400));
        return r.command('PING', [], { timeoutMs: 2000 });
      })).toBe('PONG');
    } finally {
      admin.disconnect();
    }
  });
  it('a subscribe made during the subscriber connection\'s handshake is live once it is ready, with no reconnect', async () => {
    // ioredis writes SUBSCRIBE at once while a connection is in its handshake; the connection then
    // fails its ready check (INFO is refused in subscriber mode), reconnects, and never resubscribes:
    // the subscribe had resolved on a connection that was about to be replaced by a deaf one.
    const { Redis } = await import('ioredis');
    const proxy = await holdingProxy(server.port);
    const c = await RedisConnector.connect(`redis://127.0.0.1:${proxy.port}`, { timeoutMs: 50, connectTimeoutMs: 5000 });
    const admin = new Redis(server.url);
    const errors: unknown[] = [];
    c.on('redisError', (e) => errors.push(e));
    try {
      expect(c.available).toBe(true);
      proxy.holdNew();
      const heard = new Set<string>();
      const handshake = proxy.nextHeldWrite();
      const a = c.subscribe('hs-a', (m) => heard.add(`a:${m}`)); // opens the subscriber connection
      await handshake; // its handshake is written and unanswered: ioredis's 'connect' state
      const b = c.subscribe('hs-b', (m) => heard.add(`b:${m}`));
      proxy.release();
      await Promise.all([a, b]);
      await vi.waitFor(async () => {
        await admin.publish('hs-a', '1');
        await admin.publish('hs-b', '1');
        expect(heard).toEqual(new Set(['a:1', 'b:1']));
      });
      expect(await admin.call('PUBSUB', 'NUMSUB', 'hs-a', 'hs-b')).toEqual(['hs-a', 1, 'hs-b', 1]);
      expect(errors).toEqual([]); // no failed ready check
      expect(proxy.connections).toBe(2); // the command connection and one subscriber connection
    } finally {
      admin.disconnect();
      await c.close();
      await proxy.close();
    }
  });
  it('an unsubscribe made during a reconnect\'s handshake is not undone when the connection is ready', async () => {
    const { Redis } = await import('ioredis');
    const proxy = await holdingProxy(server.port);
    const c = await RedisConnector.connect(`redis://127.0.0.1:${proxy.port}`, { timeoutMs: 50, connectTimeoutMs: 5000, reconnect: { minMs: 10, maxMs: 20 } });
    const admin = new Redis(server.url);
    const events: string[] = [];
    c.on('subscriber', (s: string) => events.push(s));
    try {
      const offA = await c.subscribe('uh-a', () => {});
      await c.subscribe('uh-b', () => {});
      proxy.holdNew();
      const handshake = proxy.nextHeldWrite();
      expect(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')).toBe(1);
      await handshake; // the subscriber's new connection is in its handshake
      await offA();
      proxy.release();
      await vi.waitFor(() => expect(events).toEqual(['down', 'up']));
      expect(await admin.call('PUBSUB', 'NUMSUB', 'uh-a', 'uh-b')).toEqual(['uh-a', 0, 'uh-b', 1]);
    } finally {
      admin.disconnect();
      await c.close();
      await proxy.close();
    }
  });

  it('a subscribe that timed out is undone when Redis confirms it late; one in flight at close() rejects', async () => {
    const { Redis } = await import('ioredis');
    const c = await RedisConnector.connect(server.url, { timeoutMs: 50, connectTimeoutMs: 400 });
    const admin = new Redis(server.url);
    try {
      await c.subscribe('late-warm', () => {}); // the subscriber connection is open and ready
      await admin.call('CLIENT', 'PAUSE', '600', 'ALL');
      await expect(c.subscribe('late-slow', () => {})).rejects.toMatchObject({ code: ErrorCodes.REDIS_UNAVAILABLE, message: expect.stringMatching(/timed out after 400 ms/) });
      // Written after the late one on the same connection: once it is confirmed, so was that one.
      await c.subscribe('late-after', () => {});
      await vi.waitFor(async () => expect(await admin.call('PUBSUB', 'NUMSUB', 'late-slow', 'late-after')).toEqual(['late-slow', 0, 'late-after', 1]));
      await admin.call('CLIENT', 'PAUSE', '300', 'ALL');
      const inFlight = c.subscribe('late-closed', () => {});
      const closing = c.close();
      await expect(inFlight).rejects.toMatchObject({ code: ErrorCodes.REDIS_UNAVAILABLE, message: 'the Redis connector is closed' });
      await closing;
    } finally {
      await admin.call('CLIENT', 'UNPAUSE').catch(() => undefined);
      admin.disconnect();
      await c.close();
    }
  });
  it('a server that answers nothing for 10 rounds (SIGSTOP) is dropped: one down, reconnects past stuck handshakes, up once it answers', async () => {
    // A single Redis that stalls loses nothing (it queues what it publishes): no event for that.
    // One that stays silent for deadMs (10 rounds) may be gone without a FIN: reconnect.
    const { Redis } = await import('ioredis');
    const own = await startRedis();
    const c = await RedisConnector.connect(own.url, { timeoutMs: 50, connectTimeoutMs: 300, subscriberCheckMs: 100, reconnect: { minMs: 10, maxMs: 50 } });
    const events: string[] = [];
    const errors: string[] = [];
    c.on('subscriber', (s: string) => events.push(s));
    c.on('redisError', (e: Error) => errors.push(e.message));
    try {
      const heard: string[] = [];
      await c.subscribe('stall', (m) => heard.push(m));
      own.pause(); // connections stay open; nothing answers
      await vi.waitFor(() => expect(events).toEqual(['down']), { timeout: 5000 });
      expect(errors.some((m) => /answered nothing for \d+ ms; reconnecting it/.test(m))).toBe(true);
      // The kernel still accepts connections: every reconnect stalls in its handshake, and is
      // given up after max(connectTimeoutMs, 1 s) for another one (not one stuck for the whole stall).
      const before = c.stats().reconnects;
      await vi.waitFor(() => expect(c.stats().reconnects).toBeGreaterThanOrEqual(before + 2), { timeout: 8000 });
      expect(events).toEqual(['down']); // one 'down' per outage, not one per failed reconnect
      own.resume();
      await vi.waitFor(() => expect(events).toEqual(['down', 'up']), { timeout: 5000 });
      const admin = new Redis(own.url);
      await admin.publish('stall', 'after');
      admin.disconnect();
      await vi.waitFor(() => expect(heard).toEqual(['after']));
    } finally {
      own.resume();
      await c.close();
      await own.stop();
    }
  }, 30_000);

  it('the hearing check publishes a nonce every round on a channel of its own, and hears it', async () => {
    const { Redis } = await import('ioredis');
    const c = await RedisConnector.connect(server.url, { timeoutMs: 50, subscriberCheckMs: 100 });
    const admin = new Redis(server.url);
    const channels = async (): Promise<string[]> => (await admin.call('PUBSUB', 'CHANNELS', 'hotpath:hb:*')) as string[];
    const errors: unknown[] = [];
    c.on('redisError', (e) => errors.push(e));
    try {
      await c.subscribe('hb-user', () => {});
      await vi.waitFor(async () => expect(await channels()).toHaveLength(1));
      const sent = c.stats().commands;
      await vi.waitFor(() => expect(c.stats().commands).toBeGreaterThanOrEqual(sent + 3)); // a PUBLISH per round
      expect(errors).toEqual([]); // heard every time
    } finally {
      admin.disconnect();
      await c.close();
    }
  });
  it('a subscriber working through a backlog many rounds long is not taken for deaf (the check judges by order)', async () => {
    // review25/26: a nonce queued behind a burst was judged missed after a time limit, and the drop
    // threw the rest of the burst away.
    const { Redis } = await import('ioredis');
    const c = await RedisConnector.connect(server.url, { timeoutMs: 50, subscriberCheckMs: 100 });
    const admin = new Redis(server.url);
    const errors: string[] = [];
    const events: string[] = [];
    c.on('redisError', (e: Error) => errors.push(e.message));
    c.on('subscriber', (s: string) => events.push(s));
    try {
      const N = 20_000;
      let heard = 0;
      await c.subscribe('backlog', () => {
        heard++;
        const until = performance.now() + 0.05; // 50 µs of work per message: ~1 s, 10 rounds, to drain
        while (performance.now() < until);
      });
      const p = admin.pipeline();
      for (let i = 0; i < N; i++) p.publish('backlog', String(i));
      await p.exec();
      await vi.waitFor(() => expect(heard).toBe(N), { timeout: 20_000, interval: 50 });
      expect(errors).toEqual([]);
      expect(events).toEqual([]);
    } finally {
      admin.disconnect();
      await c.close();
    }
  }, 30_000);
});

describe.runIf(spawnable)('RedisConnector: events, close and construction (review37)', () => {
  it('breaker events arrive in the order of the states: a probe that fails at once comes after its half-open', async () => {
    const server = await startRedis();
    const r = await RedisConnector.connect(server.url, { timeoutMs: 50, breaker: { resetMs: 100 } });
    try {
      const seen: Array<[string, string]> = [];
      let halfOpens = 0;
      const twice = new Promise<void>((resolve) => r.on('breaker', (to: string) => {
        seen.push([to, r.breaker.state]); // the state as the listener sees it
        if (to === 'half-open' && ++halfOpens === 2) resolve();
      }));
      await server.kill();
      for (let i = 0; i < 50 && r.breaker.state !== 'open'; i++) await r.command('PING').catch(() => undefined);
      await twice; // each probe meets a client that is not ready: it fails at once
      for (const [to, state] of seen) expect(state).toBe(to);
      expect(seen.slice(0, 4).map(([to]) => to)).toEqual(['open', 'half-open', 'open', 'half-open']);
    } finally {
      await r.close();
      await server.stop();
    }
  });

  it('close() lets the commands issued before it in the same tick finish', async () => {
    const server = await startRedis();
    const r = await RedisConnector.connect(server.url, { timeoutMs: 1000 });
    const sets = Array.from({ length: 20 }, (_, i) => r.command('SET', [`close-order:${i}`, 'v']).then(() => 'ok', (err: Error) => err.message));
    const closed = r.close();
    expect(await Promise.all(sets)).toEqual(Array(20).fill('ok'));
    await closed;
    const check = await RedisConnector.connect(server.url, { timeoutMs: 1000 });
    try {
      expect(await check.command('EXISTS', Array.from({ length: 20 }, (_, i) => `close-order:${i}`))).toBe(20);
    } finally {
      await check.close();
      await server.stop();
    }
  });

  it('bad options throw before any connection is opened', async () => {
    const sockets = (): number => process.getActiveResourcesInfo().filter((x) => x === 'TCPSocketWrap' || x === 'TCPWRAP').length;
    const before = sockets();
    const url = 'redis://127.0.0.1:6379';
    expect(() => new RedisConnector(url, { breaker: { resetMs: -1 } })).toThrow(RangeError);
    expect(() => new RedisConnector(url, { timeoutMs: 'soon' as never })).toThrow(/options\.timeoutMs/);
    expect(() => new RedisConnector(url, { connectTimeoutMs: -5 })).toThrow(/options\.connectTimeoutMs/);
    expect(() => new RedisConnector(url, { reconnect: { minMs: 0 } })).toThrow(/options\.reconnect\.minMs/);
    expect(() => new RedisConnector(url, { reconnect: { minMs: 500, maxMs: 100 } })).toThrow(/must not exceed/);
    expect(() => new RedisConnector(url, null as never)).toThrow(TypeError);
    expect(sockets()).toBe(before);
  });
});

describe.runIf(spawnable)('RedisConnector: a socket that errors more than once', () => {
  // ioredis listens for a socket's first 'error' only; Node can emit a second on a TLS socket
  // (an OpenSSL error read after the failure, emitted directly: see engine/redis/guarded.ts).
  // This does the same: destroy(err) (the first error, emitted on the next tick), then a plain
  // emit once it is out. Without a listener the second is thrown from emit() — an uncaught
  // exception in an application.
  const twoErrors = async (stream: NodeJS.EventEmitter & { destroy(err: Error): void }): Promise<void> => {
    const first = new Promise((resolve) => stream.once('error', resolve));
    stream.destroy(Object.assign(new Error('first (test)'), { code: 'ECONNRESET' }));
    await first;
    stream.emit('error', Object.assign(new Error('tlsv1 alert decode error (test)'), { code: 'ERR_SSL_TLSV1_ALERT_DECODE_ERROR' }));
  };
  const ready = (c: { status: string; once(e: string, l: () => void): unknown }): Promise<void> =>
    c.status === 'ready' ? Promise.resolve() : new Promise((resolve) => c.once('ready', () => resolve()));

  it('is not an uncaught exception, on the command connection or a duplicate, and both reconnect', async () => {
    const server = await startRedis();
    const r = await RedisConnector.connect(server.url, { timeoutMs: 1000, reconnect: { minMs: 10, maxMs: 20 } });
    const dup = r.duplicateClient({ enableOfflineQueue: true, maxRetriesPerRequest: null });
    const dupErrors: Error[] = [];
    dup.on('error', (err: Error) => dupErrors.push(err));
    try {
      expect(r.available).toBe(true);
      await ready(dup);
      type Stream = NodeJS.EventEmitter & { destroy(err: Error): void };
      const clientStream = (r.client as unknown as { stream: Stream }).stream;
      const dupStream = (dup as unknown as { stream: Stream }).stream;
      // (events.once would reject on the 'error' the clients emit first)
      const back = [r.client, dup].map((c) => new Promise((resolve) => c.once('ready', resolve)));
      await twoErrors(clientStream);
      await twoErrors(dupStream);
      expect(dupErrors.map((e) => e.message)).toEqual(['first (test)']); // ioredis reported the first
      // The first error is still ioredis's to handle: both close that socket and connect again.
      await Promise.all(back);
      expect((r.client as unknown as { stream: unknown }).stream).not.toBe(clientStream);
      expect(await dup.ping()).toBe('PONG');
      expect((dup as unknown as { stream: unknown }).stream).not.toBe(dupStream);
      expect(await r.command('PING')).toBe('PONG');
    } finally {
      dup.disconnect();
      await r.close();
      await server.stop();
    }
  });
});
