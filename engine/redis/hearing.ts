/**
 * The subscriber's hearing check: whether the connector's pub/sub connection still hears what is
 * published, on signs a connection can be open, ready and subscribed without:
 *
 *  - a Cluster node removed from the Cluster keeps its clients, but no PUBLISH reaches it any
 *    more (its PINGs are answered as before);
 *  - a Cluster node that stalls (a fork, a slow disk, a paused VM) past half the
 *    cluster-node-timeout has its bus links dropped by the others: what they relay meanwhile is
 *    lost, though the TCP connection survives;
 *  - a peer that vanished without closing the connection answers nothing, for ever.
 *
 * Every round (`checkMs`), while anyone listens:
 *  - a nonce is published on the check's own channel (on a Cluster through another master, so it
 *    crosses the bus), and a PING is written on the subscriber (at once: the connection does not
 *    auto-pipeline);
 *  - **deafness is judged by order, not time.** The subscriber's bytes arrive in the order the
 *    server queued them, and a nonce is queued for the subscriber before its PUBLISH is answered.
 *    So a PONG to a PING written after a nonce's PUBLISH reply (on a Cluster, `busMs` after it,
 *    for the hop between nodes) that arrives while the nonce is still unheard means the nonce was
 *    missed: `drop()` (reconnect; on a Cluster to the next node). A backlog of messages delays the
 *    nonce and the PONG alike, and a blocked event loop delays both: neither is deafness.
 *  - **stalls are judged by silence**: while a PING is unanswered, the time since the later of
 *    the PING and the last bytes received (a burst ahead of the PONG is not silence). On a
 *    Cluster, a stall may lose relayed messages: the other nodes drop their bus links to a node
 *    silent for half their cluster-node-timeout (and with them what they relay meanwhile); until
 *    then they queue it. So once the connector has read the timeout (`nodeTimeout`), a silence of
 *    `gapMs` while the node has not been known to run for `lossMs` — half the node timeout less
 *    250 ms, counted from the write of the last PING it answered (it ran after that: a lower bound
 *    of the stall's start whatever this process's event loop was doing) — is `stall()` (listeners
 *    get 'down'), and `stallEnded()` ('up') when the PING is answered: the same connection, so
 *    nothing queued for it is thrown away. Until the timeout is read, or when it cannot be,
 *    `lossMs` is `gapMs`: every stall of a round or more.
 *    A shorter stall (silence of `gapMs`) gives no event, but the nonces outstanding across it
 *    are forgotten, not judged: relayed and direct bytes reach the node on different sockets, and
 *    it may read them in either order when it wakes. Off a Cluster a stall loses nothing (the
 *    server queues what it publishes) and gives no event. Silence of `deadMs` anywhere: `drop()`.
 *    A silence verdict is confirmed one loop turn later (after another poll of the sockets): bytes
 *    that arrived while the event loop was blocked are read before it counts.
 *  - any answer to the PING counts, an error reply too (a script past busy-reply-threshold
 *    answers -BUSY): the server is there.
 * NOPERM on the check's channel (an ACL user without it) turns the nonce half off, and NOPERM on
 * PING the whole check (nonces are judged by the PONGs behind them); each is reported once
 * through `problem()`.
 * Times are performance.now(), not the engine's injectable clock: they measure the network.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';

/** What the check needs from the connector. */
export interface HearingLink {
  /** Whether anyone listens besides the check itself. */
  listening(): boolean;
  /** Whether the connection's channels are all subscribed (after a reconnect: once resubscribed). */
  live(): boolean;
  /** Subscribes the check's channel on the subscriber connection. */
  subscribe(channel: string, onMessage: (message: string) => void): Promise<unknown>;
  /** Publishes a nonce (on a Cluster, through a master other than the subscriber's node). */
  publish(channel: string, message: string): Promise<unknown>;
  /** Cluster: a silence long enough to lose relayed messages began: listeners may miss messages. */
  stall(): void;
  /** …and the connection answers again. */
  stallEnded(): void;
  /** Deaf or dead: drop the connection (ioredis reconnects). */
  drop(reason: string): void;
  /** A configuration problem that turns part of the check off (reported once). */
  problem(message: string): void;
}

export interface HearingOptions {
  /** Round period (ms, > 0). */
  checkMs: number;
  /** The connector's command timeout (ms): no deadline is shorter. */
  timeoutMs: number;
  /** Whether the connector is on a Cluster (stalls there lose messages; nonces cross the bus). */
  cluster: boolean;
}

/** Per connection: a reconnect starts afresh. */
interface Connection {
  /** performance.now() of the last bytes received */
  lastRx: number;
  /** when the outstanding PING was written, or -1 */
  pingAt: number;
  /** when the last PING the node answered was written (at connect: then): it ran after that */
  aliveAt: number;
  /** Cluster: silent for `gapMs` since the last answer (the nonces are not judged by the next one) */
  quiet: boolean;
  /** Cluster: silent for `lossMs` ('down' given; 'up' at the next answer) */
  stalled: boolean;
  /** outstanding nonces → when their PUBLISH was answered (Infinity until then) */
  nonces: Map<number, number>;
}

export class HearingCheck {
  /** The check's own channel (one per connector). */
  readonly channel = `hotpath:hb:${randomUUID()}`;
  /** Cluster: silence after which the nonces outstanding are not judged (ms). */
  readonly gapMs: number;
  /** Silence after which the connection is dropped (ms). */
  readonly deadMs: number;
  /** Cluster: a PING written this long after a nonce's PUBLISH reply must find the nonce ahead of it (ms). */
  readonly busMs: number;
  readonly #sub: Redis;
  readonly #link: HearingLink;
  readonly #cluster: boolean;
  readonly #checkMs: number;
  #lossMs: number;
  readonly #timer: ReturnType<typeof setInterval>;
  #conn: Connection | undefined;
  #subscribed = false;
  #subscribing = false;
  #noncesOff = false;
  #pingOff = false;
  #disposed = false;
  #seq = 0;

  constructor(sub: Redis, link: HearingLink, o: HearingOptions) {
    this.#sub = sub;
    this.#link = link;
    this.#cluster = o.cluster;
    this.#checkMs = o.checkMs;
    this.gapMs = Math.max(o.checkMs, o.timeoutMs);
    this.#lossMs = this.gapMs;
    this.deadMs = Math.max(10 * o.checkMs, 2 * o.timeoutMs);
    this.busMs = o.cluster ? Math.max(100, o.timeoutMs) : 0;
    this.#timer = setInterval(() => this.#round(), o.checkMs);
    this.#timer.unref?.();
  }

  /** Cluster: silence that may have lost relayed messages, a 'down' (ms; see the file comment). */
  get lossMs(): number {
    return this.#lossMs;
  }

  /**
   * The Cluster's cluster-node-timeout (ms; the least of its masters'): a node not known to run
   * for half of it less 250 ms may have lost relayed messages ('down'). Never below `gapMs`.
   */
  nodeTimeout(ms: number): void {
    if (!Number.isFinite(ms) || ms <= 0) return;
    this.#lossMs = Math.max(this.gapMs, ms / 2 - 250);
  }

  /** The subscriber connected (ioredis 'connect'): watch its bytes from now on. */
  connected(): void {
    const now = performance.now();
    const c: Connection = { lastRx: now, pingAt: -1, aliveAt: now, quiet: false, stalled: false, nonces: new Map() };
    this.#conn = c;
    const stream = this.#sub.stream as { on?: (e: string, f: () => void) => void } | undefined;
    stream?.on?.('data', () => {
      c.lastRx = performance.now();
    });
  }

  /** The subscriber connection closed. */
  closed(): void {
    this.#conn = undefined;
  }

  /** Subscribes the check's channel (once; a failure other than NOPERM is retried next round). */
  listen(): void {
    if (this.#subscribed || this.#subscribing || this.#noncesOff || this.#disposed) return;
    this.#subscribing = true;
    this.#link.subscribe(this.channel, (m) => this.#conn?.nonces.delete(Number(m))).then(
      () => (this.#subscribed = true),
      (err: unknown) => this.#refused(err, 'nonce'),
    ).finally(() => (this.#subscribing = false));
  }

  dispose(): void {
    this.#disposed = true;
    clearInterval(this.#timer);
    this.#conn = undefined;
  }

  #round(): void {
    const c = this.#conn;
    if (c === undefined || this.#sub.status !== 'ready' || !this.#link.listening()) return;
    if (!this.#subscribed) this.listen();
    // Not while a reconnect resubscribes (a nonce could reach the server before the check's
    // channel is subscribed again), nor during a stall.
    else if (!this.#noncesOff && c.nonces.size < 4 && this.#link.live()) this.#publishNonce(c);
    if (c.pingAt < 0 && !this.#pingOff) this.#ping(c);
    setImmediate(() => this.#judgeSilence(c, false));
  }

  #publishNonce(c: Connection): void {
    const nonce = ++this.#seq;
    // Listed before it is sent: the subscriber may hear it before the publisher hears the reply.
    c.nonces.set(nonce, Infinity);
    this.#link.publish(this.channel, String(nonce)).then(() => {
      if (c.nonces.has(nonce)) c.nonces.set(nonce, performance.now());
    }, (err: unknown) => {
      c.nonces.delete(nonce); // not published: no verdict on it
      this.#refused(err, 'nonce');
    });
  }

  #ping(c: Connection): void {
    const at = (c.pingAt = performance.now());
    const answered = (): void => {
      if (this.#conn !== c || c.pingAt !== at) return;
      c.pingAt = -1;
      c.aliveAt = at;
      c.lastRx = performance.now();
      if (c.quiet) {
        // Nonces relayed during a stall may reach the node's socket before this PING and still be
        // read after it; after a long one they may have been lost with the bus links — that loss
        // is what 'down' / 'up' tell. Either way they say nothing about the connection now.
        const stalled = c.stalled;
        c.quiet = false;
        c.stalled = false;
        c.nonces.clear();
        if (stalled) this.#link.stallEnded();
        return;
      }
      // Order: every nonce answered `busMs` before this PING was written is queued ahead of its PONG.
      for (const [nonce, repliedAt] of c.nonces) {
        if (repliedAt + this.busMs > at) continue;
        this.#conn = undefined;
        this.#link.drop(`did not hear its check (nonce ${nonce}, published ${Math.round(at - repliedAt)} ms before a PING that was answered)`);
        return;
      }
    };
    this.#sub.ping().then(answered, (err: unknown) => {
      // A reply error is an answer (-BUSY from a long script); a closed connection is not.
      if ((err as Error)?.name !== 'ReplyError' && (err as { constructor?: { name?: string } })?.constructor?.name !== 'ReplyError') return;
      answered();
      this.#refused(err, 'ping');
    });
    // Judged when the silence would reach gapMs and lossMs (not only at the next round).
    const t = setTimeout(() => this.#judgeSilence(c, false), Math.ceil(this.gapMs) + 1);
    t.unref?.();
    if (this.#cluster && this.#lossMs > this.gapMs) {
      const l = setTimeout(() => this.#judgeSilence(c, false), Math.max(0, Math.ceil(c.aliveAt + this.#lossMs - at)) + 1);
      l.unref?.();
    }
  }

  /** Silence verdicts; `confirmed`: after one more loop turn (another poll of the sockets). */
  #judgeSilence(c: Connection, confirmed: boolean): void {
    if (c !== this.#conn || this.#sub.status !== 'ready' || c.pingAt < 0) return;
    const now = performance.now();
    const silent = now - Math.max(c.pingAt, c.lastRx);
    // Timers run on libuv's whole-millisecond clock: allow for it.
    const tolerance = Math.min(50, this.gapMs / 10);
    const dead = silent >= this.deadMs - tolerance;
    const quiet = this.#cluster && silent >= this.gapMs - tolerance;
    // Silent now, and not known to have run for lossMs (bytes still arriving — a backlog ahead of
    // the PONG — are no stall, however long ago the last PONG was).
    const stall = quiet && !c.stalled && now - c.aliveAt >= this.#lossMs - tolerance;
    if (!dead && !stall && !(quiet && !c.quiet)) return;
    if (!confirmed) {
      setImmediate(() => setImmediate(() => this.#judgeSilence(c, true)));
      return;
    }
    if (dead) {
      this.#conn = undefined;
      this.#link.drop(`answered nothing for ${Math.round(silent)} ms`);
      return;
    }
    c.quiet = true;
    if (stall) {
      c.stalled = true;
      this.#link.stall();
    }
  }

  #refused(err: unknown, half: 'nonce' | 'ping'): void {
    if (this.#disposed || !String((err as Error)?.message ?? err).includes('NOPERM')) return;
    if (half === 'nonce') {
      if (this.#noncesOff) return;
      this.#noncesOff = true;
      this.#link.problem(`the subscriber's hearing check cannot use its channel ${this.channel} (NOPERM): grant the Redis user the channels hotpath:* (ACL &hotpath:*); only its PING half runs`);
    } else {
      if (this.#pingOff) return;
      this.#pingOff = true;
      this.#noncesOff = true; // nonces are judged by the PONGs behind them
      this.#link.problem('the subscriber\'s hearing check cannot PING (NOPERM): grant the Redis user +ping; the check is off');
    }
  }
}
