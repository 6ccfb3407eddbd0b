import type Router from '@koa/router'
import type { User } from '../db/schema.js'
import type { AppDeps } from '../deps.js'
import { requireAccessToken } from '../http/bearer.js'
import type { AccessTokenClaims } from '../tokens/claims.js'
import { userClaims } from '../tokens/user-claims.js'

/** `GET /userinfo`: OpenID Connect claims about the token's user, as far as its scope allows. */
export function mountUserinfo(router: Router, deps: AppDeps): void {
  router.get('/userinfo', requireAccessToken(deps), function userinfo(ctx) {
    const claims: AccessTokenClaims = ctx.state.claims
    const user: User = ctx.state.user
    ctx.set('Cache-Control', 'no-store')
    ctx.body = { sub: user.id, ...userClaims(user, claims.scope) }
  })
}
