/**
 * One load-generating worker thread of `loadtest()`. It owns its share of the connections (undici
 * Clients, one socket each) and, in the open model, every W-th arrival of the shared schedule.
 * Per request it keeps no record: it adds the latency to an HDR histogram (µs) and bumps counters,
 * and once per interval it sends the main thread the interval's histograms (compressed) and
 * counters, then resets them — so memory stays flat however long the run is.
 *
 * Requests go through `Client.dispatch` with a handler object per slot (slot = connection ×
 * pipelining position), reused for every request of that slot: no promise, no body stream and no
 * header parsing per request (the cost of undici's `request()` that autocannon does not pay).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import { Client, type Dispatcher } from 'undici';
import type * as hdr from 'hdr-histogram-js';
import { histogramPairs, latencyHistogram } from './histogram.js';
import { Arrivals, arrivalShare, levelAt } from './schedule.js';
import type { Stage, WireScenario } from './options.js';

/** What the main thread hands each worker. */
export interface WorkerInit {
  origin: string;
  index: number;
  workers: number;
  model: 'open' | 'closed';
  from: number;
  stages: Stage[];
  totalMs: number;
  /** Connections this worker owns; its n-th has the global number index + n·workers. */
  connections: number;
  /** Connections of all the workers. */
  totalConnections: number;
  pipelining: number;
  scenarios: WireScenario[];
  timeoutMs: number;
  gracefulStopMs: number;
  intervalMs: number;
}

/** One interval of one worker (`final`: the last, up to the worker's end). */
export interface WorkerSample {
  type: 'sample';
  index: number;
  final: boolean;
  /** ms from the start: the end of what this sample covers. */
  toMs: number;
  /** latencies from the actual send, µs, as HDR (value, count) pairs (see histogramPairs) */
  raw: Float64Array;
  /** open model: latencies from the intended start, µs; closed model: null (corrected on the main thread) */
  corrected: Float64Array | null;
  sent: number;
  /** requests undici wrote again on a new connection (see Slot.onConnect) */
  resent: number;
  completed: number;
  dropped: number;
  interrupted: number;
  /** failed requests whose time is in raw/corrected (timed out, or interrupted at the end) */
  measuredFailures: number;
  bytesIn: number;
  bytesOut: number;
  status: Record<string, number>;
  errors: Record<string, number>;
  /** open model: how late each send was against its intended start, µs, as pairs (the generator's own lag) */
  lag: Float64Array | null;
}

export type WorkerMessage = { type: 'ready' } | WorkerSample | { type: 'failed'; message: string };
export type MainMessage = { type: 'start'; at: number } | { type: 'stop' };

/** After a failed request, a closed-model slot waits this long before its next one (no busy loop against a dead server). */
const ERROR_PAUSE_MS = 10;

/** The error of a request that had no complete response within timeoutMs of its send. */
export const RESPONSE_TIMEOUT = 'RESPONSE_TIMEOUT';
/** The error of a request failed with its connection, closed because another one on it timed out. */
export const BEHIND_TIMEOUT = 'CONNECTION_CLOSED_BY_TIMEOUT';

/**
 * Failures whose time is a latency the run must show (a lower bound of it): a request that timed
 * out — by the tester's whole-response deadline or undici's header, body or connect timeouts — or
 * was still in flight when the run ended. Leaving them out made a server that stopped answering
 * look fast: only the requests that got an answer were measured (review31).
 */
const TIMED_OUT = new Set([RESPONSE_TIMEOUT, 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

const origin = performance.timeOrigin;
/** Wall-clock ms with µs resolution, comparable across threads (the main thread's start time is one). */
const clock = (): number => origin + performance.now();

class Slot implements Dispatcher.DispatchHandler {
  /** when the request was sent (ms, clock()) */
  sentAt = 0;
  /** when it was meant to start (open model) */
  intended = 0;
  status = 0;
  busy = false;
  active = false;
  /** A request of this slot is out (sent, no outcome yet). */
  inFlight = false;
  /** Aborts the request in flight (undici's, given at onConnect). */
  abort: ((err: Error) => void) | null = null;
  /** The scenario of the request in flight. */
  scenario = 0;
  /** How many times undici has written the request in flight. */
  writes = 0;
  constructor(readonly runner: Runner, readonly client: Client) {}
  /**
   * undici calls this each time it writes the request. More than once: the connection closed
   * with this request pipelined behind the one that failed, and undici wrote it again on the
   * next connection (client-h1.js onHttpSocketClose re-queues the running requests; POSTs too,
   * since pipelined requests are marked idempotent). The server may then see it twice: counted
   * (review48: with a server closing connections, it saw 3.9× the requests reported).
   */
  onConnect(abort: (err?: Error) => void): void {
    this.abort = abort;
    if (++this.writes > 1) this.runner.resent(this);
  }
  onHeaders(statusCode: number): boolean {
    this.status = statusCode;
    return true;
  }
  onData(chunk: Buffer): boolean {
    this.runner.bytesIn += chunk.length;
    return true;
  }
  onComplete(): void {
    this.runner.completed(this);
  }
  onError(err: Error): void {
    this.runner.failed(this, err);
  }
}

class Runner {
  readonly #init: WorkerInit;
  readonly #clients: Client[] = [];
  readonly #slots: Slot[] = [];
  readonly #free: Slot[] = [];
  readonly #requests: Dispatcher.DispatchOptions[];
  readonly #bodyBytes: number[];
  #startAt = 0;
  #stopping = false;
  #finished = false;
  #inFlight = 0;
  #interval = 0;
  #timers = new Set<NodeJS.Timeout>();
  #arrivals: Arrivals | null = null;
  #nextDue = Infinity;
  // The interval's figures (reset on every sample).
  #raw = latencyHistogram();
  #corrected = latencyHistogram();
  #sent = 0;
  #resent = 0;
  #completed = 0;
  #dropped = 0;
  #interrupted = 0;
  /** Failed requests whose time went into the histograms (timed out, interrupted). */
  #measuredFailures = 0;
  bytesIn = 0;
  #bytesOut = 0;
  #status: Record<string, number> = {};
  #errors: Record<string, number> = {};
  #lag = latencyHistogram();
  /** the pending #pump timer (one at most) */
  #armed: NodeJS.Timeout | null = null;

  readonly #post: (m: WorkerMessage) => void;

  constructor(init: WorkerInit, post: (m: WorkerMessage) => void) {
    this.#init = init;
    this.#post = post;
    const pipelined = init.pipelining > 1;
    this.#requests = init.scenarios.map((s) => ({
      path: s.path, method: s.method as Dispatcher.HttpMethod, headers: s.headers, body: s.body,
      // undici holds a socket "blocking" after a request until its response headers arrive, and
      // never pipelines after a non-idempotent one: both would turn pipelining off.
      ...(pipelined ? { blocking: false, idempotent: true } : {}),
      // Keep the connection after a GET or DELETE with a body: undici closes it unless told not
      // to, and each such request paid a new TCP connection, --pipelining doing nothing for them
      // (review48). A `connection: close` header of the scenario still closes it (undici reads
      // headers after this). Not for HEAD: a server that wrongly sends a body with its answer
      // would have that body parsed as the next response, failing whatever request came next
      // (review51); undici's close after each HEAD is what keeps that harmless.
      ...(s.method === 'HEAD' ? {} : { reset: false }),
    }));
    this.#bodyBytes = init.scenarios.map((s) => (s.body === null ? 0 : Buffer.byteLength(s.body)));
    for (let n = 0; n < init.connections; n++) {
      const client = new Client(init.origin, {
        // At least 2, even for one request at a time: a Client whose pipelining is 1 writes a
        // connection's next request only after setImmediate (client-h1.js onMessageComplete: "wait
        // a full event loop cycle" in case a server closes a connection it said it would keep),
        // and that wait, after the clock has started, was measured in the latencies — and was
        // the cost of an extra loop turn per response. The depth is still this worker's to keep:
        // a connection has `pipelining` slots, and a slot sends its next request only after its
        // last one completed, so with pipelining 1 a connection never has two in flight. (A server
        // that closes a keep-alive connection without saying so fails the request written to it,
        // counted as an error — as it did with the wait: Node sees the FIN only at the next poll.)
        // In the open model most sends find the connection idle, and undici then waits one
        // setImmediate of its own before writing (its idle-socket check, GHSA-35p6-xmwp-9g52):
        // that turn stays inside the open model's latencies.
        pipelining: Math.max(2, init.pipelining),
        headersTimeout: init.timeoutMs,
        bodyTimeout: init.timeoutMs,
        connectTimeout: init.timeoutMs,
        keepAliveTimeout: 30_000,
        // undici subtracts this from a server's Keep-Alive hint (default 2 s): against a server
        // that says timeout=1 or 2 (Node's keepAliveTimeout of 1–2.9 s) every connection closed
        // after one response, and every request paid a connect (review80: 52 740 → 3 037 req/s).
        // A load tester's connections are never idle for long; 100 ms covers the clock skew.
        keepAliveTimeoutThreshold: 100,
      });
      // A socket error is also delivered to the requests on it (onError); this only keeps the
      // client's own 'error' event from being unhandled.
      client.on('connectionError', () => {});
      this.#clients.push(client);
      for (let p = 0; p < init.pipelining; p++) {
        const slot = new Slot(this, client);
        this.#slots.push(slot);
      }
    }
    // Position-major: every connection's first slot is handed out before any connection's second,
    // so in the open model concurrent arrivals spread over the connections instead of queueing
    // behind each other on one (#free pops from the end). #control keeps the n·P + p indexing.
    const byPosition: Slot[] = [];
    for (let p = 0; p < init.pipelining; p++) {
      for (let n = 0; n * init.pipelining + p < this.#slots.length; n++) byPosition.push(this.#slots[n * init.pipelining + p]!);
    }
    this.#free = byPosition.reverse();
  }

  start(at: number): void {
    this.#startAt = at;
    this.#later(() => this.#begin(), at - clock());
  }

  stop(): void {
    if (!this.#stopping) this.#endSchedule();
  }

  #later(fn: () => void, ms: number): void {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      fn();
    }, Math.max(0, ms));
    this.#timers.add(t);
  }

  #begin(): void {
    const init = this.#init;
    this.#scheduleTick();
    this.#sweep();
    if (init.model === 'open') {
      // This worker's connections are global numbers index + n·workers: its share of the arrivals.
      const share = arrivalShare(init.index, init.workers, init.totalConnections);
      this.#arrivals = new Arrivals(init.from, init.stages, share.offsets, share.period);
      this.#nextDue = this.#arrivals.next();
      this.#pump();
    } else {
      this.#control();
      this.#later(() => this.#endSchedule(), this.#startAt + init.totalMs - clock());
    }
  }

  /**
   * The whole-response deadline: undici's headersTimeout restarts for each pipelined response and
   * its bodyTimeout is only the gap between chunks, so a slow body or a request queued behind
   * slow ones ran on past timeoutMs (review31). Every timeoutMs / 10 (10 to 100 ms) the slots are
   * swept, and a request out for longer than timeoutMs is aborted: it fails with RESPONSE_TIMEOUT
   * within that period of its deadline. One timer per worker, not one per request.
   */
  #sweep(): void {
    const every = Math.min(100, Math.max(10, Math.round(this.#init.timeoutMs / 10)));
    this.#later(() => {
      if (this.#finished) return;
      const now = clock();
      const limit = this.#init.timeoutMs;
      for (const slot of this.#slots) {
        if (slot.inFlight && slot.abort !== null && now - slot.sentAt > limit) {
          slot.abort(Object.assign(new Error(`no complete response within ${limit} ms`), { code: RESPONSE_TIMEOUT }));
        }
      }
      this.#sweep();
    }, every);
  }

  #scheduleTick(): void {
    const at = this.#startAt + (this.#interval + 1) * this.#init.intervalMs;
    this.#later(() => {
      if (this.#finished) return;
      this.#sample(false, at);
      this.#scheduleTick();
    }, at - clock());
  }

  /**
   * Open model: sends every arrival that is due, on a free slot, or counts it dropped; then arms
   * one timer for the next arrival. Node's timers have 1 ms resolution, so a send can be up to
   * about a millisecond late (more when the event loop is busy): that lag is part of the latency
   * measured from the intended start, and is reported on its own (generator.scheduleLag).
   * Completions call this too, so a freed slot takes a due arrival without waiting for the timer.
   */
  #pump = (): void => {
    if (this.#stopping || this.#arrivals === null) return;
    const t = clock() - this.#startAt;
    if (this.#nextDue > t && this.#armed !== null) return;
    while (this.#nextDue <= t) {
      const slot = this.#free.pop();
      if (slot === undefined) this.#dropped++;
      else this.#send(slot, this.#startAt + this.#nextDue);
      this.#nextDue = this.#arrivals.next();
    }
    if (this.#armed !== null) {
      clearTimeout(this.#armed);
      this.#timers.delete(this.#armed);
      this.#armed = null;
    }
    if (this.#nextDue === Infinity) {
      // The schedule may end before totalMs (the last arrival is earlier); the run does not.
      this.#later(() => this.#endSchedule(), this.#startAt + this.#init.totalMs - clock());
      return;
    }
    const armed = setTimeout(() => {
      this.#timers.delete(armed);
      this.#armed = null;
      this.#pump();
    }, Math.max(0, this.#nextDue - t));
    this.#armed = armed;
    this.#timers.add(armed);
  };

  /** Closed model: (de)activates connections to follow the stages; runs every 100 ms. */
  #control(): void {
    if (this.#stopping) return;
    const init = this.#init;
    const elapsed = clock() - this.#startAt;
    const target = Math.round(levelAt(init.from, init.stages, elapsed));
    for (let n = 0; n < init.connections; n++) {
      const on = init.index + n * init.workers < target;
      for (let p = 0; p < init.pipelining; p++) {
        const slot = this.#slots[n * init.pipelining + p]!;
        const was = slot.active;
        slot.active = on;
        if (on && !was && !slot.busy) this.#send(slot, clock());
      }
    }
    if (elapsed < init.totalMs) this.#later(() => this.#control(), Math.min(100, init.totalMs - elapsed));
  }

  /** `now`: the caller's reading of the clock when it has one (a completion sends its slot's next request at once). */
  #send(slot: Slot, intended: number, now: number = clock()): void {
    const init = this.#init;
    let i = 0;
    if (this.#requests.length > 1) {
      const r = Math.random();
      while (init.scenarios[i]!.upTo <= r) i++;
    }
    slot.busy = true;
    slot.inFlight = true;
    slot.abort = null;
    slot.scenario = i;
    slot.writes = 0;
    slot.intended = intended;
    slot.sentAt = now;
    if (this.#init.model === 'open') this.#lag.recordValue(Math.round((now - intended) * 1000));
    this.#inFlight++;
    this.#sent++;
    this.#bytesOut += this.#bodyBytes[i]!;
    slot.client.dispatch(this.#requests[i]!, slot);
  }

  /** undici wrote `slot`'s request again (see Slot.onConnect): its bytes went out again. */
  resent(slot: Slot): void {
    this.#resent++;
    this.#bytesOut += this.#bodyBytes[slot.scenario]!;
  }

  completed(slot: Slot): void {
    const now = clock();
    this.#inFlight--;
    slot.busy = false;
    slot.inFlight = false;
    this.#completed++;
    this.#raw.recordValue(Math.round((now - slot.sentAt) * 1000));
    if (this.#init.model === 'open') this.#corrected.recordValue(Math.round((now - slot.intended) * 1000));
    const code = slot.status;
    this.#status[code] = (this.#status[code] ?? 0) + 1;
    this.#next(slot, false, now);
  }

  failed(slot: Slot, err: Error): void {
    this.#inFlight--;
    slot.busy = false;
    slot.inFlight = false;
    let code = (err as { code?: string }).code ?? err.name;
    // Defensive: should a request on a pipelined connection fail with another's timeout, before its
    // own deadline, it is not a timeout and its time is not a latency. (undici 7.30 re-sends the
    // requests queued behind an aborted one instead: review35 could not produce this.)
    if (code === RESPONSE_TIMEOUT && clock() - slot.sentAt < this.#init.timeoutMs) code = BEHIND_TIMEOUT;
    if (this.#finished || TIMED_OUT.has(code)) {
      // Its time so far is a latency (a lower bound): the histograms must show the wait.
      const now = clock();
      this.#raw.recordValue(Math.round((now - slot.sentAt) * 1000));
      if (this.#init.model === 'open') this.#corrected.recordValue(Math.round((now - slot.intended) * 1000));
      this.#measuredFailures++;
    }
    if (this.#finished) {
      this.#interrupted++;
      return;
    }
    this.#errors[code] = (this.#errors[code] ?? 0) + 1;
    this.#next(slot, true);
  }

  #next(slot: Slot, afterError: boolean, now?: number): void {
    if (this.#stopping) {
      if (this.#inFlight === 0) this.#finish();
      return;
    }
    if (this.#init.model === 'open') {
      this.#free.push(slot);
      this.#pump();
      return;
    }
    if (!slot.active) return;
    if (afterError) {
      slot.busy = true; // held until the pause ends, so #control does not start it twice
      this.#later(() => {
        slot.busy = false;
        if (slot.active && !this.#stopping) this.#send(slot, clock());
      }, ERROR_PAUSE_MS);
    } else if (now === undefined) {
      this.#send(slot, clock());
    } else {
      this.#send(slot, now, now); // one clock reading for this completion and the next send
    }
  }

  /** The schedule is over: no new requests; those in flight get gracefulStopMs. */
  #endSchedule(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#inFlight === 0) this.#finish();
    else this.#later(() => this.#finish(), this.#init.gracefulStopMs);
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    // Requests still in flight fail with ClientDestroyedError into failed(): counted interrupted.
    const left = this.#inFlight;
    Promise.all(this.#clients.map((c) => c.destroy())).then(
      () => {
        this.#interrupted = Math.max(this.#interrupted, left);
        this.#sample(true, clock());
      },
      (err: unknown) => this.#post({ type: 'failed', message: String(err) }),
    );
  }

  #sample(final: boolean, at: number): void {
    const msg: WorkerSample = {
      type: 'sample', index: this.#interval, final, toMs: at - this.#startAt,
      raw: histogramPairs(this.#raw),
      corrected: this.#init.model === 'open' ? histogramPairs(this.#corrected) : null,
      sent: this.#sent, resent: this.#resent, completed: this.#completed, dropped: this.#dropped, interrupted: this.#interrupted, measuredFailures: this.#measuredFailures,
      bytesIn: this.bytesIn, bytesOut: this.#bytesOut, status: this.#status, errors: this.#errors,
      lag: this.#init.model === 'open' ? histogramPairs(this.#lag) : null,
    };
    this.#post(msg);
    this.#interval++;
    this.#raw.reset();
    this.#corrected.reset();
    this.#sent = this.#resent = this.#completed = this.#dropped = this.#interrupted = this.#measuredFailures = this.bytesIn = this.#bytesOut = 0;
    this.#lag.reset();
    this.#status = {};
    this.#errors = {};
  }
}

/**
 * Warms this thread up before the clock starts, against a throwaway server of its own (nothing
 * is sent to the target): undici compiles its llhttp WASM parser synchronously on a thread's
 * first connection (100+ ms on this VM), and V8 needs a few thousand requests through the hot
 * path (dispatch, the handlers, the histogram) before it is optimised — without this, the first
 * half second of every run measures the generator's own warm-up. The same Runner code runs, in
 * the closed model, for WARM_UP_MS; its figures are thrown away.
 */
const WARM_UP_MS = 300;

async function warmUp(init: WorkerInit): Promise<void> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('warm'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  try {
    await new Promise<void>((resolve, reject) => {
      const connections = Math.min(init.connections, 4);
      const runner = new Runner({
        ...init, origin: `http://127.0.0.1:${port}`, index: 0, workers: 1, model: 'closed', connections,
        from: connections, stages: [{ durationMs: WARM_UP_MS, target: connections }], totalMs: WARM_UP_MS,
        scenarios: init.scenarios.map((s) => ({ ...s, headers: [...s.headers] })), intervalMs: WARM_UP_MS, gracefulStopMs: 1000,
      }, (m) => {
        if (m.type === 'failed') reject(new Error(m.message));
        else if (m.type === 'sample' && m.final) resolve();
      });
      runner.start(clock());
    });
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

if (parentPort !== null) {
  const port = parentPort;
  const init = workerData as WorkerInit;
  warmUp(init).then(
    () => {
      const runner = new Runner(init, (m) => port.postMessage(m));
      port.on('message', (m: MainMessage) => {
        if (m.type === 'start') runner.start(m.at);
        else runner.stop();
      });
      port.postMessage({ type: 'ready' } satisfies WorkerMessage);
    },
    (err: unknown) => port.postMessage({ type: 'failed', message: `warm-up: ${String(err)}` } satisfies WorkerMessage),
  );
}
