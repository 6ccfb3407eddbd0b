import type { Kysely } from 'kysely'
import type { Database, NewRefreshToken, RefreshToken } from './schema.js'

type Q = Kysely<Database>

export async function insertRefreshToken(db: Q, token: NewRefreshToken): Promise<void> {
  await db.insertInto('refresh_tokens').values(token).execute()
}

export function findRefreshToken(db: Q, jti: string): Promise<RefreshToken | undefined> {
  return db.selectFrom('refresh_tokens').selectAll().where('jti', '=', jti).executeTakeFirst()
}

/**
 * Spends a refresh token as a compare-and-set: true only for the one caller that found it unspent and
 * unrevoked. A caller that gets false lost a race.
 */
export async function spendRefreshToken(db: Q, jti: string, now: number): Promise<boolean> {
  const result = await db
    .updateTable('refresh_tokens')
    .set({ spent_at: now })
    .where('jti', '=', jti)
    .where('spent_at', 'is', null)
    .where('revoked_at', 'is', null)
    .executeTakeFirst()
  return result.numUpdatedRows === 1n
}

/** Counts one grace-window replay of a spent token, as a compare-and-set on the count seen. */
export async function useGrace(db: Q, jti: string, seen: number): Promise<boolean> {
  const result = await db
    .updateTable('refresh_tokens')
    .set({ grace_uses: seen + 1 })
    .where('jti', '=', jti)
    .where('grace_uses', '=', seen)
    .executeTakeFirst()
  return result.numUpdatedRows === 1n
}

/** Whether a token rotated from `jti` has itself been spent: then `jti` is no longer the newest spent token. */
export async function hasSpentChild(db: Q, jti: string): Promise<boolean> {
  const child = await db
    .selectFrom('refresh_tokens')
    .select('jti')
    .where('parent_jti', '=', jti)
    .where('spent_at', 'is not', null)
    .executeTakeFirst()
  return child !== undefined
}

/** Revokes the unspent tokens rotated from `jti` (the pair a grace replay supersedes). */
export async function revokeUnspentChildren(db: Q, jti: string, now: number): Promise<void> {
  await db.updateTable('refresh_tokens').set({ revoked_at: now }).where('parent_jti', '=', jti).where('spent_at', 'is', null).where('revoked_at', 'is', null).execute()
}

/** Deletes refresh tokens past their `exp`: their JWTs no longer verify, so their rows prove nothing. */
export async function purgeExpiredRefreshTokens(db: Q, now: number): Promise<number> {
  const result = await db.deleteFrom('refresh_tokens').where('expires_at', '<', now).executeTakeFirst()
  return Number(result.numDeletedRows)
}
