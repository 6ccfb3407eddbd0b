/**
 * SECURITY.md "Bad input minigate must survive", the request side: grant_type, repeated parameters,
 * content types, malformed and oversized bodies, wrong methods, hostile codes, huge and broken headers,
 * and raw malformed HTTP. Each case: a clear 4xx with an RFC 6749 body (a Bearer challenge on the Bearer
 * endpoints), nothing written, WeChat not called for junk, no secret in a body or a log line, and the
 * server keeps serving.
 */
import { gzipSync } from 'node:zlib'
import t, { type Test } from 'tap'
import {
  expectError,
  expectIntegrity,
  expectStillServing,
  postRaw,
  rawRequest,
  rowCounts,
  Secrets,
  SERVICE_BASIC,
  startApp,
  WECHAT_CODE_GRANT,
  show,
  unhandled,
} from './support.js'

const app = await startApp(t)
const secrets = new Secrets(app)
const tokens = await app.login({ openid: 'o-hostile-input', scope: 'openid profile phone' })
secrets.addTokens(tokens)
const BEARER = `Bearer ${tokens.access_token as string}`

const FORM = 'application/x-www-form-urlencoded'
const JSON_TYPE = 'application/json'

/** The body-reading endpoints, each with the headers it needs to get as far as its body and the names of its parameters. */
interface BodyEndpoint {
  name: string
  method: 'POST' | 'PATCH'
  path: string
  headers: Record<string, string>
  params: string[]
  bearer: boolean
}

const BODY_ENDPOINTS: BodyEndpoint[] = [
  { name: 'POST /token', method: 'POST', path: '/token', headers: {}, params: ['grant_type', 'code', 'refresh_token', 'client_id', 'scope'], bearer: false },
  { name: 'POST /revoke', method: 'POST', path: '/revoke', headers: {}, params: ['token', 'token_type_hint', 'client_id'], bearer: false },
  { name: 'POST /introspect', method: 'POST', path: '/introspect', headers: { authorization: SERVICE_BASIC }, params: ['token', 'token_type_hint'], bearer: false },
  { name: 'POST /wechat/decrypt', method: 'POST', path: '/wechat/decrypt', headers: { authorization: BEARER }, params: ['encrypted_data', 'iv', 'raw_data', 'signature'], bearer: true },
  { name: 'POST /wechat/phone', method: 'POST', path: '/wechat/phone', headers: { authorization: BEARER }, params: ['code'], bearer: true },
  { name: 'PATCH /userinfo', method: 'PATCH', path: '/userinfo', headers: { authorization: BEARER }, params: ['nickname', 'picture'], bearer: true },
  { name: 'POST /userinfo/profile', method: 'POST', path: '/userinfo/profile', headers: { authorization: BEARER }, params: ['nickname', 'picture'], bearer: true },
]

function send(endpoint: BodyEndpoint, body: string | Uint8Array | undefined, contentType: string | undefined, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${app.url}${endpoint.path}`, {
    method: endpoint.method,
    headers: { ...endpoint.headers, ...(contentType === undefined ? {} : { 'content-type': contentType }), ...headers },
    ...(body === undefined ? {} : { body }),
  })
}

/** Runs `check` for every body endpoint at once (the assertions of each stay in order). */
async function eachEndpoint(check: (endpoint: BodyEndpoint) => Promise<void>): Promise<void> {
  await Promise.all(BODY_ENDPOINTS.map(check))
}

/** Runs a battery with rows and upstream calls counted before and after: hostile input writes nothing and calls nobody. */
async function battery(t: Test, run: () => Promise<void>): Promise<void> {
  const rows = await rowCounts(app.deps)
  const calls = { ...app.simulator.calls }
  const from = app.logs.length
  await run()
  t.same(await rowCounts(app.deps), rows, 'no row was written')
  t.same(app.simulator.calls, calls, 'WeChat was not called')
  secrets.checkLogs(t, from)
  await expectStillServing(t, app, secrets)
}

t.test('grant_type missing, empty or unknown', async (t) => {
  await battery(t, async () => {
    for (const encode of ['form', 'json'] as const) {
      const post = (params: Record<string, string>) => (encode === 'form' ? app.postForm('/token', params) : app.postJson('/token', params))
      await expectError(t, await post({}), `${encode}: empty body`, { status: 400, error: 'invalid_request' }, secrets)
      await expectError(t, await post({ code: 'abc' }), `${encode}: no grant_type`, { status: 400, error: 'invalid_request' }, secrets)
      await expectError(t, await post({ grant_type: '' }), `${encode}: empty grant_type`, { status: 400, error: 'invalid_request' }, secrets)
      const unknown = [
        'password',
        'authorization_code',
        'client_credentials',
        'implicit',
        'urn:ietf:params:oauth:grant-type:jwt-bearer',
        'urn:ietf:params:oauth:grant-type:token-exchange',
        'urn:ietf:params:oauth:grant-type:device_code',
        'REFRESH_TOKEN',
        'Refresh_Token',
        ' refresh_token',
        'refresh_token ',
        'refresh_token\u0000',
        'refresh_token\n',
        'urn:minigate:grant-type:WECHAT-CODE',
        `${WECHAT_CODE_GRANT}/`,
        '__proto__',
        'constructor',
        'toString',
        'hasOwnProperty',
        'valueOf',
        '中文',
        '😀',
        'g'.repeat(10_000),
        '%00',
        '*',
      ]
      for (const grantType of unknown) {
        await expectError(t, await post({ grant_type: grantType, code: 'abc', refresh_token: 'abc' }), `${encode}: grant_type ${show(grantType)}`, { status: 400, error: 'unsupported_grant_type' }, secrets)
      }
    }
    for (const value of ['["refresh_token"]', '{"a":"refresh_token"}', '1', 'true', 'null']) {
      await expectError(t, await postRaw(app, '/token', `{"grant_type":${value}}`, JSON_TYPE), `json: grant_type ${value}`, { status: 400, error: 'invalid_request' }, secrets)
    }
  })
})

t.test('repeated parameters, form and JSON, on every body endpoint', async (t) => {
  await battery(t, async () => {
    await eachEndpoint(async (endpoint) => {
      for (const name of endpoint.params) {
        const cases: Array<[string, string, string]> = [
          ['form, same value', FORM, `${name}=abc&${name}=abc`],
          ['form, two values', FORM, `${name}=abc&${name}=def`],
          ['form, empty then value', FORM, `${name}=&${name}=abc`],
          ['form, bracket array', FORM, `${name}[]=abc&${name}[]=def`],
          // (`name[]` and `name[0]` are other names in a form body, as RFC 6749 reads it: the body parser keeps brackets literal.)
          ['json, same value', JSON_TYPE, `{"${name}":"abc","${name}":"abc"}`],
          ['json, two values', JSON_TYPE, `{"${name}":"abc","${name}":"def"}`],
          ['json, spaced', JSON_TYPE, ` { "${name}" : "abc" ,\n\t"${name}" : "def" } `],
          ['json, escaped key', JSON_TYPE, `{"${name}":"abc","${name.replace(/_/g, '\\u005f').replace(/^(.)/, (c) => `\\u00${c.charCodeAt(0).toString(16)}`)}":"def"}`],
          ['json, escaped quote in value', JSON_TYPE, `{"${name}":"a\\"b\\\\","other":"x","${name}":"def"}`],
          ['json, array value', JSON_TYPE, `{"${name}":["abc","def"]}`],
        ]
        for (const [what, type, body] of cases) {
          const answer = await expectError(t, await send(endpoint, body, type), `${endpoint.name} ${name}: ${what}`, { status: 400, error: 'invalid_request', bearer: endpoint.bearer }, secrets)
          t.match(answer.error_description, /repeated/, `${endpoint.name} ${name}: ${what}: says the parameter is repeated`)
        }
      }
    })
  })
})

t.test('wrong content types', async (t) => {
  await battery(t, async () => {
    // Not a form or JSON at all: 415.
    const wrong: Array<string | undefined> = [
      undefined,
      'text/plain',
      'text/plain; charset=utf-8',
      'application/xml',
      'text/html',
      'multipart/form-data; boundary=xyz',
      'application/octet-stream',
      'application/json-patch+json',
      'application/vnd.api+json',
      'application/csp-report',
      'application/jsonx',
      'application/x-www-form-urlencodedx',
      'json',
      'form',
      '*/*',
      'application/*',
      ';;;',
      'a'.repeat(5000),
    ]
    // A form or JSON in an odd charset or with odd parameters: any clear 4xx, or a normal answer.
    const odd: string[] = [
      'application/json; charset=utf-7',
      'application/json; charset=utf-16',
      'application/json; charset=ebcdic',
      'application/json; charset=nonsense',
      'application/json; charset=""',
      'application/x-www-form-urlencoded; charset=utf-32',
      'application/x-www-form-urlencoded; charset=latin1',
      `application/json; ${'p=1; '.repeat(500)}`,
      'APPLICATION/JSON',
      'application/json;',
    ]
    await eachEndpoint(async (endpoint) => {
      // Bodies that are refused whenever they are read: the check is that the content type is the refusal.
      const invalid = `{"${endpoint.params[0] as string}":"abc","${endpoint.params[0] as string}":"abc"}`
      const bodies = { json: invalid, form: `${endpoint.params[0] as string}=abc&${endpoint.params[0] as string}=abc` }
      for (const type of wrong) {
        for (const [kind, body] of Object.entries(bodies)) {
          // A Uint8Array body makes fetch send no Content-Type at all.
          const response = await send(endpoint, type === undefined ? new TextEncoder().encode(body) : body, type)
          await expectError(t, response, `${endpoint.name}: ${kind} body as ${show(type)}`, { status: 415, error: 'invalid_request', bearer: endpoint.bearer }, secrets)
        }
      }
      for (const type of odd) {
        const body = type.includes('json') ? bodies.json : bodies.form
        await expectError(t, await send(endpoint, body, type), `${endpoint.name}: body as ${show(type, 60)}`, { status: [400, 415], error: 'invalid_request', bearer: endpoint.bearer }, secrets)
      }
      for (const encoding of ['br', 'zstd', 'compress', 'x-unknown', 'gzip, br', 'identity, identity']) {
        const response = await send(endpoint, bodies.json, JSON_TYPE, { 'content-encoding': encoding })
        await expectError(t, response, `${endpoint.name}: Content-Encoding ${encoding}`, { status: [400, 415], error: 'invalid_request', bearer: endpoint.bearer }, secrets)
      }
      const notGzip = await send(endpoint, bodies.json, JSON_TYPE, { 'content-encoding': 'gzip' })
      await expectError(t, notGzip, `${endpoint.name}: Content-Encoding gzip on a plain body`, { status: 400, error: 'invalid_request', bearer: endpoint.bearer }, secrets)
    })
  })
})

t.test('malformed JSON and form bodies', async (t) => {
  await battery(t, async () => {
    const json: Array<string | Uint8Array> = [
      '',
      ' ',
      '{',
      '}',
      '{"a":}',
      '{"a":"b",}',
      "{'a':'b'}",
      '{a:"b"}',
      '{"a":"b"}xyz',
      '{"a":"b"}{"a":"b"}',
      '[]',
      '[{"a":"b"}]',
      '"string"',
      'null',
      '123',
      'true',
      'NaN',
      '{"a":NaN}',
      '{"a":Infinity}',
      '{"a":"\\x41"}',
      '{"a":"\u0000"}',
      '{"a":"b"\u0000}',
      '\ufeff{"a":"b"}',
      '['.repeat(10_000),
      `${'['.repeat(3000)}${']'.repeat(3000)}`,
      `${'{"a":'.repeat(2000)}1${'}'.repeat(2000)}`,
      '{"a":{"b":"c"}}',
      '{"a":[]}',
      '{"a":1}',
      '{"a":1e999}',
      '{"a":null}',
      '{"a":true}',
      '{"a":"\\ud800"}',
      '{"__proto__":{"grant_type":"refresh_token"}}',
      '{"constructor":{"prototype":{"x":"1"}}}',
      new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0xc0, 0x80, 0x22, 0x7d]),
      new Uint8Array([0xfe, 0xff, 0x00, 0x7b, 0x00, 0x7d]),
      new Uint8Array(512).fill(0),
    ]
    const form: Array<string | Uint8Array> = [
      '%',
      '%zz',
      'a=%',
      'a=%E0%A4%A',
      'a=%ff%fe',
      '%ff=%fe',
      '=&=&=',
      '&&&&&&',
      '=',
      'a[b]=1',
      'a[b][c][d]=1',
      'a[=1',
      'a]=1',
      '__proto__[grant_type]=refresh_token',
      '__proto__=1',
      'constructor[prototype][admin]=1',
      'hasOwnProperty=1&toString=2',
      'a.b.c=1',
      'a=b;c=d',
      `${Array.from({ length: 150 }, (_, i) => `p${i}=1`).join('&')}`,
      `${Array.from({ length: 5000 }, () => '&').join('')}`,
      'a=\u0000\u0001\u0002',
      new Uint8Array([0x61, 0x3d, 0xff, 0xfe, 0x00, 0x80]),
    ]
    await eachEndpoint(async (endpoint) => {
      for (const body of json) {
        const label = typeof body === 'string' ? show(body, 30) : `bytes ${Buffer.from(body).toString('hex').slice(0, 30)}`
        await expectError(t, await send(endpoint, body, JSON_TYPE), `${endpoint.name}: JSON ${label}`, { status: 400, error: 'invalid_request', bearer: endpoint.bearer }, secrets)
      }
      for (const body of form) {
        const label = typeof body === 'string' ? show(body, 30) : `bytes ${Buffer.from(body).toString('hex').slice(0, 30)}`
        await expectError(t, await send(endpoint, body, FORM), `${endpoint.name}: form ${label}`, { status: 400, error: 'invalid_request', bearer: endpoint.bearer }, secrets)
      }
    })
  })
})

let requestCounter = 0

/** The status the server's request log gives for a request id, once its line is written (waiting `turns` ms at most). */
async function loggedStatus(requestId: string, turns: number): Promise<{ logged?: number }> {
  for (let turn = 0; turn < turns; turn++) {
    const line = app.logs.find((entry) => entry.includes(`"req_id":"${requestId}"`) && entry.includes('"msg":"request"'))
    if (line) return { logged: (JSON.parse(line) as { status: number }).status }
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
  return {}
}

t.test('bodies over 16 KiB are 413', async (t) => {
  await battery(t, async () => {
    await eachEndpoint(async (endpoint) => {
      const name = endpoint.params[0] as string
      // Bodies are made afresh for each attempt: a stream can be sent once only.
      const cases: Array<[string, () => string | Uint8Array | ReadableStream<Uint8Array>, string, Record<string, string>]> = [
        ['form just over', () => `${name}=${'a'.repeat(16 * 1024)}`, FORM, {}],
        ['json just over', () => JSON.stringify({ [name]: 'a'.repeat(16 * 1024) }), JSON_TYPE, {}],
        ['json 1 MiB', () => JSON.stringify({ [name]: 'a'.repeat(1024 * 1024) }), JSON_TYPE, {}],
        ['gzip bomb (5 MB of JSON in ~5 KB)', () => gzipSync(Buffer.from(JSON.stringify({ [name]: 'a'.repeat(5_000_000) }))), JSON_TYPE, { 'content-encoding': 'gzip' }],
        ['gzip bomb, form', () => new Uint8Array(gzipSync(Buffer.from(`${name}=${'a'.repeat(1_000_000)}`))), FORM, { 'content-encoding': 'gzip' }],
        ['chunked, no Content-Length', () => chunkedStream(40, 1024, `{"${name}":"`), JSON_TYPE, {}],
      ]
      for (const [what, makeBody, type, headers] of cases) {
        // A large or streamed body is refused while the client still sends it: the server answers 413 and
        // closes, and the client may see the connection reset before it reads the answer; the server's
        // request log then says what it answered. A reset can also hit a request the client began on a
        // kept-alive connection the server was closing after an earlier 413: the server never saw that
        // one (no log line), so it is sent again. Either way the log line must say 413.
        let outcome: { response?: Response; logged?: number } = {}
        for (let attempt = 0; attempt < 3 && outcome.logged === undefined; attempt += 1) {
          const requestId = `over-16k-${(requestCounter += 1)}`
          const response = await fetch(`${app.url}${endpoint.path}`, {
            method: endpoint.method,
            headers: { ...endpoint.headers, 'content-type': type, 'x-request-id': requestId, ...headers },
            body: makeBody(),
            duplex: 'half',
          } as RequestInit).catch(() => undefined)
          outcome = { ...(response ? { response } : {}), ...(await loggedStatus(requestId, response ? 2000 : 200)) }
          if (response) break
        }
        const { response, logged } = outcome
        if (response) await expectError(t, response, `${endpoint.name}: ${what}`, { status: 413, error: 'invalid_request', bearer: endpoint.bearer }, secrets)
        t.equal(logged, 413, `${endpoint.name}: ${what}: the request log says 413${response ? '' : ' (the client saw the connection closed under it)'}`)
      }
    })
  })
})

/** A streamed body: fetch sends it chunked, without a Content-Length. */
function chunkedStream(chunks: number, size: number, prefix: string): ReadableStream<Uint8Array> {
  let sent = 0
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent === chunks) return controller.close()
      controller.enqueue(new TextEncoder().encode(sent === 0 ? prefix : 'a'.repeat(size)))
      sent += 1
    },
  })
}

t.test('other methods on the POST, PATCH and GET endpoints are 405', async (t) => {
  await battery(t, async () => {
    const endpoints: Array<[string, string[], string[]]> = [
      ['/token', ['POST'], ['GET', 'PUT', 'DELETE', 'PATCH', 'PROPFIND', 'HEAD']],
      ['/revoke', ['POST'], ['GET', 'PUT', 'DELETE', 'PATCH', 'HEAD']],
      ['/introspect', ['POST'], ['GET', 'PUT', 'DELETE', 'PATCH', 'HEAD']],
      ['/logout', ['POST'], ['GET', 'PUT', 'DELETE', 'PATCH', 'HEAD']],
      ['/wechat/decrypt', ['POST'], ['GET', 'PUT', 'DELETE', 'PATCH', 'HEAD']],
      ['/wechat/phone', ['POST', 'DELETE'], ['GET', 'PUT', 'PATCH', 'HEAD']],
      ['/account/delete', ['POST'], ['GET', 'PUT', 'DELETE', 'PATCH', 'HEAD']],
      ['/account/export', ['GET'], ['POST', 'PUT', 'DELETE', 'PATCH']],
      ['/events', ['POST'], ['GET', 'PUT', 'DELETE', 'PATCH', 'HEAD']],
      ['/userinfo', ['GET', 'POST', 'PATCH'], ['PUT', 'DELETE', 'PROPFIND']],
      ['/userinfo/profile', ['POST'], ['GET', 'PUT', 'DELETE', 'PATCH', 'HEAD']],
    ]
    for (const [path, allowed, methods] of endpoints) {
      for (const method of methods) {
        // With a query-string token too: refused, and never logged.
        const query = method === 'GET' ? `?access_token=${encodeURIComponent(tokens.access_token as string)}&code=abc` : ''
        const response = await fetch(`${app.url}${path}${query}`, { method, headers: { authorization: BEARER } })
        t.equal(response.status, 405, `${method} ${path}: 405`)
        const allow = (response.headers.get('allow') ?? '').split(/, */)
        for (const method of allowed) t.ok(allow.includes(method), `${method} ${path}: Allow lists ${method}`)
        if (method === 'HEAD') {
          t.equal(await response.text(), '', `HEAD ${path}: no body`)
          continue
        }
        await expectError(t, response, `${method} ${path}`, { status: 405, error: 'invalid_request' }, secrets)
      }
    }
    // TRACE is refused by fetch: send it raw.
    for (const path of ['/token', '/userinfo', '/introspect']) {
      const answer = await rawRequest(app, `TRACE ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: ${BEARER}\r\nConnection: close\r\n\r\n`)
      t.equal(answer.status, 405, `TRACE ${path}: 405`)
      t.notOk(answer.body.includes(tokens.access_token as string), `TRACE ${path}: the request is not echoed`)
    }
  })
})

t.test('a token in the URL is refused and never logged', async (t) => {
  await battery(t, async () => {
    const token = tokens.access_token as string
    for (const query of [`?access_token=${token}`, `?x=1&access_token=${token}`, `?ACCESS_TOKEN=${token}`, `?access_token[]=${token}`]) {
      const response = await fetch(`${app.url}/userinfo${query}`, { headers: { authorization: BEARER } })
      t.ok(response.status === 400 || response.status === 401 || response.status === 200, `GET /userinfo${query.slice(0, 20)}: no 5xx (${response.status})`)
      if (response.status !== 200) await expectError(t, response, `GET /userinfo${query.slice(0, 20)}`, { status: [400, 401], bearer: true }, secrets)
      else secrets.checkText(t, await response.text(), `GET /userinfo${query.slice(0, 20)}`)
    }
    const lower = await fetch(`${app.url}/userinfo?access_token=${token}`)
    await expectError(t, lower, 'access_token in the query, no header', { status: 400, error: 'invalid_request', bearer: true }, secrets)
    const posted = await app.postForm(`/token?grant_type=refresh_token&refresh_token=${tokens.refresh_token as string}`, {})
    await expectError(t, posted, 'a refresh token in the /token query is not read', { status: 400, error: 'invalid_request' }, secrets)
  })
})

t.test('hostile wx.login codes are refused before WeChat is called', async (t) => {
  const hostile: unknown[] = [
    '',
    'a'.repeat(129),
    'a'.repeat(10_000),
    '代码代码',
    'café',
    'abc😀',
    'ａｂｃ',
    'abc\u0000def',
    '\u0000',
    'abc\r\nX-Injected: 1',
    'abc\n',
    'abc\r',
    'abc&openid=evil',
    'abc&appid=wx0000000000000dev&secret=x',
    'abc=def',
    'abc%26openid%3Devil',
    '%00',
    'a+b',
    'a b',
    ' abc',
    'abc ',
    '\tabc',
    'abc#frag',
    'abc?x=1',
    '../../etc/passwd',
    'abc/def',
    'abc\\def',
    '"abc"',
    "abc'--",
    'abc;DROP TABLE users',
    '\u202eabc',
    '\ufeffabc',
    'abc\u2028',
    'e\u0301',
    '${jndi:ldap://x}',
    '<script>',
  ]
  const nonStrings: unknown[] = [123, 0, true, false, null, ['abc'], { a: 'abc' }, [], {}]
  await battery(t, async () => {
    for (const code of hostile) {
      const label = show(code, 30)
      const form = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: code as string })
      await expectError(t, form, `form code ${label}`, { status: 400, error: 'invalid_request' }, secrets)
      const json = await app.postJson('/token', { grant_type: WECHAT_CODE_GRANT, code })
      await expectError(t, json, `json code ${label}`, { status: 400, error: 'invalid_request' }, secrets)
      const phone = await app.postJson('/wechat/phone', { code }, { authorization: BEARER })
      await expectError(t, phone, `phone code ${label}`, { status: 400, error: 'invalid_request', bearer: true }, secrets)
      const phoneForm = await app.postForm('/wechat/phone', { code: code as string }, { authorization: BEARER })
      await expectError(t, phoneForm, `phone form code ${label}`, { status: 400, error: 'invalid_request', bearer: true }, secrets)
    }
    for (const code of nonStrings) {
      const json = await app.postJson('/token', { grant_type: WECHAT_CODE_GRANT, code })
      await expectError(t, json, `json code ${show(code)}`, { status: 400, error: 'invalid_request' }, secrets)
      const phone = await app.postJson('/wechat/phone', { code }, { authorization: BEARER })
      await expectError(t, phone, `phone code ${show(code)}`, { status: 400, error: 'invalid_request', bearer: true }, secrets)
    }
    await expectError(t, await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT }), 'no code', { status: 400, error: 'invalid_request' }, secrets)
    await expectError(t, await app.postJson('/wechat/phone', {}, { authorization: BEARER }), 'no phone code', { status: 400, error: 'invalid_request', bearer: true }, secrets)
    // Bad scope and client_id are refused before WeChat too.
    for (const scope of ['admin', 'openid admin', 'profile\u0000', 'PROFILE', 'o'.repeat(5000), '中文']) {
      const response = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: 'abcdef', scope })
      await expectError(t, response, `scope ${show(scope, 20)}`, { status: 400, error: 'invalid_scope' }, secrets)
    }
    for (const clientId of ['wxevil', 'wx0000000000000DEV', 'wx0000000000000dev ', '__proto__', 'c'.repeat(5000)]) {
      const response = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: 'abcdef', client_id: clientId })
      await expectError(t, response, `client_id ${show(clientId, 20)}`, { status: 401, error: 'invalid_client' }, secrets)
    }
  })
  // The counter does move for a well-formed code: the "unchanged" checks above are not vacuous.
  const before = app.simulator.calls.jscode2session
  const unknown = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: 'A'.repeat(128) })
  await expectError(t, unknown, 'a well-formed unknown code', { status: 400, error: 'invalid_grant' }, secrets)
  t.equal(app.simulator.calls.jscode2session, before + 1, 'a well-formed code does reach WeChat')
})

t.test('huge and numerous headers', async (t) => {
  await battery(t, async () => {
    const huge = await fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${'a'.repeat(20 * 1024)}` } })
    t.ok(huge.status === 431 || huge.status === 401, `Authorization of 20 KB: 431 or 401 (got ${huge.status})`)
    if (huge.status === 401) await expectError(t, huge, 'Authorization of 20 KB', { status: 401, bearer: true }, secrets)
    else await huge.arrayBuffer()

    const justUnder = await fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${'a'.repeat(15 * 1024)}` } })
    await expectError(t, justUnder, 'Authorization of 15 KB', { status: 401, error: 'invalid_token', bearer: true }, secrets)

    const hugeToken = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: 'a'.repeat(15 * 1024) })
    await expectError(t, hugeToken, 'refresh_token of 15 KB', { status: 400, error: 'invalid_grant' }, secrets)

    const many = (count: number, value = 'v') => Object.fromEntries(Array.from({ length: count }, (_, i) => [`x-junk-${i}`, value]))
    const hundred = await fetch(`${app.url}/userinfo`, { headers: { ...many(100), authorization: BEARER } })
    t.equal(hundred.status, 200, '100 extra headers with a valid token: 200')
    secrets.checkText(t, await hundred.text(), '100 headers')
    // Past ~1000 headers Node's parser drops the rest (maxHeadersCount): the Authorization may be lost, never a 5xx.
    const thousand = await fetch(`${app.url}/userinfo`, { headers: { ...many(1000), authorization: BEARER } })
    if (thousand.status === 200) t.pass('1000 extra headers with a valid token: 200')
    else await expectError(t, thousand, '1000 extra headers with a valid token', { status: 401, bearer: true }, secrets)
    const tooBig = await fetch(`${app.url}/token`, { method: 'POST', headers: { ...many(300, 'v'.repeat(100)), 'content-type': FORM }, body: 'grant_type=x' })
    t.ok(tooBig.status === 431 || tooBig.status === 400, `300 headers of 100 bytes: 431 or 400 (got ${tooBig.status})`)
    await tooBig.arrayBuffer()

    const odd: Array<[string, Record<string, string>]> = [
      ['X-Request-Id of 10 KB', { 'x-request-id': 'r'.repeat(10_000) }],
      ['X-Request-Id with quotes', { 'x-request-id': '"><script>' }],
      ['X-Forwarded-For garbage', { 'x-forwarded-for': `${'1.1.1.1, '.repeat(500)}::::, not-an-ip` }],
      ['Content-Length with a hostile Content-Type', { 'content-type': `application/json; charset="${'x'.repeat(3000)}"` }],
      ['X-Forwarded-Host', { 'x-forwarded-host': 'evil.example' }],
      ['Cookie of 8 KB', { cookie: `a=${'c'.repeat(8000)}` }],
      ['Accept junk', { accept: '*/*;q=abc, text/html;level=;q=' }],
    ]
    for (const [what, headers] of odd) {
      const response = await fetch(`${app.url}/token`, { method: 'POST', headers: { 'content-type': FORM, ...headers }, body: 'grant_type=nope' })
      await expectError(t, response, what, { status: [400, 415], error: ['unsupported_grant_type', 'invalid_request'] }, secrets)
      t.match(response.headers.get('x-request-id') ?? '', /^[A-Za-z0-9._-]{1,64}$/, `${what}: a well-formed X-Request-Id`)
    }
  })
})

/** A raw answer: a 4xx from Node's parser (empty body) or from minigate (an error body), or a hang-up; never a 5xx. */
function expectRawRefusal(t: Test, answer: { status: number; head: string; body: string }, name: string, allowed = [0, 400, 404, 405, 413, 414, 415, 431]): void {
  t.ok(allowed.includes(answer.status), `${name}: refused with ${answer.status || 'a closed connection'}`, { head: answer.head.slice(0, 200) })
  t.ok(answer.status < 500, `${name}: never a 5xx`)
  if (answer.status >= 400 && /content-type: application\/json/i.test(answer.head)) {
    const body = JSON.parse(answer.body) as Record<string, unknown>
    t.type(body.error, 'string', `${name}: an error code in the body`)
  }
  secrets.checkText(t, answer.body, name)
}

t.test('raw malformed HTTP', async (t) => {
  const rows = await rowCounts(app.deps)
  const H = 'Host: 127.0.0.1\r\n'
  const cases: Array<[string, string | Buffer, number[]?]> = [
    ['garbage request line', 'GARBAGE\r\n\r\n'],
    ['method only', 'GET\r\n\r\n'],
    ['HTTP/9.9', `GET /healthz HTTP/9.9\r\n${H}\r\n`, [0, 400, 505]],
    ['extra token in the request line', `GET /healthz HTTP/1.1 extra\r\n${H}\r\n`],
    ['binary request line', Buffer.from([0x00, 0x01, 0x02, 0xff, 0x0d, 0x0a, 0x0d, 0x0a])],
    ['HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
    ['TLS hello on the plain port', Buffer.from('16030100a5010000a10303', 'hex')],
    ['absolute URI to another host', `GET http://evil.example/token HTTP/1.1\r\n${H}Connection: close\r\n\r\n`],
    ['NUL in the path', `GET /userinfo\u0000 HTTP/1.1\r\n${H}\r\n`],
    ['%00 in the path', `GET /%00 HTTP/1.1\r\n${H}Connection: close\r\n\r\n`],
    ['broken escape in the path', `GET /%zz%E0%A4 HTTP/1.1\r\n${H}Connection: close\r\n\r\n`],
    ['broken escape in the query', `GET /userinfo?%zz=%E0%A4&access_token HTTP/1.1\r\n${H}Connection: close\r\n\r\n`],
    ['dot segments', `GET /../../../etc/passwd HTTP/1.1\r\n${H}Connection: close\r\n\r\n`],
    ['a 20 KB path', `GET /${'a'.repeat(20_000)} HTTP/1.1\r\n${H}\r\n`],
    ['NUL in a header value', `GET /userinfo HTTP/1.1\r\n${H}Authorization: Bearer a\u0000b\r\n\r\n`],
    ['NUL in a header name', `GET /userinfo HTTP/1.1\r\n${H}Author\u0000ization: Bearer ab\r\n\r\n`],
    ['CR alone in a header', `GET /userinfo HTTP/1.1\r\n${H}Authorization: Bearer a\rb\r\n\r\n`],
    ['LF-only line endings', `GET /healthz HTTP/1.1\n${H.trim()}\nConnection: close\n\n`, [0, 200, 400]],
    ['obsolete line folding', `GET /userinfo HTTP/1.1\r\n${H}Authorization: Bearer\r\n abc\r\n\r\n`, [0, 400, 401]],
    ['header without a colon', `GET /userinfo HTTP/1.1\r\n${H}Authorization Bearer abc\r\n\r\n`],
    ['space before the colon', `GET /userinfo HTTP/1.1\r\n${H}Authorization : Bearer abc\r\n\r\n`],
    ['a 20 KB header', `GET /userinfo HTTP/1.1\r\n${H}Authorization: Bearer ${'a'.repeat(20_000)}\r\n\r\n`],
    ['two Content-Lengths', `POST /token HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nContent-Length: 5\r\nContent-Length: 12\r\n\r\ngrant_type=x`],
    ['Content-Length and Transfer-Encoding', `POST /token HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
    ['Transfer-Encoding: gzip, chunked', `POST /token HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n`],
    ['Transfer-Encoding: xchunked', `POST /token HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`],
    ['negative Content-Length', `POST /token HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nContent-Length: -1\r\n\r\n`],
    ['non-numeric Content-Length', `POST /token HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nContent-Length: abc\r\n\r\n`],
    ['a huge Content-Length', `POST /token HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nContent-Length: 99999999999\r\n\r\ngrant_type=x`, [0, 400, 413]],
    ['a Content-Length longer than the body', `POST /token HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nContent-Length: 100\r\n\r\ngrant_type=x`],
    ['a bad chunk size', `POST /token HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`],
    ['an enormous chunk size', `POST /token HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc\r\n0\r\n\r\n`, [0, 400, 413]],
    ['a truncated chunk', `POST /token HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc`],
    ['a chunk without its CRLF', `POST /token HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n`],
    ['chunk extensions of 10 KB', `POST /token HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nTransfer-Encoding: chunked\r\n\r\n3;${'e'.repeat(10_000)}\r\nabc\r\n0\r\n\r\n`],
    ['a chunked body over 16 KiB', `POST /token HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${`400\r\n${'a'.repeat(1024)}\r\n`.repeat(20)}0\r\n\r\n`, [413]],
    ['HTTP/1.0 without Host', 'POST /token HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}', [400]],
    ['HTTP/1.1 without Host', 'GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n', [0, 400]],
    ['two Host headers', `GET /healthz HTTP/1.1\r\n${H}${H}Connection: close\r\n\r\n`, [0, 200, 400]],
    ['Expect: 100-continue with junk', `POST /token HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nExpect: 100-continue\r\nContent-Length: 12\r\n\r\ngrant_type=x`, [0, 100, 400, 417]],
    ['Expect: something else', `POST /token HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nExpect: 999-nonsense\r\nContent-Length: 12\r\n\r\ngrant_type=x`, [0, 400, 417]],
    ['Upgrade: websocket', `GET /userinfo HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`, [0, 400, 401, 426]],
    ['two Authorization headers', `GET /userinfo HTTP/1.1\r\n${H}Authorization: Bearer abc\r\nAuthorization: ${BEARER}\r\nConnection: close\r\n\r\n`, [401]],
    ['latin-1 bytes in Authorization', Buffer.from(`GET /userinfo HTTP/1.1\r\n${H}Authorization: Bearer \xe9\xff\xfe\r\nConnection: close\r\n\r\n`, 'latin1'), [401]],
    ['UTF-8 bytes in Authorization', Buffer.from(`GET /userinfo HTTP/1.1\r\n${H}Authorization: Bearer 中文\r\nConnection: close\r\n\r\n`, 'utf8'), [401]],
    ['a JSON body with a NUL byte', Buffer.concat([Buffer.from(`POST /token HTTP/1.1\r\n${H}Content-Type: ${JSON_TYPE}\r\nContent-Length: 8\r\nConnection: close\r\n\r\n`), Buffer.from('{"a":\u0000}')]), [400]],
  ]
  for (const [name, bytes, allowed] of cases) {
    expectRawRefusal(t, await rawRequest(app, bytes), name, allowed)
  }
  // Half a request, then the client hangs up: nothing to answer, nothing written.
  expectRawRefusal(t, await rawRequest(app, `POST /token HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nContent-Length: 50\r\n\r\ngrant_`), 'a hang-up mid-body')
  t.same(await rowCounts(app.deps), rows, 'no row was written')
  const leaks = app.logs.filter((line) => secrets.foundIn(line) !== undefined)
  t.same(leaks, [], 'no secret in a log line')
  await expectStillServing(t, app, secrets)
})

t.test('broken HTTP carrying credentials does not put them in the logs', async (t) => {
  const login = await app.login({ openid: 'o-raw-credentials' })
  secrets.addTokens(login)
  const from = app.logs.length
  const H = 'Host: 127.0.0.1\r\n'
  const requests = [
    // A bad chunk after a Bearer header and a refresh token.
    `POST /wechat/decrypt HTTP/1.1\r\n${H}Authorization: Bearer ${login.access_token as string}\r\nContent-Type: ${FORM}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nrefresh_token=${login.refresh_token as string}\r\n0\r\n\r\n`,
    `POST /token HTTP/1.1\r\n${H}Content-Type: ${FORM}\r\nTransfer-Encoding: chunked\r\n\r\n${(`grant_type=refresh_token&refresh_token=${login.refresh_token as string}`.length).toString(16)}\r\ngrant_type=refresh_token&refresh_token=${login.refresh_token as string}X0\r\n\r\n`,
  ]
  for (const [index, request] of requests.entries()) {
    expectRawRefusal(t, await rawRequest(app, request), `broken request ${index + 1} with credentials`, [0, 400, 401])
  }
  const lines = app.logs.slice(from)
  // pino writes a Buffer as an array of byte values: decode them before looking for secrets.
  const decoded = lines.map((line) => line.replace(/\[(\d+(?:,\d+){20,})\]/g, (_, bytes: string) => Buffer.from(bytes.split(',').map(Number)).toString('latin1')))
  const leaking = decoded.filter((line) => secrets.foundIn(line) !== undefined).map((line) => line.slice(0, 300))
  t.same(leaking, [], 'no token in a log line, even as the raw bytes of a parse error')
  t.same(unhandled(lines), [], 'a client sending broken HTTP is not logged as a server error')
  await expectStillServing(t, app, secrets)
})

t.test('after the battery', async (t) => {
  await expectStillServing(t, app, secrets)
  await expectIntegrity(t, app)
  const leaking = app.logs.filter((line) => secrets.foundIn(line) !== undefined)
  t.same(leaking, [], 'no secret in any log line of the whole run')
})
