import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import t, { type Test } from 'tap'
import { keyTiming } from '../src/keys/key-ring.js'
import { startTestApp, WECHAT_CODE_GRANT, type TestApp } from './helpers/app.js'
import { cli } from './helpers/cli.js'
import { TestClock } from './helpers/clock.js'
import { createFreshDatabase, testDialect } from './helpers/database.js'

// Several stateless instances share one PostgreSQL database; on SQLite one process owns the file.
if (testDialect !== 'postgres') {
  t.skip('two instances on one database: PostgreSQL only (this file runs on it when MINIGATE_TEST_PG is set)', () => {})
} else {
  await runAll()
}

type Body = Record<string, any>
const SERVICE = `Basic ${Buffer.from('dev-service:dev-service-secret').toString('base64')}`
const APP_1 = 'wx1111111111111111'
const APP_2 = 'wx2222222222222222'

/**
 * Two minigate instances on one database, one issuer and one data key, as a load balancer fronts them.
 * Both reach the same WeChat (A's simulator), as real instances reach api.weixin.qq.com.
 */
async function twoInstances(t: Test, env: Record<string, string> = {}): Promise<[TestApp, TestApp]> {
  const dir = mkdtempSync(join(tmpdir(), 'minigate-instances-'))
  const database = await createFreshDatabase(dir)
  const clock = new TestClock()
  const shared = { MINIGATE_DB: database.location, MINIGATE_KEYS_DIR: join(dir, 'keys'), MINIGATE_ISSUER: 'http://minigate.test', ...env }
  const a = await startTestApp(t, shared, clock)
  const b = await startTestApp(t, { ...shared, WECHAT_API_BASE: `${a.url}/_dev/wechat` }, clock)
  t.teardown(async () => {
    await database.drop()
    rmSync(dir, { recursive: true, force: true })
  })
  return [a, b]
}

function refresh(app: TestApp, token: string, clientId?: string): Promise<Response> {
  return app.postForm('/token', { grant_type: 'refresh_token', refresh_token: token, ...(clientId ? { client_id: clientId } : {}) })
}

async function ok(t: Test, response: Response, what: string): Promise<Body> {
  const body = (await response.json()) as Body
  t.equal(response.status, 200, what, response.status === 200 ? {} : { body })
  return body
}

async function runAll(): Promise<void> {
  t.test('logins and refreshes spread over two instances make one chain', async (t) => {
    const [a, b] = await twoInstances(t)
    const login = await a.login({ openid: 'oSpread' })
    let current = login
    for (let i = 0; i < 6; i++) current = await ok(t, await refresh(i % 2 === 0 ? b : a, current.refresh_token), `refresh ${i + 1} on instance ${i % 2 === 0 ? 'B' : 'A'}`)
    t.equal(decodeJwt(current.refresh_token).gen, 6, 'one generation per refresh, whichever instance served it')
    t.equal((await fetch(`${b.url}/userinfo`, { headers: { authorization: `Bearer ${current.access_token}` } })).status, 200, "B accepts A's tokens")
    const introspected = (await (await a.postForm('/introspect', { token: current.access_token }, { authorization: SERVICE })).json()) as Body
    t.equal(introspected.active, true)
    // The old token, replayed to either instance, is reuse: the login ends everywhere.
    t.equal((await refresh(a, login.refresh_token)).status, 400)
    t.equal((await fetch(`${b.url}/userinfo`, { headers: { authorization: `Bearer ${current.access_token}` } })).status, 401, 'B sees the login A revoked')
  })

  t.test('parallel refreshes of one token on both instances: exactly one wins, the reuse is seen by both', async (t) => {
    const [a, b] = await twoInstances(t)
    for (let round = 0; round < 4; round++) {
      const login = await a.login({ openid: `oRace${round}` })
      const responses = await Promise.all(Array.from({ length: 8 }, (_, i) => refresh(i % 2 === 0 ? a : b, login.refresh_token)))
      const statuses = responses.map((response) => response.status)
      t.equal(statuses.filter((status) => status === 200).length, 1, `round ${round}: one 200 of ${statuses.join(',')}`)
      t.ok(statuses.every((status) => status === 200 || status === 400), 'the others are 400 invalid_grant, never a 5xx')
      const session = await a.deps.db.selectFrom('login_sessions').selectAll().where('id', '=', decodeJwt(login.access_token).sid as string).executeTakeFirstOrThrow()
      t.equal(session.generation, 1, 'one rotation')
      t.equal(session.revoked_reason, 'refresh_token_reuse', 'the losers were reuse: the login ended')
    }
  })

  t.test('within a grace window, parallel refreshes on both instances all succeed and the kept one refreshes', async (t) => {
    const [a, b] = await twoInstances(t, { MINIGATE_REFRESH_GRACE_SECONDS: '30', MINIGATE_REFRESH_GRACE_REUSES: '3' })
    const login = await a.login({ openid: 'oGraceTwo' })
    const bodies = await Promise.all(Array.from({ length: 4 }, (_, i) => refresh(i % 2 === 0 ? a : b, login.refresh_token).then((response) => ok(t, response, `refresh ${i}`))))
    const next = await ok(t, await refresh(b, (bodies[3] as Body).refresh_token), 'the kept token refreshes on the other instance')
    t.equal(decodeJwt(next.refresh_token).gen, 2)
  })

  t.test('simultaneous first logins of one person on both instances make one user', async (t) => {
    const [a, b] = await twoInstances(t, { WECHAT_APPS: `${APP_1}:${'a'.repeat(32)},${APP_2}:${'b'.repeat(32)}`, MINIGATE_WECHAT_SIMULATOR: '1' })
    for (let person = 0; person < 5; person++) {
      // One app, two phones of one person (two wx.login codes), one instance each.
      const openid = `oTwin${person}`
      const [code1, code2] = await Promise.all([a.wxLogin({ appid: APP_1, openid }), a.wxLogin({ appid: APP_1, openid })])
      const [one, two] = await Promise.all([
        a.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: code1, client_id: APP_1 }),
        b.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: code2, client_id: APP_1 }),
      ])
      const [first, second] = [await ok(t, one, `person ${person}: the login on A`), await ok(t, two, `person ${person}: the login on B`)]
      t.equal(decodeJwt(first.access_token).sub, decodeJwt(second.access_token).sub, `person ${person}: one sub`)

      // Two apps, one unionid, at the same moment on the two instances.
      const unionid = `uTwin${person}`
      const [codeA, codeB] = await Promise.all([a.wxLogin({ appid: APP_1, openid: `oApp1-${person}`, unionid }), a.wxLogin({ appid: APP_2, openid: `oApp2-${person}`, unionid })])
      const [inA, inB] = await Promise.all([
        a.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: codeA, client_id: APP_1 }),
        b.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: codeB, client_id: APP_2 }),
      ])
      const [app1, app2] = [await ok(t, inA, `person ${person}: app 1 on A`), await ok(t, inB, `person ${person}: app 2 on B`)]
      t.equal(decodeJwt(app1.access_token).sub, decodeJwt(app2.access_token).sub, `person ${person}: linked by unionid into one user`)
    }
    const users = await a.deps.db.selectFrom('users').select('id').execute()
    t.equal(users.length, 10, 'ten people, ten users: no duplicate and no orphan')
    const identities = await a.deps.db.selectFrom('wechat_identities').select('user_id').execute()
    t.equal(identities.length, 15)
  })

  t.test('a WeChat code presented to both instances at once reaches WeChat once', async (t) => {
    const [a, b] = await twoInstances(t)
    for (let round = 0; round < 4; round++) {
      const code = await a.wxLogin({ openid: `oOnce${round}` })
      const calls = a.simulator.calls.jscode2session
      const responses = await Promise.all([a, b, a, b].map((app) => app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code })))
      t.same(responses.map((response) => response.status).sort(), [200, 400, 400, 400], `round ${round}: one login`)
      t.equal(a.simulator.calls.jscode2session, calls + 1, `round ${round}: WeChat saw the code once`)
    }
    const login = await a.login({ openid: 'oPhoneOnce' })
    const phone = ((await (await a.postJson('/_dev/wechat/phone-code', { phone: '13800138000' })).json()) as Body).code as string
    const calls = a.simulator.calls.getuserphonenumber
    const bind = (app: TestApp) => app.postJson('/wechat/phone', { code: phone }, { authorization: `Bearer ${login.access_token}` })
    const statuses = (await Promise.all([bind(a), bind(b)])).map((response) => response.status).sort()
    t.same(statuses, [200, 400], 'one binding, the replay refused')
    t.equal(a.simulator.calls.getuserphonenumber, calls + 1, 'the billed phone call was made once')
  })

  t.test('a key rotation made with the CLI against the database is served by every instance', async (t) => {
    const [a, b] = await twoInstances(t)
    const before = b.deps.keys.active().kid
    const rotated = JSON.parse((await cli(a, 'keys', 'rotate', '--json')).stdout) as { added: { kid: string }; activatesAt: number }
    // Each instance re-reads the schedule every few seconds (startMaintenance); here, one reload each.
    await Promise.all([a.deps.keys.reload(), b.deps.keys.reload()])
    for (const app of [a, b]) {
      const kids = ((await (await fetch(`${app.url}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> }).keys.map((key) => key.kid)
      t.ok(kids.includes(rotated.added.kid), 'the new key is published by both before it signs')
    }
    a.clock.advance(keyTiming(a.config).publishDelay)
    const login = await ok(t, await b.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: await a.wxLogin({ openid: 'oAfterRotation' }) }), 'a login on B')
    t.equal(decodeProtectedHeader(login.access_token).kid, rotated.added.kid, 'B signs with the key A scheduled')
    t.not(rotated.added.kid, before)
    t.equal((await fetch(`${a.url}/userinfo`, { headers: { authorization: `Bearer ${login.access_token}` } })).status, 200, 'A accepts it')
  })
}
