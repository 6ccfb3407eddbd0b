import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createFakeWx, type FakeWx } from '@minigate/demo/fake-wx'
import { createClient, MinigateError, type Client, type ClientOptions } from '@minigate/miniprogram'
import t, { type Test } from 'tap'
import { WECHAT_CODE_GRANT } from '../../helpers/app.js'
import { anatomy, startKitApp } from '../../helpers/kit.js'

// One minigate for the file: every test logs its own WeChat user in, and revokes only its own tokens.
const app = await startKitApp(t)
const issuer = app.url
const clientId = 'wx0000000000000dev'
const STORAGE_KEY = 'minigate:tokens'

interface Phone {
  wx: FakeWx
  client: Client
  /** The client's clock; tests move it to bring the access token near its expiry. */
  clock: { ms: number }
}

function phone(openid: string, options: Partial<ClientOptions> = {}, wx = createFakeWx({ issuer, openid })): Phone {
  const clock = { ms: Date.now() }
  const client = createClient({ issuer, clientId, wx, now: () => clock.ms, ...options })
  return { wx, client, clock }
}

type Stored = { access_token: string; refresh_token: string; expires_at: number; refresh_at: number; scope: string; id_token?: string }
const stored = (wx: FakeWx) => wx.getStorageSync(STORAGE_KEY) as Stored | ''

const userinfo = (client: Client) => client.request({ url: `${issuer}/userinfo` })
const subOf = (token: string) => anatomy(token).payload.sub
/** GET /userinfo calls the fake wx made (first attempts and retries alike). */
const userinfoCalls = (wx: FakeWx) => wx.calls.filter((call) => call.what === 'GET /userinfo').length

async function revoke(token: string): Promise<void> {
  const response = await app.postForm('/revoke', { token, client_id: clientId })
  if (response.status !== 200) throw new Error(`revoke answered ${response.status}`)
}

async function rejection(t: Test, promise: Promise<unknown>): Promise<MinigateError> {
  try {
    await promise
  } catch (error) {
    t.ok(error instanceof MinigateError, 'a MinigateError')
    return error as MinigateError
  }
  t.fail('it resolved')
  return new MinigateError('resolved')
}

t.test('login: wx.login, then the wechat-code grant; the tokens kept under one storage key', async (t) => {
  const { wx, client } = phone('oClientLogin', { scope: 'openid profile phone' })
  t.equal(client.isLoggedIn(), false)
  const result = await client.login()
  t.equal(result.scope, 'openid profile phone')
  t.type(result.idToken, 'string', 'scope openid brings an ID token')
  t.ok(result.expiresAt > Date.now() + 800_000, 'expiresAt from expires_in (900 s)')
  t.equal(client.isLoggedIn(), true)
  t.equal(wx.count('login'), 1, 'one wx.login')
  t.equal(wx.count('request', WECHAT_CODE_GRANT), 1, 'one wechat-code grant')
  t.same(wx.getStorageInfoSync().keys, [STORAGE_KEY], 'one storage key')
  const tokens = stored(wx) as Stored
  t.match(tokens, { access_token: String, refresh_token: String, expires_at: Number, refresh_at: Number, scope: 'openid profile phone' })
  t.equal(tokens.expires_at - tokens.refresh_at, 60_000, 'a refresh is due 60 s before expiry')
  const login = wx.calls.find((call) => call.grant === WECHAT_CODE_GRANT)
  t.match(login, { method: 'POST', statusCode: 200 })

  const user = await client.getUser()
  t.equal(user.sub, subOf(tokens.access_token), '/userinfo answers for the logged-in user')

  // The mini-program starts again: a new client on the same storage goes on without wx.login.
  const relaunched = createClient({ issuer, clientId, wx })
  t.equal(relaunched.isLoggedIn(), true)
  t.equal((await relaunched.getUser()).sub, user.sub)
  t.equal(await relaunched.accessToken(), tokens.access_token)
  t.equal(wx.count('login'), 1, 'still one wx.login')
  t.equal(wx.calls.filter((call) => call.what === 'GET /.well-known/openid-configuration').length, 2, 'discovery once per client')
})

t.test('request() logs in by itself, once however many calls wait', async (t) => {
  const { wx, client } = phone('oClientAutoLogin')
  const responses = await Promise.all(Array.from({ length: 8 }, () => userinfo(client)))
  t.same(responses.map((response) => response.statusCode), Array(8).fill(200))
  t.equal(wx.count('login'), 1, 'one wx.login')
  t.equal(wx.count('request', WECHAT_CODE_GRANT), 1, 'one login at minigate')
  t.equal(await Promise.all([client.login(), client.login()]).then(() => wx.count('login')), 2, 'concurrent login() calls share one wx.login')
})

t.test('request() sends the Bearer token and passes the wx.request options and answer through', async (t) => {
  const { wx, client } = phone('oClientPassThrough')
  const response = await client.request({ url: `${issuer}/userinfo`, method: 'GET', header: { 'X-Request-Id': 'kit-test-1', authorization: 'Bearer stale' }, dataType: 'json' })
  t.equal(response.statusCode, 200)
  t.equal(response.header['x-request-id'], 'kit-test-1', 'the caller’s header went out, the answer’s headers come back')
  t.equal((response.data as { sub: string }).sub, subOf((stored(wx) as Stored).access_token), 'the client’s token replaced the caller’s Authorization')
  const notFound = await client.request({ url: `${issuer}/no-such-thing` })
  t.equal(notFound.statusCode, 404, 'any other answer is the caller’s to read')
  await t.rejects(client.request(undefined as never), TypeError)
})

t.test('20 concurrent calls after the access token was revoked: exactly one refresh, all succeed', async (t) => {
  const { wx, client } = phone('oClientRevokedAccess')
  await client.login()
  const before = stored(wx) as Stored
  await revoke(before.access_token)

  const responses = await Promise.all(Array.from({ length: 20 }, () => userinfo(client)))
  t.same(responses.map((response) => response.statusCode), Array(20).fill(200), 'all 20 succeed')
  t.equal(userinfoCalls(wx), 40, 'each was refused once (401 invalid_token) and sent again')
  t.equal(wx.count('request', 'refresh_token'), 1, 'exactly one refresh')
  t.equal(wx.count('login'), 1, 'no new wx.login')
  const after = stored(wx) as Stored
  t.not(after.access_token, before.access_token)
  t.not(after.refresh_token, before.refresh_token, 'the rotated refresh token is stored')
  t.equal(anatomy(after.access_token).payload.sid, anatomy(before.access_token).payload.sid, 'the same login goes on')

  // Had the client refreshed twice in parallel, minigate would have ended the login (reuse). It did not:
  const next = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: after.refresh_token, client_id: clientId })
  t.equal(next.status, 200, 'the login is alive')
})

t.test('near expiry: one refresh before the calls go out, no 401 on the way', async (t) => {
  const { wx, client, clock } = phone('oClientNearExpiry')
  await client.login()
  const before = stored(wx) as Stored
  clock.ms = before.expires_at - 59_000
  const responses = await Promise.all(Array.from({ length: 5 }, () => userinfo(client)))
  t.same(responses.map((response) => response.statusCode), Array(5).fill(200))
  t.equal(wx.count('request', 'refresh_token'), 1, 'one refresh')
  t.equal(userinfoCalls(wx), 5, 'no call was refused')
  t.not(await client.accessToken(), before.access_token)
  t.equal(wx.count('request', 'refresh_token'), 1, 'the new token is good for a while')
})

t.test('a revoked login: the refused refresh leads to one wx.login, and every call succeeds', async (t) => {
  const { wx, client } = phone('oClientRevokedLogin')
  await client.login()
  const before = stored(wx) as Stored
  await revoke(before.refresh_token) // ends the whole login

  const responses = await Promise.all(Array.from({ length: 10 }, () => userinfo(client)))
  t.same(responses.map((response) => response.statusCode), Array(10).fill(200), 'all succeed')
  t.equal(wx.count('request', 'refresh_token'), 1, 'one refresh, refused')
  t.match(wx.calls.find((call) => call.grant === 'refresh_token'), { statusCode: 400, data: { error: 'invalid_grant' } })
  t.equal(wx.count('login'), 2, 'one more wx.login')
  t.equal(wx.count('request', WECHAT_CODE_GRANT), 2, 'one more login at minigate')
  const after = stored(wx) as Stored
  t.not(anatomy(after.access_token).payload.sid, anatomy(before.access_token).payload.sid, 'a new login')
  t.equal(subOf(after.access_token), subOf(before.access_token), 'of the same user')
})

t.test('a 5xx or a network failure is the caller’s error and keeps the tokens', async (t) => {
  const { wx, client, clock } = phone('oClientFailures')
  await client.login()
  const tokens = stored(wx) as Stored

  wx.failNext((call) => call.what === 'GET /userinfo', { statusCode: 500, data: { error: 'server_error' } })
  const business = await userinfo(client)
  t.equal(business.statusCode, 500, 'a 5xx of the API resolves as it is')
  wx.failNext((call) => call.what === 'GET /userinfo', { fail: 'timeout' })
  const offline = await rejection(t, userinfo(client))
  t.equal(offline.code, 'network_error')
  t.equal(offline.status, 0)
  t.match(offline.message, /request:fail timeout/)
  t.same(stored(wx), tokens, 'the tokens are kept')
  t.equal(wx.count('request', 'refresh_token'), 0, 'and nothing was refreshed')

  clock.ms = tokens.expires_at - 30_000
  wx.failNext((call) => call.grant === 'refresh_token', { statusCode: 503, data: { error: 'temporarily_unavailable', error_description: 'try later' } })
  const unavailable = await rejection(t, userinfo(client))
  t.equal(unavailable.code, 'temporarily_unavailable', 'a refresh answered 503: the caller’s error')
  t.equal(unavailable.status, 503)
  t.same(stored(wx), tokens, 'the tokens are kept')
  wx.failNext((call) => call.grant === 'refresh_token', { statusCode: 502, data: '<html>bad gateway</html>' })
  t.equal((await rejection(t, userinfo(client))).code, 'server_error', 'a 502 page from a proxy')
  wx.failNext((call) => call.grant === 'refresh_token', { fail: 'timeout' })
  t.equal((await rejection(t, userinfo(client))).code, 'network_error', 'no answer to the refresh')
  t.same(stored(wx), tokens, 'the tokens are still kept')
  t.equal(wx.count('login'), 1, 'and the user was never logged in again')

  const recovered = await userinfo(client)
  t.equal(recovered.statusCode, 200, 'the next call refreshes with the same refresh token')
  t.equal(wx.calls.filter((call) => call.grant === 'refresh_token' && call.statusCode === 200).length, 1)
  t.not((stored(wx) as Stored).refresh_token, tokens.refresh_token)
})

t.test('WeChat failing during a login is the caller’s error; the next try works', async (t) => {
  const { wx, client } = phone('oClientWeChatDown')
  const fault = await app.postJson('/_dev/wechat/faults', { api: 'jscode2session', mode: 'http_500', count: 1 })
  t.equal(fault.status, 200)
  const error = await rejection(t, client.login())
  t.equal(error.status, 502, 'minigate answered 502')
  t.equal(client.isLoggedIn(), false)
  t.equal(stored(wx), '', 'nothing stored')
  await client.login()
  t.equal(client.isLoggedIn(), true)

  const broken = createFakeWx({ issuer: 'http://127.0.0.1:1' })
  const unreachable = await rejection(t, createClient({ issuer, clientId, wx: { ...broken, login: (options) => options.fail({ errMsg: 'login:fail auth deny' }) } }).login())
  t.equal(unreachable.code, 'wx_login_failed')
  t.match(unreachable.message, /auth deny/)
})

t.test('401 invalid_token is retried once only; other 401s are not retried', async (t) => {
  const { wx, client } = phone('oClientRetryOnce')
  await client.login()
  const invalid = { statusCode: 401, data: { error: 'invalid_token', error_description: 'no' } }
  wx.failNext((call) => call.what === 'GET /userinfo', invalid)
  wx.failNext((call) => call.what === 'GET /userinfo', invalid)
  const response = await userinfo(client)
  t.equal(response.statusCode, 401, 'refused twice: the second answer is the caller’s')
  t.equal(wx.count('request', 'refresh_token'), 1, 'one refresh in between')
  t.equal(userinfoCalls(wx), 2)

  wx.failNext((call) => call.what === 'GET /userinfo', { statusCode: 401, data: { error: 'invalid_request' } })
  t.equal((await userinfo(client)).statusCode, 401, 'a 401 without invalid_token')
  t.equal(wx.count('request', 'refresh_token'), 1, 'is not a reason to refresh')
})

t.test('getUser, uploadAvatar (wx.uploadFile) and bindPhone', async (t) => {
  const { wx, client } = phone('oClientProfile', { scope: 'profile phone' })
  await client.login()
  const avatar = join(t.testdir(), 'tmp_avatar.png')
  writeFileSync(avatar, Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(64)]))

  const { picture } = await client.uploadAvatar(avatar)
  t.match(picture, new RegExp(`^${issuer}/avatars/[A-Za-z0-9_-]{22}$`))
  t.equal((await client.getUser()).picture, picture)
  const served = await fetch(picture)
  t.equal(served.headers.get('content-type'), 'image/png')

  // wx.uploadFile gives no headers: the client reads invalid_token from the body.
  await revoke((stored(wx) as Stored).access_token)
  const again = await client.uploadAvatar(avatar)
  t.not(again.picture, picture, 'uploaded after one refresh')
  t.equal(wx.count('request', 'refresh_token'), 1)
  t.equal(wx.calls.filter((call) => call.api === 'uploadFile').length, 3)

  const notImage = join(t.testdir(), 'tmp_note.txt')
  writeFileSync(notImage, 'hello')
  t.equal((await rejection(t, client.uploadAvatar(notImage))).code, 'invalid_request', 'minigate’s error comes back as a MinigateError')
  await t.rejects(client.uploadAvatar(''), TypeError)

  const codeResponse = await app.postJson('/_dev/wechat/phone-code', { phone: '13800138000' })
  const { code } = (await codeResponse.json()) as { code: string }
  const bound = await client.bindPhone(code)
  t.match(bound, { phone_number: '+8613800138000', phone_number_verified: true, country_code: '86', pure_phone_number: '13800138000' })
  t.equal((await client.getUser()).phone_number, '+8613800138000')
  const reused = await rejection(t, client.bindPhone(code))
  t.equal(reused.code, 'invalid_request', 'a phone code works once')
  t.equal(reused.status, 400)
  await t.rejects(client.bindPhone(''), TypeError)
})

// POST /userinfo/profile is being added to the server in parallel: until it is there (a Bearer route
// answers 401 without a token), this test is a todo.
const discovery = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>
const profileEndpoint = typeof discovery.userinfo_profile_endpoint === 'string' ? discovery.userinfo_profile_endpoint : `${issuer}/userinfo/profile`
const profileRouteExists = (await fetch(profileEndpoint, { method: 'POST' })).status === 401
t.test(
  'updateProfile: POST /userinfo/profile (wx.request cannot send PATCH)',
  { todo: profileRouteExists ? false : 'needs the server’s POST /userinfo/profile, added in parallel' },
  async (t) => {
    const { wx, client } = phone('oClientNickname')
    await client.login()
    const user = await client.updateProfile({ nickname: '小明' })
    t.equal(user.nickname, '小明')
    t.equal((await client.getUser()).nickname, '小明')
    t.notOk(wx.calls.some((call) => call.method === 'PATCH'), 'no PATCH was attempted')
    t.match(wx.calls.find((call) => call.url === profileEndpoint), { method: 'POST', statusCode: 200 })
    await t.rejects(client.updateProfile(undefined as never), TypeError)
  },
)

t.test('logout: ends the login at minigate and forgets the tokens', async (t) => {
  const { wx, client, clock } = phone('oClientLogout')
  await client.login()
  const tokens = stored(wx) as Stored
  await client.logout()
  t.equal(client.isLoggedIn(), false)
  t.equal(stored(wx), '', 'storage is empty')
  t.match(wx.calls.at(-1), { what: 'POST /logout', statusCode: 204 })
  const refused = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: clientId })
  t.equal(refused.status, 400, 'the refresh token is dead')
  await client.logout()
  t.equal(wx.calls.at(-1)?.what, 'POST /logout', 'logging out again sends nothing')

  // With an expired access token, the refresh token is revoked instead (no Bearer needed).
  await client.login()
  const second = stored(wx) as Stored
  clock.ms = second.expires_at + 1
  await client.logout()
  t.match(wx.calls.at(-1), { what: 'POST /revoke', statusCode: 200 })
  const revoked = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: second.refresh_token, client_id: clientId })
  t.equal(revoked.status, 400, 'that login is over too')

  // Unreachable: the tokens are forgotten all the same.
  await client.login()
  wx.failNext((call) => call.what === 'POST /logout', { fail: 'timeout' })
  t.equal((await rejection(t, client.logout())).code, 'network_error')
  t.equal(client.isLoggedIn(), false)
})

t.test('removePhone, exportAccount and deleteAccount: the account lifecycle from the mini-program', async (t) => {
  const { wx, client } = phone('oClientDelete')
  await client.login()
  const codeResponse = await app.postJson('/_dev/wechat/phone-code', { phone: '13800138009' })
  await client.bindPhone(((await codeResponse.json()) as { code: string }).code)
  await client.removePhone()
  t.match(wx.calls.at(-1), { method: 'DELETE', statusCode: 204 })
  t.notOk('phone_number' in (await client.getUser()), 'the phone number is gone')
  const exported = await client.exportAccount()
  t.match(exported, { wechat_identities: [{ openid: 'oClientDelete' }], phone: null })
  const sub = exported.sub as string
  const tokens = stored(wx) as Stored

  const logins = wx.count('login')
  await client.deleteAccount()
  t.equal(wx.count('login'), logins + 1, 'a fresh wx.login() code confirmed it')
  t.match(wx.calls.at(-1), { method: 'POST', statusCode: 204 })
  t.equal(client.isLoggedIn(), false)
  t.equal(stored(wx), '', 'the tokens are forgotten')
  t.equal((await fetch(`${issuer}/userinfo`, { headers: { authorization: `Bearer ${tokens.access_token}` } })).status, 401, 'and dead')
  await client.login()
  t.not((await client.getUser()).sub, sub, 'logging in again makes a new user')
})

t.test('createClient checks its options; discovery must describe the issuer', async (t) => {
  const wx = createFakeWx({ issuer })
  t.throws(() => createClient(undefined as never), TypeError)
  t.throws(() => createClient({ issuer: 'localhost:3000', clientId, wx }), TypeError)
  t.throws(() => createClient({ issuer, clientId: '', wx }), TypeError)
  t.throws(() => createClient({ issuer, clientId }), /no wx object/, 'outside a mini-program wx must be given')
  const mismatch = createClient({ issuer: `${issuer}/`, clientId, wx })
  t.equal((await rejection(t, mismatch.login())).code, 'invalid_discovery')
  t.equal(wx.count('request', WECHAT_CODE_GRANT), 0, 'no code was sent to the wrong place')

  const badStorage = createFakeWx({ issuer })
  badStorage.setStorageSync(STORAGE_KEY, { access_token: 'x' })
  t.equal(createClient({ issuer, clientId, wx: badStorage }).isLoggedIn(), false, 'a malformed stored value is ignored')
})
