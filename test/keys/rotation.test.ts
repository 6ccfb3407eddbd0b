import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  decodeJwt,
  decodeProtectedHeader,
  jwtVerify,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
} from 'jose'
import t, { type Test } from 'tap'
import { run } from '../../src/cli/main.js'
import { KEY_RELOAD_SECONDS, keyTiming } from '../../src/keys/key-ring.js'
import { startTestApp, type TestApp } from '../helpers/app.js'

/**
 * Short token lifetimes so that a whole rotation, down to the old key leaving the JWKS, fits in about
 * forty minutes of test-clock time. Rate limits off: the loop logs the same few users in every step.
 */
const ENV = { MINIGATE_ACCESS_TTL: '300', MINIGATE_REFRESH_TTL: '1200', MINIGATE_RATE_LIMITS: 'off' }
const STEP = 30

type Body = Record<string, any>

async function cli(app: TestApp, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const code = await run(argv, {
    env: { MINIGATE_DB: app.config.dbFile, MINIGATE_KEYS_DIR: app.config.keysDir, MINIGATE_ACCESS_TTL: ENV.MINIGATE_ACCESS_TTL, MINIGATE_REFRESH_TTL: ENV.MINIGATE_REFRESH_TTL },
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
    clock: app.clock,
  })
  return { code, stdout, stderr }
}

function maxAgeOf(response: Response): number {
  const match = /^public, max-age=(\d+)$/.exec(response.headers.get('cache-control') ?? '')
  if (!match) throw new Error(`JWKS Cache-Control is ${response.headers.get('cache-control')}`)
  return Number(match[1])
}

const seconds = (app: TestApp) => Math.floor(app.clock.now() / 1000)
const kidOf = (token: string) => decodeProtectedHeader(token).kid as string

/** A business service's key resolver, counting its JWKS downloads. */
interface Verifier {
  name: string
  getKey: JWTVerifyGetKey
  fetches: () => number
  /** Downloads the JWKS now, as the resolver would when its cache expires. */
  refetch: () => Promise<void>
}

/** jose's own remote JWKS, caching for `cacheMaxAge` and refetching on an unknown kid after `cooldownDuration`. */
function joseVerifier(name: string, url: URL, cacheMaxAge: number, cooldownDuration: number): Verifier {
  let fetches = 0
  const jwks = createRemoteJWKSet(url, {
    cacheMaxAge,
    cooldownDuration,
    [customFetch]: (href, options) => {
      fetches += 1
      return fetch(href, options)
    },
  })
  return { name, getKey: jwks, fetches: () => fetches, refetch: () => jwks.reload() }
}

/**
 * The strictest verifier the headers allow: it caches each JWKS response for exactly its own max-age
 * and never refetches early on an unknown kid. If a key signed before every such cache could hold it,
 * this verifier rejects the token.
 */
function headerVerifier(url: URL): Verifier {
  let fetches = 0
  let cache: { until: number; getKey: ReturnType<typeof createLocalJWKSet> } | undefined
  async function refetch(): Promise<void> {
    fetches += 1
    const response = await fetch(url)
    const maxAge = maxAgeOf(response)
    cache = { until: Date.now() + maxAge * 1000, getKey: createLocalJWKSet((await response.json()) as JSONWebKeySet) }
  }
  return {
    name: 'a verifier caching each JWKS for its max-age, never refetching on an unknown kid',
    async getKey(header, token) {
      if (!cache || Date.now() >= cache.until) await refetch()
      return (cache as NonNullable<typeof cache>).getKey(header, token)
    },
    fetches: () => fetches,
    refetch,
  }
}

interface Pooled {
  kind: 'access' | 'id'
  token: string
  kid: string
  mintedAt: number
  exp: number
}

t.test('a full rotation with `minigate keys rotate` while services keep verifying: no token is ever rejected', async (t: Test) => {
  const app = await startTestApp(t, ENV)
  const realNow = Date.now
  // jose's JWKS cache measures its age with Date.now(): make it follow the test clock.
  Date.now = () => app.clock.now()
  t.teardown(() => {
    Date.now = realNow
  })
  const timing = keyTiming(app.config)
  const appid = app.config.apps[0]?.appid as string
  t.equal(app.config.audience, 'minigate-api')
  const jwksUrl = new URL(`${app.url}/.well-known/jwks.json`)

  const T0 = seconds(app)
  const oldKid = app.deps.keys.active().kid
  const firstJwks = await fetch(jwksUrl)
  const firstMaxAge = maxAgeOf(firstJwks)
  t.equal(firstMaxAge, app.config.jwksMaxAge, 'with nothing scheduled, the JWKS may be cached for the configured time')
  t.same(((await firstJwks.json()) as JSONWebKeySet).keys.map((key) => key.kid), [oldKid])

  const verifiers = [
    joseVerifier('jose createRemoteJWKSet (cooldown 30 s)', jwksUrl, firstMaxAge * 1000, 30_000),
    joseVerifier('jose createRemoteJWKSet never refetching on an unknown kid', jwksUrl, firstMaxAge * 1000, Number.POSITIVE_INFINITY),
    headerVerifier(jwksUrl),
  ]
  const options = (kind: Pooled['kind']): JWTVerifyOptions =>
    kind === 'access'
      ? { issuer: app.url, audience: 'minigate-api', algorithms: ['RS256'], typ: 'at+jwt', currentDate: new Date(app.clock.now()) }
      : { issuer: app.url, audience: appid, algorithms: ['RS256'], typ: 'JWT', currentDate: new Date(app.clock.now()) }

  const failures: string[] = []
  let pool: Pooled[] = []
  const label = (kid: string) => (kid === oldKid ? 'the old key' : kid === newKid ? 'the new key' : kid)
  const at = (second: number) => `+${second - T0}s`

  // Refresh tokens issued before the rotation, kept for use after it.
  const early = await app.login({ openid: 'oHeldEarly' })
  const late = await app.login({ openid: 'oHeldLate' })
  const lateRefreshExp = decodeJwt(late.refresh_token).exp as number
  const heldResults: Array<{ which: string; at: number; status: number; kid?: string; signedBy: string }> = []
  let chain = (await app.login({ openid: 'oChain' })).refresh_token as string

  const rotateAt = T0 + 4 * STEP
  let rotated = false
  let newKid = ''
  let activatesAt = Number.POSITIVE_INFINITY
  let goneAt = Number.POSITIVE_INFINITY
  const checkpoints = new Set<number>([rotateAt, lateRefreshExp - 10])
  const freshKids: Array<{ at: number; kid: string }> = []
  let stepsWithBoth = 0
  let oldVerifiedAfterActivation = 0
  let lastOld: Pooled[] = []
  const lastOldOutcome = new Map<Pooled, { verifiedUntil: number; rejectedAt?: number; code?: string }>()

  let step = 0
  while (seconds(app) < (rotated ? goneAt + 2 * STEP : Number.POSITIVE_INFINITY)) {
    step += 1
    const before = seconds(app)
    const upcoming = [...checkpoints].filter((second) => second > before)
    app.clock.advance(Math.min(STEP, ...upcoming.map((second) => second - before)))
    const now = seconds(app)
    await app.deps.keys.reload() // what the server's 5-second timer does

    if (now === rotateAt) {
      const rotation = await cli(app, ['keys', 'rotate', '--json'])
      t.equal(rotation.code, 0, 'keys rotate succeeds')
      const result = JSON.parse(rotation.stdout) as { added: { kid: string; state: string }; activatesAt: number; retiring: string[] }
      newKid = result.added.kid
      activatesAt = result.activatesAt
      goneAt = activatesAt + timing.dropDelay
      rotated = true
      t.equal(result.added.state, 'next', 'the new key starts as next')
      t.equal(activatesAt, now + timing.publishDelay, 'activation is scheduled after the JWKS cache time, reload time and clock skew')
      t.ok(timing.publishDelay > app.config.jwksMaxAge)
      t.same(result.retiring, [oldKid], 'the old key is scheduled to retire')
      for (const second of [activatesAt - 1, activatesAt, activatesAt + STEP + 1, goneAt - 1, goneAt]) checkpoints.add(second)

      // The worst case: every verifier refreshes its cache just before the server notices the rotation.
      app.clock.advance(KEY_RELOAD_SECONDS - 1)
      for (const verifier of verifiers) await verifier.refetch()
      const stale = (await (await fetch(jwksUrl)).json()) as JSONWebKeySet
      t.same(stale.keys.map((key) => key.kid), [oldKid], 'until the server reloads, the JWKS has only the old key')
      app.clock.advance(1)
      await app.deps.keys.reload()
      t.ok(seconds(app) - now <= KEY_RELOAD_SECONDS, 'the server picked the rotation up within its reload interval')
      continue
    }

    // The JWKS: which keys, and for how long it may be cached.
    const response = await fetch(jwksUrl)
    const maxAge = maxAgeOf(response)
    const kids = ((await response.json()) as JSONWebKeySet).keys.map((key) => key.kid as string)
    const expectedKids = !rotated ? [oldKid] : now < goneAt ? [oldKid, newKid] : [newKid]
    if (JSON.stringify([...kids].sort()) !== JSON.stringify([...expectedKids].sort())) failures.push(`at ${at(now)} the JWKS holds ${kids.map(label).join(', ')}`)
    if (kids.includes(oldKid) && kids.includes(newKid)) stepsWithBoth += 1
    const nextChange = Math.min(...[activatesAt, goneAt].filter((second) => second > now))
    if (maxAge > app.config.jwksMaxAge) failures.push(`at ${at(now)} max-age ${maxAge} exceeds the configured ${app.config.jwksMaxAge}`)
    if (Number.isFinite(nextChange) && maxAge > nextChange - now) failures.push(`at ${at(now)} max-age ${maxAge} outlasts the key change in ${nextChange - now} s`)
    if (rotated && now < activatesAt && maxAge > activatesAt - now) failures.push(`at ${at(now)} max-age ${maxAge} > activatesAt - now (${activatesAt - now})`)

    // Fresh tokens: a login (with an id_token) and a refresh of a long-running login.
    const signer = rotated && now >= activatesAt ? newKid : oldKid
    const login = await app.login({ openid: `oRotation${step % 4}`, scope: 'openid profile' })
    const refreshed = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: chain })
    const refreshedBody = (await refreshed.json()) as Body
    if (refreshed.status !== 200) {
      failures.push(`at ${at(now)} the refresh of a live login failed: ${JSON.stringify(refreshedBody)}`)
    } else {
      chain = refreshedBody.refresh_token
      if (kidOf(refreshedBody.refresh_token) !== signer) failures.push(`at ${at(now)} a refresh token was signed by ${label(kidOf(refreshedBody.refresh_token))}`)
    }
    const minted: Pooled[] = [
      { kind: 'access', token: login.access_token, kid: kidOf(login.access_token), mintedAt: now, exp: decodeJwt(login.access_token).exp as number },
      { kind: 'id', token: login.id_token, kid: kidOf(login.id_token), mintedAt: now, exp: decodeJwt(login.id_token).exp as number },
    ]
    if (refreshed.status === 200) {
      minted.push({ kind: 'access', token: refreshedBody.access_token, kid: kidOf(refreshedBody.access_token), mintedAt: now, exp: decodeJwt(refreshedBody.access_token).exp as number })
    }
    for (const entry of minted) {
      freshKids.push({ at: now, kid: entry.kid })
      if (entry.kid !== signer) failures.push(`at ${at(now)} a fresh ${entry.kind} token was signed by ${label(entry.kid)}, expected ${label(signer)}`)
    }
    if (now === activatesAt - 1) {
      // The last tokens the old key signs: follow them to their expiry.
      lastOld = minted.filter((entry) => entry.kid === oldKid)
      for (const entry of lastOld) {
        checkpoints.add(entry.exp - 1).add(entry.exp)
        lastOldOutcome.set(entry, { verifiedUntil: 0 })
      }
    }
    pool.push(...minted)

    // Refresh tokens from before the rotation, used after it.
    if (rotated && now >= activatesAt && !heldResults.some((held) => held.which === 'early')) {
      const response = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: early.refresh_token })
      const body = (await response.json()) as Body
      heldResults.push({ which: 'early', at: now, status: response.status, kid: body.access_token && kidOf(body.access_token), signedBy: kidOf(early.refresh_token) })
    }
    if (now === lateRefreshExp - 10) {
      const response = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: late.refresh_token })
      const body = (await response.json()) as Body
      heldResults.push({ which: 'late', at: now, status: response.status, kid: body.access_token && kidOf(body.access_token), signedBy: kidOf(late.refresh_token) })
    }

    // Every unexpired token, fresh or old, must verify with every verifier.
    const expired: Pooled[] = []
    for (const entry of pool) {
      if (entry.exp <= now) {
        expired.push(entry)
        continue
      }
      for (const verifier of verifiers) {
        try {
          const { protectedHeader } = await jwtVerify(entry.token, verifier.getKey, options(entry.kind))
          if (protectedHeader.kid === oldKid && rotated && now >= activatesAt) oldVerifiedAfterActivation += 1
          const outcome = lastOldOutcome.get(entry)
          if (outcome) outcome.verifiedUntil = now
        } catch (error) {
          failures.push(
            `at ${at(now)} ${verifier.name} rejected a ${entry.kind} token of ${label(entry.kid)} minted at ${at(entry.mintedAt)}, ${entry.exp - now} s before its exp: ${(error as { code?: string }).code ?? (error as Error).message}`,
          )
        }
      }
    }
    for (const entry of expired) {
      const outcome = lastOldOutcome.get(entry)
      if (outcome && outcome.rejectedAt === undefined) {
        try {
          await jwtVerify(entry.token, verifiers[2]?.getKey as JWTVerifyGetKey, options(entry.kind))
          outcome.code = 'accepted'
        } catch (error) {
          outcome.code = (error as { code?: string }).code ?? (error as Error).message
        }
        outcome.rejectedAt = now
      }
    }
    pool = pool.filter((entry) => entry.exp > now)
  }

  t.same(failures, [], 'no verifier rejected an unexpired token, the JWKS always held the right keys and max-age never outlasted a key change')
  t.ok(newKid !== '' && newKid !== oldKid, 'a new key was added')

  // The switch of signing key, to the second.
  const kidsAt = (second: number) => [...new Set(freshKids.filter((fresh) => fresh.at === second).map((fresh) => fresh.kid))]
  t.same(kidsAt(activatesAt - 1), [oldKid], 'one second before activation, fresh tokens are signed by the old key')
  t.same(kidsAt(activatesAt), [newKid], 'from activation on, fresh tokens are signed by the new key')
  t.notOk(freshKids.some((fresh) => fresh.at < activatesAt && fresh.kid !== oldKid), 'the new key never signed before its activation')
  t.notOk(freshKids.some((fresh) => fresh.at >= activatesAt && fresh.kid !== newKid), 'the old key never signed after it')

  // The old key's tokens keep verifying after it retired, until they expire.
  t.ok(oldVerifiedAfterActivation > 0, `tokens of the retired key were verified after activation (${oldVerifiedAfterActivation} times)`)
  t.same(
    lastOld.map((entry) => entry.kind),
    ['access', 'id', 'access'],
    'one second before activation, the old key signed a login (access and id token) and a refresh',
  )
  for (const entry of lastOld) {
    const outcome = lastOldOutcome.get(entry)
    t.equal(outcome?.verifiedUntil, entry.exp - 1, `the old key's last ${entry.kind} token verifies until the second before its exp`)
    t.equal(outcome?.rejectedAt, entry.exp, `and is rejected from its exp on`)
    t.equal(outcome?.code, 'ERR_JWT_EXPIRED', 'because it expired, not because its key was gone')
  }
  t.ok(stepsWithBoth > 10, `the JWKS held both keys throughout the overlap (${stepsWithBoth} steps)`)

  // Refresh tokens issued before the rotation.
  t.same(
    heldResults.map(({ which, status, kid, signedBy }) => ({ which, status, kid, signedBy })),
    [
      { which: 'early', status: 200, kid: newKid, signedBy: oldKid },
      { which: 'late', status: 200, kid: newKid, signedBy: oldKid },
    ],
    'refresh tokens signed by the old key refresh after the rotation, into tokens of the new key',
  )
  t.ok((heldResults[1]?.at ?? 0) > activatesAt + app.config.accessTtl, 'even long after the old key stopped signing')

  // Every verifier really went back to the server during the test.
  for (const verifier of verifiers) t.ok(verifier.fetches() >= 3, `${verifier.name} downloaded the JWKS ${verifier.fetches()} times`)

  // After the drop time the old key is gone: from the ring, the JWKS and the CLI's list.
  t.ok(seconds(app) > goneAt)
  t.equal(app.deps.keys.get(oldKid), undefined, 'the running server no longer knows the old key')
  t.equal(app.deps.keys.active().kid, newKid)
  const list = await cli(app, ['keys', 'list', '--json'])
  t.equal(list.code, 0)
  const states = Object.fromEntries((JSON.parse(list.stdout) as Array<{ kid: string; state: string }>).map((key) => [key.kid, key.state]))
  t.same(states, { [oldKid]: 'gone', [newKid]: 'active' })
})

t.test('the JWKS max-age never outlasts the next scheduled key change', async (t) => {
  const app = await startTestApp(t, ENV)
  const timing = keyTiming(app.config)
  const jwksMaxAge = async () => maxAgeOf(await fetch(`${app.url}/.well-known/jwks.json`))
  t.equal(await jwksMaxAge(), app.config.jwksMaxAge)

  app.clock.advance(1) // a key file is named after the millisecond it was made in
  const rotation = await cli(app, ['keys', 'rotate', '--json'])
  t.equal(rotation.code, 0)
  const { activatesAt } = JSON.parse(rotation.stdout) as { activatesAt: number }
  await app.deps.keys.reload()
  t.ok((await jwksMaxAge()) <= activatesAt - seconds(app), 'right after rotate: max-age <= activatesAt - now')
  t.equal(await jwksMaxAge(), app.config.jwksMaxAge, 'which is the configured time while activation is further away')

  app.clock.advance(activatesAt - seconds(app) - 10)
  t.equal(await jwksMaxAge(), 10, '10 s before activation, the JWKS may be cached for 10 s')
  app.clock.advance(9)
  t.equal(await jwksMaxAge(), 1)
  app.clock.advance(1)
  t.equal(await jwksMaxAge(), app.config.jwksMaxAge, 'after activation, the next change (the old key going) is far away')

  const goneAt = activatesAt + timing.dropDelay
  app.clock.advance(goneAt - seconds(app) - 7)
  t.equal(await jwksMaxAge(), 7, 'shortly before the old key leaves the JWKS, max-age counts down to it')
  app.clock.advance(7)
  t.equal(await jwksMaxAge(), app.config.jwksMaxAge, 'with nothing scheduled, back to the configured time')
  const jwks = (await (await fetch(`${app.url}/.well-known/jwks.json`)).json()) as JSONWebKeySet
  t.equal(jwks.keys.length, 1, 'only the new key is left')
})
