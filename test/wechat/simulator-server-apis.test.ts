import t, { type Test } from 'tap'
import { DEV_APP } from '../../src/config.js'
import { sessionKeySignature } from '../../src/wechat/crypto.js'
import { SimulatorState } from '../../src/wechat/simulator/state.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { sharedKeysDir } from '../helpers/keys.js'

// One keys folder for every app of this file: generating an RSA key per app is the slow part.
const KEYS_DIR = sharedKeysDir()

function start(t: Test, env: Record<string, string> = {}): Promise<TestApp> {
  return startTestApp(t, { MINIGATE_KEYS_DIR: KEYS_DIR, ...env })
}

type Answer = { status: number; body: Record<string, any> }

async function answer(response: Response): Promise<Answer> {
  return { status: response.status, body: (await response.json()) as Record<string, any> }
}

function base(app: TestApp): string {
  return `${app.url}/_dev/wechat`
}

/** POST /cgi-bin/stable_token exactly as a WeChat SDK does. */
async function stableToken(app: TestApp, body: Record<string, unknown> = {}): Promise<Answer> {
  const json = { grant_type: 'client_credential', appid: DEV_APP.appid, secret: DEV_APP.secret, force_refresh: false, ...body }
  return answer(await fetch(`${base(app)}/cgi-bin/stable_token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(json) }))
}

/** GET /cgi-bin/token exactly as a WeChat SDK does. */
async function plainToken(app: TestApp, overrides: Record<string, string> = {}): Promise<Answer> {
  const query = new URLSearchParams({ grant_type: 'client_credential', appid: DEV_APP.appid, secret: DEV_APP.secret, ...overrides })
  return answer(await fetch(`${base(app)}/cgi-bin/token?${query.toString()}`))
}

async function getPhoneNumber(app: TestApp, accessToken: string, body: unknown): Promise<Answer> {
  const query = new URLSearchParams({ access_token: accessToken })
  return answer(
    await fetch(`${base(app)}/wxa/business/getuserphonenumber?${query.toString()}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    }),
  )
}

async function checkSession(app: TestApp, query: Record<string, string>): Promise<Answer> {
  return answer(await fetch(`${base(app)}/wxa/checksession?${new URLSearchParams(query).toString()}`))
}

/** The errcode a token gets from getuserphonenumber with an unknown code: 40029 means the token was accepted. */
async function probe(app: TestApp, accessToken: string): Promise<number> {
  const { status, body } = await getPhoneNumber(app, accessToken, { code: 'no-such-code' })
  if (status !== 200) throw new Error(`unexpected HTTP ${status}`)
  return body.errcode as number
}

const ACCEPTED = 40029

async function phoneCode(app: TestApp, body: Record<string, string>): Promise<string> {
  const response = await app.postJson('/_dev/wechat/phone-code', body)
  if (response.status !== 200) throw new Error(`phone-code failed: ${response.status} ${await response.text()}`)
  return ((await response.json()) as { code: string }).code
}

t.test('stable_token: one token for every caller while it is valid', async (t) => {
  const app = await start(t)
  const first = await stableToken(app)
  t.equal(first.status, 200)
  t.match(first.body, { access_token: String, expires_in: 7200 })
  t.notOk('errcode' in first.body, 'no errcode on success')
  const second = await stableToken(app)
  t.equal(second.body.access_token, first.body.access_token, 'a second caller gets the same token')

  app.clock.advance(1000)
  const later = await stableToken(app)
  t.equal(later.body.access_token, first.body.access_token, 'still the same 1000 s later')
  t.equal(later.body.expires_in, 6200, 'expires_in counts down')
  t.equal(await probe(app, first.body.access_token), ACCEPTED, 'the token works')
  t.equal(app.simulator.calls.stable_token, 3)

  app.clock.advance(6200)
  t.equal(await probe(app, first.body.access_token), 42001, 'expired after 7200 s')
  const renewed = await stableToken(app)
  t.not(renewed.body.access_token, first.body.access_token, 'an expired stable token is replaced')
  t.equal(renewed.body.expires_in, 7200)
  t.equal(await probe(app, renewed.body.access_token), ACCEPTED)
})

t.test('stable_token force_refresh: a new token; the old one lives 5 more minutes', async (t) => {
  const app = await start(t)
  const old = (await stableToken(app)).body.access_token as string
  const forced = await stableToken(app, { force_refresh: true })
  t.equal(forced.status, 200)
  t.not(forced.body.access_token, old, 'force_refresh issues a new token')
  t.equal(forced.body.expires_in, 7200)
  t.equal((await stableToken(app)).body.access_token, forced.body.access_token, 'later callers get the new token')

  app.clock.advance(299)
  t.equal(await probe(app, old), ACCEPTED, 'the old token still works within 5 minutes')
  t.equal(await probe(app, forced.body.access_token), ACCEPTED)
  app.clock.advance(1)
  t.ok([40001, 42001].includes(await probe(app, old)), 'the old token dies after 5 minutes')
  t.equal(await probe(app, forced.body.access_token), ACCEPTED, 'the new token lives on')
  t.equal((await stableToken(app, { force_refresh: 'true' })).body.access_token, forced.body.access_token, 'only a JSON true forces a refresh')
})

t.test('/cgi-bin/token: a new token each call; the previous one dies after 300 s', async (t) => {
  const app = await start(t)
  const first = await plainToken(app)
  t.equal(first.status, 200)
  t.match(first.body, { access_token: String, expires_in: 7200 })
  const second = await plainToken(app)
  t.not(second.body.access_token, first.body.access_token, 'each call issues a new token')
  t.equal(app.simulator.calls.token, 2)

  app.clock.advance(300 - 1)
  t.equal(await probe(app, first.body.access_token), ACCEPTED, 'the previous token overlaps for 5 minutes')
  app.clock.advance(1)
  t.ok([40001, 42001].includes(await probe(app, first.body.access_token)), 'then it dies')
  t.equal(await probe(app, second.body.access_token), ACCEPTED, 'the newest one lives on')

  const third = await plainToken(app)
  app.clock.advance(300)
  t.ok([40001, 42001].includes(await probe(app, second.body.access_token)), 'each new fetch kills the one before')
  t.equal(await probe(app, third.body.access_token), ACCEPTED)
  app.clock.advance(7200 - 300)
  t.equal(await probe(app, third.body.access_token), 42001, 'even the newest expires after 7200 s')
})

t.test('plain and stable tokens do not invalidate each other', async (t) => {
  const app = await start(t)
  const stable = (await stableToken(app)).body.access_token as string
  await plainToken(app)
  await plainToken(app)
  app.clock.advance(600)
  t.equal(await probe(app, stable), ACCEPTED, 'plain fetches leave the stable token alone')
  const plain = (await plainToken(app)).body.access_token as string
  await stableToken(app, { force_refresh: true })
  app.clock.advance(600)
  t.equal(await probe(app, plain), ACCEPTED, 'a forced stable refresh leaves the plain token alone')
})

t.test('token APIs check their caller like WeChat, with HTTP 200', async (t) => {
  const app = await start(t)
  const cases: Array<[string, () => Promise<Answer>, number]> = [
    ['stable_token: wrong secret', () => stableToken(app, { secret: 'wrong' }), 40125],
    ['stable_token: no secret', () => stableToken(app, { secret: undefined }), 40125],
    ['stable_token: unknown appid', () => stableToken(app, { appid: 'wxunknown' }), 40013],
    ['stable_token: wrong grant_type', () => stableToken(app, { grant_type: 'authorization_code' }), 40002],
    ['token: wrong secret', () => plainToken(app, { secret: 'wrong' }), 40125],
    ['token: unknown appid', () => plainToken(app, { appid: 'wxunknown' }), 40013],
    ['token: wrong grant_type', () => plainToken(app, { grant_type: 'client_credentials' }), 40002],
  ]
  for (const [name, call, errcode] of cases) {
    const { status, body } = await call()
    t.equal(status, 200, `${name}: HTTP 200`)
    t.equal(body.errcode, errcode, `${name}: errcode ${errcode}`)
    t.type(body.errmsg, 'string', `${name}: errmsg`)
    t.notOk('access_token' in body, `${name}: no token`)
  }
  const notJson = await fetch(`${base(app)}/cgi-bin/stable_token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{grant_type' })
  t.equal(notJson.status, 200, 'an unreadable body: HTTP 200')
  t.equal(((await notJson.json()) as { errcode: number }).errcode, 40002)
})

t.test('getuserphonenumber: phone_info for a code, once', async (t) => {
  const app = await start(t)
  const token = (await stableToken(app)).body.access_token as string
  const code = await phoneCode(app, { phone: '13800138000' })
  const first = await getPhoneNumber(app, token, { code })
  t.equal(first.status, 200)
  t.equal(first.body.errcode, 0)
  t.same(first.body.phone_info, {
    phoneNumber: '13800138000',
    purePhoneNumber: '13800138000',
    countryCode: '86',
    watermark: { timestamp: Math.floor(app.clock.now() / 1000), appid: DEV_APP.appid },
  })
  const again = await getPhoneNumber(app, token, { code })
  t.equal(again.status, 200)
  t.equal(again.body.errcode, 40029, 'a code works once')
  t.notOk('phone_info' in again.body)

  const us = await getPhoneNumber(app, token, { code: await phoneCode(app, { phone: '4155550100', country_code: '1' }) })
  t.match(us.body.phone_info, { phoneNumber: '+14155550100', purePhoneNumber: '4155550100', countryCode: '1' }, 'another country')

  const marked = await getPhoneNumber(app, token, { code: await phoneCode(app, { phone: '13800138000', watermark_appid: 'wxother0000000000' }) })
  t.equal(marked.body.phone_info.watermark.appid, 'wxother0000000000', 'a chosen watermark appid')

  const expiring = await phoneCode(app, { phone: '13800138000' })
  app.clock.advance(300)
  t.equal((await getPhoneNumber(app, token, { code: expiring })).body.errcode, 40029, 'a code expires after 5 minutes')

  for (const [name, body] of [
    ['no code', {}],
    ['a number as code', { code: 42 }],
    ['not JSON', 'code='],
  ] as const) {
    const refused = await getPhoneNumber(app, token, body)
    t.equal(refused.status, 200, `${name}: HTTP 200`)
    t.equal(refused.body.errcode, 40029, `${name}: 40029`)
  }
  t.equal(app.simulator.calls.getuserphonenumber, 8)
})

t.test('getuserphonenumber refuses a bad access_token with 40001 and HTTP 200, keeping the code', async (t) => {
  const app = await start(t)
  const code = await phoneCode(app, { phone: '13800138000' })
  for (const token of ['not-a-token', '', 'S_forged']) {
    const { status, body } = await getPhoneNumber(app, token, { code })
    t.equal(status, 200, `${JSON.stringify(token)}: HTTP 200`)
    t.equal(body.errcode, 40001, `${JSON.stringify(token)}: 40001`)
    t.type(body.errmsg, 'string')
  }
  const noToken = await answer(await fetch(`${base(app)}/wxa/business/getuserphonenumber`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code }) }))
  t.equal(noToken.body.errcode, 40001, 'no access_token at all: 40001')

  const token = (await stableToken(app)).body.access_token as string
  t.equal((await getPhoneNumber(app, token, { code })).body.errcode, 0, 'the refused calls did not spend the code')
})

t.test('getuserphonenumber: a code belongs to its app', async (t) => {
  const app = await start(t, { WECHAT_APPS: 'wxAAAA:secret-a,wxBBBB:secret-b', MINIGATE_WECHAT_SIMULATOR: '1' })
  const tokenB = (await stableToken(app, { appid: 'wxBBBB', secret: 'secret-b' })).body.access_token as string
  const codeA = await phoneCode(app, { appid: 'wxAAAA', phone: '13800138000' })
  t.equal((await getPhoneNumber(app, tokenB, { code: codeA })).body.errcode, 40029, "another app's code is 40029")
  const codeB = await phoneCode(app, { appid: 'wxBBBB', phone: '13800138000' })
  const own = await getPhoneNumber(app, tokenB, { code: codeB })
  t.equal(own.body.phone_info.watermark.appid, 'wxBBBB', 'the watermark names the app')
})

t.test('/access-tokens/invalidate kills every token of the app', async (t) => {
  const app = await start(t)
  const stable = (await stableToken(app)).body.access_token as string
  const plain = (await plainToken(app)).body.access_token as string
  const response = await app.postJson('/_dev/wechat/access-tokens/invalidate', {})
  t.equal(response.status, 200)
  t.same(await response.json(), { appid: DEV_APP.appid, invalidated: true })
  t.equal(await probe(app, stable), 40001)
  t.equal(await probe(app, plain), 40001)
  const fresh = (await stableToken(app)).body.access_token as string
  t.not(fresh, stable, 'stable_token issues a new token afterwards')
  t.equal(await probe(app, fresh), ACCEPTED)
  t.equal((await app.postJson('/_dev/wechat/access-tokens/invalidate', { appid: 'wxunknown' })).status, 400, 'an unknown appid is refused')
})

t.test('checksession: HMAC-SHA256 of the current session_key', async (t) => {
  const app = await start(t)
  const sessionKey = 'HyVFkGl5F5OQWJZZaNzBBg=='
  await app.wxLogin({ openid: 'o-check', session_key: sessionKey })
  const accessToken = (await stableToken(app)).body.access_token as string
  const query = { access_token: accessToken, openid: 'o-check', signature: sessionKeySignature(sessionKey), sig_method: 'hmac_sha256' }

  const ok = await checkSession(app, query)
  t.equal(ok.status, 200)
  t.same(ok.body, { errcode: 0, errmsg: 'ok' })

  const cases: Array<[string, Record<string, string>, number]> = [
    ['a wrong signature', { signature: sessionKeySignature('AAAAAAAAAAAAAAAAAAAAAA==') }, 87009],
    ['an uppercase signature', { signature: sessionKeySignature(sessionKey).toUpperCase() }, 87009],
    ['another sig_method', { sig_method: 'sha1' }, 87009],
    ['an unknown openid', { openid: 'o-nobody' }, 87009],
    ['a bad access_token', { access_token: 'nope' }, 40001],
  ]
  for (const [name, overrides, errcode] of cases) {
    const { status, body } = await checkSession(app, { ...query, ...overrides })
    t.equal(status, 200, `${name}: HTTP 200`)
    t.equal(body.errcode, errcode, `${name}: ${errcode}`)
  }

  await app.wxLogin({ openid: 'o-check' })
  t.equal((await checkSession(app, query)).body.errcode, 87009, 'after a new wx.login() the old session_key is no longer valid')
  const fresh = app.simulator.users.get(`${DEV_APP.appid}:o-check`)?.sessionKey as string
  t.equal((await checkSession(app, { ...query, signature: sessionKeySignature(fresh) })).body.errcode, 0, 'the new one is')
  t.equal(app.simulator.calls.checksession, 8)
})

t.test('/phone-code and /encrypt validate their input', async (t) => {
  const app = await start(t)
  for (const [name, body] of [
    ['no phone', {}],
    ['letters', { phone: '1380013800a' }],
    ['a + prefix', { phone: '+8613800138000' }],
    ['too long', { phone: '1'.repeat(21) }],
    ['a bad country_code', { phone: '13800138000', country_code: '+86' }],
    ['an unknown app', { phone: '13800138000', appid: 'wxunknown' }],
  ] as const) {
    const response = await app.postJson('/_dev/wechat/phone-code', body)
    t.equal(response.status, 400, `phone-code, ${name}: 400`)
    t.equal(((await response.json()) as { error: string }).error, 'invalid_request')
  }
  const neverLoggedIn = await app.postJson('/_dev/wechat/encrypt', { data: '{}' })
  t.equal(neverLoggedIn.status, 400, 'encrypt for a user who never logged in')
  await app.wxLogin()
  for (const data of ['', 'not json', '[1]', '"text"']) {
    t.equal((await app.postJson('/_dev/wechat/encrypt', { data })).status, 400, `encrypt of ${JSON.stringify(data)}: 400`)
  }
  const sealed = await app.postJson('/_dev/wechat/encrypt', { data: '{"a":1}' })
  t.equal(sealed.status, 200)
  t.match(await sealed.json(), { encrypted_data: /^[A-Za-z0-9+/]+=*$/, iv: /^[A-Za-z0-9+/]{22}==$/ })
  t.equal(app.simulator.users.get(`${DEV_APP.appid}:${SimulatorState.defaultOpenid(DEV_APP.appid)}`)?.sessionKey.length, 24)
})

t.test('every fault mode on every API has WeChat wire shape', async (t) => {
  const app = await start(t)
  await app.wxLogin({ openid: 'o-faults', session_key: 'HyVFkGl5F5OQWJZZaNzBBg==' })
  const accessToken = (await stableToken(app)).body.access_token as string
  const code = await app.wxLogin()
  const phone = await phoneCode(app, { phone: '13800138000' })

  // Each API called as WeChat's clients call it, with input that succeeds (or gets an ordinary errcode).
  const requests: Record<string, (signal?: AbortSignal) => Promise<Response>> = {
    jscode2session: (signal) =>
      fetch(`${base(app)}/sns/jscode2session?${new URLSearchParams({ appid: DEV_APP.appid, secret: DEV_APP.secret, js_code: code, grant_type: 'authorization_code' }).toString()}`, signal ? { signal } : {}),
    stable_token: (signal) =>
      fetch(`${base(app)}/cgi-bin/stable_token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ grant_type: 'client_credential', appid: DEV_APP.appid, secret: DEV_APP.secret }),
        ...(signal ? { signal } : {}),
      }),
    token: (signal) =>
      fetch(`${base(app)}/cgi-bin/token?${new URLSearchParams({ grant_type: 'client_credential', appid: DEV_APP.appid, secret: DEV_APP.secret }).toString()}`, signal ? { signal } : {}),
    getuserphonenumber: (signal) =>
      fetch(`${base(app)}/wxa/business/getuserphonenumber?access_token=${accessToken}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ code: phone }),
        ...(signal ? { signal } : {}),
      }),
    checksession: (signal) =>
      fetch(`${base(app)}/wxa/checksession?${new URLSearchParams({ access_token: accessToken, openid: 'o-faults', signature: sessionKeySignature('HyVFkGl5F5OQWJZZaNzBBg=='), sig_method: 'hmac_sha256' }).toString()}`, signal ? { signal } : {}),
  }
  const arm = async (api: string, mode: string) => {
    const response = await app.postJson('/_dev/wechat/faults', { api, mode, count: '1' })
    if (response.status !== 200) throw new Error(`arming ${api} ${mode} failed`)
  }

  for (const [api, request] of Object.entries(requests)) {
    await t.test(api, async (t) => {
      await arm(api, 'busy')
      let response = await request()
      t.equal(response.status, 200, 'busy: HTTP 200')
      t.match(await response.json(), { errcode: -1, errmsg: String }, 'busy: errcode -1')

      await arm(api, 'rate_limit')
      response = await request()
      t.equal(response.status, 200, 'rate_limit: HTTP 200')
      t.match(await response.json(), { errcode: 45011, errmsg: String }, 'rate_limit: errcode 45011')

      await arm(api, 'http_500')
      response = await request()
      t.equal(response.status, 500, 'http_500: HTTP 500')
      t.match(response.headers.get('content-type'), /^text\/html/, 'http_500: an HTML page')
      t.match(await response.text(), /500/)

      await arm(api, 'garbage')
      response = await request()
      t.equal(response.status, 200, 'garbage: HTTP 200')
      t.match(response.headers.get('content-type'), /^application\/json/, 'garbage: claims to be JSON')
      const text = await response.text()
      t.throws(() => JSON.parse(text), 'garbage: is not')

      await arm(api, 'timeout')
      await t.rejects(request(AbortSignal.timeout(100)), { name: 'TimeoutError' }, 'timeout: no answer before the caller gives up')

      const normal = await request()
      t.equal(normal.status, 200, 'after the faults the API answers normally')
      const body = (await normal.json()) as Record<string, unknown>
      t.ok(body.errcode === undefined || body.errcode === 0, `after the faults: a success (${JSON.stringify(body.errcode)})`)
      t.equal(app.simulator.calls[api as keyof SimulatorState['calls']] >= 6, true, 'every call was counted')
    })
  }
})
