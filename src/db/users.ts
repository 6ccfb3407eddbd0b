import type { Kysely } from 'kysely'
import type { Database, NewUser, User } from './schema.js'

type Q = Kysely<Database>

export function findUserById(db: Q, id: string): Promise<User | undefined> {
  return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst()
}

export function findUserByUnionid(db: Q, unionid: string): Promise<User | undefined> {
  return db.selectFrom('users').selectAll().where('unionid', '=', unionid).executeTakeFirst()
}

export async function insertUser(db: Q, user: NewUser): Promise<User> {
  return db.insertInto('users').values(user).returningAll().executeTakeFirstOrThrow()
}

/** Links a user to its unionid, unless another user already holds it. Returns whether it was set. */
export async function linkUnionid(db: Q, id: string, unionid: string, now: number): Promise<boolean> {
  const holder = await findUserByUnionid(db, unionid)
  if (holder) return false
  await db.updateTable('users').set({ unionid, updated_at: now }).where('id', '=', id).where('unionid', 'is', null).execute()
  return true
}
