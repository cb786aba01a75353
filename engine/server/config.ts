/**
 * The service's configuration: defaults < JSON config file < environment < command-line flags.
 * One validation names the bad field and where it came from (`HOTPATH_PORT must be an integer
 * between 0 and 65535, got "80a"`).
 */
import { isIP } from 'node:net';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { BALANCER_ALGORITHMS } from '../balance/balancer.js';

export interface ServeConfig {
  /** Interface to bind. Default 127.0.0.1 (HOTPATH_HOST, --host). */
  host: string;
  /** Port; 0 picks a free one. Default 8080 (HOTPATH_PORT, --port). */
  port: number;
  /** Worker threads. Default: the engine's (cores − 1, at least 1) (HOTPATH_WORKERS, --workers). */
  workers: number | undefined;
  /** Redis URL; unset = embedded (HOTPATH_REDIS_URL — empty means unset —, --redis). */
  redisUrl: string | undefined;
  /** Bearer token of /admin; unset = the admin API is off (HOTPATH_ADMIN_TOKEN, --admin-token). */
  adminToken: string | undefined;
  /** Proxy addresses whose X-Forwarded-For is believed (HOTPATH_TRUST_PROXY, comma-separated; --trust-proxy). */
  trustProxy: string[];
  /** /process limit per client: requests per second (default 100) and burst (default: the limit per second). */
  limitPerSecond: number;
  limitBurst: number;
  /** L1 entries of the cache (HOTPATH_CACHE_L1_ENTRIES). Default 10 000. */
  cacheL1Entries: number;
  /**
   * Most bytes the cache's L1 holds on the serving thread (the encoded size of each entry: the
   * proxy's stored answers and /process results), evicting by its policy past it; at least
   * proxyCacheMaxBytes. Default 256 MiB (HOTPATH_CACHE_L1_MAX_BYTES). Needs a restart.
   */
  cacheL1MaxBytes: number;
  /** Largest request body (bytes). Default 1 MiB (HOTPATH_BODY_LIMIT). */
  bodyLimit: number;
  /** node:http headersTimeout / requestTimeout / keepAliveTimeout (ms). */
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** How long a graceful shutdown waits for requests in flight (ms). Default 10 000. */
  shutdownTimeoutMs: number;
  /** HTTP/2: over TLS with cert/key (HTTP/1.1 still offered), else cleartext h2c (HOTPATH_HTTP2=1, --http2). */
  http2: boolean;
  /** PEM files of a TLS certificate and its key (HOTPATH_TLS_CERT / HOTPATH_TLS_KEY, --cert / --key). */
  cert: string | undefined;
  key: string | undefined;
  /**
   * Reverse-proxy mode: upstream base URLs; every request except /health, /ready, /metrics and
   * /admin is forwarded to one of them (HOTPATH_UPSTREAMS, comma-separated; --upstream, repeatable).
   * Hot-reloadable. Default none (the demo /process service).
   */
  upstreams: string[];
  /**
   * How the proxy picks an upstream (a balancer algorithm; `consistent-hash` keys on the client
   * address, so a client stays on its upstream). Default 'p2c-ewma' (HOTPATH_UPSTREAM_ALGORITHM, --balance).
   */
  upstreamAlgorithm: string;
  /**
   * The proxy's wait for an upstream's response headers, and between body chunks (ms); a request
   * body's upload time is not counted (proxy.ts watchBody). Default 30 000.
   */
  upstreamTimeoutMs: number;
  /** Active health check of the upstreams: HTTP GET on this path; unset = a TCP connect (HOTPATH_UPSTREAM_HEALTH_PATH). */
  upstreamHealthPath: string | undefined;
  /** Largest upstream response the proxy caches (bytes); 0 = no proxy cache. Default 1 MiB (HOTPATH_PROXY_CACHE_MAX_BYTES). */
  proxyCacheMaxBytes: number;
}

export const SERVE_DEFAULTS: ServeConfig = {
  host: '127.0.0.1',
  port: 8080,
  workers: undefined,
  redisUrl: undefined,
  adminToken: undefined,
  trustProxy: [],
  limitPerSecond: 100,
  limitBurst: 100,
  cacheL1Entries: 10_000,
  cacheL1MaxBytes: 256 * 1024 * 1024,
  bodyLimit: 1024 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  shutdownTimeoutMs: 10_000,
  http2: false,
  cert: undefined,
  key: undefined,
  upstreams: [],
  upstreamAlgorithm: 'p2c-ewma',
  upstreamTimeoutMs: 30_000,
  upstreamHealthPath: undefined,
  proxyCacheMaxBytes: 1024 * 1024,
};

/** Where each field may come from: its config-file key, its environment variable, its flag. */
const FIELDS: Record<keyof ServeConfig, { env?: string; flag?: string; kind: 'string' | 'host' | 'token' | 'int' | 'list' | 'bool' | 'urls' | 'algorithm' | 'path' | 'redis'; min?: number; max?: number }> = {
  host: { env: 'HOTPATH_HOST', flag: 'host', kind: 'host' },
  port: { env: 'HOTPATH_PORT', flag: 'port', kind: 'int', min: 0, max: 65535 },
  workers: { env: 'HOTPATH_WORKERS', flag: 'workers', kind: 'int', min: 1, max: 64 },
  redisUrl: { env: 'HOTPATH_REDIS_URL', flag: 'redis', kind: 'redis' },
  adminToken: { env: 'HOTPATH_ADMIN_TOKEN', flag: 'admin-token', kind: 'token' },
  trustProxy: { env: 'HOTPATH_TRUST_PROXY', flag: 'trust-proxy', kind: 'list' },
  limitPerSecond: { env: 'HOTPATH_LIMIT_PER_SECOND', kind: 'int', min: 1, max: 1e9 },
  limitBurst: { env: 'HOTPATH_LIMIT_BURST', kind: 'int', min: 1, max: 1e9 },
  cacheL1Entries: { env: 'HOTPATH_CACHE_L1_ENTRIES', kind: 'int', min: 1, max: 1e8 },
  cacheL1MaxBytes: { env: 'HOTPATH_CACHE_L1_MAX_BYTES', kind: 'int', min: 1024, max: 64 * 1024 * 1024 * 1024 },
  bodyLimit: { env: 'HOTPATH_BODY_LIMIT', kind: 'int', min: 0, max: 1024 * 1024 * 1024 },
  headersTimeoutMs: { kind: 'int', min: 1, max: 3_600_000 },
  requestTimeoutMs: { kind: 'int', min: 0, max: 3_600_000 },
  keepAliveTimeoutMs: { kind: 'int', min: 0, max: 3_600_000 },
  shutdownTimeoutMs: { kind: 'int', min: 0, max: 3_600_000 },
  http2: { env: 'HOTPATH_HTTP2', flag: 'http2', kind: 'bool' },
  cert: { env: 'HOTPATH_TLS_CERT', flag: 'cert', kind: 'string' },
  key: { env: 'HOTPATH_TLS_KEY', flag: 'key', kind: 'string' },
  upstreams: { env: 'HOTPATH_UPSTREAMS', flag: 'upstream', kind: 'urls' },
  upstreamAlgorithm: { env: 'HOTPATH_UPSTREAM_ALGORITHM', flag: 'balance', kind: 'algorithm' },
  upstreamTimeoutMs: { env: 'HOTPATH_UPSTREAM_TIMEOUT_MS', kind: 'int', min: 1, max: 3_600_000 },
  upstreamHealthPath: { env: 'HOTPATH_UPSTREAM_HEALTH_PATH', kind: 'path' },
  proxyCacheMaxBytes: { env: 'HOTPATH_PROXY_CACHE_MAX_BYTES', kind: 'int', min: 0, max: 64 * 1024 * 1024 },
};

/** The flags `hotpath serve` accepts (node:util parseArgs shape). */
export const SERVE_FLAGS = {
  host: { type: 'string' },
  port: { type: 'string' },
  workers: { type: 'string' },
  redis: { type: 'string' },
  'admin-token': { type: 'string' },
  'trust-proxy': { type: 'string', multiple: true },
  config: { type: 'string' },
  http2: { type: 'boolean' },
  cert: { type: 'string' },
  key: { type: 'string' },
  upstream: { type: 'string', multiple: true },
  balance: { type: 'string' },
  help: { type: 'boolean' },
} as const;

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/** One value from `source` (a name for messages), checked and converted. */
function value(field: keyof ServeConfig, raw: unknown, source: string): unknown {
  const f = FIELDS[field];
  if (f.kind === 'string') {
    if (typeof raw !== 'string') throw new TypeError(`${source} must be a string, got ${show(raw)}`);
    // An empty value from a file or a flag is a mistake (an unset shell variable, say): an empty
    // admin token would turn the admin API on with no way in.
    if (raw === '') throw new TypeError(`${source} must not be empty (leave it out instead)`);
    return raw;
  }
  if (f.kind === 'host') {
    if (typeof raw !== 'string' || raw.trim() === '') throw new TypeError(`${source} must be a host name or an IP address, got ${show(raw)}`);
    // Trimmed, as the other fields are: ' 127.0.0.1' from a shell is not a name to look up. A
    // port here (or a URL) would fail at listen, as a name that does not resolve: refused now.
    const h = raw.trim();
    if (isIP(h) !== 0) return h;
    if (/^\[.*\]$/.test(h) && isIP(h.slice(1, -1)) === 6) throw new TypeError(`${source} must be an IP address without brackets (${h.slice(1, -1)}), got ${show(raw)}`);
    if (/^[^:/]+:\d*$/.test(h) || /^\[.*\]:\d*$/.test(h)) throw new TypeError(`${source} must be a host without a port (the port is a setting of its own: HOTPATH_PORT, --port), got ${show(raw)}`);
    if (!/^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$/.test(h)) throw new TypeError(`${source} must be a host name or an IP address, got ${show(raw)}`);
    return h;
  }
  if (f.kind === 'token') {
    if (typeof raw !== 'string') throw new TypeError(`${source} must be a string, got ${show(raw)}`);
    if (raw === '') throw new TypeError(`${source} must not be empty (leave it out instead)`);
    // A token no client can present would lock the admin API as an empty one would: Node strips
    // blanks around a header value (a trailing space never arrives), and a header's bytes are
    // read as latin1 (a UTF-8 'ä' a client sends is not the 'ä' configured). Visible ASCII only.
    if (!/^[\x21-\x7e]+$/.test(raw)) throw new TypeError(`${source} must be visible ASCII characters only (no blanks, no accents or other non-ASCII): a client could not send it in an Authorization header`);
    return raw;
  }
  if (f.kind === 'redis') {
    if (typeof raw !== 'string' || raw.trim() === '') throw new TypeError(`${source} must be a redis:// or rediss:// URL, got ${show(raw)}`);
    let parsed: URL | undefined;
    try {
      parsed = new URL(raw.trim());
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') || parsed.hostname === '') {
      throw new TypeError(`${source} must be a redis:// or rediss:// URL, got ${show(raw)}`);
    }
    return raw.trim();
  }
  if (f.kind === 'bool') {
    if (typeof raw === 'boolean') return raw;
    if (raw === '1' || raw === 'true') return true;
    if (raw === '0' || raw === 'false') return false;
    throw new TypeError(`${source} must be true or false (1 or 0), got ${show(raw)}`);
  }
  if (f.kind === 'urls') {
    const items = Array.isArray(raw) ? raw.flatMap((x) => (typeof x === 'string' ? x.split(',') : [x])) : typeof raw === 'string' ? raw.split(',') : undefined;
    if (items === undefined || !items.every((x) => typeof x === 'string')) throw new TypeError(`${source} must be a list of http(s) URLs, got ${show(raw)}`);
    const urls = (items as string[]).map((x) => x.trim()).filter((x) => x.length > 0);
    for (const u of urls) {
      let parsed: URL;
      try {
        parsed = new URL(u);
      } catch {
        throw new TypeError(`${source}: ${JSON.stringify(u)} is not a URL`);
      }
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new TypeError(`${source}: ${JSON.stringify(u)} must be an http: or https: URL`);
      if (parsed.pathname !== '/' || parsed.search !== '') throw new TypeError(`${source}: ${JSON.stringify(u)} must be an origin (scheme, host, port) without a path`);
    }
    if (new Set(urls.map((u) => new URL(u).origin)).size !== urls.length) throw new TypeError(`${source} names an upstream twice`);
    return urls.map((u) => new URL(u).origin);
  }
  if (f.kind === 'algorithm') {
    if (typeof raw !== 'string' || !BALANCER_ALGORITHMS.includes(raw as never)) {
      throw new TypeError(`${source} must be one of ${BALANCER_ALGORITHMS.join(', ')}; got ${show(raw)}`);
    }
    return raw;
  }
  if (f.kind === 'path') {
    if (typeof raw !== 'string' || !raw.startsWith('/')) throw new TypeError(`${source} must be a path starting with '/', got ${show(raw)}`);
    return raw;
  }
  if (f.kind === 'list') {
    const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : undefined;
    if (items === undefined || !items.every((x) => typeof x === 'string')) throw new TypeError(`${source} must be a list of addresses, got ${show(raw)}`);
    const addresses = (items as string[]).map((x) => x.trim()).filter((x) => x.length > 0);
    // Matched against the socket's address as it is: a host name or a CIDR range never would.
    for (const a of addresses) if (isIP(a) === 0) throw new TypeError(`${source}: ${JSON.stringify(a)} is not an IP address (names and ranges are not supported)`);
    return addresses;
  }
  const n = typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw.trim()) : raw;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < f.min! || n > f.max!) {
    throw new RangeError(`${source} must be an integer between ${f.min} and ${f.max}, got ${show(raw)}`);
  }
  return n;
}

/** Options of {@link resolveServeConfig}. */
export interface ResolveOptions {
  /**
   * Read the TLS certificate and key files and check they make a usable pair (at start: a missing
   * file is a configuration error naming its setting, exit 2, not a failure to start). Off for a
   * reload, where they need a restart anyway and a file being renewed must not block other changes.
   */
  readFiles?: boolean;
  /**
   * With readFiles: filled with the bytes read, to be handed to startService (`{ tls }`) — a
   * file that can be read once only (a pipe, `--cert <(…)`) would be empty the second time
   * (review52).
   */
  read?: { cert?: Buffer; key?: Buffer };
}

/**
 * Resolves the configuration. `file` is a JSON object (keys as in ServeConfig) or a path to one;
 * `env` is usually process.env; `flags` the parsed command-line flags.
 * @throws TypeError / RangeError naming the field and its source.
 */
export function resolveServeConfig(
  file: string | Record<string, unknown> | undefined,
  env: Record<string, string | undefined> = {},
  flags: Record<string, unknown> = {},
  options: ResolveOptions = {},
): ServeConfig {
  const out: Record<string, unknown> = { ...SERVE_DEFAULTS };
  /** Where each field set by a layer came from (the last layer that set it), for messages. */
  const from: Partial<Record<keyof ServeConfig, string>> = {};
  let fromFile: Record<string, unknown> = {};
  let fileName = 'the config file';
  if (typeof file === 'string') {
    fileName = file;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new TypeError(`cannot read the config file ${file}: ${(err as Error).message}`);
    }
    try {
      fromFile = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new TypeError(`the config file ${file} is not valid JSON: ${(err as Error).message}`);
    }
  } else if (file !== undefined) {
    fromFile = file;
  }
  if (typeof fromFile !== 'object' || fromFile === null || Array.isArray(fromFile)) throw new TypeError(`${fileName} must hold a JSON object`);
  for (const [k, v] of Object.entries(fromFile)) {
    if (!Object.hasOwn(FIELDS, k)) throw new TypeError(`${fileName}: "${k}" is not a setting (known: ${Object.keys(FIELDS).join(', ')})`);
    if (v === null) continue;
    out[k] = value(k as keyof ServeConfig, v, `${fileName}: ${k}`);
    from[k as keyof ServeConfig] = `${fileName}: ${k}`;
  }
  for (const [k, f] of Object.entries(FIELDS) as Array<[keyof ServeConfig, (typeof FIELDS)[keyof ServeConfig]]>) {
    if (f.env === undefined) continue;
    const raw = env[f.env];
    if (raw === undefined || raw.trim() === '') continue; // empty (or blank) means unset
    out[k] = value(k, raw, f.env);
    from[k] = f.env;
  }
  for (const [k, f] of Object.entries(FIELDS) as Array<[keyof ServeConfig, (typeof FIELDS)[keyof ServeConfig]]>) {
    if (f.flag === undefined) continue;
    const raw = flags[f.flag];
    if (raw === undefined) continue;
    out[k] = value(k, raw, `--${f.flag}`);
    from[k] = `--${f.flag}`;
  }
  // The burst follows the rate unless some layer set it (as the library's limiters do: `burst`
  // defaults to `limit`): a limit of 5/s alone must not leave a burst of 100 (review38).
  const burstSet = fromFile.limitBurst != null || (env.HOTPATH_LIMIT_BURST ?? '').trim() !== '' || (FIELDS.limitBurst.flag !== undefined && flags[FIELDS.limitBurst.flag] !== undefined);
  if (!burstSet) out.limitBurst = out.limitPerSecond;
  // An answer the proxy may cache must fit in the L1 that holds it: else none that large is kept.
  if ((out.proxyCacheMaxBytes as number) > (out.cacheL1MaxBytes as number)) {
    throw new RangeError(`${from.proxyCacheMaxBytes ?? 'proxyCacheMaxBytes'} (${String(out.proxyCacheMaxBytes)}) must not be larger than ${from.cacheL1MaxBytes ?? 'cacheL1MaxBytes'} (${String(out.cacheL1MaxBytes)}): no answer that large could be kept in the cache's L1`);
  }
  // A certificate without its key (or a key alone) would be a failure to start: named here.
  if ((out.cert === undefined) !== (out.key === undefined)) {
    const [set, missing] = out.cert !== undefined ? ['cert', 'key'] as const : ['key', 'cert'] as const;
    throw new TypeError(`${from[set]} is set but ${missing === 'key' ? 'the key is' : 'the certificate is'} not: TLS needs both (${FIELDS[missing].env}, --${FIELDS[missing].flag} or "${missing}" in the config file)`);
  }
  if (options.readFiles === true && out.cert !== undefined && out.key !== undefined) {
    const read = (k: 'cert' | 'key'): Buffer => {
      try {
        return readFileSync(out[k] as string);
      } catch (err) {
        throw new TypeError(`${from[k]}: cannot read ${JSON.stringify(out[k])}: ${(err as Error).message}`);
      }
    };
    const cert = read('cert');
    const key = read('key');
    try {
      createSecureContext({ cert, key });
    } catch (err) {
      throw new TypeError(`${from.cert} and ${from.key}: not a usable certificate and key: ${(err as Error).message}`);
    }
    if (options.read !== undefined) {
      options.read.cert = cert;
      options.read.key = key;
    }
  }
  return out as unknown as ServeConfig;
}
