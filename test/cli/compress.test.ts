/**
 * `hotpath compress` / `hotpath decompress`, run as the real command (node bin/hotpath.js, which
 * loads dist/: the suite runs after `npm run build`) against the lz4 and zstd tools.
 */
import { spawn, spawnSync } from 'node:child_process';
import { constants as bufferConstants } from 'node:buffer';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import { afterAll, describe, it } from 'vitest';
import { decompressSync } from '../../engine/compress/index.js';

const BIN = fileURLToPath(new URL('../../bin/hotpath.js', import.meta.url));
const BUILT = fileURLToPath(new URL('../../dist/engine/cli/main.js', import.meta.url));
const CI = process.env.CI === 'true';

interface Result {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs `hotpath ARGS` in `cwd`, feeding `input` (or nothing) to its stdin. */
function hotpath(cwd: string, args: string[], input?: Uint8Array): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.stdin.on('error', () => {}); // a command that fails early closes its stdin
    child.stdin.end(input);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') }));
  });
}

/** Runs an external tool synchronously; returns its stdout. */
function tool(cwd: string, cmd: string, args: string[], input?: Uint8Array): Buffer {
  const r = spawnSync(cmd, args, { cwd, input, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr?.toString()}`);
  return r.stdout;
}

const installed = (cmd: string): boolean => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
const HAVE = { lz4: installed('lz4'), zstd: installed('zstd') };
const warned = new Set<string>();

/** `it`, for a test that needs `cmd`: without it, fails under CI=true and is skipped (saying why) elsewhere. */
function itWith(cmd: keyof typeof HAVE): typeof it.concurrent {
  if (HAVE[cmd]) return it.concurrent;
  if (CI) return ((name: string) => it(name, () => { throw new Error(`${cmd} is not installed, and CI=true: install it (Debian package ${cmd})`); })) as typeof it.concurrent;
  if (!warned.has(cmd)) console.warn(`SKIPPED hotpath compress tests that need the ${cmd} tool: it is not installed`);
  warned.add(cmd);
  return it.skip as unknown as typeof it.concurrent;
}

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'hotpath-cli-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Deterministic text that compresses about 3:1. */
function corpus(bytes: number): Buffer {
  const words = ['hotpath', 'frame', 'block', 'stream', 'worker', 'ring', 'checksum', 'window', 'literal', 'match', 'offset', 'token'];
  const out = Buffer.allocUnsafe(bytes);
  let x = 0x9e3779b9;
  let n = 0;
  while (n < bytes) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const piece = `${words[x % words.length]}${(x >>> 16) % 7 === 0 ? `:${x % 1000}` : ''}${(x & 0x80) !== 0 ? ' ' : '\n'}`;
    n += out.write(piece, n, 'latin1');
  }
  return out;
}

const DATA = corpus(300_000);
const BIG = corpus(4 << 20);

/** A temp dir holding DATA as `data`. */
function withData(): string {
  const d = tempDir();
  writeFileSync(join(d, 'data'), DATA);
  return d;
}

const files = (d: string): string[] => readdirSync(d).sort();

describe.concurrent('hotpath compress / decompress', () => {
  it('the CLI is built', ({ expect }) => {
    expect(existsSync(BUILT), `${BUILT} is missing: run npm run build first`).toBe(true);
  });

  itWith('lz4')('compress FILE writes FILE.lz4, which lz4 -d reads; FILE stays', async ({ expect }) => {
    const d = withData();
    const r = await hotpath(d, ['compress', 'data']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(files(d)).toEqual(['data', 'data.lz4']);
    expect(tool(d, 'lz4', ['-d', '-c', 'data.lz4']).equals(DATA)).toBe(true);
    expect(readFileSync(join(d, 'data')).equals(DATA)).toBe(true);
  });

  itWith('lz4')('decompress -c reads what lz4 -c wrote; decompress FILE strips .lz4', async ({ expect }) => {
    const d = tempDir();
    writeFileSync(join(d, 'ref.lz4'), tool(d, 'lz4', ['-c', '-q'], DATA));
    const r = await hotpath(d, ['decompress', '-c', 'ref.lz4']);
    expect(r.code).toBe(0);
    expect(r.stdout.equals(DATA)).toBe(true);
    const f = await hotpath(d, ['decompress', 'ref.lz4']);
    expect(f.code).toBe(0);
    expect(files(d)).toEqual(['ref', 'ref.lz4']);
    expect(readFileSync(join(d, 'ref')).equals(DATA)).toBe(true);
  });

  itWith('lz4')('--fast N: lz4 acceleration, still a standard frame', async ({ expect }) => {
    const d = withData();
    const r = await hotpath(d, ['compress', '--fast', '8', '-c', 'data']);
    expect(r.code).toBe(0);
    expect(tool(d, 'lz4', ['-d', '-c'], r.stdout).equals(DATA)).toBe(true);
    const plain = await hotpath(d, ['compress', '-c', 'data']);
    expect(r.stdout.length).toBeGreaterThan(plain.stdout.length); // faster, less compression
    // The lz4 tool's --fast=N is acceleration N + 1 (review30: it differed). Same bytes as
    // `lz4 -B6 --fast=N` (1 MiB blocks) for inputs over 256 KiB, as the README says (DATA: 300 000).
    expect(r.stdout.equals(tool(d, 'lz4', ['--fast=8', '-c', 'data']))).toBe(true);
  });

  itWith('lz4')('--fast N: the bytes of lz4 -B6 --fast=N on a large file, not of plain lz4 --fast=N (4 MiB blocks there)', async ({ expect }) => {
    const d = tempDir();
    writeFileSync(join(d, 'big'), BIG);
    const r = await hotpath(d, ['compress', '--fast', '3', '-c', 'big']);
    expect(r.code).toBe(0);
    expect(r.stdout.equals(tool(d, 'lz4', ['-B6', '--fast=3', '-c', 'big']))).toBe(true);
    expect(r.stdout.equals(tool(d, 'lz4', ['--fast=3', '-c', 'big']))).toBe(false);
  });

  itWith('lz4')('the output file keeps the input file\'s mode and times, as lz4 and gzip do (review54: 0600 became 0644)', async ({ expect }) => {
    const d = withData();
    chmodSync(join(d, 'data'), 0o600);
    utimesSync(join(d, 'data'), 1_000_000_000, 1_234_567_890);
    writeFileSync(join(d, 'other'), DATA);
    chmodSync(join(d, 'other'), 0o664); // group-writable: more than the usual umask lets through
    const results = await Promise.all([
      hotpath(d, ['compress', 'data']),
      hotpath(d, ['compress', '--codec', 'gzip', 'other']),
    ]);
    for (const r of results) expect(r.code).toBe(0);
    const check = (f: string): void => {
      const st = statSync(join(d, f));
      expect([f, st.mode & 0o7777]).toEqual([f, 0o600]);
      expect([f, st.mtimeMs, st.atimeMs]).toEqual([f, 1_234_567_890_000, 1_000_000_000_000]);
    };
    check('data.lz4'); // before decompress reads it (and moves its atime)
    utimesSync(join(d, 'data.lz4'), 1_000_000_000, 1_234_567_890);
    const unpacked = await Promise.all([hotpath(d, ['decompress', 'data.lz4', 'data.out']), hotpath(d, ['decompress', 'other.gz', 'other.out'])]);
    for (const r of unpacked) expect(r.code).toBe(0);
    check('data.out');
    for (const f of ['other.gz', 'other.out']) expect([f, statSync(join(d, f)).mode & 0o7777]).toEqual([f, 0o664]);
    expect(readFileSync(join(d, 'data.out')).equals(DATA)).toBe(true);
  });

  itWith('lz4')('an LZ4 file that starts with a skippable frame streams: 257 MiB out, past the in-memory 256 MiB limit (review54)', async ({ expect }) => {
    const d = tempDir();
    const size = 257 << 20;
    const packed = tool(d, 'sh', ['-c', `head -c ${size} /dev/zero | lz4 -q -c`]);
    writeFileSync(join(d, 'skip.lz4'), Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0]), Buffer.from('abcd'), packed]));
    expect(tool(d, 'sh', ['-c', 'lz4 -dc skip.lz4 | wc -c']).toString().trim()).toBe(String(size));
    const r = await new Promise<{ code: number | null; bytes: number; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, 'decompress', '-c', 'skip.lz4'], { cwd: d, stdio: ['ignore', 'pipe', 'pipe'] });
      let bytes = 0;
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (bytes += c.length)); // counted, not kept
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, bytes, stderr }));
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.bytes).toBe(size);
  });

  itWith('zstd')('a zstd file behind a skippable frame is still recognised as zstd', async ({ expect }) => {
    const d = tempDir();
    const packed = tool(d, 'zstd', ['-q', '-c'], DATA);
    writeFileSync(join(d, 'skip.zst'), Buffer.concat([Buffer.from([0x5f, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 0xaa, 0xbb]), packed]));
    const r = await hotpath(d, ['decompress', '-c', 'skip.zst']);
    expect(r.stderr).toBe('');
    expect(r.stdout.equals(DATA)).toBe(true);
  });

  it('--max-output above one Buffer\'s maximum is a usage error naming it for data decoded in memory; LZ4 streams and takes it (review54)', async ({ expect }) => {
    const d = withData();
    await Promise.all([hotpath(d, ['compress', '--codec', 'gzip', 'data']), hotpath(d, ['compress', 'data'])]);
    const over = String(bufferConstants.MAX_LENGTH + 1);
    const gz = await hotpath(d, ['decompress', '--max-output', over, '-c', 'data.gz']);
    expect(gz.code).toBe(2);
    expect(gz.stderr).toMatch(/^hotpath decompress: --max-output/);
    if (bufferConstants.MAX_LENGTH < Number.MAX_SAFE_INTEGER) {
      const lz4 = await hotpath(d, ['decompress', '--max-output', over, '-c', 'data.lz4']);
      expect(lz4.code).toBe(0);
      expect(lz4.stdout.equals(DATA)).toBe(true);
    }
  });

  it('stdin to stdout both ways with - and -c (4 MiB piped)', async ({ expect }) => {
    const d = tempDir();
    const packed = await hotpath(d, ['compress', '-c', '-'], BIG);
    expect(packed.code).toBe(0);
    expect([...packed.stdout.subarray(0, 4)]).toEqual([0x04, 0x22, 0x4d, 0x18]); // an LZ4 frame
    expect(packed.stdout.length).toBeLessThan(BIG.length / 2);
    const back = await hotpath(d, ['decompress'], packed.stdout); // no FILE: stdin; no OUT: stdout
    expect(back.code).toBe(0);
    expect(back.stdout.equals(BIG)).toBe(true);
    const gz = await hotpath(d, ['compress', '--codec', 'gzip', '-'], BIG);
    expect(gz.code).toBe(0);
    expect(gunzipSync(gz.stdout).equals(BIG)).toBe(true);
    const gzBack = await hotpath(d, ['decompress', '-c', '-'], gz.stdout);
    expect(gzBack.stdout.equals(BIG)).toBe(true);
    expect(files(d)).toEqual([]);
  });

  it('-f is needed to replace an existing output; without it the file is untouched', async ({ expect }) => {
    const d = withData();
    writeFileSync(join(d, 'data.lz4'), 'keep me');
    const r = await hotpath(d, ['compress', 'data']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^hotpath compress: EEXIST: data\.lz4 already exists.*-f/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(readFileSync(join(d, 'data.lz4'), 'utf8')).toBe('keep me');
    writeFileSync(join(d, 'out'), 'keep me too');
    const named = await hotpath(d, ['compress', '--codec', 'gzip', 'data', 'out']);
    expect(named.code).toBe(1);
    expect(readFileSync(join(d, 'out'), 'utf8')).toBe('keep me too');
    expect(files(d)).toEqual(['data', 'data.lz4', 'out']); // and no temporary file left

    const forced = await hotpath(d, ['compress', '-f', 'data']);
    expect(forced.code).toBe(0);
    expect(decompressSync(readFileSync(join(d, 'data.lz4'))).equals(DATA)).toBe(true);
    // decompress onto the existing input's name: refused without -f, the original kept
    const back = await hotpath(d, ['decompress', 'data.lz4']);
    expect(back.code).toBe(1);
    expect(back.stderr).toMatch(/EEXIST: data already exists/);
    expect(readFileSync(join(d, 'data')).equals(DATA)).toBe(true);
    expect(files(d)).toEqual(['data', 'data.lz4', 'out']);
  });

  it.for([
    ['gzip', '.gz', (b: Buffer) => gunzipSync(b)],
    ['deflate', '.zz', (b: Buffer) => inflateSync(b)],
    ['brotli', '.br', (b: Buffer) => brotliDecompressSync(b)],
    ['hotpath', '.hpz', (b: Buffer) => decompressSync(b)],
  ] as const)('--codec %s writes %s in its standard format, and decompress strips it', async ([codec, suffix, read], { expect }) => {
    const d = withData();
    const r = await hotpath(d, ['compress', '--codec', codec, 'data']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const packed = readFileSync(join(d, `data${suffix}`));
    expect(read(packed).equals(DATA)).toBe(true);
    if (codec === 'hotpath') expect([...packed.subarray(0, 4)]).toEqual([0x89, 0x48, 0x50, 0x5a]);
    unlinkSync(join(d, 'data'));
    const back = await hotpath(d, ['decompress', `data${suffix}`]);
    expect(back.stderr).toBe('');
    expect(back.code).toBe(0);
    expect(files(d)).toEqual(['data', `data${suffix}`]);
    expect(readFileSync(join(d, 'data')).equals(DATA)).toBe(true);
  });

  it('-l LEVEL sets the level (gzip -l 1 is larger than -l 9)', async ({ expect }) => {
    const d = withData();
    const [fast, best] = await Promise.all([
      hotpath(d, ['compress', '--codec', 'gzip', '-l', '1', '-c', 'data']),
      hotpath(d, ['compress', '--codec', 'gzip', '-l', '9', '-c', 'data']),
    ]);
    expect(gunzipSync(fast.stdout).equals(DATA) && gunzipSync(best.stdout).equals(DATA)).toBe(true);
    expect(fast.stdout.length).toBeGreaterThan(best.stdout.length);
  });

  it('raw brotli on stdin needs --codec brotli (no magic)', async ({ expect }) => {
    const d = withData();
    const br = await hotpath(d, ['compress', '--codec', 'brotli', '-c', 'data']);
    const unknown = await hotpath(d, ['decompress', '-c'], br.stdout);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/ERR_HOTPATH_UNKNOWN_FORMAT/);
    const back = await hotpath(d, ['decompress', '--codec', 'brotli', '-c'], br.stdout);
    expect(back.code).toBe(0);
    expect(back.stdout.equals(DATA)).toBe(true);
  });

  itWith('zstd')('decompresses what zstd wrote (-c, and FILE.zst → FILE)', async ({ expect }) => {
    const d = tempDir();
    writeFileSync(join(d, 'ref.zst'), tool(d, 'zstd', ['-q', '-c'], DATA));
    const r = await hotpath(d, ['decompress', '-c', 'ref.zst']);
    expect(r.stderr).toBe('');
    expect(r.stdout.equals(DATA)).toBe(true);
    const f = await hotpath(d, ['decompress', 'ref.zst']);
    expect(f.code).toBe(0);
    expect(readFileSync(join(d, 'ref')).equals(DATA)).toBe(true);
  });

  const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
  const nativeZstd = major > 22 || (major === 22 && minor >= 15);
  if (nativeZstd) {
    itWith('zstd')('--codec zstd writes FILE.zst, which zstd -d reads', async ({ expect }) => {
      const d = withData();
      const r = await hotpath(d, ['compress', '--codec', 'zstd', 'data']);
      expect(r.code).toBe(0);
      expect(tool(d, 'zstd', ['-d', '-c', 'data.zst']).equals(DATA)).toBe(true);
    });
  } else {
    it(`--codec zstd fails cleanly on Node ${process.versions.node} (no zstd compressor)`, async ({ expect }) => {
      const d = withData();
      const r = await hotpath(d, ['compress', '--codec', 'zstd', 'data']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^hotpath compress: ERR_HOTPATH_CODEC_UNAVAILABLE: .*22\.15/);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(files(d)).toEqual(['data']);
    });
  }

  it('a truncated or corrupt input exits 1 with ERR_HOTPATH_CORRUPT_FRAME and leaves no output', async ({ expect }) => {
    const d = withData();
    const lz4 = (await hotpath(d, ['compress', '-c', 'data'])).stdout;
    const hpz = (await hotpath(d, ['compress', '--codec', 'hotpath', '-c', 'data'])).stdout;
    writeFileSync(join(d, 'cut.lz4'), lz4.subarray(0, lz4.length >>> 1)); // streamed
    const flipped = Buffer.from(hpz);
    const mid = flipped.length >>> 1;
    flipped[mid] = flipped[mid]! ^ 0x55;
    writeFileSync(join(d, 'bad.hpz'), flipped); // read whole
    const [cut, bad, viaStdin] = await Promise.all([
      hotpath(d, ['decompress', 'cut.lz4']),
      hotpath(d, ['decompress', 'bad.hpz']),
      hotpath(d, ['decompress', '-', 'piped'], lz4.subarray(0, lz4.length - 3)),
    ]);
    for (const r of [cut, bad, viaStdin]) {
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^hotpath decompress: ERR_HOTPATH_CORRUPT_FRAME: /);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    expect(files(d)).toEqual(['bad.hpz', 'cut.lz4', 'data']);
  });

  it('an unknown format exits 1 with ERR_HOTPATH_UNKNOWN_FORMAT', async ({ expect }) => {
    const d = withData();
    writeFileSync(join(d, 'text.lz4'), 'just some text, not a frame\n');
    const [named, plain] = await Promise.all([hotpath(d, ['decompress', 'text.lz4']), hotpath(d, ['decompress', '-c', 'data'])]);
    for (const r of [named, plain]) {
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^hotpath decompress: ERR_HOTPATH_UNKNOWN_FORMAT: /);
    }
    expect(plain.stdout.length).toBe(0);
    expect(files(d)).toEqual(['data', 'text.lz4']);
  });

  it('--max-output too small exits 1 with ERR_HOTPATH_OUTPUT_LIMIT and leaves no output', async ({ expect }) => {
    const d = withData();
    await hotpath(d, ['compress', 'data']);
    await hotpath(d, ['compress', '--codec', 'gzip', 'data']);
    const [lz4, gz] = await Promise.all([
      hotpath(d, ['decompress', '--max-output', '64K', 'data.lz4', 'a']),
      hotpath(d, ['decompress', '--max-output', '1000', 'data.gz', 'b']),
    ]);
    for (const r of [lz4, gz]) {
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^hotpath decompress: ERR_HOTPATH_OUTPUT_LIMIT: /);
    }
    expect(files(d)).toEqual(['data', 'data.gz', 'data.lz4']);
    const enough = await hotpath(d, ['decompress', '--max-output', String(DATA.length), 'data.lz4', 'c']);
    expect(enough.code).toBe(0);
  });

  it('a missing input exits 1 naming ENOENT', async ({ expect }) => {
    const d = tempDir();
    const r = await hotpath(d, ['compress', 'nope']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^hotpath compress: ENOENT: /);
    expect(files(d)).toEqual([]);
  });

  it.for([
    [['compress', '--bogus', 'data']],
    [['compress', '--codec', 'lzma', 'data']],
    [['compress', '-l', '3', 'data']], // lz4: level 1 only
    [['compress', '--codec', 'gzip', '-l', '10', 'data']],
    [['compress', '--codec', 'gzip', '--fast', '2', 'data']],
    [['compress', '--fast', 'x', 'data']],
    [['compress', '--fast', '0', 'data']],
    [['compress', 'data', 'out', 'extra']],
    [['compress', '-c', 'data', 'out']],
    [['decompress', 'data']], // "cannot determine an output filename"
    [['decompress', '--max-output', 'lots', 'data.lz4']],
    [['decompress', '--codec', 'hotpath', 'data.hpz']],
    [['decompress', '-l', '1', 'data.lz4']],
  ])('usage error: %j exits 2', async ([args], { expect }) => {
    const d = withData();
    const r = await hotpath(d, args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^hotpath (de)?compress: /);
    expect(r.stderr).toMatch(/usage: hotpath/);
    if (args[0] === 'decompress' && args[1] === 'data') expect(r.stderr).toMatch(/cannot determine an output filename/);
    expect(files(d)).toEqual(['data']);
  });
});
