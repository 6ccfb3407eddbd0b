import type { Trx } from '../db/connection.js'
import { insertRefreshToken } from '../db/refresh-tokens.js'
import type { LoginSession, User } from '../db/schema.js'
import { hasScope } from './claims.js'
import { mintAccessToken, mintIdToken, mintRefreshToken, tokenHash, type MintDeps } from './mint.js'
import { userClaims } from './user-claims.js'

/** The RFC 6749 §5.1 token response. */
export interface TokenResponse {
  access_token: string
  token_type: 'Bearer'
  expires_in: number
  refresh_token: string
  scope: string
  id_token?: string
}

/**
 * Mints the tokens of a login session and records the refresh token (its hash only) inside the caller's
 * transaction, so a token exists exactly when its row does. `parentJti` is the refresh token this
 * pair rotates from; `scope` may narrow the login's scope for the access token (RFC 6749 §6).
 */
export async function issueTokens(
  trx: Trx,
  deps: MintDeps,
  session: LoginSession,
  user: User,
  parentJti: string | null,
  scope = session.scope,
): Promise<TokenResponse> {
  const ids = { sub: user.id, clientId: session.client_id, sid: session.id }
  const access = await mintAccessToken(deps, { ...ids, scope, loginEndsAt: session.expires_at })
  const refresh = await mintRefreshToken(deps, { ...ids, loginEndsAt: session.expires_at })
  await insertRefreshToken(trx, {
    jti: refresh.jti,
    session_id: session.id,
    token_hash: tokenHash(refresh.token),
    issued_at: refresh.iat,
    expires_at: refresh.exp,
    parent_jti: parentJti,
  })
  const response: TokenResponse = {
    access_token: access.token,
    token_type: 'Bearer',
    expires_in: access.exp - access.iat,
    refresh_token: refresh.token,
    scope,
  }
  if (hasScope(scope, 'openid')) {
    const claims = { ...userClaims(user, scope), sid: session.id, auth_time: session.created_at }
    response.id_token = (await mintIdToken(deps, { sub: user.id, clientId: session.client_id, claims })).token
  }
  return response
}
