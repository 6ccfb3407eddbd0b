import { createHash, timingSafeEqual } from 'node:crypto'
import type Router from '@koa/router'
import type { Context } from 'koa'
import type { AppDeps } from '../deps.js'
import { BearerRequired, InvalidToken } from '../errors.js'
import type { Metrics } from '../metrics.js'

/** Answers a scrape: every metric of the app, in Prometheus text format. */
export async function serveMetrics(ctx: Context, metrics: Metrics): Promise<void> {
  ctx.set('Cache-Control', 'no-store')
  ctx.type = metrics.registry.contentType
  ctx.body = await metrics.registry.metrics()
}

/** Whether an Authorization header carries the metrics token, compared in constant time (by SHA-256). */
function carriesToken(header: string, tokenHash: string): boolean {
  const match = /^Bearer +(\S+) *$/i.exec(header)
  if (!match) return false
  const presented = createHash('sha256').update(match[1] as string).digest()
  return timingSafeEqual(presented, Buffer.from(tokenHash, 'base64url'))
}

/**
 * `GET /metrics` on the main port, only when `MINIGATE_METRICS_TOKEN` is set, and only with that Bearer
 * token: metrics tell an attacker too much (traffic, failures, key schedule) to be public. Without the
 * token the path does not exist (404); `MINIGATE_METRICS_PORT` serves it on a listener of its own.
 */
export function mountMetrics(router: Router, deps: AppDeps): void {
  const tokenHash = deps.config.metricsTokenHash
  if (tokenHash === null) return
  router.get('/metrics', async function metricsEndpoint(ctx) {
    const header = ctx.get('Authorization')
    if (header === '') throw new BearerRequired('the metrics token is required')
    if (!carriesToken(header, tokenHash)) throw new InvalidToken('not the metrics token')
    await serveMetrics(ctx, deps.metrics)
  })
}
