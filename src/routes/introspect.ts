import type Router from '@koa/router'
import { findIdentityOfUser } from '../db/identities.js'
import type { AppDeps } from '../deps.js'
import { parseParams, required, type Params } from '../http/body.js'
import { noStore } from '../http/no-store.js'
import { requireService } from '../http/service-auth.js'
import { activeAccessToken, type ActiveAccessToken } from '../tokens/active.js'
import { TokenRejected } from '../tokens/verify.js'

/** The token as an active access token, or undefined for anything else. */
async function activeToken(deps: AppDeps, token: string): Promise<ActiveAccessToken | undefined> {
  try {
    return await activeAccessToken(deps, token)
  } catch (error) {
    if (error instanceof TokenRejected) return undefined
    throw error
  }
}

/**
 * `POST /introspect` (RFC 7662), for registered services only (HTTP Basic). An active access token is
 * described with its claims plus the user's `openid` for the token's app and `unionid`; anything else,
 * a refresh token included, is exactly `{"active":false}`.
 */
export function mountIntrospect(router: Router, deps: AppDeps): void {
  router.post('/introspect', noStore, requireService(deps.config.services), parseParams(), async function introspectionEndpoint(ctx) {
    const params: Params = ctx.state.params
    // token_type_hint is not read: only access tokens can be active. A refresh token's audience is
    // minigate alone, and a service that checks nothing but `active` must never accept one.
    const active = await activeToken(deps, required(params, 'token'))
    if (!active) {
      ctx.body = { active: false }
      return
    }
    const { claims, user } = active
    const identity = await findIdentityOfUser(deps.db, user.id, claims.client_id)
    ctx.body = {
      active: true,
      // RFC 7662 §2.2 takes token_type from RFC 6749 §5.1: the type the token is used with.
      token_type: 'Bearer',
      scope: claims.scope,
      client_id: claims.client_id,
      sub: claims.sub,
      iss: claims.iss,
      aud: claims.aud,
      iat: claims.iat,
      exp: claims.exp,
      jti: claims.jti,
      sid: claims.sid,
      ...(identity ? { openid: identity.openid } : {}),
      ...(user.unionid !== null ? { unionid: user.unionid } : {}),
    }
  })
}
