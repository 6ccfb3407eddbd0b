import { randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { Database, SecurityEvent } from './schema.js'

type Q = Kysely<Database>

/** What an event says; written in the transaction of the change it reports. */
export interface NewSecurityEvent {
  at: number
  type: string
  sub: string
  sid?: string | null
  detail?: Record<string, unknown>
}

/** Appends an event to the stream services poll. */
export async function appendSecurityEvent(db: Q, event: NewSecurityEvent): Promise<void> {
  await db
    .insertInto('security_events')
    .values({
      jti: randomBytes(16).toString('base64url'),
      at: event.at,
      type: event.type,
      sub: event.sub,
      sid: event.sid ?? null,
      detail: event.detail ? JSON.stringify(event.detail) : null,
    })
    .execute()
}

/**
 * Up to `limit` events a service is due to receive, oldest first: never delivered to it, or delivered
 * and not acknowledged before `now`'s redelivery time. Events are found by the absence of an
 * acknowledgement, not by a cursor, so an event whose transaction committed after a later id was read
 * is still delivered.
 */
export function dueEvents(db: Q, serviceId: string, now: number, limit: number): Promise<SecurityEvent[]> {
  return db
    .selectFrom('security_events as e')
    .leftJoin('event_deliveries as d', (join) => join.onRef('d.event_id', '=', 'e.id').on('d.service_id', '=', serviceId))
    .selectAll('e')
    .where((eb) => eb.or([eb('d.event_id', 'is', null), eb.and([eb('d.acked_at', 'is', null), eb('d.next_attempt_at', '<=', now)])]))
    .orderBy('e.id')
    .limit(limit)
    .execute()
}

/** Marks events as delivered to a service now; they are due again at `retryAt` unless acknowledged. */
export async function markDelivered(db: Q, serviceId: string, eventIds: number[], retryAt: number): Promise<void> {
  for (const eventId of eventIds) {
    await db
      .insertInto('event_deliveries')
      .values({ service_id: serviceId, event_id: eventId, attempts: 1, next_attempt_at: retryAt, acked_at: null, error: null })
      .onConflict((oc) => oc.columns(['service_id', 'event_id']).doUpdateSet((eb) => ({ attempts: eb('event_deliveries.attempts', '+', 1), next_attempt_at: retryAt })))
      .execute()
  }
}

/**
 * Acknowledges events (by SET `jti`) for a service: they are never delivered to it again. `errors`
 * holds the service's `setErrs` entries: acknowledged too (RFC 8936 §2.4), with the error kept.
 * Unknown jtis are ignored. Returns how many events were acknowledged.
 */
export async function acknowledge(db: Q, serviceId: string, jtis: string[], errors: Record<string, string>, now: number): Promise<number> {
  if (jtis.length === 0) return 0
  const events = await db.selectFrom('security_events').select(['id', 'jti']).where('jti', 'in', jtis).execute()
  for (const event of events) {
    const error = errors[event.jti] ?? null
    await db
      .insertInto('event_deliveries')
      .values({ service_id: serviceId, event_id: event.id, attempts: 0, next_attempt_at: now, acked_at: now, error })
      .onConflict((oc) => oc.columns(['service_id', 'event_id']).doUpdateSet({ acked_at: now, error }).where('event_deliveries.acked_at', 'is', null))
      .execute()
  }
  return events.length
}

/** Events about a user (for the data export). */
export function eventsAbout(db: Q, sub: string): Promise<SecurityEvent[]> {
  return db.selectFrom('security_events').selectAll().where('sub', '=', sub).orderBy('id').execute()
}

/** Deletes events recorded before `before`, with their delivery state. */
export async function purgeSecurityEvents(db: Q, before: number): Promise<number> {
  const old = db.selectFrom('security_events').select('id').where('at', '<', before)
  await db.deleteFrom('event_deliveries').where('event_id', 'in', old).execute()
  const result = await db.deleteFrom('security_events').where('at', '<', before).executeTakeFirst()
  return Number(result.numDeletedRows)
}
