import type { Kysely } from 'kysely'
import type { Database, LoginSession, NewLoginSession } from './schema.js'

type Q = Kysely<Database>

export async function insertLoginSession(db: Q, session: NewLoginSession): Promise<LoginSession> {
  return db.insertInto('login_sessions').values(session).returningAll().executeTakeFirstOrThrow()
}

export function findLoginSession(db: Q, id: string): Promise<LoginSession | undefined> {
  return db.selectFrom('login_sessions').selectAll().where('id', '=', id).executeTakeFirst()
}

/**
 * Rotates a live login from generation `seen` to the next, as a compare-and-set: true only for the one
 * caller that found the counter at `seen`. Under PostgreSQL's READ COMMITTED a concurrent rotation of
 * the same row makes this one wait for it, re-check the condition, and change nothing.
 */
export async function rotateGeneration(db: Q, id: string, seen: number, now: number): Promise<boolean> {
  const result = await db
    .updateTable('login_sessions')
    .set({ generation: seen + 1, rotated_at: now, grace_uses: 0, last_used_at: now })
    .where('id', '=', id)
    .where('generation', '=', seen)
    .where('revoked_at', 'is', null)
    .executeTakeFirst()
  return result.numUpdatedRows === 1n
}

/**
 * Counts one grace-window replay of the previous generation, if the login is still at `generation`,
 * rotated no earlier than `rotatedSince`, and under `maxUses` replays. One statement: concurrent replays
 * queue on the row and each re-checks the count, so exactly `maxUses` of them succeed.
 */
export async function useGrace(db: Q, id: string, generation: number, rotatedSince: number, maxUses: number, now: number): Promise<boolean> {
  const result = await db
    .updateTable('login_sessions')
    .set((eb) => ({ grace_uses: eb('grace_uses', '+', 1), last_used_at: now }))
    .where('id', '=', id)
    .where('generation', '=', generation)
    .where('rotated_at', '>=', rotatedSince)
    .where('grace_uses', '<', maxUses)
    .where('revoked_at', 'is', null)
    .executeTakeFirst()
  return result.numUpdatedRows === 1n
}

/**
 * Ends a login: none of its refresh tokens refreshes any more, and its access tokens fail introspection
 * and `/userinfo`. Returns false when it had already ended.
 */
export async function revokeFamily(db: Q, id: string, now: number, reason: string): Promise<boolean> {
  const result = await db
    .updateTable('login_sessions')
    .set({ revoked_at: now, revoked_reason: reason })
    .where('id', '=', id)
    .where('revoked_at', 'is', null)
    .executeTakeFirst()
  return result.numUpdatedRows === 1n
}

/**
 * Deletes logins that can no longer be used and whose row proves nothing any more: past their absolute
 * end, idle longer than a refresh token lives (every token they issued has expired), or revoked that
 * long ago.
 */
export async function purgeEndedSessions(db: Q, now: number, refreshTtl: number): Promise<number> {
  const result = await db
    .deleteFrom('login_sessions')
    .where((eb) => eb.or([eb('expires_at', '<', now), eb('last_used_at', '<', now - refreshTtl), eb('revoked_at', '<', now - refreshTtl)]))
    .executeTakeFirst()
  return Number(result.numDeletedRows)
}

export function listUserSessions(db: Q, userId: string): Promise<LoginSession[]> {
  return db.selectFrom('login_sessions').selectAll().where('user_id', '=', userId).orderBy('created_at', 'desc').orderBy('id').execute()
}

/** Revokes every live login of a user in one statement; returns their ids. */
export async function revokeUserSessions(db: Q, userId: string, now: number, reason: string): Promise<string[]> {
  const rows = await db
    .updateTable('login_sessions')
    .set({ revoked_at: now, revoked_reason: reason })
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .returning('id')
    .execute()
  return rows.map(({ id }) => id)
}

/** Gives the (ended) logins of `from` to `to`, so the merged user's record keeps them. */
export async function moveSessions(db: Q, from: string, to: string): Promise<void> {
  await db.updateTable('login_sessions').set({ user_id: to }).where('user_id', '=', from).execute()
}

/** Revokes every live login of a user in one app; returns their ids. */
export async function revokeUserSessionsOfClient(db: Q, userId: string, clientId: string, now: number, reason: string): Promise<string[]> {
  const rows = await db
    .updateTable('login_sessions')
    .set({ revoked_at: now, revoked_reason: reason })
    .where('user_id', '=', userId)
    .where('client_id', '=', clientId)
    .where('revoked_at', 'is', null)
    .returning('id')
    .execute()
  return rows.map(({ id }) => id)
}
