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
 *  - An output file gets the input file's permission bits and access/modification times (as the
 *    lz4, gzip and zstd tools do), set on the temporary file before it takes the output's name.
 *  - decompress stops at --max-output bytes. Default: none for LZ4, which streams (as `lz4 -d`,
 *    memory stays at a block); 256 MiB (the library's) for the formats decoded in memory, which
 *    also cannot go past one Buffer's maximum length (MAX_OUTPUT_LIMIT: 4 GiB on Node 20).
 *  - Exit codes: 0 done, 1 a data or I/O error (one line on stderr naming the error code),
 *    2 a usage error.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, unlinkSync, type Stats } from 'node:fs';
import { chmod, link, readFile, rename, stat, unlink, utimes } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import {
  compress, createCompressStream, createDecompressStream, decompress, resolveCompressOptions, COMPRESS_DEFAULTS, type Codec,
} from '../compress/index.js';
import { MAX_OUTPUT_LIMIT } from '../compress/compressor.js';

type CodecName = Codec | 'hotpath';

/** The suffix each codec writes; decompress strips any of them. */
const SUFFIXES: Readonly<Record<CodecName, string>> = { lz4: '.lz4', zstd: '.zst', gzip: '.gz', deflate: '.zz', brotli: '.br', hotpath: '.hpz' };
const CODEC_NAMES = Object.keys(SUFFIXES) as CodecName[];
const LZ4_MAGIC = 0x184d2204;
/** Skippable frames (LZ4's and zstd's: 0x184D2A50–0x184D2A5F) carry no output; the magic after them says the format. */
const SKIPPABLE_MAGIC = 0x184d2a50;
const SKIPPABLE_MASK = 0xfffffff0;
/**
 * How far decompress buffers leading skippable frames looking for the magic behind them. Past
 * this the input is streamed as LZ4 (`lz4 -d` reads such a file; only LZ4 streams, so memory stays
 * bounded): a zstd file behind over 1 MiB of skippable frames needs `--codec zstd`.
 */
const PEEK_LIMIT = 1024 * 1024;

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

/**
 * Checks what can be checked before any work: the input exists, the output may be written.
 * Returns the input's Stats when it is a regular file (the output file takes its mode and times).
 */
async function preflight(p: Plan, what: 'compressed' | 'decompressed'): Promise<Stats | undefined> {
  let inStat: Stats | undefined;
  if (p.input !== undefined) {
    inStat = await stat(p.input);
    if (inStat.isDirectory()) throw Object.assign(new Error(`${p.input} is a directory`), { code: 'EISDIR' });
  } else if (process.stdin.isTTY && !p.force) {
    throw new UsageError('refusing to read from a terminal: give FILE, or pipe the data in (-f to insist)');
  }
  const regular = inStat?.isFile() === true ? inStat : undefined;
  if (p.target.kind === 'stdout') {
    if (what === 'compressed' && process.stdout.isTTY && !p.force) {
      throw new UsageError('refusing to write compressed data to a terminal: give OUT, or redirect stdout (-f to insist)');
    }
    return regular;
  }
  let outStat: Stats | undefined;
  try {
    outStat = await stat(p.target.path);
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw err;
  }
  if (outStat === undefined) return regular;
  if (inStat !== undefined && outStat.dev === inStat.dev && outStat.ino === inStat.ino) {
    throw new UsageError(`${JSON.stringify(p.input)} would be both the input and the output`);
  }
  if (!p.force) throw alreadyExists(p.target.path);
  return regular;
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

/**
 * `like`: the input file, whose permission bits and atime/mtime the output takes (lz4, gzip and
 * zstd keep them: a 0600 secret must not come out 0644). The temporary file is created with the
 * permission bits already (less the umask), so the data is never readable by more than the input
 * was; the exact mode and the times are set just before the move, on the file that takes the name.
 */
function fileSink(path: string, force: boolean, like?: Stats): Sink {
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
      ws = createWriteStream(tmp, { flags: 'wx', ...(like !== undefined ? { mode: like.mode & 0o777 } : {}) });
      return ws;
    },
    async commit() {
      await closed();
      if (like !== undefined) {
        // Best effort, as the tools (a file system without modes or times must not fail the run).
        await chmod(tmp, like.mode & 0o7777).catch(() => {});
        await utimes(tmp, like.atimeMs / 1000, like.mtimeMs / 1000).catch(() => {});
      }
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

async function write(p: Plan, like: Stats | undefined, produce: (out: Writable) => Promise<void>): Promise<void> {
  const sink = p.target.kind === 'stdout' ? stdoutSink() : fileSink(p.target.path, p.force, like);
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
  // `lz4 --fast=N` compresses with acceleration N + 1 (lz4frame.c: level −N → N + 1): the same here.
  // The bytes match `lz4 -B6 --fast=N` (1 MiB blocks) only for inputs over 256 KiB: the lz4 tool
  // shrinks the block size to a smaller input (a different header) and below 64 KiB compresses
  // with a 16-bit hash table (different blocks). Either decodes with the other tool.
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
  const like = await preflight(p, 'compressed');
  if (codecName === 'lz4') {
    // One LZ4 frame, a block at a time: the input never has to fit in memory.
    await write(p, like, (out) => pipeline(source(p), createCompressStream(acceleration !== undefined ? { acceleration } : {}), out));
  } else {
    const data = await readAll(p);
    const packed = await compress(data, options);
    await write(p, like, (out) => pipeline([packed], out));
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
  const like = await preflight(p, 'decompressed');

  // Look at the first bytes: an LZ4 frame streams, anything else is read whole. Leading
  // skippable frames are looked past (buffered, up to PEEK_LIMIT): LZ4 behind them streams too.
  const it = source(p)[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const head: Buffer[] = [];
  let headBytes = 0;
  let ended = false;
  let first = Buffer.alloc(0);
  /** Reads until the head holds `n` bytes; false at the end of the input. */
  const fill = async (n: number): Promise<boolean> => {
    while (headBytes < n && !ended) {
      const r = await it.next();
      if (r.done === true) {
        ended = true;
      } else {
        head.push(r.value);
        headBytes += r.value.length;
      }
    }
    if (first.length !== headBytes) first = Buffer.concat(head, headBytes);
    return headBytes >= n;
  };
  let streamLz4 = hint === 'lz4';
  if (hint === undefined) {
    for (let off = 0; await fill(off + 4);) {
      const magic = first.readUInt32LE(off);
      if (magic === LZ4_MAGIC) {
        streamLz4 = true;
        break;
      }
      if ((magic & SKIPPABLE_MASK) >>> 0 !== SKIPPABLE_MAGIC || !(await fill(off + 8))) break;
      off += 8 + first.readUInt32LE(off + 4);
      if (off + 4 > PEEK_LIMIT) {
        streamLz4 = true;
        break;
      }
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
  if (streamLz4) {
    await write(p, like, (out) => pipeline(rest(), createDecompressStream(limit === undefined ? {} : { maxOutputBytes: limit }), out));
  } else {
    // Decoded in memory: the output is one Buffer, so the limit cannot pass its maximum length (the
    // library would throw a RangeError, exit 1, for what is a mistake in the command line).
    if (maxOutputBytes > MAX_OUTPUT_LIMIT) {
      throw new UsageError(`--max-output: at most ${MAX_OUTPUT_LIMIT} bytes (one Buffer's maximum on Node ${process.versions.node}) for data decoded in memory (every format but LZ4, which streams), got ${maxOutputBytes}`);
    }
    const chunks: Buffer[] = [];
    for await (const chunk of rest()) chunks.push(chunk);
    const data = await decompress(Buffer.concat(chunks), { maxOutputBytes, ...(hint !== undefined ? { codec: hint } : {}) });
    await write(p, like, (out) => pipeline([data], out));
  }
  return 0;
}
