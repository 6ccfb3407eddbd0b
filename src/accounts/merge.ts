import { recordEvent } from '../db/audit.js'
import { deleteAvatarsOf, moveAvatars } from '../db/avatars.js'
import type { Trx } from '../db/connection.js'
import { moveIdentities, listIdentitiesOfUser } from '../db/identities.js'
import type { User } from '../db/schema.js'
import { moveSessions, revokeUserSessions } from '../db/sessions.js'
import { insertTombstone, repointTombstones } from '../db/tombstones.js'
import { deleteUser, lockUsers, updateUser } from '../db/users.js'
import { emitEvent, emitSessionsRevoked, type Initiator } from '../events/record.js'

/** What a merge did. */
export interface Merged {
  survivor: User
  /** The `sub` merged away: tombstoned, pointing at the survivor. */
  mergedAway: string
  /** The merged-away user's logins that ended. */
  revokedSessions: string[]
}

/** Why two users cannot be one person: WeChat says otherwise. */
export class MergeRefused extends Error {
  override name = 'MergeRefused'
}

/** The older user survives (the one created first; on a tie, the smaller id). */
function survivorOf(a: User, b: User): [User, User] {
  if (a.created_at !== b.created_at) return a.created_at < b.created_at ? [a, b] : [b, a]
  return a.id < b.id ? [a, b] : [b, a]
}

/**
 * The merged user's fields: the survivor's profile fields unless empty, then the other's; the phone
 * number verified most recently; the unionid either holds; disabled if either was (a ban is not
 * escaped by a merge), from the earlier time.
 */
function mergedFields(survivor: User, other: User, now: number): Partial<User> {
  const phoneFrom = (other.phone_verified_at ?? -1) > (survivor.phone_verified_at ?? -1) && other.phone_number !== null ? other : survivor
  const disabled = [survivor.disabled_at, other.disabled_at].filter((at): at is number => at !== null)
  return {
    unionid: survivor.unionid ?? other.unionid,
    nickname: survivor.nickname ?? other.nickname,
    picture: survivor.picture ?? other.picture,
    phone_number: phoneFrom.phone_number,
    phone_country_code: phoneFrom.phone_country_code,
    phone_verified_at: phoneFrom.phone_verified_at,
    disabled_at: disabled.length > 0 ? Math.min(...disabled) : null,
    updated_at: now,
  }
}

/**
 * Makes two users one, inside the caller's transaction: both rows are locked in the order of their ids
 * (so concurrent merges of the pair, on any instance, queue), then the other user's WeChat identities,
 * ended logins and avatar move to the survivor, its live logins end (`merged`), its `sub` is tombstoned
 * as merged into the survivor, and `identifier-changed` and `session-revoked` events are recorded for
 * services. Returns undefined when one of the two no longer exists (a concurrent merge or deletion won:
 * the caller looks again). Throws `MergeRefused` when the two carry different unionids or identities
 * in the same app.
 */
export async function mergeUsers(
  trx: Trx,
  input: { ids: [string, string]; now: number; actor: 'system' | 'operator'; cause: string; ipHash?: string | null; stillWarranted?: (locked: User[]) => Promise<boolean> },
): Promise<Merged | undefined> {
  const { now } = input
  const locked = await lockUsers(trx, input.ids)
  if (locked.length !== 2) return undefined
  // What made the caller merge may have changed before the locks were granted.
  if (input.stillWarranted && !(await input.stillWarranted(locked))) return undefined
  const [survivor, other] = survivorOf(locked[0] as User, locked[1] as User)
  if (survivor.unionid !== null && other.unionid !== null && survivor.unionid !== other.unionid) throw new MergeRefused('the two users have different unionids: WeChat says they are two people')
  const apps = new Set((await listIdentitiesOfUser(trx, survivor.id)).map((identity) => identity.appid))
  if ((await listIdentitiesOfUser(trx, other.id)).some((identity) => apps.has(identity.appid))) {
    throw new MergeRefused('both users have an identity in the same mini-program: one person has one openid per app')
  }

  const fields = mergedFields(survivor, other, now)
  const revokedSessions = await revokeUserSessions(trx, other.id, now, 'merged')
  await moveIdentities(trx, other.id, survivor.id)
  await moveSessions(trx, other.id, survivor.id)
  if (fields.picture === other.picture && other.picture !== survivor.picture) await moveAvatars(trx, other.id, survivor.id)
  else await deleteAvatarsOf(trx, other.id)
  // The other row goes before the survivor takes its unionid (unique).
  await deleteUser(trx, other.id)
  await updateUser(trx, survivor.id, fields)
  await repointTombstones(trx, other.id, survivor.id)
  await insertTombstone(trx, { id: other.id, ended_at: now, reason: 'merged', merged_into: survivor.id })

  const initiator: Initiator = input.actor === 'operator' ? 'admin' : 'system'
  await emitEvent(trx, now, 'identifier-changed', other.id, { detail: { new_sub: survivor.id, cause: input.cause } })
  await emitSessionsRevoked(trx, now, other.id, revokedSessions, initiator, 'merged')
  await recordEvent(trx, { at: now, event: 'users_merged', sub: survivor.id, detail: `merged=${other.id} cause=${input.cause}`, actor: input.actor, ip_hash: input.ipHash ?? null })
  return { survivor: { ...survivor, ...fields }, mergedAway: other.id, revokedSessions }
}
