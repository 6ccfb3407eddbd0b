import type { Kysely } from 'kysely'
import { columnTypes } from './column-types.js'

// Migrations take Kysely<any> and never import application code: they must keep working as the app changes.

export async function up(db: Kysely<any>): Promise<void> {
  const { integer, autoId } = columnTypes(db)
  await db.schema
    .createTable('users')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('unionid', 'text', (c) => c.unique())
    .addColumn('nickname', 'text')
    .addColumn('picture', 'text')
    .addColumn('phone_number', 'text')
    .addColumn('phone_country_code', 'text')
    .addColumn('phone_verified_at', integer)
    .addColumn('disabled_at', integer)
    .addColumn('created_at', integer, (c) => c.notNull())
    .addColumn('updated_at', integer, (c) => c.notNull())
    .execute()

  await autoId(db.schema.createTable('wechat_identities'), 'id')
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('appid', 'text', (c) => c.notNull())
    .addColumn('openid', 'text', (c) => c.notNull())
    .addColumn('session_key_enc', 'text', (c) => c.notNull())
    .addColumn('session_key_updated_at', integer, (c) => c.notNull())
    .addColumn('created_at', integer, (c) => c.notNull())
    .addUniqueConstraint('wechat_identities_appid_openid', ['appid', 'openid'])
    .execute()
  await db.schema.createIndex('wechat_identities_user').on('wechat_identities').column('user_id').execute()

  await db.schema
    .createTable('login_sessions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('client_id', 'text', (c) => c.notNull())
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('created_at', integer, (c) => c.notNull())
    .addColumn('last_used_at', integer, (c) => c.notNull())
    .addColumn('revoked_at', integer)
    .addColumn('revoked_reason', 'text')
    .execute()
  await db.schema.createIndex('login_sessions_user').on('login_sessions').column('user_id').execute()

  await db.schema
    .createTable('refresh_tokens')
    .addColumn('jti', 'text', (c) => c.primaryKey())
    .addColumn('session_id', 'text', (c) => c.notNull().references('login_sessions.id').onDelete('cascade'))
    .addColumn('token_hash', 'text', (c) => c.notNull())
    .addColumn('issued_at', integer, (c) => c.notNull())
    .addColumn('expires_at', integer, (c) => c.notNull())
    .addColumn('spent_at', integer)
    .addColumn('revoked_at', integer)
    .execute()
  await db.schema.createIndex('refresh_tokens_session').on('refresh_tokens').column('session_id').execute()
  await db.schema.createIndex('refresh_tokens_expires').on('refresh_tokens').column('expires_at').execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('refresh_tokens').execute()
  await db.schema.dropTable('login_sessions').execute()
  await db.schema.dropTable('wechat_identities').execute()
  await db.schema.dropTable('users').execute()
}
