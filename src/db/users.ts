import type { Kysely } from 'kysely'
import { inSavepoint, type Trx } from './connection.js'
import { forUpdate, isUniqueViolation } from './dialect.js'
import type { Database, NewUser, User } from './schema.js'

type Q = Kysely<Database>

export function findUserById(db: Q, id: string): Promise<User | undefined> {
  return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst()
}

/**
 * Reads a user and holds its row until the transaction ends, so that a login and a disable (or a
 * merge) of one user never interleave across instances.
 */
export function lockUser(trx: Trx, id: string): Promise<User | undefined> {
  return forUpdate(trx, trx.selectFrom('users').selectAll().where('id', '=', id)).executeTakeFirst()
}

/**
 * Reads and holds several users' rows, always in the order of their ids, so two transactions locking
 * the same pair (two merges, a merge and a deletion) queue instead of deadlocking. A user deleted
 * meanwhile is missing from the answer.
 */
export async function lockUsers(trx: Trx, ids: string[]): Promise<User[]> {
  const locked: User[] = []
  for (const id of [...new Set(ids)].sort()) {
    const user = await lockUser(trx, id)
    if (user) locked.push(user)
  }
  return locked
}

/** A fresh user id that no user has and no ended user had: a `sub` is never reused. */
export async function unusedUserId(db: Q, generate: () => string): Promise<string> {
  for (;;) {
    const id = generate()
    const taken = await db.selectFrom('user_tombstones').select('id').where('id', '=', id).unionAll(db.selectFrom('users').select('id').where('id', '=', id)).executeTakeFirst()
    if (!taken) return id
  }
}

/** Sets the fields of a user that a merge decided. */
export async function updateUser(db: Q, id: string, fields: Partial<Omit<User, 'id' | 'created_at'>>): Promise<void> {
  await db.updateTable('users').set(fields).where('id', '=', id).execute()
}

/** Removes a user's phone number; returns whether there was one. */
export async function clearUserPhone(db: Q, id: string, now: number): Promise<boolean> {
  const result = await db
    .updateTable('users')
    .set({ phone_number: null, phone_country_code: null, phone_verified_at: null, updated_at: now })
    .where('id', '=', id)
    .where('phone_number', 'is not', null)
    .executeTakeFirst()
  return result.numUpdatedRows === 1n
}

export function findUserByUnionid(db: Q, unionid: string): Promise<User | undefined> {
  return db.selectFrom('users').selectAll().where('unionid', '=', unionid).executeTakeFirst()
}

export async function insertUser(db: Q, user: NewUser): Promise<User> {
  return db.insertInto('users').values(user).returningAll().executeTakeFirstOrThrow()
}

/**
 * Inserts a user carrying `unionid`, unless one already carries it (a concurrent first login of the same
 * person in another app, perhaps on another instance): returns whichever user holds it.
 */
export async function insertOrFindUserByUnionid(db: Q, user: NewUser & { unionid: string }): Promise<{ user: User; created: boolean }> {
  const inserted = await db.insertInto('users').values(user).onConflict((oc) => oc.column('unionid').doNothing()).returningAll().executeTakeFirst()
  if (inserted) return { user: inserted, created: true }
  return { user: (await findUserByUnionid(db, user.unionid)) as User, created: false }
}

/** Links a user to its unionid, unless another user already holds it. Returns whether it was set. */
export async function linkUnionid(trx: Trx, id: string, unionid: string, now: number): Promise<boolean> {
  if (await findUserByUnionid(trx, unionid)) return false
  try {
    const result = await inSavepoint(trx, () => trx.updateTable('users').set({ unionid, updated_at: now }).where('id', '=', id).where('unionid', 'is', null).executeTakeFirst())
    return result.numUpdatedRows === 1n
  } catch (error) {
    // Another instance linked the unionid to another user in the meantime.
    if (isUniqueViolation(error)) return false
    throw error
  }
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

/** Finds a user by minigate id, or by an openid in any app. */
export async function findUserBySubOrOpenid(db: Q, subOrOpenid: string): Promise<User | undefined> {
  const bySub = await findUserById(db, subOrOpenid)
  if (bySub) return bySub
  return db
    .selectFrom('users')
    .selectAll('users')
    .innerJoin('wechat_identities', 'wechat_identities.user_id', 'users.id')
    .where('wechat_identities.openid', '=', subOrOpenid)
    .executeTakeFirst()
}

/** Disables (a time) or enables (null) a user. Returns false for an unknown user. */
export async function setUserDisabled(db: Q, id: string, disabledAt: number | null, now: number): Promise<boolean> {
  const result = await db.updateTable('users').set({ disabled_at: disabledAt, updated_at: now }).where('id', '=', id).executeTakeFirst()
  return result.numUpdatedRows === 1n
}

export async function deleteUser(db: Q, id: string): Promise<void> {
  await db.deleteFrom('users').where('id', '=', id).execute()
}
