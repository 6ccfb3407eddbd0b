import { randomUUID } from 'node:crypto'
import type { Context, Next } from 'koa'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/

/** The routes of the WeChat simulator (development only), whose requests are minigate talking to itself. */
const SIMULATOR_ROUTES = '/_dev/wechat/'

/** The logger of a request: every line carries its `req_id`. Set by `requestLog`; the app's logger elsewhere. */
export function requestLogger(ctx: Context, fallback: Logger): Logger {
  return (ctx.state.log as Logger | undefined) ?? fallback
}

/**
 * Gives each request an id (a well-formed `X-Request-Id` from the caller, or a new one) and a child
 * logger carrying it (`ctx.state.log`, for every event line of the request), logs one line per request
 * and observes it in the request histogram. Neither the query string nor the raw path is logged or
 * used as a label: a client may wrongly put a token there.
 */
export function requestLog(log: Logger, metrics?: Metrics) {
  const requests = metrics?.httpRequests
  return async function requestLogMiddleware(ctx: Context, next: Next) {
    const started = performance.now()
    const incoming = ctx.get('X-Request-Id')
    const requestId = REQUEST_ID.test(incoming) ? incoming : randomUUID()
    const logger = log.child({ req_id: requestId })
    ctx.state.requestId = requestId
    ctx.state.log = logger
    ctx.set('X-Request-Id', requestId)
    try {
      await next()
    } finally {
      // The matched route pattern, never the raw path: a client may put a token in the path as well.
      const matched = (ctx as { _matchedRoute?: unknown })._matchedRoute
      const route = typeof matched === 'string' ? matched : '(unmatched)'
      const ms = performance.now() - started
      // The simulator's requests are minigate's own WeChat calls in development: marked apart from clients'.
      if (route.startsWith(SIMULATOR_ROUTES)) logger.info({ simulator: true, method: ctx.method, route, status: ctx.status, ms: Math.round(ms) }, 'simulator request (development WeChat)')
      else logger.info({ method: ctx.method, route, status: ctx.status, ms: Math.round(ms) }, 'request')
      requests?.observe({ method: ctx.method, route, status: ctx.status }, ms / 1000)
    }
  }
}
