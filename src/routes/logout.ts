import type Router from '@koa/router'
import { epochSeconds } from '../clock.js'
import { recordEvent } from '../db/audit.js'
import { revokeAccessToken } from '../db/revoked-access-tokens.js'
import { revokeFamily } from '../db/sessions.js'
import { emitSessionsRevoked } from '../events/record.js'
import type { AppDeps } from '../deps.js'
import { requireAccessToken } from '../http/bearer.js'
import { noStore } from '../http/no-store.js'
import { requestLogger } from '../http/request-log.js'
import type { AccessTokenClaims } from '../tokens/claims.js'

/** `POST /logout` (Bearer): ends the caller's login, its whole refresh-token family and this access token. */
export function mountLogout(router: Router, deps: AppDeps): void {
  router.post('/logout', noStore, requireAccessToken(deps), async function logout(ctx) {
    const claims: AccessTokenClaims = ctx.state.claims
    await deps.transaction(async (trx) => {
      const now = epochSeconds(deps.clock)
      if (await revokeFamily(trx, claims.sid, now, 'logout')) await emitSessionsRevoked(trx, now, claims.sub, [claims.sid], 'user', 'logout')
      await revokeAccessToken(trx, claims.jti, claims.exp, now)
      await recordEvent(trx, { at: now, event: 'logout', sub: claims.sub, client_id: claims.client_id, sid: claims.sid, ip_hash: deps.secretBox.fingerprint(ctx.ip) })
    })
    deps.metrics.logouts.inc()
    requestLogger(ctx, deps.log).info({ event: 'logout', sub: claims.sub, sid: claims.sid, client_id: claims.client_id }, 'logout')
    ctx.status = 204
  })
}
