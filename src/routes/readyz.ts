import type Router from '@koa/router'
import { ping } from '../db/connection.js'
import type { AppDeps } from '../deps.js'
import { requestLogger } from '../http/request-log.js'
import { safeError } from '../log.js'

/**
 * `GET /readyz`: 200 `{status: "ready"}` when the database answers (and can be written durably), a
 * signing key is loaded and the server is not shutting down; else 503 `{status: "not_ready", failed:
 * [...]}` naming the checks that failed. A load balancer stops sending traffic on 503; `/healthz`
 * (liveness) stays 200 while draining.
 */
export function mountReadyz(router: Router, deps: AppDeps): void {
  router.get('/readyz', async function readyz(ctx) {
    ctx.set('Cache-Control', 'no-store')
    const failed: string[] = []
    if (deps.lifecycle.draining) failed.push('shutting_down')
    try {
      await ping(deps.db)
      if (deps.lifecycle.storageFailed) throw new Error('the database WAL could not be synced to disk')
    } catch (error) {
      requestLogger(ctx, deps.log).error({ err: safeError(error) }, 'readiness check: the database does not answer, or cannot be written durably')
      failed.push('database')
    }
    try {
      deps.keys.active()
    } catch (error) {
      requestLogger(ctx, deps.log).error({ err: safeError(error) }, 'readiness check: no signing key is active')
      failed.push('signing_key')
    }
    if (failed.length === 0) {
      ctx.body = { status: 'ready' }
      return
    }
    ctx.status = 503
    ctx.body = { status: 'not_ready', failed }
  })
}
