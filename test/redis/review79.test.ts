/**
 * The defects review79 found in the connector (D1–D8), each against a server of its own.
 */
import { once } from 'node:events';
import { createServer, Socket, type Server } from 'node:net';
import { inspect } from 'node:util';
import calculateSlot from 'cluster-key-slot';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ErrorCodes, RedisConnector } from '../../engine/index.js';
import { canSpawnRedis, startCluster, startRedis, type RedisProcess } from './servers.js';

const spawnable = canSpawnRedis('redis connector (review79)');

/** Writes `parts` as one RESP command on a raw socket to `port` (for a command the test must not wait on). */
function rawCommand(port: number, parts: string[]): Socket {
  const s = new Socket();
  s.on('error', () => undefined);
  s.connect(port, '127.0.0.1', () => s.write(`*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join('')}`));
  return s;
}

/** Resolves when `emitter` emits `event` with `to`, rejects after `ms`. */
function waitForBreaker(r: RedisConnector, to: string, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      r.off('breaker', on);
      reject(new Error(`breaker did not turn ${to} within ${ms} ms (now ${r.breaker.state})`));
    }, ms);
    const on = (state: string): void => {
      if (state !== to) return;
      clearTimeout(t);
      r.off('breaker', on);
      resolve();
    };
    r.on('breaker', on);
  });
}

describe.runIf(spawnable)('review79: caller mistakes (D1, D2)', () => {
  let server: RedisProcess;
  let r: RedisConnector;
  beforeAll(async () => {
    server = await startRedis();
    r = await RedisConnector.connect(server.url, { timeoutMs: 1000 });
  });
  afterAll(async () => {
    await r?.close();
    await server?.stop();
  });

  it('D1: a bad command name or args rejects with a TypeError naming it, even as a tick\'s second (auto-pipelined) command — the process lives on', async () => {
    const bad: Array<[() => Promise<unknown>, RegExp]> = [
      [() => r.command(['GET', 'k'] as never), /command name must be a non-empty string, got an array/],
      [() => r.command(42 as never, []), /command name must be a non-empty string, got 42/],
      [() => r.command(undefined as never, ['x']), /command name must be a non-empty string, got undefined/],
      [() => r.command('', []), /non-empty string/],
      [() => r.command('GET', 'k' as never), /GET: args must be an array/],
      [() => r.command('SET', ['k', null as never]), /SET: args\[1\] must be a string, a number, a bigint or a Buffer, got null/],
      // (a bigint is an argument, since review81: the exact way to pass a 64-bit integer)
      [() => r.command('SET', ['k', Symbol('s') as never]), /args\[1\].*a symbol/],
      [() => r.commandBuffer(['GET', 'k'] as never), /command name must be a non-empty string/],
      [() => r.commandBuffer('GET', [{}] as never, { direct: true }), /args\[0\].*an object/],
      [() => r.mget(['a', 1 as never]), /mget: keys\[1\] must be a string/],
      [() => r.mget('ab' as never), /mget: keys must be an array/],
    ];
    const script = r.defineScript('review79-echo', 'return ARGV[1]');
    bad.push([() => script.run(['k'], [undefined as never]), /script review79-echo: args\[0\]/]);
    bad.push([() => script.run([null as never], []), /script review79-echo: keys\[0\]/]);
    for (const [call, message] of bad) {
      const first = r.command('PING'); // the first command of the tick is written at once
      const second = call(); // the next one would join ioredis's auto-pipeline
      await expect(second).rejects.toThrow(TypeError);
      await expect(second).rejects.toThrow(message);
      expect(await first).toBe('PONG');
    }
    // Let the auto-pipeline's setImmediate run: before the fix ioredis threw there (an uncaught exception).
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(await r.command('PING')).toBe('PONG');
    expect(await script.run(['k'], ['x'])).toBe('x');
  });

  it('D2: caller mistakes, and programming errors ioredis throws while building a command, neither count against the breaker nor read as "unavailable"', async () => {
    const before = r.stats().failures;
    for (let i = 0; i < 10; i++) {
      await expect(r.command('GET', 'some-key' as never)).rejects.toThrow(TypeError);
      await expect(r.command(undefined as never)).rejects.toThrow(TypeError);
    }
    expect(r.breaker.state).toBe('closed');
    // A programming error thrown by ioredis itself, synchronously or as a rejection.
    const spy = vi.spyOn(r.client, 'sendCommand');
    try {
      for (let i = 0; i < 6; i++) {
        spy.mockImplementationOnce(() => {
          throw new TypeError('args.flat is not a function (test)');
        });
        const err = await r.commandBuffer('GET', ['k'], { direct: true }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(TypeError);
        expect((err as { code?: string }).code).not.toBe(ErrorCodes.REDIS_UNAVAILABLE);
        spy.mockImplementationOnce(() => Promise.reject(new RangeError('Invalid array length (test)')) as never);
        await expect(r.commandBuffer('GET', ['k'], { direct: true })).rejects.toThrow(RangeError);
      }
    } finally {
      spy.mockRestore();
    }
    expect(r.breaker.state).toBe('closed');
    expect(r.stats().failures).toBe(before);
    expect(r.available).toBe(true);
    expect(await r.command('GET', ['some-key'])).toBeNull();
  });
});

describe.runIf(spawnable)('review79: no password in errors (D4)', () => {
  let server: RedisProcess;
  beforeAll(async () => {
    server = await startRedis(); // started without one: servers.ts's readiness PING needs no AUTH
    const s = rawCommand(server.port, ['CONFIG', 'SET', 'requirepass', 'RightPw-79']);
    const [reply] = (await once(s, 'data')) as [Buffer];
    s.destroy();
    expect(reply.toString()).toBe('+OK\r\n');
  });
  afterAll(async () => {
    await server?.stop();
  });

  const leaks = (err: unknown, secret: string): boolean => inspect(err, { depth: 8 }).includes(secret) || JSON.stringify(err).includes(secret)
    || String((err as Error).stack).includes(secret);

  it('a wrong password (URL form and options form) is not in the \'redisError\' events', async () => {
    for (const [config, secret] of [
      [`redis://default:WrongPW99@127.0.0.1:${server.port}`, 'WrongPW99'],
      [{ host: '127.0.0.1', port: server.port, password: 'WrongPW77' }, 'WrongPW77'],
    ] as const) {
      const r = new RedisConnector(config, { connectTimeoutMs: 200, reconnect: { minMs: 10, maxMs: 20 } });
      const errors: unknown[] = [];
      try {
        await new Promise<void>((resolve) => r.on('redisError', (err: unknown) => {
          errors.push(err);
          if (errors.length === 2) resolve();
        }));
        expect(errors.some((e) => /WRONGPASS/.test((e as Error).message))).toBe(true);
        const auth = errors.find((e) => (e as { command?: { name: string } }).command?.name === 'auth') as { command: { args: string[] } } | undefined;
        expect(auth?.command.args).toContain('***');
        for (const e of errors) expect(leaks(e, secret)).toBe(false);
        const call = await r.command('PING').catch((e: unknown) => e);
        expect(leaks(call, secret)).toBe(false);
      } finally {
        await r.close();
      }
    }
  });

  it('an AUTH or HELLO sent through command() does not carry its password in the rejection (nor its cause)', async () => {
    const r = await RedisConnector.connect(`redis://:RightPw-79@127.0.0.1:${server.port}`, { timeoutMs: 1000 });
    try {
      const a = await r.command('AUTH', ['default', 'NotThePw-1']).catch((e: unknown) => e);
      expect((a as { code?: string }).code).toBe(ErrorCodes.REDIS_ERROR);
      expect(leaks(a, 'NotThePw-1')).toBe(false);
      const h = await r.command('HELLO', ['2', 'AUTH', 'default', 'NotThePw-2']).catch((e: unknown) => e);
      expect(leaks(h, 'NotThePw-2')).toBe(false);
      // A message that holds the configured password (a server echoing it, a proxy's error) is scrubbed too.
      const spy = vi.spyOn(r.client, 'sendCommand').mockImplementationOnce(() => Promise.reject(new Error('connection reset talking to redis://:RightPw-79@x')) as never);
      const m = await r.commandBuffer('GET', ['k'], { direct: true }).catch((e: unknown) => e);
      spy.mockRestore();
      expect((m as { code?: string }).code).toBe(ErrorCodes.REDIS_UNAVAILABLE);
      expect(leaks(m, 'RightPw-79')).toBe(false);
    } finally {
      await r.close();
    }
  });
});

describe.runIf(spawnable)('review79: Redis refusing for its own state (D5)', () => {
  it('BUSY (a long script) opens the breaker with ERR_HOTPATH_REDIS_UNAVAILABLE; the probe closes it once the script is killed; WRONGTYPE stays a command error', async () => {
    const server = await startRedis(['--busy-reply-threshold', '50']);
    const r = await RedisConnector.connect(server.url, { timeoutMs: 2000, breaker: { resetMs: 100 } });
    const busy = rawCommand(server.port, ['EVAL', 'while true do end', '0']);
    try {
      await r.command('SET', ['str', 'v']).catch(() => undefined);
      await vi.waitFor(async () => {
        const err = await r.command('GET', ['k']).then(() => undefined, (e: unknown) => e);
        expect(String((err as Error)?.message)).toMatch(/BUSY/);
      }, { timeout: 5000, interval: 20 });
      expect(r.stats().replyErrors).toBe(0);
      for (let i = 0; i < 10 && r.breaker.state === 'closed'; i++) {
        const err = await r.command('GET', ['k']).catch((e: unknown) => e);
        expect((err as { code?: string }).code).toBe(ErrorCodes.REDIS_UNAVAILABLE);
      }
      expect(r.breaker.state).toBe('open');
      expect(r.available).toBe(false);
      const closed = waitForBreaker(r, 'closed', 5000);
      rawCommand(server.port, ['SCRIPT', 'KILL']).once('data', function (this: Socket) {
        this.destroy();
      });
      await closed;
      expect(await r.command('GET', ['k'])).toBeNull();
      for (let i = 0; i < 10; i++) {
        await expect(r.command('LPUSH', ['str', 'x'])).rejects.toMatchObject({ code: ErrorCodes.REDIS_ERROR });
      }
      expect(r.breaker.state).toBe('closed');
    } finally {
      busy.destroy();
      await r.close();
      await server.stop();
    }
  });

  it('LOADING, MASTERDOWN, CLUSTERDOWN, TRYAGAIN, READONLY count as failures; BUSYKEY, BUSYGROUP, NOSCRIPT-like errors of the command do not', async () => {
    const server = await startRedis();
    const r = await RedisConnector.connect(server.url, { timeoutMs: 1000, breaker: { consecutiveFailures: 1000 } });
    const reply = (message: string): Error => Object.assign(new Error(message), { name: 'ReplyError' });
    const spy = vi.spyOn(r.client, 'sendCommand');
    try {
      for (const m of ['LOADING Redis is loading the dataset in memory', 'MASTERDOWN Link with MASTER is down', 'CLUSTERDOWN The cluster is down',
        'TRYAGAIN Multiple keys request during rehashing of slot', "READONLY You can't write against a read only replica.", 'BUSY Redis is busy running a script.']) {
        spy.mockImplementationOnce(() => Promise.reject(reply(m)) as never);
        const failures = r.stats().failures;
        await expect(r.commandBuffer('GET', ['k'], { direct: true })).rejects.toMatchObject({ code: ErrorCodes.REDIS_UNAVAILABLE });
        expect(r.stats().failures).toBe(failures + 1);
      }
      for (const m of ['BUSYKEY Target key name already exists.', 'BUSYGROUP Consumer Group name already exists', 'WRONGTYPE Operation against a key holding the wrong kind of value', 'ERR unknown command']) {
        spy.mockImplementationOnce(() => Promise.reject(reply(m)) as never);
        const failures = r.stats().failures;
        await expect(r.commandBuffer('GET', ['k'], { direct: true })).rejects.toMatchObject({ code: ErrorCodes.REDIS_ERROR });
        expect(r.stats().failures).toBe(failures);
      }
    } finally {
      spy.mockRestore();
      await r.close();
      await server.stop();
    }
  });
});

describe.runIf(spawnable)('review79: a command connection whose peer vanished (D3)', () => {
  const cases: Array<[string, { infinite?: boolean; traffic?: boolean }]> = [
    ['', {}],
    [', with a call of timeout Infinity in flight (review82: it held the drop off for ever)', { infinite: true }],
    [', under steady traffic that takes the probe slots (review82: the count never grew)', { traffic: true }],
  ];
  it.each(cases)('after 2 half-open probes time out on a connection that stays open, it is dropped and reconnected: the breaker closes within seconds%s', async (_label, variant) => {
    const server = await startRedis();
    // A proxy that can black-hole the connections open so far (a firewall dropping the flow): bytes
    // are swallowed both ways, nothing is closed; new connections pass.
    const pairs: Array<{ a: Socket; b: Socket; frozen: boolean }> = [];
    const proxy: Server = createServer((a) => {
      const b = new Socket();
      b.connect(server.port, '127.0.0.1');
      const pair = { a, b, frozen: false };
      pairs.push(pair);
      a.on('data', (d) => void (pair.frozen || b.write(d)));
      b.on('data', (d) => void (pair.frozen || a.write(d)));
      for (const [x, y] of [[a, b], [b, a]] as const) {
        x.on('error', () => undefined);
        x.on('close', () => y.destroy());
      }
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const port = (proxy.address() as { port: number }).port;
    const r = await RedisConnector.connect(`redis://127.0.0.1:${port}`, { timeoutMs: 50, breaker: { resetMs: 100 } });
    const errors: string[] = [];
    r.on('redisError', (e: Error) => errors.push(e.message));
    let traffic = variant.traffic === true;
    const pump = (): void => {
      if (!traffic) return;
      r.command('GET', ['k']).catch(() => undefined);
      setImmediate(pump);
    };
    try {
      expect(await r.command('PING')).toBe('PONG');
      for (const p of pairs) p.frozen = true;
      const forever = variant.infinite === true ? r.command('BLPOP', ['q', '0'], { timeoutMs: Infinity }).catch(() => undefined) : undefined;
      const opened = waitForBreaker(r, 'open', 5000);
      for (let i = 0; i < 10 && r.breaker.state === 'closed'; i++) {
        await expect(r.command('GET', ['k'])).rejects.toMatchObject({ code: ErrorCodes.REDIS_UNAVAILABLE });
      }
      await opened;
      expect(r.client.status).toBe('ready'); // nothing tells ioredis the connection is dead
      pump();
      // Two probes time out (100 ms open + 50 ms each), then the drop; bounded well below the kernel's minutes.
      await waitForBreaker(r, 'closed', 5000);
      traffic = false;
      expect(errors.some((m) => /2 probes in a row answered nothing on a connection that looks open; reconnecting it/.test(m))).toBe(true);
      expect(await r.command('PING')).toBe('PONG');
      expect(pairs.length).toBeGreaterThanOrEqual(2);
      void forever;
    } finally {
      traffic = false;
      await r.close();
      for (const p of pairs) {
        p.a.destroy();
        p.b.destroy();
      }
      await new Promise((resolve) => proxy.close(resolve));
      await server.stop();
    }
  });
});

describe.runIf(spawnable)('review79: close() with calls in flight on a stalled server (D7)', () => {
  it('every call in flight is settled (ERR_HOTPATH_REDIS_UNAVAILABLE) by the time close() resolves', async () => {
    const server = await startRedis();
    const r = await RedisConnector.connect(server.url, { timeoutMs: 1000 });
    server.pause();
    try {
      const settled: string[] = [];
      const calls = [
        r.command('GET', ['k'], { timeoutMs: 10_000 }),
        r.command('BLPOP', ['q', '0'], { timeoutMs: Infinity }),
        r.mget(['a', 'b'], { timeoutMs: 10_000 }),
      ].map((p) => p.then(() => void settled.push('resolved'), (e: { code?: string }) => void settled.push(String(e.code))));
      await new Promise((resolve) => setTimeout(resolve, 5));
      await r.close();
      expect(settled).toEqual([ErrorCodes.REDIS_UNAVAILABLE, ErrorCodes.REDIS_UNAVAILABLE, ErrorCodes.REDIS_UNAVAILABLE]);
      await Promise.all(calls);
    } finally {
      server.resume();
      await r.close();
      await server.stop();
    }
  });
});

describe.runIf(spawnable)('review79: options and config checks (D8)', () => {
  it('unknown option names, a breaker that is not an object, configs that are not URLs/options/clusters throw naming them; nothing is opened', () => {
    const sockets = (): number => process.getActiveResourcesInfo().filter((x) => x === 'TCPSocketWrap' || x === 'TCPWRAP').length;
    const before = sockets();
    const url = 'redis://127.0.0.1:6379';
    expect(() => new RedisConnector(url, { timeoutMS: 5 } as never)).toThrow(/options\.timeoutMS is not a known connector option/);
    expect(() => new RedisConnector(url, { reconnect: { minMS: 5 } } as never)).toThrow(/options\.reconnect\.minMS is not a known option/);
    expect(() => new RedisConnector(url, { reconnect: [] as never })).toThrow(/options\.reconnect must be an object/);
    expect(() => new RedisConnector(url, { breaker: 7 as never })).toThrow(/options\.breaker must be an object, got 7/);
    expect(() => new RedisConnector(url, { breaker: null as never })).toThrow(TypeError);
    expect(() => new RedisConnector(url, [] as never)).toThrow(/connector options must be an object/);
    expect(() => new RedisConnector(null as never)).toThrow(/Redis config.*got null/);
    expect(() => new RedisConnector(6379 as never)).toThrow(/Redis config.*got 6379/);
    expect(() => new RedisConnector('localhost')).toThrow(/redis:\/\/ or rediss:\/\/ URL/);
    expect(() => new RedisConnector('http://127.0.0.1:6379')).toThrow(/protocol "http:"/);
    expect(() => new RedisConnector({ cluster: [] })).toThrow(/cluster must be a non-empty array/);
    expect(() => new RedisConnector({ cluster: [42 as never] })).toThrow(/cluster entries/);
    expect(sockets()).toBe(before);
  });

  it('waitReady refuses a bad bound, and a bound beyond Node\'s timer maximum does not fire at once', async () => {
    const r = new RedisConnector('redis://127.0.0.1:1', { connectTimeoutMs: 100 });
    r.on('redisError', () => undefined);
    try {
      await expect(r.waitReady(-1)).rejects.toThrow(RangeError);
      await expect(r.waitReady(Number.NaN)).rejects.toThrow(RangeError);
      let done = false;
      const waiting = r.waitReady(3e9).then((v) => {
        done = true;
        return v;
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(done).toBe(false); // before: a TimeoutOverflowWarning and false after 1 ms
      await r.close();
      expect(await waiting).toBe(false); // close() ends the wait
    } finally {
      await r.close();
    }
  });
});

describe.runIf(spawnable)('review79: mget on a Cluster with a keyPrefix (D6)', () => {
  let cluster: Awaited<ReturnType<typeof startCluster>> | undefined;
  let r: RedisConnector | undefined;
  beforeAll(async () => {
    cluster = await startCluster();
    r = await RedisConnector.connect({ cluster: cluster.urls, options: { keyPrefix: 'app:' } }, { timeoutMs: 1000, connectTimeoutMs: 10_000 });
  }, 60_000);
  afterAll(async () => {
    await r?.close();
    await cluster?.stop();
  });

  it('groups keys by the slot of the prefixed key', async () => {
    // Two keys whose slots coincide without the prefix and differ with it.
    const seen = new Map<number, string>();
    let pair: [string, string] | undefined;
    for (let i = 0; pair === undefined; i++) {
      const k = `user:${i}`;
      const o = seen.get(calculateSlot(k));
      if (o !== undefined && calculateSlot(`app:${o}`) !== calculateSlot(`app:${k}`)) pair = [o, k];
      else seen.set(calculateSlot(k), k);
    }
    for (const k of pair) await r!.command('SET', [k, `v-${k}`]);
    expect(await r!.mget(pair)).toEqual([`v-${pair[0]}`, `v-${pair[1]}`]);
    expect((await r!.mgetBuffer([...pair, 'missing'])).map((b) => b?.toString() ?? null)).toEqual([`v-${pair[0]}`, `v-${pair[1]}`, null]);
    const keys = Array.from({ length: 300 }, (_, i) => `session:${i}`);
    expect(await r!.mget(keys)).toEqual(Array(300).fill(null));
  });
});

describe.runIf(spawnable)('review81: the review79 fixes, second look', () => {
  let server: RedisProcess;
  beforeAll(async () => {
    server = await startRedis();
  });
  afterAll(() => server.stop());

  it('a script\'s own error reply that starts with BUSY is the script\'s error, not an outage', async () => {
    const r = await RedisConnector.connect(server.url, { timeoutMs: 1000 });
    try {
      const lock = r.defineScript('r81lock', "return redis.error_reply('BUSY lock held by another owner')");
      for (let i = 0; i < 6; i++) await expect(lock.run(['{r81}:lock'], ['me'])).rejects.toMatchObject({ code: ErrorCodes.REDIS_ERROR });
      // (review82: MISCONF was matched by its code alone)
      const misconf = r.defineScript('r82misconf', "return redis.error_reply('MISCONF the app is misconfigured')");
      for (let i = 0; i < 6; i++) await expect(misconf.run(['{r81}:m'], [])).rejects.toMatchObject({ code: ErrorCodes.REDIS_ERROR });
      expect(r.breaker.state).toBe('closed'); // was open after 5: every component in fallback
      expect(r.available).toBe(true);
    } finally {
      await r.close();
    }
  });

  it('CALL as a command name, and bigint arguments: answered by Redis, the process lives on', async () => {
    const r = await RedisConnector.connect(server.url, { timeoutMs: 1000 });
    try {
      // Both in one tick: the second goes through the auto-pipeline (where callBuffer threw).
      const a = r.commandBuffer('GET', ['r81:k']);
      const b = r.commandBuffer('CALL', []);
      await a;
      await expect(b).rejects.toMatchObject({ code: ErrorCodes.REDIS_ERROR }); // Redis: unknown command
      await r.command('DEL', ['r81:n']);
      expect(await r.command('INCRBY', ['r81:n', 2n ** 40n as never])).toBe(2 ** 40); // was a TypeError
      await r.command('DEL', ['r81:n']);
    } finally {
      await r.close();
    }
  });

  /** A Lua loop that holds the server (and the connection it runs on) for `ms`. */
  const BUSY_LOOP = (ms: number): string[] => ['EVAL', `local t = redis.call('TIME') local s = t[1] * 1000000 + t[2] while true do t = redis.call('TIME') if t[1] * 1000000 + t[2] - s > ${ms * 1000} then break end end return 'OK'`, '0'];

  it('a second close() waits for the first: every call in flight has settled when either resolves', async () => {
    const r = await RedisConnector.connect(server.url, { timeoutMs: 5000 });
    const sleeper = rawCommand(server.port, BUSY_LOOP(800)); // another client holds the server
    try {
      await new Promise((resolve) => setTimeout(resolve, 50)); // its command is running
      const call = r.command('GET', ['r81:x']).then(() => 'answered', () => 'settled');
      let settled = false;
      void call.then(() => (settled = true));
      const first = r.close();
      await r.close(); // was: at once, while the first still drained
      expect(settled).toBe(true);
      await first;
    } finally {
      sleeper.destroy();
    }
  });

  it('a caller\'s long command within its own timeout is not cut by the dead-connection drop', async () => {
    const r = await RedisConnector.connect(server.url, { timeoutMs: 50, breaker: { consecutiveFailures: 2, resetMs: 300, probeTimeoutMs: 100 } });
    try {
      const [cmd, ...args] = BUSY_LOOP(1200);
      const long = r.command(cmd!, args, { timeoutMs: 5000 });
      // Calls behind it time out (50 ms): the breaker opens; its probes time out behind the sleep.
      for (let i = 0; i < 3; i++) await r.command('GET', ['r81:y']).catch(() => undefined);
      await expect(long).resolves.toBe('OK'); // was: the connection dropped under it after 2 probes
    } finally {
      await r.close();
    }
  });
});

describe.runIf(spawnable)('the probe-timeout count after the breaker closed (dfe21aa)', () => {
  it('a caller\'s success in the probe slot starts the count afresh: the next outage\'s first timed-out probe drops nothing', async () => {
    const server = await startRedis();
    const r = await RedisConnector.connect(server.url, { timeoutMs: 30, breaker: { consecutiveFailures: 1, resetMs: 60 } });
    const errors: string[] = [];
    r.on('redisError', (e: Error) => errors.push(e.message));
    // Commands hang (a stalled Redis, as the breaker sees it) while `stall` is true; else answer.
    let stall = true;
    const real = r.client.sendCommand.bind(r.client);
    const spy = vi.spyOn(r.client, 'sendCommand').mockImplementation(((cmd: Parameters<typeof real>[0]) => (stall ? new Promise(() => undefined) : real(cmd))) as never);
    try {
      await expect(r.command('GET', ['k'])).rejects.toMatchObject({ code: ErrorCodes.REDIS_UNAVAILABLE }); // opens
      // Half-open: the connector's PING times out (count 1), the breaker opens again.
      await waitForBreaker(r, 'half-open', 2000);
      await waitForBreaker(r, 'open', 2000);
      // Next half-open: a caller takes the probe slot first (in the listener, before the PING)
      // and succeeds: the breaker closes; the PING was refused its slot.
      const caller = new Promise<unknown>((resolve) => {
        const on = (to: string): void => {
          if (to !== 'half-open') return;
          r.off('breaker', on);
          stall = false;
          resolve(r.command('GET', ['k']));
        };
        r.on('breaker', on);
      });
      await caller;
      expect(r.breaker.state).toBe('closed');
      // A new outage: one timed-out probe must not drop the connection (the count was 1, not 0).
      stall = true;
      await expect(r.command('GET', ['k'])).rejects.toMatchObject({ code: ErrorCodes.REDIS_UNAVAILABLE });
      await waitForBreaker(r, 'half-open', 2000);
      await waitForBreaker(r, 'open', 2000);
      expect(errors.filter((m) => /probes in a row answered nothing/.test(m))).toEqual([]);
    } finally {
      spy.mockRestore();
      await r.close();
      await server.stop();
    }
  });
});
