import t, { type Test } from 'tap'
import { rowCounts, startTestApp, WECHAT_CODE_GRANT, type TestApp } from '../helpers/app.js'
import { oauthError } from '../helpers/assert.js'

/** After bad input the server still serves a normal login. */
async function stillServes(t: Test, app: TestApp): Promise<void> {
  const body = await app.login()
  t.equal(body.token_type, 'Bearer', 'a normal login works right after')
}

// One app serves every test of this file; each ends by logging in normally.
const app = await startTestApp(t)

t.test('grant_type', async (t) => {
  t.test('missing or empty grant_type is invalid_request', async (t) => {
    const code = await app.wxLogin()
    const missing = await app.postForm('/token', { code })
    t.equal(missing.headers.get('cache-control'), 'no-store', 'token errors are not cached either')
    const body = await oauthError(t, missing, 400, 'invalid_request')
    t.match(body.error_description, /grant_type/)
    await oauthError(t, await app.postForm('/token', { grant_type: '', code }), 400, 'invalid_request')
    await oauthError(t, await app.postJson('/token', { code }), 400, 'invalid_request')
  })

  t.test('an unknown grant_type is unsupported_grant_type', async (t) => {
    const code = await app.wxLogin()
    const calls = app.simulator.calls.jscode2session
    for (const grantType of ['authorization_code', 'password', 'client_credentials', 'urn:minigate:grant-type:wechat', 'toString', '__proto__', 'hasOwnProperty']) {
      const response = await app.postJson('/token', { grant_type: grantType, code })
      const body = await oauthError(t, response, 400, 'unsupported_grant_type')
      t.notOk(JSON.stringify(body).includes(code), 'the code is not echoed')
    }
    const upper = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT.toUpperCase(), code })
    await oauthError(t, upper, 400, 'unsupported_grant_type')
    t.equal(app.simulator.calls.jscode2session, calls, 'WeChat was not called')
  })

  t.test('the server still logs in', (t) => stillServes(t, app))
  t.end()
})

t.test('/token accepts POST only', async (t) => {
  const calls = app.simulator.calls.jscode2session
  for (const method of ['GET', 'PUT', 'DELETE']) {
    const response = await fetch(`${app.url}/token`, { method })
    const body = await oauthError(t, response, 405, 'invalid_request')
    t.match(body.error_description, new RegExp(method))
    t.equal(response.headers.get('allow'), 'POST', `${method}: Allow names POST`)
  }
  const query = await fetch(`${app.url}/token?grant_type=${encodeURIComponent(WECHAT_CODE_GRANT)}&code=${await app.wxLogin()}`)
  await oauthError(t, query, 405, 'invalid_request')
  t.equal(app.simulator.calls.jscode2session, calls, 'parameters in a GET query are never used')
  await stillServes(t, app)
})

t.test('malformed codes are rejected before WeChat is called', async (t) => {
  const calls = app.simulator.calls.jscode2session
  const rows = await rowCounts(app.deps)
  const cases: Array<[string, string]> = [
    ['empty', ''],
    ['129 characters', 'a'.repeat(129)],
    ['non-ASCII', '码'],
    ['non-ASCII among ASCII', `abc${'é'}def`],
    ['NUL', 'abc\u0000def'],
    ['CRLF', 'abc\r\ndef'],
    ['LF', 'abc\ndef'],
    ['tab', 'abc\tdef'],
    ['space', 'abc def'],
    ['DEL', 'abc\u007fdef'],
  ]
  for (const [name, code] of cases) {
    const form = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code })
    const body = await oauthError(t, form, 400, 'invalid_request')
    t.match(body.error_description, /code/, `${name}: the description names the code`)
    if (code !== '') t.notOk((body.error_description as string).includes(code), `${name}: the code is not echoed`)
    await oauthError(t, await app.postJson('/token', { grant_type: WECHAT_CODE_GRANT, code }), 400, 'invalid_request')
  }
  await oauthError(t, await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT }), 400, 'invalid_request')
  t.equal(app.simulator.calls.jscode2session, calls, 'WeChat was never called')
  t.same(await rowCounts(app.deps), rows, 'nothing written')

  // A code of exactly 128 printable characters is well-formed: it goes to WeChat, which does not know it.
  await oauthError(t, await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: 'a'.repeat(128) }), 400, 'invalid_grant')
  t.equal(app.simulator.calls.jscode2session, calls + 1)
  await stillServes(t, app)
})

/** SECURITY.md: "&-bearing codes (rejected before WeChat is called)". */
t.test('a code bearing URL syntax (&, =, %, #, ?) is rejected before WeChat is called', async (t) => {
  const rows = await rowCounts(app.deps)
  for (const code of ['abc&def', 'abc&grant_type=x&appid=y', 'abc=def', 'abc%26def', 'abc#def', 'abc?def']) {
    // URLSearchParams encodes & as %26, so it arrives at minigate as part of the code.
    const calls = app.simulator.calls.jscode2session
    const response = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code })
    const body = (await response.json()) as Record<string, unknown>
    // Whatever the validation says, the code must not split the upstream query: it is a plain 400 refusal.
    t.equal(response.status, 400, `${JSON.stringify(code)}: 400`)
    t.type(body.error_description, 'string')
    t.equal(body.error, 'invalid_request', `${JSON.stringify(code)}: invalid_request`)
    t.equal(app.simulator.calls.jscode2session, calls, `${JSON.stringify(code)}: WeChat not called`)
  }
  t.same(await rowCounts(app.deps), rows, 'nothing written')
  await stillServes(t, app)
})
