import type Router from '@koa/router'
import { findIdentityOfUser } from '../db/identities.js'
import type { AppDeps } from '../deps.js'
import { parseParams, required, type Params } from '../http/body.js'
import { noStore } from '../http/no-store.js'
import { requireService } from '../http/service-auth.js'
import { activeAccessToken, activeRefreshToken, type ActiveAccessToken, type ActiveRefreshToken } from '../tokens/active.js'
import { byHint } from '../tokens/by-hint.js'

type Active = { kind: 'access_token'; token: ActiveAccessToken } | { kind: 'refresh_token'; token: ActiveRefreshToken }

/** The token as an active access token (the usual case for a service) or refresh token. */
function activeToken(deps: AppDeps, token: string, hint: string | undefined): Promise<Active | undefined> {
  return byHint<Active>(hint, 'access_token', {
    access_token: async () => ({ kind: 'access_token', token: await activeAccessToken(deps, token) }),
    refresh_token: async () => ({ kind: 'refresh_token', token: await activeRefreshToken(deps, token) }),
  })
}

/**
 * `POST /introspect` (RFC 7662), for registered services only (HTTP Basic). An active token is described
 * with its claims plus the user's `openid` for the token's app and `unionid`; anything else is exactly
 * `{"active":false}`.
 */
export function mountIntrospect(router: Router, deps: AppDeps): void {
  router.post('/introspect', noStore, requireService(deps.config.services), parseParams(), async function introspectionEndpoint(ctx) {
    const params: Params = ctx.state.params
    const active = await activeToken(deps, required(params, 'token'), params.token_type_hint)
    if (!active) {
      ctx.body = { active: false }
      return
    }
    const { claims, session, user } = active.token
    const identity = await findIdentityOfUser(deps.db, user.id, claims.client_id)
    ctx.body = {
      active: true,
      token_type: active.kind,
      scope: active.kind === 'access_token' ? active.token.claims.scope : session.scope,
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
