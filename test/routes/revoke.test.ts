import { decodeJwt } from 'jose'
import t, { type Test } from 'tap'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { oauthError } from '../helpers/assert.js'

const APP_A = 'wxaaaaaaaaaaaaaaaa'
const APP_B = 'wxbbbbbbbbbbbbbbbb'
const TWO_APPS = { WECHAT_APPS: `${APP_A}:secret-a,${APP_B}:secret-b`, MINIGATE_WECHAT_SIMULATOR: '1' }
const DEV_SERVICE = `Basic ${Buffer.from('dev-service:dev-service-secret').toString('base64')}`

type Body = Record<string, any>

function revoke(app: TestApp, params: Record<string, string>): Promise<Response> {
  return app.postForm('/revoke', params)
}

/** RFC 7009 §2.2: 200 with an empty body (the content of the body is ignored by the client). */
async function revoked(t: Test, response: Response, what: string): Promise<void> {
  t.equal(response.status, 200, `${what}: 200`)
  t.equal(await response.text(), '', `${what}: empty body`)
}

function refresh(app: TestApp, refreshToken: string, extra: Record<string, string> = {}): Promise<Response> {
  return app.postForm('/token', { grant_type: 'refresh_token', refresh_token: refreshToken, ...extra })
}

function userinfo(app: TestApp, accessToken: string): Promise<Response> {
  return fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${accessToken}` } })
}

async function introspect(app: TestApp, token: string): Promise<Body> {
  const response = await app.postForm('/introspect', { token }, { authorization: DEV_SERVICE })
  return (await response.json()) as Body
}

async function sessionOf(app: TestApp, token: string) {
  const sid = decodeJwt(token).sid as string
  return app.deps.db.selectFrom('login_sessions').selectAll().where('id', '=', sid).executeTakeFirstOrThrow()
}

t.test('revoking a refresh token ends its whole login', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oRevokeRefresh' })
  t.equal((await userinfo(app, login.access_token)).status, 200)
  const response = await revoke(app, { token: login.refresh_token })
  t.equal(response.headers.get('cache-control'), 'no-store')
  await revoked(t, response, 'refresh token')

  const refused = await refresh(app, login.refresh_token)
  t.equal(refused.status, 400)
  t.equal(((await refused.json()) as Body).error, 'invalid_grant')
  t.equal((await userinfo(app, login.access_token)).status, 401, 'the access token of that login is refused')
  t.same(await introspect(app, login.access_token), { active: false })
  t.same(await introspect(app, login.refresh_token), { active: false })

  const session = await sessionOf(app, login.access_token)
  t.type(session.revoked_at, 'number')
  t.equal(session.revoked_reason, 'revoked')
  const events = await app.deps.db.selectFrom('audit_events').selectAll().where('event', '=', 'revocation').execute()
  t.equal(events.length, 1, 'an audit row')
  t.match(events[0], { sub: decodeJwt(login.access_token).sub, sid: session.id, client_id: 'wx0000000000000dev' })
  t.notOk(JSON.stringify(events).includes(login.refresh_token), 'the audit row holds no token')
})

t.test('revoking an access token refuses it from then on, the refresh token still works', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oRevokeAccess' })
  await revoked(t, await revoke(app, { token: login.access_token, token_type_hint: 'access_token' }), 'access token')

  const info = await userinfo(app, login.access_token)
  t.equal(info.status, 401)
  t.equal(((await info.json()) as Body).error, 'invalid_token')
  t.same(await introspect(app, login.access_token), { active: false })
  const row = await app.deps.db
    .selectFrom('revoked_access_tokens')
    .selectAll()
    .where('jti', '=', decodeJwt(login.access_token).jti as string)
    .executeTakeFirstOrThrow()
  t.equal(row.expires_at, decodeJwt(login.access_token).exp, 'kept until the token expires')

  t.equal((await sessionOf(app, login.access_token)).revoked_at, null, 'the login is not ended')
  const next = await refresh(app, login.refresh_token)
  t.equal(next.status, 200, 'the refresh token still works')
  const body = (await next.json()) as Body
  t.equal((await userinfo(app, body.access_token)).status, 200, 'and its new access token works')
  const events = await app.deps.db.selectFrom('audit_events').selectAll().where('event', '=', 'revocation').execute()
  t.equal(events.length, 1)
  t.match(events[0]?.detail, /^access_token /)
})

t.test('unknown, garbage and expired tokens answer 200', async (t) => {
  const app = await startTestApp(t, { MINIGATE_ACCESS_TTL: '60', MINIGATE_REFRESH_TTL: '3600' })
  const login = await app.login({ openid: 'oRevokeJunk', scope: 'openid profile' })
  await revoked(t, await revoke(app, { token: 'garbage' }), 'garbage')
  await revoked(t, await revoke(app, { token: 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.' }), 'alg none')
  await revoked(t, await revoke(app, { token: 'x'.repeat(5000) }), 'huge')
  await revoked(t, await revoke(app, { token: login.id_token }), 'an id token (nothing to revoke)')

  app.clock.advance(3601)
  await revoked(t, await revoke(app, { token: login.access_token }), 'expired access token')
  await revoked(t, await revoke(app, { token: login.refresh_token }), 'expired refresh token')
  const events = await app.deps.db.selectFrom('audit_events').selectAll().where('event', '=', 'revocation').execute()
  t.equal(events.length, 0, 'nothing was revoked')
  t.equal((await sessionOf(app, login.access_token)).revoked_at, null)
})

t.test('token_type_hint is only a hint', async (t) => {
  const app = await startTestApp(t)
  const wrongHint = await app.login({ openid: 'oHintWrong' })
  await revoked(t, await revoke(app, { token: wrongHint.refresh_token, token_type_hint: 'access_token' }), 'wrong hint')
  t.equal((await refresh(app, wrongHint.refresh_token)).status, 400, 'still revoked')
  t.equal((await sessionOf(app, wrongHint.access_token)).revoked_reason, 'revoked')

  const unknownHint = await app.login({ openid: 'oHintFoo' })
  await revoked(t, await revoke(app, { token: unknownHint.refresh_token, token_type_hint: 'foo' }), 'unknown hint')
  t.equal((await refresh(app, unknownHint.refresh_token)).status, 400, 'still revoked')

  const accessWrongHint = await app.login({ openid: 'oHintAccess' })
  await revoked(t, await revoke(app, { token: accessWrongHint.access_token, token_type_hint: 'refresh_token' }), 'access with refresh hint')
  t.equal((await userinfo(app, accessWrongHint.access_token)).status, 401, 'the access token is revoked')
})

t.test('revoking twice answers 200 both times, and only the first is audited and logged', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oTwice' })
  for (const [what, token] of [['refresh', login.refresh_token], ['access', login.access_token]] as const) {
    for (let time = 1; time <= 3; time += 1) await revoked(t, await revoke(app, { token }), `${what}, time ${time}`)
  }
  const rows = await app.deps.db.selectFrom('revoked_access_tokens').selectAll().execute()
  t.equal(rows.length, 1, 'one revocation row for the access token')
  t.equal((await refresh(app, login.refresh_token)).status, 400)
  const events = await app.deps.db.selectFrom('audit_events').select('detail').where('event', '=', 'revocation').orderBy('id').execute()
  t.same(events.map((event) => event.detail?.split(' ')[0]), ['refresh_token', 'access_token'], 'one audit row per token, for the call that revoked it')
  const logged = app.logs.filter((line) => line.includes('"event":"revocation"'))
  t.equal(logged.length, 2, 'one log line per token')

  // A token of a login that ended otherwise (logout) changes nothing either.
  const other = await app.login({ openid: 'oTwiceLogout' })
  const logout = await fetch(`${app.url}/logout`, { method: 'POST', headers: { authorization: `Bearer ${other.access_token}` } })
  t.equal(logout.status, 204)
  await revoked(t, await revoke(app, { token: other.refresh_token }), 'refresh token of a logged-out login')
  await revoked(t, await revoke(app, { token: other.access_token }), 'access token revoked by logout')
  t.equal((await app.deps.db.selectFrom('audit_events').select('id').where('event', '=', 'revocation').execute()).length, 2, 'no new audit row')
})

t.test('/revoke is limited per client IP, from the same budget as /token', async (t) => {
  const app = await startTestApp(t, { MINIGATE_RATE_LIMITS: 'ip=3' })
  const login = await app.login({ openid: 'oRevokeLimited' })
  for (let i = 0; i < 2; i += 1) await revoked(t, await revoke(app, { token: login.refresh_token }), `request ${i + 2} of the minute`)
  const limited = await revoke(app, { token: login.refresh_token })
  t.equal(limited.status, 429, 'the fourth request in a minute from this address is limited')
  t.equal(limited.headers.get('retry-after'), '20')
  t.match(await limited.json(), { error: 'too_many_requests', error_description: /try again in 20 s/ })
  t.equal((await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: 'x' })).status, 429, '/token shares the budget')
  app.clock.advance(20)
  await revoked(t, await revoke(app, { token: login.refresh_token }), 'served again after Retry-After')
})

t.test("a client cannot revoke another client's token: 400 invalid_request, the token stays alive", async (t) => {
  const app = await startTestApp(t, TWO_APPS)
  const login = await app.login({ appid: APP_A, openid: 'oOtherClient' })
  for (const [what, params] of [
    ['refresh token of A by B', { token: login.refresh_token, client_id: APP_B }],
    ['access token of A by B', { token: login.access_token, client_id: APP_B }],
    ['access token of A by B, hinted', { token: login.access_token, client_id: APP_B, token_type_hint: 'access_token' }],
  ] as const) {
    const response = await revoke(app, params)
    t.equal(response.headers.get('cache-control'), 'no-store', `${what}: no-store`)
    const body = await oauthError(t, response, 400, 'invalid_request')
    t.match(body.error_description, /another client/, `${what}: says why`)
  }
  await revoked(t, await revoke(app, { token: 'garbage', client_id: APP_B }), 'an unknown token, by B')
  t.equal((await userinfo(app, login.access_token)).status, 200, 'the access token still works')
  t.equal((await sessionOf(app, login.access_token)).revoked_at, null)
  const next = await refresh(app, login.refresh_token, { client_id: APP_A })
  t.equal(next.status, 200, 'the refresh token still works')
  const events = await app.deps.db.selectFrom('audit_events').selectAll().where('event', '=', 'revocation').execute()
  t.equal(events.length, 0)

  // Its own client can.
  const body = (await next.json()) as Body
  await revoked(t, await revoke(app, { token: body.refresh_token, client_id: APP_A }), 'by A')
  t.equal((await refresh(app, body.refresh_token, { client_id: APP_A })).status, 400)
})

t.test('bad requests', async (t) => {
  const app = await startTestApp(t)
  const missing = await revoke(app, {})
  t.equal(missing.status, 400)
  t.equal(((await missing.json()) as Body).error, 'invalid_request')
  const empty = await revoke(app, { token: '' })
  t.equal(empty.status, 400)
  t.equal(((await empty.json()) as Body).error, 'invalid_request')

  const get = await fetch(`${app.url}/revoke`)
  t.equal(get.status, 405)
  t.match(get.headers.get('allow'), /POST/)
  t.equal(((await get.json()) as Body).error, 'invalid_request')

  const unknownClient = await revoke(app, { token: 'x', client_id: 'wxunknown000000000' })
  t.equal(unknownClient.status, 401)
  t.equal(((await unknownClient.json()) as Body).error, 'invalid_client')
})
