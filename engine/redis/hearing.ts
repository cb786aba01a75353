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
 *  - a PING is written on the subscriber (at once: the connection does not auto-pipeline). While
 *    it is unanswered, the connection's *silence* is the time since the later of the PING and the
 *    last bytes it received (a burst of messages queued ahead of the PONG is not silence). On a
 *    Cluster, silence of `gapMs` is a stall that may lose relayed messages: `stall()` (listeners
 *    get 'down'), and `stallEnded()` ('up') when the PING is answered — the connection is kept, so
 *    nothing queued for it is thrown away. Off a Cluster a stall loses nothing (the server queues
 *    what it publishes) and gives no event. Silence of `deadMs` anywhere: `drop()` (reconnect).
 *  - a nonce is published on the check's own channel (on a Cluster through another master, so it
 *    crosses the bus). One not heard after `nonceMs`, while the connection received bytes since
 *    it was published (so it is not silent) and no other message (so it is not queued behind a
 *    burst; with messages flowing it gets up to 5 × `nonceMs`): the connection is deaf, `drop()`.
 * Verdicts are taken in a setImmediate after the round's timer, so the I/O that arrived while the
 * event loop was busy is read first: a blocked event loop is not a silent server.
 * A subscribe or publish of the check's channel refused with NOPERM (an ACL user without the
 * channel) turns the nonce half off, reported once through `problem()`.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';

/** What the check needs from the connector. */
export interface HearingLink {
  /** Whether anyone listens besides the check itself. */
  listening(): boolean;
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
  /** Whether the connector is on a Cluster (stalls there lose messages). */
  cluster: boolean;
}

/** Per connection: a reconnect starts afresh. */
interface Connection {
  /** performance.now() of the last bytes received */
  lastRx: number;
  /** messages received (any channel) */
  messages: number;
  /** when the outstanding PING was written, or -1 */
  pingAt: number;
  stalled: boolean;
  /** outstanding nonces: when published, and `messages` then */
  nonces: Map<number, { at: number; messages: number }>;
}

export class HearingCheck {
  /** The check's own channel (one per connector). */
  readonly channel = `hotpath:hb:${randomUUID()}`;
  readonly #sub: Redis;
  readonly #link: HearingLink;
  readonly gapMs: number;
  readonly deadMs: number;
  readonly nonceMs: number;
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #cluster: boolean;
  #conn: Connection | undefined;
  #subscribed = false;
  #subscribing = false;
  #noncesOff = false;
  #seq = 0;

  constructor(sub: Redis, link: HearingLink, o: HearingOptions) {
    this.#sub = sub;
    this.#link = link;
    this.gapMs = Math.max(o.checkMs, o.timeoutMs);
    this.nonceMs = Math.max(o.checkMs, o.timeoutMs);
    this.deadMs = Math.max(10 * o.checkMs, 2 * o.timeoutMs);
    this.#cluster = o.cluster;
    this.#timer = setInterval(() => this.#round(), o.checkMs);
    this.#timer.unref?.();
  }

  /** The subscriber connected (ioredis 'connect'): watch its bytes from now on. */
  connected(): void {
    const c: Connection = { lastRx: performance.now(), messages: 0, pingAt: -1, stalled: false, nonces: new Map() };
    this.#conn = c;
    const stream = this.#sub.stream as { on?: (e: string, f: () => void) => void } | undefined;
    stream?.on?.('data', () => {
      c.lastRx = performance.now();
    });
  }

  /** A message arrived on the subscriber (any channel). */
  message(): void {
    if (this.#conn !== undefined) this.#conn.messages++;
  }

  /** The subscriber connection closed. */
  closed(): void {
    this.#conn = undefined;
  }

  /** Subscribes the check's channel (once; a failure other than NOPERM is retried next round). */
  listen(): void {
    if (this.#subscribed || this.#subscribing || this.#noncesOff) return;
    this.#subscribing = true;
    this.#link.subscribe(this.channel, (m) => this.#conn?.nonces.delete(Number(m))).then(
      () => (this.#subscribed = true),
      (err: unknown) => this.#refused(err),
    ).finally(() => (this.#subscribing = false));
  }

  dispose(): void {
    clearInterval(this.#timer);
    this.#conn = undefined;
  }

  #round(): void {
    const c = this.#conn;
    if (c === undefined || this.#sub.status !== 'ready' || !this.#link.listening()) return;
    // Verdicts on what the previous rounds sent, after this turn's I/O has been read.
    setImmediate(() => this.#judge(c));
    if (c.pingAt < 0) {
      c.pingAt = performance.now();
      this.#sub.ping().then(() => {
        if (this.#conn !== c) return;
        c.pingAt = -1;
        if (c.stalled) {
          c.stalled = false;
          this.#link.stallEnded();
        }
      }, () => undefined); // the connection went away: 'close' says so
    }
    if (!this.#subscribed) {
      this.listen();
      return;
    }
    if (this.#noncesOff || c.nonces.size >= 4) return; // no pile-up when publishing is slower than the rounds
    const nonce = ++this.#seq;
    // Listed before it is sent: the subscriber may hear it before the publisher's reply comes.
    c.nonces.set(nonce, { at: performance.now(), messages: c.messages });
    this.#link.publish(this.channel, String(nonce)).catch((err: unknown) => {
      c.nonces.delete(nonce); // not published: no verdict on it
      this.#refused(err);
    });
  }

  #judge(c: Connection): void {
    if (c !== this.#conn || this.#sub.status !== 'ready') return;
    const now = performance.now();
    if (c.pingAt >= 0) {
      const silent = now - Math.max(c.pingAt, c.lastRx);
      if (silent >= this.deadMs) {
        this.#conn = undefined;
        this.#link.drop(`answered nothing for ${Math.round(silent)} ms`);
        return;
      }
      if (this.#cluster && !c.stalled && silent >= this.gapMs) {
        c.stalled = true;
        this.#link.stall();
      }
    }
    for (const [nonce, p] of c.nonces) {
      const age = now - p.at;
      if (age < this.nonceMs) continue;
      if (c.lastRx <= p.at) continue; // silent since: the PING's part
      if (c.messages > p.messages && age < 5 * this.nonceMs) continue; // maybe queued behind a burst
      c.nonces.delete(nonce);
      this.#conn = undefined;
      this.#link.drop(`did not hear its check within ${Math.round(age)} ms`);
      return;
    }
  }

  #refused(err: unknown): void {
    if (this.#noncesOff || !String((err as Error)?.message ?? err).includes('NOPERM')) return;
    this.#noncesOff = true;
    this.#link.problem(`the subscriber's hearing check cannot use its channel ${this.channel} (NOPERM): grant the Redis user the channels hotpath:* (ACL &hotpath:*); only its PING half runs`);
  }
}
