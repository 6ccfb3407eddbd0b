/**
 * Property-based fuzzing of the RFC 6750 Bearer header parser (src/http/bearer.ts) through every Bearer
 * endpoint: random Authorization values, Bearer-shaped ones (random scheme casing, whitespace, base64url
 * segments joined by dots, padding), huge ones, and raw bytes fetch refuses to send (CR, LF, NUL, 8-bit).
 * Always a 401 with `WWW-Authenticate: Bearer realm="minigate"` (an error code only when credentials
 * came), or the parser's 400/431 for bytes HTTP does not allow; never a 5xx, never accepted.
 */
import fc from 'fast-check'
import t, { type Test } from 'tap'
import {
  expectIntegrity,
  expectStillServing,
  holds,
  rawRequest,
  Secrets,
  startApp,
} from './support.js'
import { testDialect } from '../helpers/database.js'

// The inputs fuzzed here are parsed before any database is reached: the PostgreSQL run needs fewer.
const RUNS = testDialect === 'postgres' ? 30 : 100

const app = await startApp(t)
const secrets = new Secrets(app)
const tokens = await app.login({ openid: 'o-fuzz-bearer', scope: 'openid profile phone' })
secrets.addTokens(tokens)
const realAccess = tokens.access_token as string

interface Endpoint {
  method: 'GET' | 'POST' | 'PATCH'
  path: string
  body?: string
}

const ENDPOINTS: Endpoint[] = [
  { method: 'GET', path: '/userinfo' },
  { method: 'PATCH', path: '/userinfo', body: '{"nickname":"fuzz"}' },
  { method: 'POST', path: '/logout' },
  { method: 'POST', path: '/wechat/decrypt', body: '{"encrypted_data":"AAAA","iv":"AAAAAAAAAAAAAAAAAAAAAA=="}' },
  { method: 'POST', path: '/wechat/phone', body: '{"code":"abc"}' },
]

/** What is wrong with the answer to a fuzzed Authorization header, or undefined. */
function problem(status: number, challenge: string | null, contentType: string | null, text: string, header: string): string | undefined {
  const leak = secrets.foundIn(text)
  if (leak !== undefined) return `a secret in the answer: ${leak.slice(0, 20)}`
  if (status >= 500) return `status ${status}: ${text.slice(0, 200)}`
  if (status === 431) return undefined
  // Node's HTTP parser refuses control characters in a header value with a bare 400 before minigate sees it.
  if (status === 400 && text === '' && contentType === null) return undefined
  if (status !== 401) return `status ${status} (expected 401): ${text.slice(0, 200)}`
  if (!contentType?.startsWith('application/json')) return 'a 401 that is not JSON'
  let body: Record<string, unknown>
  try {
    body = JSON.parse(text) as Record<string, unknown>
  } catch {
    return `a broken JSON body: ${text.slice(0, 100)}`
  }
  if (typeof body.error !== 'string' || typeof body.error_description !== 'string') return `no error/error_description strings: ${text.slice(0, 200)}`
  if (challenge === null || !challenge.startsWith('Bearer realm="minigate"')) return `no Bearer challenge: ${String(challenge)}`
  // RFC 6750 §3.1: no error code in the challenge when the request carried no Bearer credentials.
  const bearer = /^Bearer(\s|$)/i.test(header.trim())
  if (!bearer && challenge !== 'Bearer realm="minigate"') return `an error code in the challenge without Bearer credentials: ${challenge}`
  if (bearer && !/error="invalid_token"/.test(challenge)) return `Bearer credentials refused without error="invalid_token": ${challenge}`
  if (bearer && body.error !== 'invalid_token') return `Bearer credentials refused with ${String(body.error)}`
  if (!/^[\x20-\x7e]*$/.test(challenge)) return `a challenge outside printable ASCII: ${JSON.stringify(challenge)}`
  return undefined
}

async function sendHeader(endpoint: Endpoint, header: string): Promise<string | undefined> {
  const response = await fetch(`${app.url}${endpoint.path}`, {
    method: endpoint.method,
    headers: { authorization: header, ...(endpoint.body ? { 'content-type': 'application/json' } : {}) },
    ...(endpoint.body ? { body: endpoint.body } : {}),
  })
  const text = await response.text()
  // undici trims the value before sending it; judge the answer by what the server saw.
  const found = problem(response.status, response.headers.get('www-authenticate'), response.headers.get('content-type'), text, header.trim())
  return found === undefined ? undefined : `${endpoint.method} ${endpoint.path} with Authorization ${JSON.stringify(header.slice(0, 200))}: ${found}`
}

async function everywhere(header: string): Promise<void> {
  // fetch trims the value; the server would see the same as an equal trimmed header, which is fine.
  const found = (await Promise.all(ENDPOINTS.map((endpoint) => sendHeader(endpoint, header)))).find((problem) => problem !== undefined)
  if (found !== undefined) throw new Error(found)
}

/** Runs a property against this file's app. */
const check = (t: Test, what: string, property: fc.IAsyncPropertyWithHooks<any>, runs = RUNS) => holds(t, app, secrets, what, property, runs)

/** RFC 6750 §2.1 b64token, as src/http/bearer.ts reads it. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i

/** Latin-1 characters fetch will put in a header: tab, printable ASCII and 8-bit; no other control character (the raw property sends those). */
const latin1 = fc.oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff }), fc.constant(9)).map((code) => String.fromCharCode(code))
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/g
const b64urlChar = fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.split(''))
const tokenChar = fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/='.split(''))
const segment = fc.string({ unit: b64urlChar, maxLength: 60 })
const whitespace = fc.string({ unit: fc.constantFrom(' ', '\t'), maxLength: 4 })
const scheme = fc.oneof(
  fc.mixedCase(fc.constant('bearer')),
  fc.constantFrom('Bearer', 'Basic', 'Digest', 'DPoP', 'MAC', 'Token', 'Bearer:', 'Bearer=', 'Bearerx', 'xBearer', ''),
)
const credentials = fc.oneof(
  fc.array(segment, { minLength: 1, maxLength: 6 }).map((parts) => parts.join('.')),
  fc.string({ unit: tokenChar, maxLength: 200 }),
  fc.string({ unit: latin1, maxLength: 80 }),
  fc.tuple(segment, segment, segment, fc.string({ unit: fc.constant('='), maxLength: 4 })).map(([a, b, c, pad]) => `${a}.${b}.${c}${pad}`),
)

t.test('random Authorization strings', async (t) => {
  await check(t,
    'fc.string of Latin-1',
    fc.asyncProperty(fc.string({ unit: latin1, maxLength: 120 }), async (header) => everywhere(header)),
  )
  await check(t,
    'fc.string of full Unicode, as fetch sends it (UTF-8 bytes read as Latin-1)',
    fc.asyncProperty(fc.string({ unit: 'binary', maxLength: 40 }), async (text) => {
      const header = Buffer.from(text, 'utf8').toString('latin1').replace(CONTROL, '')
      await everywhere(header)
    }),
  )
})

t.test('Bearer-shaped Authorization headers', async (t) => {
  await check(t,
    'scheme + whitespace + credentials + junk',
    fc.asyncProperty(scheme, whitespace, credentials, fc.option(fc.tuple(whitespace, fc.string({ unit: latin1, maxLength: 20 })), { nil: undefined }), async (name, space, token, tail) => {
      await everywhere(`${name}${space}${token}${tail ? tail.join('') : ''}`)
    }),
  )
  await check(t,
    'several credentials in one header',
    fc.asyncProperty(fc.array(fc.tuple(scheme, credentials), { minLength: 2, maxLength: 4 }), fc.constantFrom(', ', ',', ' '), async (parts, separator) => {
      await everywhere(parts.map(([name, token]) => `${name} ${token}`).join(separator))
    }),
  )
  await check(t,
    'the real token, mangled around the edges',
    fc.asyncProperty(scheme, whitespace, fc.string({ unit: latin1, maxLength: 6 }), fc.string({ unit: latin1, maxLength: 6 }), async (name, space, before, after) => {
      const header = `${name}${space}${before}${realAccess}${after}`
      // "Bearer <the token>" (any casing, spaces between, surrounding whitespace that fetch trims) must work:
      // not sent here, /logout would end the login. Any other header must be refused.
      if (BEARER.exec(header.replace(/^[ \t]+|[ \t]+$/g, ''))?.[1] === realAccess) return
      await everywhere(header)
    }),
    100,
  )
  await check(t,
    'huge Bearer values',
    fc.asyncProperty(fc.integer({ min: 4000, max: 20_000 }), b64urlChar, async (length, char) => {
      await everywhere(`Bearer ${char.repeat(length)}`)
    }),
    20,
  )
})

t.test('random HTTP Basic credentials at /introspect', async (t) => {
  const idOrSecret = fc.oneof(
    fc.constantFrom('dev-service', 'dev-service-secret', 'DEV-SERVICE', 'dev%2Dservice', 'dev-service%00', '', '%', '%zz', ':', '+'),
    fc.string({ maxLength: 30 }),
    fc.string({ unit: 'binary', maxLength: 10 }),
  )
  const basic = fc.oneof(
    fc.tuple(idOrSecret, idOrSecret, fc.constantFrom(':', '::', '')).map(([id, secret, colon]) => Buffer.from(`${id}${colon}${secret}`).toString('base64')),
    fc.string({ unit: latin1, maxLength: 60 }),
    fc.base64String({ maxLength: 80 }),
  )
  await check(t,
    'Basic credentials',
    fc.asyncProperty(fc.oneof(fc.mixedCase(fc.constant('basic')), fc.constantFrom('Basic', 'Bearer', '')), whitespace, basic, async (name, space, credentials) => {
      const header = `${name}${space}${credentials}`
      const decoded = /^basic +([A-Za-z0-9+/]+=*) *$/i.exec(header.trim())?.[1]
      // The one right answer: dev-service:dev-service-secret, however spelt.
      if (decoded !== undefined) {
        const text = Buffer.from(decoded, 'base64').toString('utf8')
        const colon = text.indexOf(':')
        try {
          const decode = (value: string) => decodeURIComponent(value.replace(/\+/g, ' '))
          if (decode(text.slice(0, colon)) === 'dev-service' && decode(text.slice(colon + 1)) === 'dev-service-secret') return
        } catch {
          // not form-encoded: refused below
        }
      }
      const response = await app.postForm('/introspect', { token: realAccess }, { authorization: header })
      const text = await response.text()
      if (response.status === 400 && text === '' && !response.headers.get('content-type')) return // Node's parser
      if (response.status !== 401) throw new Error(`Authorization ${JSON.stringify(header)}: /introspect answered ${response.status} ${text.slice(0, 200)}`)
      if (!/^Basic realm="minigate"/.test(response.headers.get('www-authenticate') ?? '')) throw new Error('a 401 without the Basic challenge')
      if ((JSON.parse(text) as { error?: unknown }).error !== 'invalid_client') throw new Error(`not invalid_client: ${text.slice(0, 200)}`)
      if (secrets.foundIn(text) !== undefined) throw new Error('a secret in the answer')
    }),
  )
})

/** Latin-1 plus the bytes fetch refuses: for raw requests. */
const anyByte = fc.integer({ min: 0, max: 255 }).map((code) => String.fromCharCode(code))

t.test('raw Authorization bytes (CR, LF, NUL, 8-bit)', async (t) => {
  const statuses: Record<string, number> = {}
  await check(t,
    'raw Authorization bytes on GET /userinfo',
    fc.asyncProperty(fc.oneof(fc.constant('Bearer '), fc.constant(''), scheme), fc.string({ unit: anyByte, maxLength: 80 }), async (prefix, bytes) => {
      const header = `${prefix}${bytes}`
      const answer = await rawRequest(app, Buffer.from(`GET /userinfo HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: ${header}\r\n\r\n`, 'latin1'))
      statuses[answer.status] = (statuses[answer.status] ?? 0) + 1
      if (answer.status === 0 || (answer.status === 400 && answer.body === '')) return // Node's HTTP parser refused the bytes
      const get = (name: string) => new RegExp(`\\r\\n${name}: *([^\\r]*)`, 'i').exec(answer.head)?.[1] ?? null
      // What the server saw: the value up to a bare CR/LF that the parser accepted, without surrounding whitespace.
      const seen = header.split(/\r\n|\r|\n/)[0]?.trim() ?? ''
      const found = problem(answer.status, get('www-authenticate'), get('content-type'), answer.body, seen)
      if (found !== undefined) throw new Error(`${JSON.stringify(header)}: ${found}`)
    }),
  )
  t.comment(`raw answers by status (0: connection closed): ${JSON.stringify(statuses)}`)
})

t.test('after all the fuzzing', async (t) => {
  const userinfo = await fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${realAccess}` } })
  t.equal(userinfo.status, 200, 'the real token still works: no fuzzed header logged it out')
  await userinfo.arrayBuffer()
  for (const header of [`bearer ${realAccess}`, `BEARER   ${realAccess}`, `Bearer ${realAccess}  `]) {
    const response = await fetch(`${app.url}/userinfo`, { headers: { authorization: header } })
    t.equal(response.status, 200, `${JSON.stringify(header.replace(realAccess, '<token>'))} works (the scheme is case-insensitive)`)
    await response.arrayBuffer()
  }
  await expectStillServing(t, app, secrets)
  await expectIntegrity(t, app)
  secrets.checkLogs(t, 0, 'the whole run')
})
