import { gzipSync } from 'node:zlib'
import t, { type Test } from 'tap'
import { BODY_LIMIT } from '../../src/http/body.js'
import { rowCounts, startTestApp, WECHAT_CODE_GRANT, type TestApp } from '../helpers/app.js'
import { oauthError } from '../helpers/assert.js'
import { rawRequest } from '../security/support.js'

const LIMIT_BYTES = 16 * 1024

/** POSTs raw bytes to /token with the given headers. */
function postRaw(app: TestApp, body: string | Uint8Array, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${app.url}/token`, { method: 'POST', headers, body })
}

interface Snapshot {
  calls: number
  rows: Record<string, number>
}

async function snapshot(app: TestApp): Promise<Snapshot> {
  return { calls: app.simulator.calls.jscode2session, rows: await rowCounts(app.deps) }
}

/** After bad input nothing was written, WeChat was not called, and the server still serves a normal login. */
async function unharmed(t: Test, app: TestApp, before: Snapshot): Promise<void> {
  t.equal(app.simulator.calls.jscode2session, before.calls, 'WeChat was never called')
  t.same(await rowCounts(app.deps), before.rows, 'nothing written')
  const body = await app.login()
  t.equal(body.token_type, 'Bearer', 'a normal login works right after')
}

// One app serves every test of this file: each checks that its bad input left it unharmed.
const app = await startTestApp(t)

t.test('content types', async (t) => {
  const before = await snapshot(app)
  const form = new URLSearchParams({ grant_type: WECHAT_CODE_GRANT, code: 'abc' }).toString()
  const json = JSON.stringify({ grant_type: WECHAT_CODE_GRANT, code: 'abc' })

  t.test('a body in another content type is 415', async (t) => {
    const plain = await oauthError(t, await postRaw(app, form, { 'content-type': 'text/plain' }), 415)
    t.match(plain.error_description, /application\/x-www-form-urlencoded/, 'names the accepted types')
    await oauthError(t, await postRaw(app, json, { 'content-type': 'text/plain;charset=UTF-8' }), 415)
    await oauthError(t, await postRaw(app, `--x\r\nContent-Disposition: form-data; name="code"\r\n\r\nabc\r\n--x--\r\n`, { 'content-type': 'multipart/form-data; boundary=x' }), 415)
    await oauthError(t, await postRaw(app, '<grant_type/>', { 'content-type': 'application/xml' }), 415)
    const untyped = await postRaw(app, new TextEncoder().encode(form))
    await oauthError(t, untyped, 415)
  })

  t.test('no body at all is 400 invalid_request, not 415', async (t) => {
    const none = await oauthError(t, await fetch(`${app.url}/token`, { method: 'POST' }), 400)
    t.match(none.error_description, /request body is required/, 'says the body is missing')
    t.match(none.error_description, /application\/x-www-form-urlencoded/, 'and what to send')
    // Without a Content-Length header either, as curl -X POST sends it.
    const raw = await rawRequest(app, 'POST /token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    t.equal(raw.status, 400, 'no Content-Length: 400')
    t.match(JSON.parse(raw.body), { error: 'invalid_request', error_description: /request body is required/ })
    for (const path of ['/revoke', '/introspect']) {
      const headers: Record<string, string> = path === '/introspect' ? { authorization: `Basic ${Buffer.from('dev-service:dev-service-secret').toString('base64')}` } : {}
      await oauthError(t, await fetch(`${app.url}${path}`, { method: 'POST', headers }), 400)
    }
    await oauthError(t, await postRaw(app, '', { 'content-type': 'text/plain' }), 415, 'invalid_request')
  })

  t.test('a broken or unknown content encoding is a 4xx', async (t) => {
    for (const encoding of ['gzip', 'deflate', 'br']) {
      const response = await postRaw(app, 'not compressed at all', { 'content-type': 'application/json', 'content-encoding': encoding })
      const body = (await response.json()) as Record<string, unknown>
      t.equal(response.status, 400, `broken ${encoding}: 400`)
      t.equal(body.error, 'invalid_request', `broken ${encoding}: invalid_request`)
      t.type(body.error_description, 'string')
    }
    const unknown = await postRaw(app, json, { 'content-type': 'application/json', 'content-encoding': 'x-no-such-encoding' })
    await oauthError(t, unknown, 415)
  })

  t.test('a compressed body is held to the size limit once inflated', async (t) => {
    const bomb = gzipSync(JSON.stringify({ grant_type: WECHAT_CODE_GRANT, code: 'z'.repeat(1024 * 1024) }))
    t.ok(bomb.length < LIMIT_BYTES, 'the compressed body is small')
    await oauthError(t, await postRaw(app, bomb, { 'content-type': 'application/json', 'content-encoding': 'gzip' }), 413)
  })

  t.test('the server is unharmed', (t) => unharmed(t, app, before))
  t.test('a charset parameter on a supported type is fine', async (t) => {
    const code = await app.wxLogin()
    const body = new URLSearchParams({ grant_type: WECHAT_CODE_GRANT, code }).toString()
    const response = await postRaw(app, body, { 'content-type': 'application/x-www-form-urlencoded; charset=UTF-8' })
    t.equal(response.status, 200)
    const json = await postRaw(app, JSON.stringify({ grant_type: WECHAT_CODE_GRANT, code: await app.wxLogin() }), { 'content-type': 'application/json; charset=utf-8' })
    t.equal(json.status, 200)
  })
  t.end()
})

t.test('malformed JSON', async (t) => {
  const before = await snapshot(app)
  const cases: Array<[string, string]> = [
    ['truncated', `{"grant_type":"${WECHAT_CODE_GRANT}","code":`],
    ['not JSON', 'grant_type=x&code=y'],
    ['trailing comma', `{"grant_type":"${WECHAT_CODE_GRANT}",}`],
    ['single quotes', `{'grant_type':'x'}`],
    ['a string', '"just a string"'],
    ['a number', '42'],
    ['null', 'null'],
    ['true', 'true'],
    ['an array', `[{"grant_type":"${WECHAT_CODE_GRANT}","code":"abc"}]`],
    ['an empty array', '[]'],
    ['deeply nested', '['.repeat(5000) + ']'.repeat(5000)],
    ['deeply nested object', '{"a":'.repeat(2000) + '1' + '}'.repeat(2000)],
  ]
  for (const [name, body] of cases) {
    const response = await postRaw(app, body, { 'content-type': 'application/json' })
    const error = await oauthError(t, response, 400)
    t.notMatch(error.error_description, /SyntaxError|Unexpected token|position/, `${name}: no parser internals in the description`)
  }
  // An empty JSON body has no grant_type.
  await oauthError(t, await postRaw(app, '', { 'content-type': 'application/json' }), 400)
  await oauthError(t, await postRaw(app, '{}', { 'content-type': 'application/json' }), 400)
  // Bytes that are not UTF-8 cannot make a valid code.
  const latin = new Uint8Array([...new TextEncoder().encode(`{"grant_type":"${WECHAT_CODE_GRANT}","code":"ab`), 0xff, 0xfe, ...new TextEncoder().encode('"}')])
  await oauthError(t, await postRaw(app, latin, { 'content-type': 'application/json' }), 400)
  await unharmed(t, app, before)
})

t.test('bodies over the size limit are 413', async (t) => {
  const before = await snapshot(app)
  t.equal(BODY_LIMIT, '16kb')
  const big = 'a'.repeat(LIMIT_BYTES + 1)
  const form = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: big })
  const body = await oauthError(t, form, 413)
  t.notOk((body.error_description as string).includes('aaaa'), 'the body is not echoed')
  await oauthError(t, await app.postJson('/token', { grant_type: WECHAT_CODE_GRANT, code: big }), 413)
  await oauthError(t, await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: 'b'.repeat(1024 * 1024) }), 413)

  // Without Content-Length (chunked) the limit holds while reading.
  const encoder = new TextEncoder()
  let sent = 0
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent === 0) controller.enqueue(encoder.encode(`grant_type=${encodeURIComponent(WECHAT_CODE_GRANT)}&code=`))
      if (sent >= 40) return controller.close()
      controller.enqueue(encoder.encode('c'.repeat(1024)))
      sent += 1
    },
  })
  const chunked = await fetch(`${app.url}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: stream,
    duplex: 'half',
  } as RequestInit)
  await oauthError(t, chunked, 413)

  // Just under the limit the body is read, and its oversized code refused as such.
  const prefix = `grant_type=${encodeURIComponent(WECHAT_CODE_GRANT)}&code=`
  const underLimit = prefix + 'd'.repeat(LIMIT_BYTES - prefix.length - 10)
  const under = await postRaw(app, underLimit, { 'content-type': 'application/x-www-form-urlencoded' })
  const underBody = await oauthError(t, under, 400)
  t.match(underBody.error_description, /code/)
  await unharmed(t, app, before)
})

t.test('a repeated parameter is invalid_request', async (t) => {
  const before = await snapshot(app)
  const code = await app.wxLogin()
  const grant = encodeURIComponent(WECHAT_CODE_GRANT)
  const cases: Array<[string, string]> = [
    ['grant_type twice, same value', `grant_type=${grant}&grant_type=${grant}&code=${code}`],
    ['grant_type twice, two values', `grant_type=${grant}&grant_type=refresh_token&code=${code}`],
    ['code twice', `grant_type=${grant}&code=${code}&code=${code}`],
    ['code twice, one empty', `grant_type=${grant}&code=${code}&code=`],
    ['client_id twice', `grant_type=${grant}&code=${code}&client_id=wx0000000000000dev&client_id=wx0000000000000dev`],
    ['scope twice', `grant_type=${grant}&code=${code}&scope=openid&scope=profile`],
  ]
  for (const [name, body] of cases) {
    const response = await postRaw(app, body, { 'content-type': 'application/x-www-form-urlencoded' })
    const error = await oauthError(t, response, 400)
    t.match(error.error_description, /repeated/, `${name}: says the parameter is repeated`)
  }
  // In JSON, an array value is the same thing.
  const json = await app.postJson('/token', { grant_type: WECHAT_CODE_GRANT, code: [code, code] })
  t.match((await oauthError(t, json, 400)).error_description, /repeated/)
  t.equal(app.simulator.calls.jscode2session, before.calls, 'WeChat was never called')
  t.same(await rowCounts(app.deps), before.rows, 'nothing written')
  // The code was never sent anywhere, so it still works.
  const ok = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code })
  t.equal(ok.status, 200, 'the untouched code still logs in')
})

t.test('a JSON body that names a parameter twice is invalid_request', async (t) => {
  // JSON.parse keeps the last of two equal keys; a proxy or WAF that reads the first sees another request.
  const before = await snapshot(app)
  const code = await app.wxLogin()
  const body = `{"grant_type":"${WECHAT_CODE_GRANT}","code":"not-the-code","code":"${code}"}`
  const response = await postRaw(app, body, { 'content-type': 'application/json' })
  t.ok(response.status === 200 || response.status === 400, `no 5xx (${response.status})`)
  t.equal(response.status, 400, 'refused')
  t.equal(app.simulator.calls.jscode2session, before.calls, 'WeChat not called')
})

t.test('a parameter value that is not a string is invalid_request', async (t) => {
  const before = await snapshot(app)
  const values: unknown[] = [123, 0, {}, { code: 'abc' }, null, true, false, 1.5]
  for (const value of values) {
    const response = await app.postJson('/token', { grant_type: WECHAT_CODE_GRANT, code: value })
    const body = await oauthError(t, response, 400)
    t.match(body.error_description, /code/, `${JSON.stringify(value)}: names the parameter`)
  }
  await oauthError(t, await app.postJson('/token', { grant_type: 1, code: 'abc' }), 400)
  await oauthError(t, await app.postJson('/token', { grant_type: WECHAT_CODE_GRANT, code: 'abc', scope: ['openid'] }), 400)
  await oauthError(t, await app.postJson('/token', { grant_type: WECHAT_CODE_GRANT, code: 'abc', client_id: { $ne: '' } }), 400)
  // A hostile parameter name is neither echoed nor able to pollute prototypes.
  const hostile = await postRaw(app, `{"grant_type":"${WECHAT_CODE_GRANT}","code":"abc","__proto__":{"polluted":"yes"}}`, { 'content-type': 'application/json' })
  await oauthError(t, hostile, 400)
  const scriptName = await app.postJson('/token', { grant_type: WECHAT_CODE_GRANT, code: 'abc', '<script>alert(1)</script>': 1 })
  t.notMatch((await oauthError(t, scriptName, 400)).error_description, /<script>/, 'the name is not echoed')
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched')
  await unharmed(t, app, before)
})

t.test('form quirks: brackets, dots and many parameters never make objects or 5xx', async (t) => {
  const before = await snapshot(app)
  const grant = encodeURIComponent(WECHAT_CODE_GRANT)
  const bodies = [
    `grant_type=${grant}&code[]=abc`,
    `grant_type=${grant}&code[0]=abc`,
    `grant_type=${grant}&code[a]=abc`,
    `grant_type=${grant}&code.a=abc`,
    `grant_type=${grant}&__proto__[code]=abc`,
    `grant_type[]=${grant}&code=abc`,
    `grant_type=${grant}&code=abc&` + Array.from({ length: 200 }, (_, i) => `p${i}=v`).join('&'),
    Array.from({ length: 200 }, (_, i) => `p${i}=v`).join('&') + `&grant_type=${grant}&code=abc`,
    `grant_type=${grant}&code=%ZZ%`,
    `=&&&==&grant_type=${grant}`,
  ]
  for (const body of bodies) {
    const response = await postRaw(app, body, { 'content-type': 'application/x-www-form-urlencoded' })
    const text = await response.text()
    t.ok(response.status >= 400 && response.status < 500, `4xx for ${body.slice(0, 60)} (${response.status} ${text.slice(0, 120)})`)
    const parsed = JSON.parse(text) as Record<string, unknown>
    t.type(parsed.error, 'string')
    t.type(parsed.error_description, 'string')
  }
  t.equal(({} as Record<string, unknown>).code, undefined, 'Object.prototype untouched')
  t.same(await rowCounts(app.deps), before.rows, 'nothing written')
  const body = await app.login()
  t.equal(body.token_type, 'Bearer', 'a normal login works right after')
})
