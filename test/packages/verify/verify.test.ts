import { createPublicKey, randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { ConfigurationError, createVerifier, InvalidToken, scopesOf, TemporarilyUnavailable, VerifyError, type Verifier } from '@minigate/verify'
import t, { type Test } from 'tap'
import { anatomy, requestsTo, sign, signingKeyOfTestApps, startKitApp, strangerKey, unsigned } from '../../helpers/kit.js'

// One minigate for the whole file: the tests only log in and verify, and count the requests they cause.
const app = await startKitApp(t)
const issuer = app.url
const audience = 'minigate-api'
const DEV_SERVICE = { clientId: 'dev-service', clientSecret: 'dev-service-secret' }
const realKey = signingKeyOfTestApps()

const login = await app.login({ openid: 'oVerifyKit', scope: 'openid profile phone' })
const access = login.access_token as string
const { header: realHeader, payload: realPayload } = anatomy(access)

async function rejection(t: Test, verifier: Verifier, token: string, online = false): Promise<VerifyError> {
  try {
    await verifier.verify(token, { online })
  } catch (error) {
    t.ok(error instanceof VerifyError, 'a VerifyError')
    return error as VerifyError
  }
  t.fail('the token was accepted')
  return new VerifyError('accepted')
}

async function refused(t: Test, verifier: Verifier, token: string, message: RegExp, what: string): Promise<void> {
  const error = await rejection(t, verifier, token)
  t.ok(error instanceof InvalidToken, `${what}: invalid_token`)
  t.equal(error.code, 'invalid_token')
  t.equal(error.status, 401)
  t.match(error.message, message, `${what}: ${error.message}`)
  t.match(error.challenge, /^Bearer error="invalid_token", error_description="[^"]+"$/)
}

t.test('a real access token verifies offline into typed claims', async (t) => {
  const verifier = createVerifier({ issuer, audience })
  const discoveries = requestsTo(app, '/.well-known/openid-configuration')
  const claims = await verifier.verify(access)
  t.equal(claims.iss, issuer)
  t.same(claims.aud, [audience, `${issuer}/account`], 'the services and minigate\'s account endpoints')
  t.equal(claims.client_id, 'wx0000000000000dev')
  t.equal(claims.scope, 'openid profile phone')
  t.same(scopesOf(claims), ['openid', 'profile', 'phone'])
  t.equal(claims.sub, realPayload.sub)
  t.equal(claims.jti, realPayload.jti)
  t.type(claims.sid, 'string')
  t.type(claims.exp, 'number')
  t.equal(requestsTo(app, '/.well-known/openid-configuration'), discoveries + 1, 'jwks_uri came from discovery')

  const jwks = requestsTo(app, '/.well-known/jwks.json')
  for (let i = 0; i < 5; i += 1) await verifier.verify(access)
  t.equal(requestsTo(app, '/.well-known/jwks.json'), jwks, 'later verifications use the cached JWKS')
  t.equal(requestsTo(app, '/.well-known/openid-configuration'), discoveries + 1, 'and the cached discovery document')
  t.equal(requestsTo(app, '/introspect'), 0, 'offline: introspection is never asked')
})

t.test('hostile and wrong tokens are refused with invalid_token', async (t) => {
  const verifier = createVerifier({ issuer, audience })
  const now = Math.floor(Date.now() / 1000)
  const claims = { ...realPayload }
  const publicPem = createPublicKey(realKey).export({ type: 'spki', format: 'pem' }) as string
  const [head, body, signature] = access.split('.') as [string, string, string]
  const flipped = `${signature.slice(0, 10)}${signature[10] === 'A' ? 'B' : 'A'}${signature.slice(11)}`
  const strangerPublic = createPublicKey(strangerKey()).export({ format: 'jwk' })

  const cases: Array<[string, () => Promise<string> | string, RegExp]> = [
    ['alg none', () => unsigned(claims, { typ: 'at+jwt', kid: realHeader.kid }), /algorithm|malformed/],
    ['alg None', () => `${Buffer.from(JSON.stringify({ alg: 'None', typ: 'at+jwt', kid: realHeader.kid })).toString('base64url')}.${body}.`, /algorithm|malformed/],
    ['HS256 keyed with the public key (PEM)', () => sign(claims, new TextEncoder().encode(publicPem), { alg: 'HS256', typ: 'at+jwt', kid: realHeader.kid }), /algorithm/],
    ['HS256 keyed with the JWKS modulus', () => sign(claims, Buffer.from(String(createPublicKey(realKey).export({ format: 'jwk' }).n), 'base64url'), { alg: 'HS256', typ: 'at+jwt', kid: realHeader.kid }), /algorithm/],
    ['RS512 by the real key', () => sign(claims, realKey, { alg: 'RS512', typ: 'at+jwt', kid: realHeader.kid }), /algorithm/],
    ['PS256 by the real key', () => sign(claims, realKey, { alg: 'PS256', typ: 'at+jwt', kid: realHeader.kid }), /algorithm/],
    ['another RSA key under the real kid', () => sign(claims, strangerKey(), { typ: 'at+jwt', kid: realHeader.kid }), /signature/],
    ['another RSA key under its own kid', () => sign(claims, strangerKey(), { typ: 'at+jwt', kid: 'attacker-key' }), /unknown key/],
    ['another RSA key embedded as jwk', () => sign(claims, strangerKey(), { typ: 'at+jwt', jwk: strangerPublic }), /signature|unknown key/],
    ['another RSA key named by jku', () => sign(claims, strangerKey(), { typ: 'at+jwt', kid: 'x', jku: 'https://attacker.example/jwks.json' }), /unknown key/],
    ['an unknown kid', () => sign(claims, realKey, { typ: 'at+jwt', kid: randomBytes(16).toString('base64url') }), /unknown key/],
    ['typ JWT (an ID token header)', () => sign(claims, realKey, { typ: 'JWT', kid: realHeader.kid }), /typ/],
    ['typ rt+jwt', () => sign(claims, realKey, { typ: 'rt+jwt', kid: realHeader.kid }), /typ/],
    ['no typ', () => sign(claims, realKey, { kid: realHeader.kid }), /typ/],
    ['another issuer', () => sign({ ...claims, iss: 'https://attacker.example' }, realKey, { typ: 'at+jwt', kid: realHeader.kid }), /iss/],
    ['the issuer with a trailing slash', () => sign({ ...claims, iss: `${issuer}/` }, realKey, { typ: 'at+jwt', kid: realHeader.kid }), /iss/],
    ['another audience', () => sign({ ...claims, aud: 'another-api' }, realKey, { typ: 'at+jwt', kid: realHeader.kid }), /aud/],
    ['no audience', () => sign({ ...claims, aud: undefined }, realKey, { typ: 'at+jwt', kid: realHeader.kid }), /aud/],
    ['expired', () => sign({ ...claims, iat: now - 3600, exp: now - 120 }, realKey, { typ: 'at+jwt', kid: realHeader.kid }), /expired/],
    ['no exp', () => sign({ ...claims, exp: undefined }, realKey, { typ: 'at+jwt', kid: realHeader.kid }), /exp/],
    ['no sub', () => sign({ ...claims, sub: undefined }, realKey, { typ: 'at+jwt', kid: realHeader.kid }), /sub/],
    ['an empty sub', () => sign({ ...claims, sub: '' }, realKey, { typ: 'at+jwt', kid: realHeader.kid }), /sub/],
    ['no client_id', () => sign({ ...claims, client_id: undefined }, realKey, { typ: 'at+jwt', kid: realHeader.kid }), /client_id/],
    ['a numeric client_id', () => sign({ ...claims, client_id: 42 }, realKey, { typ: 'at+jwt', kid: realHeader.kid }), /client_id/],
    ['no jti', () => sign({ ...claims, jti: undefined }, realKey, { typ: 'at+jwt', kid: realHeader.kid }), /jti/],
    ['no iat', () => sign({ ...claims, iat: undefined }, realKey, { typ: 'at+jwt', kid: realHeader.kid }), /iat/],
    ['a scope that is not a string', () => sign({ ...claims, scope: ['profile'] }, realKey, { typ: 'at+jwt', kid: realHeader.kid }), /scope/],
    ['issued in the future', () => sign({ ...claims, iat: now + 3600, exp: now + 7200 }, realKey, { typ: 'at+jwt', kid: realHeader.kid }), /iat/],
    ['not yet valid (nbf)', () => sign({ ...claims, nbf: now + 3600 }, realKey, { typ: 'at+jwt', kid: realHeader.kid }), /nbf/],
    ['a tampered payload', () => `${head}.${Buffer.from(JSON.stringify({ ...claims, sub: 'someone-else' })).toString('base64url')}.${signature}`, /signature/],
    ['a tampered scope', () => `${head}.${Buffer.from(JSON.stringify({ ...claims, scope: 'openid profile phone admin' })).toString('base64url')}.${signature}`, /signature/],
    ['a flipped signature bit', () => `${head}.${body}.${flipped}`, /signature/],
    ['no signature', () => `${head}.${body}.`, /signature|malformed/],
    ['a refresh token', () => login.refresh_token, /typ|aud/],
    ['an ID token', () => login.id_token, /typ|aud/],
    ['two segments', () => `${head}.${body}`, /malformed/],
    ['four segments', () => `${access}.x`, /malformed/],
    ['garbage', () => 'not-a-jwt', /malformed/],
    ['empty', () => '', /malformed/],
    ['10 KB', () => `${head}.${'A'.repeat(10_000)}.${signature}`, /malformed/],
    ['a header that is not JSON', () => `${Buffer.from('{alg:').toString('base64url')}.${body}.${signature}`, /malformed/],
  ]
  for (const [what, make, message] of cases) await refused(t, verifier, await make(), message, what)
  t.equal(requestsTo(app, '/introspect'), 0, 'nothing reached introspection')
})

t.test('clockTolerance: 60 s by default, configurable', async (t) => {
  const now = Math.floor(Date.now() / 1000)
  const justExpired = await sign({ ...realPayload, iat: now - 900, exp: now - 30 }, realKey, { typ: 'at+jwt', kid: realHeader.kid })
  t.ok(await createVerifier({ issuer, audience }).verify(justExpired), 'expired 30 s ago: within the default tolerance')
  await refused(t, createVerifier({ issuer, audience, clockTolerance: 0 }), justExpired, /expired/, 'no tolerance')
  const frozen = createVerifier({ issuer, audience, now: () => (now + 3600) * 1000 })
  await refused(t, frozen, access, /expired/, 'an hour later by the verifier clock')
})

t.test('a flood of unknown kids refetches the JWKS at most once per cooldown', async (t) => {
  const verifier = createVerifier({ issuer, audience })
  await verifier.verify(access)
  const before = requestsTo(app, '/.well-known/jwks.json')
  const tokens = await Promise.all(Array.from({ length: 25 }, () => sign(realPayload, realKey, { typ: 'at+jwt', kid: randomBytes(12).toString('base64url') })))
  const outcomes = await Promise.allSettled(tokens.map((token) => verifier.verify(token)))
  t.ok(
    outcomes.every((outcome) => outcome.status === 'rejected' && (outcome.reason as VerifyError).code === 'invalid_token'),
    'every one is invalid_token',
  )
  t.equal(requestsTo(app, '/.well-known/jwks.json'), before, 'none refetched the JWKS within the cooldown (30 s) of the last fetch')

  const cold = createVerifier({ issuer, audience, jwks: { cooldownDuration: 0 } })
  await cold.verify(access)
  const coldBefore = requestsTo(app, '/.well-known/jwks.json')
  await Promise.allSettled(tokens.map((token) => cold.verify(token)))
  t.ok(requestsTo(app, '/.well-known/jwks.json') - coldBefore <= tokens.length, 'without a cooldown each unknown kid may refetch')
  t.ok(requestsTo(app, '/.well-known/jwks.json') > coldBefore, 'and does')
})

t.test('online: introspection confirms the token is still active, with a short positive cache', async (t) => {
  let time = Date.now()
  const verifier = createVerifier({ issuer, audience, introspection: DEV_SERVICE, now: () => time })
  const fresh = await app.login({ openid: 'oVerifyOnline' })
  const before = requestsTo(app, '/introspect')
  const claims = await verifier.verify(fresh.access_token, { online: true })
  t.equal(claims.sub, anatomy(fresh.access_token).payload.sub)
  t.equal(requestsTo(app, '/introspect'), before + 1, 'introspection was asked')

  await Promise.all(Array.from({ length: 5 }, () => verifier.verify(fresh.access_token, { online: true })))
  t.equal(requestsTo(app, '/introspect'), before + 1, 'within the cache time (5 s) the answer is reused')

  // The login ends (the refresh token is revoked): offline still accepts the token, online does not.
  const revoke = await app.postForm('/revoke', { token: fresh.refresh_token })
  t.equal(revoke.status, 200)
  t.ok(await verifier.verify(fresh.access_token), 'offline verification accepts a revoked token until it expires')
  t.ok(await verifier.verify(fresh.access_token, { online: true }), 'a cached positive answer lasts its few seconds')
  time += 5_001
  const error = await rejection(t, verifier, fresh.access_token, true)
  t.ok(error instanceof InvalidToken)
  t.match(error.message, /revoked/)
  t.equal(requestsTo(app, '/introspect'), before + 2)

  const again = await app.login({ openid: 'oVerifyOnlineConcurrent' })
  const concurrent = requestsTo(app, '/introspect')
  await Promise.all(Array.from({ length: 10 }, () => verifier.verify(again.access_token, { online: true })))
  t.equal(requestsTo(app, '/introspect'), concurrent + 1, 'ten concurrent checks of one token share one introspection request')

  const uncached = createVerifier({ issuer, audience, introspection: { ...DEV_SERVICE, cacheSeconds: 0 } })
  const start = requestsTo(app, '/introspect')
  await uncached.verify(again.access_token, { online: true })
  await uncached.verify(again.access_token, { online: true })
  t.equal(requestsTo(app, '/introspect'), start + 2, 'cacheSeconds: 0 asks every time')
})

t.test('online: only tokens that verify offline are introspected', async (t) => {
  const verifier = createVerifier({ issuer, audience, introspection: DEV_SERVICE })
  const before = requestsTo(app, '/introspect')
  for (const token of [login.refresh_token, login.id_token, await sign(realPayload, strangerKey(), { typ: 'at+jwt', kid: realHeader.kid })]) {
    t.equal((await rejection(t, verifier, token, true)).code, 'invalid_token')
  }
  t.equal(requestsTo(app, '/introspect'), before, 'a refresh token, an ID token or a forgery never reaches introspection')
})

t.test('online: configuration errors', async (t) => {
  const offlineOnly = createVerifier({ issuer, audience })
  const missing = await rejection(t, offlineOnly, access, true)
  t.ok(missing instanceof ConfigurationError, 'online without introspection options')
  t.equal(missing.status, 500)
  t.equal(missing.expose, false)

  const wrongSecret = createVerifier({ issuer, audience, introspection: { clientId: 'dev-service', clientSecret: 'not-the-secret-at-all' } })
  const refused = await rejection(t, wrongSecret, access, true)
  t.ok(refused instanceof ConfigurationError, 'the issuer refused the credentials')
  t.match(refused.message, /credentials/)

  t.throws(() => createVerifier({ issuer, audience, introspection: { clientId: 'dev-service', clientSecret: '' } }), TypeError)
  t.throws(() => createVerifier({ issuer: '', audience }), TypeError)
  t.throws(() => createVerifier({ issuer, audience: '' }), TypeError)
})

t.test('discovery: the document must name our issuer exactly', async (t) => {
  const verifier = createVerifier({ issuer: `${issuer}/`, audience })
  const error = await rejection(t, verifier, access)
  t.ok(error instanceof ConfigurationError)
  t.match(error.message, /names the issuer/)
})

t.test('an issuer that does not answer is 503 temporarily_unavailable, and is asked again later', async (t) => {
  const server = createServer((request, response) => {
    response.statusCode = request.url === '/broken/.well-known/openid-configuration' ? 200 : 500
    response.setHeader('content-type', 'application/json')
    response.end(request.url?.startsWith('/broken/') ? '{"issuer": ' : '{}')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const { port } = server.address() as AddressInfo

  let time = Date.now()
  for (const [what, url] of [
    ['a 500', `http://127.0.0.1:${port}`],
    ['a document that is not JSON', `http://127.0.0.1:${port}/broken`],
  ] as const) {
    const error = await rejection(t, createVerifier({ issuer: url, audience, now: () => time }), access)
    t.ok(error instanceof TemporarilyUnavailable, what)
    t.equal(error.status, 503)
    t.equal(error.code, 'temporarily_unavailable')
  }

  // A port nobody listens on: the same error, remembered for a few seconds, then tried again.
  const closed = createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const deadPort = (closed.address() as AddressInfo).port
  await new Promise<void>((resolve) => closed.close(() => resolve()))
  const verifier = createVerifier({ issuer: `http://127.0.0.1:${deadPort}`, audience, now: () => time })
  const first = await rejection(t, verifier, access)
  const second = await rejection(t, verifier, access)
  t.ok(first instanceof TemporarilyUnavailable)
  t.equal(second, first, 'within 5 s the remembered failure answers')
  time += 5_000
  const third = await rejection(t, verifier, access)
  t.ok(third instanceof TemporarilyUnavailable)
  t.not(third, first, 'after 5 s the issuer is asked again')

  // The JWKS itself unreachable (discovery fine): 503 too, never invalid_token.
  const jwksDown = createServer((request, response) => {
    response.setHeader('content-type', 'application/json')
    if (request.url === '/.well-known/openid-configuration') {
      response.end(JSON.stringify({ issuer: `http://127.0.0.1:${(jwksDown.address() as AddressInfo).port}`, jwks_uri: `http://127.0.0.1:${deadPort}/jwks` }))
    } else {
      response.statusCode = 404
      response.end('{}')
    }
  })
  await new Promise<void>((resolve) => jwksDown.listen(0, '127.0.0.1', resolve))
  t.teardown(() => jwksDown.close())
  const noJwks = createVerifier({ issuer: `http://127.0.0.1:${(jwksDown.address() as AddressInfo).port}`, audience })
  const forged = await sign({ ...realPayload, iss: `http://127.0.0.1:${(jwksDown.address() as AddressInfo).port}` }, realKey, { typ: 'at+jwt', kid: realHeader.kid })
  const error = await rejection(t, noJwks, forged)
  t.ok(error instanceof TemporarilyUnavailable, 'an unreachable JWKS is 503')
})
