import type { Kysely } from 'kysely'
import type { Database } from './schema.js'

type Q = Kysely<Database>

/**
 * Records an access token as revoked until its own `exp`. Revoking twice is harmless. Returns false when
 * it was already revoked.
 */
export async function revokeAccessToken(db: Q, jti: string, expiresAt: number, now: number): Promise<boolean> {
  const result = await db
    .insertInto('revoked_access_tokens')
    .values({ jti, expires_at: expiresAt, revoked_at: now })
    .onConflict((oc) => oc.column('jti').doNothing())
    .executeTakeFirst()
  return result.numInsertedOrUpdatedRows === 1n
}

export async function isAccessTokenRevoked(db: Q, jti: string): Promise<boolean> {
  const row = await db.selectFrom('revoked_access_tokens').select('jti').where('jti', '=', jti).executeTakeFirst()
  return row !== undefined
}

/** Deletes revocations of tokens that have expired anyway. */
export async function purgeExpiredRevocations(db: Q, now: number): Promise<number> {
  const result = await db.deleteFrom('revoked_access_tokens').where('expires_at', '<', now).executeTakeFirst()
  return Number(result.numDeletedRows)
}
