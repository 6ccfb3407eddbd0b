/**
 * `@minigate/verify`: verify minigate access tokens in a Node service.
 *
 * @example
 * import { createVerifier, requireScope } from '@minigate/verify'
 * const verifier = createVerifier({ issuer: 'https://id.example.com', audience: 'minigate-api' })
 * router.get('/orders', verifier.koa(), requireScope('profile'), (ctx) => { ctx.body = { sub: ctx.state.auth.sub } })
 *
 * @packageDocumentation
 */
export { createVerifier, type Verifier, type VerifierOptions, type VerifyOptions } from './verifier.js'
export { requireScope, bearerToken, type KoaMiddleware, type ExpressMiddleware, type ScopeMiddleware, type KoaContextLike, type ExpressRequestLike, type ExpressResponseLike } from './middleware.js'
export { scopesOf, type AccessTokenClaims } from './claims.js'
export type { IntrospectionOptions } from './introspection.js'
export { createEventPoller, EVENT_TYPE_URIS, type EventPoller, type EventPollerOptions, type PollResult, type SecurityEvent, type SecurityEventType } from './events.js'
export { VerifyError, TokenRequired, InvalidRequest, InvalidToken, InsufficientScope, TemporarilyUnavailable, ConfigurationError } from './errors.js'
