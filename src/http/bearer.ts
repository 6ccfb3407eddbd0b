import type { Context, Next } from 'koa'
import type { AppDeps } from '../deps.js'
import { BearerRequired, InsufficientScope, InvalidRequest, InvalidToken } from '../errors.js'
import { activeAccessToken, type ActiveAccessToken } from '../tokens/active.js'
import { hasScope, type AccessTokenClaims } from '../tokens/claims.js'
import { hasAudience, TokenRejected } from '../tokens/verify.js'

const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i

/**
 * The access token of an RFC 6750 request, from the `Authorization` header only: a token in the URL
 * (`?access_token=`) is refused, since URLs end up in logs and histories.
 */
function readBearer(ctx: Context): string {
  if (Object.hasOwn(ctx.query, 'access_token')) {
    const error = new InvalidRequest('access tokens must not be sent in the URL; use the Authorization header')
    error.headers['WWW-Authenticate'] = 'Bearer realm="minigate", error="invalid_request"'
    throw error
  }
  const header = ctx.get('Authorization')
  if (header === '' || !/^Bearer(\s|$)/i.test(header)) throw new BearerRequired()
  const match = BEARER.exec(header)
  if (!match) throw new InvalidToken('the Authorization header is not a well-formed Bearer token')
  return match[1] as string
}

/**
 * Authenticates a request to minigate's own endpoints by its Bearer access token: verified as a
 * service would (RS256, `typ`, `iss`, `exp`), its `aud` including the account audience (a token asked
 * for one resource is that service's alone), and not revoked, its login live and its user enabled.
 * Puts the claims, the login session and the user in `ctx.state`.
 */
export function requireAccessToken(deps: AppDeps) {
  return async function authenticateBearer(ctx: Context, next: Next) {
    const token = readBearer(ctx)
    let active: ActiveAccessToken
    try {
      active = await activeAccessToken(deps, token)
      if (!hasAudience(active.claims.aud, deps.config.accountAudience)) throw new TokenRejected("the token's audience is not minigate's account endpoints")
    } catch (error) {
      if (error instanceof TokenRejected) throw new InvalidToken(error.reason)
      throw error
    }
    ctx.state.claims = active.claims
    ctx.state.session = active.session
    ctx.state.user = active.user
    await next()
  }
}

/** RFC 6750 §3.1: the token is good but was not granted `scope`. Runs after `requireAccessToken`. */
export function requireScope(scope: string) {
  return async function checkScope(ctx: Context, next: Next) {
    const claims: AccessTokenClaims = ctx.state.claims
    if (!hasScope(claims.scope, scope)) throw new InsufficientScope(scope)
    await next()
  }
}
