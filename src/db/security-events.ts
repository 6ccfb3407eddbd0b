import { randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import { sql } from './kysely.js'
import type { Trx } from './connection.js'
import { dialectOf, forUpdate } from './dialect.js'
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
  // The transaction takes its id before the event takes its sequence number, so a cursor that waits
  // for every transaction older than a snapshot also waits for this one (see `settleCursor`).
  if (dialectOf(db) === 'postgres') await sql`select pg_current_xact_id()`.execute(db)
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
 * Up to `limit` events after `floor` a service is due to receive, oldest first: never delivered to it,
 * or delivered and not acknowledged before `now`'s redelivery time. Above the floor, events are found by
 * the absence of an acknowledgement, not by position, so an event whose transaction committed after a
 * later id was read is still delivered.
 */
export function dueEvents(db: Q, serviceId: string, floor: number, now: number, limit: number): Promise<SecurityEvent[]> {
  return db
    .selectFrom('security_events as e')
    .leftJoin('event_deliveries as d', (join) => join.onRef('d.event_id', '=', 'e.id').on('d.service_id', '=', serviceId))
    .selectAll('e')
    .where('e.id', '>', floor)
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

/**
 * Moves a service's cursor up and returns its floor: every event up to the floor is acknowledged by the
 * service, so its polls scan only what lies above. Ids are taken when events are inserted, not when
 * they commit, so on PostgreSQL an event with a smaller id may still appear after a larger one was
 * read: the highest id read becomes a candidate, usable only once every transaction that was running
 * then has ended (the oldest running transaction now, `pg_snapshot_xmin`, is no older than the first
 * one not yet started then, `pg_snapshot_xmax`). On SQLite writers run one at a time, so ids appear in
 * commit order and a candidate is usable at once.
 */
export async function settleCursor(trx: Trx, serviceId: string): Promise<number> {
  const postgres = dialectOf(trx) === 'postgres'
  await trx.insertInto('event_cursors').values({ service_id: serviceId, floor: 0, candidate: null, candidate_xmax: null }).onConflict((oc) => oc.column('service_id').doNothing()).execute()
  const cursor = await forUpdate(trx, trx.selectFrom('event_cursors').selectAll().where('service_id', '=', serviceId)).executeTakeFirstOrThrow()
  let { floor, candidate, candidate_xmax: candidateXmax } = cursor
  if (candidate === null) {
    // The highest id and the snapshot's horizon, read by one statement (one snapshot).
    const row = postgres
      ? (await sql<{ max: number | null; xmax: string }>`select (select max(id) from security_events) as max, pg_snapshot_xmax(pg_current_snapshot())::text as xmax`.execute(trx)).rows[0]
      : { max: (await trx.selectFrom('security_events').select((eb) => eb.fn.max('id').as('max')).executeTakeFirst())?.max ?? null, xmax: null }
    if (row?.max !== null && row?.max !== undefined && Number(row.max) > floor) {
      candidate = Number(row.max)
      candidateXmax = row.xmax
    }
  }
  const settled =
    candidate !== null &&
    (!postgres || (await sql<{ settled: boolean }>`select pg_snapshot_xmin(pg_current_snapshot()) >= ${candidateXmax}::xid8 as settled`.execute(trx)).rows[0]?.settled === true)
  if (settled && candidate !== null) {
    const open = await trx
      .selectFrom('security_events as e')
      .leftJoin('event_deliveries as d', (join) => join.onRef('d.event_id', '=', 'e.id').on('d.service_id', '=', serviceId))
      .select((eb) => eb.fn.min('e.id').as('first'))
      .where('e.id', '>', floor)
      .where('e.id', '<=', candidate)
      .where('d.acked_at', 'is', null)
      .executeTakeFirst()
    floor = open?.first === null || open?.first === undefined ? candidate : Number(open.first) - 1
    candidate = null
    candidateXmax = null
  }
  await trx.updateTable('event_cursors').set({ floor, candidate, candidate_xmax: candidateXmax }).where('service_id', '=', serviceId).execute()
  return floor
}
