import { decodeJwt } from 'jose'
import t from 'tap'
import { startTestApp, type TestApp } from '../helpers/app.js'

const DEV_SERVICE = `Basic ${Buffer.from('dev-service:dev-service-secret').toString('base64')}`

type Body = Record<string, any>

function logout(app: TestApp, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${app.url}/logout`, { method: 'POST', headers })
}

function userinfo(app: TestApp, accessToken: string): Promise<Response> {
  return fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${accessToken}` } })
}

function refresh(app: TestApp, refreshToken: string): Promise<Response> {
  return app.postForm('/token', { grant_type: 'refresh_token', refresh_token: refreshToken })
}

async function introspect(app: TestApp, token: string): Promise<Body> {
  return (await (await app.postForm('/introspect', { token }, { authorization: DEV_SERVICE })).json()) as Body
}

t.test('logout ends this login only', async (t) => {
  const app = await startTestApp(t)
  const phone = await app.login({ openid: 'oLogout' })
  const tablet = await app.login({ openid: 'oLogout' })
  t.equal(decodeJwt(phone.access_token).sub, decodeJwt(tablet.access_token).sub, 'same user, two logins')
  t.not(decodeJwt(phone.access_token).sid, decodeJwt(tablet.access_token).sid)
  // An access token minted by a refresh of this login dies with it too.
  const rotatedResponse = await refresh(app, phone.refresh_token)
  t.equal(rotatedResponse.status, 200)
  const rotated = (await rotatedResponse.json()) as Body

  const response = await logout(app, { authorization: `Bearer ${rotated.access_token}` })
  t.equal(response.status, 204)
  t.equal(await response.text(), '')
  t.equal(response.headers.get('cache-control'), 'no-store')

  for (const [what, token] of [['access token used', rotated.access_token], ['older access token of the login', phone.access_token]] as const) {
    const info = await userinfo(app, token)
    t.equal(info.status, 401, `${what}: 401 at /userinfo`)
    t.equal(((await info.json()) as Body).error, 'invalid_token')
    t.same(await introspect(app, token), { active: false }, `${what}: inactive`)
  }
  const refused = await refresh(app, rotated.refresh_token)
  t.equal(refused.status, 400)
  t.equal(((await refused.json()) as Body).error, 'invalid_grant')
  t.same(await introspect(app, rotated.refresh_token), { active: false })

  const session = await app.deps.db
    .selectFrom('login_sessions')
    .selectAll()
    .where('id', '=', decodeJwt(phone.access_token).sid as string)
    .executeTakeFirstOrThrow()
  t.equal(session.revoked_reason, 'logout')
  const events = await app.deps.db.selectFrom('audit_events').selectAll().where('event', '=', 'logout').execute()
  t.equal(events.length, 1)
  t.match(events[0], { sid: session.id, sub: session.user_id })

  // The other login of the same user is untouched.
  t.equal((await userinfo(app, tablet.access_token)).status, 200)
  t.equal((await introspect(app, tablet.access_token)).active, true)
  t.equal((await refresh(app, tablet.refresh_token)).status, 200)

  const again = await logout(app, { authorization: `Bearer ${rotated.access_token}` })
  t.equal(again.status, 401, 'a second logout with the dead token is refused')
})

t.test('logout requires a Bearer access token', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oLogoutNoBearer' })
  const none = await logout(app)
  t.equal(none.status, 401)
  t.match(none.headers.get('www-authenticate'), /^Bearer/)
  t.notMatch(none.headers.get('www-authenticate'), /error=/, 'no error code when no credentials came (RFC 6750)')

  const withRefresh = await logout(app, { authorization: `Bearer ${login.refresh_token}` })
  t.equal(withRefresh.status, 401, 'a refresh token is not accepted')
  t.equal(((await withRefresh.json()) as Body).error, 'invalid_token')

  const garbage = await logout(app, { authorization: 'Bearer garbage' })
  t.equal(garbage.status, 401)

  t.equal((await userinfo(app, login.access_token)).status, 200, 'the refused logouts ended nothing')
  t.equal((await refresh(app, login.refresh_token)).status, 200)
})
