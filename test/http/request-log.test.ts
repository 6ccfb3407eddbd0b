import t from 'tap'
import { startTestApp, WECHAT_CODE_GRANT, type TestApp } from '../helpers/app.js'
import { cli } from '../helpers/cli.js'

type Line = Record<string, any>

const parsed = (app: TestApp): Line[] => app.logs.map((line) => JSON.parse(line) as Line)

/** The log lines (info and above) written while answering the request with this id. */
const linesOf = (app: TestApp, requestId: string): Line[] => parsed(app).filter((line) => line.req_id === requestId && line.level >= 30)

t.test('every event line carries the id of the request that caused it', async (t) => {
  const app = await startTestApp(t)
  const id = (name: string) => ({ 'x-request-id': name })

  // A login: the WeChat call and the login event.
  const code = await app.wxLogin({ openid: 'oLogs' })
  const login = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code, scope: 'openid profile phone' }, id('req-login'))
  t.equal(login.status, 200)
  t.equal(login.headers.get('x-request-id'), 'req-login', 'the id is answered back')
  const tokens = (await login.json()) as Line
  t.match(linesOf(app, 'req-login'), [{ event: 'login', sub: String, sid: String }, { msg: 'request', route: '/token', status: 200 }], 'the login event and the request line')

  // A refresh, then a replay of the spent token: the reuse event.
  t.equal((await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token })).status, 200)
  t.equal((await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token }, id('req-reuse'))).status, 400)
  t.match(linesOf(app, 'req-reuse'), [{ event: 'refresh_token_reuse', level: 40 }, { msg: 'request' }])

  // A revocation and a logout.
  const second = await app.login({ openid: 'oLogs', scope: 'openid profile phone' })
  t.equal((await app.postForm('/revoke', { token: second.refresh_token }, id('req-revoke'))).status, 200)
  t.match(linesOf(app, 'req-revoke'), [{ event: 'revocation', token_type: 'refresh_token' }, { msg: 'request' }])
  const third = await app.login({ openid: 'oLogs', scope: 'openid profile phone' })
  const logout = await fetch(`${app.url}/logout`, { method: 'POST', headers: { authorization: `Bearer ${third.access_token}`, ...id('req-logout') } })
  t.equal(logout.status, 204)
  t.match(linesOf(app, 'req-logout'), [{ event: 'logout' }, { msg: 'request' }])

  // WeChat errors: a busy code2Session, and a failed phone lookup (with the access_token fetch).
  t.equal((await app.postJson('/_dev/wechat/faults', { api: 'jscode2session', mode: 'busy', count: 1 })).status, 200)
  const busy = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: await app.wxLogin() }, id('req-busy'))
  t.equal(busy.status, 503)
  t.match(linesOf(app, 'req-busy'), [{ api: 'jscode2session', errcode: -1, msg: 'WeChat refused the call' }, { error: 'temporarily_unavailable', status: 503 }, { msg: 'request' }])

  const fourth = await app.login({ openid: 'oLogs', scope: 'openid profile phone' })
  t.equal((await app.postJson('/_dev/wechat/faults', { api: 'getuserphonenumber', mode: 'rate_limit', count: 1 })).status, 200)
  const phoneCode = ((await (await app.postJson('/_dev/wechat/phone-code', { phone: '13800138000' })).json()) as Line).code as string
  const phone = await app.postJson('/wechat/phone', { code: phoneCode }, { authorization: `Bearer ${fourth.access_token}`, ...id('req-phone') })
  t.equal(phone.status, 503)
  const phoneLines = linesOf(app, 'req-phone')
  t.ok(phoneLines.some((line) => line.msg === 'WeChat access_token fetched'), 'the access_token fetch it caused')
  t.ok(phoneLines.some((line) => line.api === 'getuserphonenumber' && line.errcode === 45011), 'the WeChat error')

  // A failed decryption, and a disabled user's refused login.
  const decrypt = await app.postJson('/wechat/decrypt', { encrypted_data: Buffer.alloc(32).toString('base64'), iv: Buffer.alloc(16).toString('base64') }, { authorization: `Bearer ${fourth.access_token}`, ...id('req-decrypt') })
  t.equal(decrypt.status, 400)
  t.match(linesOf(app, 'req-decrypt'), [{ event: 'wechat_decrypt_failed' }, { msg: 'request' }])
  t.equal((await cli(app, 'users', 'disable', 'oLogs')).code, 0)
  const refused = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: await app.wxLogin({ openid: 'oLogs' }) }, id('req-disabled'))
  t.equal(refused.status, 400)
  t.match(linesOf(app, 'req-disabled'), [{ event: 'login_refused_user_disabled' }, { msg: 'request' }])

  const events = parsed(app).filter((line) => line.event !== undefined)
  t.ok(events.length >= 8, `${events.length} event lines`)
  for (const line of events) t.type(line.req_id, 'string', `${line.event} has a req_id`)
})

t.test("the simulator's requests are marked as such, apart from the clients'", async (t) => {
  const app = await startTestApp(t)
  const code = await app.wxLogin()
  t.equal((await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code }, { 'x-request-id': 'req-client' })).status, 200)
  const lines = parsed(app)
  const simulated = lines.filter((line) => line.simulator === true)
  t.match(simulated, [
    { msg: 'simulator request (development WeChat)', route: '/_dev/wechat/login', status: 200 },
    { msg: 'simulator request (development WeChat)', route: '/_dev/wechat/sns/jscode2session', status: 200 },
  ])
  t.match(
    lines.filter((line) => line.msg === 'request'),
    [{ route: '/token', req_id: 'req-client' }],
    'only the client request is a plain request line',
  )
  t.notOk(lines.some((line) => line.msg === 'request' && String(line.route).startsWith('/_dev/')), 'no simulator request poses as a client request')
})
