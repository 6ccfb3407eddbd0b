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
 * transaction, so a token exists exactly when its row does.
 */
export async function issueTokens(trx: Trx, deps: MintDeps, session: LoginSession, user: User): Promise<TokenResponse> {
  const ids = { sub: user.id, clientId: session.client_id, sid: session.id }
  const access = await mintAccessToken(deps, { ...ids, scope: session.scope })
  const refresh = await mintRefreshToken(deps, ids)
  await insertRefreshToken(trx, {
    jti: refresh.jti,
    session_id: session.id,
    token_hash: tokenHash(refresh.token),
    issued_at: refresh.iat,
    expires_at: refresh.exp,
  })
  const response: TokenResponse = {
    access_token: access.token,
    token_type: 'Bearer',
    expires_in: access.exp - access.iat,
    refresh_token: refresh.token,
    scope: session.scope,
  }
  if (hasScope(session.scope, 'openid')) {
    const claims = { ...userClaims(user, session.scope), sid: session.id, auth_time: session.created_at }
    response.id_token = (await mintIdToken(deps, { sub: user.id, clientId: session.client_id, claims })).token
  }
  return response
}
