import type { Kysely } from 'kysely'

// Audit events record a keyed hash of the client IP: enough to correlate, not the address itself.

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('audit_events').addColumn('ip_hash', 'text').execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('audit_events').dropColumn('ip_hash').execute()
}
