/**
 * `hotpath/http` — framework middleware (express, fastify) for the rate limiter:
 *
 *     app.use(expressRateLimit(engine.limiter('api', { limit: 100, window: 60_000 })))
 *     app.addHook('onRequest', fastifyRateLimit(engine.limiter('api', { limit: 100, window: 60_000 })))
 *
 * Importing this entry point imports neither framework, starts no thread and opens no handle.
 */
export { expressRateLimit, fastifyRateLimit } from './rate-limit.js';
export type {
  RateLimitOptions,
  ExpressLikeRequest,
  ExpressRateLimitMiddleware,
  FastifyLikeRequest,
  FastifyLikeReply,
  FastifyRateLimitHook,
} from './rate-limit.js';
export { HotpathError, ErrorCodes } from '../errors.js';
