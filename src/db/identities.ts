import type { Kysely } from 'kysely'
import type { Database, WeChatIdentity } from './schema.js'

type Q = Kysely<Database>

export function findIdentity(db: Q, appid: string, openid: string): Promise<WeChatIdentity | undefined> {
  return db.selectFrom('wechat_identities').selectAll().where('appid', '=', appid).where('openid', '=', openid).executeTakeFirst()
}

export async function insertIdentity(
  db: Q,
  identity: { userId: string; appid: string; openid: string; sessionKeyEnc: string; now: number },
): Promise<void> {
  await db
    .insertInto('wechat_identities')
    .values({
      user_id: identity.userId,
      appid: identity.appid,
      openid: identity.openid,
      session_key_enc: identity.sessionKeyEnc,
      session_key_updated_at: identity.now,
      created_at: identity.now,
    })
    .execute()
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
  return db.selectFrom('wechat_identities').selectAll().where('user_id', '=', userId).orderBy('created_at').execute()
}
