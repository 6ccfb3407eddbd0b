import type Router from '@koa/router'
import { epochSeconds } from '../clock.js'
import { recordEvent } from '../db/audit.js'
import { revokeAccessToken } from '../db/revoked-access-tokens.js'
import { revokeFamily } from '../db/sessions.js'
import { emitSessionsRevoked } from '../events/record.js'
import type { AppDeps } from '../deps.js'
import { InvalidRequest } from '../errors.js'
import { resolveClient } from '../grants/client.js'
import { parseParams, required, type Params } from '../http/body.js'
import { noStore } from '../http/no-store.js'
import { limitByIp } from '../http/rate-limit.js'
import { requestLogger } from '../http/request-log.js'
import { byHint } from '../tokens/by-hint.js'
import type { AccessTokenClaims, RefreshTokenClaims } from '../tokens/claims.js'
import { verifyAccessToken, verifyRefreshToken } from '../tokens/verify.js'

type Found = { kind: 'access_token'; claims: AccessTokenClaims } | { kind: 'refresh_token'; claims: RefreshTokenClaims }

/** Identifies a token minigate signed (expired ones need no revoking); a refresh token is the usual case. */
function identify(deps: AppDeps, token: string, hint: string | undefined): Promise<Found | undefined> {
  return byHint<Found>(hint, 'refresh_token', {
    access_token: async () => ({ kind: 'access_token', claims: await verifyAccessToken(deps, token) }),
    refresh_token: async () => ({ kind: 'refresh_token', claims: await verifyRefreshToken(deps, token) }),
  })
}

/**
 * `POST /revoke` (RFC 7009), limited per client IP like `/token`. A refresh token ends its whole login;
 * an access token is refused from then on by introspection and `/userinfo` until it expires. Unknown,
 * malformed, expired or already revoked tokens answer 200; an unexpired token of another client is
 * refused (400) and left alone. Only a revocation that changed something is audited and logged, so
 * repeating one writes nothing.
 */
export function mountRevoke(router: Router, deps: AppDeps): void {
  router.post('/revoke', noStore, limitByIp(deps.limits), parseParams(), async function revocationEndpoint(ctx) {
    const params: Params = ctx.state.params
    const app = resolveClient(deps.config.apps, params.client_id)
    const token = required(params, 'token')
    const found = await identify(deps, token, params.token_type_hint)
    if (found) {
      const { claims } = found
      // RFC 7009 §2.1: a token issued to another client is refused, and left alive. 400 invalid_request
      // is node-oidc-provider's answer; unauthorized_client (RFC 6749 §5.2) is about grant types.
      if (claims.client_id !== app.appid) throw new InvalidRequest('this token was issued to another client')
      const changed = await deps.transaction(async (trx) => {
        const now = epochSeconds(deps.clock)
        const revoked = found.kind === 'refresh_token' ? await revokeFamily(trx, claims.sid, now, 'revoked') : await revokeAccessToken(trx, claims.jti, claims.exp, now)
        if (revoked && found.kind === 'refresh_token') await emitSessionsRevoked(trx, now, claims.sub, [claims.sid], 'user', 'revoked')
        if (revoked) {
          await recordEvent(trx, { at: now, event: 'revocation', sub: claims.sub, client_id: claims.client_id, sid: claims.sid, detail: `${found.kind} jti=${claims.jti}`, ip_hash: deps.secretBox.fingerprint(ctx.ip) })
        }
        return revoked
      })
      if (changed) {
        deps.metrics.revocations.inc({ token_type: found.kind })
        requestLogger(ctx, deps.log).info({ event: 'revocation', token_type: found.kind, jti: claims.jti, sid: claims.sid, client_id: claims.client_id }, 'token revoked')
      }
    }
    ctx.status = 200
    ctx.body = ''
  })
}
