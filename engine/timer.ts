/**
 * The longest delay a Node timer holds (2^31 − 1 ms, about 24.8 days): a longer one — Infinity
 * too — fires after 1 ms. Every option that becomes a timer is bounded by it. (A module of its
 * own: the load tester imports it without the engine's options and runtime.)
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;
