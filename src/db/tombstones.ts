import type { Kysely } from 'kysely'
import type { Database, UserTombstoneTable } from './schema.js'

type Q = Kysely<Database>

export type UserTombstone = UserTombstoneTable

/** Records that a `sub` ended; it is never given to a user again. */
export async function insertTombstone(db: Q, tombstone: UserTombstone): Promise<void> {
  await db.insertInto('user_tombstones').values(tombstone).execute()
}

export function findTombstone(db: Q, id: string): Promise<UserTombstone | undefined> {
  return db.selectFrom('user_tombstones').selectAll().where('id', '=', id).executeTakeFirst()
}

/** The subs that were merged into `id`, so a merged-away `sub` keeps resolving after a second merge. */
export function subsMergedInto(db: Q, id: string): Promise<UserTombstone[]> {
  return db.selectFrom('user_tombstones').selectAll().where('merged_into', '=', id).orderBy('ended_at').execute()
}

/** Points the tombstones merged into `from` at `to` (a merged user was merged again, or deleted). */
export async function repointTombstones(db: Q, from: string, to: string | null): Promise<void> {
  await db.updateTable('user_tombstones').set({ merged_into: to }).where('merged_into', '=', from).execute()
}
