import type Router from '@koa/router'
import type { AppDeps } from '../deps.js'

/**
 * `GET /.well-known/jwks.json`: the public signing keys, for offline verification by services.
 *
 * Verifiers may cache it for `max-age`. A key is published at least that long (plus reload time and
 * clock skew) before it signs, so a cache fetched before it appeared has expired by then; and no
 * response is cached past the next scheduled change of the key set.
 */
export function mountJwks(router: Router, deps: AppDeps): void {
  router.get('/.well-known/jwks.json', function jwks(ctx) {
    const maxAge = Math.max(0, Math.min(deps.config.jwksMaxAge, deps.keys.secondsUntilChange()))
    ctx.set('Cache-Control', `public, max-age=${maxAge}`)
    ctx.type = 'application/jwk-set+json'
    ctx.body = JSON.stringify(deps.keys.jwks())
  })
}
