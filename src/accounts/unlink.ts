import { recordEvent } from '../db/audit.js'
import type { Trx } from '../db/connection.js'
import { findIdentityOfUser, listIdentitiesOfUser, moveIdentity } from '../db/identities.js'
import { revokeUserSessionsOfClient } from '../db/sessions.js'
import { insertUser, lockUser } from '../db/users.js'
import { emitSessionsRevoked } from '../events/record.js'

/** Why an unlink cannot be done; the message is for the operator. */
export class UnlinkRefused extends Error {
  override name = 'UnlinkRefused'
}

/**
 * Takes a user's WeChat identity in one app away into a new user of its own (`newId`), inside the
 * caller's transaction: the user's logins in that app end (`unlinked`, with `session-revoked` events),
 * the profile, phone number and unionid stay with the user. A user's only identity cannot be
 * unlinked (that is a deletion).
 */
export async function unlinkIdentity(trx: Trx, input: { sub: string; appid: string; newId: string; now: number }): Promise<{ newSub: string; revokedSessions: string[] }> {
  const { sub, appid, now } = input
  if (!(await lockUser(trx, sub))) throw new UnlinkRefused(`no user ${sub}`)
  const identity = await findIdentityOfUser(trx, sub, appid)
  if (!identity) throw new UnlinkRefused(`${sub} has no identity in ${appid}`)
  if ((await listIdentitiesOfUser(trx, sub)).length < 2) throw new UnlinkRefused(`${appid} is the only identity of ${sub}; delete the user instead`)
  await insertUser(trx, { id: input.newId, unionid: null, created_at: now, updated_at: now })
  await moveIdentity(trx, identity.id, input.newId)
  const revokedSessions = await revokeUserSessionsOfClient(trx, sub, appid, now, 'unlinked')
  await emitSessionsRevoked(trx, now, sub, revokedSessions, 'admin', 'unlinked')
  await recordEvent(trx, { at: now, event: 'identity_unlinked', sub, client_id: appid, detail: `new_sub=${input.newId} sessions=${revokedSessions.length}`, actor: 'operator' })
  await recordEvent(trx, { at: now, event: 'user_created', sub: input.newId, client_id: appid, detail: `unlinked_from=${sub}`, actor: 'operator' })
  return { newSub: input.newId, revokedSessions }
}
