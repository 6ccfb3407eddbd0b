import type Router from '@koa/router'
import { epochSeconds } from '../clock.js'
import { recordEvent } from '../db/audit.js'
import { clearUserPhone, setUserPhone } from '../db/users.js'
import type { AppDeps } from '../deps.js'
import { InvalidRequest, UpstreamError } from '../errors.js'
import { parseParams, type Params } from '../http/body.js'
import { requireAccessToken } from '../http/bearer.js'
import { noStore } from '../http/no-store.js'
import { limitByUser } from '../http/rate-limit.js'
import { requestLogger } from '../http/request-log.js'
import type { Logger } from '../log.js'
import type { AccessTokenClaims } from '../tokens/claims.js'
import type { WeChatPhone } from '../wechat/client.js'
import { validateWeChatCode } from '../wechat/codes.js'
import { upstreamErrorFor, WeChatError } from '../wechat/errors.js'

/** WeChat failures after which the phone code was not consumed, so the client may send it again. */
const CODE_NOT_CONSUMED = new Set(['busy', 'rate_limited', 'unreachable', 'http_error', 'bad_response', 'access_token_invalid'])

/**
 * Asks WeChat for the number behind a getPhoneNumber code. Each success is billed, so a code goes to
 * WeChat at most once (a retry after an expired access_token is the same, unconsumed call).
 */
async function phoneNumberOf(deps: AppDeps, appid: string, code: string, log: Logger): Promise<WeChatPhone> {
  if (!(await deps.spentCodes.claim('phone', appid, code))) throw new InvalidRequest('this phone code was already used; ask the user to tap the button again')
  try {
    return await deps.wechatTokens.withAccessToken(appid, (accessToken) => deps.wechat.getPhoneNumber(appid, accessToken, code, log), log)
  } catch (error) {
    if (!(error instanceof WeChatError)) {
      await deps.spentCodes.release('phone', appid, code)
      throw error
    }
    // A failure of the access_token fetch means WeChat never saw the code.
    if (error.api !== 'getuserphonenumber' || CODE_NOT_CONSUMED.has(error.failure)) await deps.spentCodes.release('phone', appid, code)
    if (error.failure === 'invalid_code' || error.failure === 'code_used') throw new InvalidRequest('the phone code is invalid or expired')
    throw upstreamErrorFor(error)
  }
}

/**
 * `POST /wechat/phone` (Bearer + `{code}` from `<button open-type="getPhoneNumber">`): binds the verified
 * phone number to the user and returns it. Limited per user. `DELETE /wechat/phone` (Bearer) removes it.
 */
export function mountWeChatPhone(router: Router, deps: AppDeps): void {
  router.post('/wechat/phone', noStore, requireAccessToken(deps), limitByUser(deps.limits?.wechat, '/wechat/phone'), parseParams(), async function bindPhoneNumber(ctx) {
    const params: Params = ctx.state.params
    const claims: AccessTokenClaims = ctx.state.claims
    const appid = claims.client_id
    const log = requestLogger(ctx, deps.log)
    const phone = await phoneNumberOf(deps, appid, validateWeChatCode(params.code), log)
    if (phone.watermarkAppid !== appid) {
      log.warn({ appid, sub: claims.sub }, 'getuserphonenumber answered with another watermark appid')
      throw new UpstreamError('WeChat answered for another mini-program')
    }
    const number = `+${phone.countryCode}${phone.purePhoneNumber}`
    const user = await deps.transaction(async (trx) => {
      const now = epochSeconds(deps.clock)
      const updated = await setUserPhone(trx, claims.sub, { number, countryCode: phone.countryCode }, now)
      await recordEvent(trx, { at: now, event: 'phone_bound', sub: claims.sub, client_id: appid, sid: claims.sid, ip_hash: deps.secretBox.fingerprint(ctx.ip) })
      return updated
    })
    ctx.body = {
      phone_number: user.phone_number,
      phone_number_verified: true,
      country_code: phone.countryCode,
      pure_phone_number: phone.purePhoneNumber,
    }
  })

  router.delete('/wechat/phone', noStore, requireAccessToken(deps), async function removePhoneNumber(ctx) {
    const claims: AccessTokenClaims = ctx.state.claims
    await deps.transaction(async (trx) => {
      const now = epochSeconds(deps.clock)
      if (await clearUserPhone(trx, claims.sub, now)) {
        await recordEvent(trx, { at: now, event: 'phone_removed', sub: claims.sub, client_id: claims.client_id, sid: claims.sid, ip_hash: deps.secretBox.fingerprint(ctx.ip) })
      }
    })
    ctx.status = 204
  })
}
