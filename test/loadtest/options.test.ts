/**
 * Bad input → a clear, typed error that names the option (synchronously: a caller mistake).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { loadtest, parseDuration, parseStages, readScenarios } from '../../engine/loadtest/index.js';
import { resolveOptions } from '../../engine/loadtest/options.js';

const URL_OK = 'http://127.0.0.1:9/';
const dir = mkdtempSync(join(tmpdir(), 'hotpath-loadtest-'));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('loadtest options', () => {
  it('rejects a bad URL with a TypeError naming options.url', () => {
    for (const url of ['not a url', 'ftp://127.0.0.1/', '/relative', 'http://user:pw@127.0.0.1/']) {
      expect(() => loadtest({ url })).toThrow(TypeError);
      expect(() => loadtest({ url })).toThrow(/options\.url/);
    }
  });

  it('rejects a rate ≤ 0 (or not a number) with a RangeError naming options.rate', () => {
    for (const rate of [0, -5, Number.NaN, Infinity, '10' as unknown as number]) {
      expect(() => loadtest({ url: URL_OK, rate })).toThrow(RangeError);
      expect(() => loadtest({ url: URL_OK, rate })).toThrow(/options\.rate must be a positive number/);
    }
    // 0 is the start of a ramp
    expect(resolveOptions({ url: URL_OK, rate: 0, stages: [{ durationMs: 1000, target: 10 }] }).from).toBe(0);
  });

  it('names every other bad option', () => {
    const cases: Array<[object, RegExp]> = [
      [{ connections: 0 }, /options\.connections must be a positive integer, got 0/],
      [{ pipelining: 1.5 }, /options\.pipelining must be a positive integer/],
      [{ workers: -1 }, /options\.workers must be a positive integer/],
      [{ durationMs: '10 parsecs' }, /options\.durationMs must be a duration/],
      [{ durationMs: 0 }, /options\.durationMs must be a duration of at least 1 ms/],
      // review31: under half a ms passed as positive and became 0; over 2^31 − 1 ms a timer fires after 1 ms.
      [{ durationMs: '0.4ms' }, /options\.durationMs must be a duration of at least 1 ms/],
      [{ intervalMs: 0.4 }, /options\.intervalMs must be a duration of at least 1 ms/],
      [{ timeoutMs: '0.2ms' }, /options\.timeoutMs must be a duration of at least 1 ms/],
      [{ durationMs: '600h' }, /options\.durationMs must be at most 2147483647 ms/],
      [{ intervalMs: '600h' }, /options\.intervalMs must be at most/],
      [{ stages: [{ durationMs: '0.3ms', target: 5 }, { durationMs: 1000, target: 5 }] }, /options\.stages\[0\]\.durationMs must be a duration of at least 1 ms/],
      [{ stages: [{ durationMs: '500h', target: 5 }, { durationMs: '500h', target: 5 }] }, /the stages last 3600000000 ms in all/],
      // review31: paths and header values undici refuses were an error per request, not a usage error.
      [{ scenarios: [{ path: '/a b' }] }, /options\.scenarios\[0\]\.path must be a string starting with '\/', without spaces/],
      [{ headers: { 'x-a': '😀' } }, /options\.headers\.x-a must be a string of printable latin1 characters/],
      [{ durationMs: 1000, stages: [{ durationMs: 1000, target: 1 }] }, /exclusive/],
      [{ stages: [] }, /options\.stages must be a non-empty array/],
      [{ stages: [{ durationMs: 1000, target: -1 }] }, /options\.stages\[0\]\.target/],
      [{ stages: [{ durationMs: 1000, target: 1.5 }] }, /whole number of connections/],
      [{ stages: [{ durationMs: 1000, target: 0 }] }, /never open a connection/],
      [{ method: 'GE T' }, /options\.method must be an HTTP method/],
      [{ headers: { 'x-a': 'b\r\nc' } }, /options\.headers\.x-a/],
      [{ scenarios: [] }, /at least one scenario/],
      [{ scenarios: [{ path: 'no-slash' }] }, /options\.scenarios\[0\]\.path/],
      [{ scenarios: [{ path: '/', weight: 0 }] }, /options\.scenarios\[0\]\.weight must be a positive number/],
      [{ scenarios: [{ path: '/', verb: 'GET' }] }, /unknown field "verb"/],
      [{ timeoutMs: -1 }, /options\.timeoutMs/],
      [{ correct: 'yes' }, /options\.correct must be a boolean/],
      // review48: each of these ran a whole run and failed every request (or sent something else).
      [{ rte: 5 }, /options has an unknown field "rte"/],
      [{ body: Buffer.from('hello') }, /options\.body must be a string or a JSON value .*bytes/],
      [{ body: () => 1 }, /options\.body must be a string or a JSON value .*function/],
      [{ body: 5n }, /options\.body must be a string or a JSON value .*bigint/],
      [{ body: ((): object => { const o: Record<string, unknown> = {}; o.self = o; return o; })() }, /options\.body cannot be sent as JSON/],
      [{ scenarios: [{ path: '/', body: new Uint8Array(3) }] }, /options\.scenarios\[0\]\.body must be a string or a JSON value/],
      [{ method: 'CONNECT' }, /options\.method CONNECT opens a tunnel/],
      [{ scenarios: [{ method: 'connect' }] }, /options\.scenarios\[0\]\.method CONNECT/],
      [{ headers: { Expect: '100-continue' } }, /options\.headers\.Expect is not allowed/],
      [{ headers: { 'transfer-encoding': 'chunked' } }, /options\.headers\.transfer-encoding is not allowed/],
      [{ scenarios: [{ headers: { upgrade: 'websocket' } }] }, /options\.scenarios\[0\]\.headers\.upgrade is not allowed/],
      [{ headers: { 'keep-alive': 'timeout=5' } }, /keep-alive is not allowed/],
      [{ body: 'abc', headers: { 'content-length': '5' } }, /options\.headers\.content-length is "5" but the body is 3 bytes/],
      [{ scenarios: [{ headers: { 'Content-Length': '2' } }] }, /options\.scenarios\[0\]\.headers\.Content-Length is "2" but the body is 0 bytes/],
      [{ headers: { Host: 'a', host: 'b' } }, /options\.headers has host twice/],
      // review48: bounds instead of a run that exhausts memory or falls behind its own schedule.
      [{ connections: 65_537 }, /options\.connections must be at most 65536/],
      [{ pipelining: 1025 }, /options\.pipelining must be at most 1024/],
      [{ connections: 2000, pipelining: 1000 }, /options\.connections × options\.pipelining must be at most 1048576/],
      [{ rate: 1e9 }, /options\.rate must be at most 1000000/],
      [{ rate: 0, stages: [{ durationMs: 1000, target: 2e6 }] }, /options\.stages\[0\]\.target must be at most 1000000 requests\/s/],
      [{ stages: [{ durationMs: 1000, target: 1e7 }] }, /options\.stages\[0\]\.target must be at most 65536 connections/],
      [{ workers: 65 }, /options\.workers must be at most 64/],
      [{ intervalMs: 5 }, /options\.intervalMs must be at least 10 ms/],
    ];
    for (const [extra, message] of cases) {
      expect(() => resolveOptions({ url: URL_OK, ...extra } as never), inspect(extra)).toThrow(message);
    }
  });

  it('parses durations and stages as the CLI writes them', () => {
    expect(parseDuration('250ms', 'x')).toBe(250);
    expect(parseDuration('10s', 'x')).toBe(10_000);
    expect(parseDuration('1.5m', 'x')).toBe(90_000);
    expect(parseDuration('1h', 'x')).toBe(3_600_000);
    expect(parseDuration('400', 'x')).toBe(400);
    expect(() => parseDuration('-1s', '--duration')).toThrow(/--duration must be a duration/);
    expect(parseStages('10s:100, 30s:100,10s:0')).toEqual([
      { durationMs: 10_000, target: 100 }, { durationMs: 30_000, target: 100 }, { durationMs: 10_000, target: 0 },
    ]);
    expect(() => parseStages('10s')).toThrow(/--stages stage 1 must be DURATION:TARGET/);
    expect(() => parseStages('10s:-5')).toThrow(RangeError);
    expect(() => parseStages('')).toThrow(/--stages must list/);
  });

  it('reads a scenarios file, and names the file and the entry when it is bad', () => {
    const good = file('good.json', JSON.stringify([{ method: 'POST', path: '/a', body: { x: 1 }, weight: 3 }, { path: '/b' }]));
    expect(readScenarios(good)).toHaveLength(2);
    const wrapped = file('wrapped.json', JSON.stringify({ scenarios: [{ path: '/c' }] }));
    expect(readScenarios(wrapped)).toEqual([{ path: '/c' }]);
    expect(() => readScenarios(join(dir, 'missing.json'))).toThrow(/--scenarios .*missing\.json: cannot read it \(ENOENT\)/);
    expect(() => readScenarios(file('bad.json', '{ nope'))).toThrow(/not valid JSON/);
    expect(() => readScenarios(file('obj.json', '{"a": 1}'))).toThrow(/expected a JSON array/);
    expect(() => readScenarios(file('entry.json', '[{"path": "/"}, {"path": "/x", "weight": -2}]'))).toThrow(/scenarios\[1\]\.weight must be a positive number/);
    for (const f of ['missing.json', 'bad.json', 'obj.json', 'entry.json']) {
      try {
        readScenarios(join(dir, f));
      } catch (err) {
        expect(err).toBeInstanceOf(TypeError);
      }
    }
  });

  it('builds the wire scenarios: JSON bodies get a content-type, weights become cumulative bounds', () => {
    const o = resolveOptions({ url: 'http://127.0.0.1:9/base?q=1', scenarios: [{ method: 'post', body: { a: 1 }, weight: 1 }, { path: '/x', weight: 3 }] });
    expect(o.scenarios[0]).toEqual({ method: 'POST', path: '/base?q=1', headers: ['content-type', 'application/json'], body: '{"a":1}', upTo: 0.25 });
    expect(o.scenarios[1]!.upTo).toBe(1);
    expect(resolveOptions({ url: URL_OK }).model).toBe('closed');
    expect(resolveOptions({ url: URL_OK, rate: 5 }).connections).toBe(100);
    // every worker owns at least one connection
    expect(resolveOptions({ url: URL_OK, connections: 2, workers: 4 }).workers).toBe(2);
    // review48: weights that add up past the largest double sent everything to the last one.
    const huge = resolveOptions({ url: URL_OK, scenarios: [{ path: '/a', weight: 1e308 }, { path: '/b', weight: 1e308 }] });
    expect(huge.scenarios.map((w) => w.upTo)).toEqual([0.5, 1]);
    // a matching content-length passes, and is left for undici to write (not sent twice)
    const cl = resolveOptions({ url: URL_OK, method: 'POST', body: 'héllo', headers: { 'Content-Length': '6' } });
    expect(cl.scenarios[0]!.headers).toEqual([]);
    // review48: the closed-model ramp starts at --connections, 0 included (as documented)
    expect(resolveOptions({ url: URL_OK, connections: 0, stages: [{ durationMs: 1000, target: 4 }] }).from).toBe(0);
  });
});
