import type { Kysely } from 'kysely'
import type { Database, SigningKeyRow } from './schema.js'

type Q = Kysely<Database>

export function listSigningKeys(db: Q): Promise<SigningKeyRow[]> {
  return db.selectFrom('signing_keys').selectAll().orderBy('created_at').orderBy('kid').execute()
}

export async function insertSigningKey(db: Q, row: SigningKeyRow): Promise<void> {
  await db.insertInto('signing_keys').values(row).execute()
}

/** Stores a key's sealed private key (imported from its file, or re-sealed with a newer data key). */
export async function storePrivateKey(db: Q, kid: string, sealed: string): Promise<void> {
  await db.updateTable('signing_keys').set({ private_key: sealed }).where('kid', '=', kid).execute()
}

export async function scheduleSigningKey(
  db: Q,
  kid: string,
  times: { activates_at?: number | null; retires_at?: number | null; removed_at?: number | null },
): Promise<void> {
  await db.updateTable('signing_keys').set(times).where('kid', '=', kid).execute()
}
