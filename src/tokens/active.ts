import { epochSeconds } from '../clock.js'
import type { Db } from '../db/connection.js'
import { isAccessTokenRevoked } from '../db/revoked-access-tokens.js'
import type { LoginSession, User } from '../db/schema.js'
import { findLoginSession } from '../db/sessions.js'
import { findUserById } from '../db/users.js'
import type { AccessTokenClaims } from './claims.js'
import { TokenRejected, verifyAccessToken, type VerifyDeps } from './verify.js'

export interface ActiveDeps extends VerifyDeps {
  db: Db
}

export interface ActiveAccessToken {
  claims: AccessTokenClaims
  session: LoginSession
  user: User
}

/** The login and user behind a token: its login must be live and its user enabled. */
async function liveLogin(db: Db, sid: string, sub: string, now: number): Promise<{ session: LoginSession; user: User }> {
  const session = await findLoginSession(db, sid)
  if (!session || session.user_id !== sub) throw new TokenRejected('the login of this token is unknown')
  if (session.revoked_at !== null) throw new TokenRejected('the login of this token has ended')
  if (session.expires_at <= now) throw new TokenRejected('the login of this token has reached its maximum age')
  const user = (await findUserById(db, sub)) as User
  if (user.disabled_at !== null) throw new TokenRejected('the user of this token is disabled')
  return { session, user }
}

/**
 * An access token that is valid right now from minigate's own point of view: what a service checks
 * offline (signature, `typ`, `iss`, `aud`, `exp`), and also not revoked, its login live, its user
 * enabled. Throws `TokenRejected` otherwise.
 */
export async function activeAccessToken(deps: ActiveDeps, token: string): Promise<ActiveAccessToken> {
  const claims = await verifyAccessToken(deps, token)
  if (await isAccessTokenRevoked(deps.db, claims.jti)) throw new TokenRejected('the token has been revoked')
  return { claims, ...(await liveLogin(deps.db, claims.sid, claims.sub, epochSeconds(deps.clock))) }
}
