import { recordEvent } from '../db/audit.js'
import type { Trx } from '../db/connection.js'
import { listUserSessions } from '../db/sessions.js'
import { insertTombstone } from '../db/tombstones.js'
import { deleteUser, lockUser } from '../db/users.js'
import { emitEvent } from '../events/record.js'

/** What a deletion did. */
export interface Deleted {
  sub: string
  /** Logins that were still live. */
  endedSessions: number
}

/**
 * Deletes a user inside the caller's transaction: the row is locked, then the user, its WeChat
 * identities (with their session_keys), phone number, profile, avatars and logins are deleted (every
 * refresh token dies, every access token fails `/userinfo` and introspection); a tombstone keeps the
 * `sub` and the time, so the `sub` is never given out again; an `account-purged` event tells services.
 * The audit log keeps its rows (ids and keyed hashes only) until they age out. Returns undefined for a
 * user that does not exist (any more).
 */
export async function deleteAccount(trx: Trx, input: { sub: string; now: number; actor: 'user' | 'operator'; clientId?: string | null; sid?: string | null; ipHash?: string | null }): Promise<Deleted | undefined> {
  const { sub, now } = input
  const user = await lockUser(trx, sub)
  if (!user) return undefined
  const endedSessions = (await listUserSessions(trx, sub)).filter((session) => session.revoked_at === null && session.expires_at > now).length
  // Identities, logins and avatars go with the row (ON DELETE CASCADE).
  await deleteUser(trx, sub)
  await insertTombstone(trx, { id: sub, ended_at: now, reason: 'deleted', merged_into: null })
  await emitEvent(trx, now, 'account-purged', sub, { detail: { initiating_entity: input.actor === 'operator' ? 'admin' : 'user' } })
  await recordEvent(trx, { at: now, event: 'user_deleted', sub, client_id: input.clientId ?? null, sid: input.sid ?? null, detail: `sessions=${endedSessions}`, actor: input.actor, ip_hash: input.ipHash ?? null })
  return { sub, endedSessions }
}
