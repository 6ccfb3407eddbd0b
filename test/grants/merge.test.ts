import type { Test } from 'tap'
import t from 'tap'
import { startTestApp, WECHAT_CODE_GRANT, type TestApp } from '../helpers/app.js'
import { oauthError } from '../helpers/assert.js'
import { cli } from '../helpers/cli.js'
import { bearer, pollVerified, sidOf, subOf } from '../helpers/lifecycle.js'

const APP_A = 'wxaaaaaaaaaaaaaaaa'
const APP_B = 'wxbbbbbbbbbbbbbbbb'
const ENV = { WECHAT_APPS: `${APP_A}:s1,${APP_B}:s2`, MINIGATE_WECHAT_SIMULATOR: '1', MINIGATE_SERVICES: 'dev-service:dev-service-secret' }
const CHANGED = 'https://schemas.openid.net/secevent/risc/event-type/identifier-changed'

type Tokens = Record<string, any>

const userRow = (app: TestApp, sub: string) => app.deps.db.selectFrom('users').selectAll().where('id', '=', sub).executeTakeFirst()
const identitiesOf = (app: TestApp, sub: string) => app.deps.db.selectFrom('wechat_identities').select(['appid', 'openid']).where('user_id', '=', sub).orderBy('appid').execute()
const refresh = (app: TestApp, tokens: Tokens, appid: string) => app.postForm('/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: appid })

async function bindPhone(app: TestApp, tokens: Tokens, appid: string, phone: string) {
  const code = ((await (await app.postJson('/_dev/wechat/phone-code', { appid, phone })).json()) as { code: string }).code
  const response = await bearer(app, '/wechat/phone', tokens.access_token, { method: 'POST', json: { code } })
  if (response.status !== 200) throw new Error(`phone binding failed: ${response.status}`)
}

/** Checks the merged-away user is gone for good: tokens refused, sub tombstoned, services told. */
async function assertMergedAway(t: Test, app: TestApp, gone: { sub: string; tokens: Tokens; appid: string }, survivor: string) {
  t.equal(await userRow(app, gone.sub), undefined, 'the merged-away user row is gone')
  t.match(await app.deps.db.selectFrom('user_tombstones').selectAll().where('id', '=', gone.sub).executeTakeFirst(), { reason: 'merged', merged_into: survivor }, 'its sub is recorded as merged into the survivor')
  t.equal((await bearer(app, '/userinfo', gone.tokens.access_token)).status, 401, "the merged-away user's access token is refused")
  await oauthError(t, await refresh(app, gone.tokens, gone.appid), 400, 'invalid_grant')
  const login = await app.deps.db.selectFrom('login_sessions').selectAll().where('id', '=', sidOf(gone.tokens.access_token)).executeTakeFirstOrThrow()
  t.match(login, { user_id: survivor, revoked_reason: 'merged' }, 'its login ended as merged, kept on the survivor')
}

t.test('late unionid: app A without unionid, then app B with it, then app A with it: one user', async (t) => {
  const app = await startTestApp(t, ENV)
  const a1 = await app.login({ appid: APP_A, openid: 'oA' })
  const older = subOf(a1.access_token)
  await bindPhone(app, a1, APP_A, '13800000001')
  app.clock.advance(60)
  const b = await app.login({ appid: APP_B, openid: 'oB', unionid: 'uLate', scope: 'profile' })
  const newer = subOf(b.access_token)
  t.not(newer, older, 'nothing proves them one person yet: two users')
  t.equal((await bearer(app, '/userinfo/profile', b.access_token, { method: 'POST', json: { nickname: 'from B' } })).status, 200)
  await bindPhone(app, b, APP_B, '13900000002')
  app.clock.advance(60)

  const a2 = await app.login({ appid: APP_A, openid: 'oA', unionid: 'uLate' })
  t.equal(subOf(a2.access_token), older, 'the older user survives')
  const user = await userRow(app, older)
  t.match(user, { unionid: 'uLate', nickname: 'from B', phone_number: '+8613900000002' }, 'unionid taken; an empty nickname filled from the other; the phone verified last wins')
  t.same(await identitiesOf(app, older), [{ appid: APP_A, openid: 'oA' }, { appid: APP_B, openid: 'oB' }], "both apps' identities")
  await assertMergedAway(t, app, { sub: newer, tokens: b, appid: APP_B }, older)
  t.equal((await bearer(app, '/userinfo', a1.access_token)).status, 200, "the survivor's earlier login goes on")
  t.equal(subOf((await app.login({ appid: APP_B, openid: 'oB', unionid: 'uLate' })).access_token), older, 'app B now logs into the survivor')
  t.match(await app.deps.db.selectFrom('audit_events').selectAll().where('event', '=', 'users_merged').executeTakeFirstOrThrow(), { sub: older, detail: `merged=${newer} cause=unionid`, actor: 'system' })
  t.ok(app.logs.some((line) => line.includes('"event":"users_merged"')), 'logged')

  const { events } = await pollVerified(app)
  t.same(events.map((event) => [event.type, event.sub]), [['identifier-changed', newer], ['session-revoked', newer]])
  t.match(events[0]?.payload.events, { [CHANGED]: { 'new-value': older, new_sub_id: { format: 'iss_sub', iss: app.url, sub: older } } }, 'the SET names the sub to use from now on')
  t.match(events[1]?.payload.sub_id, { format: 'complex', user: { sub: newer }, session: { id: sidOf(b.access_token) } })
})

t.test('late unionid, the other order: app B with unionid first, then app A without, then app A with it', async (t) => {
  const app = await startTestApp(t, ENV)
  const b = await app.login({ appid: APP_B, openid: 'oB2', unionid: 'uRev' })
  const older = subOf(b.access_token)
  await bindPhone(app, b, APP_B, '13900000003')
  app.clock.advance(60)
  const a1 = await app.login({ appid: APP_A, openid: 'oA2' })
  const newer = subOf(a1.access_token)
  t.not(newer, older)
  t.equal((await bearer(app, '/userinfo/profile', a1.access_token, { method: 'POST', json: { nickname: 'from A' } })).status, 200)
  await bindPhone(app, a1, APP_A, '13800000004')
  app.clock.advance(60)

  const a2 = await app.login({ appid: APP_A, openid: 'oA2', unionid: 'uRev', scope: 'profile phone' })
  t.equal(subOf(a2.access_token), older, 'the login of app A lands on the older user, which survives')
  t.match(await userRow(app, older), { unionid: 'uRev', nickname: 'from A', phone_number: '+8613800000004' })
  t.same(await identitiesOf(app, older), [{ appid: APP_A, openid: 'oA2' }, { appid: APP_B, openid: 'oB2' }])
  await assertMergedAway(t, app, { sub: newer, tokens: a1, appid: APP_A }, older)
  t.match(await (await bearer(app, '/userinfo', a2.access_token)).json(), { sub: older, nickname: 'from A', phone_number: '+8613800000004' })
  t.equal((await bearer(app, '/userinfo', b.access_token)).status, 200)
})

t.test("a merge racing a refresh of the merged-away user's login ends with that login refused", async (t) => {
  const app = await startTestApp(t, ENV)
  for (let round = 0; round < 6; round += 1) {
    const a = await app.login({ appid: APP_A, openid: `oRaceA${round}` })
    app.clock.advance(1)
    const b = await app.login({ appid: APP_B, openid: `oRaceB${round}`, unionid: `uRace${round}` })
    const code = await app.wxLogin({ appid: APP_A, openid: `oRaceA${round}`, unionid: `uRace${round}` })
    const [merging, refreshing] = await Promise.all([app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code, client_id: APP_A }), refresh(app, b, APP_B)])
    t.equal(merging.status, 200, `round ${round}: the merging login succeeds`)
    t.equal(subOf(((await merging.json()) as Tokens).access_token), subOf(a.access_token))
    // Whichever committed first, the login of the merged-away user is over: its newest tokens are refused.
    const latest = refreshing.status === 200 ? ((await refreshing.json()) as Tokens) : b
    await oauthError(t, await refresh(app, latest, APP_B), 400, 'invalid_grant')
    t.equal((await bearer(app, '/userinfo', latest.access_token)).status, 401, `round ${round}: its access token is refused (the refresh ${refreshing.status === 200 ? 'won' : 'lost'})`)
    t.match(await app.deps.db.selectFrom('login_sessions').selectAll().where('id', '=', sidOf(b.access_token)).executeTakeFirstOrThrow(), { revoked_reason: 'merged' })
  }
})

t.test('two logins proving the same merge at once merge once', async (t) => {
  const app = await startTestApp(t, ENV)
  for (let round = 0; round < 4; round += 1) {
    const a = await app.login({ appid: APP_A, openid: `oTwiceA${round}` })
    app.clock.advance(1)
    const b = await app.login({ appid: APP_B, openid: `oTwiceB${round}`, unionid: `uTwice${round}` })
    const codes = [
      await app.wxLogin({ appid: APP_A, openid: `oTwiceA${round}`, unionid: `uTwice${round}` }),
      await app.wxLogin({ appid: APP_A, openid: `oTwiceA${round}`, unionid: `uTwice${round}` }),
      await app.wxLogin({ appid: APP_B, openid: `oTwiceB${round}`, unionid: `uTwice${round}` }),
    ]
    const responses = await Promise.all(codes.map((code, index) => app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code, client_id: index < 2 ? APP_A : APP_B })))
    const logins = await Promise.all(responses.map(async (response) => (response.status === 200 ? ((await response.json()) as Tokens) : { status: response.status })))
    t.same(logins.slice(0, 2).map((login) => (login.access_token ? subOf(login.access_token) : login)), [subOf(a.access_token), subOf(a.access_token)], `round ${round}: app A's logins land on the survivor`)
    // App B's login either came after the merge (the survivor) or just before it (then the merge ended it).
    const third = logins[2] as Tokens
    t.ok(third.access_token, `round ${round}: app B's login succeeds`)
    if (subOf(third.access_token) !== subOf(a.access_token)) {
      t.equal(subOf(third.access_token), subOf(b.access_token), 'committed before the merge')
      t.equal((await bearer(app, '/userinfo', third.access_token)).status, 401, 'and ended by it')
    }
    const tombstones = await app.deps.db.selectFrom('user_tombstones').selectAll().where('id', '=', subOf(b.access_token)).execute()
    t.equal(tombstones.length, 1, 'one merge')
    const changed = await app.deps.db.selectFrom('security_events').select('sub').where('type', '=', 'identifier-changed').where('sub', '=', subOf(b.access_token)).execute()
    t.equal(changed.length, 1, 'one identifier-changed event')
  }
})

t.test('minigate users merge and unlink', async (t) => {
  const app = await startTestApp(t, ENV)
  const a = await app.login({ appid: APP_A, openid: 'oOpA' })
  app.clock.advance(5)
  const b = await app.login({ appid: APP_B, openid: 'oOpB' })
  const [subA, subB] = [subOf(a.access_token), subOf(b.access_token)]

  const usage = await cli(app, 'users', 'merge', subA)
  t.equal(usage.code, 2)
  t.match(usage.stderr, 'users merge needs two user ids')
  t.equal((await cli(app, 'users', 'merge', subA, subA)).code, 1, 'not with itself')

  const merged = await cli(app, 'users', 'merge', subB, subA, '--json')
  t.equal(merged.code, 0, merged.stderr)
  t.same(JSON.parse(merged.stdout), { sub: subA, merged: subB, revoked_sessions: [sidOf(b.access_token)] }, 'the older user survives whatever the order given')
  await assertMergedAway(t, app, { sub: subB, tokens: b, appid: APP_B }, subA)
  t.match(await app.deps.db.selectFrom('audit_events').selectAll().where('event', '=', 'users_merged').executeTakeFirstOrThrow(), { actor: 'operator', detail: `merged=${subB} cause=operator` })
  const show = await cli(app, 'users', 'show', subB)
  t.equal(show.code, 1)
  t.match(show.stderr, `${subB} was merged into ${subA}`)

  // Different unionids: WeChat says two people.
  const c = subOf((await app.login({ appid: APP_A, openid: 'oOpC', unionid: 'u1' })).access_token)
  const d = subOf((await app.login({ appid: APP_B, openid: 'oOpD', unionid: 'u2' })).access_token)
  const refused = await cli(app, 'users', 'merge', c, d)
  t.equal(refused.code, 1)
  t.match(refused.stderr, 'different unionids')
  t.match(await cli(app, 'users', 'merge', subA, c), { code: 1, stderr: /same mini-program/ }, 'two identities in one app')

  // Unlink app B from the merged user: a new user gets that identity, the logins of app B end.
  const bAgain = await app.login({ appid: APP_B, openid: 'oOpB' })
  t.equal(subOf(bAgain.access_token), subA)
  const unlinked = await cli(app, 'users', 'unlink', subA, APP_B, '--json')
  t.equal(unlinked.code, 0, unlinked.stderr)
  const result = JSON.parse(unlinked.stdout)
  t.match(result, { sub: subA, appid: APP_B, revoked_sessions: [sidOf(bAgain.access_token)] })
  t.same(await identitiesOf(app, subA), [{ appid: APP_A, openid: 'oOpA' }])
  t.same(await identitiesOf(app, result.new_sub), [{ appid: APP_B, openid: 'oOpB' }])
  t.equal((await bearer(app, '/userinfo', bAgain.access_token)).status, 401, "app B's login ended")
  t.equal((await bearer(app, '/userinfo', a.access_token)).status, 200, "app A's goes on")
  t.equal(subOf((await app.login({ appid: APP_B, openid: 'oOpB' })).access_token), result.new_sub, 'app B now logs into the new user')
  t.match(await cli(app, 'users', 'unlink', subA, APP_A), { code: 1, stderr: /only identity/ })
  t.match(await cli(app, 'users', 'unlink', subA, APP_B), { code: 1, stderr: /no identity in/ })
  t.match(await app.deps.db.selectFrom('audit_events').selectAll().where('event', '=', 'identity_unlinked').executeTakeFirstOrThrow(), { sub: subA, actor: 'operator' })
})
