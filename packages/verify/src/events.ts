import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload } from 'jose'
import { issuerMetadata } from './discovery.js'
import { ConfigurationError, TemporarilyUnavailable } from './errors.js'

/** The event types minigate sends, by short name, and their RISC / CAEP URIs. */
export const EVENT_TYPE_URIS = {
  'account-purged': 'https://schemas.openid.net/secevent/risc/event-type/account-purged',
  'account-disabled': 'https://schemas.openid.net/secevent/risc/event-type/account-disabled',
  'account-enabled': 'https://schemas.openid.net/secevent/risc/event-type/account-enabled',
  'identifier-changed': 'https://schemas.openid.net/secevent/risc/event-type/identifier-changed',
  'session-revoked': 'https://schemas.openid.net/secevent/caep/event-type/session-revoked',
} as const

/** A short event type name, or the URI of a type this version does not know. */
export type SecurityEventType = keyof typeof EVENT_TYPE_URIS | (string & {})

/**
 * One verified Security Event Token (RFC 8417), flattened for a service.
 *
 * @example
 * if (event.type === 'account-purged') await orders.deleteAllOf(event.sub)
 * if (event.type === 'identifier-changed') await orders.moveOwner(event.sub, event.newSub!)
 */
export interface SecurityEvent {
  /** The SET's `jti`: acknowledge it once the event is handled; the same on every redelivery. */
  jti: string
  /** `account-purged`, `account-disabled`, `account-enabled`, `identifier-changed`, `session-revoked`. */
  type: SecurityEventType
  /** The event type URI. */
  uri: string
  /** The `sub` the event is about. */
  sub: string
  /** For `session-revoked`: the login that ended (the access tokens' `sid`). */
  sid?: string
  /** For `identifier-changed`: the `sub` to use from now on (the user it was merged into). */
  newSub?: string
  /** When it happened, epoch seconds. */
  iat: number
  /** The SET's whole payload. */
  payload: JWTPayload
}

/**
 * Options of {@link createEventPoller}.
 *
 * @example
 * createEventPoller({ issuer: 'https://id.example.com', clientId: 'orders', clientSecret: process.env.ORDERS_SECRET! })
 */
export interface EventPollerOptions {
  /** The issuer, exactly as minigate's `MINIGATE_ISSUER`. */
  issuer: string
  /** The service's id in `MINIGATE_SERVICES`: the `aud` of its SETs. */
  clientId: string
  clientSecret: string
  /** SETs asked for per request (default 20, at most 100). */
  maxEvents?: number
  /** Request timeout in ms (default 5000). */
  timeoutDuration?: number
  /** The current time in ms (default `Date.now`); for tests. */
  now?: () => number
}

/** What one {@link EventPoller.poll} returns. */
export interface PollResult {
  /** The SETs that verified. */
  events: SecurityEvent[]
  /** SETs that did not verify, by jti: report them with `setErrs` (the `drain` helper does). */
  invalid: Array<{ jti: string; error: string }>
  /** Whether more events are waiting. */
  moreAvailable: boolean
}

/**
 * What {@link createEventPoller} returns.
 *
 * @example
 * const handled = await poller.drain(async (event) => { if (event.type === 'account-purged') await forget(event.sub) })
 */
export interface EventPoller {
  /**
   * One RFC 8936 poll: acknowledges `ack` (jtis of events handled before), reports `setErrs`, and
   * returns the next SETs, each verified against the issuer's JWKS (`typ: secevent+jwt`, RS256, `iss`,
   * `aud` = the client id). An event not acknowledged is delivered again later.
   */
  poll(options?: { ack?: string[]; setErrs?: Record<string, { err: string; description?: string }>; maxEvents?: number }): Promise<PollResult>
  /**
   * Polls until nothing is left, calling `handle` for each event in order, and acknowledges each event
   * `handle` finished (in the next request); an event whose `handle` threw stays unacknowledged (it
   * comes again) and the drain stops there with the error. SETs that fail verification are reported
   * in `setErrs`. Returns how many events were handled.
   */
  drain(handle: (event: SecurityEvent) => Promise<void> | void): Promise<number>
}

/** RFC 6749 §2.3.1: id and secret are form-encoded before they are joined and base64-encoded. */
function basicAuthorization(id: string, secret: string): string {
  const encode = (value: string) => encodeURIComponent(value).replace(/%20/g, '+')
  return `Basic ${Buffer.from(`${encode(id)}:${encode(secret)}`).toString('base64')}`
}

/** Thrown for a SET itself: malformed, badly signed, wrong claims, unknown key, or not an event. */
class BadSet extends Error {}

function isBadSet(error: unknown): boolean {
  return (
    error instanceof BadSet ||
    error instanceof errors.JWSInvalid ||
    error instanceof errors.JWTInvalid ||
    error instanceof errors.JWSSignatureVerificationFailed ||
    error instanceof errors.JWTClaimValidationFailed ||
    error instanceof errors.JOSEAlgNotAllowed ||
    error instanceof errors.JWKSNoMatchingKey ||
    error instanceof errors.JWKSMultipleMatchingKeys
  )
}

function flatten(jti: string, payload: JWTPayload): SecurityEvent {
  const events = (payload.events ?? {}) as Record<string, Record<string, unknown>>
  const uri = Object.keys(events)[0]
  if (uri === undefined || typeof payload.iat !== 'number') throw new BadSet('the SET has no event')
  const type = (Object.entries(EVENT_TYPE_URIS).find(([, value]) => value === uri)?.[0] ?? uri) as SecurityEventType
  const subject = (payload.sub_id ?? {}) as { format?: string; sub?: string; user?: { sub?: string }; session?: { id?: string } }
  const sub = subject.format === 'complex' ? subject.user?.sub : subject.sub
  if (typeof sub !== 'string') throw new BadSet('the SET names no subject')
  const event: SecurityEvent = { jti, type, uri, sub, iat: payload.iat, payload }
  if (subject.format === 'complex' && typeof subject.session?.id === 'string') event.sid = subject.session.id
  const newValue = events[uri]?.['new-value']
  if (typeof newValue === 'string') event.newSub = newValue
  return event
}

/**
 * Creates a poller of minigate's Security Event Tokens for a service (RFC 8936 polling, RFC 8417 SETs),
 * authenticated with the service's `MINIGATE_SERVICES` credentials like introspection. It finds the
 * `events_endpoint` and `jwks_uri` through discovery. Delivery is at least once: handle events
 * idempotently, and acknowledge them only once handled.
 *
 * @example
 * import { createEventPoller } from '@minigate/verify'
 * const poller = createEventPoller({ issuer: 'https://id.example.com', clientId: 'orders', clientSecret })
 * setInterval(() => poller.drain(async (event) => {
 *   if (event.type === 'account-purged') await db.deleteOrdersOf(event.sub)
 *   if (event.type === 'identifier-changed') await db.reassignOrders(event.sub, event.newSub!)
 * }).catch(console.error), 30_000)
 */
export function createEventPoller(options: EventPollerOptions): EventPoller {
  const { issuer, clientId, clientSecret } = options
  if (typeof issuer !== 'string' || issuer === '') throw new TypeError('createEventPoller: issuer must be the issuer URL')
  if (!clientId || !clientSecret) throw new TypeError('createEventPoller: clientId and clientSecret are required')
  const now = options.now ?? Date.now
  const timeoutMs = options.timeoutDuration ?? 5_000
  const metadata = issuerMetadata(issuer, timeoutMs, now)
  const authorization = basicAuthorization(clientId, clientSecret)
  let keySet: ReturnType<typeof createRemoteJWKSet> | undefined

  async function verify(set: string): Promise<JWTPayload> {
    keySet ??= createRemoteJWKSet(new URL((await metadata()).jwks_uri), { timeoutDuration: timeoutMs })
    const { payload } = await jwtVerify(set, keySet, { algorithms: ['RS256'], typ: 'secevent+jwt', issuer, audience: clientId, currentDate: new Date(now()) })
    return payload
  }

  async function poll(request: { ack?: string[]; setErrs?: Record<string, { err: string; description?: string }>; maxEvents?: number } = {}): Promise<PollResult> {
    const { events_endpoint: endpoint } = await metadata()
    if (!endpoint) throw new ConfigurationError('the issuer publishes no events_endpoint')
    let response: Response
    try {
      response = await fetch(endpoint, {
        method: 'POST',
        headers: { authorization, accept: 'application/json', 'content-type': 'application/json' },
        body: JSON.stringify({ ack: request.ack ?? [], ...(request.setErrs ? { setErrs: request.setErrs } : {}), maxEvents: request.maxEvents ?? options.maxEvents ?? 20, returnImmediately: true }),
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      })
    } catch (cause) {
      throw new TemporarilyUnavailable('the issuer events endpoint could not be reached', { cause })
    }
    if (response.status === 401 || response.status === 403) throw new ConfigurationError('the issuer refused the service credentials')
    if (response.status !== 200) throw new TemporarilyUnavailable(`the issuer events endpoint answered ${response.status}`)
    let answer: { sets?: unknown; moreAvailable?: unknown }
    try {
      answer = (await response.json()) as typeof answer
    } catch (cause) {
      throw new TemporarilyUnavailable('the issuer events answer is not JSON', { cause })
    }
    const sets = answer.sets !== null && typeof answer.sets === 'object' ? (answer.sets as Record<string, unknown>) : {}
    const result: PollResult = { events: [], invalid: [], moreAvailable: answer.moreAvailable === true }
    for (const [jti, set] of Object.entries(sets)) {
      try {
        if (typeof set !== 'string') throw new BadSet('the SET is not a string')
        const payload = await verify(set)
        if (payload.jti !== jti) throw new BadSet('the SET jti does not match its key')
        result.events.push(flatten(jti, payload))
      } catch (error) {
        // Only a SET that is itself bad is reported; a JWKS that could not be fetched is not the SET's
        // fault: stop, and let the SETs come again.
        if (!isBadSet(error)) throw new TemporarilyUnavailable("the issuer's JWKS could not be fetched", { cause: error })
        result.invalid.push({ jti, error: error instanceof Error ? error.message : String(error) })
      }
    }
    result.events.sort((a, b) => a.iat - b.iat)
    return result
  }

  async function drain(handle: (event: SecurityEvent) => Promise<void> | void): Promise<number> {
    let ack: string[] = []
    let setErrs: Record<string, { err: string; description: string }> = {}
    let handled = 0
    for (;;) {
      const result = await poll({ ack, setErrs })
      ack = []
      setErrs = Object.fromEntries(result.invalid.map(({ jti, error }) => [jti, { err: 'invalid_request', description: error.slice(0, 200) }]))
      for (const event of result.events) {
        try {
          await handle(event)
        } catch (error) {
          if (ack.length > 0 || Object.keys(setErrs).length > 0) await poll({ ack, setErrs, maxEvents: 0 })
          throw error
        }
        ack.push(event.jti)
        handled += 1
      }
      if (result.events.length === 0 && result.invalid.length === 0 && !result.moreAvailable) return handled
      if (!result.moreAvailable && ack.length === 0 && Object.keys(setErrs).length === 0) return handled
    }
  }

  return { poll, drain }
}
