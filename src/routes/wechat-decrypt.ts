import type Router from '@koa/router'
import { findIdentityOfUser } from '../db/identities.js'
import type { AppDeps } from '../deps.js'
import { DecryptionFailed, InvalidRequest } from '../errors.js'
import { parseParams, required, type Params } from '../http/body.js'
import { requireAccessToken } from '../http/bearer.js'
import { noStore } from '../http/no-store.js'
import type { AccessTokenClaims } from '../tokens/claims.js'
import { DecryptError, decryptWeChatData, verifyRawDataSignature } from '../wechat/crypto.js'

/**
 * `POST /wechat/decrypt` (Bearer + `{encrypted_data, iv}`, optional `raw_data` + `signature`): opens
 * WeChat's encryptedData with the user's newest session_key for the token's app. The session_key never
 * leaves the server.
 */
export function mountWeChatDecrypt(router: Router, deps: AppDeps): void {
  router.post('/wechat/decrypt', noStore, requireAccessToken(deps), parseParams(), async function decryptWeChatDataEndpoint(ctx) {
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

    if (rawData !== undefined && signature !== undefined && !verifyRawDataSignature(rawData, signature, sessionKey)) {
      throw new DecryptionFailed('bad_signature', 'signature does not match raw_data and the current session_key')
    }
    try {
      ctx.body = { data: decryptWeChatData({ sessionKey, encryptedData, iv, appid: claims.client_id }) }
    } catch (error) {
      if (error instanceof DecryptError) throw new DecryptionFailed(error.failure, error.message)
      throw error
    }
  })
}
