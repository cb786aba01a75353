/**
 * `hotpath compress` and `hotpath decompress`: files and pipes through hotpath/compress, with the
 * conventions of the `lz4` tool.
 *
 *  - FILE `-` or no FILE: read stdin; `-c` (or stdin without OUT): write stdout; otherwise write
 *    OUT, or FILE plus the codec's suffix (compress) / FILE without its known suffix (decompress;
 *    no known suffix, no OUT and no -c is a usage error: "cannot determine an output filename").
 *  - A file is written to a temporary file beside it, then moved into place: a failed or
 *    interrupted run leaves no partial output, and without -f an existing file is never replaced
 *    (the move is a hard link, which fails if the name exists). FILE is never removed.
 *  - LZ4 (the default) streams both ways (createCompressStream / createDecompressStream), so its
 *    input never has to fit in memory; the other formats read their whole input and go through
 *    the async compress / decompress (worker threads for large inputs).
 *  - decompress stops at --max-output bytes. Default: none for LZ4, which streams (as `lz4 -d`,
 *    memory stays at a block); 256 MiB (the library's) for the formats decoded in memory.
 *  - Exit codes: 0 done, 1 a data or I/O error (one line on stderr naming the error code),
 *    2 a usage error.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, unlinkSync, type Stats } from 'node:fs';
import { link, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import {
  compress, createCompressStream, createDecompressStream, decompress, resolveCompressOptions, COMPRESS_DEFAULTS, type Codec,
} from '../compress/index.js';

type CodecName = Codec | 'hotpath';

/** The suffix each codec writes; decompress strips any of them. */
const SUFFIXES: Readonly<Record<CodecName, string>> = { lz4: '.lz4', zstd: '.zst', gzip: '.gz', deflate: '.zz', brotli: '.br', hotpath: '.hpz' };
const CODEC_NAMES = Object.keys(SUFFIXES) as CodecName[];
const LZ4_MAGIC = [0x04, 0x22, 0x4d, 0x18] as const;

/** A mistake in the command line: exit 2. */
class UsageError extends Error {}

type Target = { kind: 'stdout' } | { kind: 'file'; path: string };

interface Plan {
  input: string | undefined; // undefined: stdin
  target: Target;
  force: boolean;
}

/** Runs `hotpath compress ARGV` or `hotpath decompress ARGV`; resolves to the exit code. */
export async function runCodecCommand(command: 'compress' | 'decompress', argv: string[], usage: string): Promise<number> {
  try {
    if (helpAsked(argv)) {
      console.log(usage);
      return 0;
    }
    return command === 'compress' ? await compressCommand(argv) : await decompressCommand(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`hotpath ${command}: ${err.message}\n\n${usage}`);
      return 2;
    }
    console.error(`hotpath ${command}: ${describeError(err)}`);
    return 1;
  }
}

/** -h / --help before any `--`. */
function helpAsked(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).some((a) => a === '-h' || a === '--help');
}

/** One line naming the error's code (a HotpathError's or a system error's), else its class. */
function describeError(err: unknown): string {
  const e = err instanceof Error ? err : new Error(String(err));
  const code = (e as { code?: unknown }).code;
  const label = typeof code === 'string' ? code : e.name;
  const message = e.message.startsWith(`${label}:`) ? e.message : `${label}: ${e.message}`;
  return message.replace(/\s*\n\s*/g, ' ');
}

function parse(argv: string[], options: NonNullable<ParseArgsConfig['options']>): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
    return { values: values as Record<string, string | boolean | undefined>, positionals };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function integerArg(value: string, flag: string): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${flag} must be a whole number, got ${JSON.stringify(value)}`);
  return Number(value);
}

/** BYTES, with an optional K, M or G (powers of 1024; KiB, MB, … read the same). */
function bytesArg(value: string, flag: string): number {
  const m = /^(\d+)(?:([kmg])i?b?)?$/i.exec(value);
  if (m === null) throw new UsageError(`${flag} must be a byte count such as 1048576 or 64M, got ${JSON.stringify(value)}`);
  const n = Number(m[1]) * 1024 ** (m[2] === undefined ? 0 : 'kmg'.indexOf(m[2].toLowerCase()) + 1);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${flag} must be from 1 to ${Number.MAX_SAFE_INTEGER} bytes, got ${JSON.stringify(value)}`);
  return n;
}

/** FILE and OUT → where to read and write. `derive` names OUT from FILE (undefined: it cannot). */
function plan(positionals: string[], toStdout: boolean, force: boolean, derive: (file: string) => string | undefined): Plan {
  if (positionals.length > 2) throw new UsageError(`too many arguments: ${positionals.slice(2).map((p) => JSON.stringify(p)).join(' ')}`);
  const [file, out] = positionals;
  const input = file === undefined || file === '-' ? undefined : file;
  if (toStdout && out !== undefined && out !== '-') throw new UsageError(`-c writes to stdout: give OUT (${JSON.stringify(out)}) or -c, not both`);
  let target: Target;
  if (toStdout || out === '-' || (input === undefined && out === undefined)) {
    target = { kind: 'stdout' };
  } else if (out !== undefined) {
    target = { kind: 'file', path: out };
  } else {
    const derived = derive(input!);
    if (derived === undefined) {
      throw new UsageError(`cannot determine an output filename for ${JSON.stringify(input)} (no known suffix: ${Object.values(SUFFIXES).join(' ')}); give OUT or -c`);
    }
    target = { kind: 'file', path: derived };
  }
  return { input, target, force };
}

/** Checks what can be checked before any work: the input exists, the output may be written. */
async function preflight(p: Plan, what: 'compressed' | 'decompressed'): Promise<void> {
  let inStat: Stats | undefined;
  if (p.input !== undefined) {
    inStat = await stat(p.input);
    if (inStat.isDirectory()) throw Object.assign(new Error(`${p.input} is a directory`), { code: 'EISDIR' });
  } else if (process.stdin.isTTY && !p.force) {
    throw new UsageError('refusing to read from a terminal: give FILE, or pipe the data in (-f to insist)');
  }
  if (p.target.kind === 'stdout') {
    if (what === 'compressed' && process.stdout.isTTY && !p.force) {
      throw new UsageError('refusing to write compressed data to a terminal: give OUT, or redirect stdout (-f to insist)');
    }
    return;
  }
  let outStat: Stats | undefined;
  try {
    outStat = await stat(p.target.path);
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw err;
  }
  if (outStat === undefined) return;
  if (inStat !== undefined && outStat.dev === inStat.dev && outStat.ino === inStat.ino) {
    throw new UsageError(`${JSON.stringify(p.input)} would be both the input and the output`);
  }
  if (!p.force) throw alreadyExists(p.target.path);
}

function alreadyExists(path: string): Error {
  return Object.assign(new Error(`${path} already exists; not overwritten (use -f to replace it)`), { code: 'EEXIST' });
}

/** Where output goes: stdout, or a temporary file beside the target moved into place by commit(). */
interface Sink {
  stream(): Writable;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

function stdoutSink(): Sink {
  return { stream: () => process.stdout, commit: async () => {}, abort: async () => {} };
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function fileSink(path: string, force: boolean): Sink {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  let ws: ReturnType<typeof createWriteStream> | undefined;
  // Interrupted: remove the temporary file, then die of the signal as if nobody had caught it.
  const onSignal = (signal: NodeJS.Signals): void => {
    release();
    try {
      unlinkSync(tmp);
    } catch {
      // never created, or already gone
    }
    process.kill(process.pid, signal);
  };
  const release = (): void => {
    for (const s of SIGNALS) process.off(s, onSignal);
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  const closed = async (): Promise<void> => {
    if (ws !== undefined && !ws.closed) await new Promise<void>((resolve) => ws!.once('close', () => resolve()).destroy());
  };
  return {
    stream() {
      ws = createWriteStream(tmp, { flags: 'wx' });
      return ws;
    },
    async commit() {
      await closed();
      if (force) {
        await rename(tmp, path);
      } else {
        try {
          await link(tmp, path); // fails if `path` appeared meanwhile: nothing is ever replaced
        } catch (err) {
          const code = (err as { code?: string }).code;
          if (code === 'EEXIST') throw alreadyExists(path);
          if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err;
          // A file system without hard links: check, then move (a narrow race, as the lz4 tool's).
          if (await stat(path).then(() => true, () => false)) throw alreadyExists(path);
          await rename(tmp, path);
          release();
          return;
        }
        await unlink(tmp);
      }
      release();
    },
    async abort() {
      await closed();
      await unlink(tmp).catch(() => {});
      release();
    },
  };
}

async function write(p: Plan, produce: (out: Writable) => Promise<void>): Promise<void> {
  const sink = p.target.kind === 'stdout' ? stdoutSink() : fileSink(p.target.path, p.force);
  try {
    await produce(sink.stream());
    await sink.commit();
  } catch (err) {
    await sink.abort();
    throw err;
  }
}

function source(p: Plan): Readable {
  return p.input === undefined ? process.stdin : createReadStream(p.input);
}

async function readAll(p: Plan): Promise<Buffer> {
  if (p.input !== undefined) return readFile(p.input);
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

// ------------------------------------------------------------------ compress

async function compressCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    codec: { type: 'string', default: 'lz4' },
    level: { type: 'string', short: 'l' },
    fast: { type: 'string' },
    stdout: { type: 'boolean', short: 'c', default: false },
    force: { type: 'boolean', short: 'f', default: false },
  });
  const name = values.codec as string;
  if (!(CODEC_NAMES as string[]).includes(name)) throw new UsageError(`--codec must be one of ${CODEC_NAMES.join(', ')}, got ${JSON.stringify(name)}`);
  const codecName = name as CodecName;
  const isLz4 = codecName === 'lz4' || codecName === 'hotpath';
  const level = values.level === undefined ? undefined : integerArg(values.level as string, '-l');
  // `lz4 --fast=N` compresses with acceleration N + 1 (lz4frame.c: level −N → N + 1): the same here,
  // so `--fast N` writes the bytes the lz4 tool writes.
  const fast = values.fast === undefined ? undefined : integerArg(values.fast as string, '--fast');
  if (fast !== undefined && (fast < 1 || fast > 65536)) throw new UsageError(`--fast must be an integer from 1 to 65536 (as lz4 --fast=N), got ${fast}`);
  const acceleration = fast === undefined ? undefined : fast + 1;
  if (isLz4 && level !== undefined && level !== 1) {
    throw new UsageError(`-l: lz4 has level 1 only (no high-compression mode); use --fast N to trade ratio for speed, got ${level}`);
  }
  if (!isLz4 && acceleration !== undefined) throw new UsageError(`--fast applies to lz4 and hotpath only, not ${codecName}; use -l LEVEL`);
  const options = {
    codec: codecName === 'hotpath' ? ('lz4' as const) : codecName,
    format: codecName === 'hotpath' ? ('hotpath' as const) : ('native' as const),
    ...(level !== undefined ? { level } : {}),
    ...(acceleration !== undefined ? { acceleration } : {}),
  };
  try {
    resolveCompressOptions(options);
  } catch (err) {
    throw new UsageError((err as Error).message.replace('options.level', '-l').replace('options.acceleration', '--fast'));
  }

  const p = plan(positionals, values.stdout as boolean, values.force as boolean, (file) => file + SUFFIXES[codecName]);
  await preflight(p, 'compressed');
  if (codecName === 'lz4') {
    // One LZ4 frame, a block at a time: the input never has to fit in memory.
    await write(p, (out) => pipeline(source(p), createCompressStream(acceleration !== undefined ? { acceleration } : {}), out));
  } else {
    const data = await readAll(p);
    const packed = await compress(data, options);
    await write(p, (out) => pipeline([packed], out));
  }
  return 0;
}

// ------------------------------------------------------------------ decompress

async function decompressCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    codec: { type: 'string' },
    'max-output': { type: 'string' },
    stdout: { type: 'boolean', short: 'c', default: false },
    force: { type: 'boolean', short: 'f', default: false },
  });
  const codecs: readonly Codec[] = ['lz4', 'zstd', 'gzip', 'deflate', 'brotli'];
  let hint = values.codec as Codec | undefined;
  if (hint !== undefined && !codecs.includes(hint)) {
    throw new UsageError(`--codec must be one of ${codecs.join(', ')} (the other formats, the hotpath frame too, are recognised by their magic), got ${JSON.stringify(hint)}`);
  }
  const limit = values['max-output'] === undefined ? undefined : bytesArg(values['max-output'] as string, '--max-output');
  const maxOutputBytes = limit ?? COMPRESS_DEFAULTS.maxOutputBytes;

  const p = plan(positionals, values.stdout as boolean, values.force as boolean, (file) => {
    const suffix = Object.values(SUFFIXES).find((s) => file.endsWith(s) && basename(file).length > s.length);
    return suffix === undefined ? undefined : file.slice(0, -suffix.length);
  });
  if (hint === undefined && p.input?.endsWith(SUFFIXES.brotli)) hint = 'brotli'; // raw brotli has no magic
  await preflight(p, 'decompressed');

  // Look at the first bytes: an LZ4 frame streams, anything else is read whole.
  const it = source(p)[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const head: Buffer[] = [];
  let headBytes = 0;
  let ended = false;
  if (hint === undefined || hint === 'lz4') {
    while (headBytes < 4) {
      const r = await it.next();
      if (r.done === true) {
        ended = true;
        break;
      }
      head.push(r.value);
      headBytes += r.value.length;
    }
  }
  async function* rest(): AsyncGenerator<Buffer> {
    let done = ended;
    try {
      yield* head;
      while (!done) {
        const r = await it.next();
        if (r.done === true) done = true;
        else yield r.value;
      }
    } finally {
      if (!done) await it.return?.();
    }
  }
  const first = Buffer.concat(head, headBytes);
  if (hint === 'lz4' || LZ4_MAGIC.every((b, i) => first[i] === b)) {
    await write(p, (out) => pipeline(rest(), createDecompressStream(limit === undefined ? {} : { maxOutputBytes: limit }), out));
  } else {
    const chunks: Buffer[] = [];
    for await (const chunk of rest()) chunks.push(chunk);
    const data = await decompress(Buffer.concat(chunks), { maxOutputBytes, ...(hint !== undefined ? { codec: hint } : {}) });
    await write(p, (out) => pipeline([data], out));
  }
  return 0;
}
