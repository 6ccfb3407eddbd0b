// "orders": a small business service that trusts minigate's access tokens.
//
//   GET  /orders           the caller's orders          verified offline (no call to minigate)
//   POST /orders           place an order               needs scope `phone` (a delivery needs a number)
//   POST /orders/:id/pay   pay for an order             online: a revoked login is refused at once
//
// Orders live in memory; the point is the three lines that protect the routes.
import { createServer } from 'node:http'
import Router from '@koa/router'
import { createVerifier, requireScope } from '@minigate/verify'
import Koa from 'koa'
import bodyParser from 'koa-bodyparser'

/**
 * Builds the orders service (a Koa app).
 *
 * @param {object} options
 * @param {string} options.issuer minigate's issuer URL
 * @param {string} [options.audience] the `aud` of access tokens (minigate's MINIGATE_AUDIENCE)
 * @param {{ clientId: string, clientSecret: string }} options.introspection this service's credentials at minigate (MINIGATE_SERVICES)
 */
export function createOrdersService({ issuer, audience = 'minigate-api', introspection }) {
  const verifier = createVerifier({ issuer, audience, introspection })
  /** @type {Map<string, Array<{ id: number, item: string, status: string }>>} */
  const ordersBySub = new Map()
  let nextId = 1
  function ordersOf(sub) {
    if (!ordersBySub.has(sub)) ordersBySub.set(sub, [])
    return ordersBySub.get(sub)
  }

  const router = new Router()
  router.get('/orders', verifier.koa(), (ctx) => {
    ctx.body = ordersOf(ctx.state.auth.sub)
  })

  router.post('/orders', verifier.koa(), requireScope('phone'), (ctx) => {
    const item = ctx.request.body?.item
    if (typeof item !== 'string' || item.trim() === '' || item.length > 100) {
      ctx.status = 400
      ctx.body = { error: 'invalid_request', error_description: 'send {"item": "..."}' }
      return
    }
    const order = { id: nextId++, item: item.trim(), status: 'placed' }
    ordersOf(ctx.state.auth.sub).push(order)
    ctx.status = 201
    ctx.body = order
  })

  // Money moves here: verify online, so a login revoked a second ago cannot pay with a token that is
  // still valid offline for up to 15 minutes.
  router.post('/orders/:id/pay', verifier.koa({ online: true }), (ctx) => {
    const order = ordersOf(ctx.state.auth.sub).find((candidate) => candidate.id === Number(ctx.params.id))
    if (!order) {
      ctx.status = 404
      ctx.body = { error: 'not_found', error_description: 'no such order' }
      return
    }
    order.status = 'paid'
    ctx.body = order
  })

  const app = new Koa()
  app.use(bodyParser({ enableTypes: ['json'] }))
  app.use(router.routes())
  app.use(router.allowedMethods())
  return app
}

/**
 * Starts the orders service on `port` (0: any free port) and resolves with its URL and a `close()`.
 *
 * @param {Parameters<typeof createOrdersService>[0] & { port?: number, host?: string }} options
 * @returns {Promise<{ url: string, close: () => Promise<void> }>}
 */
export async function startOrdersService({ port = 4000, host = '127.0.0.1', ...options }) {
  const server = createServer(createOrdersService(options).callback())
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, resolve)
  })
  const address = server.address()
  return {
    url: `http://${host}:${address.port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
