import type { Kysely } from 'kysely'
import { columnTypes } from './column-types.js'

// Signing-key states live in the database, so the CLI can rotate keys under a running server.

export async function up(db: Kysely<any>): Promise<void> {
  const { integer } = columnTypes(db)
  await db.schema
    .createTable('signing_keys')
    .addColumn('kid', 'text', (c) => c.primaryKey())
    .addColumn('file', 'text', (c) => c.notNull())
    .addColumn('created_at', integer, (c) => c.notNull())
    .addColumn('activates_at', integer)
    .addColumn('retires_at', integer)
    .addColumn('removed_at', integer)
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('signing_keys').execute()
}
