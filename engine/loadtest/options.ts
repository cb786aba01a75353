/**
 * Options of the load tester: the public shapes, one DEFAULTS, and the one validation at the
 * public boundary (`loadtest()` and `hotpath loadtest` both go through {@link resolveOptions}).
 * Caller mistakes throw TypeError / RangeError naming the option; the CLI maps those to exit 2.
 */
import { MAX_TIMER_MS } from '../timer.js';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** One stage of a ramp: move linearly from the previous target to `target` over `durationMs`. */
export interface Stage {
  /** Length of the stage in ms (> 0). */
  durationMs: number;
  /** requests/s at the end of the stage (open model) or connections (closed model); ≥ 0. */
  target: number;
}

/** One kind of request; a run picks among them by weight. */
export interface Scenario {
  /** HTTP method; default 'GET'. */
  method?: string;
  /** Path and query, relative to the URL's origin (starts with '/'); default: the URL's path. */
  path?: string;
  /** Request headers; a string value each. */
  headers?: Record<string, string>;
  /** Request body: a string as is; any other JSON value is sent as JSON (content-type set). */
  body?: unknown;
  /** Relative weight (> 0); default 1. */
  weight?: number;
}

/** Options of {@link loadtest}. All optional except `url`. */
export interface LoadtestOptions {
  /** Target URL (http: or https:); its origin receives every request, its path is the default path. */
  url: string;
  /**
   * Open model: the arrival rate in requests/s (k6's constant-arrival-rate). Iterations that find
   * no free slot (connection × pipelining) at their intended start are dropped and counted. With
   * `stages`, the ramp starts from this rate (0 allowed there only). Absent: closed model.
   */
  rate?: number;
  /**
   * Closed model: connections that each send back to back (as autocannon); default 10. Open model:
   * the connections available to the schedule (its slots are connections × pipelining); default 100.
   * Closed model with `stages`: the ramp starts from this many connections (default 0).
   */
  connections?: number;
  /** Requests in flight per connection (HTTP/1.1 pipelining); default 1. */
  pipelining?: number;
  /** Length of the run in ms when no `stages` are given; default 10_000. Exclusive with `stages`. */
  durationMs?: number;
  /** A ramp: each stage moves linearly from the previous target to its own (see {@link Stage}). */
  stages?: Stage[];
  /** Weighted request kinds; default one GET of `url`. */
  scenarios?: Scenario[];
  /** Method, headers and body of the default scenario (ignored when `scenarios` is given). */
  method?: string;
  headers?: Record<string, string>;
  body?: unknown;
  /** Worker threads that generate the load; default min(4, max(1, availableParallelism() - 1)). */
  workers?: number;
  /** A request without a complete response after this many ms fails with a timeout; default 10_000. */
  timeoutMs?: number;
  /** Requests still in flight when the schedule ends get this many ms to finish; default 2000. */
  gracefulStopMs?: number;
  /** Width of one time-series sample in ms; default: duration / 20 rounded to 100 ms, in [100, 1000]. */
  intervalMs?: number;
  /**
   * Coordinated-omission correction of the closed model; default true. The open model is always
   * measured from the intended start (nothing to correct).
   */
  correct?: boolean;
  /** Called on the main thread once per interval with the running totals (the CLI's progress line). */
  onProgress?: (progress: LoadtestProgress) => void;
  /** Aborting ends the run early (the result covers what ran). */
  signal?: AbortSignal;
}

/** What {@link LoadtestOptions.onProgress} receives. */
export interface LoadtestProgress {
  /** ms since the start. */
  elapsedMs: number;
  /** Scheduled length of the run in ms. */
  totalMs: number;
  /** Responses completed so far. */
  completed: number;
  /** Requests/s over the last interval. */
  rps: number;
  /** p99 of the last interval in ms (corrected: from the intended start in the open model, coordinated-omission corrected in the closed one). */
  p99Ms: number;
  errors: number;
  dropped: number;
}

/** Defaults of {@link LoadtestOptions}. */
export const DEFAULTS = {
  closedConnections: 10,
  openConnections: 100,
  pipelining: 1,
  durationMs: 10_000,
  timeoutMs: 10_000,
  gracefulStopMs: 2000,
  correct: true,
  /** Worker threads: one core is left to the main thread (and, on one machine, the server). */
  workers: (): number => Math.min(4, Math.max(1, availableParallelism() - 1)),
} as const;

/** A scenario ready to send: the request options undici takes, built once. */
export interface WireScenario {
  method: string;
  path: string;
  headers: string[];
  body: string | null;
  /** Cumulative weight / total (the last one is 1). */
  upTo: number;
}

/** The validated options the runner uses. */
export interface ResolvedOptions {
  url: URL;
  model: 'open' | 'closed';
  /** Stages with an explicit start value (`from`): the value at time 0. */
  from: number;
  stages: Stage[];
  totalMs: number;
  /** Connections opened (the most the ramp ever needs in the closed model). */
  connections: number;
  pipelining: number;
  workers: number;
  timeoutMs: number;
  gracefulStopMs: number;
  intervalMs: number;
  correct: boolean;
  scenarios: WireScenario[];
}

/**
 * Bounds on what one run may ask for, each a clear RangeError instead of a generator that runs
 * out of memory or falls behind its own schedule (review48: 10 M connections exhausted the heap
 * after 54 s; a pipelining of 1e9 grew to 4 GB; 1e9 requests/s blocked the worker's event loop
 * counting drops one by one, 21 s for a 1 s run, and its latencies were the loop's).
 */
export const LIMITS = {
  /** A host has at most ~64 k ports to one destination: more connections cannot be opened. */
  connections: 65_536,
  pipelining: 1024,
  /** connections × pipelining: one slot object each, in every worker. */
  slots: 1 << 20,
  /** Requests/s of the open model: above this one generator host drops more than it sends. */
  rate: 1_000_000,
  workers: 64,
  /** A narrower time-series interval than this is not kept by Node's 1 ms timers: rows fell behind. */
  intervalMs: 10,
} as const;

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a duration: a number of ms, or a string '250ms', '10s', '1.5m', '1h' (a bare number
 * string is ms). Throws RangeError naming `what` when it is not a positive finite duration.
 */
export function parseDuration(value: unknown, what: string): number {
  let ms: number;
  if (typeof value === 'number') ms = value;
  else if (typeof value === 'string' && DURATION.test(value.trim())) {
    const [, n, unit] = DURATION.exec(value.trim())!;
    ms = Number(n) * UNIT_MS[unit ?? 'ms']!;
  } else throw new RangeError(`${what} must be a duration such as 500ms, 10s, 1m or a number of ms, got ${JSON.stringify(value)}`);
  // Rounded first: a duration under half a millisecond would pass as positive and then be 0 (an
  // interval of 0 spins, a timeout of 0 is none). At most what a Node timer holds: a longer one
  // fires after 1 ms (review31).
  const rounded = Math.round(ms);
  if (!Number.isFinite(ms) || rounded < 1) throw new RangeError(`${what} must be a duration of at least 1 ms, got ${JSON.stringify(value)}`);
  if (rounded > MAX_TIMER_MS) throw new RangeError(`${what} must be at most ${MAX_TIMER_MS} ms (about 24.8 days, the longest Node timer), got ${JSON.stringify(value)}`);
  return rounded;
}


/**
 * Parses `--stages`: comma-separated `DURATION:TARGET` pairs, e.g. "10s:100,30s:100,10s:0"
 * (ramp to 100 over 10 s, hold 30 s, ramp down to 0 over 10 s). Throws RangeError naming `what`.
 */
export function parseStages(text: string, what = '--stages'): Stage[] {
  const parts = text.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (parts.length === 0) throw new RangeError(`${what} must list DURATION:TARGET pairs such as "10s:100,30s:100,10s:0", got ${JSON.stringify(text)}`);
  return parts.map((p, i) => {
    const m = /^([^:]+):\s*(\d+(?:\.\d+)?)$/.exec(p);
    if (m === null) throw new RangeError(`${what} stage ${i + 1} must be DURATION:TARGET (e.g. 10s:100), got ${JSON.stringify(p)}`);
    return { durationMs: parseDuration(m[1]!, `${what} stage ${i + 1} duration`), target: Number(m[2]) };
  });
}

/**
 * Reads a scenarios file: a JSON array of {@link Scenario} (or `{ "scenarios": [...] }`).
 * Throws TypeError naming the file when it cannot be read, is not JSON, or has a bad entry.
 */
export function readScenarios(file: string): Scenario[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new TypeError(`--scenarios ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new TypeError(`--scenarios ${file}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
  if (data !== null && typeof data === 'object' && !Array.isArray(data) && Array.isArray((data as { scenarios?: unknown }).scenarios)) {
    data = (data as { scenarios: unknown }).scenarios;
  }
  if (!Array.isArray(data)) throw new TypeError(`--scenarios ${file}: expected a JSON array of scenarios (or {"scenarios": [...]})`);
  // Shape errors name the file and the entry; checkScenarios does the checking.
  try {
    checkScenarios(data, 'scenarios');
  } catch (err) {
    throw new TypeError(`--scenarios ${file}: ${(err as Error).message}`, { cause: err });
  }
  return data as Scenario[];
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A request path undici sends: characters U+0021–U+00FF only. */
const PATH = /^[\x21-\xff]*$/;

function checkScenarios(list: unknown[], what: string): void {
  if (list.length === 0) throw new TypeError(`${what} must list at least one scenario`);
  list.forEach((s, i) => {
    const at = `${what}[${i}]`;
    if (s === null || typeof s !== 'object' || Array.isArray(s)) throw new TypeError(`${at} must be an object {method, path, headers, body, weight}, got ${JSON.stringify(s)}`);
    const o = s as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      if (!['method', 'path', 'headers', 'body', 'weight'].includes(k)) throw new TypeError(`${at} has an unknown field ${JSON.stringify(k)} (fields: method, path, headers, body, weight)`);
    }
    checkMethod(o.method, `${at}.method`);
    // undici's own rule (a request target of visible characters: no space, no control, nothing
    // past U+00FF), checked here so a bad path is a usage error, not an error per request.
    if (o.path !== undefined && (typeof o.path !== 'string' || !o.path.startsWith('/') || !PATH.test(o.path))) {
      throw new TypeError(`${at}.path must be a string starting with '/', without spaces or control characters (percent-encode them), got ${JSON.stringify(o.path)}`);
    }
    if (o.headers !== undefined) checkHeaders(o.headers, `${at}.headers`);
    checkBody(o.body, o.headers, `${at}`);
    if (o.weight !== undefined && (typeof o.weight !== 'number' || !Number.isFinite(o.weight) || o.weight <= 0)) throw new RangeError(`${at}.weight must be a positive number, got ${JSON.stringify(o.weight)}`);
  });
}

/** A method undici sends on a kept-alive connection: a token, not CONNECT (a tunnel, not a request). */
function checkMethod(m: unknown, what: string): void {
  if (m === undefined) return;
  if (typeof m !== 'string' || !TOKEN.test(m)) throw new TypeError(`${what} must be an HTTP method, got ${JSON.stringify(m)}`);
  if (m.toUpperCase() === 'CONNECT') throw new TypeError(`${what} CONNECT opens a tunnel and cannot be load-tested as a request`);
}

/**
 * Headers undici refuses on every request (each one would fail at send time: review48), and those
 * the tester sets itself. The framing is undici's: it writes content-length from the body.
 */
const REFUSED_HEADERS: Record<string, string> = {
  'transfer-encoding': 'undici frames the body itself (content-length)',
  'keep-alive': 'connections are kept alive by the tester',
  upgrade: 'protocol upgrades are not load-tested',
  expect: 'undici does not send Expect (100-continue) requests',
};

/** The body as the wire carries it (a string as is, anything else as JSON), or null. */
function bodyText(body: unknown): string | null {
  if (body === undefined || body === null) return null;
  return typeof body === 'string' ? body : JSON.stringify(body);
}

/**
 * A body is a string, or a JSON value (sent as JSON). Bytes, functions, symbols and bigints are
 * refused here: JSON.stringify turned a Buffer into {"type":"Buffer",…} and a function into
 * nothing, and the run then sent something else than was meant (review48). A content-length
 * header must be the body's length in bytes.
 */
function checkBody(body: unknown, headers: unknown, at: string): void {
  const what = `${at}${at.endsWith(']') ? '.body' : ''}`.replace(/^options$/, 'options.body');
  if (body !== undefined && body !== null && typeof body !== 'string') {
    if (typeof body === 'function' || typeof body === 'symbol' || typeof body === 'bigint' || ArrayBuffer.isView(body) || body instanceof ArrayBuffer) {
      throw new TypeError(`${what} must be a string or a JSON value (objects, arrays, numbers, booleans), got ${ArrayBuffer.isView(body) || body instanceof ArrayBuffer ? 'bytes (pass a string)' : `a ${typeof body}`}`);
    }
    let text: string | undefined;
    try {
      text = JSON.stringify(body);
    } catch (err) {
      throw new TypeError(`${what} cannot be sent as JSON: ${(err as Error).message}`, { cause: err });
    }
    if (text === undefined) throw new TypeError(`${what} has no JSON form`);
  }
  if (headers === null || typeof headers !== 'object') return;
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() !== 'content-length') continue;
    const text = bodyText(body);
    const length = text === null ? 0 : Buffer.byteLength(text);
    if (String(v).trim() !== String(length)) throw new TypeError(`${what.replace(/\.body$/, '')}.headers.${k} is ${JSON.stringify(v)} but the body is ${length} bytes (leave it out: it is set from the body)`);
  }
}

function checkHeaders(h: unknown, what: string): void {
  if (h === null || typeof h !== 'object' || Array.isArray(h)) throw new TypeError(`${what} must be an object of header: value strings`);
  const seen = new Set<string>();
  for (const [k, v] of Object.entries(h)) {
    if (!TOKEN.test(k)) throw new TypeError(`${what} has an invalid header name ${JSON.stringify(k)}`);
    const lower = k.toLowerCase();
    if (REFUSED_HEADERS[lower] !== undefined) throw new TypeError(`${what}.${k} is not allowed: ${REFUSED_HEADERS[lower]}`);
    if (seen.has(lower) && (lower === 'host' || lower === 'content-length')) throw new TypeError(`${what} has ${lower} twice (as ${JSON.stringify(k)} too)`);
    seen.add(lower);
    // undici's rule for a header value: tab, visible ASCII, space and bytes 0x80–0xFF (latin1).
    if (typeof v !== 'string' || /[^\t\x20-\x7e\x80-\xff]/.test(v)) throw new TypeError(`${what}.${k} must be a string of printable latin1 characters (no CR, LF, other control characters, or characters past U+00FF), got ${JSON.stringify(v)}`);
  }
}

function positiveInt(v: unknown, what: string, max: number, min = 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new RangeError(`${what} must be a ${min === 0 ? 'whole number ≥ 0' : 'positive integer'}, got ${JSON.stringify(v)}`);
  if (v > max) throw new RangeError(`${what} must be at most ${max}, got ${v}`);
  return v;
}

/** The options `loadtest()` knows: anything else is a typo, refused (as in a scenario). */
const KNOWN_OPTIONS = new Set([
  'url', 'rate', 'connections', 'pipelining', 'durationMs', 'stages', 'scenarios', 'method', 'headers', 'body',
  'workers', 'timeoutMs', 'gracefulStopMs', 'intervalMs', 'correct', 'onProgress', 'signal',
]);

function toWire(list: Scenario[], url: URL): WireScenario[] {
  // Relative to the largest: weights near the largest double would add up to Infinity (review48:
  // two of 1e308 sent every request to the second).
  const top = list.reduce((a, s) => Math.max(a, s.weight ?? 1), 0);
  const total = list.reduce((a, s) => a + (s.weight ?? 1) / top, 0);
  let acc = 0;
  return list.map((s, i) => {
    acc += (s.weight ?? 1) / top;
    const headers: string[] = [];
    const own = Object.keys(s.headers ?? {}).map((k) => k.toLowerCase());
    // content-length is undici's to write (checked equal to the body's in checkBody).
    for (const [k, v] of Object.entries(s.headers ?? {})) if (k.toLowerCase() !== 'content-length') headers.push(k, v);
    const body = bodyText(s.body);
    if (body !== null && typeof s.body !== 'string' && !own.includes('content-type')) headers.push('content-type', 'application/json');
    // The last bound is exactly 1 so a random number in [0, 1) always finds a scenario.
    return { method: (s.method ?? 'GET').toUpperCase(), path: s.path ?? `${url.pathname}${url.search}`, headers, body, upTo: i === list.length - 1 ? 1 : acc / total };
  });
}

/**
 * Validates `options` (the one check at the public boundary) and derives what the runner needs.
 * Throws TypeError / RangeError naming the option (`options.rate must be a positive number, got 0`).
 */
export function resolveOptions(options: LoadtestOptions): ResolvedOptions {
  if (options === null || typeof options !== 'object') throw new TypeError('options must be an object with at least a url');
  for (const k of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(k)) throw new TypeError(`options has an unknown field ${JSON.stringify(k)} (fields: ${[...KNOWN_OPTIONS].join(', ')})`);
  }
  let url: URL;
  try {
    url = new URL(String(options.url));
  } catch {
    throw new TypeError(`options.url must be an absolute http:// or https:// URL, got ${JSON.stringify(options.url)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`options.url must be an http:// or https:// URL, got ${JSON.stringify(options.url)}`);
  if (url.username !== '' || url.password !== '') throw new TypeError('options.url must not carry credentials; send an authorization header instead');

  const open = options.rate !== undefined;
  const hasStages = options.stages !== undefined;
  if (open) {
    const r = options.rate;
    if (typeof r !== 'number' || !Number.isFinite(r) || r < 0 || (r === 0 && !hasStages)) {
      throw new RangeError(`options.rate must be a positive number of requests/s${hasStages ? ' (or 0: the start of the stages)' : ''}, got ${JSON.stringify(r)}`);
    }
    if (r > LIMITS.rate) throw new RangeError(`options.rate must be at most ${LIMITS.rate} requests/s, got ${r}`);
  }
  if (hasStages && options.durationMs !== undefined) throw new TypeError('options.durationMs and options.stages are exclusive: the stages give the duration');
  const pipelining = options.pipelining === undefined ? DEFAULTS.pipelining : positiveInt(options.pipelining, 'options.pipelining', LIMITS.pipelining);
  let stages: Stage[];
  let from: number;
  if (hasStages) {
    if (!Array.isArray(options.stages) || options.stages.length === 0) throw new TypeError('options.stages must be a non-empty array of { durationMs, target }');
    stages = options.stages.map((s, i) => {
      if (s === null || typeof s !== 'object') throw new TypeError(`options.stages[${i}] must be { durationMs, target }`);
      const durationMs = parseDuration(s.durationMs, `options.stages[${i}].durationMs`);
      if (typeof s.target !== 'number' || !Number.isFinite(s.target) || s.target < 0) throw new RangeError(`options.stages[${i}].target must be a number ≥ 0, got ${JSON.stringify(s.target)}`);
      if (!open && !Number.isInteger(s.target)) throw new RangeError(`options.stages[${i}].target must be a whole number of connections (closed model), got ${s.target}`);
      const max = open ? LIMITS.rate : LIMITS.connections;
      if (s.target > max) throw new RangeError(`options.stages[${i}].target must be at most ${max} ${open ? 'requests/s' : 'connections'}, got ${s.target}`);
      return { durationMs, target: s.target };
    });
    if (open) from = options.rate!;
    // The ramp starts here, and may start at 0 (the default).
    else from = options.connections === undefined ? 0 : positiveInt(options.connections, 'options.connections', LIMITS.connections, 0);
  } else {
    const d = options.durationMs === undefined ? DEFAULTS.durationMs : parseDuration(options.durationMs, 'options.durationMs');
    const level = open ? options.rate! : options.connections === undefined ? DEFAULTS.closedConnections : positiveInt(options.connections, 'options.connections', LIMITS.connections);
    stages = [{ durationMs: d, target: level }];
    from = level;
  }
  const totalMs = stages.reduce((a, s) => a + s.durationMs, 0);
  if (totalMs > MAX_TIMER_MS) throw new RangeError(`the stages last ${totalMs} ms in all, over the ${MAX_TIMER_MS} ms (about 24.8 days) a run may last`);
  if (!open && Math.max(from, ...stages.map((s) => s.target)) === 0) throw new RangeError('options.stages never open a connection: every target is 0');
  if (open && Math.max(from, ...stages.map((s) => s.target)) === 0) throw new RangeError('options.stages never send a request: every rate is 0');
  const connections = open
    ? options.connections === undefined ? DEFAULTS.openConnections : positiveInt(options.connections, 'options.connections', LIMITS.connections)
    : Math.max(from, ...stages.map((s) => s.target));
  if (connections * pipelining > LIMITS.slots) {
    throw new RangeError(`options.connections × options.pipelining must be at most ${LIMITS.slots} requests in flight, got ${connections} × ${pipelining}`);
  }
  let workers = options.workers === undefined ? DEFAULTS.workers() : positiveInt(options.workers, 'options.workers', LIMITS.workers);
  // Every worker owns at least one connection.
  workers = Math.min(workers, connections);
  const timeoutMs = options.timeoutMs === undefined ? DEFAULTS.timeoutMs : parseDuration(options.timeoutMs, 'options.timeoutMs');
  const gracefulStopMs = options.gracefulStopMs === undefined ? DEFAULTS.gracefulStopMs : parseDuration(options.gracefulStopMs, 'options.gracefulStopMs');
  const intervalMs = options.intervalMs === undefined
    ? Math.min(1000, Math.max(100, Math.round(totalMs / 20 / 100) * 100))
    : parseDuration(options.intervalMs, 'options.intervalMs');
  if (intervalMs < LIMITS.intervalMs) throw new RangeError(`options.intervalMs must be at least ${LIMITS.intervalMs} ms (Node's timers cannot keep narrower samples on time), got ${intervalMs}`);
  if (options.correct !== undefined && typeof options.correct !== 'boolean') throw new TypeError(`options.correct must be a boolean, got ${JSON.stringify(options.correct)}`);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw new TypeError('options.onProgress must be a function');
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw new TypeError('options.signal must be an AbortSignal');
  let list: Scenario[];
  if (options.scenarios !== undefined) {
    if (!Array.isArray(options.scenarios)) throw new TypeError('options.scenarios must be an array of { method, path, headers, body, weight }');
    checkScenarios(options.scenarios, 'options.scenarios');
    list = options.scenarios;
  } else {
    const one: Scenario = {};
    if (options.method !== undefined) one.method = options.method;
    if (options.headers !== undefined) one.headers = options.headers;
    if (options.body !== undefined) one.body = options.body;
    checkMethod(options.method, 'options.method');
    if (options.headers !== undefined) checkHeaders(options.headers, 'options.headers');
    checkBody(options.body, options.headers, 'options');
    list = [one];
  }
  return {
    url, model: open ? 'open' : 'closed', from, stages, totalMs, connections, pipelining, workers,
    timeoutMs, gracefulStopMs, intervalMs, correct: options.correct ?? DEFAULTS.correct,
    scenarios: toWire(list, url),
  };
}
