import { decodeJwt } from 'jose'
import t, { type Test } from 'tap'
import { mintRefreshToken } from '../../src/tokens/mint.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { oauthError } from '../helpers/assert.js'

const DEV_APPID = 'wx0000000000000dev'
const APP_A = 'wxaaaaaaaaaaaaaaaa'
const APP_B = 'wxbbbbbbbbbbbbbbbb'
const TWO_APPS = { WECHAT_APPS: `${APP_A}:secret-a,${APP_B}:secret-b`, MINIGATE_WECHAT_SIMULATOR: '1' }
const DEV_SERVICE = `Basic ${Buffer.from('dev-service:dev-service-secret').toString('base64')}`

type Body = Record<string, any>

function refresh(app: TestApp, refreshToken: string, extra: Record<string, string> = {}): Promise<Response> {
  return app.postForm('/token', { grant_type: 'refresh_token', refresh_token: refreshToken, ...extra })
}

/** Asserts a 200 token response with `Cache-Control: no-store` and returns its body. */
async function refreshed(t: Test, response: Response): Promise<Body> {
  const text = await response.text()
  t.equal(response.status, 200, response.status === 200 ? 'refresh succeeds' : `refresh succeeds (${text})`)
  t.equal(response.headers.get('cache-control'), 'no-store')
  return JSON.parse(text) as Body
}

function userinfo(app: TestApp, accessToken: string): Promise<Response> {
  return fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${accessToken}` } })
}

async function introspect(app: TestApp, token: string): Promise<Body> {
  const response = await app.postForm('/introspect', { token }, { authorization: DEV_SERVICE })
  return (await response.json()) as Body
}

function sidOf(token: string): string {
  return decodeJwt(token).sid as string
}

function genOf(token: string): number {
  return decodeJwt(token).gen as number
}

async function sessionRow(app: TestApp, sid: string) {
  return app.deps.db.selectFrom('login_sessions').selectAll().where('id', '=', sid).executeTakeFirstOrThrow()
}


t.test('rotation: a chain of 10 refreshes, each token works once, same sid, new tokens each time', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oRotation' })
  const sid = sidOf(login.access_token)
  t.equal(sidOf(login.refresh_token), sid)
  let current: Body = login
  const seenAccess = new Set<string>([login.access_token])
  const seenRefresh = new Set<string>([login.refresh_token])
  for (let i = 0; i < 10; i++) {
    app.clock.advance(60)
    const next = await refreshed(t, await refresh(app, current.refresh_token, { client_id: DEV_APPID }))
    t.same(Object.keys(next).sort(), ['access_token', 'expires_in', 'refresh_token', 'scope', 'token_type'])
    t.equal(next.token_type, 'Bearer')
    t.equal(next.scope, 'profile')
    t.notOk(seenAccess.has(next.access_token), `refresh ${i + 1}: a new access token`)
    t.notOk(seenRefresh.has(next.refresh_token), `refresh ${i + 1}: a new refresh token`)
    seenAccess.add(next.access_token)
    seenRefresh.add(next.refresh_token)
    t.equal(sidOf(next.access_token), sid, `refresh ${i + 1}: access token in the same login`)
    t.equal(sidOf(next.refresh_token), sid, `refresh ${i + 1}: refresh token in the same login`)
    t.equal(decodeJwt(next.access_token).sub, decodeJwt(login.access_token).sub)
    t.equal((await userinfo(app, next.access_token)).status, 200, `refresh ${i + 1}: the new access token works`)
    current = next
  }
  const session = await sessionRow(app, sid)
  t.equal(session.generation, 10, 'each rotation moved the login one generation on')
  t.equal(genOf(current.refresh_token), 10, 'the newest refresh token carries the current generation')
  t.equal(genOf(login.refresh_token), 0)
  t.equal(session.revoked_at, null, 'the login is live after a clean chain')
  const rows = await app.deps.db.selectFrom('login_sessions').select('id').execute()
  t.equal(rows.length, 1, 'one row for the whole login, however many rotations')
})

t.test('the scope of the login is kept; it can be narrowed, never widened', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oScope', scope: 'openid profile' })
  t.equal(login.scope, 'openid profile')

  const kept = await refreshed(t, await refresh(app, login.refresh_token))
  t.equal(kept.scope, 'openid profile')
  t.equal(decodeJwt(kept.access_token).scope, 'openid profile')
  t.type(kept.id_token, 'string', 'openid scope kept: an id_token comes with the refresh')
  const id = decodeJwt(kept.id_token)
  t.equal(id.aud, DEV_APPID)
  t.equal(id.sub, decodeJwt(kept.access_token).sub)

  const narrowed = await refreshed(t, await refresh(app, kept.refresh_token, { scope: 'profile' }))
  t.equal(narrowed.scope, 'profile')
  t.equal(decodeJwt(narrowed.access_token).scope, 'profile')
  t.notOk('id_token' in narrowed, 'no id_token once openid is narrowed away')

  // Narrowing affects one access token only: the login keeps its scope.
  const again = await refreshed(t, await refresh(app, narrowed.refresh_token))
  t.equal(again.scope, 'openid profile')

  const widened = await refresh(app, again.refresh_token, { scope: 'openid profile phone' })
  await oauthError(t, widened, 400, 'invalid_scope')
  // The refused widening did not spend the token.
  await refreshed(t, await refresh(app, again.refresh_token))
})

t.test('reuse of a spent refresh token revokes the whole family', async (t) => {
  const app = await startTestApp(t)
  const a = await app.login({ openid: 'oReuse' })
  const sid = sidOf(a.access_token)
  const sub = decodeJwt(a.access_token).sub
  const b = await refreshed(t, await refresh(app, a.refresh_token))
  const c = await refreshed(t, await refresh(app, b.refresh_token))
  t.equal((await userinfo(app, c.access_token)).status, 200, 'C works before the replay')

  await oauthError(t, await refresh(app, a.refresh_token), 400, 'invalid_grant')
  await oauthError(t, await refresh(app, c.refresh_token), 400, 'invalid_grant')

  const session = await sessionRow(app, sid)
  t.type(session.revoked_at, 'number', 'the login is revoked')
  t.equal(session.revoked_reason, 'refresh_token_reuse')

  const info = await userinfo(app, c.access_token)
  t.equal(info.status, 401, 'the access token of C is refused at /userinfo')
  t.match(info.headers.get('www-authenticate'), /^Bearer .*error="invalid_token"/)
  t.same(await introspect(app, c.access_token), { active: false })

  const events = await app.deps.db.selectFrom('audit_events').selectAll().where('event', '=', 'refresh_token_reuse').execute()
  t.equal(events.length, 1)
  t.match(events[0], { sub, sid, client_id: DEV_APPID })
  const signatures = [a, b, c].flatMap((pair) => [pair.refresh_token, pair.access_token]).map((token: string) => token.split('.')[2] as string)
  t.notOk(signatures.some((sig) => JSON.stringify(events).includes(sig)), 'the audit row holds no token')
  t.notOk(signatures.some((sig) => app.logs.some((line) => line.includes(sig))), 'no token was logged')
  t.ok(app.logs.some((line) => JSON.parse(line).event === 'refresh_token_reuse'), 'the reuse was logged (by ids)')
})

t.test('20 parallel refreshes of one token: exactly one wins, the rest are reuse', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oParallel' })
  const sid = sidOf(login.access_token)
  const responses = await Promise.all(Array.from({ length: 20 }, () => refresh(app, login.refresh_token)))
  const bodies = await Promise.all(responses.map(async (response) => ({ status: response.status, body: (await response.json()) as Body })))

  t.ok(bodies.every((r) => r.status < 500), 'never a 5xx')
  const winners = bodies.filter((r) => r.status === 200)
  const losers = bodies.filter((r) => r.status === 400 && r.body.error === 'invalid_grant')
  t.equal(winners.length, 1, 'exactly one 200')
  t.equal(losers.length, 19, 'the other 19 are invalid_grant')

  const session = await sessionRow(app, sid)
  t.type(session.revoked_at, 'number', 'the losers count as reuse: the login is revoked')
  t.equal(session.revoked_reason, 'refresh_token_reuse')
  t.equal(session.generation, 1, 'one rotation happened')
  const winner = winners[0]?.body as Body
  await oauthError(t, await refresh(app, winner.refresh_token), 400, 'invalid_grant')
  await oauthError(t, await refresh(app, login.refresh_token), 400, 'invalid_grant')
})

t.test('grace window: a replay of the token just spent gets a new pair once', async (t) => {
  const app = await startTestApp(t, { MINIGATE_REFRESH_GRACE_SECONDS: '30' })
  const a = await app.login({ openid: 'oGrace' })
  const sid = sidOf(a.access_token)
  const b = await refreshed(t, await refresh(app, a.refresh_token))
  app.clock.advance(10)
  const b2 = await refreshed(t, await refresh(app, a.refresh_token))
  t.equal(sidOf(b2.access_token), sid, 'same login')
  t.equal(sidOf(b2.refresh_token), sid)
  t.not(b2.refresh_token, b.refresh_token, 'a new pair')
  t.not(b2.access_token, b.access_token)
  t.equal((await sessionRow(app, sid)).revoked_at, null, 'a replay within the grace window does not revoke')

  await oauthError(t, await refresh(app, a.refresh_token), 400, 'invalid_grant')
  const session = await sessionRow(app, sid)
  t.type(session.revoked_at, 'number', 'a second replay revokes the login')
  t.equal(session.revoked_reason, 'refresh_token_reuse')
  await oauthError(t, await refresh(app, b2.refresh_token), 400, 'invalid_grant')
  await oauthError(t, await refresh(app, b.refresh_token), 400, 'invalid_grant')
})

t.test('grace window: a replay after the window is reuse', async (t) => {
  const app = await startTestApp(t, { MINIGATE_REFRESH_GRACE_SECONDS: '30' })
  const a = await app.login({ openid: 'oGraceLate' })
  const sid = sidOf(a.access_token)
  const b = await refreshed(t, await refresh(app, a.refresh_token))
  app.clock.advance(31)
  await oauthError(t, await refresh(app, a.refresh_token), 400, 'invalid_grant')
  t.equal((await sessionRow(app, sid)).revoked_reason, 'refresh_token_reuse')
  await oauthError(t, await refresh(app, b.refresh_token), 400, 'invalid_grant')
})

t.test('grace window: a replay once the successor has been used is reuse', async (t) => {
  const app = await startTestApp(t, { MINIGATE_REFRESH_GRACE_SECONDS: '30' })
  const a = await app.login({ openid: 'oGraceChain' })
  const sid = sidOf(a.access_token)
  const b = await refreshed(t, await refresh(app, a.refresh_token))
  const c = await refreshed(t, await refresh(app, b.refresh_token))
  app.clock.advance(5)
  await oauthError(t, await refresh(app, a.refresh_token), 400, 'invalid_grant')
  t.equal((await sessionRow(app, sid)).revoked_reason, 'refresh_token_reuse', 'A was not the token just spent')
  await oauthError(t, await refresh(app, c.refresh_token), 400, 'invalid_grant')
})

t.test('grace window with 2 reuses: two replays work, the third revokes', async (t) => {
  const app = await startTestApp(t, { MINIGATE_REFRESH_GRACE_SECONDS: '30', MINIGATE_REFRESH_GRACE_REUSES: '2' })
  const a = await app.login({ openid: 'oGraceTwo' })
  const sid = sidOf(a.access_token)
  await refreshed(t, await refresh(app, a.refresh_token))
  app.clock.advance(5)
  await refreshed(t, await refresh(app, a.refresh_token))
  app.clock.advance(5)
  const second = await refreshed(t, await refresh(app, a.refresh_token))
  t.equal((await sessionRow(app, sid)).revoked_at, null)
  await oauthError(t, await refresh(app, a.refresh_token), 400, 'invalid_grant')
  t.equal((await sessionRow(app, sid)).revoked_reason, 'refresh_token_reuse')
  await oauthError(t, await refresh(app, second.refresh_token), 400, 'invalid_grant')
})

t.test('token confusion and bad input', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oConfusion', scope: 'openid profile' })

  await oauthError(t, await refresh(app, login.access_token), 400, 'invalid_grant')
  await oauthError(t, await refresh(app, login.id_token), 400, 'invalid_grant')
  await oauthError(t, await refresh(app, 'not-a-jwt-at-all'), 400, 'invalid_grant')
  await oauthError(t, await app.postForm('/token', { grant_type: 'refresh_token' }), 400, 'invalid_request')
  await oauthError(t, await refresh(app, ''), 400, 'invalid_request')
  const unknownClient = await refresh(app, login.refresh_token, { client_id: 'wxunknown000000000' })
  await oauthError(t, unknownClient, 401, 'invalid_client')
  t.match(unknownClient.headers.get('www-authenticate'), /^Basic/)

  const info = await userinfo(app, login.refresh_token)
  t.equal(info.status, 401, 'a refresh token is not a Bearer access token')
  t.equal(((await info.json()) as Body).error, 'invalid_token')

  // None of the refused attempts spent or revoked the real refresh token.
  const next = await refreshed(t, await refresh(app, login.refresh_token))
  t.equal(sidOf(next.access_token), sidOf(login.access_token))
})

t.test('a refresh token works only for the client it was issued to', async (t) => {
  const app = await startTestApp(t, TWO_APPS)
  const login = await app.login({ appid: APP_A, openid: 'oTwoApps' })
  t.equal(decodeJwt(login.refresh_token).client_id, APP_A)
  await oauthError(t, await refresh(app, login.refresh_token, { client_id: APP_B }), 400, 'invalid_grant')
  await oauthError(t, await refresh(app, login.refresh_token), 400, 'invalid_request')
  const next = await refreshed(t, await refresh(app, login.refresh_token, { client_id: APP_A }))
  t.equal(decodeJwt(next.access_token).client_id, APP_A)
})

t.test('the refresh TTL is an inactivity limit', async (t) => {
  const app = await startTestApp(t, { MINIGATE_REFRESH_TTL: '3600', MINIGATE_ACCESS_TTL: '60' })
  const login = await app.login({ openid: 'oIdle' })
  const first = decodeJwt(login.refresh_token)
  t.equal((first.exp as number) - (first.iat as number), 3600)
  let current: Body = login
  for (let i = 0; i < 5; i++) {
    app.clock.advance(3000)
    current = await refreshed(t, await refresh(app, current.refresh_token))
    t.equal(current.expires_in, 60)
  }
  t.ok(Math.floor(app.clock.now() / 1000) > (first.exp as number), 'the chain outlived the first token')

  app.clock.advance(3601)
  const body = await oauthError(t, await refresh(app, current.refresh_token), 400, 'invalid_grant')
  t.match(body.error_description, /expired/)
})

t.test('a login has an absolute maximum age that refreshing cannot extend', async (t) => {
  const app = await startTestApp(t, { MINIGATE_REFRESH_TTL: '3600', MINIGATE_SESSION_MAX_AGE: '7200' })
  const login = await app.login({ openid: 'oMaxAge' })
  const session = await sessionRow(app, sidOf(login.access_token))
  const end = session.created_at + 7200
  t.equal(session.expires_at, end)
  let current: Body = login
  let refreshes = 0
  for (;;) {
    app.clock.advance(3000)
    const response = await refresh(app, current.refresh_token)
    if (Math.floor(app.clock.now() / 1000) >= end) {
      await oauthError(t, response, 400, 'invalid_grant')
      break
    }
    current = await refreshed(t, response)
    refreshes++
    t.ok((decodeJwt(current.refresh_token).exp as number) <= end, `refresh ${refreshes}: exp within the login's end`)
  }
  t.equal(refreshes, 2, 'refreshes at 3000 s and 6000 s worked, the one at 9000 s did not')
  t.equal(decodeJwt(current.refresh_token).exp, end, 'the last refresh token ends exactly with the login')
})

t.test('a refresh for a disabled user is refused', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oDisabled' })
  const sub = decodeJwt(login.access_token).sub as string
  await app.deps.db.updateTable('users').set({ disabled_at: Math.floor(app.clock.now() / 1000) }).where('id', '=', sub).execute()
  await oauthError(t, await refresh(app, login.refresh_token), 400, 'invalid_grant')
  const session = await sessionRow(app, sidOf(login.access_token))
  t.equal(session.generation, 0, 'the refused refresh spent nothing')
  t.equal(session.revoked_at, null, 'nor ended the login (the ban did, if it was made with the CLI)')
})

t.test('a replay of a spent token is reuse even when it asks for a wider scope', async (t) => {
  const app = await startTestApp(t)
  const a = await app.login({ openid: 'oReuseScope' })
  const sid = sidOf(a.access_token)
  await refreshed(t, await refresh(app, a.refresh_token))
  const replay = await refresh(app, a.refresh_token, { scope: 'profile phone' })
  t.equal(replay.status, 400)
  t.equal(((await replay.json()) as Body).error, 'invalid_grant', 'refused as a spent token')
  t.equal((await sessionRow(app, sid)).revoked_reason, 'refresh_token_reuse', 'the replay revoked the login')
})

t.test('grace window: tokens minted inside it share the current generation, so either one keeps the login', async (t) => {
  const app = await startTestApp(t, { MINIGATE_REFRESH_GRACE_SECONDS: '30' })
  const a = await app.login({ openid: 'oGraceSiblings' })
  const sid = sidOf(a.access_token)
  const b = await refreshed(t, await refresh(app, a.refresh_token))
  app.clock.advance(5)
  const b2 = await refreshed(t, await refresh(app, a.refresh_token))
  t.equal(genOf(b.refresh_token), 1)
  t.equal(genOf(b2.refresh_token), 1, 'the grace replay gets the current generation, not a new one')
  // The phone kept B after all (the response it thought lost arrived): B refreshes.
  const c = await refreshed(t, await refresh(app, b.refresh_token))
  t.equal(genOf(c.refresh_token), 2)
  t.equal((await sessionRow(app, sid)).revoked_at, null)
  // B2 is now the generation just rotated away: within the new window it is one more grace replay...
  const c2 = await refreshed(t, await refresh(app, b2.refresh_token))
  t.equal(genOf(c2.refresh_token), 2)
  // ...and after the window, reuse.
  app.clock.advance(31)
  await oauthError(t, await refresh(app, b.refresh_token), 400, 'invalid_grant')
  t.equal((await sessionRow(app, sid)).revoked_reason, 'refresh_token_reuse')
})

t.test('grace window: N parallel refreshes (up to the reuse count) all succeed, and whichever the client keeps refreshes', async (t) => {
  const app = await startTestApp(t, { MINIGATE_REFRESH_GRACE_SECONDS: '30', MINIGATE_REFRESH_GRACE_REUSES: '5' })
  for (let kept = 0; kept < 6; kept++) {
    const login = await app.login({ openid: `oGraceParallel${kept}` })
    const sid = sidOf(login.access_token)
    const responses = await Promise.all(Array.from({ length: 6 }, () => refresh(app, login.refresh_token)))
    const bodies = await Promise.all(responses.map((response) => refreshed(t, response)))
    t.same(new Set(bodies.map((body) => genOf(body.refresh_token))), new Set([1]), `round ${kept}: every response is of the current generation`)
    // The client keeps whichever response arrived last: here, the kept-th.
    const next = await refreshed(t, await refresh(app, (bodies[kept] as Body).refresh_token))
    t.equal(genOf(next.refresh_token), 2, `round ${kept}: the kept token refreshes`)
    t.equal((await userinfo(app, next.access_token)).status, 200)
    t.equal((await sessionRow(app, sid)).revoked_at, null, `round ${kept}: the login lives on`)
  }
  // One more than the reuse count in parallel: one rotation, five grace replays, one reuse.
  const login = await app.login({ openid: 'oGraceOverflow' })
  const responses = await Promise.all(Array.from({ length: 7 }, () => refresh(app, login.refresh_token)))
  t.same(responses.map((response) => response.status).sort(), [200, 200, 200, 200, 200, 200, 400])
  t.equal((await sessionRow(app, sidOf(login.access_token))).revoked_reason, 'refresh_token_reuse')
})

t.test('a refresh token of a generation the login never reached is refused without ending the login', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oFutureGen' })
  const claims = decodeJwt(login.refresh_token)
  const session = await sessionRow(app, claims.sid as string)
  // As after a restore from an older backup: the token is genuine, the database is behind it.
  const ahead = await mintRefreshToken(app.deps, { sub: claims.sub as string, clientId: DEV_APPID, sid: session.id, generation: 5, loginEndsAt: session.expires_at })
  await oauthError(t, await refresh(app, ahead.token), 400, 'invalid_grant')
  t.equal((await sessionRow(app, session.id)).revoked_at, null, 'not treated as reuse')
  await refreshed(t, await refresh(app, login.refresh_token))
})

t.test('replays of dead refresh tokens never cost the live login its refreshes (rate limits)', async (t) => {
  const app = await startTestApp(t, { MINIGATE_RATE_LIMITS: 'ip=1000,client=1000,user=3' })
  const old = await app.login({ openid: 'oBudget' })
  const logout = await fetch(`${app.url}/logout`, { method: 'POST', headers: { authorization: `Bearer ${old.access_token}` } })
  t.equal(logout.status, 204)
  const live = await app.login({ openid: 'oBudget' })
  t.equal(decodeJwt(live.access_token).sub, decodeJwt(old.access_token).sub, 'one user, two logins')
  for (let i = 0; i < 10; i++) await oauthError(t, await refresh(app, old.refresh_token), 400, 'invalid_grant')
  let current: Body = live
  for (let i = 0; i < 3; i++) current = await refreshed(t, await refresh(app, current.refresh_token))
  await oauthError(t, await refresh(app, current.refresh_token), 429, 'too_many_requests')
  app.clock.advance(20)
  await refreshed(t, await refresh(app, current.refresh_token))
})

t.test('an access token never outlives its login', async (t) => {
  const app = await startTestApp(t, { MINIGATE_SESSION_MAX_AGE: '7200', MINIGATE_REFRESH_TTL: '3600', MINIGATE_ACCESS_TTL: '900' })
  const login = await app.login({ openid: 'oLoginEnd' })
  const started = decodeJwt(login.access_token).iat as number
  app.clock.advance(3000)
  const first = await refreshed(t, await refresh(app, login.refresh_token))
  app.clock.advance(3000)
  const second = await refreshed(t, await refresh(app, first.refresh_token))
  app.clock.advance(900)
  const last = await refreshed(t, await refresh(app, second.refresh_token))
  const access = decodeJwt(last.access_token)
  t.equal(access.exp, started + 7200, 'the access token ends with the login, 300 s before its usual 900 s')
  t.equal(last.expires_in, 300, 'and expires_in says so')
})
