import type Router from '@koa/router'
import { findIdentityOfUser } from '../db/identities.js'
import type { AppDeps } from '../deps.js'
import { DecryptionFailed, InvalidRequest } from '../errors.js'
import { parseParams, required, type Params } from '../http/body.js'
import { requireAccessToken } from '../http/bearer.js'
import { noStore } from '../http/no-store.js'
import { limitByUser } from '../http/rate-limit.js'
import { requestLogger } from '../http/request-log.js'
import type { AccessTokenClaims } from '../tokens/claims.js'
import { DECRYPTION_FAILED, DecryptError, decryptWeChatData, verifyRawDataSignature } from '../wechat/crypto.js'

/** Users whose failures are counted at most; the least recently failing are forgotten first. */
const MAX_COUNTED_USERS = 10_000

/** Failed decryptions per user since the start, so that a client probing the decryption shows in the log. */
class FailureCounts {
  private readonly counts = new Map<string, number>()

  add(sub: string): number {
    const count = (this.counts.get(sub) ?? 0) + 1
    this.counts.delete(sub)
    if (this.counts.size >= MAX_COUNTED_USERS) this.counts.delete(this.counts.keys().next().value as string)
    this.counts.set(sub, count)
    return count
  }
}

/**
 * `POST /wechat/decrypt` (Bearer + `{encrypted_data, iv}`, optional `raw_data` + `signature`): opens
 * WeChat's encryptedData with the user's newest session_key for the token's app. The session_key never
 * leaves the server. Limited per user; every failure that depends on the session_key is one answer and a
 * logged warning.
 */
export function mountWeChatDecrypt(router: Router, deps: AppDeps): void {
  const failures = new FailureCounts()
  router.post('/wechat/decrypt', noStore, requireAccessToken(deps), limitByUser(deps.limits?.wechat, '/wechat/decrypt'), parseParams(), async function decryptWeChatDataEndpoint(ctx) {
    const params: Params = ctx.state.params
    const claims: AccessTokenClaims = ctx.state.claims
    const encryptedData = required(params, 'encrypted_data')
    const iv = required(params, 'iv')
    const rawData = params.raw_data
    const signature = params.signature
    if ((rawData === undefined) !== (signature === undefined)) throw new InvalidRequest('raw_data and signature go together')

    const identity = await findIdentityOfUser(deps.db, claims.sub, claims.client_id)
    if (!identity) throw new InvalidRequest('no WeChat session for this user and app; call wx.login() again')
    const sessionKey = deps.secretBox.open(identity.session_key_enc, `${identity.appid}:${identity.openid}`)

    // Both checks run before either answers, so neither the answer nor its timing tells which failed.
    const signed = rawData === undefined || signature === undefined || verifyRawDataSignature(rawData, signature, sessionKey)
    let data: Record<string, unknown> | undefined
    try {
      data = decryptWeChatData({ sessionKey, encryptedData, iv, appid: claims.client_id })
    } catch (error) {
      if (!(error instanceof DecryptError)) throw error
      if (error.failure !== 'decryption_failed') throw new DecryptionFailed(error.failure, error.message)
    }
    if (!data || !signed) {
      const count = failures.add(claims.sub)
      requestLogger(ctx, deps.log).warn({ event: 'wechat_decrypt_failed', sub: claims.sub, client_id: claims.client_id, failures: count }, 'WeChat data did not open with the user\'s session_key')
      throw new DecryptionFailed('decryption_failed', DECRYPTION_FAILED)
    }
    ctx.body = { data }
  })
}
