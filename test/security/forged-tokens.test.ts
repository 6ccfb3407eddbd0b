/**
 * SECURITY.md "Bad input minigate must survive", the token side: forged tokens (alg none, HS256 keyed
 * with the public key, unknown and hostile kid, jku/x5u/jwk/x5c, other algorithms, bit flips, wrong
 * segment counts), tokens of the wrong kind, reused codes, replayed and raced refreshes, expired,
 * revoked and other-client tokens. Every forgery is sent to /userinfo (401 invalid_token), /introspect
 * ({"active":false}), /token as a refresh token (invalid_grant) and /revoke (200, nothing revoked).
 */
import { createHmac, generateKeyPairSync, sign as cryptoSign, constants, type KeyObject } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { calculateJwkThumbprint } from 'jose'
import t, { type Test } from 'tap'
import {
  APP_A,
  APP_B,
  b64url,
  expectError,
  expectIntegrity,
  expectInvalidToken,
  expectStillServing,
  payloadOf,
  refreshTokenLive,
  Secrets,
  SERVICE_BASIC,
  show,
  startApp,
  tokenState,
  TWO_APPS,
  WECHAT_CODE_GRANT,
} from './support.js'

const app = await startApp(t)
const secrets = new Secrets(app)
const real = await app.login({ openid: 'o-forged', scope: 'openid profile' })
secrets.addTokens(real)
const realAccess = real.access_token as string
const realRefresh = real.refresh_token as string
const realKey = app.deps.keys.active()
const kid = realKey.kid

// An attacker's keys, and a server that would hand out the attacker's JWKS (it must never be asked).
const attacker = generateKeyPairSync('rsa', { modulusLength: 2048 })
const attackerEc = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const attackerEd = generateKeyPairSync('ed25519')
const attackerJwk = { ...attacker.publicKey.export({ format: 'jwk' }), alg: 'RS256', use: 'sig' }
const attackerKid = await calculateJwkThumbprint(attackerJwk as { kty: string; n: string; e: string })
let jwksHits = 0
const jwksServer = createServer((_req, res) => {
  jwksHits += 1
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify({ keys: [{ ...attackerJwk, kid }, { ...attackerJwk, kid: attackerKid }] }))
})
await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve))
t.teardown(() => new Promise<void>((resolve) => jwksServer.close(() => resolve())))
const attackerUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`

type Signer = (input: string) => Buffer | string

/** A compact JWS of any header and payload, signed by `signer`. */
function compact(header: unknown, payload: unknown, signer: Signer): string {
  const input = `${b64url(header)}.${b64url(payload)}`
  const signature = signer(input)
  return `${input}.${typeof signature === 'string' ? signature : signature.toString('base64url')}`
}

const rs = (key: KeyObject, hash = 'sha256'): Signer => (input) => cryptoSign(hash, Buffer.from(input), key)
const ps = (key: KeyObject, hash = 'sha256', saltLength = 32): Signer => (input) => cryptoSign(hash, Buffer.from(input), { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength })
const es256: Signer = (input) => cryptoSign('sha256', Buffer.from(input), { key: attackerEc.privateKey, dsaEncoding: 'ieee-p1363' })
const eddsa: Signer = (input) => cryptoSign(null, Buffer.from(input), attackerEd.privateKey)
const hmac = (hash: string, secret: string | Buffer): Signer => (input) => createHmac(hash, secret).update(input).digest()
const none = (signature = ''): Signer => () => signature

/** Forgeries built on the claims of a real token of one kind. */
function forgeries(realToken: string, typ: string): Array<[string, string]> {
  const payload = payloadOf(realToken)
  const [h, p, s] = realToken.split('.') as [string, string, string]
  const header = { alg: 'RS256', typ, kid }
  const publicPem = realKey.publicKey.export({ type: 'spki', format: 'pem' }) as string
  const pkcs1Pem = realKey.publicKey.export({ type: 'pkcs1', format: 'pem' }) as string
  const publicDer = realKey.publicKey.export({ type: 'spki', format: 'der' })
  const pkcs1Der = realKey.publicKey.export({ type: 'pkcs1', format: 'der' })
  const jwk = app.deps.keys.jwks().keys.find((key) => key.kid === kid)
  const list: Array<[string, string]> = []

  // alg none, in every spelling, with and without a signature.
  for (const alg of ['none', 'None', 'NONE', 'nOnE', 'none ', '']) {
    list.push([`alg ${show(alg)}, empty signature`, compact({ ...header, alg }, payload, none())])
    list.push([`alg ${show(alg)}, the real signature`, compact({ ...header, alg }, payload, none(s))])
  }
  list.push(['alg none, no signature segment', `${b64url({ alg: 'none', typ })}.${b64url(payload)}`])
  list.push(['no alg at all', compact({ typ, kid }, payload, rs(attacker.privateKey))])
  list.push(['alg null', compact({ ...header, alg: null }, payload, rs(attacker.privateKey))])
  list.push(['alg as an array', compact({ ...header, alg: ['RS256'] }, payload, rs(realKey.privateKey))])

  // HMAC keyed with the public key, in every form an HS verifier might be handed.
  const hmacSecrets: Array<[string, string | Buffer]> = [
    ['SPKI PEM', publicPem],
    ['SPKI PEM without the trailing newline', publicPem.trimEnd()],
    ['PKCS#1 PEM', pkcs1Pem],
    ['SPKI DER', publicDer],
    ['PKCS#1 DER', pkcs1Der],
    ['JWK JSON', JSON.stringify(jwk)],
    ['the modulus n', String(jwk?.n)],
    ['the kid', kid],
    ['an empty secret', ''],
  ]
  for (const [what, secret] of hmacSecrets) {
    for (const [alg, hash] of [['HS256', 'sha256'], ['HS384', 'sha384'], ['HS512', 'sha512']] as const) {
      list.push([`${alg} keyed with ${what}`, compact({ ...header, alg }, payload, hmac(hash, secret))])
    }
  }

  // Other algorithms: with the real key (the allow-list must refuse them, not the signature check) and an attacker's.
  list.push(['RS384 signed with the real key', compact({ ...header, alg: 'RS384' }, payload, rs(realKey.privateKey, 'sha384'))])
  list.push(['RS512 signed with the real key', compact({ ...header, alg: 'RS512' }, payload, rs(realKey.privateKey, 'sha512'))])
  list.push(['PS256 signed with the real key', compact({ ...header, alg: 'PS256' }, payload, ps(realKey.privateKey))])
  list.push(['PS384 signed with the real key', compact({ ...header, alg: 'PS384' }, payload, ps(realKey.privateKey, 'sha384', 48))])
  list.push(['ES256 signed with an attacker EC key', compact({ ...header, alg: 'ES256' }, payload, es256)])
  list.push(['ES256 with an embedded attacker jwk', compact({ ...header, alg: 'ES256', jwk: attackerEc.publicKey.export({ format: 'jwk' }) }, payload, es256)])
  list.push(['EdDSA signed with an attacker Ed25519 key', compact({ ...header, alg: 'EdDSA' }, payload, eddsa)])
  list.push(['RS256 header, PS256 signature by the real key', compact(header, payload, ps(realKey.privateKey))])

  // RS256 signed by the attacker, pointing at the attacker's key every way JOSE allows.
  const signedByAttacker = rs(attacker.privateKey)
  list.push(['attacker key, the real kid', compact(header, payload, signedByAttacker)])
  list.push(['attacker key, no kid', compact({ alg: 'RS256', typ }, payload, signedByAttacker)])
  list.push(['attacker key, its own thumbprint kid', compact({ ...header, kid: attackerKid }, payload, signedByAttacker)])
  list.push(['attacker key, unknown kid', compact({ ...header, kid: 'unknown-key-id' }, payload, signedByAttacker)])
  list.push(['jku to the attacker JWKS, real kid', compact({ ...header, jku: attackerUrl }, payload, signedByAttacker)])
  list.push(['jku to the attacker JWKS, attacker kid', compact({ ...header, kid: attackerKid, jku: attackerUrl }, payload, signedByAttacker)])
  list.push(['x5u to the attacker', compact({ ...header, x5u: attackerUrl }, payload, signedByAttacker)])
  list.push(['embedded attacker jwk, real kid', compact({ ...header, jwk: attackerJwk }, payload, signedByAttacker)])
  list.push(['embedded attacker jwk, no kid', compact({ alg: 'RS256', typ, jwk: attackerJwk }, payload, signedByAttacker)])
  list.push(['embedded attacker jwk, its kid', compact({ ...header, kid: attackerKid, jwk: { ...attackerJwk, kid: attackerKid } }, payload, signedByAttacker)])
  list.push(['x5c with the attacker key', compact({ ...header, x5c: [attacker.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')] }, payload, signedByAttacker)])
  list.push(['jku + jwk + x5u + x5c together', compact({ ...header, jku: attackerUrl, x5u: attackerUrl, jwk: attackerJwk, x5c: ['AAAA'] }, payload, signedByAttacker)])

  // Hostile kids (signed by the attacker: with the real signature the header change already breaks it).
  const hostileKids: unknown[] = [
    '../../../../etc/passwd',
    `../keys/${kid}`,
    '/dev/zero',
    'file:///etc/passwd',
    "' OR '1'='1",
    "x'; DROP TABLE signing_keys; --",
    '" OR 1=1 --',
    `${kid}\u0000`,
    `${kid} `,
    kid.toUpperCase(),
    'k'.repeat(10 * 1024),
    'k'.repeat(2000),
    '__proto__',
    'constructor',
    'toString',
    'hasOwnProperty',
    '',
    '\u202e',
    42,
    0,
    true,
    null,
    [kid],
    { kid },
    { toString: kid },
  ]
  for (const hostile of hostileKids) {
    list.push([`hostile kid ${show(hostile, 30)}`, compact({ ...header, kid: hostile }, payload, signedByAttacker)])
    list.push([`hostile kid ${show(hostile, 30)}, real key`, compact({ ...header, kid: hostile }, payload, rs(realKey.privateKey))])
  }
  list.push(['crit with an unknown extension, real key', compact({ ...header, crit: ['x-evil'], 'x-evil': true }, payload, rs(realKey.privateKey))])
  list.push(['b64 false, real key', compact({ ...header, b64: false, crit: ['b64'] }, payload, rs(realKey.privateKey))])

  // The real token, tampered.
  const sigBytes = Buffer.from(s, 'base64url')
  for (const bit of [0, 1, 7, 8, 100, 1000, sigBytes.length * 8 - 9, sigBytes.length * 8 - 1]) {
    const flipped = Buffer.from(sigBytes)
    flipped[bit >> 3] = (flipped[bit >> 3] as number) ^ (1 << (bit & 7))
    list.push([`signature bit ${bit} flipped`, `${h}.${p}.${flipped.toString('base64url')}`])
  }
  list.push(['signature one byte short', `${h}.${p}.${sigBytes.subarray(1).toString('base64url')}`])
  list.push(['signature one byte long', `${h}.${p}.${Buffer.concat([sigBytes, Buffer.from([0])]).toString('base64url')}`])
  list.push(['signature all zero', `${h}.${p}.${Buffer.alloc(sigBytes.length).toString('base64url')}`])
  list.push(['signature of another token', `${h}.${p}.${realAccess === realToken ? (realRefresh.split('.')[2] as string) : (realAccess.split('.')[2] as string)}`])
  list.push(['payload changed, real signature', `${h}.${b64url({ ...payload, sub: 'someone-else' })}.${s}`])
  list.push(['payload scope widened, real signature', `${h}.${b64url({ ...payload, scope: 'openid profile phone' })}.${s}`])
  list.push(['payload exp extended, real signature', `${h}.${b64url({ ...payload, exp: (payload.exp as number) + 86400 })}.${s}`])
  list.push(['header typ changed, real signature', `${b64url({ alg: 'RS256', typ: typ === 'at+jwt' ? 'rt+jwt' : 'at+jwt', kid })}.${p}.${s}`])
  list.push(['a character of the payload changed', `${h}.${p.slice(0, 10)}${p[10] === 'A' ? 'B' : 'A'}${p.slice(11)}.${s}`])
  list.push(['a character of the header changed', `${h.slice(0, 5)}${h[5] === 'A' ? 'B' : 'A'}${h.slice(6)}.${p}.${s}`])

  // Wrong segment counts and shapes.
  for (const [what, token] of [
    ['one segment', h],
    ['two segments', `${h}.${p}`],
    ['two segments, trailing dot', `${h}.${p}.`],
    ['four segments', `${h}.${p}.${s}.${s}`],
    ['five segments (JWE-shaped)', `${h}.${p}.${s}.${s}.${s}`],
    ['empty segments', '..'],
    ['four dots', '....'],
    ['a dot', '.'],
    ['empty header', `.${p}.${s}`],
    ['empty payload', `${h}..${s}`],
    ['leading dot', `.${h}.${p}.${s}`],
    ['trailing dot', `${h}.${p}.${s}.`],
    ['the token twice', `${realToken}${realToken}`],
    ['header is not JSON', `${b64url('not json')}.${p}.${s}`],
    ['header is a JSON array', `${b64url([header])}.${p}.${s}`],
    ['payload is not JSON', `${h}.${b64url('not json')}.${s}`],
    ['payload is a JSON string', compact(header, JSON.stringify(JSON.stringify(payload)), rs(realKey.privateKey))],
    ['over the length limit', `${h}.${b64url({ ...payload, pad: 'x'.repeat(5000) })}.${s}`],
  ] as const) {
    list.push([what, token])
  }
  return list
}

/** A forgery must be refused everywhere, and change nothing. */
async function refusedEverywhere(t: Test, name: string, token: string): Promise<void> {
  // fetch refuses header values with control characters; those reach /userinfo only through the body-based endpoints.
  const headerSafe = /^[\x21-\x7e]*$/.test(token) && token.length < 12_000
  const [userinfo, introspect, refresh, revoke] = await Promise.all([
    headerSafe ? fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${token}` } }) : undefined,
    app.postForm('/introspect', { token }, { authorization: SERVICE_BASIC }),
    app.postForm('/token', { grant_type: 'refresh_token', refresh_token: token }),
    app.postForm('/revoke', { token }),
  ])
  if (userinfo) await expectInvalidToken(t, userinfo, `${name}: /userinfo`, secrets)
  t.equal(introspect.status, 200, `${name}: /introspect 200`)
  t.same(await introspect.json(), { active: false }, `${name}: /introspect says only {"active":false}`)
  await expectError(t, refresh, `${name}: refresh grant`, { status: 400, error: 'invalid_grant' }, secrets)
  t.equal(revoke.status, 200, `${name}: /revoke 200`)
  t.equal(await revoke.text(), '', `${name}: /revoke says nothing`)
}

async function stillActive(t: Test, name: string): Promise<void> {
  const userinfo = await fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${realAccess}` } })
  t.equal(userinfo.status, 200, `${name}: the real access token still works`)
  t.ok(await refreshTokenLive(app, realRefresh), `${name}: the real refresh token is still live`)
}

t.test('forged access tokens', async (t) => {
  const state = await tokenState(app)
  const from = app.logs.length
  for (const [name, token] of forgeries(realAccess, 'at+jwt')) await refusedEverywhere(t, `access, ${name}`, token)
  t.same(await tokenState(app), state, 'nothing was written or revoked')
  await stillActive(t, 'after forged access tokens')
  t.equal(jwksHits, 0, 'no jku/x5u URL was ever fetched')
  secrets.checkLogs(t, from)
  await expectStillServing(t, app, secrets)
})

t.test('forged refresh tokens', async (t) => {
  const state = await tokenState(app)
  const from = app.logs.length
  for (const [name, token] of forgeries(realRefresh, 'rt+jwt')) await refusedEverywhere(t, `refresh, ${name}`, token)
  t.same(await tokenState(app), state, 'nothing was written or revoked')
  await stillActive(t, 'after forged refresh tokens')
  t.equal(jwksHits, 0, 'no jku/x5u URL was ever fetched')
  secrets.checkLogs(t, from)
  await expectStillServing(t, app, secrets)
})

// The 5xx of the claim forgeries below are logged as unhandled errors; the final check starts after them.
let logsCheckedFrom = 0

t.test('tokens signed with the real key but with claims minigate never issues', async (t) => {
  const from = app.logs.length
  // Only minigate's own key can make these: they check that the claim rules (RFC 8725 §3.11: the kinds
  // exclude each other, claims have their types) refuse them cleanly, not with a 500. Built on a login of
  // their own: /revoke rightly acts on a validly signed token, so these may end that login.
  const own = await app.login({ openid: 'o-claim-forgeries' })
  secrets.addTokens(own)
  const access = payloadOf(own.access_token as string)
  const refresh = payloadOf(own.refresh_token as string)
  const sign = (header: Record<string, unknown>, payload: unknown) => compact({ alg: 'RS256', kid, ...header }, payload, rs(realKey.privateKey))
  const now = Math.floor(app.clock.now() / 1000)
  const without = (payload: Record<string, unknown>, name: string) => Object.fromEntries(Object.entries(payload).filter(([key]) => key !== name))
  const cases: Array<[string, string]> = [
    ['access claims, typ JWT', sign({ typ: 'JWT' }, access)],
    ['access claims, typ rt+jwt', sign({ typ: 'rt+jwt' }, access)],
    ['access claims, no typ', sign({}, access)],
    ['access claims, typ at+jwt+evil', sign({ typ: 'at+jwt+evil' }, access)],
    ['refresh claims, typ at+jwt (aud is the issuer)', sign({ typ: 'at+jwt' }, refresh)],
    ['access claims, typ rt+jwt, aud the issuer', sign({ typ: 'rt+jwt' }, { ...access, aud: app.config.issuer })],
    ['id-token-like: aud the appid', sign({ typ: 'at+jwt' }, { ...access, aud: access.client_id })],
    ['another issuer', sign({ typ: 'at+jwt' }, { ...access, iss: 'https://evil.example' })],
    ['issuer with a trailing slash', sign({ typ: 'at+jwt' }, { ...access, iss: `${app.config.issuer}/` })],
    ['another audience', sign({ typ: 'at+jwt' }, { ...access, aud: 'other-api' })],
    ['aud empty array', sign({ typ: 'at+jwt' }, { ...access, aud: [] })],
    ['expired an hour ago', sign({ typ: 'at+jwt' }, { ...access, iat: now - 7200, exp: now - 3600 })],
    ['nbf in the future', sign({ typ: 'at+jwt' }, { ...access, nbf: now + 3600 })],
    ['exp as a string', sign({ typ: 'at+jwt' }, { ...access, exp: String(now + 600) })],
    ['iat as a string', sign({ typ: 'at+jwt' }, { ...access, iat: 'yesterday' })],
    ['no exp', sign({ typ: 'at+jwt' }, without(access, 'exp'))],
    ['no iat', sign({ typ: 'at+jwt' }, without(access, 'iat'))],
    ['no jti', sign({ typ: 'at+jwt' }, without(access, 'jti'))],
    ['no sub', sign({ typ: 'at+jwt' }, without(access, 'sub'))],
    ['no sid', sign({ typ: 'at+jwt' }, without(access, 'sid'))],
    ['no client_id', sign({ typ: 'at+jwt' }, without(access, 'client_id'))],
    ['no scope', sign({ typ: 'at+jwt' }, without(access, 'scope'))],
    ['sid of no session', sign({ typ: 'at+jwt' }, { ...access, sid: 'no-such-session' })],
    ['sub of another user than the session', sign({ typ: 'at+jwt' }, { ...access, sub: 'no-such-user' })],
    ['sid as a number', sign({ typ: 'at+jwt' }, { ...access, sid: 12345 })],
    ['client_id as an array', sign({ typ: 'at+jwt' }, { ...access, client_id: [access.client_id] })],
    ['scope as an array', sign({ typ: 'at+jwt' }, { ...access, scope: ['profile'] })],
    ['sub as a number', sign({ typ: 'at+jwt' }, { ...access, sub: 12345 })],
    ['sub as an object', sign({ typ: 'at+jwt' }, { ...access, sub: { id: access.sub } })],
    ['jti as a number', sign({ typ: 'at+jwt' }, { ...access, jti: 12345 })],
    ['jti as an object', sign({ typ: 'at+jwt' }, { ...access, jti: { a: 1 } })],
    ['refresh: sid as an object', sign({ typ: 'rt+jwt' }, { ...refresh, sid: { a: 1 } })],
    ['refresh: jti as an object', sign({ typ: 'rt+jwt' }, { ...refresh, jti: { a: 1 } })],
    // A refresh token is its login's id and generation, signed: re-signing the real claims would be
    // issuing one. These claims minigate never issues.
    ['refresh: gen as a string', sign({ typ: 'rt+jwt' }, { ...refresh, gen: '0' })],
    ['refresh: gen negative', sign({ typ: 'rt+jwt' }, { ...refresh, gen: -1 })],
    ['refresh: gen fractional', sign({ typ: 'rt+jwt' }, { ...refresh, gen: 0.5 })],
    ['refresh: no gen', sign({ typ: 'rt+jwt' }, without(refresh, 'gen'))],
    ['refresh: a generation the login never reached', sign({ typ: 'rt+jwt' }, { ...refresh, gen: 99 })],
    ['refresh: sid of no session', sign({ typ: 'rt+jwt' }, { ...refresh, sid: 'no-such-session' })],
    ['refresh: sub of another user than the session', sign({ typ: 'rt+jwt' }, { ...refresh, sub: 'no-such-user' })],
    ['refresh: client_id of another app than the session', sign({ typ: 'rt+jwt' }, { ...refresh, client_id: 'wxother' })],
  ]
  const state = await tokenState(app)
  for (const [name, token] of cases) {
    // Every endpoint must answer with a 4xx or the RFC's fixed answer; a 500 here means a claim type slipped past verification.
    const userinfo = await fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${token}` } })
    const introspect = await app.postForm('/introspect', { token }, { authorization: SERVICE_BASIC })
    const refreshed = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: token })
    const revoke = await app.postForm('/revoke', { token })
    t.equal(userinfo.status, 401, `${name}: /userinfo 401`)
    if (userinfo.status === 401) await expectInvalidToken(t, userinfo, `${name}: /userinfo`, secrets)
    t.equal(introspect.status, 200, `${name}: /introspect 200`)
    if (introspect.status === 200) t.same(await introspect.json(), { active: false }, `${name}: /introspect {"active":false}`)
    t.equal(refreshed.status, 400, `${name}: refresh grant 400`)
    if (refreshed.status === 400) await expectError(t, refreshed, `${name}: refresh grant`, { status: 400, error: 'invalid_grant' }, secrets)
    // RFC 7009 §2.1: a token of another client is refused, the others answer 200.
    t.equal(revoke.status, name.includes('another app') ? 400 : 200, `${name}: /revoke`)
  }
  const after = await tokenState(app)
  t.same({ ...after, sessions_revoked: 0, access_revoked: 0, audit_events: 0 }, { ...state, sessions_revoked: 0, access_revoked: 0, audit_events: 0 }, 'no row was added (revocations aside)')
  await stillActive(t, 'after claim forgeries')
  const lines = app.logs.slice(from)
  t.same(lines.filter((line) => secrets.foundIn(line) !== undefined), [], 'no secret in a log line')
  logsCheckedFrom = app.logs.length
})

t.test('tokens of the wrong kind', async (t) => {
  const state = await tokenState(app)
  const idToken = real.id_token as string
  t.type(idToken, 'string', 'the openid scope gave an id_token')
  await expectError(t, await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: realAccess }), 'an access token as refresh_token', { status: 400, error: 'invalid_grant' }, secrets)
  await expectError(t, await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: idToken }), 'an id token as refresh_token', { status: 400, error: 'invalid_grant' }, secrets)
  await expectInvalidToken(t, await fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${realRefresh}` } }), 'a refresh token as Bearer', secrets)
  await expectInvalidToken(t, await fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${idToken}` } }), 'an id token as Bearer', secrets)
  await expectInvalidToken(t, await app.postJson('/wechat/decrypt', { encrypted_data: 'AAAA', iv: 'AAAAAAAAAAAAAAAAAAAAAA==' }, { authorization: `Bearer ${realRefresh}` }), 'a refresh token on /wechat/decrypt', secrets)
  await expectInvalidToken(t, await fetch(`${app.url}/logout`, { method: 'POST', headers: { authorization: `Bearer ${realRefresh}` } }), 'a refresh token on /logout', secrets)
  const introspectId = await app.postForm('/introspect', { token: idToken }, { authorization: SERVICE_BASIC })
  t.same(await introspectId.json(), { active: false }, 'an id token is not active at /introspect')
  const revokeId = await app.postForm('/revoke', { token: idToken })
  t.equal(revokeId.status, 200, 'revoking an id token: 200')
  for (const hint of ['access_token', 'refresh_token', 'id_token', 'nonsense', '']) {
    const access = await app.postForm('/introspect', { token: realAccess, token_type_hint: hint }, { authorization: SERVICE_BASIC })
    t.match(await access.json(), { active: true, token_type: 'Bearer' }, `a token_type_hint ${show(hint)} is only a hint`)
    const refresh = await app.postForm('/introspect', { token: realRefresh, token_type_hint: hint }, { authorization: SERVICE_BASIC })
    t.same(await refresh.json(), { active: false }, `a refresh token is never active to a service, hint ${show(hint)}`)
  }
  t.same(await tokenState(app), state, 'nothing was written or revoked')
  await stillActive(t, 'after tokens of the wrong kind')
})

t.test('a reused code, one after the other and two at once', async (t) => {
  const code = await app.wxLogin({ openid: 'o-reused-code' })
  secrets.add(code)
  const calls = app.simulator.calls.jscode2session
  const first = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code })
  t.equal(first.status, 200, 'the first use works')
  secrets.addTokens((await first.json()) as Record<string, unknown>)
  const state = await tokenState(app)
  for (const encode of ['form', 'json'] as const) {
    const again = encode === 'form' ? await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code }) : await app.postJson('/token', { grant_type: WECHAT_CODE_GRANT, code })
    await expectError(t, again, `${encode}: the code again`, { status: 400, error: 'invalid_grant' }, secrets)
  }
  t.equal(app.simulator.calls.jscode2session, calls + 1, 'WeChat saw the code once')
  t.same(await tokenState(app), state, 'the replays wrote nothing')

  for (const racers of [2, 5]) {
    const code = await app.wxLogin({ openid: `o-raced-code-${racers}` })
    secrets.add(code)
    const calls = app.simulator.calls.jscode2session
    const before = await tokenState(app)
    const answers = await Promise.all(Array.from({ length: racers }, () => app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code })))
    const winners = answers.filter((answer) => answer.status === 200)
    t.equal(winners.length, 1, `${racers} at once: exactly one wins`)
    for (const answer of answers) {
      if (answer.status === 200) secrets.addTokens((await answer.json()) as Record<string, unknown>)
      else await expectError(t, answer, `${racers} at once: a loser`, { status: 400, error: 'invalid_grant' }, secrets)
    }
    t.equal(app.simulator.calls.jscode2session, calls + 1, `${racers} at once: WeChat saw the code once`)
    const after = await tokenState(app)
    t.equal(after.sessions, (before.sessions as number) + 1, `${racers} at once: one login session`)
    t.equal(after.rotations, before.rotations, `${racers} at once: a new login, no rotation`)
  }
})

t.test('a refresh token replayed after rotation revokes the family', async (t) => {
  const login = await app.login({ openid: 'o-replay' })
  secrets.addTokens(login)
  const rotated = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: login.refresh_token as string })
  t.equal(rotated.status, 200, 'the first refresh works')
  const next = (await rotated.json()) as Record<string, string>
  secrets.addTokens(next)
  await expectError(t, await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: login.refresh_token as string }), 'the spent token replayed', { status: 400, error: 'invalid_grant' }, secrets)
  await expectError(t, await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: next.refresh_token as string }), 'the rotated token after the replay', { status: 400, error: 'invalid_grant' }, secrets)
  await expectInvalidToken(t, await fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${next.access_token as string}` } }), 'the newest access token after the replay', secrets)
  const introspect = await app.postForm('/introspect', { token: next.refresh_token as string }, { authorization: SERVICE_BASIC })
  t.same(await introspect.json(), { active: false }, 'the family is inactive at /introspect')
  const replayAgain = await app.postJson('/token', { grant_type: 'refresh_token', refresh_token: login.refresh_token })
  await expectError(t, replayAgain, 'a third replay', { status: 400, error: 'invalid_grant' }, secrets)
})

t.test('two (or five) refreshes of one token at once: exactly one wins', async (t) => {
  for (const racers of [2, 5]) {
    const login = await app.login({ openid: `o-race-${racers}` })
    secrets.addTokens(login)
    const before = await tokenState(app)
    const answers = await Promise.all(Array.from({ length: racers }, () => app.postForm('/token', { grant_type: 'refresh_token', refresh_token: login.refresh_token as string })))
    t.equal(answers.filter((answer) => answer.status === 200).length, 1, `${racers} at once: exactly one 200`)
    for (const answer of answers) {
      if (answer.status === 200) secrets.addTokens((await answer.json()) as Record<string, unknown>)
      else await expectError(t, answer, `${racers} at once: a loser`, { status: 400, error: 'invalid_grant' }, secrets)
    }
    const after = await tokenState(app)
    t.equal(after.rotations, (before.rotations as number) + 1, `${racers} at once: the login rotated exactly once`)
  }
})

t.test('revoked tokens and ended logins', async (t) => {
  const login = await app.login({ openid: 'o-revoked' })
  secrets.addTokens(login)
  t.equal((await app.postForm('/revoke', { token: login.access_token as string, token_type_hint: 'access_token' })).status, 200, 'revoke the access token')
  await expectInvalidToken(t, await fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${login.access_token as string}` } }), 'a revoked access token', secrets)
  const introspectAccess = await app.postForm('/introspect', { token: login.access_token as string }, { authorization: SERVICE_BASIC })
  t.same(await introspectAccess.json(), { active: false }, 'a revoked access token is inactive')
  t.equal((await app.postForm('/revoke', { token: login.access_token as string })).status, 200, 'revoking it again: 200')

  t.equal((await app.postForm('/revoke', { token: login.refresh_token as string })).status, 200, 'revoke the refresh token')
  await expectError(t, await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: login.refresh_token as string }), 'a revoked refresh token', { status: 400, error: 'invalid_grant' }, secrets)
  t.equal((await app.postForm('/revoke', { token: login.refresh_token as string })).status, 200, 'revoking it again: 200')

  const other = await app.login({ openid: 'o-logged-out' })
  secrets.addTokens(other)
  const logout = await fetch(`${app.url}/logout`, { method: 'POST', headers: { authorization: `Bearer ${other.access_token as string}` } })
  t.equal(logout.status, 204, 'logout')
  await expectInvalidToken(t, await fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${other.access_token as string}` } }), 'an access token after logout', secrets)
  await expectInvalidToken(t, await fetch(`${app.url}/logout`, { method: 'POST', headers: { authorization: `Bearer ${other.access_token as string}` } }), 'a second logout', secrets)
  await expectError(t, await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: other.refresh_token as string }), 'a refresh token after logout', { status: 400, error: 'invalid_grant' }, secrets)
})

t.test("another client's tokens (two mini-programs)", async (t) => {
  const two = await startApp(t, { ...TWO_APPS, MINIGATE_SERVICES: 'svc-two:svc-two-secret-0123456789' })
  const twoSecrets = new Secrets(two)
  const tokens = await two.login({ appid: APP_A, openid: 'o-two-apps' })
  twoSecrets.addTokens(tokens)
  const state = await tokenState(two)

  await expectError(t, await two.postForm('/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token as string, client_id: APP_B }), "A's refresh token presented by B", { status: 400, error: 'invalid_grant' }, twoSecrets)
  await expectError(t, await two.postForm('/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token as string }), 'no client_id with two apps', { status: 400, error: 'invalid_request' }, twoSecrets)
  await expectError(t, await two.postForm('/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token as string, client_id: 'wxcccccccccccccccc' }), 'an unknown client_id', { status: 401, error: 'invalid_client' }, twoSecrets)
  const revokeByB = await two.postForm('/revoke', { token: tokens.refresh_token as string, client_id: APP_B })
  await expectError(t, revokeByB, "B revoking A's refresh token", { status: 400, error: 'invalid_request' }, twoSecrets)
  const revokeAccessByB = await two.postForm('/revoke', { token: tokens.access_token as string, client_id: APP_B, token_type_hint: 'access_token' })
  await expectError(t, revokeAccessByB, "B revoking A's access token", { status: 400, error: 'invalid_request' }, twoSecrets)
  await expectError(t, await two.postForm('/revoke', { token: tokens.refresh_token as string }), 'revoke without client_id with two apps', { status: 400, error: 'invalid_request' }, twoSecrets)
  t.same(await tokenState(two), state, "B's attempts changed nothing")

  const introspect = await two.postForm('/introspect', { token: tokens.access_token as string }, { authorization: `Basic ${Buffer.from('svc-two:svc-two-secret-0123456789').toString('base64')}` })
  t.match(await introspect.json(), { active: true, client_id: APP_A }, "A's access token is still active, and A's")
  t.ok(await refreshTokenLive(two, tokens.refresh_token as string), "A's refresh token is still live")
  const devService = await two.postForm('/introspect', { token: tokens.access_token as string }, { authorization: SERVICE_BASIC })
  await expectError(t, devService, 'the dev service is unknown when services are configured', { status: 401, error: 'invalid_client' }, twoSecrets)
  const userinfo = await fetch(`${two.url}/userinfo`, { headers: { authorization: `Bearer ${tokens.access_token as string}` } })
  t.equal(userinfo.status, 200, "A's access token still works")
  const refreshed = await two.postForm('/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token as string, client_id: APP_A })
  t.equal(refreshed.status, 200, "A's refresh token still works for A")
  twoSecrets.addTokens((await refreshed.json()) as Record<string, unknown>)

  // A code of app A presented as app B: WeChat refuses it, no user is made.
  const code = await two.wxLogin({ appid: APP_A, openid: 'o-code-for-a' })
  twoSecrets.add(code)
  const before = await tokenState(two)
  await expectError(t, await two.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code, client_id: APP_B }), "A's code sent as B", { status: 400, error: 'invalid_grant' }, twoSecrets)
  t.same(await tokenState(two), before, "A's code as B wrote nothing")
  await expectStillServing(t, two, twoSecrets, { appid: APP_A })
  twoSecrets.checkLogs(t)
})

t.test('expired tokens (the clock moves: last)', async (t) => {
  const login = await app.login({ openid: 'o-expired' })
  secrets.addTokens(login)
  app.clock.advance(app.config.accessTtl + 1)
  await expectInvalidToken(t, await fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${login.access_token as string}` } }), 'an expired access token', secrets)
  const introspect = await app.postForm('/introspect', { token: login.access_token as string }, { authorization: SERVICE_BASIC })
  t.same(await introspect.json(), { active: false }, 'an expired access token is inactive')
  t.equal((await app.postForm('/revoke', { token: login.access_token as string })).status, 200, 'revoking an expired access token: 200')
  await expectInvalidToken(t, await app.postJson('/wechat/decrypt', { encrypted_data: 'AAAA', iv: 'AAAAAAAAAAAAAAAAAAAAAA==' }, { authorization: `Bearer ${login.access_token as string}` }), 'an expired token on /wechat/decrypt', secrets)

  app.clock.advance(app.config.refreshTtl)
  await expectError(t, await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: login.refresh_token as string }), 'an expired refresh token', { status: 400, error: 'invalid_grant' }, secrets)
  const introspectRefresh = await app.postForm('/introspect', { token: login.refresh_token as string }, { authorization: SERVICE_BASIC })
  t.same(await introspectRefresh.json(), { active: false }, 'an expired refresh token is inactive')
})

t.test('after the battery', async (t) => {
  await expectStillServing(t, app, secrets)
  await expectIntegrity(t, app)
  t.same(app.logs.filter((line) => secrets.foundIn(line) !== undefined), [], 'no secret in any log line of the whole run')
  secrets.checkLogs(t, logsCheckedFrom)
  t.equal(jwksHits, 0, 'no jku/x5u URL was ever fetched')
})
