/**
 * The `hotpath` command. Subcommands arrive with their components; this one dispatches.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { runBenches } from './bench.js';
import { distUrl } from '../runtime/paths.js';

const USAGE = `usage: hotpath <command> [options]

commands:
  bench [--quick] [--filter TEXT] [--out DIR]
        run every benchmark against its peers; writes DIR/<date>.json and .md
        (DIR defaults to bench/results). --quick: short runs that only check the benches work.
  help  this text

options: --version, --help`;

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
        options: { quick: { type: 'boolean', default: false }, filter: { type: 'string' }, out: { type: 'string', default: 'bench/results' } },
        strict: true,
      }));
    } catch (err) {
      console.error(`hotpath bench: ${(err as Error).message}\n\n${USAGE}`);
      return 2;
    }
    return runBenches({ quick: values.quick, out: values.out, ...(values.filter !== undefined ? { filter: values.filter } : {}) });
  }
  console.error(`hotpath: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
  return 2;
}
