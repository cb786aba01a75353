/**
 * `hotpath serve`: parses flags, resolves the configuration (flags > env > config file > defaults),
 * starts the service, logs as JSON lines (pino; pretty is left to pino-pretty if you pipe into it),
 * and shuts down gracefully on SIGTERM / SIGINT.
 */
import { parseArgs } from 'node:util';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { pino } from 'pino';
import { resolveServeConfig, SERVE_FLAGS } from '../server/config.js';
import { startService } from '../server/server.js';

export const SERVE_USAGE = `usage: hotpath serve [--host H] [--port P] [--workers N] [--redis URL] [--admin-token T]
                     [--trust-proxy ADDR]... [--http2] [--cert FILE --key FILE] [--config FILE]
                     [--upstream URL]... [--balance ALGORITHM]

Starts the hotpath service on embedded defaults (127.0.0.1:8080, no Redis):
  POST /process   rate limit per client, cache by content hash, compress + checksum on a worker
  GET  /health    liveness        GET /ready    readiness (503 while closing or Redis is down)
  GET  /metrics   Prometheus      /admin/...    with a bearer token only (HOTPATH_ADMIN_TOKEN)
Proxy mode (--upstream URL, repeatable; hot-reloadable from the config file): every other path is
  rate limited per client and forwarded to an upstream (balancer --balance: p2c-ewma by default,
  round-robin, weighted, least-connections, consistent-hash by client address), with health
  checks, a breaker per upstream, failover of bodiless requests, and GETs cached by Cache-Control.
Settings: flags > environment (HOTPATH_HOST, HOTPATH_PORT, HOTPATH_WORKERS, HOTPATH_REDIS_URL,
HOTPATH_ADMIN_TOKEN, HOTPATH_TRUST_PROXY, HOTPATH_LIMIT_PER_SECOND, HOTPATH_LIMIT_BURST,
HOTPATH_CACHE_L1_ENTRIES, HOTPATH_CACHE_L1_MAX_BYTES, HOTPATH_BODY_LIMIT, HOTPATH_HTTP2,
HOTPATH_TLS_CERT, HOTPATH_TLS_KEY, HOTPATH_UPSTREAMS, HOTPATH_UPSTREAM_ALGORITHM,
HOTPATH_UPSTREAM_TIMEOUT_MS, HOTPATH_UPSTREAM_HEALTH_PATH, HOTPATH_PROXY_CACHE_MAX_BYTES;
empty = unset) > --config FILE (JSON) > defaults. --http2: cleartext h2c, or with --cert/--key HTTP/2
over TLS (HTTP/1.1 still answered).
Stops on SIGTERM / SIGINT: no new connections, requests in flight finish, then the engine closes.
exit codes: 0 stopped cleanly, 1 failed to start or the shutdown timeout cut accepted requests,
2 a usage or configuration error`;

export async function runServe(args: string[]): Promise<number> {
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({ args, options: SERVE_FLAGS, strict: true, allowPositionals: false }));
  } catch (err) {
    console.error(`hotpath serve: ${(err as Error).message}\n\n${SERVE_USAGE}`);
    return 2;
  }
  if (values.help === true) {
    console.log(SERVE_USAGE);
    return 0;
  }
  const file = values.config as string | undefined;
  // The file's text as it is before it is read for the configuration: compared again once the
  // watcher runs (below), so an edit made while the service starts is not lost.
  const loadedText = file === undefined ? undefined : readText(file);
  let config;
  const read: { cert?: Buffer; key?: Buffer } = {};
  try {
    config = resolveServeConfig(file, process.env, values, { readFiles: true, read });
  } catch (err) {
    console.error(`hotpath serve: ${(err as Error).message}`);
    return 2;
  }
  // JSON lines; on a terminal, one readable line per entry instead (no pino-pretty dependency).
  const log = pino({ name: 'hotpath', base: { pid: process.pid } }, process.stdout.isTTY === true ? prettyStream() : process.stdout);
  let service;
  try {
    service = await startService(config, log, { tls: read });
  } catch (err) {
    log.error({ err }, 'failed to start');
    return 1;
  }
  log.info({ url: service.url, workers: service.engine.runtime.pool.threads, redis: config.redisUrl !== undefined, admin: config.adminToken !== undefined, ...(config.upstreams.length > 0 ? { upstreams: config.upstreams } : {}) }, `listening on ${service.url}`);
  // The config file is watched (polled: editors often replace the file rather than write it):
  // a valid change is applied live where it can be; an invalid one is logged and ignored.
  if (file !== undefined) {
    // What was last said to need a restart (JSON of the fields and their values): said once, not
    // again at every later reload that still carries it.
    let warned = '';
    const reload = (): void => {
      let next;
      try {
        next = resolveServeConfig(file, process.env, values);
      } catch (err) {
        log.error({ file, error: (err as Error).message }, 'config rejected: the running configuration stays');
        return;
      }
      let applied, needRestart;
      try {
        ({ applied, needRestart } = service.reconfigure(next));
      } catch (err) {
        log.error({ file, error: (err as Error).message }, 'config rejected: the running configuration stays');
        return;
      }
      if (applied.length > 0) log.info({ file, applied }, 'config reloaded');
      const pending = JSON.stringify(needRestart.map((k) => [k, next[k]]));
      if (needRestart.length > 0 && pending !== warned) log.warn({ file, needRestart }, 'config changes that need a restart were not applied');
      warned = needRestart.length > 0 ? pending : '';
    };
    watchFile(file, { interval: 250 }, (now, before) => {
      if (now.mtimeMs === before.mtimeMs && now.size === before.size) return;
      reload();
    });
    // The watcher compares with the file as it finds it now: a change made while the service was
    // starting (after the file was read, before the watcher) would never be seen. Checked once,
    // by content (an mtime can miss a quick edit): a change is applied or rejected as any other.
    // (Should the watcher see the same change too, the second reload changes nothing.)
    if (readText(file) !== loadedText) reload();
  }
  return new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      if (file !== undefined) unwatchFile(file);
      log.info({ signal, inflight: service.inflight }, 'shutting down');
      service.close().then(
        () => {
          // Requests cut by the shutdown timeout were accepted and not answered: not a clean exit.
          log.info({ accepted: service.accepted, served: service.served, abandoned: service.abandoned, cut: service.cut }, 'stopped');
          resolve(service.cut > 0 ? 1 : 0);
        },
        (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    // A second signal while shutting down forces the exit (the first one's drain may be waiting
    // for its timeout): said, not silent.
    let stopping = false;
    const onSignal = (signal: string): void => {
      if (!stopping) {
        stopping = true;
        stop(signal);
        return;
      }
      log.warn({ signal, inflight: service.inflight }, 'second signal: exiting now without draining');
      process.exit(1);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

/** A file's text, or undefined when it cannot be read (that is for the configuration to report). */
function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** A destination that prints pino's JSON lines as `HH:MM:SS.mmm LEVEL message key=value …`. */
function prettyStream(): { write(line: string): void } {
  return {
    write(line: string): void {
      let e: Record<string, unknown>;
      try {
        e = JSON.parse(line) as Record<string, unknown>;
      } catch {
        process.stdout.write(line);
        return;
      }
      const { time, level, msg, pid: _pid, name: _name, hostname: _host, ...rest } = e;
      const t = new Date(Number(time)).toISOString().slice(11, 23);
      const extra = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
      process.stdout.write(`${t} ${(LEVELS[Number(level)] ?? String(level)).padEnd(5)} ${String(msg ?? '')}${extra ? `  ${extra}` : ''}\n`);
    },
  };
}
