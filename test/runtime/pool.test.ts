import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClosedError, ErrorCodes, TaskFailedError, type Engine } from '../../engine/index.js';
import { ID_SPACE } from '../../engine/runtime/pool.js';
import { testEngine } from '../helpers.js';

let engine: Engine;
beforeAll(async () => {
  engine = await testEngine();
});
afterAll(() => engine.close());

describe('worker pool over the channel', () => {
  it('round-trips payloads of every kind', async () => {
    const values = [null, 0, -1.5, 'hé', [1, 'a', { b: true }], { nested: { deep: [1, 2] } }, 2n ** 70n, new Date(1234), new Set([1, 2])];
    for (const v of values) expect(await engine.run('echo', v)).toEqual(v);
    expect(await engine.run('echo')).toBeUndefined();
  });

  it('moves bytes as bytes, including buffers larger than the ring', async () => {
    for (const n of [0, 1, 1000, 64 * 1024, 3_000_000]) {
      const buf = Buffer.alloc(n);
      for (let i = 0; i < n; i++) buf[i] = (i * 7) & 255;
      const back = (await engine.run('echo', buf)) as Buffer;
      expect(Buffer.isBuffer(back)).toBe(true);
      expect(back.equals(buf)).toBe(true);
    }
  });

  it('computes in the worker with the shared kernels (same hash as the main thread)', async () => {
    for (const key of ['a', 'user:42', 'x'.repeat(500), 'ключ']) {
      expect(await engine.run('hash32', key)).toBe(engine.runtime.hasher.hash(key));
    }
  });

  it('keeps 10 000 tasks in flight and answers every one with its own result', async () => {
    const n = 10_000;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => engine.run('echo', i)));
    expect(results).toEqual(Array.from({ length: n }, (_, i) => i));
  });

  it('uses every worker', async () => {
    const ids = new Set(await Promise.all(Array.from({ length: 200 }, () => engine.run('whoami'))));
    expect(ids.size).toBe(2);
  });

  it('rejects with TaskFailedError carrying the worker error (sync and async)', async () => {
    const err = await engine.run('fail', 'nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskFailedError);
    expect((err as TaskFailedError).code).toBe(ErrorCodes.TASK_FAILED);
    expect((err as Error).message).toContain('nope');
    const cause = (err as Error).cause as Error & { code?: string };
    expect(cause.name).toBe('RangeError');
    expect(cause.code).toBe('E_TASK_SAID_NO');
    await expect(engine.run('failAsync', 'later')).rejects.toThrow(/later/);
  });

  it('rejects an unknown task, an unencodable payload and an unencodable result with typed errors', async () => {
    await expect(engine.run('no-such-task')).rejects.toMatchObject({ code: ErrorCodes.UNKNOWN_TASK });
    await expect(engine.run('echo', { f: () => 1 })).rejects.toThrow(/payload\.f is a function/);
    await expect(engine.run('echo', [1, { s: Symbol('x') }])).rejects.toThrow(/payload\.1\.s is a symbol/);
    await expect(engine.run('unencodable')).rejects.toMatchObject({ code: ErrorCodes.TASK_FAILED });
    expect(await engine.run('echo', 'still fine')).toBe('still fine');
  });

  it('a task module that cannot be loaded fails its tasks, not the worker', async () => {
    engine.runtime.pool.register('missing-module', new URL('./no-such-file.mjs', import.meta.url));
    await expect(engine.run('missing-module')).rejects.toMatchObject({ code: ErrorCodes.TASK_FAILED });
    engine.runtime.pool.register('missing-export', new URL('../fixtures/tasks.mjs', import.meta.url), 'nothingHere');
    await expect(engine.run('missing-export')).rejects.toThrow(/nothingHere/);
    expect(await engine.run('echo', 1)).toBe(1);
  });

  it('refuses to register a name twice for different code', () => {
    expect(() => engine.runtime.pool.register('echo', 'file:///elsewhere.mjs')).toThrow(TypeError);
  });

  it('cancels through an AbortSignal', async () => {
    const ac = new AbortController();
    const p = engine.run('wait', 200, { signal: ac.signal });
    ac.abort(new Error('changed my mind'));
    await expect(p).rejects.toMatchObject({ code: ErrorCodes.CANCELLED });
    const pre = AbortSignal.abort();
    await expect(engine.run('echo', 1, { signal: pre })).rejects.toMatchObject({ code: ErrorCodes.CANCELLED });
    expect(await engine.run('echo', 2)).toBe(2);
  });
});

describe('close()', () => {
  it('waits for tasks in flight, then rejects new ones; idempotent', async () => {
    const e = await testEngine();
    const inflight = e.run('wait', 30);
    const c1 = e.close();
    const c2 = e.close();
    expect(c1).toBe(c2);
    await expect(e.run('echo', 1)).rejects.toBeInstanceOf(ClosedError);
    expect(await inflight).toBe(30);
    await c1;
    expect(e.closed).toBe(true);
  });

  it('rejects what is still running after closeTimeoutMs with ERR_HOTPATH_CLOSED', async () => {
    const e = await testEngine({ closeTimeoutMs: 20 });
    const stuck = expect(e.run('wait', 60_000)).rejects.toMatchObject({ code: ErrorCodes.CLOSED });
    await e.close();
    await stuck;
  });

  it('supports await using', async () => {
    let inner: Engine | undefined;
    {
      await using e = await testEngine();
      inner = e;
      expect(await e.run('echo', 'x')).toBe('x');
    }
    expect(inner.closed).toBe(true);
  });
});

describe('start order', () => {
  it('a task whose module is still loading is not overtaken by later tasks', async () => {
    const e = await testEngine({ workers: 1 });
    try {
      e.runtime.pool.register('seq', new URL('../fixtures/tasks.mjs', import.meta.url), 'seq');
      const r = e.runtime.region('test:seq', 8);
      await e.run('seq', r.offset); // tasks.mjs is loaded now; tasks-late.mjs is not
      e.runtime.pool.register('seqLate', new URL('../fixtures/tasks-late.mjs', import.meta.url), 'seqLate');
      const late = e.run('seqLate', r.offset);
      const after = Array.from({ length: 5 }, () => e.run('seq', r.offset));
      expect(await late).toBe(1);
      expect(await Promise.all(after)).toEqual([2, 3, 4, 5, 6]);
    } finally {
      await e.close();
    }
  });
});

describe('AbortSignal bookkeeping', () => {
  it('removes its abort listener when the task settles (one signal, many tasks)', async () => {
    const e = await testEngine({ workers: 1 });
    try {
      const ac = new AbortController();
      const { getEventListeners } = await import('node:events');
      await Promise.all(Array.from({ length: 100 }, (_, i) => e.run('echo', i, { signal: ac.signal })));
      expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    } finally {
      await e.close();
    }
  });
});

describe('hostile task behaviour does not take the worker down', () => {
  it.each(['throwBare', 'rejectBare', 'badThenable'])('%s fails alone; a sibling task and the worker survive', async (task) => {
    const exitsBefore = engine.runtime.pool.exits;
    const sibling = engine.run('wait', 30);
    await expect(engine.run(task)).rejects.toMatchObject({ code: ErrorCodes.TASK_FAILED });
    expect(await sibling).toBe(30);
    expect(engine.runtime.pool.exits).toBe(exitsBefore);
  });
});

describe('back-pressure', () => {
  it('a Buffer queued behind a full ring is copied: reusing it after run() changes nothing sent', async () => {
    const e = await testEngine({ workers: 1, channel: { ringBytes: 4096 } });
    try {
      const blocker = e.run('block', 200);
      await new Promise((r) => setTimeout(r, 30)); // the worker is busy: the ring fills up
      const fillers = Array.from({ length: 12 }, () => e.run('echo', new Uint8Array(500)));
      const buf = Buffer.alloc(100, 0x41);
      const echoed = e.run('echo', buf);
      buf.fill(0x5a);
      expect(((await echoed) as Buffer).toString()).toBe('A'.repeat(100));
      await Promise.all([blocker, ...fillers]);
    } finally {
      await e.close();
    }
  });

  it('aborting the last task in flight lets the process exit', async () => {
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const script = new URL('../fixtures/abort-then-exit.mjs', import.meta.url).pathname;
    const { stdout } = await promisify(execFile)(process.execPath, [script], { timeout: 20_000 });
    expect(stdout.trim()).toBe(ErrorCodes.CANCELLED);
  });
});

describe('run() bad input and id reuse (review36)', () => {
  it('an awkward cause (a throwing getter, a primitive, an object) never costs the error its class or code (review40)', async () => {
    engine.runtime.pool.register('failWithOddCause', new URL('../fixtures/tasks.mjs', import.meta.url), 'failWithOddCause');
    const thrown = async (kind: string): Promise<Error & { code?: string; cause?: unknown }> =>
      ((await engine.run('failWithOddCause', kind).then(() => undefined, (e: unknown) => e)) as TaskFailedError).cause as Error & { code?: string; cause?: unknown };
    for (const kind of ['getter', 'string', 'null', 'object']) {
      const e = await thrown(kind);
      expect(e).toBeInstanceOf(TypeError);
      expect(e).toMatchObject({ message: 'outer', code: 'E_OUTER' });
    }
    expect((await thrown('getter')).cause).toBeUndefined();
    expect((await thrown('string')).cause).toBe('just a string');
    expect((await thrown('null')).cause).toBeNull();
    expect(String(((await thrown('object')).cause as Error).message)).toMatch(/not an Error/);
  });

  it('an AggregateError crosses with its errors (the first 16), its cause, and the count of the rest', async () => {
    engine.runtime.pool.register('failAggregate', new URL('../fixtures/tasks.mjs', import.meta.url), 'failAggregate');
    const thrownBy = async (n: number): Promise<AggregateError & { errorsOmitted?: number }> => {
      const err = await engine.run('failAggregate', n).then(() => undefined, (e: unknown) => e as TaskFailedError);
      expect(err).toBeInstanceOf(TaskFailedError);
      return err!.cause as AggregateError & { errorsOmitted?: number };
    };
    const few = await thrownBy(3);
    expect(few).toBeInstanceOf(AggregateError);
    expect(few.message).toBe('all 3 failed');
    expect(few.errors).toHaveLength(3);
    expect(few.errors[0]).toBeInstanceOf(RangeError);
    expect(few.errors[0]).toMatchObject({ message: 'attempt 0', code: 'E_0' });
    expect(String((few.errors[1] as Error).message)).toMatch(/not an Error.*a string/);
    expect((few.cause as Error).message).toBe('why');
    expect(few.errorsOmitted).toBeUndefined();
    const many = await thrownBy(1000);
    expect(many.errors).toHaveLength(16);
    expect(many.errorsOmitted).toBe(984);
  });

  it('register() takes a module URL or an absolute path; a relative one is refused at once', async () => {
    expect(() => engine.runtime.pool.register('rel', './job.mjs')).toThrow(/moduleUrl must be a module URL .* got "\.\/job\.mjs"/);
    expect(() => engine.runtime.pool.register('http', 'https://example.com/job.mjs')).toThrow(TypeError);
    engine.runtime.pool.register('byPath', new URL('../fixtures/tasks.mjs', import.meta.url).pathname, 'wait');
    expect(await engine.run('byPath', 1)).toBe(1);
  });

  it('a task\'s error keeps its class and its cause chain across the channel', async () => {
    engine.runtime.pool.register('failWithCause', new URL('../fixtures/tasks.mjs', import.meta.url), 'failWithCause');
    const err = await engine.run('failWithCause', 'bad input').then(() => undefined, (e: unknown) => e as TaskFailedError);
    expect(err).toBeInstanceOf(TaskFailedError);
    const thrown = err!.cause as Error & { cause?: Error & { code?: string } };
    expect(thrown).toBeInstanceOf(TypeError);
    expect(thrown.message).toBe('bad input');
    expect(thrown.cause).toBeInstanceOf(RangeError);
    expect(thrown.cause).toMatchObject({ message: 'the root', code: 'E_ROOT' });
  });

  it('a signal that is not an AbortSignal, or options that are not an object, reject with a TypeError and send nothing', async () => {
    const before = engine.runtime.pool.inflight;
    await expect(engine.run('echo', 1, { signal: {} as never })).rejects.toThrow(/options\.signal must be an AbortSignal/);
    await expect(engine.runtime.pool.run('echo', 1, 'fast' as never)).rejects.toThrow(TypeError);
    expect(engine.runtime.pool.inflight).toBe(before);
  });

  it('an id given up on while its task still runs is not reused until the answer comes', async () => {
    const e = await testEngine({ workers: 1 });
    const saved = ID_SPACE.max;
    try {
      ID_SPACE.max = 16; // ids wrap after 16 calls
      const ac = new AbortController();
      const old = e.run('wait', 300, { signal: ac.signal }); // id 1; ignores its signal: answers 300 at ~300 ms
      await e.run('echo', 'after'); // id 2: answered once the one worker has started the wait
      ac.abort();
      await expect(old).rejects.toMatchObject({ code: ErrorCodes.CANCELLED });
      for (let k = 0; k < 14; k++) expect(await e.run('echo', k)).toBe(k); // ids 3 .. 16: the next one wraps
      // Id 1 would be next: while the abandoned call may still answer, it is skipped — else this
      // call took the abandoned call's answer (300) at ~300 ms.
      expect(await e.run('wait', 500)).toBe(500);
    } finally {
      ID_SPACE.max = saved;
      await e.close();
    }
  });
});
