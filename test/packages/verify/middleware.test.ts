import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import Router from '@koa/router'
import { createVerifier, requireScope, bearerToken, InvalidRequest, TokenRequired, InvalidToken } from '@minigate/verify'
import express from 'express'
import Koa from 'koa'
import t, { type Test } from 'tap'
import { startKitApp } from '../../helpers/kit.js'

// One minigate for the file; each framework gets a small service in front of it, as a newcomer would write it.
const app = await startKitApp(t)
const verifier = createVerifier({
  issuer: app.url,
  audience: 'minigate-api',
  introspection: { clientId: 'dev-service', clientSecret: 'dev-service-secret', cacheSeconds: 0 },
})

async function listen(t: Test, server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

function koaService(): Koa {
  const service = new Koa()
  service.silent = true // the misplaced requireScope below is a 500 on purpose
  const router = new Router()
  router.get('/orders', verifier.koa(), (ctx) => {
    ctx.body = { sub: ctx.state.auth.sub, client_id: ctx.state.auth.client_id }
  })
  router.post('/orders', verifier.koa(), requireScope('phone'), (ctx) => {
    ctx.status = 201
    ctx.body = { placed_by: ctx.state.auth.sub }
  })
  router.post('/pay', verifier.koa({ online: true }), (ctx) => {
    ctx.body = { paid_by: ctx.state.auth.sub }
  })
  router.get('/misplaced', requireScope('profile'), (ctx) => {
    ctx.body = 'unreachable'
  })
  service.use(router.routes())
  return service
}

function expressService(): express.Express {
  const service = express()
  service.get('/orders', verifier.express(), (req, res) => {
    res.json({ sub: req.auth?.sub, client_id: req.auth?.client_id })
  })
  service.post('/orders', verifier.express(), requireScope('phone'), (req, res) => {
    res.status(201).json({ placed_by: req.auth?.sub })
  })
  service.post('/pay', verifier.express({ online: true }), (req, res) => {
    res.json({ paid_by: req.auth?.sub })
  })
  service.get('/misplaced', requireScope('profile'), (_req, res) => {
    res.send('unreachable')
  })
  service.use((error: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(500).json({ error: 'server_error', message: error.message })
  })
  return service
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

async function json(response: Response): Promise<Record<string, any>> {
  return (await response.json()) as Record<string, any>
}

for (const [framework, build] of [
  ['Koa', () => createServer(koaService().callback())],
  ['Express', () => createServer(expressService())],
] as const) {
  t.test(`${framework}: the middleware protects routes`, async (t) => {
    const url = await listen(t, build())
    const phone = await app.login({ openid: `o${framework}Phone`, scope: 'profile phone' })
    const profileOnly = await app.login({ openid: `o${framework}Profile` })

    const ok = await fetch(`${url}/orders`, { headers: bearer(phone.access_token) })
    t.equal(ok.status, 200)
    t.same(await json(ok), { sub: JSON.parse(Buffer.from(phone.access_token.split('.')[1], 'base64url').toString()).sub, client_id: 'wx0000000000000dev' }, 'the claims reach the handler')

    const none = await fetch(`${url}/orders`)
    t.equal(none.status, 401, 'no token: 401')
    t.equal(none.headers.get('www-authenticate'), 'Bearer', 'with a bare challenge (RFC 6750 §3.1: no error code without credentials)')
    t.match(await json(none), { error: 'invalid_request' })

    const basic = await fetch(`${url}/orders`, { headers: { authorization: 'Basic ZGV2OmRldg==' } })
    t.equal(basic.status, 401, 'another scheme: 401')

    const forged = await fetch(`${url}/orders`, { headers: bearer(`${phone.access_token.slice(0, -4)}AAAA`) })
    t.equal(forged.status, 401, 'a bad token: 401')
    t.match(forged.headers.get('www-authenticate'), /^Bearer error="invalid_token", error_description="[^"]+"$/)
    t.equal(forged.headers.get('cache-control'), 'no-store')
    t.match(forged.headers.get('content-type'), /^application\/json/)
    const forgedBody = await json(forged)
    t.same(Object.keys(forgedBody).sort(), ['error', 'error_description'])
    t.equal(forgedBody.error, 'invalid_token')

    const malformed = await fetch(`${url}/orders`, { headers: { authorization: 'Bearer a b c' } })
    t.equal(malformed.status, 401)
    t.match(malformed.headers.get('www-authenticate'), /error="invalid_token"/)

    const refreshToken = await fetch(`${url}/orders`, { headers: bearer(phone.refresh_token) })
    t.equal(refreshToken.status, 401, 'a refresh token is not an access token')

    const inQuery = await fetch(`${url}/orders?access_token=${phone.access_token}`)
    t.equal(inQuery.status, 400, 'a token in the URL: 400, and never read')
    t.match(inQuery.headers.get('www-authenticate'), /error="invalid_request"/)
    t.equal((await json(inQuery)).error, 'invalid_request')
    const both = await fetch(`${url}/orders?access_token=x`, { headers: bearer(phone.access_token) })
    t.equal(both.status, 400, 'even beside a good Authorization header')

    const placed = await fetch(`${url}/orders`, { method: 'POST', headers: bearer(phone.access_token) })
    t.equal(placed.status, 201, 'requireScope: the scope is granted')
    const lacking = await fetch(`${url}/orders`, { method: 'POST', headers: bearer(profileOnly.access_token) })
    t.equal(lacking.status, 403, 'requireScope: 403 without it')
    t.equal(lacking.headers.get('www-authenticate'), 'Bearer error="insufficient_scope", scope="phone"')
    t.match(await json(lacking), { error: 'insufficient_scope', error_description: /phone/ })

    const paid = await fetch(`${url}/pay`, { method: 'POST', headers: bearer(phone.access_token) })
    t.equal(paid.status, 200, 'online: a live login pays')
    t.equal((await app.postForm('/revoke', { token: phone.refresh_token })).status, 200)
    const stillOffline = await fetch(`${url}/orders`, { headers: bearer(phone.access_token) })
    t.equal(stillOffline.status, 200, 'offline routes accept the revoked login until the token expires')
    const refusedOnline = await fetch(`${url}/pay`, { method: 'POST', headers: bearer(phone.access_token) })
    t.equal(refusedOnline.status, 401, 'the online route refuses the revoked login at once')
    t.match(refusedOnline.headers.get('www-authenticate'), /^Bearer error="invalid_token", error_description="the token has been revoked"$/)

    const misplaced = await fetch(`${url}/misplaced`, { headers: bearer(profileOnly.access_token) })
    t.equal(misplaced.status, 500, 'requireScope without the verifier before it is a programming error, not a pass')
  })
}

t.test('503 with a bland description when the issuer cannot be reached', async (t) => {
  const closed = createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`
  await new Promise<void>((resolve) => closed.close(() => resolve()))
  const down = createVerifier({ issuer, audience: 'minigate-api' })
  const token = (await app.login({ openid: 'oDown' })).access_token as string

  const koa = new Koa()
  koa.use(down.koa())
  const koaUrl = await listen(t, createServer(koa.callback()))
  const service = express()
  service.use(down.express())
  const expressUrl = await listen(t, createServer(service))
  for (const url of [koaUrl, expressUrl]) {
    const response = await fetch(url, { headers: bearer(token) })
    t.equal(response.status, 503)
    t.equal(response.headers.get('www-authenticate'), null, 'no challenge: the token was not judged')
    t.same(await json(response), { error: 'temporarily_unavailable', error_description: 'the access token could not be checked right now' })
  }
})

t.test('bearerToken reads the Authorization header only', async (t) => {
  t.equal(bearerToken({ authorization: 'Bearer abc.def.ghi' }, '/x'), 'abc.def.ghi')
  t.equal(bearerToken({ authorization: 'bearer   abc' }, '/x'), 'abc', 'the scheme is case-insensitive')
  t.throws(() => bearerToken({}, '/x'), TokenRequired)
  t.throws(() => bearerToken({ authorization: 'Bearer' }, '/x'), InvalidToken)
  t.throws(() => bearerToken({ authorization: 'Bearer abc' }, '/x?a=1&access_token=abc'), InvalidRequest)
  t.equal(bearerToken({ authorization: 'Bearer abc' }, '/x?not_access_token=1'), 'abc')
  t.throws(() => requireScope(), TypeError, 'requireScope needs a scope')
  t.throws(() => requireScope('two words'), TypeError)
})
