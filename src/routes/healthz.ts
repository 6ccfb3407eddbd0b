import type Router from '@koa/router'
import { ping } from '../db/connection.js'
import type { AppDeps } from '../deps.js'
import { requestLogger } from '../http/request-log.js'
import { safeError } from '../log.js'

/**
 * `GET /healthz` (liveness): 200 when the database answers (and can be written durably) and a signing
 * key is loaded, else 503. It stays 200 while the server drains on shutdown; `/readyz` is the check that
 * turns 503 then.
 */
export function mountHealthz(router: Router, deps: AppDeps): void {
  router.get('/healthz', async function healthz(ctx) {
    ctx.set('Cache-Control', 'no-store')
    try {
      await ping(deps.db)
      if (deps.lifecycle.storageFailed) throw new Error('the database WAL could not be synced to disk')
      deps.keys.active()
      ctx.body = { status: 'ok' }
    } catch (error) {
      requestLogger(ctx, deps.log).error({ err: safeError(error) }, 'health check failed')
      ctx.status = 503
      ctx.body = { status: 'unavailable' }
    }
  })
}
