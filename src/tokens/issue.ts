import type { LoginSession, User } from '../db/schema.js'
import { hasScope } from './claims.js'
import { mintAccessToken, mintIdToken, mintRefreshToken, type MintDeps } from './mint.js'
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
 * Signs the tokens of a login: an access token for `scope` (which may narrow the login's, RFC 6749 §6)
 * and for `resource` when one was asked for (RFC 8707),
 * a refresh token of `generation`, and an ID token with `openid`. Called after the transaction that
 * made the generation current has committed: no signing holds a transaction open, and the signatures
 * run side by side on the thread pool.
 */
export async function issueTokens(deps: MintDeps, session: LoginSession, user: User, generation: number, scope = session.scope, resource?: string): Promise<TokenResponse> {
  const ids = { sub: user.id, clientId: session.client_id, sid: session.id }
  const [access, refresh, id] = await Promise.all([
    mintAccessToken(deps, { ...ids, scope, loginEndsAt: session.expires_at, ...(resource !== undefined ? { resource } : {}) }),
    mintRefreshToken(deps, { ...ids, generation, loginEndsAt: session.expires_at }),
    hasScope(scope, 'openid')
      ? mintIdToken(deps, { sub: user.id, clientId: session.client_id, claims: { ...userClaims(user, scope), sid: session.id, auth_time: session.created_at } })
      : undefined,
  ])
  const response: TokenResponse = {
    access_token: access.token,
    token_type: 'Bearer',
    expires_in: access.exp - access.iat,
    refresh_token: refresh.token,
    scope,
  }
  if (id) response.id_token = id.token
  return response
}
