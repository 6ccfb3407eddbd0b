import type Router from '@koa/router'
import type { AppDeps } from '../deps.js'

/** `GET /.well-known/jwks.json`: the public signing keys, for offline verification by services. */
export function mountJwks(router: Router, deps: AppDeps): void {
  router.get('/.well-known/jwks.json', function jwks(ctx) {
    ctx.set('Cache-Control', `public, max-age=${deps.config.jwksMaxAge}`)
    ctx.type = 'application/jwk-set+json'
    ctx.body = JSON.stringify(deps.keys.jwks())
  })
}
