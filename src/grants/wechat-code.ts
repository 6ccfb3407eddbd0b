import { createHash } from 'node:crypto'
import { epochSeconds } from '../clock.js'
import type { Trx } from '../db/connection.js'
import { findIdentity, insertIdentity, updateSessionKey } from '../db/identities.js'
import type { User } from '../db/schema.js'
import { recordEvent } from '../db/audit.js'
import { insertLoginSession } from '../db/sessions.js'
import { deleteUser, findUserByUnionid, insertOrFindUserByUnionid, insertUser, linkUnionid, lockUser, unusedUserId } from '../db/users.js'
import { MergeRefused, mergeUsers, type Merged } from '../accounts/merge.js'
import type { AppDeps } from '../deps.js'
import { InvalidGrant, TemporarilyUnavailable } from '../errors.js'
import type { Params } from '../http/body.js'
import type { GrantRequest } from './grant.js'
import { issueTokens, type TokenResponse } from '../tokens/issue.js'
import { randomId } from '../tokens/mint.js'
import type { WeChatSession } from '../wechat/client.js'
import { validateWeChatCode } from '../wechat/codes.js'
import { loginErrorFor, WeChatError } from '../wechat/errors.js'
import { resolveClient } from './client.js'
import { parseResource } from './resource.js'
import { parseScope } from './scope.js'

/** The extension grant (RFC 6749 §4.5) that trades a `wx.login()` code for tokens. */
export const WECHAT_CODE_GRANT = 'urn:minigate:grant-type:wechat-code'

/** WeChat failures after which the code is still unspent, so the client may retry with it. */
const CODE_NOT_CONSUMED = new Set(['busy', 'rate_limited', 'unreachable', 'http_error', 'bad_response'])

/** Sends a code to WeChat at most once: a replay, even concurrent or to another instance, is refused here. */
async function code2Session(deps: AppDeps, appid: string, code: string, request: GrantRequest): Promise<WeChatSession> {
  if (!(await deps.spentCodes.claim('login', appid, code))) throw new InvalidGrant('the code was already used; call wx.login() again')
  try {
    return await deps.wechat.code2Session(appid, code, request.log)
  } catch (error) {
    if (error instanceof WeChatError) {
      if (CODE_NOT_CONSUMED.has(error.failure)) await deps.spentCodes.release('login', appid, code)
      if (error.failure === 'user_blocked') {
        await recordEvent(deps.db, { at: epochSeconds(deps.clock), event: 'login_blocked_by_wechat', client_id: appid, detail: 'errcode=40226', ip_hash: request.ipHash })
      }
      throw loginErrorFor(error)
    }
    await deps.spentCodes.release('login', appid, code)
    throw error
  }
}

/** For logs: the openid is personal data, a short hash still correlates lines. */
function openidHash(openid: string): string {
  return createHash('sha256').update(openid).digest('base64url').slice(0, 12)
}

/** Times a login looks again for its user after a concurrent merge or deletion changed it. */
const MAX_ATTEMPTS = 4

/**
 * Finds the user of a WeChat identity (by appid + openid, else by unionid across apps) or creates one,
 * and stores the newest session_key, encrypted. The user's row is held until the transaction ends. Two
 * first logins of one person at once, on one instance or two, make one user: the insert that loses the
 * race on (appid, openid) or on unionid yields to the one that won.
 *
 * When the unionid WeChat sent proves that the identity's user and the user holding that unionid are
 * one person (a first login without a unionid, then one with it), the two are merged first (see
 * `mergeUsers`); a merge or deletion that a concurrent request made meanwhile sends it round again.
 */
async function findOrCreateUser(trx: Trx, deps: AppDeps, appid: string, session: WeChatSession, now: number, request: GrantRequest): Promise<{ user: User; created: boolean; merged?: Merged }> {
  const sealed = deps.secretBox.seal(session.sessionKey, `${appid}:${session.openid}`)
  let merged: Merged | undefined
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt += 1) {
    let created = false
    if (!(await findIdentity(trx, appid, session.openid))) {
      const fresh = { id: await unusedUserId(trx, randomId), created_at: now, updated_at: now }
      const candidate = session.unionid
        ? await insertOrFindUserByUnionid(trx, { ...fresh, unionid: session.unionid })
        : { user: await insertUser(trx, { ...fresh, unionid: null }), created: true }
      // Joining an existing user: hold it first, so a merge or deletion of it cannot pull it away
      // before the identity points at it.
      if (!candidate.created && !(await lockUser(trx, candidate.user.id))) continue
      created = await insertIdentity(trx, { userId: candidate.user.id, appid, openid: session.openid, sessionKeyEnc: sealed, now })
      // The identity existed after all (a concurrent login won): the user made for it is nobody's.
      if (!created && candidate.created) await deleteUser(trx, candidate.user.id)
      created &&= candidate.created
    }
    let identity = await findIdentity(trx, appid, session.openid)
    // Deleted with its user meanwhile: look again (a new user is made).
    if (!identity) continue
    if (session.unionid) {
      const holder = await findUserByUnionid(trx, session.unionid)
      if (holder && holder.id !== identity.user_id) {
        let outcome: Merged | 'refused' | undefined
        try {
          const pair: [string, string] = [identity.user_id, holder.id]
          const stillWarranted = async (locked: User[]) =>
            locked.some((user) => user.unionid === session.unionid) && pair.includes((await findIdentity(trx, appid, session.openid))?.user_id ?? '')
          outcome = await mergeUsers(trx, { ids: pair, now, actor: 'system', cause: 'unionid', ipHash: request.ipHash, stillWarranted })
        } catch (error) {
          // Refused before anything was written: the identity's user already carries another unionid.
          if (!(error instanceof MergeRefused)) throw error
          deps.log.warn({ event: 'merge_refused', sub: identity.user_id, other: holder.id, client_id: appid, reason: error.message }, 'a login suggested a merge that WeChat data contradicts')
          outcome = 'refused'
        }
        if (outcome === undefined) continue
        if (outcome !== 'refused') {
          merged = outcome
          deps.log.info({ event: 'users_merged', sub: outcome.survivor.id, merged: outcome.mergedAway, client_id: appid, revoked_sessions: outcome.revokedSessions.length }, 'a login proved two users one person: merged')
          identity = await findIdentity(trx, appid, session.openid)
          if (!identity) continue
        }
      }
    }
    // The user's row is locked before the identity's is written: every transaction that changes both
    // (a merge, a deletion) takes them in that order, so none waits for the other in a cycle.
    const user = await lockUser(trx, identity.user_id)
    // Merged away or deleted after we read the identity: read it again.
    if (!user) continue
    if (!created) await updateSessionKey(trx, identity.id, sealed, now)
    if (session.unionid && user.unionid === null && (await linkUnionid(trx, user.id, session.unionid, now))) {
      return { user: { ...user, unionid: session.unionid, updated_at: now }, created, ...(merged ? { merged } : {}) }
    }
    if (session.unionid && user.unionid !== null && user.unionid !== session.unionid) {
      deps.log.warn({ event: 'unionid_mismatch', sub: user.id, client_id: appid }, 'WeChat sent another unionid for a known identity; the stored one is kept')
    }
    return { user, created, ...(merged ? { merged } : {}) }
  }
  throw new TemporarilyUnavailable('the account is being changed concurrently; try again', 1)
}

/**
 * `grant_type=urn:minigate:grant-type:wechat-code`: `code` from wx.login(), `client_id` (the appid),
 * optional `scope`. WeChat is called once per code; every row of the login is written in one
 * transaction after WeChat answered, so a failed call leaves nothing behind; the tokens are signed
 * after it committed.
 */
export async function wechatCodeGrant(params: Params, deps: AppDeps, request: GrantRequest): Promise<TokenResponse> {
  const app = resolveClient(deps.config.apps, params.client_id)
  const scope = parseScope(params.scope)
  const resource = parseResource(deps.config, params.resource)
  const code = validateWeChatCode(params.code)
  const session = await code2Session(deps, app.appid, code, request)

  const result = await deps.transaction(async (trx) => {
    const now = epochSeconds(deps.clock)
    const { user, created } = await findOrCreateUser(trx, deps, app.appid, session, now, request)
    if (user.disabled_at !== null) {
      // Refused, and audited; only the newest session_key was stored.
      await recordEvent(trx, { at: now, event: 'login_refused_user_disabled', sub: user.id, client_id: app.appid, ip_hash: request.ipHash })
      return { disabled: user.id }
    }
    const login = await insertLoginSession(trx, {
      id: randomId(),
      user_id: user.id,
      client_id: app.appid,
      scope,
      created_at: now,
      last_used_at: now,
      expires_at: now + deps.config.sessionMaxAge,
    })
    await recordEvent(trx, { at: now, event: created ? 'user_created' : 'login', sub: user.id, client_id: app.appid, sid: login.id, ip_hash: request.ipHash })
    return { login, user, created }
  })
  if ('disabled' in result) {
    request.log.warn({ event: 'login_refused_user_disabled', sub: result.disabled, client_id: app.appid }, 'login of a disabled user refused')
    throw new InvalidGrant('this user is disabled')
  }
  deps.metrics.logins.inc({ new_user: result.created ? 'true' : 'false' })
  request.log.info(
    { event: 'login', sub: result.user.id, sid: result.login.id, client_id: app.appid, openid_hash: openidHash(session.openid), new_user: result.created },
    'login',
  )
  return issueTokens(deps, result.login, result.user, result.login.generation, result.login.scope, resource)
}
