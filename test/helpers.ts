import { createEngine, type Engine, type EngineOptions } from '../engine/index.js';

export const TASKS = new URL('./fixtures/tasks.mjs', import.meta.url).href;

/** A small engine for tests: 2 workers, 16 MiB arena, 64 KiB rings, the fixture tasks registered. */
export async function testEngine(options: EngineOptions = {}): Promise<Engine> {
  const engine = await createEngine({ workers: 2, memory: 16 << 20, channel: { ringBytes: 64 * 1024 }, ...options });
  for (const name of ['whoami', 'seq', 'gcraHammer', 'breakerHammer', 'breakerState', 'breakerProbeThenDie', 'limiterHammer', 'limiterSpec', 'encodeShapes', 'throwBare', 'rejectBare', 'badThenable', 'block', 'blockThenDie', 'countHits', 'recordLatencies', 'bump', 'findRegion', 'createRegion', 'fail', 'failAsync', 'wait', 'exitMidTask', 'throwAtTopLevel', 'exhaustMemory', 'unencodable']) {
    engine.runtime.pool.register(name, TASKS, name);
  }
  return engine;
}

/** The rejection of `p` (fails the test if it resolves). */
export async function rejection(p: Promise<unknown>): Promise<{ code?: string; message: string; name: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code?: string; message: string; name: string };
  }
  throw new Error('expected a rejection');
}

/** A logger that drops everything (startService's `log` in tests). */
export const silentLog = { info: (): void => undefined, warn: (): void => undefined, error: (): void => undefined };
