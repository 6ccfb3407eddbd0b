import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import Koa from 'koa'
import t, { type Test } from 'tap'
import { parseServices } from '../../src/config.js'
import { renderErrors } from '../../src/http/error-handler.js'
import { requireService } from '../../src/http/service-auth.js'
import { createLogger } from '../../src/log.js'
import { startTestApp } from '../helpers/app.js'

type Body = Record<string, any>

const SERVICES = 'billing:billing-secret-123456,svc:a:b:colon-secret-xyz'

/** A bare Koa app behind requireService that echoes the authenticated service id. */
async function guarded(t: Test, services = parseServices(SERVICES)): Promise<{ url: string; calls: () => number }> {
  const app = new Koa()
  app.silent = true
  let calls = 0
  app.use(renderErrors(createLogger({ level: 'silent', destination: new Writable({ write: (_c, _e, cb) => cb() }) })))
  app.use(requireService(services))
  app.use((ctx) => {
    calls++
    ctx.body = { service: ctx.state.service.id }
  })
  const server = createServer(app.callback())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, calls: () => calls }
}

function b64(raw: string): string {
  return Buffer.from(raw).toString('base64')
}

async function call(url: string, authorization?: string): Promise<{ status: number; body: Body; challenge: string | null }> {
  const response = await fetch(url, authorization === undefined ? {} : { headers: { authorization } })
  return { status: response.status, body: (await response.json()) as Body, challenge: response.headers.get('www-authenticate') }
}

t.test('accepted credentials', async (t) => {
  const { url } = await guarded(t)
  for (const [what, header] of [
    ['canonical scheme', `Basic ${b64('billing:billing-secret-123456')}`],
    ['lowercase scheme', `basic ${b64('billing:billing-secret-123456')}`],
    ['uppercase scheme', `BASIC ${b64('billing:billing-secret-123456')}`],
    ['several spaces', `Basic   ${b64('billing:billing-secret-123456')}`],
    ['percent-encoded id', `Basic ${b64('%62illing:billing-secret-123456')}`],
  ] as const) {
    const result = await call(url, header)
    t.equal(result.status, 200, what)
    t.same(result.body, { service: 'billing' }, `${what}: the service reaches the handler`)
  }
  const colon = await call(url, `Basic ${b64('svc:a:b:colon-secret-xyz')}`)
  t.same(colon.body, { service: 'svc' }, 'the id ends at the first colon; the secret may hold colons')
  const encodedColon = await call(url, `Basic ${b64(`svc:${encodeURIComponent('a:b:colon-secret-xyz')}`)}`)
  t.same(encodedColon.body, { service: 'svc' }, 'the same secret form-encoded')
})

t.test('refused credentials are 401 invalid_client with a Basic challenge and never reach the handler', async (t) => {
  const { url, calls } = await guarded(t)
  for (const [what, header] of [
    ['no header', undefined],
    ['empty header', ''],
    ['Bearer scheme', 'Bearer abc'],
    ['scheme only', 'Basic'],
    ['not base64', 'Basic ***'],
    ['no colon', `Basic ${b64('billing')}`],
    ['bad percent-encoding in the id', `Basic ${b64('bill%zzing:billing-secret-123456')}`],
    ['truncated percent-encoding in the id', `Basic ${b64('billing%E0%A4%A:billing-secret-123456')}`],
    ['bad percent-encoding in the secret', `Basic ${b64('billing:billing-secret-123456%')}`],
    ['wrong secret', `Basic ${b64('billing:billing-secret-654321')}`],
    ['secret of another service', `Basic ${b64('billing:a:b:colon-secret-xyz')}`],
    ['unknown service', `Basic ${b64('nobody:billing-secret-123456')}`],
    ['empty id', `Basic ${b64(':billing-secret-123456')}`],
    ['empty secret', `Basic ${b64('billing:')}`],
    ['id differs in case', `Basic ${b64('Billing:billing-secret-123456')}`],
    ['trailing junk after the credentials', `Basic ${b64('billing:billing-secret-123456')} extra`],
  ] as const) {
    const result = await call(url, header)
    t.equal(result.status, 401, `${what}: 401`)
    t.equal(result.body.error, 'invalid_client', `${what}: invalid_client`)
    t.match(result.challenge, /^Basic realm="minigate"/, `${what}: Basic challenge`)
  }
  t.equal(calls(), 0, 'the handler never ran')
})

t.test('with no services configured nobody may introspect', async (t) => {
  const { url } = await guarded(t, [])
  t.equal((await call(url, `Basic ${b64('billing:billing-secret-123456')}`)).status, 401)

  const app = await startTestApp(t, { WECHAT_APPS: 'wxaaaaaaaaaaaaaaaa:secret-a', MINIGATE_WECHAT_SIMULATOR: '1' })
  t.same(app.config.services, [], 'production-style config without MINIGATE_SERVICES has no services')
  const login = await app.login({ appid: 'wxaaaaaaaaaaaaaaaa', openid: 'oNoServices' })
  const response = await app.postForm('/introspect', { token: login.access_token }, { authorization: `Basic ${b64('dev-service:dev-service-secret')}` })
  t.equal(response.status, 401, 'the development service does not exist outside development mode')
})

t.test('through /introspect: lowercase scheme works, bad percent-encoding is refused', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oServiceAuth' })
  const lower = await app.postForm('/introspect', { token: login.access_token }, { authorization: `basic ${b64('dev-service:dev-service-secret')}` })
  t.equal(lower.status, 200)
  t.equal(((await lower.json()) as Body).active, true)
  const bad = await app.postForm('/introspect', { token: login.access_token }, { authorization: `Basic ${b64('dev-%service:dev-service-secret')}` })
  t.equal(bad.status, 401)
  t.equal(((await bad.json()) as Body).error, 'invalid_client')
})
