import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose'
import t, { type Test } from 'tap'
import { rowCounts, startTestApp, WECHAT_CODE_GRANT, type TestApp } from '../helpers/app.js'
import { oauthError } from '../helpers/assert.js'

const DEV_APPID = 'wx0000000000000dev'
const DEV_SECRET = 'development-secret-not-for-production'
const APP_A = 'wxaaaaaaaaaaaaaaaa'
const APP_B = 'wxbbbbbbbbbbbbbbbb'
const TWO_APPS = { WECHAT_APPS: `${APP_A}:s1,${APP_B}:s2`, MINIGATE_WECHAT_SIMULATOR: '1' }
const THIRTY_DAYS = 30 * 24 * 3600

interface Counts {
  users: number
  wechat_identities: number
  login_sessions: number
}

/** rowCounts, typed: the rows of each login table. */
async function counts(app: TestApp): Promise<Counts> {
  const rows = await rowCounts(app.deps)
  return { users: rows.users ?? NaN, wechat_identities: rows.wechat_identities ?? NaN, login_sessions: rows.login_sessions ?? NaN }
}

/** A 5xx body must not show how minigate works inside. */
function noInternals(t: Test, text: string): void {
  t.notMatch(text, /stack|\n\s+at |https?:\/\/|127\.0\.0\.1|_dev|jscode2session|errcode|<html|secret/i, 'no internals in the body')
}

function exchange(app: TestApp, code: string, extra: Record<string, string> = {}): Promise<Response> {
  return app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code, ...extra })
}

async function tokens(t: Test, response: Response): Promise<Record<string, any>> {
  const text = await response.text()
  t.equal(response.status, 200, `login succeeds (${text})`)
  return JSON.parse(text) as Record<string, any>
}

function subOf(body: Record<string, any>): string {
  return decodeJwt(body.access_token as string).sub as string
}

async function armFault(t: Test, app: TestApp, mode: string): Promise<void> {
  const response = await app.postJson('/_dev/wechat/faults', { api: 'jscode2session', mode, count: '1' })
  t.equal(response.status, 200, `fault ${mode} armed`)
}

t.test('login on the development app', async (t) => {
  const app = await startTestApp(t)

  t.test('a full login answers an RFC 6749 token response with RFC 9068 access and rotated refresh tokens', async (t) => {
    const code = await app.wxLogin({ openid: 'oFullLogin' })
    const response = await exchange(app, code, { client_id: DEV_APPID })
    t.equal(response.headers.get('cache-control'), 'no-store')
    t.match(response.headers.get('content-type'), /^application\/json/)
    const body = await tokens(t, response)
    t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'refresh_token', 'scope', 'token_type'])
    t.equal(body.token_type, 'Bearer')
    t.equal(body.expires_in, 900)
    t.equal(body.scope, 'profile')
    t.notOk('id_token' in body, 'no id_token without the openid scope')

    const jwks = (await (await fetch(`${app.url}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> }
    const kids = jwks.keys.map((key) => key.kid)

    const accessHeader = decodeProtectedHeader(body.access_token)
    t.equal(accessHeader.typ, 'at+jwt')
    t.equal(accessHeader.alg, 'RS256')
    t.ok(kids.includes(accessHeader.kid as string), 'access kid is published in JWKS')
    const access = decodeJwt(body.access_token)
    t.equal(access.iss, app.url)
    t.same(access.aud, ['minigate-api', `${app.url}/account`], 'the services and minigate\'s account endpoints')
    t.type(access.sub, 'string')
    t.not(access.sub, 'oFullLogin', 'sub is not the openid')
    t.notMatch(JSON.stringify(access), /oFullLogin/, 'the openid is in no claim')
    t.equal(access.client_id, DEV_APPID)
    t.equal(access.iat, Math.floor(app.clock.now() / 1000))
    t.equal(access.exp, (access.iat as number) + 900)
    t.type(access.jti, 'string')
    t.equal(access.scope, 'profile')
    t.type(access.sid, 'string')

    const refreshHeader = decodeProtectedHeader(body.refresh_token)
    t.equal(refreshHeader.typ, 'rt+jwt')
    t.equal(refreshHeader.alg, 'RS256')
    t.ok(kids.includes(refreshHeader.kid as string), 'refresh kid is published in JWKS')
    const refresh = decodeJwt(body.refresh_token)
    t.equal(refresh.iss, app.url)
    t.equal(refresh.aud, app.url, 'refresh aud is the issuer')
    t.equal(refresh.sub, access.sub)
    t.equal(refresh.client_id, DEV_APPID)
    t.equal(refresh.sid, access.sid, 'same login')
    t.equal(refresh.exp, (refresh.iat as number) + THIRTY_DAYS)
    t.type(refresh.jti, 'string')
    t.not(refresh.jti, access.jti)

    t.equal(refresh.gen, 0, 'the first generation of the login')
    t.same(await rowCounts(app.deps), { users: 1, wechat_identities: 1, login_sessions: 1 })
    const stored = await app.deps.db.selectFrom('login_sessions').selectAll().executeTakeFirstOrThrow()
    t.equal(stored.id, access.sid)
    t.equal(stored.generation, 0)
    const everything = JSON.stringify(await Promise.all(['users', 'wechat_identities', 'login_sessions', 'audit_events'].map((table) => app.deps.db.selectFrom(table as 'users').selectAll().execute())))
    t.notOk(everything.includes(body.refresh_token.split('.')[2]), 'no refresh token is stored')
  })

  t.test('scope openid adds an ID token for the mini-program', async (t) => {
    const body = await app.login({ scope: 'openid profile' })
    t.equal(body.scope, 'openid profile')
    t.type(body.id_token, 'string')
    const header = decodeProtectedHeader(body.id_token)
    t.equal(header.typ, 'JWT')
    t.equal(header.alg, 'RS256')
    const id = decodeJwt(body.id_token)
    const access = decodeJwt(body.access_token)
    t.equal(id.iss, app.url)
    t.equal(id.aud, DEV_APPID, 'aud is the appid')
    t.equal(id.sub, access.sub)
    t.equal(id.sid, access.sid)
    t.type(id.iat, 'number')
    t.ok((id.exp as number) > (id.iat as number), 'exp after iat')
  })

  t.test('a business service verifies the access token offline against the published JWKS', async (t) => {
    const body = await app.login()
    const jwks = createRemoteJWKSet(new URL(`${app.url}/.well-known/jwks.json`))
    const options = {
      issuer: app.url,
      audience: 'minigate-api',
      algorithms: ['RS256'],
      typ: 'at+jwt',
      currentDate: new Date(app.clock.now()),
    }
    const { payload, protectedHeader } = await jwtVerify(body.access_token, jwks, options)
    t.equal(protectedHeader.typ, 'at+jwt')
    t.equal(payload.client_id, DEV_APPID)
    t.equal(payload.scope, 'profile')
    // The same checks refuse the refresh token: it is not an access token.
    await t.rejects(jwtVerify(body.refresh_token, jwks, options), 'a refresh token does not pass as an access token')
    // And the access token is refused once expired.
    await t.rejects(jwtVerify(body.access_token, jwks, { ...options, currentDate: new Date(app.clock.now() + 901_000) }), 'expired')
  })

  t.test('a JSON body is accepted and client_id may be omitted with one app', async (t) => {
    const code = await app.wxLogin()
    const body = await tokens(t, await app.postJson('/token', { grant_type: WECHAT_CODE_GRANT, code }))
    t.equal(decodeJwt(body.access_token).client_id, DEV_APPID)
    const omitted = await tokens(t, await exchange(app, await app.wxLogin()))
    t.equal(decodeJwt(omitted.access_token).client_id, DEV_APPID)
    t.equal(subOf(omitted), subOf(body), 'same default user')
  })

  t.test('an unknown client_id is invalid_client with a challenge, and WeChat is not called', async (t) => {
    const code = await app.wxLogin()
    const calls = app.simulator.calls.jscode2session
    const response = await exchange(app, code, { client_id: 'wxunknown000000000' })
    await oauthError(t, response, 401, 'invalid_client')
    t.ok(response.headers.get('www-authenticate'), 'WWW-Authenticate is set')
    t.equal(response.headers.get('cache-control'), 'no-store')
    t.equal(app.simulator.calls.jscode2session, calls, 'WeChat not called')
    // The code was not spent: the right client_id still works with it.
    await tokens(t, await exchange(app, code, { client_id: DEV_APPID }))
  })
  t.end()
})

t.test('with two apps: client_id is required, and codes WeChat refuses are invalid_grant', async (t) => {
  const app = await startTestApp(t, TWO_APPS)
  // A missing client_id is invalid_request, before WeChat is called.
  const code = await app.wxLogin({ appid: APP_A })
  await oauthError(t, await exchange(app, code), 400, 'invalid_request')
  await oauthError(t, await exchange(app, code, { client_id: '' }), 400, 'invalid_request')
  t.equal(app.simulator.calls.jscode2session, 0)
  const body = await tokens(t, await exchange(app, code, { client_id: APP_A }))
  t.equal(decodeJwt(body.access_token).client_id, APP_A)

  t.test('a code minted for another appid is invalid_grant', async (t) => {
    const before = await rowCounts(app.deps)
    const calls = app.simulator.calls.jscode2session
    const other = await app.wxLogin({ appid: APP_A })
    await oauthError(t, await exchange(app, other, { client_id: APP_B }), 400, 'invalid_grant')
    t.equal(app.simulator.calls.jscode2session, calls + 1)
    t.same(await rowCounts(app.deps), before, 'nothing written')
  })
  t.test('an unknown code is invalid_grant', async (t) => {
    const calls = app.simulator.calls.jscode2session
    await oauthError(t, await exchange(app, 'ThisCodeWasNeverIssued0123456789', { client_id: APP_A }), 400, 'invalid_grant')
    t.equal(app.simulator.calls.jscode2session, calls + 1)
  })
  t.test('an expired code (errcode 40029) is invalid_grant', async (t) => {
    const before = await rowCounts(app.deps)
    const expired = await app.wxLogin({ appid: APP_B })
    app.clock.advance(301)
    await oauthError(t, await exchange(app, expired, { client_id: APP_B }), 400, 'invalid_grant')
    t.same(await rowCounts(app.deps), before, 'nothing written')
  })
  t.end()
})

t.test('users: one sub per WeChat user, linked across apps by unionid', async (t) => {
  const app = await startTestApp(t, TWO_APPS)
  const identitiesOf = (sub: string) =>
    app.deps.db.selectFrom('wechat_identities').select(['appid', 'openid']).where('user_id', '=', sub).orderBy('appid').execute()
  const unionidOf = async (sub: string) =>
    (await app.deps.db.selectFrom('users').select('unionid').where('id', '=', sub).executeTakeFirstOrThrow()).unionid

  t.test('the same openid gets the same sub, another openid another sub', async (t) => {
    const before = (await counts(app)).users
    const first = subOf(await app.login({ appid: APP_A, openid: 'oSame' }))
    const second = subOf(await app.login({ appid: APP_A, openid: 'oSame' }))
    const other = subOf(await app.login({ appid: APP_A, openid: 'oOther' }))
    t.equal(second, first)
    t.not(other, first)
    t.equal((await counts(app)).users, before + 2, 'two users')
    t.same(await identitiesOf(first), [{ appid: APP_A, openid: 'oSame' }])
    // The same openid string in another app is another WeChat user (openids are per app).
    const elsewhere = subOf(await app.login({ appid: APP_B, openid: 'oSame' }))
    t.not(elsewhere, first)
  })

  t.test('two apps with one unionid share a user', async (t) => {
    const usersBefore = (await counts(app)).users
    const a = await app.login({ appid: APP_A, openid: 'oA', unionid: 'uShared' })
    const b = await app.login({ appid: APP_B, openid: 'oB', unionid: 'uShared' })
    t.equal(subOf(b), subOf(a))
    t.equal(decodeJwt(a.access_token).client_id, APP_A)
    t.equal(decodeJwt(b.access_token).client_id, APP_B)
    t.same(await identitiesOf(subOf(a)), [{ appid: APP_A, openid: 'oA' }, { appid: APP_B, openid: 'oB' }], 'two identities, one user')
    t.equal(await unionidOf(subOf(a)), 'uShared')
    t.equal((await counts(app)).users, usersBefore + 1, 'one user created')
    // Another unionid in app B is someone else.
    const stranger = await app.login({ appid: APP_B, openid: 'oStranger', unionid: 'uOther' })
    t.not(subOf(stranger), subOf(a))
  })

  t.test('a unionid learned on a later login links the user', async (t) => {
    const usersBefore = (await counts(app)).users
    const before = subOf(await app.login({ appid: APP_A, openid: 'oLate' }))
    t.equal(await unionidOf(before), null)

    const after = subOf(await app.login({ appid: APP_A, openid: 'oLate', unionid: 'uLate' }))
    t.equal(after, before)
    t.equal(await unionidOf(before), 'uLate', 'users.unionid is set')

    const otherApp = subOf(await app.login({ appid: APP_B, openid: 'oLateB', unionid: 'uLate' }))
    t.equal(otherApp, before, 'app B maps to the same user by unionid')
    t.same(await identitiesOf(before), [{ appid: APP_A, openid: 'oLate' }, { appid: APP_B, openid: 'oLateB' }])
    t.equal((await counts(app)).users, usersBefore + 1, 'one user created')
  })
  t.end()
})

t.test('a code is sent to WeChat at most once', async (t) => {
  const app = await startTestApp(t)

  t.test('a reused code is invalid_grant without a second upstream call', async (t) => {
    const code = await app.wxLogin()
    const calls = app.simulator.calls.jscode2session
    await tokens(t, await exchange(app, code))
    t.equal(app.simulator.calls.jscode2session, calls + 1)
    const countsAfterLogin = await rowCounts(app.deps)
    await oauthError(t, await exchange(app, code), 400, 'invalid_grant')
    t.equal(app.simulator.calls.jscode2session, calls + 1, 'no second call to WeChat')
    t.same(await rowCounts(app.deps), countsAfterLogin, 'nothing written')
  })

  t.test('two concurrent requests with one code: exactly one wins, one upstream call', async (t) => {
    const code = await app.wxLogin({ openid: 'oConcurrent' })
    const calls = app.simulator.calls.jscode2session
    const before = await counts(app)
    const responses = await Promise.all([exchange(app, code), exchange(app, code)])
    const bodies = await Promise.all(responses.map(async (response) => ({ status: response.status, body: (await response.json()) as Record<string, unknown> })))
    t.same(bodies.map((b) => b.status).sort(), [200, 400])
    const loser = bodies.find((b) => b.status === 400)
    t.equal(loser?.body.error, 'invalid_grant')
    t.equal(app.simulator.calls.jscode2session, calls + 1, 'one upstream call')
    t.same(await rowCounts(app.deps), {
      users: before.users + 1,
      wechat_identities: before.wechat_identities + 1,
      login_sessions: before.login_sessions + 1,
    }, 'one login written')
  })
  t.end()
})

/** Arms a jscode2session fault, exchanges a fresh code, and checks the refusal; returns the code. */
async function faultyLogin(t: Test, app: TestApp, c: { mode: string; status: number; error: string; retryAfter: boolean }): Promise<string> {
  const code = await app.wxLogin({ openid: 'oFault' })
  const calls = app.simulator.calls.jscode2session
  await armFault(t, app, c.mode)
  const response = await exchange(app, code)
  const text = await response.clone().text()
  await oauthError(t, response, c.status, c.error)
  if (c.retryAfter) t.match(response.headers.get('retry-after'), /^[1-9]\d*$/, `${c.mode}: Retry-After in seconds`)
  t.equal(response.headers.get('cache-control'), 'no-store')
  noInternals(t, text)
  t.notOk(text.includes(code), 'the code is not echoed')
  t.equal(app.simulator.calls.jscode2session, calls + 1, 'one upstream call')
  t.same(await rowCounts(app.deps), { users: 0, wechat_identities: 0, login_sessions: 0}, `${c.mode}: nothing written`)
  return code
}

t.test('WeChat trouble is a 502/503, writes nothing, and leaves the code usable', async (t) => {
  t.test('busy, rate_limit, http_500, garbage', async (t) => {
    const app = await startTestApp(t)
    const cases = [
      { mode: 'busy', status: 503, error: 'temporarily_unavailable', retryAfter: true },
      { mode: 'rate_limit', status: 503, error: 'temporarily_unavailable', retryAfter: true },
      { mode: 'http_500', status: 502, error: 'server_error', retryAfter: false },
      { mode: 'garbage', status: 502, error: 'server_error', retryAfter: false },
    ]
    const codes: string[] = []
    for (const c of cases) codes.push(await faultyLogin(t, app, c))
    t.notOk(app.logs.some((line) => line.includes(DEV_SECRET) || codes.some((code) => line.includes(code))), 'no AppSecret or code logged')

    // WeChat did not consume the codes: the client may retry each with the same one.
    for (const [i, code] of codes.entries()) {
      const calls = app.simulator.calls.jscode2session
      const body = await tokens(t, await exchange(app, code))
      t.type(body.access_token, 'string', `${cases[i]?.mode}: the same code works on retry`)
      t.equal(app.simulator.calls.jscode2session, calls + 1)
    }
    t.same(await rowCounts(app.deps), { users: 1, wechat_identities: 1, login_sessions: 4})
  })

  t.test('timeout', async (t) => {
    const app = await startTestApp(t, { WECHAT_TIMEOUT_MS: '300' })
    const code = await faultyLogin(t, app, { mode: 'timeout', status: 503, error: 'temporarily_unavailable', retryAfter: true })
    t.notOk(app.logs.some((line) => line.includes(DEV_SECRET) || line.includes(code)), 'no AppSecret or code logged')
    await tokens(t, await exchange(app, code))
    t.same(await rowCounts(app.deps), { users: 1, wechat_identities: 1, login_sessions: 1})
  })
  t.end()
})

t.test('scope', async (t) => {
  const app = await startTestApp(t)
  t.test('an unknown scope is invalid_scope, checked before WeChat is called', async (t) => {
    const code = await app.wxLogin()
    const calls = app.simulator.calls.jscode2session
    await oauthError(t, await exchange(app, code, { scope: 'profile admin' }), 400, 'invalid_scope')
    await oauthError(t, await exchange(app, code, { scope: 'openid\tprofile' }), 400, 'invalid_scope')
    t.equal(app.simulator.calls.jscode2session, calls, 'WeChat not called')
    // The code was not spent.
    t.equal((await tokens(t, await exchange(app, code))).scope, 'profile')
  })
  t.test('scopes come back known, once each, in canonical order', async (t) => {
    t.equal((await app.login({ scope: 'phone openid' })).scope, 'openid phone')
    t.equal((await app.login({ scope: 'profile  profile' })).scope, 'profile')
    t.equal((await app.login({ scope: 'phone profile openid' })).scope, 'openid profile phone')
    const phone = await app.login({ scope: 'phone' })
    t.equal(phone.scope, 'phone')
    t.equal(decodeJwt(phone.access_token).scope, 'phone')
    t.notOk('id_token' in phone)
  })
  t.test('an empty scope means profile', async (t) => {
    const body = await app.login({ scope: '' })
    t.equal(body.scope, 'profile')
    t.equal(decodeJwt(body.access_token).scope, 'profile')
    t.equal((await app.login({ scope: '   ' })).scope, 'profile')
  })
  t.end()
})

t.test('session_key never leaves the server; the newest one is kept, encrypted', async (t) => {
  const app = await startTestApp(t)
  const firstKey = 'c2Vzc2lvbmtleTEyMzQ1Ng=='
  const secondKey = 'YW5vdGhlcnNlc3Npb25rZQ=='
  const openid = 'oSessionKey'
  const seen: string[] = []

  const code1 = await app.wxLogin({ openid, session_key: firstKey })
  const response1 = await exchange(app, code1)
  const text1 = await response1.text()
  seen.push(text1)
  t.equal(response1.status, 200)
  const body1 = JSON.parse(text1) as Record<string, string>

  const identity = () => app.deps.db.selectFrom('wechat_identities').selectAll().where('appid', '=', DEV_APPID).where('openid', '=', openid).executeTakeFirstOrThrow()
  const row1 = await identity()
  t.not(row1.session_key_enc, firstKey)
  t.notOk(row1.session_key_enc.includes(firstKey), 'not stored in the clear')
  t.notOk(row1.session_key_enc.includes(Buffer.from(firstKey, 'base64').toString('hex')), 'not stored as hex either')
  t.equal(app.deps.secretBox.open(row1.session_key_enc, `${DEV_APPID}:${openid}`), firstKey)
  t.throws(() => app.deps.secretBox.open(row1.session_key_enc, `${DEV_APPID}:oSomeoneElse`), 'bound to its identity')

  const code2 = await app.wxLogin({ openid, session_key: secondKey })
  const response2 = await exchange(app, code2, { scope: 'openid profile phone' })
  const text2 = await response2.text()
  seen.push(text2)
  t.equal(response2.status, 200)
  const body2 = JSON.parse(text2) as Record<string, string>
  t.equal(subOf(body2), subOf(body1))

  const rows = await app.deps.db.selectFrom('wechat_identities').selectAll().execute()
  t.equal(rows.length, 1, 'one identity, updated in place')
  const row2 = await identity()
  t.equal(app.deps.secretBox.open(row2.session_key_enc, `${DEV_APPID}:${openid}`), secondKey, 'the newest session_key wins')

  // Error answers must not carry it either.
  const reuse = await exchange(app, code2)
  seen.push(await reuse.text())
  t.equal(reuse.status, 400)

  for (const key of [firstKey, secondKey]) {
    for (const text of seen) t.notOk(text.includes(key), 'session_key in no response body')
    for (const token of [body1.access_token, body1.refresh_token, body2.access_token, body2.refresh_token, body2.id_token]) {
      t.notOk(JSON.stringify(decodeJwt(token as string)).includes(key), 'session_key in no token claim')
    }
  }
  t.ok(app.logs.length > 0, 'the app logged')
  const secrets = [firstKey, secondKey, code1, code2, DEV_SECRET, body1.access_token, body1.refresh_token, body2.refresh_token]
  const leaked = app.logs.filter((line) => secrets.some((secret) => line.includes(secret as string)))
  t.same(leaked, [], 'no session_key, code, AppSecret or token in any log line')
  t.ok(app.logs.some((line) => line.includes('"event":"login"')), 'logins are logged (by ids)')
})

t.test('a disabled user is refused with invalid_grant and no login is recorded', async (t) => {
  const app = await startTestApp(t)
  const sub = subOf(await app.login({ openid: 'oDisabled' }))
  await app.deps.db.updateTable('users').set({ disabled_at: Math.floor(app.clock.now() / 1000) }).where('id', '=', sub).execute()
  const before = await rowCounts(app.deps)
  t.same(before, { users: 1, wechat_identities: 1, login_sessions: 1})

  const code = await app.wxLogin({ openid: 'oDisabled' })
  const response = await exchange(app, code)
  const body = await oauthError(t, response, 400, 'invalid_grant')
  t.match(body.error_description, /this user is disabled/, 'says why')
  t.notOk(JSON.stringify(body).includes(sub), 'the sub is not echoed')
  t.same(await rowCounts(app.deps), before, 'no new login_sessions row')
  const refused = await app.deps.db.selectFrom('audit_events').selectAll().where('event', '=', 'login_refused_user_disabled').execute()
  t.same(refused.map((event) => event.sub), [sub], 'the refused login is audited')

  // Other users still log in.
  const other = await app.login({ openid: 'oEnabled' })
  t.not(subOf(other), sub)
})

t.test('a user WeChat blocks as high-risk (40226) is refused with invalid_grant, audited, nothing written', async (t) => {
  // A WeChat that blocks every user: the simulator has no such mode.
  const wechat = createServer((req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify(req.url?.startsWith('/sns/jscode2session?') ? { errcode: 40226, errmsg: 'high risk user' } : { errcode: 40013, errmsg: 'invalid appid' }))
  })
  await new Promise<void>((resolve) => wechat.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => wechat.close(() => resolve())))
  const { port } = wechat.address() as AddressInfo
  const app = await startTestApp(t, { WECHAT_APPS: `${APP_A}:s1`, WECHAT_API_BASE: `http://127.0.0.1:${port}` })

  const response = await exchange(app, 'code-of-a-blocked-user', { client_id: APP_A })
  const body = await oauthError(t, response, 400, 'invalid_grant')
  t.match(body.error_description, /WeChat blocked this user/, 'says why')
  t.same(await counts(app), { users: 0, wechat_identities: 0, login_sessions: 0 }, 'nothing written')
  const events = await app.deps.db.selectFrom('audit_events').selectAll().where('event', '=', 'login_blocked_by_wechat').execute()
  t.equal(events.length, 1, 'the refusal is audited')
  t.match(events[0], { client_id: APP_A, detail: 'errcode=40226' })
  const again = await exchange(app, 'code-of-a-blocked-user', { client_id: APP_A })
  await oauthError(t, again, 400, 'invalid_grant')
})
