/**
 * `hotpath profile [--dir DIR] [--top N] [--seconds N] -- node [args…]` (or a .js file): runs Node
 * with V8's CPU profiler on (`--cpu-prof --cpu-prof-dir`: the main thread and every worker thread
 * write a .cpuprofile when they exit; Node refuses these flags in NODE_OPTIONS, so the command must
 * be node itself or a script it runs), then prints where the profiles went and the functions that
 * took the most self time, summed over all of them.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

export const PROFILE_USAGE = `usage: hotpath profile [--dir DIR] [--top N] [--seconds N] -- node [node-args...] script [args...]
       hotpath profile [...] -- script.js [args...]

Runs Node with --cpu-prof (its main thread and every worker thread write a .cpuprofile into DIR when
they exit; default: a new temporary directory), then prints the profiles and the top N functions
(default 20) by self time over all of them. --seconds N sends SIGTERM after
N seconds (the program must exit on it, as hotpath serve does; a process killed outright writes no
profile). Open a .cpuprofile in Chrome DevTools (Performance) or VS Code.
exit codes: the command's own, or 2 for a usage error`;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time (µs) by function over the profiles; `(idle)`/`(program)`/GC kept as V8 names them. */
export function selfTimes(profiles: CpuProfile[]): Array<{ name: string; us: number }> {
  const by = new Map<string, number>();
  for (const p of profiles) {
    const nodes = new Map(p.nodes.map((n) => [n.id, n]));
    for (let i = 0; i < p.samples.length; i++) {
      const n = nodes.get(p.samples[i]!);
      if (n === undefined) continue;
      const f = n.callFrame;
      const where = f.url === '' ? '' : ` ${f.url.replace(/^file:\/\//, '').split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
      const key = `${f.functionName || '(anonymous)'}${where}`;
      by.set(key, (by.get(key) ?? 0) + (p.timeDeltas[i] ?? 0));
    }
  }
  return [...by].map(([name, us]) => ({ name, us })).sort((a, b) => b.us - a.us);
}

export async function runProfile(args: string[]): Promise<number> {
  const split = args.indexOf('--');
  const own = split < 0 ? args : args.slice(0, split);
  const command = split < 0 ? [] : args.slice(split + 1);
  let values: { dir?: string; top?: string; seconds?: string; help?: boolean };
  try {
    ({ values } = parseArgs({ args: own, options: { dir: { type: 'string' }, top: { type: 'string' }, seconds: { type: 'string' }, help: { type: 'boolean' } }, strict: true }));
  } catch (err) {
    console.error(`hotpath profile: ${(err as Error).message}\n\n${PROFILE_USAGE}`);
    return 2;
  }
  if (values.help === true) {
    console.log(PROFILE_USAGE);
    return 0;
  }
  const top = values.top === undefined ? 20 : Number(values.top);
  const seconds = values.seconds === undefined ? undefined : Number(values.seconds);
  if (command.length === 0 || !Number.isInteger(top) || top < 1 || (seconds !== undefined && !(seconds > 0 && seconds <= 2_000_000))) {
    console.error(`hotpath profile: ${command.length === 0 ? 'no command after --' : '--top must be a positive integer and --seconds a number in (0, 2000000]'}\n\n${PROFILE_USAGE}`);
    return 2;
  }
  const dir = values.dir === undefined ? mkdtempSync(join(tmpdir(), 'hotpath-profile-')) : resolve(values.dir);
  mkdirSync(dir, { recursive: true });
  const before = new Set(readdirSync(dir));
  // `node …` runs this Node (process.execPath) with the flags first; a script runs under it.
  const first = command[0]!;
  const isNode = first === 'node' || first === process.execPath || /(^|\/)node(\.exe)?$/.test(first);
  if (!isNode && !/\.(c|m)?js$/.test(first)) {
    console.error(`hotpath profile: the command must be node or a .js/.mjs/.cjs script (Node takes --cpu-prof only on its command line), got ${JSON.stringify(first)}`);
    return 2;
  }
  const argv = ['--cpu-prof', `--cpu-prof-dir=${dir}`, ...(isNode ? command.slice(1) : command)];
  const child = spawn(process.execPath, argv, { stdio: 'inherit' });
  const timer = seconds === undefined ? undefined : setTimeout(() => child.kill('SIGTERM'), seconds * 1000);
  // Ctrl-C reaches the whole process group: the child stops (and writes its profiles); this
  // process stays to report them. A SIGTERM sent to this process is passed on to the child.
  const onInt = (): void => undefined;
  const onTerm = (): void => void child.kill('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  const code = await new Promise<number>((done) => {
    child.once('error', (err) => {
      console.error(`hotpath profile: cannot run ${command[0]}: ${err.message}`);
      done(127);
    });
    child.once('exit', (c, signal) => done(c ?? (signal !== null ? 128 + (osConstants.signals[signal] ?? 0) : 1)));
  });
  process.off('SIGINT', onInt);
  process.off('SIGTERM', onTerm);
  if (timer !== undefined) clearTimeout(timer);
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile') && !before.has(f)).sort();
  if (files.length === 0) {
    console.error(`hotpath profile: no profile was written to ${dir} (did the command run Node, and exit rather than being killed?)`);
    return code === 0 ? 1 : code;
  }
  const profiles = files.map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile);
  const rows = selfTimes(profiles);
  const total = rows.reduce((a, r) => a + r.us, 0) || 1;
  console.log(`\n${files.length} profile${files.length === 1 ? '' : 's'} in ${dir}:`);
  for (const f of files) console.log(`  ${join(dir, f)}`);
  console.log(`\ntop ${Math.min(top, rows.length)} by self time (all profiles; ${(total / 1e6).toFixed(2)} s sampled):`);
  for (const r of rows.slice(0, top)) console.log(`  ${((100 * r.us) / total).toFixed(1).padStart(5)}%  ${(r.us / 1000).toFixed(1).padStart(9)} ms  ${r.name}`);
  return code;
}
