/**
 * `hotpath/http` — framework middleware (express, fastify) for the rate limiter.
 *
 * The middleware arrives with the limiter component; until then this entry exports only the
 * error types, so that the subpath resolves (with types) for consumers.
 */
export { HotpathError, ErrorCodes } from '../errors.js';
