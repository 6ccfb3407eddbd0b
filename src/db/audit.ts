import type { Kysely } from 'kysely'
import type { AuditEvent, Database, NewAuditEvent } from './schema.js'

type Q = Kysely<Database>

/**
 * Records a security event. Ids only: never a token, code or session_key. Without an `actor`, a row
 * with a client's IP hash was written on a user's request (`user`), any other by minigate (`system`);
 * the CLI says `operator`.
 */
export async function recordEvent(db: Q, event: NewAuditEvent): Promise<void> {
  await db.insertInto('audit_events').values({ ...event, actor: event.actor ?? (event.ip_hash ? 'user' : 'system') }).execute()
}

/** What `listAuditEvents` filters on; every field is optional. */
export interface AuditFilter {
  sub?: string
  event?: string
  since?: number
  until?: number
  limit?: number
}

/** Audit events, newest first. */
export function listAuditEvents(db: Q, filter: AuditFilter): Promise<AuditEvent[]> {
  let query = db.selectFrom('audit_events').selectAll()
  if (filter.sub !== undefined) query = query.where('sub', '=', filter.sub)
  if (filter.event !== undefined) query = query.where('event', '=', filter.event)
  if (filter.since !== undefined) query = query.where('at', '>=', filter.since)
  if (filter.until !== undefined) query = query.where('at', '<', filter.until)
  return query.orderBy('at', 'desc').orderBy('id', 'desc').limit(filter.limit ?? 100).execute()
}

/** Deletes audit events recorded before `before`. */
export async function purgeAuditEvents(db: Q, before: number): Promise<number> {
  const result = await db.deleteFrom('audit_events').where('at', '<', before).executeTakeFirst()
  return Number(result.numDeletedRows)
}
