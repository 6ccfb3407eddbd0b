import { createPublicKey } from 'node:crypto'
import { importJWK, jwtVerify } from 'jose'
import t, { type Test } from 'tap'
import { rotateKeys } from '../../src/keys/rotation.js'
import { keyAdminOf, startTestApp, type TestApp } from '../helpers/app.js'

function start(t: Test): Promise<TestApp> {
  return startTestApp(t)
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']

t.test('the JWKS publishes the public signing key and nothing else', async (t) => {
  const app = await start(t)
  const response = await fetch(`${app.url}/.well-known/jwks.json`)
  t.equal(response.status, 200)
  t.match(response.headers.get('content-type'), /^application\/jwk-set\+json/)
  t.equal(response.headers.get('cache-control'), `public, max-age=${app.config.jwksMaxAge}`, 'one key, no change scheduled: the full max-age')
  t.ok(app.config.jwksMaxAge > 0)

  const text = await response.text()
  const jwks = JSON.parse(text) as { keys: Array<Record<string, unknown>> }
  t.same(Object.keys(jwks), ['keys'])
  t.equal(jwks.keys.length, 1)
  const key = jwks.keys[0] as Record<string, unknown>
  t.same(Object.keys(key).sort(), ['alg', 'e', 'kid', 'kty', 'n', 'use'], 'exactly kty, kid, use, alg, n, e')
  t.equal(key.kty, 'RSA')
  t.equal(key.use, 'sig')
  t.equal(key.alg, 'RS256')
  t.equal(key.kid, app.deps.keys.active().kid)
  t.equal(key.e, 'AQAB')
  t.equal(Buffer.from(key.n as string, 'base64url').length, 256, 'a 2048-bit modulus')
  for (const member of PRIVATE_MEMBERS) t.notOk(member in key, `no private member "${member}"`)
  t.notMatch(text, /PRIVATE KEY/)

  // What a business service does: verify an access token offline with nothing but this JWKS.
  const tokens = await app.login()
  const { payload, protectedHeader } = await jwtVerify(tokens.access_token, await importJWK(key as never, 'RS256'), {
    issuer: app.url,
    audience: app.config.audience,
    typ: 'at+jwt',
    currentDate: new Date(app.clock.now()),
  })
  t.equal(protectedHeader.kid, key.kid)
  t.equal(payload.client_id, app.config.apps[0]?.appid)
  t.same(createPublicKey({ key: key as never, format: 'jwk' }).export({ format: 'jwk' }), app.deps.keys.active().publicKey.export({ format: 'jwk' }))
})

t.test('the JWKS can be fetched without credentials and ignores a query', async (t) => {
  const app = await start(t)
  const plain = await (await fetch(`${app.url}/.well-known/jwks.json`)).json()
  const queried = await fetch(`${app.url}/.well-known/jwks.json?kid=../../etc/passwd`)
  t.equal(queried.status, 200)
  t.same(await queried.json(), plain)
  const head = await fetch(`${app.url}/.well-known/jwks.json`, { method: 'HEAD' })
  t.equal(head.status, 200)
  const post = await fetch(`${app.url}/.well-known/jwks.json`, { method: 'POST' })
  t.equal(post.status, 405, 'POST is not allowed')
  t.match(post.headers.get('allow'), /GET/)
})

t.test('during a rotation both keys are published and no cache outlives the switch', async (t) => {
  const app = await start(t)
  const before = app.deps.keys.active().kid
  const { added, activatesAt } = await rotateKeys(keyAdminOf(app))
  await app.deps.keys.reload()

  const jwksNow = async () => {
    const response = await fetch(`${app.url}/.well-known/jwks.json`)
    const maxAge = Number(/^public, max-age=(\d+)$/.exec(response.headers.get('cache-control') ?? '')?.[1])
    return { kids: ((await response.json()) as { keys: Array<{ kid: string }> }).keys.map((key) => key.kid).sort(), maxAge }
  }
  const published = await jwksNow()
  t.same(published.kids, [before, added.kid].sort(), 'the new key is published before it signs')
  t.equal(app.deps.keys.active().kid, before, 'the old key still signs')

  const now = Math.floor(app.clock.now() / 1000)
  app.clock.advance(activatesAt - now - 10)
  const close = await jwksNow()
  t.ok(close.maxAge <= 10, `max-age ${close.maxAge} ends by the switch`)

  app.clock.advance(10)
  t.equal(app.deps.keys.active().kid, added.kid, 'the new key signs after the publish delay')
  const after = await jwksNow()
  t.same(after.kids, [before, added.kid].sort(), 'the retired key stays published for the tokens it signed')
  const tokens = await app.login()
  t.equal(JSON.parse(Buffer.from(tokens.access_token.split('.')[0], 'base64url').toString()).kid, added.kid)
})
