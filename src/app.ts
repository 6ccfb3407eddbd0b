import Router from '@koa/router'
import Koa, { type Context, type Next } from 'koa'
import type { AppDeps } from './deps.js'
import { MethodNotAllowed, NotFound } from './errors.js'
import { renderErrors } from './http/error-handler.js'
import { requestLog } from './http/request-log.js'
import { isClientConnectionError, safeError } from './log.js'
import { mountAccountDelete } from './routes/account-delete.js'
import { mountAccountExport } from './routes/account-export.js'
import { mountAvatar } from './routes/avatar.js'
import { mountDiscovery } from './routes/discovery.js'
import { mountEvents } from './routes/events.js'
import { mountHealthz } from './routes/healthz.js'
import { mountIntrospect } from './routes/introspect.js'
import { mountJwks } from './routes/jwks.js'
import { mountLogout } from './routes/logout.js'
import { mountMetrics, serveMetrics } from './routes/metrics.js'
import { mountOpenApi } from './routes/openapi.js'
import { mountReadyz } from './routes/readyz.js'
import { mountRevoke } from './routes/revoke.js'
import { mountToken } from './routes/token.js'
import { mountUserinfo } from './routes/userinfo.js'
import { mountWeChatDecrypt } from './routes/wechat-decrypt.js'
import { mountWeChatPhone } from './routes/wechat-phone.js'

export type { AppDeps }

/** Turns the router's bare 404/405/501 answers into OAuth-style error bodies (keeping `Allow`). */
async function unmatchedAsErrors(ctx: Context, next: Next) {
  await next()
  if (ctx.status === 405 || ctx.status === 501) {
    throw new MethodNotAllowed(`${ctx.method} is not allowed here`, ctx.response.get('Allow').split(', ').filter(Boolean))
  }
  if (ctx.status === 404 && ctx.body === undefined) throw new NotFound('no such endpoint')
}

/** Every endpoint of minigate (and the simulator's, when it is on). Discovery lists them; a test checks it does. */
export function createRouter(deps: AppDeps): Router {
  const router = new Router()
  mountDiscovery(router, deps)
  mountJwks(router, deps)
  mountToken(router, deps)
  mountRevoke(router, deps)
  mountIntrospect(router, deps)
  mountUserinfo(router, deps)
  mountLogout(router, deps)
  mountAvatar(router, deps)
  mountWeChatPhone(router, deps)
  mountWeChatDecrypt(router, deps)
  mountAccountExport(router, deps)
  mountAccountDelete(router, deps)
  mountEvents(router, deps)
  mountHealthz(router, deps)
  mountReadyz(router, deps)
  mountOpenApi(router, deps)
  mountMetrics(router, deps)
  if (deps.simulator) router.use('/_dev/wechat', deps.simulator.router.routes(), deps.simulator.router.allowedMethods())
  return router
}

/**
 * Builds the minigate HTTP application from explicit dependencies; it reads no environment and holds
 * no global state, so tests build as many as they like.
 *
 * @example http.createServer(createApp(await buildDeps(config, { clock: systemClock, log })).callback())
 */
export function createApp(deps: AppDeps): Koa {
  const app = new Koa({ proxy: deps.config.trustProxy > 0, maxIpsCount: deps.config.trustProxy })
  app.silent = true
  app.on('error', (error: unknown) => {
    if (isClientConnectionError(error)) deps.log.debug({ err: safeError(error) }, 'client connection error')
    else deps.log.error({ err: safeError(error) }, 'error outside the request pipeline')
  })

  const router = createRouter(deps)
  app.use(requestLog(deps.log, deps.metrics))
  app.use(renderErrors(deps.log))
  app.use(unmatchedAsErrors)
  app.use(router.routes())
  app.use(router.allowedMethods())
  return app
}

/**
 * The app of the metrics listener (`MINIGATE_METRICS_PORT`): `/metrics` without a token (the port is
 * kept off the public network), `/healthz` and `/readyz`, nothing else. Its requests are not logged: a
 * scraper calls every few seconds.
 *
 * @example http.createServer(createMetricsApp(deps).callback()).listen(9464, '127.0.0.1')
 */
export function createMetricsApp(deps: AppDeps): Koa {
  const app = new Koa()
  app.silent = true
  app.on('error', (error: unknown) => {
    if (!isClientConnectionError(error)) deps.log.error({ err: safeError(error) }, 'error outside the metrics pipeline')
  })
  const router = new Router()
  router.get('/metrics', (ctx) => serveMetrics(ctx, deps.metrics))
  mountHealthz(router, deps)
  mountReadyz(router, deps)
  app.use(renderErrors(deps.log))
  app.use(unmatchedAsErrors)
  app.use(router.routes())
  app.use(router.allowedMethods())
  return app
}
