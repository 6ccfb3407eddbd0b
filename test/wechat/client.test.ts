import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { InvalidGrant, TemporarilyUnavailable, UpstreamError } from '../../src/errors.js'
import { createLogger } from '../../src/log.js'
import { createWeChatClient, type WeChatClient } from '../../src/wechat/client.js'
import { failureOf, loginErrorFor, retryAfterSeconds, WeChatError, type WeChatFailure } from '../../src/wechat/errors.js'

const APPID = 'wx1234567890abcdef'
const SECRET = 'c0ffee0000secret0000not0000logged'
const SESSION_KEY = 'HyVFkGl5F5OQWJZZaNzBBg=='

type Handler = (req: IncomingMessage, res: ServerResponse) => void

interface FakeWeChat {
  base: string
  /** Request URLs (path and query) in arrival order. */
  urls: string[]
  /** How the next requests are answered. */
  handler: Handler
}

/** A tiny stand-in for api.weixin.qq.com on a random loopback port. */
async function fakeWeChat(t: Test): Promise<FakeWeChat> {
  const fake: FakeWeChat = { base: '', urls: [], handler: json({}) }
  const server = createServer((req, res) => {
    fake.urls.push(req.url ?? '')
    fake.handler(req, res)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  fake.base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return fake
}

function json(body: unknown, status = 200): Handler {
  return (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify(body))
  }
}

function raw(body: string, status: number, contentType: string): Handler {
  return (_req, res) => {
    res.writeHead(status, { 'content-type': contentType })
    res.end(body)
  }
}

function client(base: string, timeoutMs = 2000): { wechat: WeChatClient; logs: string[] } {
  const logs: string[] = []
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      logs.push(...chunk.toString().split('\n').filter(Boolean))
      callback()
    },
  })
  const log = createLogger({ level: 'debug', destination })
  return { wechat: createWeChatClient({ apiBase: base, apps: [{ appid: APPID, secret: SECRET }], timeoutMs, log }), logs }
}

/** Expects a WeChatError; returns it. */
async function wechatError(t: Test, promise: Promise<unknown>, failure: WeChatFailure, name: string): Promise<WeChatError | undefined> {
  try {
    await promise
  } catch (error) {
    t.type(error, WeChatError, `${name}: a WeChatError`)
    t.equal((error as WeChatError).failure, failure, `${name}: ${failure}`)
    t.equal((error as WeChatError).api, 'jscode2session')
    t.notOk((error as Error).message.includes(SECRET), `${name}: no secret in the message`)
    return error as WeChatError
  }
  t.fail(`${name}: expected a WeChatError`)
  return undefined
}

/** Expects any WeChatError (of any API); returns it. */
async function fetchError(t: Test, promise: Promise<unknown>): Promise<WeChatError | undefined> {
  try {
    await promise
  } catch (error) {
    t.type(error, WeChatError)
    return error as WeChatError
  }
  t.fail('expected a WeChatError')
  return undefined
}

function assertNoSecrets(t: Test, logs: string[], codes: string[]): void {
  const all = logs.join('\n')
  t.notOk(all.includes(SECRET), 'the AppSecret is never logged')
  t.notOk(all.includes('secret='), 'no query string is logged')
  t.notOk(all.includes('js_code'), 'no js_code is logged')
  t.notOk(all.includes('jscode2session?'), 'no jscode2session URL is logged')
  t.notOk(all.includes(SESSION_KEY), 'no session_key is logged')
  for (const code of codes) t.notOk(all.includes(code), `the code ${JSON.stringify(code)} is never logged`)
}

t.test('code2Session sends every parameter URL-encoded and maps a success', async (t) => {
  const fake = await fakeWeChat(t)
  const { wechat, logs } = client(fake.base)
  const code = 'a&b+c d=e%f/g?h#i'
  fake.handler = json({ openid: 'o-user-1', session_key: SESSION_KEY, unionid: 'u-1' })
  t.same(await wechat.code2Session(APPID, code), { openid: 'o-user-1', sessionKey: SESSION_KEY, unionid: 'u-1' })

  t.equal(fake.urls.length, 1)
  const url = new URL(fake.urls[0] as string, fake.base)
  t.equal(url.pathname, '/sns/jscode2session')
  t.equal(url.searchParams.get('appid'), APPID)
  t.equal(url.searchParams.get('secret'), SECRET)
  t.equal(url.searchParams.get('js_code'), code, 'the code arrives intact')
  t.equal(url.searchParams.get('grant_type'), 'authorization_code')
  t.same([...url.searchParams.keys()].sort(), ['appid', 'grant_type', 'js_code', 'secret'], 'no extra or repeated parameter')
  t.notOk(url.search.includes('+c'), 'a literal + is escaped, not sent as a space')
  t.notOk(url.search.includes('&b'), 'a literal & is escaped, not a parameter separator')
  assertNoSecrets(t, logs, [code])
})

t.test('unionid is null when WeChat sends none', async (t) => {
  const fake = await fakeWeChat(t)
  const { wechat } = client(fake.base)
  fake.handler = json({ openid: 'o-user-1', session_key: SESSION_KEY })
  t.same(await wechat.code2Session(APPID, 'c1'), { openid: 'o-user-1', sessionKey: SESSION_KEY, unionid: null })
  fake.handler = json({ openid: 'o-user-1', session_key: SESSION_KEY, unionid: '' })
  t.equal((await wechat.code2Session(APPID, 'c2')).unionid, null, 'an empty unionid is none')
  fake.handler = json({ openid: 'o-user-1', session_key: SESSION_KEY, unionid: 42 })
  t.equal((await wechat.code2Session(APPID, 'c3')).unionid, null, 'a non-string unionid is none')
  fake.handler = json({ errcode: 0, errmsg: 'ok', openid: 'o-user-1', session_key: SESSION_KEY })
  t.equal((await wechat.code2Session(APPID, 'c4')).openid, 'o-user-1', 'errcode 0 is a success')
})

t.test('a trailing slash on the API base is harmless', async (t) => {
  const fake = await fakeWeChat(t)
  const { wechat } = client(`${fake.base}/`)
  fake.handler = json({ openid: 'o1', session_key: SESSION_KEY })
  await wechat.code2Session(APPID, 'c')
  t.match(fake.urls[0], /^\/sns\/jscode2session\?/)
})

t.test('an unconfigured appid fails before any request', async (t) => {
  const fake = await fakeWeChat(t)
  const { wechat } = client(fake.base)
  await t.rejects(wechat.code2Session('wx-unknown', 'c'), /no WeChat app wx-unknown/)
  t.equal(fake.urls.length, 0)
})

t.test('WeChat errcodes become failures', async (t) => {
  const fake = await fakeWeChat(t)
  const { wechat, logs } = client(fake.base)
  const cases: Array<[number | string, WeChatFailure]> = [
    [40029, 'invalid_code'],
    [40163, 'code_used'],
    [40226, 'user_blocked'],
    [45011, 'rate_limited'],
    [-1, 'busy'],
    [40013, 'rejected'],
    [40125, 'rejected'],
    [41008, 'rejected'],
    ['40029', 'invalid_code'],
  ]
  const codes: string[] = []
  for (const [errcode, failure] of cases) {
    const code = `code-for-${errcode}`
    codes.push(code)
    fake.handler = json({ errcode, errmsg: 'some message' })
    const error = await wechatError(t, wechat.code2Session(APPID, code), failure, `errcode ${errcode}`)
    t.equal(error?.errcode, Number(errcode), 'the errcode is kept as a number')
    t.match(error?.message, new RegExp(`errcode ${errcode}`))
  }
  fake.handler = json({ errcode: 'not-a-number', errmsg: 'x' })
  const odd = await wechatError(t, wechat.code2Session(APPID, 'c'), 'bad_response', 'non-numeric errcode')
  t.equal(odd?.errcode, undefined)
  t.ok(logs.some((line) => JSON.parse(line).errcode === 40029), 'the errcode is logged')
  assertNoSecrets(t, logs, codes)
})

t.test('unusable answers are bad_response or http_error', async (t) => {
  const fake = await fakeWeChat(t)
  const { wechat, logs } = client(fake.base)
  const cases: Array<[string, Handler, WeChatFailure]> = [
    ['HTTP 500', raw('<html><body>500</body></html>', 500, 'text/html'), 'http_error'],
    ['HTTP 502 with JSON', json({ openid: 'o1', session_key: SESSION_KEY }, 502), 'http_error'],
    ['HTTP 404', raw('not found', 404, 'text/plain'), 'http_error'],
    ['HTML with 200', raw('<html><body>gateway</body></html>', 200, 'text/html'), 'bad_response'],
    ['broken JSON', raw('{"openid": "o1", ', 200, 'application/json'), 'bad_response'],
    ['empty body', raw('', 200, 'application/json'), 'bad_response'],
    ['JSON array', json([{ openid: 'o1', session_key: SESSION_KEY }]), 'bad_response'],
    ['JSON null', json(null), 'bad_response'],
    ['JSON string', json('o1'), 'bad_response'],
    ['JSON number', json(42), 'bad_response'],
    ['missing openid', json({ session_key: SESSION_KEY }), 'bad_response'],
    ['empty openid', json({ openid: '', session_key: SESSION_KEY }), 'bad_response'],
    ['numeric openid', json({ openid: 12345, session_key: SESSION_KEY }), 'bad_response'],
    ['missing session_key', json({ openid: 'o1' }), 'bad_response'],
    ['short session_key', json({ openid: 'o1', session_key: 'abc' }), 'bad_response'],
    ['session_key without padding', json({ openid: 'o1', session_key: 'HyVFkGl5F5OQWJZZaNzBBgAA' }), 'bad_response'],
    ['session_key base64url', json({ openid: 'o1', session_key: 'HyVFkGl5F5OQWJZZaN_-Bg==' }), 'bad_response'],
    ['session_key too long', json({ openid: 'o1', session_key: `A${SESSION_KEY}` }), 'bad_response'],
  ]
  for (const [name, handler, failure] of cases) {
    fake.handler = handler
    await wechatError(t, wechat.code2Session(APPID, `code-${name}`), failure, name)
  }
  assertNoSecrets(t, logs, cases.map(([name]) => `code-${name}`))
})

t.test('a WeChat that never answers times out as unreachable', async (t) => {
  const fake = await fakeWeChat(t)
  const { wechat, logs } = client(fake.base, 200)
  fake.handler = () => {
    // Never answer; the teardown closes the connection.
  }
  await wechatError(t, wechat.code2Session(APPID, 'hang-code'), 'unreachable', 'no answer')
  t.equal(fake.urls.length, 1, 'the request was sent once, not retried')

  // Headers arrive but the body never ends: the timeout covers reading the body too.
  fake.handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write('{"openid":')
  }
  await wechatError(t, wechat.code2Session(APPID, 'slow-body-code'), 'unreachable', 'body never ends')
  assertNoSecrets(t, logs, ['hang-code', 'slow-body-code'])
})

t.test('a refused connection is unreachable', async (t) => {
  // A port that was just free: nothing listens on it any more.
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const port = (probe.address() as AddressInfo).port
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  const { wechat, logs } = client(`http://127.0.0.1:${port}`)
  await wechatError(t, wechat.code2Session(APPID, 'refused-code'), 'unreachable', 'connection refused')
  t.ok(logs.some((line) => /unreachable/.test(line)), 'the failure is logged')
  assertNoSecrets(t, logs, ['refused-code'])
  t.notOk(logs.join('\n').includes('http://127.0.0.1'), 'no URL is logged')
})

t.test('an injected fetch is used instead of the global one', async (t) => {
  const seen: string[] = []
  const fetchStub: typeof fetch = async (input) => {
    seen.push(String(input))
    return new Response(JSON.stringify({ openid: 'o-stub', session_key: SESSION_KEY }), { status: 200 })
  }
  const log = createLogger({ level: 'silent' })
  const wechat = createWeChatClient({ apiBase: 'https://api.weixin.qq.com', apps: [{ appid: APPID, secret: SECRET }], timeoutMs: 1000, log, fetch: fetchStub })
  t.equal((await wechat.code2Session(APPID, 'c')).openid, 'o-stub')
  t.equal(seen.length, 1)
  t.match(seen[0], /^https:\/\/api\.weixin\.qq\.com\/sns\/jscode2session\?/)

  const throwing: typeof fetch = async () => {
    throw new TypeError(`fetch failed for https://api.weixin.qq.com/sns/jscode2session?secret=${SECRET}`)
  }
  const failing = createWeChatClient({ apiBase: 'https://api.weixin.qq.com', apps: [{ appid: APPID, secret: SECRET }], timeoutMs: 1000, log, fetch: throwing })
  const error = await wechatError(t, failing.code2Session(APPID, 'c'), 'unreachable', 'fetch throws')
  t.notOk(error?.message.includes(SECRET), 'the underlying error (which holds the URL) is not passed on')
})

t.test('failureOf maps errcodes', async (t) => {
  t.equal(failureOf(40029), 'invalid_code')
  t.equal(failureOf(40163), 'code_used')
  t.equal(failureOf(40226), 'user_blocked')
  t.equal(failureOf(45011), 'rate_limited')
  t.equal(failureOf(-1), 'busy')
  t.equal(failureOf(40001), 'access_token_invalid')
  t.equal(failureOf(40014), 'access_token_invalid')
  t.equal(failureOf(42001), 'access_token_invalid')
  t.equal(failureOf(40013), 'rejected')
  t.equal(failureOf(0), 'rejected')
  t.equal(failureOf(123456), 'rejected')
})

t.test('loginErrorFor: what the client is told for each WeChat failure', async (t) => {
  const cases: Array<[WeChatFailure, Function, number, string, string | undefined]> = [
    ['invalid_code', InvalidGrant, 400, 'invalid_grant', undefined],
    ['code_used', InvalidGrant, 400, 'invalid_grant', undefined],
    ['user_blocked', InvalidGrant, 400, 'invalid_grant', undefined],
    ['rate_limited', TemporarilyUnavailable, 503, 'temporarily_unavailable', String(retryAfterSeconds.rate_limited)],
    ['busy', TemporarilyUnavailable, 503, 'temporarily_unavailable', String(retryAfterSeconds.busy)],
    ['unreachable', TemporarilyUnavailable, 503, 'temporarily_unavailable', String(retryAfterSeconds.unreachable)],
    ['http_error', UpstreamError, 502, 'server_error', undefined],
    ['bad_response', UpstreamError, 502, 'server_error', undefined],
    ['rejected', UpstreamError, 502, 'server_error', undefined],
    ['access_token_invalid', UpstreamError, 502, 'server_error', undefined],
  ]
  for (const [failure, type, status, code, retryAfter] of cases) {
    const error = loginErrorFor(new WeChatError('jscode2session', failure, 40000))
    t.type(error, type, `${failure}: ${type.name}`)
    t.equal(error.status, status, `${failure}: HTTP ${status}`)
    t.equal(error.code, code, `${failure}: ${code}`)
    t.equal(error.headers['Retry-After'], retryAfter, `${failure}: Retry-After ${retryAfter ?? 'absent'}`)
    t.equal(error.expose, true, `${failure}: the description may be shown`)
    t.notMatch(error.description, /errcode|40000|jscode2session/, `${failure}: no upstream detail in the description`)
  }
  t.same(retryAfterSeconds, { busy: 2, rate_limited: 60, unreachable: 5 })
  t.not(loginErrorFor(new WeChatError('jscode2session', 'busy')).code, 'invalid_grant', 'WeChat trouble is never invalid_grant')
})

t.test('WeChatError messages name the API, failure and errcode only', async (t) => {
  t.equal(new WeChatError('jscode2session', 'invalid_code', 40029).message, 'WeChat jscode2session failed: invalid_code (errcode 40029)')
  t.equal(new WeChatError('jscode2session', 'unreachable').message, 'WeChat jscode2session failed: unreachable')
  t.equal(new WeChatError('jscode2session', 'busy', -1).name, 'WeChatError')
})

t.test('fetchAccessToken: stable_token is a POST with a JSON body, token a GET', async (t) => {
  const fake = await fakeWeChat(t)
  const { wechat, logs } = client(fake.base)
  const bodies: string[] = []
  const methods: string[] = []
  fake.handler = (req, res) => {
    methods.push(req.method ?? '')
    let body = ''
    req.on('data', (chunk: Buffer) => (body += chunk.toString()))
    req.on('end', () => {
      bodies.push(body)
      json({ access_token: 'ACCESS_TOKEN_VALUE_1', expires_in: 7200 })(req, res)
    })
  }
  t.same(await wechat.fetchAccessToken(APPID, 'stable_token'), { accessToken: 'ACCESS_TOKEN_VALUE_1', expiresIn: 7200 })
  t.equal(methods[0], 'POST')
  t.equal(new URL(fake.urls[0] as string, fake.base).pathname, '/cgi-bin/stable_token')
  t.equal(new URL(fake.urls[0] as string, fake.base).search, '', 'the secret is not in the URL')
  t.same(JSON.parse(bodies[0] as string), { grant_type: 'client_credential', appid: APPID, secret: SECRET, force_refresh: false })

  t.same(await wechat.fetchAccessToken(APPID, 'token'), { accessToken: 'ACCESS_TOKEN_VALUE_1', expiresIn: 7200 })
  t.equal(methods[1], 'GET')
  const url = new URL(fake.urls[1] as string, fake.base)
  t.equal(url.pathname, '/cgi-bin/token')
  t.same(Object.fromEntries(url.searchParams), { grant_type: 'client_credential', appid: APPID, secret: SECRET })
  t.notOk(logs.join('\n').includes('ACCESS_TOKEN_VALUE_1'), 'the access_token is not logged')
  assertNoSecrets(t, logs, [])
})

t.test('fetchAccessToken refuses unusable answers', async (t) => {
  const fake = await fakeWeChat(t)
  const { wechat } = client(fake.base)
  const cases: Array<[string, unknown]> = [
    ['no access_token', { expires_in: 7200 }],
    ['empty access_token', { access_token: '', expires_in: 7200 }],
    ['no expires_in', { access_token: 'x' }],
    ['string expires_in', { access_token: 'x', expires_in: '7200' }],
    ['zero expires_in', { access_token: 'x', expires_in: 0 }],
  ]
  for (const [name, body] of cases) {
    fake.handler = json(body)
    const error = await fetchError(t, wechat.fetchAccessToken(APPID, 'stable_token'))
    t.equal(error?.failure, 'bad_response', name)
  }
  fake.handler = json({ errcode: 40013, errmsg: 'invalid appid' })
  t.equal((await fetchError(t, wechat.fetchAccessToken(APPID, 'token')))?.failure, 'rejected')
  fake.handler = json({ errcode: -1, errmsg: 'busy' })
  t.equal((await fetchError(t, wechat.fetchAccessToken(APPID, 'token')))?.failure, 'busy')
  await t.rejects(wechat.fetchAccessToken('wx-unknown', 'token'), /no WeChat app/)
})

t.test('getPhoneNumber posts the code with the access_token and maps phone_info', async (t) => {
  const fake = await fakeWeChat(t)
  const { wechat, logs } = client(fake.base)
  const bodies: string[] = []
  let phoneInfo: unknown = {
    phoneNumber: '+86 13800138000',
    purePhoneNumber: '13800138000',
    countryCode: 86,
    watermark: { timestamp: 1_700_000_000, appid: APPID },
  }
  fake.handler = (req, res) => {
    let body = ''
    req.on('data', (chunk: Buffer) => (body += chunk.toString()))
    req.on('end', () => {
      bodies.push(body)
      json({ errcode: 0, errmsg: 'ok', phone_info: phoneInfo })(req, res)
    })
  }
  const phoneCode = 'phone-code+with&specials'
  t.same(await wechat.getPhoneNumber(APPID, 'AT/with+chars', phoneCode), {
    phoneNumber: '+86 13800138000',
    purePhoneNumber: '13800138000',
    countryCode: '86',
    watermarkAppid: APPID,
  })
  const url = new URL(fake.urls[0] as string, fake.base)
  t.equal(url.pathname, '/wxa/business/getuserphonenumber')
  t.equal(url.searchParams.get('access_token'), 'AT/with+chars', 'the access_token arrives intact')
  t.same(JSON.parse(bodies[0] as string), { code: phoneCode })

  phoneInfo = { phoneNumber: '13800138000', purePhoneNumber: '13800138000', countryCode: '86' }
  t.equal((await wechat.getPhoneNumber(APPID, 'AT', 'c2')).watermarkAppid, null, 'no watermark: null')

  for (const [name, info] of [
    ['no phone_info', undefined],
    ['letters in the number', { phoneNumber: 'x', purePhoneNumber: '138abc', countryCode: '86' }],
    ['bad country code', { phoneNumber: 'x', purePhoneNumber: '13800138000', countryCode: '+86' }],
    ['missing phoneNumber', { purePhoneNumber: '13800138000', countryCode: '86' }],
  ] as const) {
    phoneInfo = info
    t.equal((await fetchError(t, wechat.getPhoneNumber(APPID, 'AT', 'c3')))?.failure, 'bad_response', name)
  }
  fake.handler = json({ errcode: 40001, errmsg: 'invalid credential' })
  const expired = await fetchError(t, wechat.getPhoneNumber(APPID, 'AT', 'c4'))
  t.equal(expired?.failure, 'access_token_invalid')
  t.equal(expired?.api, 'getuserphonenumber')
  const all = logs.join('\n')
  t.notOk(all.includes('13800138000'), 'the phone number is not logged')
  t.notOk(all.includes(phoneCode) || all.includes('AT/with+chars'), 'neither the code nor the access_token is logged')
})
