import type { Kysely } from 'kysely'
import type { Database, NewRefreshToken } from './schema.js'

type Q = Kysely<Database>

export async function insertRefreshToken(db: Q, token: NewRefreshToken): Promise<void> {
  await db.insertInto('refresh_tokens').values(token).execute()
}
