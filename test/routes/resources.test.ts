import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose'
import t from 'tap'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { oauthError } from '../helpers/assert.js'
import { bearer, DEV_SERVICE } from '../helpers/lifecycle.js'

const ORDERS = 'https://orders.example.com'
const PAY = 'https://pay.example.com/api'

/** What a service does: verify offline against the JWKS for its own audience. */
async function serviceAccepts(app: TestApp, token: string, audience: string): Promise<boolean> {
  const jwks = createLocalJWKSet((await (await fetch(`${app.url}/.well-known/jwks.json`)).json()) as JSONWebKeySet)
  try {
    await jwtVerify(token, jwks, { issuer: app.url, audience, algorithms: ['RS256'], typ: 'at+jwt', currentDate: new Date(app.clock.now()) })
    return true
  } catch {
    return false
  }
}

t.test('resource indicators: a token for one service is refused by the others and by the account endpoints', async (t) => {
  const app = await startTestApp(t, { MINIGATE_RESOURCES: `${ORDERS},${PAY}` })
  const account = `${app.url}/account`
  const metadata = (await (await fetch(`${app.url}/.well-known/openid-configuration`)).json()) as Record<string, unknown>
  t.same(metadata.resources_supported, [ORDERS, PAY])
  t.equal(metadata.account_audience, account)

  const plain = await app.login({ openid: 'oResource', scope: 'profile' })
  t.same(decodeJwt(plain.access_token).aud, ['minigate-api', account], 'the default token: the services of MINIGATE_AUDIENCE and the account endpoints')
  t.equal((await bearer(app, '/userinfo', plain.access_token)).status, 200)
  t.ok(await serviceAccepts(app, plain.access_token, 'minigate-api'))

  const orders = await app.login({ openid: 'oResource', scope: 'profile', resource: ORDERS })
  t.equal(decodeJwt(orders.access_token).aud, ORDERS, 'a resource-bound token carries its resource only')
  t.ok(await serviceAccepts(app, orders.access_token, ORDERS), 'the orders service accepts it')
  t.notOk(await serviceAccepts(app, orders.access_token, PAY), 'the pay service refuses it')
  t.notOk(await serviceAccepts(app, orders.access_token, 'minigate-api'), 'so does a service of the default audience')
  for (const [method, path, json] of [
    ['GET', '/userinfo', undefined],
    ['POST', '/userinfo/profile', { nickname: 'x' }],
    ['GET', '/account/export', undefined],
    ['DELETE', '/wechat/phone', undefined],
    ['POST', '/account/delete', { code: 'abc' }],
    ['POST', '/logout', undefined],
  ] as const) {
    const response = await bearer(app, path, orders.access_token, { method, ...(json ? { json } : {}) })
    const error = await oauthError(t, response, 401, 'invalid_token')
    t.match(error.error_description, /audience/, `${method} ${path} refuses a token for ${ORDERS}`)
    t.match(response.headers.get('www-authenticate'), /error="invalid_token"/)
  }
  const introspected = (await (await app.postForm('/introspect', { token: orders.access_token }, { authorization: DEV_SERVICE })).json()) as Record<string, unknown>
  t.match(introspected, { active: true, aud: ORDERS }, 'introspection reports the actual audience')

  // A refresh may ask for another resource, or for the account endpoints alone.
  const refreshed = (await (await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: orders.refresh_token, resource: PAY })).json()) as Record<string, string>
  t.equal(decodeJwt(refreshed.access_token as string).aud, PAY)
  const accountOnly = (await (await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: refreshed.refresh_token as string, resource: account })).json()) as Record<string, string>
  t.equal(decodeJwt(accountOnly.access_token as string).aud, account)
  t.equal((await bearer(app, '/userinfo', accountOnly.access_token as string)).status, 200, "minigate's own audience opens the account endpoints")
  t.notOk(await serviceAccepts(app, accountOnly.access_token as string, 'minigate-api'), 'and no service')
  const back = (await (await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: accountOnly.refresh_token as string })).json()) as Record<string, string>
  t.same(decodeJwt(back.access_token as string).aud, ['minigate-api', account], 'no resource: the default audience again')

  // Unknown resources are invalid_target, before anything is spent.
  const code = await app.wxLogin({ openid: 'oResource' })
  await oauthError(t, await app.postForm('/token', { grant_type: 'urn:minigate:grant-type:wechat-code', code, resource: 'https://evil.example.com' }), 400, 'invalid_target')
  t.equal((await app.postForm('/token', { grant_type: 'urn:minigate:grant-type:wechat-code', code })).status, 200, 'the code was not spent')
  await oauthError(t, await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: back.refresh_token as string, resource: 'minigate-api' }), 400, 'invalid_target')
  t.equal((await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: back.refresh_token as string })).status, 200, 'the refresh token was not spent')
  await oauthError(t, await app.postForm('/token', new URLSearchParams([['grant_type', 'refresh_token'], ['refresh_token', 'x'], ['resource', ORDERS], ['resource', PAY]]) as unknown as Record<string, string>), 400, 'invalid_request')
})

t.test('MINIGATE_RESOURCES and MINIGATE_ACCOUNT_AUDIENCE are checked at start', async (t) => {
  const { loadConfig, ConfigError } = await import('../../src/config.js')
  const base = { MINIGATE_ISSUER: 'https://id.example.com' }
  t.same(loadConfig(base).resources, [])
  t.equal(loadConfig(base).accountAudience, 'https://id.example.com/account')
  t.equal(loadConfig({ ...base, MINIGATE_ACCOUNT_AUDIENCE: 'https://id.example.com/me' }).accountAudience, 'https://id.example.com/me')
  for (const [env, message] of [
    [{ MINIGATE_RESOURCES: 'orders' }, /MINIGATE_RESOURCES entry 1 must be an absolute/],
    [{ MINIGATE_RESOURCES: 'ftp://x.example.com' }, /without a fragment/],
    [{ MINIGATE_RESOURCES: 'https://x.example.com#f' }, /without a fragment/],
    [{ MINIGATE_RESOURCES: 'https://x.example.com,https://x.example.com' }, /twice/],
    [{ MINIGATE_RESOURCES: 'https://id.example.com' }, /must differ/],
    [{ MINIGATE_RESOURCES: 'https://id.example.com/account' }, /account audience/],
    [{ MINIGATE_ACCOUNT_AUDIENCE: 'minigate-api' }, /must differ/],
  ] as const) {
    t.throws(() => loadConfig({ ...base, ...env }), ConfigError)
    t.throws(() => loadConfig({ ...base, ...env }), { message })
  }
})
