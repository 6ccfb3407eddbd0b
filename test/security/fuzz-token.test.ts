/**
 * Property-based fuzzing of token verification (src/tokens/verify.ts and its callers): mutations of real
 * tokens, JWS built from random headers and payloads signed by anything but minigate's key, and random
 * token-shaped strings, at /userinfo, /introspect, the refresh grant and /revoke. None is ever accepted
 * (not even the same bytes spelt another way), none makes a 5xx, none changes state.
 * Last, tokens signed with minigate's own key and random claim values: never a 5xx.
 */
import { createHmac, generateKeyPairSync, sign as cryptoSign } from 'node:crypto'
import fc from 'fast-check'
import t, { type Test } from 'tap'
import {
  b64url,
  expectIntegrity,
  expectStillServing,
  holds,
  payloadOf,
  refreshTokenLive,
  Secrets,
  SERVICE_BASIC,
  startApp,
  unhandled,
} from './support.js'
import { testDialect } from '../helpers/database.js'

// The inputs fuzzed here are parsed before any database is reached: the PostgreSQL run needs fewer.
const RUNS = testDialect === 'postgres' ? 30 : 100

const app = await startApp(t)
const secrets = new Secrets(app)
const real = await app.login({ openid: 'o-fuzz-token', scope: 'openid profile' })
secrets.addTokens(real)
const realAccess = real.access_token as string
const realRefresh = real.refresh_token as string
const realKey = app.deps.keys.active()
const attacker = generateKeyPairSync('rsa', { modulusLength: 2048 })
const publicPem = realKey.publicKey.export({ type: 'spki', format: 'pem' }) as string

interface Verdicts {
  userinfo?: number
  introspect: string
  refresh: number
  revoke?: number
}

/** Presents one candidate everywhere; returns what each endpoint said, and throws on a 5xx. */
async function present(token: string, options: { revoke?: boolean } = {}): Promise<Verdicts> {
  const headerSafe = /^[\x20-\x7e]*$/.test(token) && token.trim() === token
  const [userinfo, introspect, refresh, revoke] = await Promise.all([
    headerSafe ? fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${token}` } }) : undefined,
    app.postForm('/introspect', { token }, { authorization: SERVICE_BASIC }),
    app.postForm('/token', { grant_type: 'refresh_token', refresh_token: token }),
    options.revoke ? app.postForm('/revoke', { token }) : undefined,
  ])
  const verdicts: Verdicts = { introspect: await introspect.text(), refresh: refresh.status }
  for (const [name, response] of [['userinfo', userinfo], ['introspect', introspect], ['refresh', refresh], ['revoke', revoke]] as const) {
    if (!response) continue
    if (response.status >= 500) throw new Error(`${name} answered ${response.status} for ${JSON.stringify(token.slice(0, 300))}`)
  }
  if (userinfo) {
    verdicts.userinfo = userinfo.status
    const text = await userinfo.text()
    if (userinfo.status === 401 && !/^Bearer realm="minigate", error="invalid_token"/.test(userinfo.headers.get('www-authenticate') ?? '')) throw new Error(`/userinfo 401 without the invalid_token challenge for ${JSON.stringify(token.slice(0, 300))}`)
    if (secrets.foundIn(text) !== undefined) throw new Error('a secret in the /userinfo answer')
  }
  const refreshText = await refresh.text()
  if (secrets.foundIn(refreshText) !== undefined && refresh.status !== 200) throw new Error('a secret in a refresh error')
  if (revoke) {
    verdicts.revoke = revoke.status
    await revoke.arrayBuffer()
  }
  return verdicts
}

/** A forgery must be refused everywhere. */
function refused(verdicts: Verdicts, token: string): void {
  const shown = JSON.stringify(token.slice(0, 300))
  if (verdicts.userinfo !== undefined && verdicts.userinfo !== 401) throw new Error(`/userinfo answered ${verdicts.userinfo} for ${shown}`)
  if (verdicts.introspect !== '{"active":false}') throw new Error(`/introspect answered ${verdicts.introspect.slice(0, 200)} for ${shown}`)
  if (verdicts.refresh !== 400) throw new Error(`the refresh grant answered ${verdicts.refresh} for ${shown}`)
  if (verdicts.revoke !== undefined && verdicts.revoke !== 200) throw new Error(`/revoke answered ${verdicts.revoke} for ${shown}`)
}

/** Runs a property against this file's app; the real tokens must survive every forgery. */
const check = (t: Test, what: string, property: fc.IAsyncPropertyWithHooks<any>, runs = RUNS, mayChangeState = false) =>
  holds(t, app, secrets, what, property, runs, {
    unchanged: mayChangeState ? false : 'nothing was written or revoked',
    after: async () => {
      const userinfo = await fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${realAccess}` } })
      t.equal(userinfo.status, 200, `${what}: the real access token still works`)
      await userinfo.arrayBuffer()
      t.ok(await refreshTokenLive(app, realRefresh), `${what}: the real refresh token is still live`)
    },
  })

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
const mutationChar = fc.oneof(fc.constantFrom(...`${B64URL}.=+/ `.split('')), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }))
const mutation = fc.record({
  op: fc.constantFrom('replace', 'insert', 'delete', 'flip'),
  at: fc.nat(),
  char: mutationChar,
  bit: fc.integer({ min: 0, max: 7 }),
})

function mutate(token: string, mutations: Array<{ op: string; at: number; char: string; bit: number }>): string {
  let out = token
  for (const { op, at, char, bit } of mutations) {
    const i = out.length === 0 ? 0 : at % out.length
    if (op === 'replace') out = `${out.slice(0, i)}${char}${out.slice(i + 1)}`
    else if (op === 'insert') out = `${out.slice(0, i)}${char}${out.slice(i)}`
    else if (op === 'delete') out = `${out.slice(0, i)}${out.slice(i + 1)}`
    else out = `${out.slice(0, i)}${String.fromCharCode(out.charCodeAt(i) ^ (1 << bit))}${out.slice(i + 1)}`
  }
  return out
}

t.test('mutations of real tokens are never accepted', async (t) => {
  for (const [kind, token] of [['access', realAccess], ['refresh', realRefresh]] as const) {
    await check(t,
      `mutated ${kind} tokens`,
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 4 }), async (mutations) => {
        const mutated = mutate(token, mutations)
        if (mutated === token) return
        const verdicts = await present(mutated)
        // Not even the same bytes spelt differently (a character a decoder skips, a last character's
        // spare bits): minigate reads only canonical base64url, so every spelling but the real one is refused.
        refused(verdicts, mutated)
      }),
    )
  }
})

const algs = fc.oneof(fc.constantFrom('RS256', 'none', 'None', 'NONE', 'HS256', 'HS384', 'HS512', 'RS384', 'RS512', 'PS256', 'ES256', 'EdDSA', ''), fc.string({ maxLength: 8 }))
const typs = fc.oneof(fc.constantFrom('at+jwt', 'rt+jwt', 'JWT', 'application/at+jwt', 'AT+JWT', ''), fc.string({ maxLength: 10 }))
const kids = fc.oneof(fc.constant(realKey.kid), fc.string({ maxLength: 50 }), fc.jsonValue({ maxDepth: 1 }), fc.constantFrom('../../etc/passwd', "' OR 1=1 --", '__proto__', 'constructor'))
const extraHeader = fc.dictionary(fc.constantFrom('jku', 'x5u', 'jwk', 'x5c', 'crit', 'b64', 'cty', 'zip', 'enc', 'x5t', 'x5t#S256'), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 })
const header = fc.tuple(algs, typs, fc.option(kids, { nil: undefined }), extraHeader).map(([alg, typ, kid, extra]) => ({ alg, typ, ...(kid === undefined ? {} : { kid }), ...extra }))
const claimNames = ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'sid', 'client_id', 'scope', 'typ']
const payloadOverrides = fc.dictionary(fc.oneof(fc.constantFrom(...claimNames), fc.string({ maxLength: 8 })), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 })
const base = fc.constantFrom(payloadOf(realAccess), payloadOf(realRefresh))
type Signer = (input: string) => string
const signers: Array<[string, Signer]> = [
  ['no signature', () => ''],
  ['the real access signature', () => realAccess.split('.')[2] as string],
  ['the real refresh signature', () => realRefresh.split('.')[2] as string],
  ['an attacker RSA key', (input) => cryptoSign('sha256', Buffer.from(input), attacker.privateKey).toString('base64url')],
  ['HMAC keyed with the public PEM', (input) => createHmac('sha256', publicPem).update(input).digest('base64url')],
  ['HMAC keyed with the kid', (input) => createHmac('sha256', realKey.kid).update(input).digest('base64url')],
]

t.test('random headers and payloads signed by anything but minigate are refused', async (t) => {
  await check(t,
    'random JWS',
    fc.asyncProperty(header, base, payloadOverrides, fc.constantFrom(...signers), async (head, payload, overrides, [, signer]) => {
      const input = `${b64url(head)}.${b64url({ ...payload, ...overrides })}`
      const token = `${input}.${signer(input)}`
      refused(await present(token, { revoke: true }), token)
    }),
  )
  await check(t,
    'random JWS with raw (non-JSON) segments',
    fc.asyncProperty(fc.array(fc.oneof(fc.string({ maxLength: 30 }), fc.string({ unit: 'binary', maxLength: 10 }), fc.uint8Array({ maxLength: 40 })), { minLength: 1, maxLength: 6 }), async (parts) => {
      const token = parts.map((part) => (typeof part === 'string' ? Buffer.from(part).toString('base64url') : Buffer.from(part).toString('base64url'))).join('.')
      if (token === '') return
      refused(await present(token, { revoke: true }), token)
    }),
  )
})

t.test('random token-shaped strings are refused', async (t) => {
  await check(t,
    'random strings as tokens',
    fc.asyncProperty(fc.oneof(fc.string({ minLength: 1, maxLength: 200 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 60 }), fc.array(fc.string({ unit: fc.constantFrom(...B64URL.split('')), maxLength: 80 }), { minLength: 1, maxLength: 6 }).map((parts) => parts.join('.'))), async (token) => {
      if (token.trim() === '') return
      refused(await present(token, { revoke: true }), token)
    }),
  )
  await check(t,
    'long tokens around the length limit',
    fc.asyncProperty(fc.integer({ min: 4000, max: 12_000 }), async (length) => {
      const pad = 'A'.repeat(length)
      const token = `${realAccess.split('.')[0] as string}.${pad}.${realAccess.split('.')[2] as string}`
      refused(await present(token, { revoke: true }), token)
    }),
    20,
  )
})

// Tokens only minigate's key can sign, with random claim values: whatever the claims, never a 5xx. They may be
// accepted (they are validly signed), so they run on a login of their own and last.
let checkedUpTo = 0
t.test('validly signed tokens with random claim values never make a 5xx', async (t) => {
  checkedUpTo = app.logs.length
  const own = await app.login({ openid: 'o-fuzz-claims' })
  secrets.addTokens(own)
  const bases = [payloadOf(own.access_token as string), payloadOf(own.refresh_token as string)]
  const sign = (head: Record<string, unknown>, payload: unknown) => {
    const input = `${b64url(head)}.${b64url(payload)}`
    return `${input}.${cryptoSign('sha256', Buffer.from(input), realKey.privateKey).toString('base64url')}`
  }
  await check(t,
    'validly signed, random claims',
    fc.asyncProperty(fc.constantFrom('at+jwt', 'rt+jwt'), fc.constantFrom(...bases), fc.dictionary(fc.constantFrom(...claimNames), fc.oneof(fc.jsonValue({ maxDepth: 1 }), fc.string()), { minKeys: 1, maxKeys: 3 }), async (typ, payload, overrides) => {
      const token = sign({ alg: 'RS256', typ, kid: realKey.kid }, { ...payload, ...overrides })
      await present(token)
    }),
    RUNS,
    // A refresh token whose random claims keep its sid, sub, client_id and gen is one minigate could
    // have issued: it rotates that login, rightly.
    true,
  )
})

t.test('after all the fuzzing', async (t) => {
  await expectStillServing(t, app, secrets)
  await expectIntegrity(t, app)
  t.same(app.logs.filter((line) => secrets.foundIn(line) !== undefined), [], 'no secret in any log line of the whole run')
  t.same(unhandled(app.logs.slice(0, checkedUpTo)), [], 'no unhandled error logged by the forgeries')
})
