/**
 * The limiter's public types: its options, its answer (`Decision`) and the interface every
 * limiter implements (what the HTTP middleware and other callers program against).
 */

/** What a limiter answers. Durations in ms (not timestamps). */
export interface Decision {
  allowed: boolean;
  /** The limit in force (requests per window; for `adaptive`, the current limit). */
  limit: number;
  /** Whole requests (cost-1 tokens) still available after this decision. */
  remaining: number;
  /** ms until the key is back to its full allowance. */
  resetMs: number;
  /** ms until a request of this cost would be allowed (0 when allowed). */
  retryAfterMs: number;
}

export type Algorithm = 'token-bucket' | 'gcra' | 'sliding-window' | 'fixed-window' | 'adaptive';

/** What a rate limiter offers; `engine.limiter(name, options)` returns one. */
export interface RateLimiter {
  /** The limiter's name (its shared-memory table and Redis keys are named after it). */
  readonly name: string;
  readonly algorithm: Algorithm;
  /** Requests per window (for `adaptive`, the current limit). */
  readonly limit: number;
  /** The window (ms). */
  readonly windowMs: number;
  /** From local shared-memory state, on any thread, without I/O. */
  allowSync(key: string, cost?: number): Decision;
  /** Distributed when the engine has Redis (falls back to local state while Redis is unavailable). */
  allow(key: string, cost?: number): Promise<Decision>;
  /** What `allowSync` would answer, without taking anything. */
  peek(key: string, cost?: number): Decision;
  /** Gives the key its full allowance back (locally; and on Redis when distributed). */
  reset(key: string): Promise<void>;
}
