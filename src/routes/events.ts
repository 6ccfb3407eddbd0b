import type Router from '@koa/router'
import type { Context } from 'koa'
import { epochSeconds } from '../clock.js'
import type { Service } from '../config.js'
import { acknowledge, dueEvents, markDelivered, settleCursor } from '../db/security-events.js'
import type { AppDeps } from '../deps.js'
import { InvalidRequest } from '../errors.js'
import { signSet } from '../events/sets.js'
import { parseJsonObject } from '../http/body.js'
import { noStore } from '../http/no-store.js'
import { requireService } from '../http/service-auth.js'

/** Most SETs one poll returns, and the default when the request names no `maxEvents`. */
export const MAX_EVENTS = 100
const DEFAULT_EVENTS = 20
/** Most acknowledgements one poll may carry. */
const MAX_ACKS = 1000
const JTI = /^[A-Za-z0-9_-]{1,64}$/

interface PollRequest {
  ack: string[]
  setErrs: Record<string, string>
  maxEvents: number
}

function jtiList(value: unknown, name: string): string[] {
  if (value === undefined) return []
  if (!Array.isArray(value) || value.length > MAX_ACKS || !value.every((item) => typeof item === 'string' && JTI.test(item))) {
    throw new InvalidRequest(`${name} must be an array of at most ${MAX_ACKS} SET jti strings`)
  }
  return value as string[]
}

/** RFC 8936 §2.4 poll request members; anything malformed is `invalid_request`. */
function pollRequest(body: Record<string, unknown>): PollRequest {
  const ack = jtiList(body.ack, 'ack')
  const setErrs: Record<string, string> = {}
  if (body.setErrs !== undefined) {
    const errs = body.setErrs
    if (typeof errs !== 'object' || errs === null || Array.isArray(errs) || Object.keys(errs).length > MAX_ACKS) throw new InvalidRequest('setErrs must be an object of SET jti to {err, description}')
    for (const [jti, error] of Object.entries(errs)) {
      const { err, description } = (error ?? {}) as { err?: unknown; description?: unknown }
      if (!JTI.test(jti) || typeof err !== 'string' || err.length > 64 || (description !== undefined && (typeof description !== 'string' || description.length > 512))) {
        throw new InvalidRequest('setErrs must be an object of SET jti to {err, description}')
      }
      setErrs[jti] = JSON.stringify({ err, ...(description !== undefined ? { description } : {}) })
    }
  }
  let maxEvents = DEFAULT_EVENTS
  if (body.maxEvents !== undefined) {
    if (!Number.isSafeInteger(body.maxEvents) || (body.maxEvents as number) < 0) throw new InvalidRequest('maxEvents must be a whole number, 0 or more')
    maxEvents = Math.min(body.maxEvents as number, MAX_EVENTS)
  }
  if (body.returnImmediately !== undefined && typeof body.returnImmediately !== 'boolean') throw new InvalidRequest('returnImmediately must be true or false')
  return { ack, setErrs, maxEvents }
}

/**
 * `POST /events`: Security Event Token delivery by polling (RFC 8936), for registered services
 * (HTTP Basic, like introspection). The body acknowledges SETs received before (`ack`, `setErrs`) and
 * asks for up to `maxEvents` more; the answer is `{sets: {jti: SET}, moreAvailable}`. Each service has
 * its own delivery state; an event delivered and not acknowledged is delivered again after
 * `MINIGATE_EVENT_REDELIVERY_SECONDS`, so delivery is at least once, across restarts (it is all in the
 * database). minigate always answers at once (`returnImmediately` is accepted, long polling is not done).
 */
export function mountEvents(router: Router, deps: AppDeps): void {
  router.post('/events', noStore, requireService(deps.config.services), parseJsonObject(), async function pollSecurityEvents(ctx: Context) {
    const service: Service = ctx.state.service
    const request = pollRequest(ctx.state.json)
    const now = epochSeconds(deps.clock)
    const acked = [...new Set([...request.ack, ...Object.keys(request.setErrs)])]
    const floor = await deps.transaction(async (trx) => {
      if (acked.length > 0) await acknowledge(trx, service.id, acked, request.setErrs, now)
      return settleCursor(trx, service.id)
    })
    const due = await dueEvents(deps.db, service.id, floor, now, request.maxEvents + 1)
    const batch = due.slice(0, request.maxEvents)
    if (batch.length > 0) {
      await deps.transaction((trx) => markDelivered(trx, service.id, batch.map((event) => event.id), now + deps.config.eventRedeliverySeconds))
    }
    const sets: Record<string, string> = {}
    for (const event of batch) sets[event.jti] = await signSet(deps, event, service.id)
    if (batch.length > 0 || acked.length > 0) deps.log.info({ event: 'sets_polled', service: service.id, delivered: batch.length, acknowledged: acked.length }, 'security events polled')
    ctx.body = { sets, moreAvailable: due.length > batch.length }
  })
}
