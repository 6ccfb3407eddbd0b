import t from 'tap'
import { startTestApp } from '../helpers/app.js'
import { oauthError } from '../helpers/assert.js'
import { bearer, sidOf, subOf } from '../helpers/lifecycle.js'

t.test('GET /account/export: everything minigate holds about the user, no secret', async (t) => {
  const app = await startTestApp(t)
  const appid = app.config.apps[0]?.appid as string
  const first = await app.login({ openid: 'oExport', unionid: 'uExport', scope: 'openid profile phone' })
  const sub = subOf(first.access_token)
  await bearer(app, '/userinfo/profile', first.access_token, { method: 'POST', json: { nickname: '小明' } })
  const phoneCode = ((await (await app.postJson('/_dev/wechat/phone-code', { phone: '13800138000' })).json()) as { code: string }).code
  t.equal((await bearer(app, '/wechat/phone', first.access_token, { method: 'POST', json: { code: phoneCode } })).status, 200)
  app.clock.advance(60)
  const second = await app.login({ openid: 'oExport' })
  await bearer(app, '/logout', first.access_token, { method: 'POST' })

  const response = await bearer(app, '/account/export', second.access_token)
  t.equal(response.status, 200)
  t.equal(response.headers.get('cache-control'), 'no-store')
  t.match(response.headers.get('content-disposition'), /attachment/)
  const text = await response.text()
  const data = JSON.parse(text)
  t.match(data, {
    sub,
    unionid: 'uExport',
    profile: { nickname: '小明', picture: null },
    phone: { phone_number: '+8613800138000', country_code: '86' },
    wechat_identities: [{ appid, openid: 'oExport' }],
    merged_subs: [],
  })
  t.same(
    data.logins.map((login: Record<string, unknown>) => [login.sid, login.client_id, login.state, login.ended_because]),
    [
      [sidOf(second.access_token), appid, 'live', null],
      [sidOf(first.access_token), appid, 'ended', 'logout'],
    ],
  )
  t.same(data.audit_events.map((event: Record<string, unknown>) => event.event), ['user_created', 'phone_bound', 'login', 'logout'])
  t.same(data.security_events.map((event: Record<string, unknown>) => event.type), ['https://schemas.openid.net/secevent/caep/event-type/session-revoked'])
  for (const secret of [first.access_token, first.refresh_token, second.access_token, second.refresh_token, phoneCode]) t.notOk(text.includes(secret), 'no token or code')
  t.notMatch(text, /session_key_enc|session_key"|private_key/, 'no session_key')
  const sealed = await app.deps.db.selectFrom('wechat_identities').select('session_key_enc').executeTakeFirstOrThrow()
  t.notOk(text.includes(sealed.session_key_enc), 'not even sealed')
  await oauthError(t, await fetch(`${app.url}/account/export`), 401)
})

t.test('DELETE /wechat/phone: the bound phone number is removed', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oPhoneRemove', scope: 'phone' })
  const phoneCode = ((await (await app.postJson('/_dev/wechat/phone-code', { phone: '13800138001' })).json()) as { code: string }).code
  await bearer(app, '/wechat/phone', login.access_token, { method: 'POST', json: { code: phoneCode } })
  t.match(await (await bearer(app, '/userinfo', login.access_token)).json(), { phone_number: '+8613800138001' })
  const removed = await bearer(app, '/wechat/phone', login.access_token, { method: 'DELETE' })
  t.equal(removed.status, 204)
  t.equal(removed.headers.get('cache-control'), 'no-store')
  const userinfo = (await (await bearer(app, '/userinfo', login.access_token)).json()) as Record<string, unknown>
  t.notOk('phone_number' in userinfo, 'gone from userinfo')
  t.match(await app.deps.db.selectFrom('users').selectAll().where('id', '=', subOf(login.access_token)).executeTakeFirstOrThrow(), { phone_number: null, phone_country_code: null, phone_verified_at: null })
  t.equal((await bearer(app, '/wechat/phone', login.access_token, { method: 'DELETE' })).status, 204, 'removing again is fine')
  const audit = await app.deps.db.selectFrom('audit_events').select(['event', 'actor']).where('event', '=', 'phone_removed').execute()
  t.same(audit, [{ event: 'phone_removed', actor: 'user' }], 'audited once: only a removal that removed something')
  await oauthError(t, await fetch(`${app.url}/wechat/phone`, { method: 'DELETE' }), 401)
})
