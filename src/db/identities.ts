import type { Kysely } from 'kysely'
import type { Database, WeChatIdentity } from './schema.js'

type Q = Kysely<Database>

export function findIdentity(db: Q, appid: string, openid: string): Promise<WeChatIdentity | undefined> {
  return db.selectFrom('wechat_identities').selectAll().where('appid', '=', appid).where('openid', '=', openid).executeTakeFirst()
}

/**
 * Inserts a WeChat identity unless (appid, openid) already exists: a concurrent first login of the same
 * person won, perhaps on another instance. Returns whether this call inserted it.
 */
export async function insertIdentity(
  db: Q,
  identity: { userId: string; appid: string; openid: string; sessionKeyEnc: string; now: number },
): Promise<boolean> {
  const result = await db
    .insertInto('wechat_identities')
    .values({
      user_id: identity.userId,
      appid: identity.appid,
      openid: identity.openid,
      session_key_enc: identity.sessionKeyEnc,
      session_key_updated_at: identity.now,
      created_at: identity.now,
    })
    .onConflict((oc) => oc.columns(['appid', 'openid']).doNothing())
    .executeTakeFirst()
  return (result.numInsertedOrUpdatedRows ?? 0n) === 1n
}

/** Stores the newest session_key of an identity (a new wx.login() replaces the previous one). */
export async function updateSessionKey(db: Q, id: number, sessionKeyEnc: string, now: number): Promise<void> {
  await db.updateTable('wechat_identities').set({ session_key_enc: sessionKeyEnc, session_key_updated_at: now }).where('id', '=', id).execute()
}

/** The user's identity in one mini-program (its openid there). */
export function findIdentityOfUser(db: Q, userId: string, appid: string): Promise<WeChatIdentity | undefined> {
  return db.selectFrom('wechat_identities').selectAll().where('user_id', '=', userId).where('appid', '=', appid).executeTakeFirst()
}

export function listIdentitiesOfUser(db: Q, userId: string): Promise<WeChatIdentity[]> {
  return db.selectFrom('wechat_identities').selectAll().where('user_id', '=', userId).orderBy('created_at').orderBy('id').execute()
}

/** A page of identities' sealed session_keys, by id, for re-sealing. */
export function listIdentityKeysAfter(db: Q, afterId: number, limit: number): Promise<Array<Pick<WeChatIdentity, 'id' | 'appid' | 'openid' | 'session_key_enc'>>> {
  return db.selectFrom('wechat_identities').select(['id', 'appid', 'openid', 'session_key_enc']).where('id', '>', afterId).orderBy('id').limit(limit).execute()
}

/** Replaces a sealed session_key if it is still `previous`; returns whether it did. */
export async function updateSessionKeySealed(db: Q, id: number, previous: string, sealed: string): Promise<boolean> {
  const result = await db.updateTable('wechat_identities').set({ session_key_enc: sealed }).where('id', '=', id).where('session_key_enc', '=', previous).executeTakeFirst()
  return result.numUpdatedRows === 1n
}

/** Gives every identity of `from` to `to` (a merge). */
export async function moveIdentities(db: Q, from: string, to: string): Promise<void> {
  await db.updateTable('wechat_identities').set({ user_id: to }).where('user_id', '=', from).execute()
}

/** Gives one identity to another user (an unlink). */
export async function moveIdentity(db: Q, id: number, to: string): Promise<void> {
  await db.updateTable('wechat_identities').set({ user_id: to }).where('id', '=', id).execute()
}
