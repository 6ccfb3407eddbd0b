import { decodeJwt } from 'jose'
import t, { type Test } from 'tap'
import { purgeExpired, startMaintenance } from '../src/maintenance.js'
import { startTestApp, type TestApp } from './helpers/app.js'
import { testDialect } from './helpers/database.js'

/** Short lifetimes so an hour of the test clock covers a refresh token's life. */
const SHORT = { MINIGATE_ACCESS_TTL: '60', MINIGATE_REFRESH_TTL: '3600' }

type Body = Record<string, any>

async function refresh(t: Test, app: TestApp, refreshToken: string): Promise<Body> {
  const response = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: refreshToken })
  const body = (await response.json()) as Body
  t.equal(response.status, 200, response.status === 200 ? 'refresh works' : `refresh works (${JSON.stringify(body)})`)
  return body
}

function userinfo(app: TestApp, accessToken: string): Promise<Response> {
  return fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${accessToken}` } })
}

const sidOf = (token: string) => decodeJwt(token).sid as string
const jtiOf = (token: string) => decodeJwt(token).jti as string

async function sessionIds(app: TestApp): Promise<string[]> {
  return (await app.deps.db.selectFrom('login_sessions').select('id').execute()).map((row) => row.id).sort()
}

t.test('a purge on a fresh database deletes nothing', async (t) => {
  const app = await startTestApp(t)
  t.same(await purgeExpired(app.deps), { sessions: 0, revocations: 0, codes: 0, audit: 0, events: 0 })
  const login = await app.login({ openid: 'oPurgeNothing' })
  t.same(await purgeExpired(app.deps), { sessions: 0, revocations: 0, codes: 0, audit: 0, events: 0 }, 'a fresh login is kept, and its code until it expires')
  t.equal((await userinfo(app, login.access_token)).status, 200)
})

t.test('spent WeChat codes are remembered until they expire, then purged', async (t) => {
  const app = await startTestApp(t, SHORT)
  await app.login({ openid: 'oPurgeCode' })
  app.clock.advance(299)
  t.equal((await purgeExpired(app.deps)).codes, 0, 'a code stays spent for its 5-minute life')
  app.clock.advance(2)
  // On SQLite one process serves every request and keeps them in memory; on PostgreSQL they are shared rows.
  t.equal((await purgeExpired(app.deps)).codes, testDialect === 'postgres' ? 1 : 0)
})

t.test('a login in use is kept however many refreshes it made', async (t) => {
  const app = await startTestApp(t, SHORT)
  const login = await app.login({ openid: 'oPurgeTokens' })
  let current: Body = login
  for (let i = 0; i < 3; i++) {
    app.clock.advance(3000)
    current = await refresh(t, app, current.refresh_token)
  }
  t.match(await purgeExpired(app.deps), { sessions: 0, revocations: 0 })
  t.same(await sessionIds(app), [sidOf(login.access_token)])
  const after = await refresh(t, app, current.refresh_token)
  t.equal((await userinfo(app, after.access_token)).status, 200, 'the live login works after the purge')
})

t.test('logins idle longer than the refresh TTL are deleted', async (t) => {
  const app = await startTestApp(t, SHORT)
  const idle = await app.login({ openid: 'oPurgeIdle' })
  const live = await app.login({ openid: 'oPurgeLive' })
  app.clock.advance(3000)
  const liveNext = await refresh(t, app, live.refresh_token)
  app.clock.advance(601)
  const purged = await purgeExpired(app.deps)
  t.equal(purged.sessions, 1, 'the idle login is deleted')
  t.same(await sessionIds(app), [sidOf(live.access_token)])

  const refused = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: idle.refresh_token })
  t.equal(refused.status, 400)
  await refresh(t, app, liveNext.refresh_token)
})

t.test('logins past their absolute end are deleted even when recently used', async (t) => {
  const app = await startTestApp(t, { ...SHORT, MINIGATE_SESSION_MAX_AGE: '7200' })
  const login = await app.login({ openid: 'oPurgeAged' })
  const sid = sidOf(login.access_token)
  let current: Body = login
  for (let i = 0; i < 2; i++) {
    app.clock.advance(3000)
    current = await refresh(t, app, current.refresh_token)
  }
  app.clock.advance(1199) // 7199 s old: used 1199 s ago, one second before its end
  t.equal((await purgeExpired(app.deps)).sessions, 0)
  t.same(await sessionIds(app), [sid])
  app.clock.advance(2) // 7201 s old, used 1201 s ago: not idle, but past the end
  const purged = await purgeExpired(app.deps)
  t.equal(purged.sessions, 1)
  t.same(await sessionIds(app), [])
})

t.test('revoked logins are deleted once every token they issued has expired', async (t) => {
  const app = await startTestApp(t, SHORT)
  const ended = await app.login({ openid: 'oPurgeRevoked' })
  const live = await app.login({ openid: 'oPurgeKept' })
  const logout = await fetch(`${app.url}/logout`, { method: 'POST', headers: { authorization: `Bearer ${ended.access_token}` } })
  t.equal(logout.status, 204)

  t.equal((await purgeExpired(app.deps)).sessions, 0, 'kept while its refresh tokens may still be presented')
  t.same(await sessionIds(app), [sidOf(ended.access_token), sidOf(live.access_token)].sort())
  const replay = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: ended.refresh_token })
  t.equal(replay.status, 400)

  app.clock.advance(3000)
  const kept = await refresh(t, app, live.refresh_token)
  app.clock.advance(601) // the revoked login ended 3601 s ago: every token it issued has expired
  const purged = await purgeExpired(app.deps)
  t.equal(purged.sessions, 1)
  t.same(await sessionIds(app), [sidOf(live.access_token)], 'a live login without that condition stays')
  t.equal((await userinfo(app, ended.access_token)).status, 401, 'its access token stays refused')
  await refresh(t, app, kept.refresh_token)
})

t.test('access-token revocations are deleted once the token has expired', async (t) => {
  const app = await startTestApp(t, SHORT)
  const first = await app.login({ openid: 'oPurgeRevocation1' })
  t.equal((await app.postForm('/revoke', { token: first.access_token })).status, 200)
  app.clock.advance(30)
  const second = await app.login({ openid: 'oPurgeRevocation2' })
  t.equal((await app.postForm('/revoke', { token: second.access_token })).status, 200)
  app.clock.advance(31) // the first access token (exp +60) has expired, the second (exp +90) has not
  const purged = await purgeExpired(app.deps)
  t.equal(purged.revocations, 1)
  const rows = await app.deps.db.selectFrom('revoked_access_tokens').select('jti').execute()
  t.same(rows.map((row) => row.jti), [jtiOf(second.access_token)])
  t.equal((await userinfo(app, second.access_token)).status, 401, 'the unexpired revoked token stays refused')
  t.equal((await userinfo(app, first.access_token)).status, 401, 'the expired one is refused for being expired')
})

t.test('a grace-window replay keeps its login alive through a purge', async (t) => {
  const app = await startTestApp(t, { ...SHORT, MINIGATE_REFRESH_GRACE_SECONDS: '30' })
  const a = await app.login({ openid: 'oPurgeGrace' })
  await refresh(t, app, a.refresh_token)
  app.clock.advance(20)
  const replayed = await refresh(t, app, a.refresh_token)
  const exp = decodeJwt(replayed.refresh_token).exp as number
  app.clock.advance(3585) // 3605 s after the last rotation, 15 s before the replayed token expires
  t.ok(Math.floor(app.clock.now() / 1000) < exp, 'the replayed refresh token has not expired')
  await purgeExpired(app.deps)
  const response = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: replayed.refresh_token })
  t.equal(response.status, 200, 'an unexpired refresh token still works after a purge')
})

t.test('startMaintenance purges on its interval and returns a stop function', async (t) => {
  const app = await startTestApp(t, SHORT)
  const login = await app.login({ openid: 'oMaintenance' })
  await refresh(t, app, login.refresh_token)
  app.clock.advance(3601)

  // Capture the timer instead of waiting ten minutes for it.
  const realSetInterval = globalThis.setInterval
  const realClearInterval = globalThis.clearInterval
  const timers: Array<{ tick: () => void; ms: number; unref: boolean; cleared: boolean }> = []
  const fakeSetInterval = (tick: () => void, ms: number) => {
    const timer = { tick, ms, unref: false, cleared: false }
    timers.push(timer)
    return { unref: () => ((timer.unref = true), undefined), timer }
  }
  const fakeClearInterval = (handle: { timer?: { cleared: boolean } } | undefined) => {
    if (handle?.timer) handle.timer.cleared = true
  }
  globalThis.setInterval = fakeSetInterval as unknown as typeof setInterval
  globalThis.clearInterval = fakeClearInterval as unknown as typeof clearInterval
  let stop: () => void
  try {
    stop = startMaintenance(app.deps)
  } finally {
    globalThis.setInterval = realSetInterval
    globalThis.clearInterval = realClearInterval
  }
  // The purge timer is the one on purgeInterval; others (the key reload) may run beside it.
  const timer = timers.find((candidate) => candidate.ms === app.config.purgeInterval * 1000)
  if (!timer) throw new Error(`no timer on the purge interval among ${timers.map((candidate) => candidate.ms).join(', ')}`)
  t.ok(timers.every((candidate) => candidate.unref), 'no maintenance timer keeps the process alive')
  t.type(stop, 'function')

  const before = app.logs.length
  timer.tick()
  // The tick starts the purge without waiting for it; poll for its log line (on PostgreSQL it is a
  // few network round trips away), bounded at about two seconds.
  for (let i = 0; i < 400 && !app.logs.slice(before).some((line) => JSON.parse(line).event === 'purge'); i++) {
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  const line = app.logs.slice(before).map((entry) => JSON.parse(entry) as Body).find((entry) => entry.event === 'purge')
  t.match(line, { event: 'purge', sessions: 1, revocations: 0, codes: Number, audit: 0, events: 0 }, 'the tick purged and logged the counts')
  t.same(await sessionIds(app), [])

  globalThis.clearInterval = fakeClearInterval as unknown as typeof clearInterval
  try {
    stop()
  } finally {
    globalThis.clearInterval = realClearInterval
  }
  t.ok(timers.every((candidate) => candidate.cleared), 'stop clears every maintenance interval')
})

t.test('startMaintenance with the real timer can be stopped', async (t) => {
  const app = await startTestApp(t)
  const stop = startMaintenance(app.deps)
  t.type(stop, 'function')
  t.doesNotThrow(() => stop())
  t.doesNotThrow(() => stop(), 'stopping twice is harmless')
})
