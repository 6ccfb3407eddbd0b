import { createHmac, createSign, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { CompactSign, decodeProtectedHeader } from 'jose'
import t, { type Test } from 'tap'
import { parseSigningKey, type KeyStore } from '../../src/keys/signing-keys.js'
import { MAX_TOKEN_LENGTH } from '../../src/tokens/claims.js'
import { mintAccessToken, mintIdToken, mintRefreshToken, type MintDeps } from '../../src/tokens/mint.js'
import { TokenRejected, verifyAccessToken, verifyRefreshToken, type VerifyDeps } from '../../src/tokens/verify.js'
import { TestClock } from '../helpers/clock.js'
import { fixtureKeyPem } from '../helpers/keys.js'

const ISSUER = 'https://id.example.com'
const AUDIENCE = 'minigate-api'
const config = { issuer: ISSUER, audience: AUDIENCE, accessTtl: 900, refreshTtl: 30 * 24 * 3600, idTokenTtl: 900 }

// One signing key for the whole file, in the smallest KeyStore there is: the verifier must only ever
// look keys up through get(kid).
const signingKey = await parseSigningKey(fixtureKeyPem(0), 'fixture')
const keys: KeyStore = {
  active: () => signingKey,
  get: (kid) => (kid === signingKey.kid ? signingKey : undefined),
  jwks: () => ({ keys: [signingKey.publicJwk] }),
}
const ourKid = keys.active().kid
/** The absolute end of the login the minted refresh tokens belong to: far enough not to shorten them. */
const LOGIN_ENDS = Math.floor(new TestClock().now() / 1000) + 365 * 24 * 3600
const attacker = generateKeyPairSync('rsa', { modulusLength: 2048 })

function deps(clock = new TestClock()): MintDeps & VerifyDeps & { clock: TestClock } {
  return { config, keys, clock }
}

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')

/** Claims of a well-formed access token at the TestClock's default time. */
function accessClaims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const iat = Math.floor(new TestClock().now() / 1000)
  return { iss: ISSUER, sub: 'user-1', aud: AUDIENCE, client_id: 'wx1', iat, exp: iat + 900, jti: 'jti-1', scope: 'profile', sid: 'sid-1', ...overrides }
}

/** Signs `payload` with RS256 under `header` (alg RS256 is forced). */
async function rs256(payload: Record<string, unknown>, header: Record<string, unknown>, key: KeyObject = keys.active().privateKey): Promise<string> {
  return new CompactSign(Buffer.from(JSON.stringify(payload))).setProtectedHeader({ ...header, alg: 'RS256' }).sign(key)
}

/** Expects `promise` to fail with TokenRejected; returns its reason. */
async function rejected(t: Test, promise: Promise<unknown>, name: string): Promise<string> {
  try {
    await promise
  } catch (error) {
    t.type(error, TokenRejected, `${name}: TokenRejected`)
    const reason = (error as TokenRejected).reason
    t.equal(typeof reason, 'string')
    t.equal((error as Error).message, reason)
    return reason
  }
  t.fail(`${name}: was accepted`)
  return ''
}

t.test('a minted access token verifies', async (t) => {
  const d = deps()
  const minted = await mintAccessToken(d, { sub: 'user-1', clientId: 'wx1', scope: 'openid profile', sid: 'sid-1', loginEndsAt: Number.MAX_SAFE_INTEGER })
  t.same(decodeProtectedHeader(minted.token), { alg: 'RS256', typ: 'at+jwt', kid: ourKid })
  const claims = await verifyAccessToken(d, minted.token)
  t.equal(claims.iss, ISSUER)
  t.equal(claims.sub, 'user-1')
  t.equal(claims.aud, AUDIENCE)
  t.equal(claims.client_id, 'wx1')
  t.equal(claims.scope, 'openid profile')
  t.equal(claims.sid, 'sid-1')
  t.equal(claims.jti, minted.jti)
  t.equal(claims.iat, minted.iat)
  t.equal(claims.exp, minted.iat + 900)
})

t.test('a minted refresh token verifies as a refresh token', async (t) => {
  const d = deps()
  const minted = await mintRefreshToken(d, { sub: 'user-1', clientId: 'wx1', sid: 'sid-1', generation: 0, loginEndsAt: LOGIN_ENDS })
  t.equal(decodeProtectedHeader(minted.token).typ, 'rt+jwt')
  const claims = await verifyRefreshToken(d, minted.token)
  t.equal(claims.aud, ISSUER, 'a refresh token is for minigate only')
  t.equal(claims.sid, 'sid-1')
  t.equal(claims.client_id, 'wx1')
})

t.test('a refresh token needs a whole, non-negative generation', async (t) => {
  const iat = Math.floor(new TestClock().now() / 1000)
  const claims = { iss: ISSUER, sub: 'u', aud: ISSUER, client_id: 'wx1', iat, exp: iat + 60, jti: 'j', sid: 's' }
  t.equal((await verifyRefreshToken(deps(), await rs256({ ...claims, gen: 3 }, { typ: 'rt+jwt', kid: ourKid }))).gen, 3)
  for (const gen of [undefined, -1, 1.5, '2', null, Number.MAX_SAFE_INTEGER + 2]) {
    const token = await rs256(gen === undefined ? claims : { ...claims, gen }, { typ: 'rt+jwt', kid: ourKid })
    t.match(await rejected(t, verifyRefreshToken(deps(), token), `gen ${String(gen)}`), /gen claim/)
  }
})

t.test('only the canonical spelling of a token is read: no skipped characters, no spare bits', async (t) => {
  const d = deps()
  const { token } = await mintRefreshToken(d, { sub: 'u', clientId: 'wx1', sid: 's', generation: 0, loginEndsAt: LOGIN_ENDS })
  t.ok(await verifyRefreshToken(d, token), 'the token as minted')
  const [header, payload, signature] = token.split('.') as [string, string, string]
  // A 256-byte signature ends in a character with four spare bits: each of these spells the same bytes.
  const last = signature.at(-1) as string
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const index = alphabet.indexOf(last)
  const respelt = alphabet[index ^ 1] as string
  t.same(Buffer.from(`${signature.slice(0, -1)}${respelt}`, 'base64url'), Buffer.from(signature, 'base64url'), 'the respelt signature decodes to the same bytes')
  const spellings: Array<[string, string]> = [
    ['a spare bit flipped in the last character', `${header}.${payload}.${signature.slice(0, -1)}${respelt}`],
    ['a tab inside the signature', `${header}.${payload}.${signature.slice(0, 10)}\t${signature.slice(10)}`],
    ['a space inside the payload', `${header}.${payload.slice(0, 5)} ${payload.slice(5)}`.concat(`.${signature}`)],
    ['base64 padding', `${header}.${payload}.${signature}==`],
    ['standard base64 characters', `${header}.${payload}.${signature.replace(/-/g, '+').replace(/_/g, '/')}`],
  ]
  for (const [name, spelt] of spellings) {
    if (spelt === token) continue
    t.match(await rejected(t, verifyRefreshToken(d, spelt), name), /malformed/, name)
  }
})

t.test('a hand-built token with every claim verifies (the forgery tests below differ in one thing)', async (t) => {
  const claims = await verifyAccessToken(deps(), await rs256(accessClaims(), { typ: 'at+jwt', kid: ourKid }))
  t.equal(claims.sub, 'user-1')
})

t.test('expired tokens are rejected', async (t) => {
  const d = deps()
  const access = await mintAccessToken(d, { sub: 'u', clientId: 'wx1', scope: 'profile', sid: 's', loginEndsAt: Number.MAX_SAFE_INTEGER })
  const refresh = await mintRefreshToken(d, { sub: 'u', clientId: 'wx1', sid: 's', generation: 0, loginEndsAt: LOGIN_ENDS })
  d.clock.advance(899)
  t.ok(await verifyAccessToken(d, access.token), 'still valid a second before exp')
  d.clock.advance(2)
  t.match(await rejected(t, verifyAccessToken(d, access.token), 'expired access'), /expired/)
  d.clock.advance(30 * 24 * 3600)
  t.match(await rejected(t, verifyRefreshToken(d, refresh.token), 'expired refresh'), /expired/)
})

t.test('unsigned tokens (alg none) are rejected', async (t) => {
  const payload = b64(accessClaims())
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    const header = b64({ alg, typ: 'at+jwt', kid: ourKid })
    await rejected(t, verifyAccessToken(deps(), `${header}.${payload}.`), `alg ${alg}, empty signature`)
    const real = await rs256(accessClaims(), { typ: 'at+jwt', kid: ourKid })
    await rejected(t, verifyAccessToken(deps(), `${header}.${payload}.${real.split('.')[2]}`), `alg ${alg}, a real signature`)
  }
})

t.test('HS256 signed with the public key as HMAC secret is rejected', async (t) => {
  const pem = keys.active().publicKey.export({ type: 'spki', format: 'pem' }) as string
  const jwk = JSON.stringify(keys.jwks().keys[0])
  for (const [name, secret] of [['PEM', pem], ['PKCS1 PEM', keys.active().publicKey.export({ type: 'pkcs1', format: 'pem' }) as string], ['JWK', jwk]] as const) {
    for (const alg of ['HS256', 'HS384', 'HS512']) {
      const signingInput = `${b64({ alg, typ: 'at+jwt', kid: ourKid })}.${b64(accessClaims())}`
      const mac = createHmac(`sha${alg.slice(2)}`, secret).update(signingInput).digest('base64url')
      await rejected(t, verifyAccessToken(deps(), `${signingInput}.${mac}`), `${alg} with the ${name}`)
    }
  }
})

t.test('other RSA-family algorithms are not accepted either', async (t) => {
  for (const alg of ['PS256', 'RS512']) {
    const token = await new CompactSign(Buffer.from(JSON.stringify(accessClaims())))
      .setProtectedHeader({ alg, typ: 'at+jwt', kid: ourKid })
      .sign(keys.active().privateKey)
    await rejected(t, verifyAccessToken(deps(), token), alg)
  }
})

t.test('unknown, hostile and missing kids are rejected', async (t) => {
  const kids: Array<[string, unknown]> = [
    ['unknown', 'unknown-kid'],
    ['path traversal', '../../x'],
    ['absolute path', '/etc/passwd'],
    ['key file name', 'signing-1700000000000.pem'],
    ['spaces', 'kid with spaces'],
    ['5000 chars', 'k'.repeat(5000)],
    ['SQL', "' or 1=1 --"],
    ['__proto__', '__proto__'],
    ['number', 1],
    ['object', { kid: ourKid }],
    ['array', [ourKid]],
    ['null', null],
  ]
  for (const [name, kid] of kids) {
    const token = await rs256(accessClaims(), { typ: 'at+jwt', kid })
    await rejected(t, verifyAccessToken(deps(), token), `kid ${name}`)
  }
  const reason = await rejected(t, verifyAccessToken(deps(), await rs256(accessClaims(), { typ: 'at+jwt', kid: 'unknown-kid' })), 'unknown')
  t.match(reason, /unknown key/)
  await rejected(t, verifyAccessToken(deps(), await rs256(accessClaims(), { typ: 'at+jwt' })), 'no kid')
})

t.test('a tampered signature or payload is rejected', async (t) => {
  const token = (await mintAccessToken(deps(), { sub: 'u', clientId: 'wx1', scope: 'profile', sid: 's', loginEndsAt: Number.MAX_SAFE_INTEGER })).token
  const [header, payload, signature] = token.split('.') as [string, string, string]
  const sig = Buffer.from(signature, 'base64url')
  for (const index of [0, sig.length >> 1, sig.length - 1]) {
    const flipped = Buffer.from(sig)
    flipped[index] = (flipped[index] as number) ^ 0x01
    const reason = await rejected(t, verifyAccessToken(deps(), `${header}.${payload}.${flipped.toString('base64url')}`), `bit ${index} flipped`)
    t.match(reason, /signature/)
  }
  await rejected(t, verifyAccessToken(deps(), `${header}.${payload}.`), 'signature removed')
  await rejected(t, verifyAccessToken(deps(), `${header}.${payload}.${signature.slice(0, -4)}`), 'signature truncated')
  const elevated = b64({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), scope: 'profile phone' })
  await rejected(t, verifyAccessToken(deps(), `${header}.${elevated}.${signature}`), 'payload changed')
})

t.test('wrong segment counts and junk are rejected', async (t) => {
  const token = (await mintAccessToken(deps(), { sub: 'u', clientId: 'wx1', scope: 'profile', sid: 's', loginEndsAt: Number.MAX_SAFE_INTEGER })).token
  const [header, payload, signature] = token.split('.') as [string, string, string]
  const junk: Array<[string, string]> = [
    ['2 segments', `${header}.${payload}`],
    ['4 segments', `${header}.${payload}.${signature}.${signature}`],
    ['5 segments (JWE shape)', `${header}.${payload}.${signature}.x.y`],
    ['1 segment', header],
    ['empty', ''],
    ['dots', '..'],
    ['not base64', '!!!.@@@.###'],
    ['header not JSON', `${b64('not json')}.${payload}.${signature}`],
    ['payload not JSON', `${header}.${b64('not json')}.${signature}`],
    ['payload a JSON array', `${header}.${b64([1])}.${signature}`],
    ['whitespace around', ` ${token} `],
  ]
  for (const [name, value] of junk) await rejected(t, verifyAccessToken(deps(), value), name)
})

t.test('tokens longer than the limit are rejected before parsing', async (t) => {
  const d = deps()
  const fits = await rs256(accessClaims({ pad: '' }), { typ: 'at+jwt', kid: ourKid })
  const room = MAX_TOKEN_LENGTH - fits.length
  // base64url: 3 bytes of padding claim become 4 characters.
  const longest = await rs256(accessClaims({ pad: 'x'.repeat(Math.floor(room / 4) * 3) }), { typ: 'at+jwt', kid: ourKid })
  t.ok(longest.length <= MAX_TOKEN_LENGTH, `${longest.length} <= ${MAX_TOKEN_LENGTH}`)
  t.ok(await verifyAccessToken(d, longest), 'a token just within the limit verifies')
  const tooLong = await rs256(accessClaims({ pad: 'x'.repeat(Math.floor(room / 4) * 3 + 3) }), { typ: 'at+jwt', kid: ourKid })
  t.ok(tooLong.length > MAX_TOKEN_LENGTH)
  await rejected(t, verifyAccessToken(d, tooLong), 'validly signed but too long')
  await rejected(t, verifyRefreshToken(d, `${tooLong}`), 'too long as a refresh token')
  await rejected(t, verifyAccessToken(d, 'a'.repeat(100_000)), '100k characters')
})

t.test('a token signed by another RSA key with our kid is rejected', async (t) => {
  const token = await rs256(accessClaims(), { typ: 'at+jwt', kid: ourKid }, attacker.privateKey)
  t.match(await rejected(t, verifyAccessToken(deps(), token), 'attacker key'), /signature/)
})

t.test('access, refresh and id tokens exclude each other', async (t) => {
  const d = deps()
  const access = (await mintAccessToken(d, { sub: 'u', clientId: 'wx1', scope: 'openid profile', sid: 's', loginEndsAt: Number.MAX_SAFE_INTEGER })).token
  const refresh = (await mintRefreshToken(d, { sub: 'u', clientId: 'wx1', sid: 's', generation: 0, loginEndsAt: LOGIN_ENDS })).token
  const id = (await mintIdToken(d, { sub: 'u', clientId: 'wx1', claims: { sid: 's', nickname: 'n' } })).token
  await rejected(t, verifyAccessToken(d, refresh), 'refresh token as access token')
  await rejected(t, verifyRefreshToken(d, access), 'access token as refresh token')
  await rejected(t, verifyAccessToken(d, id), 'id token as access token')
  await rejected(t, verifyRefreshToken(d, id), 'id token as refresh token')

  // typ alone or aud alone is enough to tell them apart.
  await rejected(t, verifyAccessToken(d, await rs256(accessClaims(), { typ: 'rt+jwt', kid: ourKid })), 'access claims, refresh typ')
  await rejected(t, verifyAccessToken(d, await rs256(accessClaims({ aud: ISSUER }), { typ: 'at+jwt', kid: ourKid })), 'access typ, refresh aud')
  await rejected(t, verifyRefreshToken(d, await rs256(accessClaims({ aud: ISSUER }), { typ: 'at+jwt', kid: ourKid })), 'refresh aud, access typ')
  await rejected(t, verifyRefreshToken(d, await rs256(accessClaims(), { typ: 'rt+jwt', kid: ourKid })), 'refresh typ, access aud')
  await rejected(t, verifyAccessToken(d, await rs256(accessClaims(), { typ: 'JWT', kid: ourKid })), 'typ JWT')
  await rejected(t, verifyAccessToken(d, await rs256(accessClaims(), { kid: ourKid })), 'no typ')
})

t.test('wrong issuer or audience is rejected', async (t) => {
  const d = deps()
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['other issuer', { iss: 'https://evil.example.com' }, /iss/],
    ['issuer with trailing slash', { iss: `${ISSUER}/` }, /iss/],
    ['no issuer', { iss: undefined }, /iss/],
    ['other audience', { aud: 'other-api' }, /aud/],
    ['audience list without ours', { aud: ['a', 'b'] }, /aud/],
    ['no audience', { aud: undefined }, /aud/],
  ]
  for (const [name, overrides, reason] of cases) {
    t.match(await rejected(t, verifyAccessToken(d, await rs256(accessClaims(overrides), { typ: 'at+jwt', kid: ourKid })), name), reason, name)
  }
  const other = { ...d, config: { issuer: 'https://other.example.com', audience: AUDIENCE } }
  const token = (await mintAccessToken(d, { sub: 'u', clientId: 'wx1', scope: 'profile', sid: 's', loginEndsAt: Number.MAX_SAFE_INTEGER })).token
  await rejected(t, verifyAccessToken(other, token), 'a verifier configured for another issuer')
})

t.test('missing or empty claims are rejected', async (t) => {
  const d = deps()
  for (const name of ['client_id', 'sid', 'scope', 'sub', 'jti', 'iat', 'exp']) {
    await rejected(t, verifyAccessToken(d, await rs256(accessClaims({ [name]: undefined }), { typ: 'at+jwt', kid: ourKid })), `no ${name}`)
  }
  for (const name of ['client_id', 'sid', 'scope']) {
    t.match(await rejected(t, verifyAccessToken(d, await rs256(accessClaims({ [name]: '' }), { typ: 'at+jwt', kid: ourKid })), `empty ${name}`), name)
    await rejected(t, verifyAccessToken(d, await rs256(accessClaims({ [name]: 42 }), { typ: 'at+jwt', kid: ourKid })), `numeric ${name}`)
  }
  const refreshClaims = { ...accessClaims({ aud: ISSUER }), scope: undefined, gen: 0 }
  for (const name of ['client_id', 'sid']) {
    await rejected(t, verifyRefreshToken(d, await rs256({ ...refreshClaims, [name]: undefined }, { typ: 'rt+jwt', kid: ourKid })), `refresh without ${name}`)
  }
  t.ok(await verifyRefreshToken(d, await rs256(refreshClaims, { typ: 'rt+jwt', kid: ourKid })), 'the same refresh token with every claim verifies')
})

t.test('jku, x5u and jwk headers are ignored: only our keys count', async (t) => {
  let fetched = 0
  const server = createServer((_req, res) => {
    fetched += 1
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ keys: [attacker.publicKey.export({ format: 'jwk' })] }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const evil = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`
  const attackerJwk = { ...attacker.publicKey.export({ format: 'jwk' }), alg: 'RS256' }
  const d = deps()

  const hostileHeaders: Array<[string, Record<string, unknown>]> = [
    ['embedded jwk, our kid', { jwk: attackerJwk, kid: ourKid }],
    ['embedded jwk, no kid', { jwk: attackerJwk }],
    ['jku, our kid', { jku: evil, kid: ourKid }],
    ['jku, attacker kid', { jku: evil, kid: 'attacker' }],
    ['x5u, our kid', { x5u: evil, kid: ourKid }],
  ]
  for (const [name, header] of hostileHeaders) {
    await rejected(t, verifyAccessToken(d, await rs256(accessClaims(), { ...header, typ: 'at+jwt' }, attacker.privateKey)), name)
  }
  // Signed by our key, the extra headers change nothing.
  const ours = await rs256(accessClaims(), { typ: 'at+jwt', kid: ourKid, jku: evil, x5u: evil, jwk: attackerJwk })
  t.equal((await verifyAccessToken(d, ours)).sub, 'user-1', 'our signature still verifies')
  t.equal(fetched, 0, 'no URL from a token header was ever fetched')
})

t.test('an unknown critical header is rejected', async (t) => {
  // jose refuses to sign this, so sign by hand.
  const handSigned = (header: Record<string, unknown>) => {
    const signingInput = `${b64(header)}.${b64(accessClaims())}`
    return `${signingInput}.${createSign('RSA-SHA256').update(signingInput).sign(keys.active().privateKey).toString('base64url')}`
  }
  t.ok(await verifyAccessToken(deps(), handSigned({ alg: 'RS256', typ: 'at+jwt', kid: ourKid })), 'hand signing is sound')
  const token = handSigned({ alg: 'RS256', typ: 'at+jwt', kid: ourKid, crit: ['x-minigate'], 'x-minigate': true })
  await rejected(t, verifyAccessToken(deps(), token), 'crit')
})
