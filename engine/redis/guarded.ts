/**
 * ioredis connectors whose sockets always have an 'error' listener.
 *
 * ioredis listens for a socket's first 'error' only (`once`, twice over: the connector keeps it
 * as `firstError`, the client closes and reconnects on it). A TLS socket can emit a second: Node
 * emits an OpenSSL error it reads after the socket failed — a peer's alert behind a refused
 * certificate — with a plain `emit('error')`, not through `destroy()`, which would emit at most
 * once. With no listener left, EventEmitter throws it: an uncaught exception that takes the
 * process down (ioredis #1183, the fix declined in #961; seen once in this project's CI on Node
 * 24, 'tlsv1 alert decode error' after a rediss:// handshake with an untrusted CA).
 *
 * These connectors give each socket a permanent listener as soon as it exists. ioredis still
 * handles the first error as before; a later one on the same (already failed) socket changes
 * nothing. Every connection hotpath opens runs on one of them: the connector's, its duplicates
 * (ioredis copies the option), BullMQ's (duplicates too), each Cluster node's (`redisOptions`).
 */
import type { RedisOptions } from 'ioredis';
import { SentinelConnector, StandaloneConnector } from 'ioredis/built/connectors/index.js';

/** The listener: the error was already reported by ioredis's own once-listeners. */
function ignoreLaterErrors(): void {}

function guard<S extends { on(event: 'error', l: () => void): unknown; listeners(event: 'error'): unknown[] }>(stream: S): S {
  if (!stream.listeners('error').includes(ignoreLaterErrors)) stream.on('error', ignoreLaterErrors);
  return stream;
}

type ConnectArg = Parameters<StandaloneConnector['connect']>[0];

/** ioredis's connector for a single node, its sockets guarded. */
export class GuardedConnector extends StandaloneConnector {
  constructor(options: unknown) {
    super(options as ConstructorParameters<typeof StandaloneConnector>[0]);
  }

  override connect(emit: ConnectArg): ReturnType<StandaloneConnector['connect']> {
    // The socket is made on the next tick and handed over by this promise, before any I/O: our
    // listener is on before ioredis's client attaches its own (in its `then`, after ours).
    return super.connect(emit).then(guard);
  }
}

/**
 * ioredis's Sentinel connector, its sockets guarded: the master's (connect), and the sentinels'
 * own — the clients it opens to ask them for the master and to hear of failovers, plain ioredis
 * clients made by its (TypeScript-private) connectToSentinel, which get our connector too
 * (review51: a failover detector's socket to a sentinel threw its second error).
 */
export class GuardedSentinelConnector extends SentinelConnector {
  constructor(options: unknown) {
    super(options as ConstructorParameters<typeof SentinelConnector>[0]);
  }

  override connect(emit: ConnectArg): ReturnType<SentinelConnector['connect']> {
    return super.connect(emit).then(guard);
  }
}

type ToSentinel = (this: unknown, endpoint: unknown, options?: Record<string, unknown>) => unknown;
const toSentinel = (SentinelConnector.prototype as unknown as { connectToSentinel?: ToSentinel }).connectToSentinel;
if (typeof toSentinel === 'function') {
  (GuardedSentinelConnector.prototype as unknown as { connectToSentinel: ToSentinel }).connectToSentinel = function (endpoint, options) {
    return toSentinel.call(this, endpoint, { Connector: GuardedConnector, ...options });
  };
}

/** The guarded connector for `options` (Sentinel when it names sentinels). */
export function guardedConnectorFor(options: RedisOptions | undefined): typeof GuardedConnector | typeof GuardedSentinelConnector {
  return Array.isArray(options?.sentinels) ? GuardedSentinelConnector : GuardedConnector;
}

/**
 * ioredis tells a Sentinel connector which client to emit its events on ('sentinelReconnecting',
 * 'failoverSubscribed') only when it made the connector itself: this does it for ours.
 */
export function adoptConnector<C>(client: C): C {
  const c = client as unknown as { connector?: unknown };
  if (c.connector instanceof GuardedSentinelConnector) (c.connector as unknown as { emitter: unknown }).emitter = client;
  return client;
}
