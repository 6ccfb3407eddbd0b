import type Router from '@koa/router'
import { deleteAccount } from '../accounts/delete.js'
import { epochSeconds } from '../clock.js'
import { findIdentityOfUser } from '../db/identities.js'
import type { User } from '../db/schema.js'
import type { AppDeps } from '../deps.js'
import { InvalidRequest } from '../errors.js'
import { parseParams, type Params } from '../http/body.js'
import { requireAccessToken } from '../http/bearer.js'
import { noStore } from '../http/no-store.js'
import { limitByUser } from '../http/rate-limit.js'
import type { AccessTokenClaims } from '../tokens/claims.js'
import type { WeChatSession } from '../wechat/client.js'
import { validateWeChatCode } from '../wechat/codes.js'
import { upstreamErrorFor, WeChatError } from '../wechat/errors.js'

/** WeChat failures after which the code is still unspent, so the client may retry with it. */
const CODE_NOT_CONSUMED = new Set(['busy', 'rate_limited', 'unreachable', 'http_error', 'bad_response'])

/** One answer for every code that does not prove the user is present: unknown, used, expired, someone else's. */
const NOT_PRESENT = 'the code does not confirm this user: call wx.login() and send its fresh code'

/**
 * Trades a fresh wx.login() code for the openid it belongs to. The code is spent like a login code
 * (the same spent-code record), so it can serve a deletion or a login, never both.
 */
async function presentOpenid(deps: AppDeps, appid: string, code: string): Promise<WeChatSession> {
  if (!(await deps.spentCodes.claim('login', appid, code))) throw new InvalidRequest(NOT_PRESENT)
  try {
    return await deps.wechat.code2Session(appid, code)
  } catch (error) {
    if (!(error instanceof WeChatError)) {
      await deps.spentCodes.release('login', appid, code)
      throw error
    }
    if (CODE_NOT_CONSUMED.has(error.failure)) await deps.spentCodes.release('login', appid, code)
    if (error.failure === 'invalid_code' || error.failure === 'code_used' || error.failure === 'user_blocked') throw new InvalidRequest(NOT_PRESENT)
    throw upstreamErrorFor(error)
  }
}

/**
 * `POST /account/delete` (Bearer, account audience, + `{code}` from a fresh `wx.login()`): deletes the
 * caller's account. The code proves the person is at the phone, which a service holding one of their
 * access tokens cannot: WeChat must say it belongs to the token user's openid in the token's app.
 * WeChat is asked before, never inside, the transaction that deletes (see `deleteAccount`).
 */
export function mountAccountDelete(router: Router, deps: AppDeps): void {
  router.post('/account/delete', noStore, requireAccessToken(deps), limitByUser(deps.limits?.wechat, '/account/delete'), parseParams(), async function deleteOwnAccount(ctx) {
    const params: Params = ctx.state.params
    const claims: AccessTokenClaims = ctx.state.claims
    const user: User = ctx.state.user
    const code = validateWeChatCode(params.code)
    const session = await presentOpenid(deps, claims.client_id, code)
    const identity = await findIdentityOfUser(deps.db, user.id, claims.client_id)
    if (!identity || identity.openid !== session.openid) {
      deps.log.warn({ event: 'account_delete_refused', sub: user.id, client_id: claims.client_id }, 'account deletion refused: the code belongs to another WeChat user')
      throw new InvalidRequest(NOT_PRESENT)
    }
    const deleted = await deps.transaction((trx) =>
      deleteAccount(trx, { sub: user.id, now: epochSeconds(deps.clock), actor: 'user', clientId: claims.client_id, sid: claims.sid, ipHash: deps.secretBox.fingerprint(ctx.ip) }),
    )
    // Deleted meanwhile by another request or an operator: the outcome the user asked for.
    deps.log.info({ event: 'user_deleted', sub: user.id, client_id: claims.client_id, sessions: deleted?.endedSessions ?? 0 }, 'account deleted by its user')
    ctx.status = 204
  })
}
