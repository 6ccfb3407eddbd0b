import t, { type Test } from 'tap'
import { DEV_APP } from '../../src/config.js'
import { SimulatorState } from '../../src/wechat/simulator/state.js'
import { startTestApp, type TestApp } from '../helpers/app.js'

const SESSION_KEY = 'HyVFkGl5F5OQWJZZaNzBBg=='

function start(t: Test, env: Record<string, string> = {}): Promise<TestApp> {
  return startTestApp(t, env)
}

/** Calls the simulated code2Session exactly as WeChat's API is called. */
async function jscode2session(
  app: TestApp,
  code: string,
  overrides: Record<string, string | undefined> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const query: Record<string, string> = {}
  const values = { appid: DEV_APP.appid, secret: DEV_APP.secret, js_code: code, grant_type: 'authorization_code', ...overrides }
  for (const [name, value] of Object.entries(values)) if (value !== undefined) query[name] = value
  const response = await fetch(`${app.url}/_dev/wechat/sns/jscode2session?${new URLSearchParams(query).toString()}`)
  return { status: response.status, body: (await response.json()) as Record<string, unknown> }
}

async function armFault(app: TestApp, fault: Record<string, string>): Promise<Response> {
  return app.postJson('/_dev/wechat/faults', fault)
}

t.test('/login gives a single-use code; code2Session answers like WeChat', async (t) => {
  const app = await start(t)
  const response = await app.postJson('/_dev/wechat/login', {})
  t.equal(response.status, 200)
  t.equal(response.headers.get('cache-control'), 'no-store')
  const { code } = (await response.json()) as { code: string }
  t.match(code, /^[\x21-\x7e]{16,128}$/, 'a printable code')

  const first = await jscode2session(app, code)
  t.equal(first.status, 200)
  t.equal(first.body.openid, SimulatorState.defaultOpenid(DEV_APP.appid), 'the default user')
  t.match(first.body.session_key, /^[A-Za-z0-9+/]{22}==$/)
  t.notOk('unionid' in first.body, 'no unionid unless asked for')
  t.notOk('errcode' in first.body)

  const again = await jscode2session(app, code)
  t.equal(again.status, 200, 'WeChat errors come with HTTP 200')
  t.equal(again.body.errcode, 40163, 'a reused code is 40163')
  t.equal(typeof again.body.errmsg, 'string')
  t.equal(app.simulator.calls.jscode2session, 2)
})

t.test('/login accepts a form body too', async (t) => {
  const app = await start(t)
  const response = await app.postForm('/_dev/wechat/login', { openid: 'o-form-user' })
  t.equal(response.status, 200)
  const { code } = (await response.json()) as { code: string }
  t.equal((await jscode2session(app, code)).body.openid, 'o-form-user')
})

t.test('the default openid is stable per appid', async (t) => {
  const app = await start(t, { WECHAT_APPS: 'wxAAAA:secret-a,wxBBBB:secret-b', MINIGATE_WECHAT_SIMULATOR: '1' })
  const openidOf = async (appid: string, secret: string) => {
    const code = await app.wxLogin({ appid })
    return (await jscode2session(app, code, { appid, secret })).body.openid
  }
  const a1 = await openidOf('wxAAAA', 'secret-a')
  const a2 = await openidOf('wxAAAA', 'secret-a')
  const b1 = await openidOf('wxBBBB', 'secret-b')
  t.equal(a1, a2, 'same user on the same app')
  t.equal(a1, SimulatorState.defaultOpenid('wxAAAA'))
  t.not(a1, b1, 'another app sees another openid')
  t.equal(SimulatorState.defaultOpenid('wxAAAA'), SimulatorState.defaultOpenid('wxAAAA'))

  const code = await app.wxLogin({ appid: 'wxAAAA' })
  t.equal((await jscode2session(app, code, { appid: 'wxBBBB', secret: 'secret-b' })).body.errcode, 40029, "one app cannot redeem another app's code")
  t.equal((await app.postJson('/_dev/wechat/login', {})).status, 200, 'without appid the first configured app is used')
})

t.test('a chosen openid, unionid and session_key are honoured', async (t) => {
  const app = await start(t)
  const code = await app.wxLogin({ openid: 'o-chosen', unionid: 'u-chosen', session_key: SESSION_KEY })
  const { status, body } = await jscode2session(app, code)
  t.equal(status, 200)
  t.same(body, { openid: 'o-chosen', session_key: SESSION_KEY, unionid: 'u-chosen' })

  const later = await jscode2session(app, await app.wxLogin({ openid: 'o-chosen' }))
  t.equal(later.body.unionid, 'u-chosen', 'the unionid sticks to the user')
  t.not(later.body.session_key, SESSION_KEY, 'a new login without a chosen session_key gets a fresh one')
})

t.test('a new wx.login() replaces the session_key the simulator holds', async (t) => {
  const app = await start(t)
  const key = `${DEV_APP.appid}:o-rotating`
  await app.wxLogin({ openid: 'o-rotating', session_key: SESSION_KEY })
  t.equal(app.simulator.users.get(key)?.sessionKey, SESSION_KEY)
  const code = await app.wxLogin({ openid: 'o-rotating' })
  const fresh = app.simulator.users.get(key)?.sessionKey
  t.ok(fresh)
  t.not(fresh, SESSION_KEY, 'replaced')
  t.equal((await jscode2session(app, code)).body.session_key, fresh, 'the newest code carries the newest key')
  t.equal(app.simulator.users.size, 1, 'still one user')
})

t.test('codes expire after 5 minutes', async (t) => {
  const app = await start(t)
  const early = await app.wxLogin()
  const late = await app.wxLogin()
  app.clock.advance(299)
  t.equal((await jscode2session(app, early)).status, 200)
  t.equal((await jscode2session(app, early)).body.errcode, 40163)
  app.clock.advance(2)
  const expired = await jscode2session(app, late)
  t.equal(expired.status, 200)
  t.equal(expired.body.errcode, 40029, 'an expired code is 40029')
  t.equal((await jscode2session(app, 'never-issued')).body.errcode, 40029, 'an unknown code is 40029')
})

t.test('code2Session validates its caller like WeChat', async (t) => {
  const app = await start(t)
  const code = await app.wxLogin()
  const cases: Array<[string, Record<string, string | undefined>, number]> = [
    ['wrong secret', { secret: 'wrong' }, 40125],
    ['missing secret', { secret: undefined }, 40125],
    ['unknown appid', { appid: 'wx-unknown' }, 40013],
    ['missing appid', { appid: undefined }, 40013],
    ['wrong grant_type', { grant_type: 'client_credential' }, 40002],
    ['missing grant_type', { grant_type: undefined }, 40002],
    ['missing js_code', { js_code: undefined }, 41008],
  ]
  for (const [name, overrides, errcode] of cases) {
    const { status, body } = await jscode2session(app, code, overrides)
    t.equal(status, 200, `${name}: HTTP 200`)
    t.equal(body.errcode, errcode, `${name}: errcode ${errcode}`)
    t.notOk('openid' in body, `${name}: no openid`)
  }
  t.equal((await jscode2session(app, code)).status, 200, 'the code was not spent by the refused calls')
  t.equal((await jscode2session(app, code)).body.errcode, 40163)
})

t.test('/login refuses bad input with 400 invalid_request', async (t) => {
  const app = await start(t)
  const cases: Array<[string, Record<string, string>]> = [
    ['unknown appid', { appid: 'wx-not-configured' }],
    ['malformed appid', { appid: '../etc' }],
    ['malformed session_key', { session_key: 'short' }],
    ['session_key not padded', { session_key: 'HyVFkGl5F5OQWJZZaNzBBgAA' }],
    ['malformed openid', { openid: 'o with spaces' }],
    ['overlong openid', { openid: 'o'.repeat(65) }],
    ['malformed unionid', { unionid: 'u/../x' }],
  ]
  for (const [name, body] of cases) {
    const response = await app.postJson('/_dev/wechat/login', body)
    t.equal(response.status, 400, name)
    t.equal(((await response.json()) as { error: string }).error, 'invalid_request', name)
  }
  const wrongType = await fetch(`${app.url}/_dev/wechat/login`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' })
  t.equal(wrongType.status, 415)
  t.equal(app.simulator.users.size, 0, 'no user was created')
})

t.test('/faults validates its input', async (t) => {
  const app = await start(t)
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['unknown api', { api: 'nonexistent', mode: 'busy', count: '1' }, /api/],
    ['missing api', { mode: 'busy', count: '1' }, /api/],
    ['unknown mode', { api: 'jscode2session', mode: 'explode', count: '1' }, /mode/],
    ['missing mode', { api: 'jscode2session', count: '1' }, /mode/],
    ['negative count', { api: 'jscode2session', mode: 'busy', count: '-1' }, /count/],
    ['fractional count', { api: 'jscode2session', mode: 'busy', count: '1.5' }, /count/],
    ['huge count', { api: 'jscode2session', mode: 'busy', count: '1001' }, /count/],
    ['non-numeric count', { api: 'jscode2session', mode: 'busy', count: 'many' }, /count/],
  ]
  for (const [name, body, description] of cases) {
    const response = await armFault(app, body)
    t.equal(response.status, 400, name)
    const error = (await response.json()) as { error: string; error_description: string }
    t.equal(error.error, 'invalid_request', name)
    t.match(error.error_description, description, `${name}: the description names the field`)
  }
  const code = await app.wxLogin()
  t.equal((await jscode2session(app, code)).status, 200, 'no fault was armed by the refused requests')
  t.notOk('errcode' in (await jscode2session(app, await app.wxLogin())).body)
})

t.test('a numeric count in a JSON body is accepted', async (t) => {
  const app = await start(t)
  const response = await app.postJson('/_dev/wechat/faults', { api: 'jscode2session', mode: 'busy', count: 2 })
  t.equal(response.status, 200)
})

t.test('an armed fault hits exactly `count` calls', async (t) => {
  const app = await start(t)
  const armed = await armFault(app, { api: 'jscode2session', mode: 'busy', count: '3' })
  t.equal(armed.status, 200)
  t.same(await armed.json(), { api: 'jscode2session', mode: 'busy', count: 3 })
  const code = await app.wxLogin()
  for (let call = 1; call <= 3; call += 1) {
    t.equal((await jscode2session(app, code)).body.errcode, -1, `call ${call} is busy`)
  }
  const fourth = await jscode2session(app, code)
  t.equal(fourth.status, 200)
  t.ok(fourth.body.openid, 'the fourth call succeeds, and the code survived the faults')
  t.equal(app.simulator.calls.jscode2session, 4)

  t.equal((await armFault(app, { api: 'jscode2session', mode: 'rate_limit' })).status, 200, 'count defaults to 1')
  t.equal((await jscode2session(app, await app.wxLogin())).body.errcode, 45011)
  t.notOk('errcode' in (await jscode2session(app, await app.wxLogin())).body, 'only one call was hit')
})

t.test('count 0 clears an armed fault; a new arm replaces the old one', async (t) => {
  const app = await start(t)
  await armFault(app, { api: 'jscode2session', mode: 'busy', count: '5' })
  const cleared = await armFault(app, { api: 'jscode2session', mode: 'busy', count: '0' })
  t.equal(cleared.status, 200)
  t.notOk('errcode' in (await jscode2session(app, await app.wxLogin())).body, 'cleared')

  await armFault(app, { api: 'jscode2session', mode: 'busy', count: '5' })
  await armFault(app, { api: 'jscode2session', mode: 'rate_limit', count: '1' })
  t.equal((await jscode2session(app, await app.wxLogin())).body.errcode, 45011, 'the newest arm wins')
  t.notOk('errcode' in (await jscode2session(app, await app.wxLogin())).body, 'and its count replaced the old one')
})

t.test('each fault mode has WeChat-like wire shape', async (t) => {
  const app = await start(t)
  const url = () => `${app.url}/_dev/wechat/sns/jscode2session?appid=${DEV_APP.appid}&secret=${DEV_APP.secret}&js_code=x&grant_type=authorization_code`

  await armFault(app, { api: 'jscode2session', mode: 'busy', count: '1' })
  let response = await fetch(url())
  t.equal(response.status, 200, 'busy: HTTP 200')
  t.same(((await response.json()) as { errcode: number }).errcode, -1, 'busy: errcode -1')

  await armFault(app, { api: 'jscode2session', mode: 'rate_limit', count: '1' })
  response = await fetch(url())
  t.equal(response.status, 200, 'rate_limit: HTTP 200')
  t.equal(((await response.json()) as { errcode: number }).errcode, 45011, 'rate_limit: errcode 45011')

  await armFault(app, { api: 'jscode2session', mode: 'http_500', count: '1' })
  response = await fetch(url())
  t.equal(response.status, 500, 'http_500: HTTP 500')
  t.match(response.headers.get('content-type'), /^text\/html/)
  t.match(await response.text(), /<html>/)

  await armFault(app, { api: 'jscode2session', mode: 'garbage', count: '1' })
  response = await fetch(url())
  t.equal(response.status, 200, 'garbage: HTTP 200')
  t.match(response.headers.get('content-type'), /^application\/json/, 'garbage claims to be JSON')
  const text = await response.text()
  t.throws(() => JSON.parse(text), 'garbage: not parseable')

  await armFault(app, { api: 'jscode2session', mode: 'timeout', count: '1' })
  const calls = app.simulator.calls.jscode2session
  await t.rejects(fetch(url(), { signal: AbortSignal.timeout(150) }), 'timeout: no answer before the caller gives up')
  t.equal(app.simulator.calls.jscode2session, calls + 1, 'the hanging call was counted')

  const normal = await fetch(url())
  t.equal(normal.status, 200)
  t.equal(((await normal.json()) as { errcode: number }).errcode, 40029, 'after the faults: the ordinary answer for an unknown code')
})

t.test('the simulator is absent when WeChat apps are configured without the flag', async (t) => {
  const app = await start(t, { WECHAT_APPS: 'wxREAL:real-secret' })
  t.equal(app.deps.simulator, undefined)
  const response = await app.postJson('/_dev/wechat/login', {})
  t.equal(response.status, 404)
  t.equal((await fetch(`${app.url}/_dev/wechat/sns/jscode2session?appid=wxREAL`)).status, 404)
})
