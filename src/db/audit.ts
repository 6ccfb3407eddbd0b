import type { Kysely } from 'kysely'
import type { Database, NewAuditEvent } from './schema.js'

/** Records a security event. Ids only: never a token, code or session_key. */
export async function recordEvent(db: Kysely<Database>, event: NewAuditEvent): Promise<void> {
  await db.insertInto('audit_events').values(event).execute()
}
