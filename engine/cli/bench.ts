/**
 * `hotpath bench [--quick] [--filter TEXT] [--out DIR]`: runs every
 * bench file (dist/bench/*.bench.js), each in a process of its own, prints their output (each
 * ratio against its peer), and writes DIR/<date>[-filter][-quick].json and .md (default DIR:
 * bench/results under the current directory) with the Node version and CPU.
 *
 * Then it regenerates the benchmark report, BENCHMARKS.md and BENCHMARKS.html (one table row per
 * comparison: component, workload, hotpath, peer, ratio, Node, CPU, date; the HTML adds a plot
 * per component), from the newest full (non-quick) run of each component found in DIR. A quick
 * run's figures are not for quoting: it writes its report into DIR (DIR/BENCHMARKS.md), never
 * over the committed one at the root, and reports on the quick run itself.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { cpus, tmpdir, availableParallelism } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { distUrl } from '../runtime/paths.js';

export interface BenchArgs {
  quick: boolean;
  filter?: string;
  out: string;
  /**
   * The report's path (markdown; the HTML is written beside it). Default: BENCHMARKS.md at the
   * root for full runs in the default DIR (bench/results); DIR/BENCHMARKS.md in quick mode or with
   * another DIR (a run into a scratch directory never rewrites the committed report).
   */
  report?: string;
  /** Only regenerate the report from DIR; run nothing (`--report-only`). */
  reportOnly?: boolean;
}

interface FileResult {
  file: string;
  results: Array<{ group: string; name: string; role: string; p50Ns: number; avgNs: number; p99Ns: number; samples: number; ratio?: number }>;
  extras: Array<{ group: string; name: string; value: number; unit: string }>;
}

/** Where the report goes when `--report` is not given (see BenchArgs.report). */
function defaultReport(outDir: string, quick: boolean): string {
  return !quick && outDir === resolve(DEFAULT_OUT) ? 'BENCHMARKS.md' : join(outDir, 'BENCHMARKS.md');
}

/** The results directory `hotpath bench` uses by default (relative to the working directory). */
export const DEFAULT_OUT = 'bench/results';

export async function runBenches(args: BenchArgs): Promise<number> {
  if (args.reportOnly === true) {
    const written = writeReport(resolve(args.out), args.report ?? defaultReport(resolve(args.out), false), false);
    if (written === undefined) {
      console.error(`hotpath bench: no full (non-quick) results in ${resolve(args.out)} to report on`);
      return 1;
    }
    console.log(`hotpath bench: wrote ${written.md} and ${written.html}`);
    return 0;
  }
  const dir = fileURLToPath(distUrl('bench/'));
  if (!existsSync(dir)) {
    console.error(`hotpath bench: no built benchmarks in ${dir} (run \`npm run build\` in a clone of hotpath)`);
    return 2;
  }
  const files = readdirSync(dir).filter((f) => f.endsWith('.bench.js') && (!args.filter || f.includes(args.filter))).sort();
  if (files.length === 0) {
    console.error(`hotpath bench: no bench file matches ${JSON.stringify(args.filter)}`);
    return 2;
  }
  const tmp = mkdtempSync(join(tmpdir(), 'hotpath-bench-'));
  const collected: FileResult[] = [];
  let failures = 0;
  try {
    for (const [i, f] of files.entries()) {
      // Progress on a terminal: the benches print their own tables; this says which of how many.
      if (process.stderr.isTTY === true) process.stderr.write(`\x1b[1mhotpath bench [${i + 1}/${files.length}] ${f}\x1b[0m\n`);
      const out = join(tmp, `${f}.json`);
      const code = await new Promise<number>((done) => {
        // --expose-gc: a bench may collect before a measurement that counts garbage collections.
        const child = spawn(process.execPath, ['--expose-gc', join(dir, f)], {
          stdio: 'inherit',
          env: { ...process.env, HOTPATH_BENCH_OUT: out, HOTPATH_BENCH_QUICK: args.quick ? '1' : '0' },
        });
        child.on('exit', (c, signal) => done(c ?? (signal ? 1 : 0)));
      });
      if (code !== 0 || !existsSync(out)) {
        console.error(`hotpath bench: ${f} failed (exit ${code})`);
        failures++;
        continue;
      }
      collected.push(JSON.parse(readFileSync(out, 'utf8')) as FileResult);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const now = new Date();
  const meta = {
    date: now.toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: availableParallelism(),
    quick: args.quick,
  };
  const outDir = resolve(args.out);
  mkdirSync(outDir, { recursive: true });
  // A filtered run gets its own file, so it never overwrites the day's full results.
  const suffix = `${args.filter ? `-${args.filter.replace(/[^a-z0-9_-]/gi, '_')}` : ''}${args.quick ? '-quick' : ''}`;
  const base = join(outDir, `${now.toISOString().slice(0, 10)}${suffix}`);
  writeFileSync(`${base}.json`, JSON.stringify({ ...meta, files: collected }, null, 2) + '\n');
  writeFileSync(`${base}.md`, markdown(meta, collected));
  console.log(`\nhotpath bench: wrote ${base}.json and ${base}.md`);
  // Quick figures never replace the committed report: a quick run reports on itself, in DIR; so
  // does a run into another DIR.
  const written = writeReport(outDir, args.report ?? defaultReport(outDir, args.quick), args.quick);
  if (written !== undefined) console.log(`hotpath bench: wrote ${written.md} and ${written.html}`);
  return failures === 0 ? 0 : 1;
}

interface RunFile {
  date: string;
  node: string;
  cpu: string;
  cores: number;
  quick: boolean;
  files: FileResult[];
}

interface Component {
  component: string;
  run: RunFile;
  file: FileResult;
}

/**
 * The newest result of every bench file among DIR/*.json (full runs only, unless `quick`: then
 * the quick runs only), sorted by component name.
 */
function latestComponents(dir: string, quick: boolean): Component[] {
  if (!existsSync(dir)) return [];
  const newest = new Map<string, Component>();
  for (const name of readdirSync(dir).filter((f) => f.endsWith('.json'))) {
    let run: RunFile;
    try {
      run = JSON.parse(readFileSync(join(dir, name), 'utf8')) as RunFile;
    } catch {
      continue; // not a run file
    }
    if (!Array.isArray(run.files) || typeof run.date !== 'string' || run.quick !== quick) continue;
    for (const file of run.files) {
      const component = file.file.replace(/\.bench$/, '');
      const seen = newest.get(component);
      if (seen === undefined || seen.run.date < run.date) newest.set(component, { component, run, file });
    }
  }
  return [...newest.values()].sort((a, b) => a.component.localeCompare(b.component));
}

/** One comparison of the report: a row with a ratio (peer p50 / hotpath p50), or a 'ratio' extra. */
interface Comparison {
  workload: string;
  hotpath: string;
  peer: string;
  /** > 1: hotpath is better by that factor */
  ratio: number;
  note: string;
}

function comparisons(file: FileResult): Comparison[] {
  const out: Comparison[] = [];
  const groups = new Map<string, FileResult['results']>();
  for (const r of file.results) groups.set(r.group, [...(groups.get(r.group) ?? []), r]);
  for (const [group, rows] of groups) {
    const mine = rows[0]!;
    for (const r of rows.slice(1)) {
      if (r.ratio === undefined) continue;
      out.push({
        workload: group, hotpath: `${mine.name}: ${fmt(mine.p50Ns)}`,
        peer: `${r.name}${r.role === 'peer' ? '' : ' (hotpath alternative)'}: ${fmt(r.p50Ns)}`, ratio: r.ratio, note: 'p50 per op',
      });
    }
  }
  // Figures that are not timings but compare with a peer (the load tester's, the service's):
  // "<x> hotpath / <peer>" extras; their names say the direction.
  // A latency ratio (unit 'ratio (lower is better)') is turned over, so that in the report every
  // ratio reads the same way: > 1, hotpath is better.
  for (const e of file.extras) {
    if (e.unit === 'ratio') {
      out.push({ workload: e.group, hotpath: e.name, peer: '(in the name)', ratio: e.value, note: 'as measured' });
    } else if (e.unit === 'ratio (lower is better)' && e.value > 0) {
      out.push({ workload: e.group, hotpath: `${e.name} = ${e.value.toFixed(2)} (lower is better; shown as its inverse)`, peer: '(in the name)', ratio: 1 / e.value, note: 'as measured' });
    }
  }
  return out;
}

function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function htmlEscape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Writes the report (markdown at `mdPath`, HTML beside it) from the newest run of each component
 * in `dir`; undefined when there is nothing to report.
 */
function writeReport(dir: string, mdPath: string, quick: boolean): { md: string; html: string } | undefined {
  const comps = latestComponents(dir, quick);
  if (comps.length === 0) return undefined;
  const md = resolve(mdPath);
  const html = md.replace(/\.md$/i, '') + '.html';
  const title = quick ? 'hotpath benchmarks (quick mode: not for quoting)' : 'hotpath benchmarks';
  const lines = [
    `# ${title}`,
    '',
    'Generated by `npm run bench` (`hotpath bench`) from the newest full run of each component in',
    `\`${relative(process.cwd(), dir).split(sep).join('/') || '.'}/\` (a \`--filter\` run updates its components). Each row is`,
    'hotpath against a peer library measured in the same run, on the same machine. ratio: the',
    "peer's median (p50) time per operation / hotpath's, so > 1 means hotpath is faster; rows",
    'marked "as measured" are ratios the bench computes itself (e.g. "throughput hotpath /',
    'autocannon"; a latency ratio, where lower is better, is shown inverted so that > 1 always means',
    'hotpath is better). Bench machines here are small shared VMs: compare ratios, not absolute',
    'figures. Plots: BENCHMARKS.html.',
    '',
    '| component | workload | hotpath | peer | ratio | Node | CPU | date |',
    '|---|---|---|---|---:|---|---|---|',
  ];
  const perComponent: Array<{ c: Component; rows: Comparison[] }> = [];
  for (const c of comps) {
    const rows = comparisons(c.file);
    perComponent.push({ c, rows });
    for (const r of rows) {
      lines.push(`| ${c.component} | ${cell(r.workload)} | ${cell(r.hotpath)} | ${cell(r.peer)} | ${fmtRatioCell(r.ratio)}${r.note === 'as measured' ? ' (as measured)' : ''} | ${c.run.node} | ${cell(c.run.cpu)} (${c.run.cores} cores) | ${c.run.date.slice(0, 10)} |`);
    }
  }
  const figures = perComponent.filter(({ c }) => c.file.extras.some((e) => e.unit !== 'ratio' && e.unit !== 'ratio (lower is better)'));
  if (figures.length > 0) {
    lines.push('', '## Other figures', '');
    for (const { c } of figures) {
      lines.push(`### ${c.component} (${c.run.date.slice(0, 10)}, Node ${c.run.node})`, '', '| workload | measure | value |', '|---|---|---:|');
      for (const e of c.file.extras) {
        if (e.unit === 'ratio' || e.unit === 'ratio (lower is better)') continue;
        lines.push(`| ${cell(e.group)} | ${cell(e.name)} | ${Number.isInteger(e.value) ? e.value : e.value.toFixed(2)} ${e.unit} |`);
      }
      lines.push('');
    }
  }
  mkdirSync(resolve(md, '..'), { recursive: true });
  writeFileSync(md, lines.join('\n') + '\n');
  writeFileSync(html, reportHtml(title, perComponent));
  return { md, html };
}

/**
 * The HTML form: per component, a table and a plot of its ratios (bars on a log₂ axis centred on
 * 1×: right of the line hotpath wins). Static SVG, no script, no external assets.
 */
function reportHtml(title: string, list: Array<{ c: Component; rows: Comparison[] }>): string {
  const sections = list.map(({ c, rows }) => {
    const W = 900;
    const rowH = 22;
    const L = 420;
    const H = 30 + rows.length * rowH;
    const maxLog = Math.max(1, ...rows.map((r) => Math.abs(Math.log2(Math.max(r.ratio, 1e-6)))));
    const span = Math.ceil(maxLog);
    const x = (ratio: number): number => L + ((Math.log2(Math.max(ratio, 1e-6)) + span) / (2 * span)) * (W - L - 20);
    const bars = rows.map((r, i) => {
      const y = 20 + i * rowH;
      const x0 = x(1);
      const x1 = x(r.ratio);
      const label = `${r.workload} — ${r.peer === '(in the name)' ? r.hotpath : r.peer.replace(/:.*$/, '')}`;
      return `<text x="${L - 8}" y="${y + 14}" text-anchor="end">${htmlEscape(label.length > 70 ? label.slice(0, 69) + '…' : label)}</text>`
        + `<rect x="${Math.min(x0, x1).toFixed(1)}" y="${y + 3}" width="${Math.max(1, Math.abs(x1 - x0)).toFixed(1)}" height="${rowH - 8}" fill="${r.ratio >= 1 ? '#2ca02c' : '#d62728'}" data-ratio="${r.ratio}"><title>${htmlEscape(label)}: ${r.ratio.toFixed(2)}×</title></rect>`
        + `<text x="${(Math.max(x0, x1) + 4).toFixed(1)}" y="${y + 14}">${r.ratio.toFixed(2)}×</text>`;
    }).join('');
    const ticks = Array.from({ length: 2 * span + 1 }, (_, i) => 2 ** (i - span)).map((t) => `<line x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="14" y2="${H - 6}" stroke="${t === 1 ? '#444' : '#ddd'}"/><text x="${x(t).toFixed(1)}" y="11" text-anchor="middle">${t >= 1 ? `${t}×` : `1/${1 / t}×`}</text>`).join('');
    const table = rows.map((r) => `<tr><td>${htmlEscape(r.workload)}</td><td>${htmlEscape(r.hotpath)}</td><td>${htmlEscape(r.peer)}</td><td>${r.ratio.toFixed(2)}</td></tr>`).join('');
    return `<section><h2>${htmlEscape(c.component)}</h2><p class="meta">${htmlEscape(c.run.date)} · Node ${htmlEscape(c.run.node)} · ${htmlEscape(c.run.cpu)} (${c.run.cores} cores)</p>`
      + (rows.length === 0 ? '<p>No peer comparison in this bench (its figures are in BENCHMARKS.md).</p>'
        : `<svg width="${W}" height="${H}" role="img" aria-label="${htmlEscape(c.component)} ratios">${ticks}${bars}</svg>`
          + `<table><thead><tr><th>workload</th><th>hotpath</th><th>peer</th><th>ratio</th></tr></thead><tbody>${table}</tbody></table>`)
      + '</section>';
  }).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${htmlEscape(title)}</title>
<style>body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:960px}svg{background:#fafafa;border:1px solid #ddd}
svg text{font-size:11px;fill:#333}table{border-collapse:collapse;margin:8px 0 24px}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}.meta{color:#666;font-size:12px}</style>
</head><body><h1>${htmlEscape(title)}</h1>
<p>ratio = the peer's median time per operation / hotpath's (bars right of 1×: hotpath faster), or, where marked "as measured", the ratio named in the row — turned over where lower is better, so right of 1× is always hotpath ahead. Same run, same machine per component.</p>
${sections}
</body></html>
`;
}

function fmt(ns: number): string {
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)} µs`;
  return `${ns.toFixed(1)} ns`;
}

function markdown(meta: { date: string; node: string; cpu: string; cores: number; quick: boolean }, files: FileResult[]): string {
  const lines = [
    `# hotpath benchmarks — ${meta.date.slice(0, 10)}${meta.quick ? ' (quick mode: not for quoting)' : ''}`,
    '',
    `Node ${meta.node}, ${meta.cpu}, ${meta.cores} cores. Medians (p50) per operation; ratio = that row's p50 / the group's first row's p50.`,
    '',
  ];
  for (const f of files) {
    lines.push(`## ${f.file}`, '', '| group | case | p50 | avg | p99 | ratio |', '|---|---|---:|---:|---:|---:|');
    for (const r of f.results) {
      lines.push(`| ${r.group} | ${r.name}${r.role === 'peer' ? ' (peer)' : ''} | ${fmt(r.p50Ns)} | ${fmt(r.avgNs)} | ${fmt(r.p99Ns)} | ${r.ratio === undefined ? '—' : r.ratio.toFixed(2)} |`);
    }
    if (f.extras.length > 0) {
      lines.push('', '| measure | value |', '|---|---:|');
      for (const e of f.extras) lines.push(`| ${e.group}: ${e.name} | ${Number.isInteger(e.value) ? e.value : e.value.toFixed(2)} ${e.unit} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

/** A ratio for the table: two decimals, or two significant digits when that would read 0.00. */
function fmtRatioCell(r: number): string {
  return r >= 0.01 || r === 0 ? r.toFixed(2) : r.toPrecision(2);
}
