import { SignJWT } from 'jose'
import type { Config } from '../config.js'
import type { SecurityEvent } from '../db/schema.js'
import type { KeyStore } from '../keys/signing-keys.js'
import { EVENT_TYPES, SET_TYPE, type EventType } from './types.js'

export interface SetDeps {
  config: Pick<Config, 'issuer'>
  keys: KeyStore
}

/** RFC 9493 subject identifiers. */
function issSub(issuer: string, sub: string) {
  return { format: 'iss_sub', iss: issuer, sub }
}

function detailOf(event: SecurityEvent): Record<string, unknown> {
  if (event.detail === null) return {}
  try {
    return JSON.parse(event.detail) as Record<string, unknown>
  } catch {
    return {}
  }
}

/**
 * The `events` claim and subject of one event. The subject is the top-level `sub_id` (the Shared
 * Signals Framework's place), and `subject` inside the event too (RISC's); a session event names the
 * login (`sid`) in a `complex` subject, as CAEP does.
 */
function eventClaims(issuer: string, event: SecurityEvent): { sub_id: Record<string, unknown>; events: Record<string, Record<string, unknown>> } {
  const detail = detailOf(event)
  const user = issSub(issuer, event.sub)
  const uri = EVENT_TYPES[event.type as EventType]
  switch (event.type as EventType) {
    case 'session-revoked': {
      const subject = { format: 'complex', user, session: { format: 'opaque', id: event.sid } }
      const payload: Record<string, unknown> = { subject, event_timestamp: event.at, initiating_entity: detail.initiating_entity ?? 'system' }
      if (typeof detail.reason === 'string') payload.reason_admin = { en: detail.reason }
      return { sub_id: subject, events: { [uri]: payload } }
    }
    case 'identifier-changed':
      return { sub_id: user, events: { [uri]: { subject: user, 'new-value': detail.new_sub, new_sub_id: issSub(issuer, String(detail.new_sub)) } } }
    default:
      return { sub_id: user, events: { [uri ?? `urn:minigate:event:${event.type}`]: { subject: user, event_timestamp: event.at } } }
  }
}

/**
 * Signs an event as a Security Event Token (RFC 8417) for one service: `typ: secevent+jwt`, RS256
 * with minigate's active key (so it verifies against the JWKS), `iss`, `aud` (the service id), `iat`
 * (when the event happened), `jti` (the event's, the same on every delivery), `sub_id` and `events`. No
 * `exp`: a SET is a statement of fact, not a credential. Signed at delivery, outside any transaction.
 */
export async function signSet(deps: SetDeps, event: SecurityEvent, audience: string): Promise<string> {
  const key = deps.keys.active()
  return new SignJWT({ ...eventClaims(deps.config.issuer, event), iss: deps.config.issuer, aud: audience, iat: event.at, jti: event.jti, ...(event.sid ? { sid: event.sid } : {}) })
    .setProtectedHeader({ alg: 'RS256', typ: SET_TYPE, kid: key.kid })
    .sign(key.privateKey)
}
