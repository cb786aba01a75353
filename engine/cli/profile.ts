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
profile). A bare \`node\` is the Node running hotpath; a path (/opt/node24/bin/node) runs as given.
SIGINT and SIGTERM sent to hotpath profile are passed on to the command (Ctrl-C in a terminal
reaches it directly); the profiles are reported when it exits.
Open a .cpuprofile in Chrome DevTools (Performance) or VS Code.
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

/**
 * Whether a SIGINT received now is most likely the terminal's Ctrl-C: this process (and so its
 * child, spawned in the same process group) is the terminal's foreground process group
 * (/proc/self/stat: pgrp = tpgid). Where /proc is not there, a terminal on stdin says the same.
 */
function ctrlC(): boolean {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // state ppid pgrp session tty_nr tpgid …
    return Number(fields[2]) === Number(fields[5]);
  } catch {
    return process.stdin.isTTY === true;
  }
}

export async function runProfile(args: string[]): Promise<number> {
  const split = args.indexOf('--');
  const own = split < 0 ? args : args.slice(0, split);
  const command = split < 0 ? [] : args.slice(split + 1);
  let values: { dir?: string; top?: string; seconds?: string; help?: boolean };
  try {
    ({ values } = parseArgs({ args: own, options: { dir: { type: 'string' }, top: { type: 'string' }, seconds: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
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
  let dir: string;
  let before: Set<string>;
  try {
    dir = values.dir === undefined ? mkdtempSync(join(tmpdir(), 'hotpath-profile-')) : resolve(values.dir);
    mkdirSync(dir, { recursive: true });
    before = new Set(readdirSync(dir));
  } catch (err) {
    // --dir naming a file (EEXIST from mkdir, ENOTDIR under it), or one that cannot be made: one
    // line, as for any other mistake in the command line, not a stack trace.
    const code = (err as { code?: string }).code;
    const notDir = code === 'EEXIST' || code === 'ENOTDIR';
    console.error(`hotpath profile: --dir ${values.dir ?? '(temporary)'}: ${notDir ? 'not a directory' : (err as Error).message}`);
    return 2;
  }
  // Node's flags go first. A bare `node` (no path) means this Node, process.execPath, as a script
  // runs under it; a path to a node (another version, say) is run as given.
  const first = command[0]!;
  const isNode = first === process.execPath || /(^|[\\/])node(\.exe)?$/.test(first);
  const exe = isNode && /[\\/]/.test(first) ? first : process.execPath;
  if (!isNode && !/\.(c|m)?js$/.test(first)) {
    console.error(`hotpath profile: the command must be node or a .js/.mjs/.cjs script (Node takes --cpu-prof only on its command line), got ${JSON.stringify(first)}`);
    return 2;
  }
  const argv = ['--cpu-prof', `--cpu-prof-dir=${dir}`, ...(isNode ? command.slice(1) : command)];
  const child = spawn(exe, argv, { stdio: 'inherit' });
  const timer = seconds === undefined ? undefined : setTimeout(() => child.kill('SIGTERM'), seconds * 1000);
  // This process stays to report the profiles once the child has exited (on its own or on a
  // signal). A SIGTERM or SIGINT sent to this process (kill -INT PID, a supervisor) is passed on to
  // the child — except a SIGINT while both are in the terminal's foreground process group: that is
  // Ctrl-C, which the terminal already sent the child, and a second one would be a second Ctrl-C
  // (hotpath serve, for one, then exits without draining).
  const onInt = (): void => {
    if (!ctrlC()) child.kill('SIGINT');
  };
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
