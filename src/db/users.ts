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

/** Binds a verified phone number to a user. */
export async function setUserPhone(db: Q, id: string, phone: { number: string; countryCode: string }, now: number): Promise<User> {
  return db
    .updateTable('users')
    .set({ phone_number: phone.number, phone_country_code: phone.countryCode, phone_verified_at: now, updated_at: now })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow()
}

/** Updates the profile fields given; the others stay as they are. */
export async function updateProfile(db: Q, id: string, profile: { nickname?: string; picture?: string }, now: number): Promise<User> {
  return db
    .updateTable('users')
    .set({ ...profile, updated_at: now })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow()
}
