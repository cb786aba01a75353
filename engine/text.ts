/**
 * Strings that cross into Redis keys or the arena's region names are stored as UTF-8, where a
 * lone UTF-16 surrogate has no form of its own (encoders write U+FFFD; BullMQ's Lua scripts write
 * its raw bytes): two names that differ only there would meet in one key or region. Names and
 * ids that hotpath turns into keys are checked with this (a leaf module: anything may import it).
 */

/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Whether `s` is well-formed UTF-16 (no lone surrogate): linear time. */
export function isWellFormed(s: string): boolean {
  return !LONE_SURROGATE.test(s);
}

const LONE_SURROGATES = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * `s` with each lone surrogate replaced by U+FFFD, as UTF-8 stores it (String.prototype
 * .toWellFormed, which Node 20's TypeScript lib does not declare). Returns `s` itself when it is
 * well-formed.
 */
export function toWellFormed(s: string): string {
  return isWellFormed(s) ? s : s.replace(LONE_SURROGATES, '\uFFFD');
}
