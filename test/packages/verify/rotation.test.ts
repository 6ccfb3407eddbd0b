import { createVerifier, InvalidToken } from '@minigate/verify'
import { decodeProtectedHeader } from 'jose'
import t, { type Test } from 'tap'
import type { TestApp } from '../../helpers/app.js'
import { cli } from '../../helpers/cli.js'
import { requestsTo, startKitApp } from '../../helpers/kit.js'

const kidOf = (token: string) => decodeProtectedHeader(token).kid as string
const jwksFetches = (app: TestApp) => requestsTo(app, '/.well-known/jwks.json')

/** jose's JWKS cache and cooldown measure time with Date.now(): make it follow the app's test clock. */
function followTestClock(t: Test, app: TestApp): void {
  const realNow = Date.now
  Date.now = () => app.clock.now()
  t.teardown(() => {
    Date.now = realNow
  })
}

t.test('a scheduled rotation (keys rotate) with a warm, long-lived JWKS cache: one refetch, no token refused', async (t) => {
  const app = await startKitApp(t)
  followTestClock(t, app)
  // A service that caches the JWKS for an hour: the new key is unknown to its cache when it starts signing.
  const verifier = createVerifier({ issuer: app.url, audience: 'minigate-api', jwks: { cacheMaxAge: 3_600_000 } })
  const oldKid = app.deps.keys.active().kid
  const before = await app.login({ openid: 'oRotationBefore' })
  await verifier.verify(before.access_token)
  t.equal(jwksFetches(app), 1, 'the cache is warm')

  const rotation = await cli(app, 'keys', 'rotate', '--json')
  t.equal(rotation.code, 0)
  const { added, activatesAt } = JSON.parse(rotation.stdout) as { added: { kid: string }; activatesAt: number }
  await app.deps.keys.reload()
  app.clock.advance(activatesAt - Math.floor(app.clock.now() / 1000))
  await app.deps.keys.reload()

  const after = await app.login({ openid: 'oRotationAfter' })
  t.equal(kidOf(after.access_token), added.kid, 'the new key signs')
  t.not(added.kid, oldKid)
  const claims = await verifier.verify(after.access_token)
  t.equal(claims.jti, JSON.parse(Buffer.from(after.access_token.split('.')[1], 'base64url').toString()).jti, 'the new key’s token verifies')
  t.equal(jwksFetches(app), 2, 'its unknown kid refetched the JWKS once')
  t.ok(await verifier.verify(before.access_token), 'the retired key’s token still verifies')
  for (let i = 0; i < 3; i += 1) await verifier.verify((await app.login({ openid: `oRotationMore${i}` })).access_token)
  t.equal(jwksFetches(app), 2, 'later tokens of the new key use the refreshed cache')
})

t.test('keys activate --force with a warm cache: refetched once the cooldown allows, never refused after', async (t) => {
  const app = await startKitApp(t)
  followTestClock(t, app)
  const verifier = createVerifier({ issuer: app.url, audience: 'minigate-api' })
  const before = await app.login({ openid: 'oForceBefore' })
  await verifier.verify(before.access_token)
  t.equal(jwksFetches(app), 1, 'the cache is warm')

  const added = await cli(app, 'keys', 'add', '--json')
  t.equal(added.code, 0)
  const { kid } = JSON.parse(added.stdout) as { kid: string }
  t.equal((await cli(app, 'keys', 'activate', kid, '--force')).code, 0)
  await app.deps.keys.reload()
  const after = await app.login({ openid: 'oForceAfter' })
  t.equal(kidOf(after.access_token), kid, 'the new key signs at once')

  // Within the cooldown (30 s) of the last fetch an unknown kid does not refetch: the documented
  // price of activating a key before verifiers could see it published.
  app.clock.advance(10)
  await t.rejects(verifier.verify(after.access_token), InvalidToken, 'refused 10 s after the warm fetch')
  t.equal(jwksFetches(app), 1, 'without a refetch')

  app.clock.advance(20)
  t.ok(await verifier.verify(after.access_token), '30 s after the last fetch, the unknown kid refetches and verifies')
  t.equal(jwksFetches(app), 2, 'one refetch')
  t.ok(await verifier.verify(before.access_token), 'the retired key’s token still verifies')
  t.ok(await verifier.verify((await app.login({ openid: 'oForceLater' })).access_token))
  t.equal(jwksFetches(app), 2)
})
