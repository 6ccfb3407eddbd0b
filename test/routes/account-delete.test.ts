import t from 'tap'
import { unusedUserId } from '../../src/db/users.js'
import { startTestApp, WECHAT_CODE_GRANT, type TestApp } from '../helpers/app.js'
import { oauthError } from '../helpers/assert.js'
import { cli } from '../helpers/cli.js'
import { bearer, DEV_SERVICE, pollVerified, subOf } from '../helpers/lifecycle.js'

async function rows(app: TestApp, sub: string) {
  const count = async (table: 'users' | 'wechat_identities' | 'login_sessions' | 'avatars', column: 'id' | 'user_id') =>
    Number((await app.deps.db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).where(column, '=', sub).executeTakeFirstOrThrow()).n)
  return { users: await count('users', 'id'), identities: await count('wechat_identities', 'user_id'), sessions: await count('login_sessions', 'user_id'), avatars: await count('avatars', 'user_id') }
}

const PNG = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex')

t.test('deleting one\'s account: every token dies, the data is gone, the sub is never reused, services are told', async (t) => {
  const app = await startTestApp(t)
  const first = await app.login({ openid: 'oDelete', unionid: 'uDelete', scope: 'openid profile phone' })
  const second = await app.login({ openid: 'oDelete' })
  const sub = subOf(first.access_token)
  // A profile, an avatar and a phone number to erase.
  t.equal((await bearer(app, '/userinfo/profile', first.access_token, { method: 'POST', json: { nickname: '删除我' } })).status, 200)
  const form = new FormData()
  form.append('file', new Blob([PNG], { type: 'image/png' }), 'a.png')
  t.equal((await fetch(`${app.url}/userinfo/picture`, { method: 'POST', headers: { authorization: `Bearer ${first.access_token}` }, body: form })).status, 201)
  const phoneCode = ((await (await app.postJson('/_dev/wechat/phone-code', { phone: '13800138000' })).json()) as { code: string }).code
  t.equal((await bearer(app, '/wechat/phone', first.access_token, { method: 'POST', json: { code: phoneCode } })).status, 200)
  t.same(await rows(app, sub), { users: 1, identities: 1, sessions: 2, avatars: 1 })
  await pollVerified(app, {}) // the dev service has seen nothing of this user yet; start its stream here
  const before = await pollVerified(app)
  t.same(before.events, [], 'nothing is pending before the deletion')

  const code = await app.wxLogin({ openid: 'oDelete' })
  const response = await bearer(app, '/account/delete', second.access_token, { method: 'POST', json: { code } })
  t.equal(response.status, 204)
  t.equal(response.headers.get('cache-control'), 'no-store')

  t.same(await rows(app, sub), { users: 0, identities: 0, sessions: 0, avatars: 0 }, 'identities, session_keys, logins, avatars: gone')
  t.equal((await bearer(app, '/userinfo', first.access_token)).status, 401, 'the other login\'s access token is refused')
  t.equal((await bearer(app, '/userinfo', second.access_token)).status, 401, 'so is the one that asked')
  for (const token of [first.refresh_token, second.refresh_token]) {
    await oauthError(t, await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: token }), 400, 'invalid_grant')
  }
  const introspection = await app.postForm('/introspect', { token: first.access_token }, { authorization: DEV_SERVICE })
  t.same(await introspection.json(), { active: false })
  const tombstone = await app.deps.db.selectFrom('user_tombstones').selectAll().where('id', '=', sub).executeTakeFirstOrThrow()
  t.match(tombstone, { reason: 'deleted', merged_into: null, ended_at: Math.floor(app.clock.now() / 1000) })
  const audit = await app.deps.db.selectFrom('audit_events').selectAll().where('event', '=', 'user_deleted').executeTakeFirstOrThrow()
  t.match(audit, { sub, actor: 'user', client_id: app.config.apps[0]?.appid, detail: 'sessions=2' })

  const { events } = await pollVerified(app)
  t.same(events.map((event) => [event.type, event.sub]), [['account-purged', sub]], 'services learn of it through a SET')

  const again = await app.login({ openid: 'oDelete', unionid: 'uDelete' })
  t.not(subOf(again.access_token), sub, 'the same person logging in again is a new user')
  t.same(await (await bearer(app, '/userinfo', again.access_token)).json(), { sub: subOf(again.access_token), updated_at: Math.floor(app.clock.now() / 1000) }, 'with nothing of the old one')

  // A random id that happens to be a deleted sub is drawn again.
  const drawn = [sub, 'fresh-id']
  t.equal(await unusedUserId(app.deps.db, () => drawn.shift() as string), 'fresh-id', 'a tombstoned sub is never given out')
})

t.test('deletion needs a fresh wx.login code of the same person', async (t) => {
  const app = await startTestApp(t, { MINIGATE_RATE_LIMITS: 'wechat=100' })
  const login = await app.login({ openid: 'oKeep' })
  await app.login({ openid: 'oOther' })
  const sub = subOf(login.access_token)
  const refused = async (body: unknown, label: string, status = 400) => {
    const before = await rows(app, sub)
    const response = await bearer(app, '/account/delete', login.access_token, { method: 'POST', ...(body === undefined ? {} : { json: body }) })
    const error = await oauthError(t, response, status)
    t.same(await rows(app, sub), before, `${label}: nothing deleted`)
    t.equal(before.users, 1)
    return error
  }
  await refused({}, 'no code')
  await refused({ code: 'has spaces' }, 'a malformed code')
  const someoneElses = await refused({ code: await app.wxLogin({ openid: 'oOther' }) }, "another person's code")
  const unknown = await refused({ code: 'never-issued-code' }, 'a code WeChat never issued')
  t.equal(someoneElses.error_description, unknown.error_description, 'one answer, whatever the reason')
  // A code already spent on a login cannot delete, and a code spent on a refused deletion cannot log in.
  const used = await app.wxLogin({ openid: 'oKeep' })
  t.equal((await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: used })).status, 200)
  await refused({ code: used }, 'a code spent on a login')
  const otherCode = await app.wxLogin({ openid: 'oOther' })
  await refused({ code: otherCode }, 'refused once')
  await oauthError(t, await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: otherCode }), 400, 'invalid_grant')
  // WeChat busy: 503, the code stays good for a retry.
  await app.postJson('/_dev/wechat/faults', { api: 'jscode2session', mode: 'busy', count: 1 })
  const code = await app.wxLogin({ openid: 'oKeep' })
  const busy = await bearer(app, '/account/delete', login.access_token, { method: 'POST', json: { code } })
  t.equal(busy.status, 503)
  t.same(await rows(app, sub), { users: 1, identities: 1, sessions: 2, avatars: 0 }, 'nothing deleted while WeChat is busy')
  t.equal((await bearer(app, '/account/delete', login.access_token, { method: 'POST', json: { code } })).status, 204, 'the same code works once WeChat answers')
  t.equal((await rows(app, sub)).users, 0)
  t.equal((await bearer(app, '/account/delete', login.access_token, { method: 'POST', json: { code: await app.wxLogin({ openid: 'oKeep' }) } })).status, 401, 'a deleted account has no token left')
})

t.test('minigate users delete: the operator deletes a user, recorded as the operator', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oOperatorDelete' })
  const sub = subOf(login.access_token)
  const out = await cli(app, 'users', 'delete', sub, '--json')
  t.equal(out.code, 0, out.stderr)
  t.same(JSON.parse(out.stdout), { sub, deleted: true, ended_sessions: 1 })
  t.equal((await bearer(app, '/userinfo', login.access_token)).status, 401)
  t.same(await rows(app, sub), { users: 0, identities: 0, sessions: 0, avatars: 0 })
  t.match(await app.deps.db.selectFrom('audit_events').selectAll().where('event', '=', 'user_deleted').executeTakeFirstOrThrow(), { sub, actor: 'operator' })
  const { events } = await pollVerified(app)
  t.same(events.map((event) => [event.type, event.sub]), [['account-purged', sub]])
  t.match((events[0]?.payload.events as Record<string, any>)['https://schemas.openid.net/secevent/risc/event-type/account-purged'], { subject: { format: 'iss_sub', iss: app.url, sub } })
  const again = await cli(app, 'users', 'delete', sub)
  t.equal(again.code, 1)
  t.match(again.stderr, `${sub} was deleted at`)
  t.equal((await cli(app, 'users', 'show', sub)).code, 1, 'show says it too')
})

t.test('a login racing the deletion of its user ends on a live user, never a 500', async (t) => {
  const app = await startTestApp(t)
  for (let round = 0; round < 5; round += 1) {
    const openid = `oRaceDelete${round}`
    const login = await app.login({ openid })
    const sub = subOf(login.access_token)
    const [deleteCode, loginCode] = [await app.wxLogin({ openid }), await app.wxLogin({ openid })]
    const [deleted, again] = await Promise.all([
      bearer(app, '/account/delete', login.access_token, { method: 'POST', json: { code: deleteCode } }),
      app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: loginCode }),
    ])
    t.equal(deleted.status, 204, `round ${round}: deleted`)
    t.equal(again.status, 200, `round ${round}: the login succeeded`)
    const tokens = (await again.json()) as Record<string, string>
    const userinfo = await bearer(app, '/userinfo', tokens.access_token as string)
    if (subOf(tokens.access_token as string) === sub) t.equal(userinfo.status, 401, 'it logged into the old user just before the deletion, which ended it')
    else t.equal(userinfo.status, 200, 'it came after the deletion: a new user')
  }
})
