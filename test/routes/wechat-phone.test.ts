import t, { type Test } from 'tap'
import { DEV_APP } from '../../src/config.js'
import { createAccessTokenManager } from '../../src/wechat/access-token.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { sharedKeysDir } from '../helpers/keys.js'

// One keys folder for every app of this file: generating an RSA key per app is the slow part.
const KEYS_DIR = sharedKeysDir()

function start(t: Test, env: Record<string, string> = {}): Promise<TestApp> {
  return startTestApp(t, { MINIGATE_KEYS_DIR: KEYS_DIR, ...env })
}

function payloadOf(jwt: string): Record<string, any> {
  return JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString()) as Record<string, any>
}

/** What the getPhoneNumber button gives the mini-program. */
async function phoneCode(app: TestApp, body: Record<string, string> = {}): Promise<string> {
  const response = await app.postJson('/_dev/wechat/phone-code', { phone: '13800138000', ...body })
  if (response.status !== 200) throw new Error(`phone-code failed: ${response.status} ${await response.text()}`)
  return ((await response.json()) as { code: string }).code
}

function bind(app: TestApp, accessToken: string, code: string): Promise<Response> {
  return app.postJson('/wechat/phone', { code }, { authorization: `Bearer ${accessToken}` })
}

async function userRow(app: TestApp, sub: string) {
  return app.deps.db.selectFrom('users').selectAll().where('id', '=', sub).executeTakeFirstOrThrow()
}

async function userinfo(app: TestApp, accessToken: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${accessToken}` } })
  if (response.status !== 200) throw new Error(`userinfo failed: ${response.status}`)
  return (await response.json()) as Record<string, unknown>
}

/** Asserts an error answer (RFC 6749 §5.2 body) and returns it. */
async function expectError(t: Test, response: Response, status: number, error: string, name = error): Promise<Record<string, unknown>> {
  const text = await response.text()
  t.equal(response.status, status, `${name}: HTTP ${status} (${text})`)
  t.equal(response.headers.get('cache-control'), 'no-store', `${name}: no-store`)
  const body = JSON.parse(text) as Record<string, unknown>
  t.equal(body.error, error, `${name}: ${error}`)
  t.type(body.error_description, 'string')
  t.same(Object.keys(body).sort(), ['error', 'error_description'], `${name}: only error and error_description`)
  return body
}

t.test('a phone code binds the verified number (JSON body)', async (t) => {
  const app = await start(t)
  const tokens = await app.login({ scope: 'phone', openid: 'o-phone' })
  const sub = payloadOf(tokens.access_token).sub as string
  app.clock.advance(10)
  const code = await phoneCode(app)

  const response = await bind(app, tokens.access_token, code)
  t.equal(response.status, 200)
  t.match(response.headers.get('content-type'), /^application\/json/)
  t.equal(response.headers.get('cache-control'), 'no-store')
  t.same(await response.json(), { phone_number: '+8613800138000', phone_number_verified: true, country_code: '86', pure_phone_number: '13800138000' })

  const row = await userRow(app, sub)
  const now = Math.floor(app.clock.now() / 1000)
  t.equal(row.phone_number, '+8613800138000')
  t.equal(row.phone_country_code, '86')
  t.equal(row.phone_verified_at, now, 'verified now')
  t.equal(row.updated_at, now, 'updated_at moves')
  const event = await app.deps.db.selectFrom('audit_events').selectAll().where('event', '=', 'phone_bound').executeTakeFirst()
  t.match(event, { sub, client_id: DEV_APP.appid }, 'the binding is audited')

  t.match(await userinfo(app, tokens.access_token), { sub, phone_number: '+8613800138000', phone_number_verified: true }, 'GET /userinfo shows it with scope phone')
  const profileOnly = await app.login({ scope: 'profile', openid: 'o-phone' })
  const asProfile = await userinfo(app, profileOnly.access_token)
  t.notOk('phone_number' in asProfile, 'not without scope phone')
  t.notOk('phone_number_verified' in asProfile)

  const withId = await app.login({ scope: 'openid phone', openid: 'o-phone' })
  t.type(withId.id_token, 'string')
  t.match(payloadOf(withId.id_token as string), { sub, phone_number: '+8613800138000', phone_number_verified: true }, 'a new login with openid phone: in the id_token')
  const idWithoutPhone = await app.login({ scope: 'openid', openid: 'o-phone' })
  t.notOk('phone_number' in payloadOf(idWithoutPhone.id_token as string), 'an id_token without scope phone has no number')

  t.notOk(app.logs.some((line) => line.includes(code)), 'the phone code is never logged')
  t.equal(app.simulator.calls.getuserphonenumber, 1)
})

t.test('a form body works too, and a profile-scoped token may bind', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const response = await app.postForm('/wechat/phone', { code: await phoneCode(app) }, { authorization: `Bearer ${tokens.access_token}` })
  t.equal(response.status, 200)
  t.match(await response.json(), { phone_number: '+8613800138000', phone_number_verified: true })
})

t.test('another country code', async (t) => {
  const app = await start(t)
  const tokens = await app.login({ scope: 'phone' })
  const response = await bind(app, tokens.access_token, await phoneCode(app, { phone: '4155550100', country_code: '1' }))
  t.equal(response.status, 200)
  t.same(await response.json(), { phone_number: '+14155550100', phone_number_verified: true, country_code: '1', pure_phone_number: '4155550100' })
  t.equal((await userRow(app, payloadOf(tokens.access_token).sub)).phone_country_code, '1')
})

t.test('a new binding replaces the number', async (t) => {
  const app = await start(t)
  const tokens = await app.login({ scope: 'phone' })
  t.equal((await bind(app, tokens.access_token, await phoneCode(app))).status, 200)
  app.clock.advance(60)
  t.equal((await bind(app, tokens.access_token, await phoneCode(app, { phone: '13900139000' }))).status, 200)
  const row = await userRow(app, payloadOf(tokens.access_token).sub)
  t.equal(row.phone_number, '+8613900139000')
  t.equal(row.phone_verified_at, Math.floor(app.clock.now() / 1000))
})

t.test('a phone code works once; WeChat is not asked twice', async (t) => {
  const app = await start(t)
  const tokens = await app.login({ scope: 'phone' })
  const code = await phoneCode(app)
  t.equal((await bind(app, tokens.access_token, code)).status, 200)
  t.equal(app.simulator.calls.getuserphonenumber, 1)
  const again = await expectError(t, await bind(app, tokens.access_token, code), 400, 'invalid_request', 'second use')
  t.match(again.error_description, /already used/)
  t.equal(app.simulator.calls.getuserphonenumber, 1, 'the reused code never reached WeChat (each call is billed)')

  const other = await app.login({ scope: 'phone', openid: 'o-other' })
  await expectError(t, await bind(app, other.access_token, code), 400, 'invalid_request', "another user's replay")
  t.equal(app.simulator.calls.getuserphonenumber, 1)
})

t.test('concurrent requests with one code: one reaches WeChat', async (t) => {
  const app = await start(t)
  const tokens = await app.login({ scope: 'phone' })
  const code = await phoneCode(app)
  const responses = await Promise.all(Array.from({ length: 5 }, () => bind(app, tokens.access_token, code)))
  t.same(responses.map((response) => response.status).sort(), [200, 400, 400, 400, 400])
  t.equal(app.simulator.calls.getuserphonenumber, 1)
})

t.test('an unknown or expired code is 400 invalid_request', async (t) => {
  const app = await start(t)
  const tokens = await app.login({ scope: 'phone' })
  const sub = payloadOf(tokens.access_token).sub as string
  await expectError(t, await bind(app, tokens.access_token, 'never-issued-by-wechat'), 400, 'invalid_request', 'unknown code')
  t.equal(app.simulator.calls.getuserphonenumber, 1, 'WeChat said 40029')

  const expiring = await phoneCode(app)
  app.clock.advance(301)
  await expectError(t, await bind(app, tokens.access_token, expiring), 400, 'invalid_request', 'expired code')
  t.equal((await userRow(app, sub)).phone_number, null, 'nothing stored')
})

t.test('a number watermarked for another mini-program is refused with 502 and not stored', async (t) => {
  const app = await start(t)
  const tokens = await app.login({ scope: 'phone' })
  const body = await expectError(t, await bind(app, tokens.access_token, await phoneCode(app, { watermark_appid: 'wxother0000000000' })), 502, 'server_error', 'wrong watermark')
  t.notOk(JSON.stringify(body).includes('13800138000'), 'the number is not disclosed')
  const row = await userRow(app, payloadOf(tokens.access_token).sub)
  t.equal(row.phone_number, null)
  t.equal(row.phone_verified_at, null)
  t.notOk(await app.deps.db.selectFrom('audit_events').selectAll().where('event', '=', 'phone_bound').executeTakeFirst(), 'no phone_bound event')
  t.ok(app.logs.some((line) => line.includes('another watermark appid')), 'logged for the operator')
})

t.test('a malformed code is refused before WeChat is called', async (t) => {
  const app = await start(t)
  const tokens = await app.login({ scope: 'phone' })
  const cases: Array<[string, Record<string, string>]> = [
    ['an empty code', { code: '' }],
    ['no code', {}],
    ['200 characters', { code: 'a'.repeat(200) }],
    ['129 characters', { code: 'a'.repeat(129) }],
    ['non-ASCII', { code: '手机号码验证码' }],
    ['a space inside', { code: 'abc def' }],
    ['a control character', { code: 'abc\u0000def' }],
  ]
  for (const [name, body] of cases) {
    await expectError(t, await app.postJson('/wechat/phone', body, { authorization: `Bearer ${tokens.access_token}` }), 400, 'invalid_request', name)
  }
  const notString = await app.postJson('/wechat/phone', { code: 12345 }, { authorization: `Bearer ${tokens.access_token}` })
  await expectError(t, notString, 400, 'invalid_request', 'a number as code')
  const wrongType = await fetch(`${app.url}/wechat/phone`, { method: 'POST', headers: { authorization: `Bearer ${tokens.access_token}`, 'content-type': 'text/plain' }, body: 'code=x' })
  await expectError(t, wrongType, 415, 'invalid_request', 'text/plain')
  t.equal(app.simulator.calls.getuserphonenumber, 0, 'WeChat was never called')
  t.equal(app.simulator.calls.stable_token, 0, 'not even for an access_token')
  t.equal((await bind(app, tokens.access_token, await phoneCode(app))).status, 200, 'a good code still works')
})

t.test('a Bearer access token is required', async (t) => {
  const app = await start(t)
  const code = await phoneCode(app)
  const none = await app.postJson('/wechat/phone', { code })
  t.equal(none.status, 401)
  t.match(none.headers.get('www-authenticate'), /^Bearer realm="minigate"/)
  const forged = await app.postJson('/wechat/phone', { code }, { authorization: 'Bearer not.a.jwt' })
  t.equal(forged.status, 401)
  t.match(forged.headers.get('www-authenticate'), /error="invalid_token"/)
  const tokens = await app.login()
  const refresh = await app.postJson('/wechat/phone', { code }, { authorization: `Bearer ${tokens.refresh_token}` })
  t.equal(refresh.status, 401, 'a refresh token is not an access token')
  t.equal(app.simulator.calls.getuserphonenumber, 0)
  t.equal((await bind(app, tokens.access_token, code)).status, 200, 'the code was not spent by refused requests')
})

t.test('GET /wechat/phone is 405', async (t) => {
  const app = await start(t)
  const response = await fetch(`${app.url}/wechat/phone`)
  t.equal(response.status, 405)
  t.equal(response.headers.get('allow'), 'POST, DELETE', 'POST binds, DELETE removes')
})

const TRANSIENT: Array<{ mode: string; status: number; error: string; retryAfter: string | null }> = [
  { mode: 'busy', status: 503, error: 'temporarily_unavailable', retryAfter: '2' },
  { mode: 'rate_limit', status: 503, error: 'temporarily_unavailable', retryAfter: '60' },
  { mode: 'timeout', status: 503, error: 'temporarily_unavailable', retryAfter: '5' },
  { mode: 'http_500', status: 502, error: 'server_error', retryAfter: null },
  { mode: 'garbage', status: 502, error: 'server_error', retryAfter: null },
]

t.test('WeChat trouble on getuserphonenumber is 502/503, and the same code works on retry', async (t) => {
  const app = await start(t, { WECHAT_TIMEOUT_MS: '300' })
  const tokens = await app.login({ scope: 'phone' })
  const sub = payloadOf(tokens.access_token).sub as string
  for (const { mode, status, error, retryAfter } of TRANSIENT) {
    await t.test(mode, async (t) => {
      const code = await phoneCode(app)
      const calls = app.simulator.calls.getuserphonenumber
      t.equal((await app.postJson('/_dev/wechat/faults', { api: 'getuserphonenumber', mode, count: '1' })).status, 200)
      const response = await bind(app, tokens.access_token, code)
      const body = await expectError(t, response, status, error, mode)
      t.equal(response.headers.get('retry-after'), retryAfter, `Retry-After ${retryAfter}`)
      t.notOk(/errcode|<html>|api\.weixin|_dev/.test(JSON.stringify(body)), 'no internals in the body')
      t.equal((await userRow(app, sub)).phone_number, null, 'nothing stored')
      const retry = await bind(app, tokens.access_token, code)
      t.equal(retry.status, 200, 'the same code works on retry')
      t.match(await retry.json(), { phone_number: '+8613800138000' })
      t.equal(app.simulator.calls.getuserphonenumber, calls + 2, 'one faulty call, one good one')
      await app.deps.db.updateTable('users').set({ phone_number: null }).where('id', '=', sub).execute()
    })
  }
  t.equal(app.simulator.calls.stable_token, 1, 'the access_token was not thrown away for a fault')
})

t.test('WeChat trouble fetching the access_token is 502/503 too; the code is kept', async (t) => {
  const app = await start(t, { WECHAT_TIMEOUT_MS: '300' })
  /**
   * A new access_token manager with an empty cache, so the next request fetches a token. Its busy
   * backoff is short to keep this test fast (busy answers on the fetch are retried).
   */
  const freshTokenCache = () => {
    app.deps.wechatTokens.close()
    app.deps.wechatTokens = createAccessTokenManager({ wechat: app.deps.wechat, clock: app.clock, log: app.deps.log, api: 'stable_token', busyBackoffMs: [1, 1] })
  }
  const tokens = await app.login({ scope: 'phone' })
  const faults = TRANSIENT.map((fault) => ({ ...fault, count: fault.mode === 'busy' ? '3' : '1' }))
  for (const { mode, status, error, retryAfter, count } of faults) {
    await t.test(mode, async (t) => {
      freshTokenCache()
      const code = await phoneCode(app)
      const calls = { ...app.simulator.calls }
      t.equal((await app.postJson('/_dev/wechat/faults', { api: 'stable_token', mode, count })).status, 200)
      const response = await bind(app, tokens.access_token, code)
      await expectError(t, response, status, error, mode)
      t.equal(response.headers.get('retry-after'), retryAfter, `Retry-After ${retryAfter}`)
      t.equal(app.simulator.calls.stable_token, calls.stable_token + Number(count), mode === 'busy' ? 'busy: one try and two retries' : 'not retried')
      t.equal(app.simulator.calls.getuserphonenumber, calls.getuserphonenumber, 'getuserphonenumber was never called')
      const retry = await bind(app, tokens.access_token, code)
      t.equal(retry.status, 200, 'the same code works once WeChat is back')
      t.equal(app.simulator.calls.getuserphonenumber, calls.getuserphonenumber + 1)
    })
  }

  await t.test('one busy answer is absorbed by the retry', async (t) => {
    freshTokenCache()
    const calls = app.simulator.calls.stable_token
    await app.postJson('/_dev/wechat/faults', { api: 'stable_token', mode: 'busy', count: '1' })
    t.equal((await bind(app, tokens.access_token, await phoneCode(app))).status, 200)
    t.equal(app.simulator.calls.stable_token, calls + 2)
  })
})

t.test("a code of another mini-program is refused (WeChat knows it for its own app only)", async (t) => {
  const app = await start(t, { WECHAT_APPS: 'wxAAAA:secret-a,wxBBBB:secret-b', MINIGATE_WECHAT_SIMULATOR: '1' })
  const tokensA = await app.login({ appid: 'wxAAAA', scope: 'phone' })
  const codeB = await phoneCode(app, { appid: 'wxBBBB' })
  await expectError(t, await bind(app, tokensA.access_token, codeB), 400, 'invalid_request', "app B's code with app A's token")
  const codeA = await phoneCode(app, { appid: 'wxAAAA' })
  t.equal((await bind(app, tokensA.access_token, codeA)).status, 200, "app A's own code works")
})

t.test('binding is limited per user, before WeChat is called', async (t) => {
  const app = await start(t, { MINIGATE_RATE_LIMITS: 'wechat=2' })
  const tokens = await app.login({ scope: 'phone', openid: 'o-phone-limited' })
  const other = await app.login({ scope: 'phone', openid: 'o-phone-limited-other' })
  for (let i = 0; i < 2; i += 1) t.equal((await bind(app, tokens.access_token, await phoneCode(app))).status, 200, `binding ${i + 1} of the minute`)
  const calls = app.simulator.calls.getuserphonenumber
  const code = await phoneCode(app)
  const limited = await bind(app, tokens.access_token, code)
  t.equal(limited.headers.get('retry-after'), '30')
  const body = await expectError(t, limited, 429, 'too_many_requests', 'the third')
  t.match(body.error_description, /wechat\/phone/)
  t.equal(app.simulator.calls.getuserphonenumber, calls, 'WeChat was not called (each call is billed)')
  t.equal((await bind(app, other.access_token, await phoneCode(app))).status, 200, 'another user is not limited')
  app.clock.advance(30)
  t.equal((await bind(app, tokens.access_token, code)).status, 200, 'the code refused by the limit still works after Retry-After')
})
