import { epochSeconds } from '../clock.js'
import { recordEvent } from '../db/audit.js'
import type { Trx } from '../db/connection.js'
import { findRefreshToken, hasSpentChild, revokeUnspentChildren, spendRefreshToken, useGrace } from '../db/refresh-tokens.js'
import type { RefreshToken } from '../db/schema.js'
import { findLoginSession, revokeFamily, touchLoginSession } from '../db/sessions.js'
import { findUserById } from '../db/users.js'
import type { AppDeps } from '../deps.js'
import { InvalidGrant, InvalidScope } from '../errors.js'
import { required, type Params } from '../http/body.js'
import { enforce } from '../http/rate-limit.js'
import type { GrantRequest } from './grant.js'
import type { RefreshTokenClaims } from '../tokens/claims.js'
import { issueTokens, type TokenResponse } from '../tokens/issue.js'
import { tokenHash } from '../tokens/mint.js'
import { TokenRejected, verifyRefreshToken } from '../tokens/verify.js'
import { resolveClient } from './client.js'
import { parseScope } from './scope.js'

type Outcome = { tokens: TokenResponse } | { refused: string }

/** RFC 6749 §6: a refresh may narrow the login's scope for the new access token, never widen it. */
function narrowedScope(requested: string | undefined, granted: string): string {
  if (requested === undefined || requested.trim() === '') return granted
  const scope = parseScope(requested)
  const allowed = granted.split(' ')
  if (!scope.split(' ').every((item) => allowed.includes(item))) throw new InvalidScope('a refresh cannot add scopes the login was not granted')
  return scope
}

async function verified(deps: AppDeps, token: string): Promise<RefreshTokenClaims> {
  try {
    return await verifyRefreshToken(deps, token)
  } catch (error) {
    if (error instanceof TokenRejected) throw new InvalidGrant(error.reason)
    throw error
  }
}

/**
 * Within the grace window a replay of the token spent last (none of its successors used yet) gets a new
 * pair, for a phone that lost the response to its refresh. Off when the window is 0.
 */
async function withinGrace(trx: Trx, deps: AppDeps, row: RefreshToken, now: number): Promise<boolean> {
  const { refreshGraceSeconds, refreshGraceReuses } = deps.config
  if (refreshGraceSeconds === 0 || row.spent_at === null) return false
  if (row.spent_at + refreshGraceSeconds < now || row.grace_uses >= refreshGraceReuses) return false
  if (await hasSpentChild(trx, row.jti)) return false
  return useGrace(trx, row.jti, row.grace_uses)
}

/**
 * `grant_type=refresh_token` (RFC 6749 §6, rotated per RFC 9700 §4.14): the presented token is spent by
 * compare-and-set and a new pair is issued in the same family, in one transaction. Presenting a spent
 * token again is reuse: the whole family is revoked and the event audited.
 */
export async function refreshTokenGrant(params: Params, deps: AppDeps, request: GrantRequest): Promise<TokenResponse> {
  const app = resolveClient(deps.config.apps, params.client_id)
  const presented = required(params, 'refresh_token')
  const claims = await verified(deps, presented)
  if (claims.client_id !== app.appid) throw new InvalidGrant('the refresh token was issued to another client')
  // The user's own limit first: a user replaying a dead token must not spend the whole app's budget.
  enforce(deps.limits?.user, claims.sub, 'for this user')
  enforce(deps.limits?.client, app.appid, 'for this client')

  const outcome = await deps.db.transaction().execute(async (trx): Promise<Outcome> => {
    const now = epochSeconds(deps.clock)
    const row = await findRefreshToken(trx, claims.jti)
    if (!row || row.token_hash !== tokenHash(presented) || row.session_id !== claims.sid) return { refused: 'the refresh token is unknown' }
    const session = await findLoginSession(trx, row.session_id)
    if (!session || session.revoked_at !== null) return { refused: 'the login of this refresh token has ended' }
    if (session.expires_at <= now) return { refused: 'the login has reached its maximum age; log in again' }
    const user = await findUserById(trx, session.user_id)
    if (!user || user.disabled_at !== null) return { refused: 'the user is disabled' }
    // A spent token, or one a grace replay superseded while its login lives on, is presented again: reuse.
    if (row.spent_at !== null || row.revoked_at !== null) {
      if (row.revoked_at === null && (await withinGrace(trx, deps, row, now))) {
        await touchLoginSession(trx, session.id, now)
        // The pair whose response was lost is superseded, so the family keeps one live refresh token.
        await revokeUnspentChildren(trx, row.jti, now)
        deps.log.info({ event: 'refresh_grace_replay', sub: user.id, sid: session.id, jti: row.jti }, 'refresh token replayed within the grace window')
        return { tokens: await issueTokens(trx, deps, session, user, row.jti, narrowedScope(params.scope, session.scope)) }
      }
      await revokeFamily(trx, session.id, now, 'refresh_token_reuse')
      await recordEvent(trx, { at: now, event: 'refresh_token_reuse', sub: user.id, client_id: app.appid, sid: session.id, detail: `jti=${row.jti}`, ip_hash: request.ipHash })
      deps.log.warn({ event: 'refresh_token_reuse', sub: user.id, sid: session.id, jti: row.jti, client_id: app.appid }, 'spent refresh token presented again: login revoked')
      return { refused: 'the refresh token was already used; the login has been revoked' }
    }

    const scope = narrowedScope(params.scope, session.scope)
    if (!(await spendRefreshToken(trx, row.jti, now))) return { refused: 'the refresh token was already used' }
    await touchLoginSession(trx, session.id, now)
    return { tokens: await issueTokens(trx, deps, session, user, row.jti, scope) }
  })
  if ('refused' in outcome) throw new InvalidGrant(outcome.refused)
  return outcome.tokens
}
