import type { Kysely } from 'kysely'
import type { Database } from './schema.js'

type Q = Kysely<Database>

/** Records a code hash as spent; true only for the one caller whose insert made the row. */
export async function claimCode(db: Q, codeHash: string, expiresAt: number): Promise<boolean> {
  const result = await db.insertInto('spent_codes').values({ code_hash: codeHash, expires_at: expiresAt }).onConflict((oc) => oc.column('code_hash').doNothing()).executeTakeFirst()
  return (result.numInsertedOrUpdatedRows ?? 0n) === 1n
}

export async function releaseCode(db: Q, codeHash: string): Promise<void> {
  await db.deleteFrom('spent_codes').where('code_hash', '=', codeHash).execute()
}

/** Deletes codes past their lifetime: WeChat refuses them anyway. */
export async function purgeExpiredCodes(db: Q, now: number): Promise<number> {
  const result = await db.deleteFrom('spent_codes').where('expires_at', '<', now).executeTakeFirst()
  return Number(result.numDeletedRows)
}
