/**
 * BENCHMARKS.md / BENCHMARKS.html from bench/results: the newest full run of each component, one
 * row per comparison (component, workload, hotpath, peer, ratio, Node, CPU, date), a plot per
 * component in the HTML; quick runs never feed the full report.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runBenches } from '../../engine/cli/bench.js';

function run(date: string, quick: boolean, node: string, files: unknown[]): string {
  return JSON.stringify({ date, node, cpu: 'Test CPU', cores: 2, quick, files });
}

const limiter = (p50Peer: number): unknown => ({
  file: 'limiter.bench',
  results: [
    { group: 'decision', name: 'hotpath allowSync', role: 'hotpath', p50Ns: 40, avgNs: 41, p99Ns: 60, samples: 10 },
    { group: 'decision', name: 'rate-limiter-flexible', role: 'peer', p50Ns: p50Peer, avgNs: 1, p99Ns: 1, samples: 10, ratio: p50Peer / 40 },
  ],
  extras: [{ group: 'rate', name: 'decisions per second', value: 27e6, unit: 'ops/s' }],
});
const loadtest = {
  file: 'loadtest.bench', results: [],
  extras: [{ group: 'hello world, 10 connections', name: 'throughput hotpath / autocannon', value: 1.02, unit: 'ratio' }],
};

describe('the benchmark report', () => {
  it('takes the newest full run per component, skips quick runs, plots each component', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hotpath-bench-report-'));
    writeFileSync(join(dir, '2026-01-01.json'), run('2026-01-01T10:00:00.000Z', false, 'v20.1.0', [limiter(400)]));
    writeFileSync(join(dir, '2026-02-01-limiter.json'), run('2026-02-01T10:00:00.000Z', false, 'v20.2.0', [limiter(200)]));
    writeFileSync(join(dir, '2026-03-01-quick.json'), run('2026-03-01T10:00:00.000Z', true, 'v20.3.0', [limiter(4000), loadtest]));
    writeFileSync(join(dir, '2026-02-02-loadtest.json'), run('2026-02-02T10:00:00.000Z', false, 'v20.2.0', [loadtest]));
    writeFileSync(join(dir, 'notes.json'), '{"not": "a run"}');
    const md = join(dir, 'out', 'BENCHMARKS.md');
    expect(await runBenches({ quick: false, out: dir, report: md, reportOnly: true })).toBe(0);
    const text = readFileSync(md, 'utf8');
    expect(text).toMatch(/\| component \| workload \| hotpath \| peer \| ratio \| Node \| CPU \| date \|/);
    expect(text).toMatch(/\| limiter \| decision \| hotpath allowSync: 40\.0 ns \| rate-limiter-flexible: 200\.0 ns \| 5\.00 \| v20\.2\.0 \| Test CPU \(2 cores\) \| 2026-02-01 \|/);
    expect(text).toMatch(/\| loadtest \| hello world, 10 connections \| throughput hotpath \/ autocannon \| .* \| 1\.02 \(as measured\) \| v20\.2\.0 \|/);
    expect(text).not.toMatch(/v20\.3\.0|v20\.1\.0/); // neither the quick nor the older run
    expect(text).toMatch(/decisions per second \| 27000000 ops\/s/);
    const html = readFileSync(join(dir, 'out', 'BENCHMARKS.html'), 'utf8');
    expect(html.match(/<svg /g)?.length).toBe(2);
    expect(html).toMatch(/data-ratio="5"/);
    expect(html).not.toMatch(/<(script|link|img)\b/);
  });

  it('a report of another results directory goes into that directory, never over the committed one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hotpath-bench-report-'));
    writeFileSync(join(dir, '2026-02-01-limiter.json'), run('2026-02-01T10:00:00.000Z', false, 'v20.2.0', [limiter(200)]));
    const root = resolve('BENCHMARKS.md');
    const before = existsSync(root) ? readFileSync(root, 'utf8') : undefined;
    expect(await runBenches({ quick: false, out: dir, reportOnly: true })).toBe(0);
    expect(readFileSync(join(dir, 'BENCHMARKS.md'), 'utf8')).toMatch(/\| limiter \| decision \|/);
    expect(existsSync(root) ? readFileSync(root, 'utf8') : undefined).toBe(before);
  });

  it('nothing to report: exit 1, nothing written', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hotpath-bench-report-'));
    writeFileSync(join(dir, 'q.json'), run('2026-03-01T10:00:00.000Z', true, 'v20.3.0', [limiter(1)]));
    expect(await runBenches({ quick: false, out: dir, report: join(dir, 'B.md'), reportOnly: true })).toBe(1);
  });
});
