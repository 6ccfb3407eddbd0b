import type { Kysely } from 'kysely'
import { columnTypes } from './column-types.js'

// Avatars uploaded with wx.uploadFile, served back at a stable URL.

export async function up(db: Kysely<any>): Promise<void> {
  const { integer, bytes } = columnTypes(db)
  await db.schema
    .createTable('avatars')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('content_type', 'text', (c) => c.notNull())
    .addColumn('bytes', bytes, (c) => c.notNull())
    .addColumn('created_at', integer, (c) => c.notNull())
    .execute()
  await db.schema.createIndex('avatars_user').on('avatars').column('user_id').execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('avatars').execute()
}
