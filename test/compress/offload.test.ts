/**
 * Compression off the calling thread: on the engine's workers (one task, or parallel blocks
 * through shared staging slots, or through the rings when the arena has no room for them),
 * errors that come back typed, and hotpath/compress's private runtime.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type Engine } from '../../engine/index.js';
import { CorruptFrameError, ErrorCodes, OutputLimitError } from '../../engine/errors.js';

const run = promisify(execFile);
const text = Buffer.from(Array.from({ length: 200_000 }, (_, i) => `record ${i} ${i % 17 === 0 ? 'special' : 'plain'} value=${(i * 7919) % 10007}\n`).join(''));

let engine: Engine;
beforeAll(async () => {
  engine = await createEngine({ workers: 2, memory: 32 << 20, metrics: false });
});
afterAll(() => engine.close());

describe('offloaded compression', () => {
  it(`parallel blocks (${(text.length / 2 ** 20).toFixed(1)} MiB): the same bytes compressSync writes, in both formats`, async () => {
    for (const format of ['hotpath', 'native'] as const) {
      const parallel = await engine.compress(text, { format });
      expect(parallel.equals(engine.compressSync(text, { format }))).toBe(true);
      expect((await engine.decompress(parallel)).equals(text)).toBe(true);
    }
    // The workers compressed the staged blocks where they were (their output regions exist).
    expect(engine.runtime.regions().some((r) => r.name.startsWith('hotpath:czo:'))).toBe(true);
  });

  it('staging slots but no room for the workers\' output regions: blocks go through their private workspaces', async () => {
    const bs = 256 << 10;
    const e = await createEngine({ workers: 2, memory: 16 << 20, metrics: false, compress: { blockSize: bs } });
    try {
      // Leave room for the six staging slots (and their hash state), not for an output region.
      const staging = 6 * (bs + 64) + 64;
      e.runtime.region('test:fill', e.runtime.arena.freeBytes - staging - 4096);
      const big = Buffer.concat([text, text]);
      const f = await e.compress(big);
      expect(e.runtime.regions().some((r) => r.name.startsWith('hotpath:cz:'))).toBe(true);
      expect(e.runtime.regions().some((r) => r.name.startsWith('hotpath:czo:'))).toBe(false);
      expect(f.equals(e.compressSync(big))).toBe(true);
    } finally {
      await e.close();
    }
  });

  it('each worker carves one output region, whatever the lengths of the last blocks (review40)', async () => {
    for (const tail of [1, 1000, 70_000, 300_000, 700_000]) {
      const input = text.subarray(0, 2 * (1 << 20) + tail);
      expect((await engine.compress(input, { codec: 'lz4' })).equals(engine.compressSync(input, { codec: 'lz4' }))).toBe(true);
    }
    const czo = engine.runtime.regions().filter((r) => r.name.startsWith('hotpath:czo:'));
    expect(czo.length).toBeGreaterThan(0);
    expect(czo.length).toBeLessThanOrEqual(2); // one per worker (two workers)
  });

  it('parallel blocks that do not compress are stored, and read back', async () => {
    // Blocks of random bytes (stored), then text (compressed), in one input.
    const mixed = Buffer.concat([randomBytes(3 << 20), text]);
    const f = await engine.compress(mixed, { codec: 'lz4' });
    expect(f.equals(engine.compressSync(mixed, { codec: 'lz4' }))).toBe(true);
    expect(engine.decompressSync(f).equals(mixed)).toBe(true);
  });

  it('a first block far smaller than the rest: the output outgrows its estimate and stays exact', async () => {
    // The output is sized from the first block's ratio (zeros: ~250×); random blocks after it
    // do not fit that estimate, and what was placed moves to a worst-case buffer.
    const skewed = Buffer.concat([Buffer.alloc(1 << 20), randomBytes(3 << 20), text]);
    for (const format of ['hotpath', 'native'] as const) {
      const f = await engine.compress(skewed, { codec: 'lz4', format });
      expect(f.equals(engine.compressSync(skewed, { codec: 'lz4', format }))).toBe(true);
      expect(engine.decompressSync(f).equals(skewed)).toBe(true);
    }
  });

  it('a first block that compresses worse than the rest: the frame is not left in a buffer sized for the estimate', async () => {
    const skewed = Buffer.concat([randomBytes(1 << 20), text, text, text]);
    const f = await engine.compress(skewed, { codec: 'lz4' });
    expect(f.equals(engine.compressSync(skewed, { codec: 'lz4' }))).toBe(true);
    // The estimate (the rest at the random block's ratio) was ~3× the frame: copied to its size.
    expect(f.buffer.byteLength - f.length).toBeLessThanOrEqual(f.length >>> 3);
    // A frame far smaller than the estimate's 64 KiB spare too (review77: 562 bytes in 65 831).
    const zeros = Buffer.alloc(4 << 20);
    const z = await engine.compress(zeros, { codec: 'lz4' }); // ~16 KB
    expect(z.equals(engine.compressSync(zeros, { codec: 'lz4' }))).toBe(true);
    expect(z.buffer.byteLength - z.length).toBeLessThanOrEqual(z.length >>> 3);
  });

  it('many parallel compressions at once share the staging slots without mixing blocks', async () => {
    const inputs = Array.from({ length: 6 }, (_, k) => Buffer.concat([Buffer.from(`input ${k}\n`), text.subarray(k * 1000)]));
    const frames = await Promise.all(inputs.map((d) => engine.compress(d)));
    frames.forEach((f, k) => expect(engine.decompressSync(f).equals(inputs[k]!)).toBe(true));
  });

  it('a parallel compression aborted mid-way rejects with ERR_HOTPATH_CANCELLED; the next ones still work', async () => {
    const big = Buffer.concat([text, text, text, text]);
    for (let k = 0; k < 6; k++) {
      const ac = new AbortController();
      const p = engine.compress(big, { signal: ac.signal });
      setImmediate(() => ac.abort());
      await expect(p).rejects.toMatchObject({ code: ErrorCodes.CANCELLED });
    }
    expect(engine.decompressSync(await engine.compress(big)).equals(big)).toBe(true);
    // No slot is lost to a cancel (review30: each aborted call retired its slots for good, and
    // every later compression went through the rings at about half the speed).
    const { slots } = engine.compressor.staging!;
    expect(slots).toBe(engine.runtime.pool.threads * 3);
    for (let k = 0; k < 50 && engine.compressor.staging!.free < slots; k++) await new Promise((r) => setImmediate(r));
    expect(engine.compressor.staging).toEqual({ slots, free: slots });
  });

  it('a signal that is not an AbortSignal is a TypeError naming it, never an unhandled rejection (review30)', async () => {
    const bad = { signal: { aborted: false } as unknown as AbortSignal };
    await expect(engine.compress(text, { ...bad, level: 3 })).rejects.toThrow(/options\.signal must be an AbortSignal/);
    await expect(engine.compress(text, bad)).rejects.toThrow(/options\.signal must be an AbortSignal/);
    await expect(engine.decompress(Buffer.from('not a frame'), bad)).rejects.toThrow(/options\.signal must be an AbortSignal/);
    await expect(engine.decompress(text, { signal: 'x' as unknown as AbortSignal })).rejects.toThrow(TypeError);
  });

  it('a small frame that declares a large output is decoded on a worker, not on the event loop (review30)', async () => {
    const zeros = Buffer.alloc(8 << 20);
    for (const frame of [engine.compressSync(zeros, { codec: 'gzip' }), engine.compressSync(zeros, { format: 'native' })]) {
      expect(frame.length).toBeLessThan(64 << 10); // under the offload threshold by its own size
      const pool = engine.runtime.pool;
      const inflight = pool.inflight;
      const out = engine.decompress(frame);
      for (let i = 0; i < 20; i++) await Promise.resolve(); // (a decode on this thread would be over by now)
      expect(pool.inflight).toBe(inflight + 1);
      expect((await out).equals(zeros)).toBe(true);
    }
  });

  it('one task for inputs under two blocks; zlib codecs in a hotpath frame too', async () => {
    const mid = text.subarray(0, 300_000);
    for (const codec of ['lz4', 'gzip', 'brotli'] as const) {
      const f = await engine.compress(mid, { codec });
      expect((await engine.decompress(f)).equals(mid)).toBe(true);
    }
  });

  it('errors from a worker come back typed: corrupt frame, output limit', async () => {
    const frame = await engine.compress(text);
    const bad = Buffer.from(frame);
    bad[bad.length >> 1]! ^= 0xff;
    const e1 = await engine.decompress(bad).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(CorruptFrameError);
    const e2 = await engine.decompress(frame, { maxOutputBytes: 100_000 }).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(OutputLimitError);
    expect((e2 as OutputLimitError).code).toBe(ErrorCodes.OUTPUT_LIMIT);
  });

  it('without room in the arena for staging slots, blocks travel through the rings', async () => {
    const small = await createEngine({ workers: 2, memory: 8 << 20, channel: { ringBytes: 256 << 10 }, metrics: false, compress: { blockSize: 4 << 20 } });
    try {
      const big = Buffer.concat([text, text, text]);
      const f = await small.compress(big);
      expect(f.equals(small.compressSync(big))).toBe(true);
      expect(small.runtime.regions().some((r) => r.name.startsWith('hotpath:cz:'))).toBe(false);
    } finally {
      await small.close();
    }
  });

  it('engine options: compress is validated before any thread starts', async () => {
    await expect(createEngine({ compress: { blockSize: 3 } })).rejects.toThrow(/options\.compress\.blockSize/);
    await expect(createEngine({ compress: { nope: 1 } as never })).rejects.toThrow(/options\.compress\.nope is not a known option/);
  });

  it('after close(): ERR_HOTPATH_CLOSED', async () => {
    const e = await createEngine({ workers: 1, memory: 16 << 20, metrics: false });
    await e.close();
    await expect(e.compress(text)).rejects.toMatchObject({ code: ErrorCodes.CLOSED });
  });
});

describe('hotpath/compress without an engine', () => {
  const fixture = new URL('../fixtures/compress-engineless.mjs', import.meta.url).pathname;

  it('the Sync functions start no thread', async () => {
    const { stdout } = await run(process.execPath, [fixture, 'sync'], { timeout: 30_000 });
    const r = JSON.parse(stdout) as { ok: boolean; threadsBefore: number; threadsAfter: number };
    expect(r.ok).toBe(true);
    expect(r.threadsAfter).toBe(r.threadsBefore);
  });

  it('the async functions start private workers, and the script still exits by itself', async () => {
    const { stdout } = await run(process.execPath, [fixture, 'async'], { timeout: 30_000 });
    const r = JSON.parse(stdout) as { ok: boolean; threadsBefore: number; threadsAfter: number };
    expect(r.ok).toBe(true);
    expect(r.threadsAfter).toBeGreaterThan(r.threadsBefore);
  });
});
