/**
 * The `hotpath` command. Subcommands arrive with their components; this one dispatches.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DEFAULT_OUT, runBenches } from './bench.js';
import { distUrl } from '../runtime/paths.js';

const USAGE = `usage: hotpath <command> [options]

commands:
  serve [--host H] [--port P] [--workers N] [--redis URL] [--admin-token T] [--trust-proxy A]
        [--config FILE]
        the hotpath service: POST /process, /health, /ready, /metrics, /admin (hotpath serve --help)
  cache status|clear|warm [--url URL] [--token T] [--redis URL] [--file FILE]
        a running service's cache through its admin API, or Redis directly (hotpath cache --help)
  profile [--dir DIR] [--top N] [--seconds N] -- <command> [args...]
        run a command with the CPU profiler on; print the profiles and the top functions by self time
  loadtest URL [--rate N | --connections N] [--duration D | --stages LIST] [--pipelining N]
        [--workers N] [--scenarios FILE] [--json FILE] [--csv FILE] [--html FILE]
        HTTP load with corrected tail latencies: open model (--rate) or closed (hotpath loadtest --help)
  bench [--quick] [--filter TEXT] [--out DIR] [--report-only]
        run every benchmark against its peers; writes DIR/<date>.json and .md
        (DIR defaults to bench/results). --quick: short runs that only check the benches work.
        Then regenerates BENCHMARKS.md/.html from DIR (into DIR when --quick or DIR is not
        the default); --report-only does only that.
  compress [--codec NAME] [-l LEVEL | --fast N] [-c] [-f] [FILE|-] [OUT]
        compress FILE (- or none: stdin) into OUT, FILE.<suffix>, or stdout (-c; or reading stdin
        without OUT). --codec: lz4 (default, .lz4), zstd (.zst), gzip (.gz), deflate (zlib format,
        .zz), brotli (.br), each in its standard format; hotpath (.hpz): the hotpath frame, LZ4
        inside. -l LEVEL: gzip and deflate 0-9 (6), brotli 0-11 (4), zstd 1-19 (3; needs Node
        22.15+); lz4 has level 1 only: --fast N trades ratio for speed (acceleration 1-65537, as
        lz4 --fast=N). -f: replace an existing OUT. FILE is never removed.
  decompress [--codec NAME] [--max-output BYTES] [-c] [-f] [FILE|-] [OUT]
        decompress FILE (or stdin) into OUT, FILE without its suffix (.lz4 .zst .gz .zz .br .hpz),
        or stdout. The format is recognised (hotpath, LZ4, zstd, gzip, zlib); raw brotli has no
        magic: .br files, or --codec brotli. --max-output: fail past this many output bytes
        (default: no limit for LZ4, which streams; 256M for the others, decoded in memory;
        K, M, G suffixes are powers of 1024).
  help  this text

options: --version, --help
exit codes: 0 done, 1 a data or I/O error (stderr names its code), 2 a usage error`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === '--version' || command === '-v') {
    const pkg = JSON.parse(readFileSync(distUrl('../package.json'), 'utf8')) as { version: string };
    console.log(pkg.version);
    return 0;
  }
  if (command === 'bench') {
    let values;
    try {
      ({ values } = parseArgs({
        args: rest,
        options: { quick: { type: 'boolean', default: false }, filter: { type: 'string' }, out: { type: 'string', default: DEFAULT_OUT }, 'report-only': { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h' } },
        strict: true,
      }));
    } catch (err) {
      console.error(`hotpath bench: ${(err as Error).message}\n\n${USAGE}`);
      return 2;
    }
    if (values.help === true) {
      console.log(USAGE);
      return 0;
    }
    return runBenches({ quick: values.quick, out: values.out, reportOnly: values['report-only'], ...(values.filter !== undefined ? { filter: values.filter } : {}) });
  }
  if (command === 'loadtest') {
    const { runLoadtest } = await import('./loadtest.js');
    return runLoadtest(rest);
  }
  if (command === 'cache') {
    const { runCacheCommand } = await import('./cache.js');
    return runCacheCommand(rest);
  }
  if (command === 'profile') {
    const { runProfile } = await import('./profile.js');
    return runProfile(rest);
  }
  if (command === 'serve') {
    const { runServe } = await import('./serve.js');
    return runServe(rest);
  }
  if (command === 'compress' || command === 'decompress') {
    // Loaded on demand: the codecs are most of the CLI's start-up time.
    const { runCodecCommand } = await import('./compress.js');
    return runCodecCommand(command, rest, USAGE);
  }
  console.error(`hotpath: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
  return 2;
}
