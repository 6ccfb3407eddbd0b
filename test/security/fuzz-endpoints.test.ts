/**
 * Property-based fuzzing of the body-reading endpoints: random form bodies, random JSON values and random
 * bytes under random content types, each sent to POST /token, /revoke, /introspect (HTTP Basic) and
 * /wechat/decrypt (valid Bearer). Never a 5xx; every 4xx is JSON with an `error` string; the 200s are the
 * RFC's fixed answers; nothing is written; no secret shows up in an answer or a log line.
 */
import fc from 'fast-check'
import t, { type Test } from 'tap'
import {
  expectIntegrity,
  expectStillServing,
  holds,
  rawPost,
  Secrets,
  SERVICE_BASIC,
  startApp,
  WECHAT_CODE_GRANT,
} from './support.js'
import { testDialect } from '../helpers/database.js'

// The inputs fuzzed here are parsed before any database is reached: the PostgreSQL run needs fewer.
const RUNS = testDialect === 'postgres' ? 30 : 100

const app = await startApp(t)
const secrets = new Secrets(app)
const tokens = await app.login({ openid: 'o-fuzz-endpoints', scope: 'openid profile phone' })
secrets.addTokens(tokens)
const BEARER = `Bearer ${tokens.access_token as string}`

interface Target {
  path: string
  headers: Record<string, string>
  /** What a 200 from this endpoint must look like, or undefined when a 200 is never right for fuzzed input. */
  ok?: (text: string) => string | undefined
  bearer: boolean
}

const TARGETS: Target[] = [
  { path: '/token', headers: {}, bearer: false },
  { path: '/revoke', headers: {}, ok: (text) => (text === '' ? undefined : `a /revoke 200 has a body: ${text.slice(0, 100)}`), bearer: false },
  { path: '/introspect', headers: { authorization: SERVICE_BASIC }, ok: (text) => (text === '{"active":false}' ? undefined : `an /introspect 200 is not {"active":false}: ${text.slice(0, 100)}`), bearer: false },
  { path: '/wechat/decrypt', headers: { authorization: BEARER }, bearer: true },
]

/** Every parameter name the endpoints read, and values that get past the first checks. */
const NAMES = ['grant_type', 'code', 'refresh_token', 'client_id', 'scope', 'token', 'token_type_hint', 'encrypted_data', 'iv', 'raw_data', 'signature']
const GRANT_TYPES = [WECHAT_CODE_GRANT, 'refresh_token', 'authorization_code', 'password', 'client_credentials', '']
const VALUES = [...GRANT_TYPES, 'openid', 'profile phone', 'access_token', 'wx0000000000000dev', 'AAAAAAAAAAAAAAAAAAAAAA==']

const name = fc.oneof(fc.constantFrom(...NAMES), fc.string(), fc.string({ unit: 'binary', maxLength: 12 }))
const value = fc.oneof(
  fc.constantFrom(...VALUES),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.stringMatching(/^[A-Za-z0-9._~-]{1,130}$/),
  fc.base64String({ maxLength: 200 }),
)

/** What is wrong with one answer, or undefined. */
async function problem(target: Target, response: Response): Promise<string | undefined> {
  const text = await response.text()
  const leak = secrets.foundIn(text)
  if (leak !== undefined) return `a secret in the answer: ${leak.slice(0, 20)}`
  const { status } = response
  if (status >= 500) return `status ${status}: ${text.slice(0, 200)}`
  if (status === 200) return target.ok ? target.ok(text) : `unexpected 200: ${text.slice(0, 200)}`
  if (status < 400) return `status ${status}`
  if (!response.headers.get('content-type')?.startsWith('application/json')) return `a ${status} that is not JSON: ${text.slice(0, 100)}`
  let body: Record<string, unknown>
  try {
    body = JSON.parse(text) as Record<string, unknown>
  } catch {
    return `a ${status} with a broken JSON body: ${text.slice(0, 100)}`
  }
  if (typeof body.error !== 'string' || typeof body.error_description !== 'string') return `a ${status} without error/error_description strings: ${text.slice(0, 200)}`
  if (status === 401 && !/^(Bearer|Basic) realm="minigate"/.test(response.headers.get('www-authenticate') ?? '')) return 'a 401 without a challenge'
  if (status === 401 && target.bearer && !/^Bearer /.test(response.headers.get('www-authenticate') ?? '')) return 'a Bearer endpoint 401 without a Bearer challenge'
  if (response.headers.get('cache-control') !== 'no-store') return `a ${status} without Cache-Control: no-store`
  return undefined
}

function rawHeaders(head: string): Headers {
  const headers = new Headers()
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':')
    if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim())
  }
  return headers
}

/** Sends one body to every target at once; throws (for fast-check to shrink) on the first problem. */
async function sendEverywhere(body: string | Uint8Array, headers: Record<string, string>): Promise<void> {
  const found = await Promise.all(TARGETS.map((target) => sendTo(target, body, headers)))
  const first = found.find((problem) => problem !== undefined)
  if (first !== undefined) throw new Error(first)
}

async function sendTo(target: Target, body: string | Uint8Array, headers: Record<string, string>): Promise<string | undefined> {
  let response: Response
  try {
    response = await fetch(`${app.url}${target.path}`, { method: 'POST', headers: { ...target.headers, ...headers }, body })
  } catch {
    // fetch refuses some header values (a Content-Type with control characters): send those raw.
    const raw = await rawPost(app, target.path, { ...target.headers, ...headers }, body)
    if (raw.status === 400 && !/\r\ncontent-type:/i.test(raw.head) && raw.body === '') return undefined // Node's own parser refused it
    response = new Response(raw.status === 0 ? null : raw.body, { status: raw.status || 599, headers: rawHeaders(raw.head) })
  }
  const found = await problem(target, response)
  return found === undefined ? undefined : `POST ${target.path}: ${found}`
}

/** Runs a property against this file's app. */
const check = (t: Test, what: string, property: fc.IAsyncPropertyWithHooks<any>, runs = RUNS) => holds(t, app, secrets, what, property, runs)

t.test('random form bodies', async (t) => {
  await check(t,
    'random form bodies',
    fc.asyncProperty(fc.dictionary(name, value, { maxKeys: 8 }), fc.boolean(), async (params, grant) => {
      if (grant) params.grant_type ??= WECHAT_CODE_GRANT
      await sendEverywhere(new URLSearchParams(params).toString(), { 'content-type': 'application/x-www-form-urlencoded' })
    }),
  )
  await check(t,
    'random raw form strings',
    fc.asyncProperty(fc.array(fc.tuple(fc.string({ maxLength: 12 }), fc.constantFrom('=', '&', '%', '[', ']', '+', '.', '=&', '%00', '%ff', ''), fc.string({ maxLength: 12 })), { maxLength: 10 }), async (parts) => {
      await sendEverywhere(parts.map((part) => part.join('')).join('&'), { 'content-type': 'application/x-www-form-urlencoded' })
    }),
    RUNS / 2,
  )
})

t.test('random JSON', async (t) => {
  await check(t,
    'random JSON values',
    fc.asyncProperty(fc.jsonValue(), async (json) => {
      await sendEverywhere(JSON.stringify(json) ?? 'null', { 'content-type': 'application/json' })
    }),
  )
  await check(t,
    'random JSON objects of the real parameter names',
    fc.asyncProperty(fc.dictionary(name, fc.oneof(value, fc.jsonValue({ maxDepth: 2 })), { maxKeys: 8 }), async (params) => {
      await sendEverywhere(JSON.stringify(params), { 'content-type': 'application/json' })
    }),
  )
  await check(t,
    'fc.anything() serialised',
    fc.asyncProperty(fc.anything({ maxDepth: 3 }), async (anything) => {
      let body: string
      try {
        body = JSON.stringify(anything) ?? 'undefined'
      } catch {
        body = String(anything)
      }
      await sendEverywhere(body, { 'content-type': 'application/json' })
    }),
    RUNS / 2,
  )
})

const CONTENT_TYPES = [
  'application/json',
  'application/x-www-form-urlencoded',
  'application/json; charset=utf-8',
  'application/json; charset=utf-16',
  'application/json; charset=latin1',
  'application/x-www-form-urlencoded; charset=iso-8859-1',
  'text/plain',
  'multipart/form-data; boundary=x',
  'application/octet-stream',
  'application/json-patch+json',
  '',
]

/** A header value fetch will send: Latin-1 without CR, LF or NUL, no surrounding whitespace. */
const headerValue = fc.string({ unit: fc.integer({ min: 1, max: 255 }).map((code) => String.fromCharCode(code)), maxLength: 60 }).map((text) => text.replace(/[\r\n]/g, '').trim())

t.test('random bytes under random content types', async (t) => {
  await check(t,
    'random bytes',
    fc.asyncProperty(
      fc.uint8Array({ maxLength: 2048 }),
      fc.oneof(fc.constantFrom(...CONTENT_TYPES), headerValue),
      fc.option(fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'x-nope'), { nil: undefined }),
      async (bytes, contentType, encoding) => {
        const headers: Record<string, string> = {}
        if (contentType !== '') headers['content-type'] = contentType
        if (encoding !== undefined) headers['content-encoding'] = encoding
        await sendEverywhere(bytes, headers)
      },
    ),
  )
  await check(t,
    'random text with JSON/form punctuation',
    fc.asyncProperty(
      fc.array(fc.oneof(fc.constantFrom('{', '}', '[', ']', '"', ':', ',', '\\', '\\u0000', '=', '&', '%', 'null', 'true', '1e999', '"grant_type"', '"code"', '"token"'), fc.string({ maxLength: 5 })), { maxLength: 40 }),
      fc.constantFrom('application/json', 'application/x-www-form-urlencoded'),
      async (parts, contentType) => {
        await sendEverywhere(parts.join(''), { 'content-type': contentType })
      },
    ),
    RUNS / 2,
  )
})

t.test('after all the fuzzing', async (t) => {
  await expectStillServing(t, app, secrets)
  const userinfo = await fetch(`${app.url}/userinfo`, { headers: { authorization: BEARER } })
  t.equal(userinfo.status, 200, 'the fuzzing Bearer still works')
  await userinfo.arrayBuffer()
  await expectIntegrity(t, app)
  secrets.checkLogs(t, 0, 'the whole run')
})
