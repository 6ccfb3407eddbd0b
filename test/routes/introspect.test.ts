import { decodeJwt } from 'jose'
import t, { type Test } from 'tap'
import { startTestApp, type TestApp } from '../helpers/app.js'

const DEV_APPID = 'wx0000000000000dev'

type Body = Record<string, any>

function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`
}

const DEV_SERVICE = basic('dev-service', 'dev-service-secret')

function introspect(app: TestApp, params: Record<string, string>, authorization?: string): Promise<Response> {
  return app.postForm('/introspect', params, authorization === undefined ? {} : { authorization })
}

async function body(response: Response): Promise<Body> {
  return (await response.json()) as Body
}

async function unauthorized(t: Test, response: Response, what: string): Promise<void> {
  t.equal(response.status, 401, `${what}: 401`)
  t.match(response.headers.get('www-authenticate'), /^Basic/, `${what}: Basic challenge`)
  const payload = await body(response)
  t.equal(payload.error, 'invalid_client', `${what}: invalid_client`)
  t.notOk('active' in payload, `${what}: says nothing about the token`)
}

t.test('callers must authenticate as a registered service', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oIntroAuth' })
  const params = { token: login.access_token }
  await unauthorized(t, await introspect(app, params), 'no Authorization')
  await unauthorized(t, await introspect(app, params, basic('dev-service', 'wrong-secret-wrong')), 'wrong secret')
  await unauthorized(t, await introspect(app, params, basic('other-service', 'dev-service-secret')), 'unknown service')
  await unauthorized(t, await introspect(app, params, 'Basic !!!not-base64!!!'), 'not base64')
  await unauthorized(t, await introspect(app, params, `Basic ${Buffer.from('dev-service').toString('base64')}`), 'no colon')
  await unauthorized(t, await introspect(app, params, 'Basic'), 'empty Basic')
  await unauthorized(t, await introspect(app, params, `Bearer ${login.access_token}`), 'a Bearer token')
  await unauthorized(t, await introspect(app, params, basic('dev-service', '')), 'empty secret')
  const ok = await introspect(app, params, DEV_SERVICE)
  t.equal(ok.status, 200)
  t.equal(ok.headers.get('cache-control'), 'no-store')
  t.equal((await body(ok)).active, true)

  const get = await fetch(`${app.url}/introspect`, { headers: { authorization: DEV_SERVICE } })
  t.equal(get.status, 405, 'POST only')
  t.match(get.headers.get('allow'), /POST/)
  const json = await app.postJson('/introspect', params, { authorization: DEV_SERVICE })
  t.equal(json.status, 200, 'a JSON body is accepted too')
  t.equal((await body(json)).active, true)
})

t.test('an active access token is described with its claims, openid and unionid', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oIntroActive', unionid: 'uIntroActive', scope: 'openid profile' })
  const claims = decodeJwt(login.access_token)
  const response = await introspect(app, { token: login.access_token }, DEV_SERVICE)
  t.equal(response.status, 200)
  const payload = await body(response)
  t.same(Object.keys(payload).sort(), ['active', 'aud', 'client_id', 'exp', 'iat', 'iss', 'jti', 'openid', 'scope', 'sid', 'sub', 'token_type', 'unionid'])
  t.same(payload, {
    active: true,
    token_type: 'Bearer',
    scope: 'openid profile',
    client_id: DEV_APPID,
    sub: claims.sub,
    iss: app.url,
    aud: ['minigate-api', `${app.url}/account`],
    iat: claims.iat,
    exp: claims.exp,
    jti: claims.jti,
    sid: claims.sid,
    openid: 'oIntroActive',
    unionid: 'uIntroActive',
  })
})

t.test('no unionid when the login had none', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oIntroNoUnion' })
  const payload = await body(await introspect(app, { token: login.access_token }, DEV_SERVICE))
  t.equal(payload.active, true)
  t.equal(payload.openid, 'oIntroNoUnion')
  t.equal(payload.scope, 'profile')
  t.notOk('unionid' in payload)
  t.same(Object.keys(payload).sort(), ['active', 'aud', 'client_id', 'exp', 'iat', 'iss', 'jti', 'openid', 'scope', 'sid', 'sub', 'token_type'])
})

t.test('a refresh token is never active to a service, whatever the hint', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oIntroRefresh', scope: 'profile phone' })
  for (const hint of [undefined, 'refresh_token', 'access_token', 'nonsense']) {
    const params: Record<string, string> = { token: login.refresh_token }
    if (hint) params.token_type_hint = hint
    const response = await introspect(app, params, DEV_SERVICE)
    t.equal(response.status, 200, `hint ${hint ?? 'none'}: 200`)
    t.same(await body(response), { active: false }, `hint ${hint ?? 'none'}: {"active":false}`)
  }
  // It is live all the same: the refresh grant takes it.
  const refreshed = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: login.refresh_token })
  t.equal(refreshed.status, 200, 'the refresh token still works at /token')
  const access = await body(await introspect(app, { token: login.access_token, token_type_hint: 'refresh_token' }, DEV_SERVICE))
  t.match(access, { active: true, token_type: 'Bearer' }, 'an access token with a refresh_token hint is still described')
})

t.test('inactive tokens yield exactly {active:false}', async (t) => {
  const app = await startTestApp(t, { MINIGATE_ACCESS_TTL: '60', MINIGATE_REFRESH_TTL: '3600' })
  const inactive = async (token: string, what: string) => {
    const response = await introspect(app, { token }, DEV_SERVICE)
    t.equal(response.status, 200, `${what}: 200`)
    t.same(await body(response), { active: false }, `${what}: {active:false}`)
  }

  const spent = await app.login({ openid: 'oIntroSpent' })
  const refreshed = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: spent.refresh_token })
  t.equal(refreshed.status, 200)
  await inactive(spent.refresh_token, 'a spent refresh token')

  const revoked = await app.login({ openid: 'oIntroRevoked' })
  t.equal((await app.postForm('/revoke', { token: revoked.access_token })).status, 200)
  await inactive(revoked.access_token, 'a revoked access token')
  t.equal((await app.postForm('/revoke', { token: revoked.refresh_token })).status, 200)
  await inactive(revoked.refresh_token, 'a revoked refresh token')

  await inactive('garbage', 'garbage')
  await inactive('a.b.c', 'three junk segments')
  const withId = await app.login({ openid: 'oIntroId', scope: 'openid' })
  await inactive(withId.id_token, 'an id token')

  const expiring = await app.login({ openid: 'oIntroExpired' })
  const exp = decodeJwt(expiring.access_token).exp as number
  app.clock.advance(exp - Math.floor(app.clock.now() / 1000))
  await inactive(expiring.access_token, 'an access token at its exp')
  app.clock.advance(1)
  await inactive(expiring.access_token, 'an expired access token')

  const missing = await introspect(app, {}, DEV_SERVICE)
  t.equal(missing.status, 400)
  t.equal((await body(missing)).error, 'invalid_request')
})

t.test('a disabled user makes its tokens inactive', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oIntroDisabled' })
  const sub = decodeJwt(login.access_token).sub as string
  await app.deps.db.updateTable('users').set({ disabled_at: Math.floor(app.clock.now() / 1000) }).where('id', '=', sub).execute()
  t.same(await body(await introspect(app, { token: login.access_token }, DEV_SERVICE)), { active: false })
  t.same(await body(await introspect(app, { token: login.refresh_token }, DEV_SERVICE)), { active: false })
})

t.test('configured services replace the development service', async (t) => {
  const app = await startTestApp(t, { MINIGATE_SERVICES: 'billing:billing-secret-123456' })
  const login = await app.login({ openid: 'oIntroBilling' })
  const ok = await introspect(app, { token: login.access_token }, basic('billing', 'billing-secret-123456'))
  t.equal(ok.status, 200)
  t.equal((await body(ok)).active, true)
  await unauthorized(t, await introspect(app, { token: login.access_token }, DEV_SERVICE), 'dev-service')
})

t.test('credentials are form-encoded before base64 (RFC 6749 §2.3.1)', async (t) => {
  const secret = 'p@ss:word/with+chars'
  const app = await startTestApp(t, { MINIGATE_SERVICES: `svc:${secret}` })
  const login = await app.login({ openid: 'oIntroEncoded' })
  const encoded = basic(encodeURIComponent('svc'), encodeURIComponent(secret))
  const ok = await introspect(app, { token: login.access_token }, encoded)
  t.equal(ok.status, 200, 'form-encoded secret works')
  t.equal((await body(ok)).active, true)
  // Unencoded, the '+' reads as a space: a different secret.
  await unauthorized(t, await introspect(app, { token: login.access_token }, basic('svc', secret)), 'secret not form-encoded')
})
