import type { Kysely } from 'kysely'
import { columnTypes } from './column-types.js'

// The account lifecycle:
// 1. Tombstones: every `sub` that ended (deleted, or merged into another user) keeps a row for good, so it
//    is never given to a new user and a merged-away `sub` resolves to the user it became.
// 2. The security-event stream services poll (RFC 8936): one row per event, written in the transaction
//    of the change it reports, each service's delivery state of each event, and each service's cursor.
// 3. audit_events.actor: who acted (`user`, `system`, `operator` for the CLI).

export async function up(db: Kysely<any>): Promise<void> {
  const { integer, autoId } = columnTypes(db)

  await db.schema
    .createTable('user_tombstones')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('ended_at', integer, (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('merged_into', 'text')
    .execute()
  await db.schema.createIndex('user_tombstones_merged_into').on('user_tombstones').column('merged_into').execute()

  await autoId(db.schema.createTable('security_events'), 'id')
    .addColumn('jti', 'text', (c) => c.notNull().unique())
    .addColumn('at', integer, (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('sub', 'text', (c) => c.notNull())
    .addColumn('sid', 'text')
    .addColumn('detail', 'text')
    .execute()
  await db.schema.createIndex('security_events_at').on('security_events').column('at').execute()

  await db.schema
    .createTable('event_deliveries')
    .addColumn('service_id', 'text', (c) => c.notNull())
    .addColumn('event_id', integer, (c) => c.notNull().references('security_events.id').onDelete('cascade'))
    .addColumn('attempts', integer, (c) => c.notNull().defaultTo(0))
    .addColumn('next_attempt_at', integer, (c) => c.notNull())
    .addColumn('acked_at', integer)
    .addColumn('error', 'text')
    .addPrimaryKeyConstraint('event_deliveries_pk', ['service_id', 'event_id'])
    .execute()
  await db.schema.createIndex('event_deliveries_event').on('event_deliveries').column('event_id').execute()

  // Where each service's scan of the stream starts: every event up to `floor` is acknowledged by it.
  // `candidate` is the next floor, usable once every transaction that was running when it was read
  // (PostgreSQL: those below `candidate_xmax`) has ended, so no event below it can still appear.
  await db.schema
    .createTable('event_cursors')
    .addColumn('service_id', 'text', (c) => c.primaryKey())
    .addColumn('floor', integer, (c) => c.notNull())
    .addColumn('candidate', integer)
    .addColumn('candidate_xmax', 'text')
    .execute()

  await db.schema.alterTable('audit_events').addColumn('actor', 'text').execute()
  await db.schema.createIndex('audit_events_sub').on('audit_events').column('sub').execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('audit_events_sub').execute()
  await db.schema.alterTable('audit_events').dropColumn('actor').execute()
  await db.schema.dropTable('event_cursors').execute()
  await db.schema.dropTable('event_deliveries').execute()
  await db.schema.dropTable('security_events').execute()
  await db.schema.dropTable('user_tombstones').execute()
}
