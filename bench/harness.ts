/**
 * A small harness over mitata's `measure`: each comparison measures hotpath and its peer(s) in
 * the same process, one after the other, and prints the ratio of medians (p50). Results go to
 * the JSON file named by HOTPATH_BENCH_OUT (the `hotpath bench` runner collects them).
 *
 * HOTPATH_BENCH_QUICK=1 shortens every measurement (CI runs that, to keep the benches working;
 * its figures are not for quoting).
 */
import { writeFileSync } from 'node:fs';
import { measure } from 'mitata';
import { Redis } from 'ioredis';

export const QUICK = process.env.HOTPATH_BENCH_QUICK === '1';

/** One measured function. `ops` is how many operations one call performs (per-op figures divide by it). */
export interface Case {
  name: string;
  fn: () => unknown;
  ops?: number;
}

export interface CaseResult {
  group: string;
  name: string;
  role: 'hotpath' | 'peer';
  p50Ns: number;
  avgNs: number;
  p99Ns: number;
  samples: number;
  /** this row's p50 / the group's first row's p50 (> 1: the first row is faster). */
  ratio?: number;
}

export interface Extra {
  group: string;
  name: string;
  value: number;
  unit: string;
}

export class Suite {
  readonly file: string;
  readonly results: CaseResult[] = [];
  readonly extras: Extra[] = [];

  constructor(file: string) {
    this.file = file;
    console.log(`\n# ${file}${QUICK ? ' (quick)' : ''}`);
  }

  async #one(group: string, c: Case, role: CaseResult['role']): Promise<CaseResult> {
    const ops = c.ops ?? 1;
    const stats = await measure(c.fn as () => unknown, QUICK ? { min_cpu_time: 40e6, min_samples: 4, max_samples: 2000 } : { min_cpu_time: 500e6 });
    return { group, name: c.name, role, p50Ns: stats.p50 / ops, avgNs: stats.avg / ops, p99Ns: stats.p99 / ops, samples: stats.samples.length };
  }

  /**
   * Measures `ours` and each peer in interleaved rounds (A B C, B C A, C A B; 3 rounds, 1 in quick
   * mode) and keeps, per case, the round with the median p50 — so a burst of noise on this shared
   * VM does not land on one side only. Prints each peer's ratio against `ours`. With `internal`,
   * both sides are hotpath's own alternatives (e.g. JS vs WASM).
   */
  async compare(group: string, ours: Case, peers: Case[], options: { internal?: boolean } = {}): Promise<void> {
    const cases = [ours, ...peers];
    const rounds: CaseResult[][] = cases.map(() => []);
    for (let r = 0; r < (QUICK ? 1 : 3); r++) {
      // Each round starts with another case, so no side always runs first (or last) in the process.
      for (let k = 0; k < cases.length; k++) {
        const i = (k + r) % cases.length;
        rounds[i]!.push(await this.#one(group, cases[i]!, i === 0 || options.internal ? 'hotpath' : 'peer'));
      }
    }
    const pick = (list: CaseResult[]): CaseResult => [...list].sort((a, b) => a.p50Ns - b.p50Ns)[list.length >> 1]!;
    const mine = pick(rounds[0]!);
    this.results.push(mine);
    console.log(`\n## ${group}`);
    console.log(row(mine.name, mine));
    for (let i = 1; i < cases.length; i++) {
      const r = pick(rounds[i]!);
      r.ratio = r.p50Ns / mine.p50Ns;
      this.results.push(r);
      console.log(`${row(r.name, r)}  → ${options.internal ? `"${mine.name}"` : 'hotpath'} ${fmtRatio(r.ratio)}`);
    }
  }

  /** Records a figure that is not a timing (bytes allocated, GC count, …). */
  note(group: string, name: string, value: number, unit: string): void {
    this.extras.push({ group, name, value, unit });
    console.log(`  ${name}: ${Number.isInteger(value) ? value : value.toFixed(2)} ${unit}`);
  }

  finish(): void {
    const out = process.env.HOTPATH_BENCH_OUT;
    if (out) writeFileSync(out, JSON.stringify({ file: this.file, results: this.results, extras: this.extras }));
  }
}

export function fmtNs(ns: number): string {
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)} µs`;
  return `${ns.toFixed(1)} ns`;
}

export function fmtRatio(r: number): string {
  return r >= 1 ? `${r.toFixed(1)}× faster` : `${(1 / r).toFixed(1)}× slower`;
}

function row(name: string, r: CaseResult): string {
  return `  ${name.padEnd(44)} p50 ${fmtNs(r.p50Ns).padStart(10)}  avg ${fmtNs(r.avgNs).padStart(10)}  p99 ${fmtNs(r.p99Ns).padStart(10)}`;
}

/** The Redis the benches use (REDIS_URL, default the local one). */
export const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';

/**
 * A raw ioredis client on REDIS_URL, connected, or undefined (with a printed "skipped" line naming
 * `what`) when no Redis answers.
 */
export async function redisOrSkip(what: string): Promise<Redis | undefined> {
  const client = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 });
  client.on('error', () => {});
  try {
    await client.connect();
    return client;
  } catch {
    console.log(`\n## ${what}: skipped (no Redis at ${REDIS_URL})`);
    client.disconnect();
    return undefined;
  }
}
