import type { Kysely } from 'kysely'
import { sql } from '../kysely.js'
import { columnTypes } from './column-types.js'

// 1. Refresh tokens are rotated by a generation counter on their login's row (one row per login instead
//    of one per rotation): the refresh_tokens table goes. Refresh tokens issued before carry no
//    generation and are no longer accepted; their clients log in again.
// 2. Signing keys live in the database, sealed with the data key, so every instance shares them; `file`
//    names the PEM a key was imported from, if any. At most one key is open-ended (activated or
//    scheduled, not retiring): a second concurrent rotation fails on the unique index.
// 3. WeChat codes sent upstream, shared by every instance (PostgreSQL deployments).

export async function up(db: Kysely<any>): Promise<void> {
  const { integer } = columnTypes(db)

  await db.schema.alterTable('login_sessions').addColumn('generation', integer, (c) => c.notNull().defaultTo(0)).execute()
  await db.schema.alterTable('login_sessions').addColumn('rotated_at', integer).execute()
  await db.schema.alterTable('login_sessions').addColumn('grace_uses', integer, (c) => c.notNull().defaultTo(0)).execute()
  await db.schema.dropTable('refresh_tokens').execute()

  await db.schema
    .createTable('signing_keys_v2')
    .addColumn('kid', 'text', (c) => c.primaryKey())
    .addColumn('private_key', 'text')
    .addColumn('file', 'text')
    .addColumn('created_at', integer, (c) => c.notNull())
    .addColumn('activates_at', integer)
    .addColumn('retires_at', integer)
    .addColumn('removed_at', integer)
    .execute()
  await sql`insert into signing_keys_v2 (kid, file, created_at, activates_at, retires_at, removed_at)
            select kid, file, created_at, activates_at, retires_at, removed_at from signing_keys`.execute(db)
  await db.schema.dropTable('signing_keys').execute()
  await db.schema.alterTable('signing_keys_v2').renameTo('signing_keys').execute()

  // Two concurrent rotations could leave two open-ended keys before this index existed: the key
  // activated last is the one that signed, so the others retire when it activated.
  const open = await db
    .selectFrom('signing_keys')
    .select(['kid', 'activates_at'])
    .where('activates_at', 'is not', null)
    .where('retires_at', 'is', null)
    .where('removed_at', 'is', null)
    .orderBy('activates_at', 'desc')
    .orderBy('kid', 'desc')
    .execute()
  const [signing, ...others] = open as Array<{ kid: string; activates_at: number }>
  for (const other of others) {
    await db.updateTable('signing_keys').set({ retires_at: signing?.activates_at }).where('kid', '=', other.kid).execute()
  }
  await db.schema
    .createIndex('signing_keys_one_open')
    .on('signing_keys')
    .unique()
    .expression(sql`(retires_at is null)`)
    .where(sql.ref('activates_at'), 'is not', null)
    .where(sql.ref('retires_at'), 'is', null)
    .where(sql.ref('removed_at'), 'is', null)
    .execute()

  await db.schema
    .createTable('spent_codes')
    .addColumn('code_hash', 'text', (c) => c.primaryKey())
    .addColumn('expires_at', integer, (c) => c.notNull())
    .execute()
  await db.schema.createIndex('spent_codes_expires').on('spent_codes').column('expires_at').execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  const { integer } = columnTypes(db)
  await db.schema.dropTable('spent_codes').execute()
  await db.schema.dropIndex('signing_keys_one_open').execute()
  await db.schema.alterTable('signing_keys').dropColumn('private_key').execute()
  await db.schema
    .createTable('refresh_tokens')
    .addColumn('jti', 'text', (c) => c.primaryKey())
    .addColumn('session_id', 'text', (c) => c.notNull().references('login_sessions.id').onDelete('cascade'))
    .addColumn('token_hash', 'text', (c) => c.notNull())
    .addColumn('issued_at', integer, (c) => c.notNull())
    .addColumn('expires_at', integer, (c) => c.notNull())
    .addColumn('spent_at', integer)
    .addColumn('revoked_at', integer)
    .addColumn('parent_jti', 'text')
    .addColumn('grace_uses', integer, (c) => c.notNull().defaultTo(0))
    .execute()
  await db.schema.alterTable('login_sessions').dropColumn('grace_uses').execute()
  await db.schema.alterTable('login_sessions').dropColumn('rotated_at').execute()
  await db.schema.alterTable('login_sessions').dropColumn('generation').execute()
}
