import { randomUUID } from 'node:crypto'
import type { Context, Next } from 'koa'
import type { Logger } from '../log.js'

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/

/**
 * Gives each request an id (a well-formed `X-Request-Id` from the caller, or a new one) and logs one line
 * per request. Neither the query string nor the raw path is logged: a client may wrongly put a token there.
 */
export function requestLog(log: Logger) {
  return async function requestLogMiddleware(ctx: Context, next: Next) {
    const started = performance.now()
    const incoming = ctx.get('X-Request-Id')
    const requestId = REQUEST_ID.test(incoming) ? incoming : randomUUID()
    ctx.state.requestId = requestId
    ctx.set('X-Request-Id', requestId)
    try {
      await next()
    } finally {
      // The matched route pattern, never the raw path: a client may put a token in the path as well.
      const route = (ctx as { _matchedRoute?: unknown })._matchedRoute
      log.info({ req_id: requestId, method: ctx.method, route: typeof route === 'string' ? route : '(unmatched)', status: ctx.status, ms: Math.round(performance.now() - started) }, 'request')
    }
  }
}
