import type Router from '@koa/router'
import type { AppDeps } from '../deps.js'
import { UnsupportedGrantType } from '../errors.js'
import { parseParams, required, type Params } from '../http/body.js'
import { noStore } from '../http/no-store.js'
import { limitByIp } from '../http/rate-limit.js'
import { requestLogger } from '../http/request-log.js'
import type { Grant } from '../grants/grant.js'
import { refreshTokenGrant } from '../grants/refresh-token.js'
import { WECHAT_CODE_GRANT, wechatCodeGrant } from '../grants/wechat-code.js'

/** The grants `/token` accepts, by `grant_type`. Discovery lists these keys. */
export const grants: Record<string, Grant> = {
  [WECHAT_CODE_GRANT]: wechatCodeGrant,
  refresh_token: refreshTokenGrant,
}

/** `POST /token`: dispatches on `grant_type`. */
export function mountToken(router: Router, deps: AppDeps): void {
  router.post('/token', noStore, limitByIp(deps.limits), parseParams(), async function tokenEndpoint(ctx) {
    const params: Params = ctx.state.params
    const grantType = required(params, 'grant_type')
    const grant = Object.hasOwn(grants, grantType) ? grants[grantType] : undefined
    if (!grant) throw new UnsupportedGrantType('unsupported grant_type')
    ctx.body = await grant(params, deps, { ipHash: deps.secretBox.fingerprint(ctx.ip), log: requestLogger(ctx, deps.log) })
  })
}
