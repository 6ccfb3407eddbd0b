import type { Kysely } from 'kysely'
import { columnTypes } from './column-types.js'

// Refresh rotation, revocation and the audit trail.

export async function up(db: Kysely<any>): Promise<void> {
  const { integer, autoId } = columnTypes(db)
  await db.schema.alterTable('refresh_tokens').addColumn('parent_jti', 'text').execute()
  await db.schema.alterTable('refresh_tokens').addColumn('grace_uses', integer, (c) => c.notNull().defaultTo(0)).execute()
  await db.schema.createIndex('refresh_tokens_parent').on('refresh_tokens').column('parent_jti').execute()

  await db.schema.alterTable('login_sessions').addColumn('expires_at', integer, (c) => c.notNull().defaultTo(0)).execute()

  await db.schema
    .createTable('revoked_access_tokens')
    .addColumn('jti', 'text', (c) => c.primaryKey())
    .addColumn('expires_at', integer, (c) => c.notNull())
    .addColumn('revoked_at', integer, (c) => c.notNull())
    .execute()
  await db.schema.createIndex('revoked_access_tokens_expires').on('revoked_access_tokens').column('expires_at').execute()

  await autoId(db.schema.createTable('audit_events'), 'id')
    .addColumn('at', integer, (c) => c.notNull())
    .addColumn('event', 'text', (c) => c.notNull())
    .addColumn('sub', 'text')
    .addColumn('client_id', 'text')
    .addColumn('sid', 'text')
    .addColumn('detail', 'text')
    .execute()
  await db.schema.createIndex('audit_events_at').on('audit_events').column('at').execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('audit_events').execute()
  await db.schema.dropTable('revoked_access_tokens').execute()
  await db.schema.alterTable('login_sessions').dropColumn('expires_at').execute()
  await db.schema.dropIndex('refresh_tokens_parent').execute()
  await db.schema.alterTable('refresh_tokens').dropColumn('grace_uses').execute()
  await db.schema.alterTable('refresh_tokens').dropColumn('parent_jti').execute()
}
