import type { Kysely } from 'kysely'
import type { Database, LoginSession, NewLoginSession } from './schema.js'

type Q = Kysely<Database>

export async function insertLoginSession(db: Q, session: NewLoginSession): Promise<LoginSession> {
  return db.insertInto('login_sessions').values(session).returningAll().executeTakeFirstOrThrow()
}

export function findLoginSession(db: Q, id: string): Promise<LoginSession | undefined> {
  return db.selectFrom('login_sessions').selectAll().where('id', '=', id).executeTakeFirst()
}

export async function touchLoginSession(db: Q, id: string, now: number): Promise<void> {
  await db.updateTable('login_sessions').set({ last_used_at: now }).where('id', '=', id).execute()
}

/**
 * Ends a login: the session and every refresh token of its family are revoked. Its access tokens then
 * fail introspection and `/userinfo`. Returns false when it had already ended.
 */
export async function revokeFamily(db: Q, id: string, now: number, reason: string): Promise<boolean> {
  const result = await db
    .updateTable('login_sessions')
    .set({ revoked_at: now, revoked_reason: reason })
    .where('id', '=', id)
    .where('revoked_at', 'is', null)
    .executeTakeFirst()
  await db.updateTable('refresh_tokens').set({ revoked_at: now }).where('session_id', '=', id).where('revoked_at', 'is', null).execute()
  return result.numUpdatedRows === 1n
}

/**
 * Deletes logins that can no longer be used: past their absolute end, or idle longer than a refresh
 * token lives, or revoked with no refresh token left. Their refresh tokens go with them (cascade).
 */
export async function purgeEndedSessions(db: Q, now: number, refreshTtl: number): Promise<number> {
  const result = await db
    .deleteFrom('login_sessions')
    .where((eb) =>
      eb.or([
        eb('expires_at', '<', now),
        eb('last_used_at', '<', now - refreshTtl),
        eb.and([eb('revoked_at', 'is not', null), eb.not(eb.exists(eb.selectFrom('refresh_tokens').select('jti').whereRef('refresh_tokens.session_id', '=', 'login_sessions.id')))]),
      ]),
    )
    .executeTakeFirst()
  return Number(result.numDeletedRows)
}

export function listUserSessions(db: Q, userId: string): Promise<LoginSession[]> {
  return db.selectFrom('login_sessions').selectAll().where('user_id', '=', userId).orderBy('created_at', 'desc').execute()
}

/** Revokes every live login of a user; returns their ids. */
export async function revokeUserSessions(db: Q, userId: string, now: number, reason: string): Promise<string[]> {
  const live = await db.selectFrom('login_sessions').select('id').where('user_id', '=', userId).where('revoked_at', 'is', null).execute()
  for (const { id } of live) await revokeFamily(db, id, now, reason)
  return live.map(({ id }) => id)
}
