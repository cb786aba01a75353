/**
 * Real redis-server processes for the tests, on spare loopback ports: one to kill mid-test, or
 * three forming a Redis Cluster. And the rule for the shared Redis at REDIS_URL: tests that need
 * it skip with a printed reason when it cannot be reached, unless HOTPATH_REQUIRE_REDIS=1 (CI),
 * in which case they fail.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { EventEmitter, once } from 'node:events';
import { connect, createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
export const REQUIRE_REDIS = process.env.HOTPATH_REQUIRE_REDIS === '1';

/** Sends PING to host:port; true on +PONG within `ms`. */
export function ping(port: number, host = '127.0.0.1', ms = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    const done = (v: boolean): void => {
      s.destroy();
      resolve(v);
    };
    s.setTimeout(ms, () => done(false));
    s.once('error', () => done(false));
    s.connect(port, host, () => s.write('PING\r\n'));
    s.once('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

/** Whether the shared Redis answers; throws (CI) or logs why the caller skips. */
export async function sharedRedisReachable(suite: string): Promise<boolean> {
  const u = new URL(REDIS_URL);
  const ok = await ping(Number(u.port || 6379), u.hostname);
  if (ok) return true;
  const why = `${suite}: no Redis answers at ${REDIS_URL}`;
  if (REQUIRE_REDIS) throw new Error(`${why}, and HOTPATH_REQUIRE_REDIS=1`);
  console.warn(`SKIPPED ${why} (set REDIS_URL, or start redis-server)`);
  return false;
}

export const hasRedisServer = spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;

/** Whether tests may spawn redis-server; throws (CI) or logs why the caller skips. */
export function canSpawnRedis(suite: string): boolean {
  if (hasRedisServer) return true;
  if (REQUIRE_REDIS) throw new Error(`${suite}: redis-server is not installed, and HOTPATH_REQUIRE_REDIS=1`);
  console.warn(`SKIPPED ${suite}: redis-server is not installed`);
  return false;
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A port p such that p and p + 10000 (a cluster bus port) are free. */
export async function sparePort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const p = 20000 + Math.floor(Math.random() * 20000);
    if ((await portFree(p)) && (await portFree(p + 10000))) return p;
  }
  throw new Error('no spare port pair found');
}

export interface RedisProcess {
  port: number;
  url: string;
  /** SIGKILL: the server dies with connections open, as in a crash. */
  kill(): Promise<void>;
  /** Starts it again on the same port (empty: no persistence). */
  restart(): Promise<void>;
  /** SIGSTOP: the process stalls (a long fork, a paused VM); the kernel still accepts connections. */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  stop(): Promise<void>;
}

/** Starts a redis-server on a spare loopback port and waits until it answers. */
export async function startRedis(extra: string[] = [], port?: number): Promise<RedisProcess> {
  const p = port ?? (await sparePort());
  const dir = mkdtempSync(join(tmpdir(), 'hotpath-redis-'));
  let child: ChildProcess | undefined;
  const launch = async (): Promise<void> => {
    child = spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra], { stdio: 'ignore' });
    for (let i = 0; i < 200; i++) {
      if (await ping(p, '127.0.0.1', 100)) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`redis-server on port ${p} did not start`);
  };
  const kill = async (): Promise<void> => {
    const c = child;
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return; // already dead (a killed child has signalCode, not exitCode)
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };
  await launch();
  return {
    port: p,
    url: `redis://127.0.0.1:${p}`,
    kill,
    restart: launch,
    pause: () => void child?.kill('SIGSTOP'),
    resume: () => void child?.kill('SIGCONT'),
    stop: async () => {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Three masters forming a Redis Cluster (redis-cli --cluster create), and `replicas` replicas
 * added to them (redis-cli --cluster add-node --cluster-slave), ready once every node says
 * cluster_state:ok and every master's CLUSTER SLOTS lists the replicas.
 */
export async function startCluster(options: { replicas?: number } = {}): Promise<{ nodes: RedisProcess[]; replicas: RedisProcess[]; urls: string[]; stop(): Promise<void> }> {
  const nodes: RedisProcess[] = [];
  const replicas: RedisProcess[] = [];
  const clusterArgs = (i: number): string[] => ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${i}.conf`, '--cluster-node-timeout', '2000'];
  for (let i = 0; i < 3; i++) nodes.push(await startRedis(clusterArgs(i)));
  const stop = async (): Promise<void> => {
    await Promise.all([...nodes, ...replicas].map((n) => n.stop()));
  };
  const cli = (args: string[]): { status: number | null; stdout: string; stderr: string } => spawnSync('redis-cli', args, { encoding: 'utf8', timeout: 30_000 });
  const create = cli(['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-yes']);
  if (create.status !== 0) {
    await stop();
    throw new Error(`redis-cli --cluster create failed: ${create.stdout}\n${create.stderr}`);
  }
  for (let r = 0; r < (options.replicas ?? 0); r++) {
    const replica = await startRedis(clusterArgs(3 + r));
    replicas.push(replica);
    const add = cli(['--cluster', 'add-node', `127.0.0.1:${replica.port}`, `127.0.0.1:${nodes[r % 3]!.port}`, '--cluster-slave']);
    if (add.status !== 0) {
      await stop();
      throw new Error(`redis-cli --cluster add-node failed: ${add.stdout}\n${add.stderr}`);
    }
  }
  for (let i = 0; i < 400; i++) {
    const states = [...nodes, ...replicas].map((n) => cli(['-p', String(n.port), 'cluster', 'info']).stdout);
    // Every master lists the replicas in CLUSTER SLOTS (a client's slot map comes from any of them).
    const slots = nodes.map((n) => cli(['-p', String(n.port), 'cluster', 'slots']).stdout);
    if (states.every((s) => s.includes('cluster_state:ok')) && replicas.every((r) => slots.every((x) => x.includes(String(r.port))))) {
      return { nodes, replicas, urls: nodes.map((n) => n.url), stop };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await stop();
  throw new Error('the cluster did not reach cluster_state:ok');
}

export interface HoldingProxy {
  port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  /** From now on, Redis's answers to connections opened later are held back (not to open ones). */
  holdNew(): void;
  /** Resolves when a held connection's client writes (ioredis: its handshake is under way). */
  nextHeldWrite(): Promise<void>;
  /** Delivers what was held, and stops holding. */
  release(): void;
  close(): Promise<void>;
}

/**
 * A loopback TCP proxy to a Redis on `port` that can hold Redis's answers back: a client whose
 * handshake goes unanswered stays in ioredis's 'connect' state for as long as the test wants.
 */
export async function holdingProxy(port: number): Promise<HoldingProxy> {
  const events = new EventEmitter();
  const sockets = new Set<Socket>();
  const held: Array<() => void> = [];
  let holding = false;
  let connections = 0;
  const server = createServer((client) => {
    connections++;
    const upstream = connect(port, '127.0.0.1');
    sockets.add(client).add(upstream);
    let hold = holding;
    const queued: Buffer[] = [];
    held.push(() => {
      hold = false;
      for (const d of queued.splice(0)) client.write(d);
    });
    upstream.on('data', (d: Buffer) => (hold ? queued.push(d) : client.write(d)));
    client.on('data', (d: Buffer) => {
      upstream.write(d);
      if (hold) events.emit('heldWrite');
    });
    for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
      a.on('error', () => undefined);
      a.on('close', () => {
        sockets.delete(a);
        b.destroy();
      });
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as { port: number }).port,
    get connections() {
      return connections;
    },
    holdNew: () => {
      holding = true;
    },
    nextHeldWrite: async () => {
      await once(events, 'heldWrite');
    },
    release: () => {
      holding = false;
      for (const r of held.splice(0)) r();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
