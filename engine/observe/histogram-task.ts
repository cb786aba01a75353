/**
 * The worker task behind the summaries: a worker's HDR histograms, encoded, with the pool slot and
 * thread it comes from. The main thread keeps each slot's last answer (metrics.ts), so a worker
 * that is busy at scrape time, or has died since, still counts with what it last sent.
 */
import { threadId } from 'node:worker_threads';
import { distUrl } from '../runtime/paths.js';
import type { TaskContext } from '../runtime/worker.js';

/** Name the engine registers the task under. */
export const HISTOGRAM_TASK = 'hotpath:histograms';
/** The built module workers load it from. */
export const HISTOGRAM_TASK_MODULE = distUrl('engine/observe/histogram-task.js');

/** One worker's answer. */
export interface HistogramAnswer {
  /** Its pool slot (a slot has one live worker at a time; a new threadId there means the old one is gone). */
  slot: number;
  /** Its threadId. */
  thread: number;
  /** Histogram name → compressed base64 HDR histogram (durations in µs). */
  histograms: Record<string, string>;
}

export function histograms(_payload: unknown, ctx: TaskContext): HistogramAnswer {
  return { slot: ctx.slot, thread: threadId, histograms: ctx.runtime.metrics.encodeHistograms() };
}

/** True when `a` has the shape of a HistogramAnswer (a broadcast answer may be an error). */
export function isHistogramAnswer(a: unknown): a is HistogramAnswer {
  if (a === null || typeof a !== 'object' || a instanceof Error) return false;
  const x = a as Partial<HistogramAnswer>;
  return Number.isInteger(x.slot) && Number.isInteger(x.thread) && x.histograms !== null && typeof x.histograms === 'object';
}
