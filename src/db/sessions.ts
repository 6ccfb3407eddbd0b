import type { Kysely } from 'kysely'
import type { Database, LoginSession, NewLoginSession } from './schema.js'

type Q = Kysely<Database>

export async function insertLoginSession(db: Q, session: NewLoginSession): Promise<LoginSession> {
  return db.insertInto('login_sessions').values(session).returningAll().executeTakeFirstOrThrow()
}

export function findLoginSession(db: Q, id: string): Promise<LoginSession | undefined> {
  return db.selectFrom('login_sessions').selectAll().where('id', '=', id).executeTakeFirst()
}
