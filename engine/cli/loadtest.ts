/**
 * `hotpath loadtest URL …`: flags → LoadtestOptions, a live progress line on stderr (on a
 * terminal only: in a log it would be noise), a summary on stdout, and the JSON / CSV / HTML
 * exports. `--json -` / `--csv -` write to stdout; the summary then goes to stderr, so stdout
 * stays parseable.
 */
import { accessSync, constants, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadtest, type LoadtestResult } from '../loadtest/loadtest.js';
import { parseDuration, parseStages, readScenarios, type LoadtestOptions } from '../loadtest/options.js';
import { loadtestCsv, loadtestHtml } from '../loadtest/report.js';

export const LOADTEST_USAGE = `usage: hotpath loadtest URL [--rate N | --connections N] [--duration 10s | --stages LIST]
                         [--pipelining N] [--workers N] [--scenarios FILE] [-m METHOD] [-H "name: value"]...
                         [-b BODY] [--timeout 10s] [--graceful-stop 2s] [--interval 1s] [--no-correct]
                         [--json FILE|-] [--csv FILE|-] [--html FILE] [--quiet]

HTTP/1.1 load (undici, keep-alive) from worker threads, latencies in HDR histograms.
  --rate N         open model: N requests/s on a fixed schedule; an arrival that finds no free
                   connection slot is dropped and counted (as k6's constant-arrival-rate);
                   latency is measured from the intended start
  --connections N  closed model (the default, N = 10): each connection sends back to back (as
                   autocannon); latencies are also reported corrected for coordinated omission
                   (expected interval = mean service time; --no-correct turns that off).
                   Open model: the connections the schedule may use (default 100)
  --duration D     length of the run (default 10s; 500ms, 10s, 1m, 1h)
  --stages LIST    a ramp instead of --duration: DURATION:TARGET,… e.g. "10s:100,30s:100,10s:0";
                   each stage moves linearly to its target: requests/s with --rate (the ramp
                   starts at --rate, which may be 0 here), connections otherwise (starting at
                   --connections, default 0)
  --pipelining N   requests in flight per connection (default 1)
  --workers N      load-generating threads (default: cores - 1, 1 to 4)
  --scenarios FILE JSON array of {method, path, headers, body, weight}; picked by weight
  -m, -H, -b       method, header (repeatable), body of the single request (without --scenarios)
  --timeout D      a request without its whole response D after its send fails, and counts in
                   the latencies at D (default 10s)
  --graceful-stop D  requests in flight when the schedule ends get D to finish (default 2s)
  --interval D     width of one time-series sample (default: duration / 20, 100ms to 1s;
                   at least 10ms)
  --json FILE      the full result as JSON (- for stdout); --csv FILE: the time series + a total row;
  --html FILE      a self-contained report with plots
  --quiet          no summary, no progress line
exit codes: 0 done, 1 no response at all (every request failed) or a generator failure, 2 a usage error`;

const FLAG_NAMES: Record<string, string> = {
  url: 'URL', rate: '--rate', connections: '--connections', pipelining: '--pipelining', durationMs: '--duration',
  stages: '--stages', workers: '--workers', timeoutMs: '--timeout', gracefulStopMs: '--graceful-stop', intervalMs: '--interval', method: '--method',
  headers: '--header', scenarios: '--scenarios', body: '--body',
};

/** Option names in validation messages → the flags the user typed. */
function flagMessage(message: string): string {
  return message.replace(/options\.([A-Za-z]+)/g, (whole, name: string) => FLAG_NAMES[name] ?? whole);
}

function number(v: string | undefined, flag: string, integer: boolean): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new RangeError(`${flag} must be a ${integer ? 'whole number' : 'number'}, got ${JSON.stringify(v)}`);
  }
  return n;
}

export async function runLoadtest(args: string[]): Promise<number> {
  let values, positionals;
  try {
    ({ values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        rate: { type: 'string' }, connections: { type: 'string', short: 'c' }, duration: { type: 'string', short: 'd' },
        stages: { type: 'string' }, pipelining: { type: 'string', short: 'p' }, workers: { type: 'string', short: 'w' },
        scenarios: { type: 'string' }, method: { type: 'string', short: 'm' }, header: { type: 'string', short: 'H', multiple: true },
        body: { type: 'string', short: 'b' }, timeout: { type: 'string' }, 'graceful-stop': { type: 'string' }, interval: { type: 'string' }, 'no-correct': { type: 'boolean' },
        json: { type: 'string' }, csv: { type: 'string' }, html: { type: 'string' }, quiet: { type: 'boolean', short: 'q' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    console.error(`hotpath loadtest: ${(err as Error).message}\n\n${LOADTEST_USAGE}`);
    return 2;
  }
  if (values.help === true) {
    console.log(LOADTEST_USAGE);
    return 0;
  }
  let options: LoadtestOptions;
  try {
    if (positionals.length !== 1) throw new TypeError(`expected one URL, got ${positionals.length === 0 ? 'none' : positionals.map((p) => JSON.stringify(p)).join(' ')}`);
    for (const f of ['json', 'csv', 'html', 'scenarios'] as const) {
      if (values[f] === '') throw new TypeError(`--${f} needs a file name`);
    }
    if (values.html === '-') throw new TypeError('--html needs a file name (the report is a page, not a stream)');
    if (values.json === '-' && values.csv === '-') throw new TypeError('--json - and --csv - would share stdout: give one of them a file');
    // Checked before the run, not after it (review48: a bad --json path threw away a whole run).
    for (const f of ['json', 'csv', 'html'] as const) {
      const file = values[f];
      if (file !== undefined && file !== '-') checkWritable(file, `--${f}`);
    }
    options = { url: positionals[0]! };
    const rate = number(values.rate, '--rate', false);
    if (rate !== undefined) options.rate = rate;
    const connections = number(values.connections, '--connections', true);
    if (connections !== undefined) options.connections = connections;
    const pipelining = number(values.pipelining, '--pipelining', true);
    if (pipelining !== undefined) options.pipelining = pipelining;
    const workers = number(values.workers, '--workers', true);
    if (workers !== undefined) options.workers = workers;
    if (values.duration !== undefined) options.durationMs = parseDuration(values.duration, '--duration');
    if (values.stages !== undefined) options.stages = parseStages(values.stages, '--stages');
    if (values.timeout !== undefined) options.timeoutMs = parseDuration(values.timeout, '--timeout');
    if (values.interval !== undefined) options.intervalMs = parseDuration(values.interval, '--interval');
    if (values['graceful-stop'] !== undefined) options.gracefulStopMs = parseDuration(values['graceful-stop'], '--graceful-stop');
    if (values['no-correct'] === true) options.correct = false;
    if (values.scenarios !== undefined) {
      if (values.method !== undefined || values.header !== undefined || values.body !== undefined) throw new TypeError('-m/-H/-b describe the single request: with --scenarios, put them in the file');
      options.scenarios = readScenarios(values.scenarios);
    } else {
      if (values.method !== undefined) options.method = values.method;
      if (values.body !== undefined) options.body = values.body;
      if (values.header !== undefined) {
        const headers: Record<string, string> = {};
        const seen = new Set<string>();
        for (const h of values.header) {
          const i = h.indexOf(':');
          if (i <= 0) throw new TypeError(`--header must be "name: value", got ${JSON.stringify(h)}`);
          const name = h.slice(0, i).trim();
          // A repeat replaced the first value silently (review80): say so instead.
          if (seen.has(name.toLowerCase())) throw new TypeError(`--header ${JSON.stringify(name)} is given twice: give it once, with the values joined as the header's syntax allows (e.g. "a, b"; Cookie: "a=1; b=2")`);
          seen.add(name.toLowerCase());
          headers[name] = h.slice(i + 1).trim();
        }
        options.headers = headers;
      }
    }
  } catch (err) {
    console.error(`hotpath loadtest: ${flagMessage((err as Error).message)}`);
    return 2;
  }
  const toStdout = values.json === '-' || values.csv === '-';
  const say = (line: string): void => {
    if (values.quiet === true) return;
    if (toStdout) process.stderr.write(`${line}\n`);
    else process.stdout.write(`${line}\n`);
  };
  const live = values.quiet !== true && process.stderr.isTTY === true;
  if (live) {
    options.onProgress = (p) => {
      const line = `${(p.elapsedMs / 1000).toFixed(1)}s/${(p.totalMs / 1000).toFixed(1)}s  ${Math.round(p.rps)} req/s  p99 ${p.p99Ms.toFixed(2)} ms  ${p.completed} done  ${p.errors} errors${options.rate !== undefined ? `  ${p.dropped} dropped` : ''}`;
      process.stderr.write(`\r\x1b[2K${line}`);
    };
  }
  // Ctrl-C ends the run early; the result covers what ran (a second Ctrl-C kills as usual).
  const abort = new AbortController();
  options.signal = abort.signal;
  const onSigint = (): void => {
    process.off('SIGINT', onSigint);
    abort.abort();
  };
  process.on('SIGINT', onSigint);
  let result: LoadtestResult;
  try {
    result = await loadtest(options);
  } catch (err) {
    if (live) process.stderr.write('\r\x1b[2K');
    if (err instanceof TypeError || err instanceof RangeError) {
      console.error(`hotpath loadtest: ${flagMessage(err.message)}`);
      return 2;
    }
    console.error(`hotpath loadtest: ${(err as Error).message}`);
    return 1;
  } finally {
    process.off('SIGINT', onSigint);
  }
  if (live) process.stderr.write('\r\x1b[2K');
  // Each output on its own: one that cannot be written (the disk filled, the directory went
  // away during the run) does not cost the others or the summary.
  let unwritten = 0;
  const output = (flag: string, file: string, text: () => string): void => {
    try {
      if (file === '-') process.stdout.write(text());
      else writeFileSync(file, text());
    } catch (err) {
      unwritten++;
      console.error(`hotpath loadtest: cannot write ${flag} ${file}: ${(err as Error).message}`);
    }
  };
  if (values.json !== undefined) output('--json', values.json, () => JSON.stringify(result, null, 2) + '\n');
  if (values.csv !== undefined) output('--csv', values.csv, () => loadtestCsv(result));
  if (values.html !== undefined) output('--html', values.html, () => loadtestHtml(result));
  for (const line of summary(result)) say(line);
  if (unwritten > 0) return 1;
  if (result.requests.completed === 0) {
    const q = result.requests;
    const why = [
      ...(q.errors > 0 ? [`${q.errors} failed: ${Object.entries(result.errors).map(([k, v]) => `${k} ×${v}`).join(', ')}`] : []),
      ...(q.interrupted > 0 ? [`${q.interrupted} still unanswered at the end`] : []),
    ];
    console.error(`hotpath loadtest: no response at all (${q.total === 0 ? 'nothing was sent' : `${q.total} sent; ${why.join('; ')}`})`);
    return 1;
  }
  return 0;
}

/** Throws a TypeError naming `flag` unless `file` can be written (an existing file, or a new one in a writable directory). */
function checkWritable(file: string, flag: string): void {
  const path = resolve(file);
  let target = path;
  try {
    if (statSync(path).isDirectory()) throw new TypeError(`${flag} ${file} is a directory`);
  } catch (err) {
    if (err instanceof TypeError) throw err;
    target = dirname(path); // does not exist yet: its directory must
  }
  try {
    accessSync(target, constants.W_OK);
  } catch (err) {
    throw new TypeError(`${flag} ${file} cannot be written (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}${target === path ? '' : ` for ${target}`})`, { cause: err });
  }
}

function summary(r: LoadtestResult): string[] {
  const row = (name: string, p: LoadtestResult['latency']['raw']): string =>
    `  ${name.padEnd(10)} ${[p.p50, p.p90, p.p99, p.p999, p.max].map((v) => (p.count === 0 ? 'n/a' : v.toFixed(2)).padStart(9)).join(' ')}`;
  const s = r.settings;
  const lines = [
    `${r.url}: ${r.model} model${r.model === 'open' ? ` (${s.rate} req/s at start)` : ''}, ${s.connections} connections × pipelining ${s.pipelining}, ${s.workers} worker${s.workers === 1 ? '' : 's'}, ${(r.duration.scheduledMs / 1000).toFixed(1)} s`,
    `  latency ms      p50       p90       p99     p99.9       max`,
    row('corrected', r.latency.corrected),
    row('raw', r.latency.raw),
    `  ${r.latency.correction.method === 'intended-start' ? 'corrected = from the intended start' : r.latency.correction.method === 'expected-interval' ? `corrected for coordinated omission (expected interval ${r.latency.correction.expectedIntervalMs} ms)` : 'no correction'}`,
    `  ${r.throughput.rps} req/s, ${r.requests.completed} responses (${Object.entries(r.statusCodes).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none'}), ${r.requests.errors} errors, ${r.requests.dropped} dropped, ${r.requests.interrupted} interrupted`,
    `  ${(r.throughput.bytesPerSec / 1024).toFixed(1)} KiB/s received; generator CPU ${r.cpu.per10kRequestsMs} ms per 10k requests`,
  ];
  const q = r.requests;
  if (q.measured < q.total) {
    const timed = q.measured - q.completed;
    lines.push(`  latencies describe ${q.measured} of the ${q.total} requests sent (${q.completed} answered${timed > 0 ? `, ${timed} timed out or unanswered at the end, at their time so far` : ''}); ${q.total - q.measured} failed without a latency`);
  }
  if (r.generator.scheduleLag !== null) lines.push(`  schedule lag (generator) p50 ${r.generator.scheduleLag.p50} ms, p99 ${r.generator.scheduleLag.p99} ms, max ${r.generator.scheduleLag.max} ms`);
  if (r.requests.errors > 0) lines.push(`  errors: ${Object.entries(r.errors).map(([k, v]) => `${k} ×${v}`).join(', ')}`);
  if (q.resent > 0) lines.push(`  ${q.resent} requests written again by undici after their connection closed under them (pipelined behind a failed one): the server may have seen up to ${q.total + q.resent}`);
  return lines;
}
