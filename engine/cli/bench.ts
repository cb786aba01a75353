/**
 * `hotpath bench [--quick] [--filter TEXT] [--out DIR]`: runs every bench file (dist/bench/
 * *.bench.js), each in a process of its own, prints their output (each ratio against its peer),
 * and writes DIR/<date>[-filter][-quick].json and .md (default DIR: bench/results under the current
 * directory) with the Node version and CPU.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { cpus, tmpdir, availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { distUrl } from '../runtime/paths.js';

export interface BenchArgs {
  quick: boolean;
  filter?: string;
  out: string;
}

interface FileResult {
  file: string;
  results: Array<{ group: string; name: string; role: string; p50Ns: number; avgNs: number; p99Ns: number; samples: number; ratio?: number }>;
  extras: Array<{ group: string; name: string; value: number; unit: string }>;
}

export async function runBenches(args: BenchArgs): Promise<number> {
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
  return failures === 0 ? 0 : 1;
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
