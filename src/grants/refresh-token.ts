import { epochSeconds } from '../clock.js'
import { recordEvent } from '../db/audit.js'
import type { Trx } from '../db/connection.js'
import type { LoginSession, User } from '../db/schema.js'
import { findLoginSession, revokeFamily, rotateGeneration, useGrace } from '../db/sessions.js'
import { findUserById } from '../db/users.js'
import { emitSessionsRevoked } from '../events/record.js'
import type { AppDeps } from '../deps.js'
import { InvalidGrant, InvalidScope } from '../errors.js'
import { required, type Params } from '../http/body.js'
import { enforce, spend } from '../http/rate-limit.js'
import type { RefreshTokenClaims } from '../tokens/claims.js'
import { issueTokens, type TokenResponse } from '../tokens/issue.js'
import { TokenRejected, verifyRefreshToken } from '../tokens/verify.js'
import { resolveClient } from './client.js'
import type { GrantRequest } from './grant.js'
import { parseResource } from './resource.js'
import { parseScope } from './scope.js'

/** What the presented token's login says: a generation to sign tokens of, or why not. */
type Outcome = { session: LoginSession; user: User; generation: number; scope: string; kind: 'rotation' | 'grace_replay' } | { refused: string }

/** Compare-and-set attempts before giving up on a login that other requests keep rotating. */
const MAX_ATTEMPTS = 4

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
 * Whether the previous generation may be presented again now: within the grace window after the last
 * rotation, at most `refreshGraceReuses` times (a phone that lost the response to its refresh, or
 * refreshed twice in parallel). Off when the window is 0.
 */
function graceAllows(deps: AppDeps, session: LoginSession, now: number): boolean {
  const { refreshGraceSeconds, refreshGraceReuses } = deps.config
  return refreshGraceSeconds > 0 && session.rotated_at !== null && now - session.rotated_at <= refreshGraceSeconds && session.grace_uses < refreshGraceReuses
}

/**
 * The state change of one refresh, in one short transaction; no signing happens inside it.
 * - The current generation rotates to the next (compare-and-set on the counter): exactly one of any
 *   number of concurrent presentations wins, on one instance or several.
 * - Within the grace window, the generation just rotated away gets the current generation again: every
 *   token minted inside the window belongs to the current generation, so whichever of them the client
 *   keeps refreshes normally.
 * - Any older generation, or the previous one outside the window, is reuse: the login ends.
 */
async function decide(trx: Trx, deps: AppDeps, claims: RefreshTokenClaims, requestedScope: string | undefined, request: GrantRequest): Promise<Outcome> {
  const now = epochSeconds(deps.clock)
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt += 1) {
    const session = await findLoginSession(trx, claims.sid)
    if (!session || session.user_id !== claims.sub || session.client_id !== claims.client_id) return { refused: 'the refresh token is unknown' }
    if (session.revoked_at !== null) return { refused: 'the login of this refresh token has ended' }
    if (session.expires_at <= now) return { refused: 'the login has reached its maximum age; log in again' }
    const user = await findUserById(trx, session.user_id)
    if (!user || user.disabled_at !== null) return { refused: 'the user is disabled' }
    if (claims.gen === session.generation) {
      // Thrown before anything changed, so a bad scope costs the client nothing.
      const scope = narrowedScope(requestedScope, session.scope)
      if (await rotateGeneration(trx, session.id, session.generation, now)) return { session, user, generation: session.generation + 1, scope, kind: 'rotation' }
      continue // another request rotated it first: decide again on what it left
    }
    if (claims.gen === session.generation - 1 && graceAllows(deps, session, now)) {
      const scope = narrowedScope(requestedScope, session.scope)
      if (await useGrace(trx, session.id, session.generation, now - deps.config.refreshGraceSeconds, deps.config.refreshGraceReuses, now)) {
        request.log.info({ event: 'refresh_grace_replay', sub: user.id, sid: session.id, gen: claims.gen }, 'previous refresh token presented within the grace window')
        return { session, user, generation: session.generation, scope, kind: 'grace_replay' }
      }
      continue
    }
    // A generation after the current one cannot have been issued (the database was restored from an
    // older backup): refuse it without ending the login.
    if (claims.gen > session.generation) return { refused: 'the refresh token is unknown' }
    if (await revokeFamily(trx, session.id, now, 'refresh_token_reuse')) await emitSessionsRevoked(trx, now, user.id, [session.id], 'policy', 'refresh_token_reuse')
    await recordEvent(trx, { at: now, event: 'refresh_token_reuse', sub: user.id, client_id: session.client_id, sid: session.id, detail: `gen=${claims.gen} current=${session.generation}`, ip_hash: request.ipHash })
    deps.metrics.refreshTokenReuses.inc()
    request.log.warn({ event: 'refresh_token_reuse', sub: user.id, sid: session.id, gen: claims.gen, client_id: session.client_id }, 'spent refresh token presented again: login revoked')
    return { refused: 'the refresh token was already used; the login has been revoked' }
  }
  return { refused: 'the login is being refreshed concurrently; try again' }
}

/**
 * `grant_type=refresh_token` (RFC 6749 §6, rotated per RFC 9700 §4.14). The token's signature and
 * claims are checked first; its login's generation then decides, and the new tokens are signed after
 * that transaction committed.
 */
export async function refreshTokenGrant(params: Params, deps: AppDeps, request: GrantRequest): Promise<TokenResponse> {
  const app = resolveClient(deps.config.apps, params.client_id)
  const claims = await verified(deps, required(params, 'refresh_token'))
  if (claims.client_id !== app.appid) throw new InvalidGrant('the refresh token was issued to another client')
  const resource = parseResource(deps.config, params.resource)
  // Budgets are checked before and charged only after a successful refresh: replays of dead tokens
  // (anyone may hold an old one) never cost the live login, or the app, its refreshes.
  enforce(deps.limits?.user, claims.sub, 'for this user', { peek: true })
  enforce(deps.limits?.client, app.appid, 'for this client', { peek: true })

  const outcome = await deps.transaction((trx) => decide(trx, deps, claims, params.scope, request))
  if ('refused' in outcome) throw new InvalidGrant(outcome.refused)
  spend(deps.limits?.user, claims.sub)
  spend(deps.limits?.client, app.appid)
  deps.metrics.refreshes.inc({ kind: outcome.kind })
  return issueTokens(deps, outcome.session, outcome.user, outcome.generation, outcome.scope, resource)
}
