/**
 * `hotpath cache status|clear|warm`: the cache of a running service through its admin API (the
 * token from HOTPATH_ADMIN_TOKEN or --token), or with `--redis URL` the shared tier (L3) directly.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { GuardedConnector } from '../redis/guarded.js';

export const CACHE_USAGE = `usage: hotpath cache status|clear|warm [--url URL] [--token TOKEN] [--redis URL] [--file FILE]

Against a running hotpath serve (--url, default http://127.0.0.1:8080; the admin token from --token
or HOTPATH_ADMIN_TOKEN):
  status   the cache's statistics (tiers, hits, misses, entries) as JSON
  clear    empties every tier
  warm     loads entries from --file (JSON: [{"key", "value", "ttl"?}, ...]), up to 500 entries and
           512 KiB per request, with a progress bar on a terminal. Every entry is checked first
           (a bad one: exit 2, nothing sent); should the server still refuse a request, the
           error says how many entries were warmed before it
With --redis URL, on Redis directly (keys hotpath:c:*): status counts the keys, clear deletes them
(other instances' local tiers keep their copies until they expire); warm needs a running server.
exit codes: 0 done, 1 the server or Redis failed, 2 a usage error`;

const BATCH = 500;
const BATCH_BYTES = 512 * 1024;

export async function runCacheCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, strict: true, options: { url: { type: 'string' }, token: { type: 'string' }, redis: { type: 'string' }, file: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  } catch (err) {
    console.error(`hotpath cache: ${(err as Error).message}\n\n${CACHE_USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    console.log(CACHE_USAGE);
    return 0;
  }
  const action = positionals[0];
  if (positionals.length !== 1 || (action !== 'status' && action !== 'clear' && action !== 'warm')) {
    console.error(`hotpath cache: expected one of status, clear, warm\n\n${CACHE_USAGE}`);
    return 2;
  }
  if (values.redis !== undefined) {
    if (action === 'warm') {
      console.error('hotpath cache warm: needs a running server (values are encoded by its engine); drop --redis');
      return 2;
    }
    return onRedis(values.redis, action);
  }
  const token = values.token ?? process.env.HOTPATH_ADMIN_TOKEN;
  if (token === undefined || token === '') {
    console.error('hotpath cache: the admin API needs a token: --token or HOTPATH_ADMIN_TOKEN');
    return 2;
  }
  const base = (values.url ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
  const call = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const res = await fetch(`${base}${path}`, {
      method, headers: { Authorization: `Bearer ${token}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text.slice(0, 500)}`);
    return JSON.parse(text) as unknown;
  };
  try {
    if (action === 'status') console.log(JSON.stringify(await call('GET', '/admin/cache'), null, 2));
    else if (action === 'clear') console.log(JSON.stringify(await call('POST', '/admin/cache/clear')));
    else {
      if (values.file === undefined) {
        console.error('hotpath cache warm: --file FILE is required');
        return 2;
      }
      let entries: unknown;
      try {
        entries = JSON.parse(readFileSync(values.file, 'utf8'));
      } catch (err) {
        console.error(`hotpath cache warm: ${values.file}: ${(err as Error).message}`);
        return 2;
      }
      if (!Array.isArray(entries)) {
        console.error(`hotpath cache warm: ${values.file} must hold a JSON array of {"key", "value", "ttl"?}`);
        return 2;
      }
      // The whole file is checked before anything is sent: the server checks each request on its
      // own, so a bad entry in a later batch would fail only after the earlier ones were written.
      const bad = entries.findIndex((e) => invalidEntry(e) !== undefined);
      if (bad >= 0) {
        console.error(`hotpath cache warm: ${values.file}: entry ${bad}: ${invalidEntry(entries[bad])}; nothing was sent`);
        return 2;
      }
      let done = 0;
      const tty = process.stderr.isTTY === true;
      // Batches of at most BATCH entries and BATCH_BYTES of JSON (the server's body limit is 1 MiB
      // by default); an entry larger than that goes alone.
      const batches: unknown[][] = [];
      let batch: unknown[] = [];
      let bytes = 0;
      for (const e of entries) {
        const size = Buffer.byteLength(JSON.stringify(e) ?? '') + 1;
        if (batch.length > 0 && (batch.length >= BATCH || bytes + size > BATCH_BYTES)) {
          batches.push(batch);
          batch = [];
          bytes = 0;
        }
        batch.push(e);
        bytes += size;
      }
      if (batch.length > 0) batches.push(batch);
      let start = 0; // the file index of the batch's first entry
      for (const b of batches) {
        let r: { warmed: number };
        try {
          r = (await call('POST', '/admin/cache/warm', { entries: b })) as { warmed: number };
        } catch (err) {
          // The server checks a whole request before writing any of it: the entries before this
          // batch are in, this one's are not. Its "entry I" is an index within the batch.
          if (tty) process.stderr.write('\n');
          const msg = (err as Error).message.replace(/\bentry (\d+):/, (_, i: string) => `entry ${start + Number(i)} of ${values.file}:`);
          console.error(`hotpath cache warm: entries ${start}-${start + b.length - 1} refused (${msg}); ${done} of ${entries.length} entries${start > 0 ? ` (0-${start - 1})` : ''} were warmed before it, none after`);
          return 1;
        }
        start += b.length;
        done += r.warmed;
        if (tty) {
          const width = 30;
          const filled = Math.round((width * done) / entries.length);
          process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${entries.length}`);
        }
      }
      if (tty) process.stderr.write('\n');
      console.log(JSON.stringify({ warmed: done }));
    }
    return 0;
  } catch (err) {
    console.error(`hotpath cache ${action}: ${(err as Error).message}`);
    return 1;
  }
}

/**
 * Why the server's warm route would refuse this entry (the rules of engine/server/server.ts's
 * POST /admin/cache/warm, mirrored: an object with a non-empty string "key", a "value", and a
 * "ttl" that is absent or a positive number of ms); undefined when it is fine.
 */
function invalidEntry(e: unknown): string | undefined {
  const o = e !== null && typeof e === 'object' && !Array.isArray(e) ? (e as Record<string, unknown>) : undefined;
  if (o === undefined || typeof o.key !== 'string' || o.key.length === 0) return '"key" must be a non-empty string';
  if (!('value' in o)) return '"value" is missing';
  if (o.ttl !== undefined && (typeof o.ttl !== 'number' || !(o.ttl > 0))) return '"ttl" must be a positive number of ms';
  return undefined;
}

async function onRedis(url: string, action: 'status' | 'clear'): Promise<number> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false, Connector: GuardedConnector });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    let cursor = '0';
    let keys = 0;
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', 'hotpath:c:*', 'COUNT', 1000);
      cursor = next;
      keys += batch.length;
      if (action === 'clear' && batch.length > 0) await redis.unlink(...batch);
    } while (cursor !== '0');
    console.log(JSON.stringify(action === 'status' ? { redis: url.replace(/\/\/[^@]*@/, '//***@'), keys } : { deleted: keys }));
    return 0;
  } catch (err) {
    console.error(`hotpath cache ${action}: Redis at ${url.replace(/\/\/[^@]*@/, '//***@')}: ${(err as Error).message}`);
    return 1;
  } finally {
    redis.disconnect();
  }
}
