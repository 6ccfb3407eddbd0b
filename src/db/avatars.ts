import type { Kysely } from 'kysely'
import type { Avatar, Database } from './schema.js'

type Q = Kysely<Database>

export async function insertAvatar(db: Q, avatar: Avatar): Promise<void> {
  await db.insertInto('avatars').values(avatar).execute()
}

export function findAvatar(db: Q, id: string): Promise<Avatar | undefined> {
  return db.selectFrom('avatars').selectAll().where('id', '=', id).executeTakeFirst()
}

/** Deletes a user's avatars other than `keep`: only the current one is served. */
export async function deleteOtherAvatars(db: Q, userId: string, keep: string): Promise<void> {
  await db.deleteFrom('avatars').where('user_id', '=', userId).where('id', '!=', keep).execute()
}

/** Gives every avatar of `from` to `to` (a merge that keeps the merged-away user's picture). */
export async function moveAvatars(db: Q, from: string, to: string): Promise<void> {
  await db.updateTable('avatars').set({ user_id: to }).where('user_id', '=', from).execute()
}

export async function deleteAvatarsOf(db: Q, userId: string): Promise<void> {
  await db.deleteFrom('avatars').where('user_id', '=', userId).execute()
}
