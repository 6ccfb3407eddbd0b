import { appendSecurityEvent } from '../db/security-events.js'
import type { Trx } from '../db/connection.js'
import type { EventType } from './types.js'

/** Who ended a login, in CAEP's words (`initiating_entity`). */
export type Initiator = 'user' | 'admin' | 'policy' | 'system'

/** Appends one event to the stream services poll, in the transaction of the change. */
export function emitEvent(trx: Trx, at: number, type: EventType, sub: string, extra: { sid?: string; detail?: Record<string, unknown> } = {}): Promise<void> {
  return appendSecurityEvent(trx, { at, type, sub, sid: extra.sid ?? null, ...(extra.detail ? { detail: extra.detail } : {}) })
}

/** A `session-revoked` event for each login that ended, with why and on whose initiative. */
export async function emitSessionsRevoked(trx: Trx, at: number, sub: string, sids: string[], initiator: Initiator, reason: string): Promise<void> {
  for (const sid of sids) await emitEvent(trx, at, 'session-revoked', sub, { sid, detail: { initiating_entity: initiator, reason } })
}
