import { decodeJwt } from 'jose'
import t from 'tap'
import { usersHelp } from '../../src/cli/users.js'
import { startTestApp, WECHAT_CODE_GRANT, type TestApp } from '../helpers/app.js'
import { cli } from '../helpers/cli.js'

type Body = Record<string, any>

const now = (app: TestApp) => Math.floor(app.clock.now() / 1000)
const iso = (seconds: number) => new Date(seconds * 1000).toISOString()
const subOf = (token: string) => decodeJwt(token).sub as string
const sidOf = (token: string) => decodeJwt(token).sid as string
const userinfo = (app: TestApp, token: string) => fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${token}` } })

async function refresh(app: TestApp, refreshToken: string): Promise<{ status: number; body: Body }> {
  const response = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: refreshToken })
  return { status: response.status, body: (await response.json()) as Body }
}

/** A login that may be refused: the wechat-code grant, returning the raw status and body. */
async function tryLogin(app: TestApp, openid: string): Promise<{ status: number; body: Body }> {
  const code = await app.wxLogin({ openid })
  const response = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code })
  return { status: response.status, body: (await response.json()) as Body }
}

t.test('users show: by sub and by openid, text and --json, with identities and live logins', async (t) => {
  const app = await startTestApp(t)
  const appid = app.config.apps[0]?.appid as string
  const first = await app.login({ openid: 'oShow', unionid: 'uShow' })
  const createdAt = now(app)
  app.clock.advance(60)
  const second = await app.login({ openid: 'oShow' })
  const sub = subOf(first.access_token)
  t.equal(subOf(second.access_token), sub, 'the same user')
  const logout = await fetch(`${app.url}/logout`, { method: 'POST', headers: { authorization: `Bearer ${second.access_token}` } })
  t.equal(logout.status, 204, 'the second login ended')
  await app.login({ openid: 'oSomeoneElse' })

  const expected = {
    sub,
    unionid: 'uShow',
    nickname: null,
    phone_number: null,
    disabled_at: null,
    created_at: createdAt,
    identities: [{ appid, openid: 'oShow', created_at: createdAt }],
    live_sessions: 1,
  }
  for (const id of [sub, 'oShow']) {
    const out = await cli(app, 'users', 'show', id, '--json')
    t.equal(out.code, 0, `users show ${id} --json`)
    t.equal(out.stderr, '')
    t.same(JSON.parse(out.stdout), expected, `found by ${id === sub ? 'sub' : 'openid'}`)
  }

  const text = await cli(app, 'users', 'show', 'oShow')
  t.equal(text.code, 0)
  t.equal(
    text.stdout,
    [
      `sub       ${sub}`,
      'unionid   uShow',
      'nickname  -',
      'phone     -',
      `created   ${iso(createdAt)}`,
      `identity  ${appid} oShow`,
      'sessions  1 live of 2',
      '',
    ].join('\n'),
  )
})

t.test('users show: a nickname and an expired login', async (t) => {
  const app = await startTestApp(t, { MINIGATE_SESSION_MAX_AGE: '3600', MINIGATE_REFRESH_TTL: '3600' })
  const login = await app.login({ openid: 'oNick' })
  const patch = await fetch(`${app.url}/userinfo`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${login.access_token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ nickname: '小明' }),
  })
  t.equal(patch.status, 200)
  const shown = JSON.parse((await cli(app, 'users', 'show', 'oNick', '--json')).stdout) as Body
  t.equal(shown.nickname, '小明')
  t.equal(shown.live_sessions, 1)
  app.clock.advance(3600)
  const later = await cli(app, 'users', 'show', 'oNick')
  t.match(later.stdout, /^nickname  小明$/m)
  t.match(later.stdout, /^sessions  0 live of 1$/m, 'a login past its maximum age is not live')
})

t.test('users: unknown user, missing id, unknown command', async (t) => {
  const app = await startTestApp(t)
  for (const command of ['show', 'disable', 'enable']) {
    const unknown = await cli(app, 'users', command, 'nobody')
    t.equal(unknown.code, 1, `users ${command} of an unknown user`)
    t.equal(unknown.stderr, 'minigate: no user nobody\n')
    t.equal(unknown.stdout, '')
    const missing = await cli(app, 'users', command)
    t.equal(missing.code, 2, `users ${command} without an id`)
    t.match(missing.stderr, `users ${command} needs a user id`)
    t.match(missing.stderr, usersHelp)
  }
  const bogus = await cli(app, 'users', 'erase', 'x')
  t.equal(bogus.code, 2)
  t.match(bogus.stderr, 'unknown users command: erase')
  const none = await cli(app, 'users')
  t.equal(none.code, 2)
  t.match(none.stderr, 'users needs a command')
  const extra = await cli(app, 'users', 'show', 'a', 'b')
  t.equal(extra.code, 2)
  t.match(extra.stderr, 'unexpected arguments: b')
})

t.test('users disable: every login ends, refresh tokens and new logins are refused; enable lets the user back in', async (t) => {
  const app = await startTestApp(t)
  const a = await app.login({ openid: 'oDisable' })
  const b = await app.login({ openid: 'oDisable', scope: 'openid profile' })
  const other = await app.login({ openid: 'oBystander' })
  const sub = subOf(a.access_token)
  t.equal((await userinfo(app, a.access_token)).status, 200)

  app.clock.advance(10)
  const disabledAt = now(app)
  const out = await cli(app, 'users', 'disable', sub, '--json')
  t.equal(out.code, 0, 'users disable succeeds')
  t.equal(out.stderr, '')
  const result = JSON.parse(out.stdout) as { sub: string; disabled: boolean; changed: boolean; disabled_at: number; revoked_sessions: string[] }
  t.equal(result.sub, sub)
  t.equal(result.disabled, true)
  t.equal(result.changed, true)
  t.equal(result.disabled_at, disabledAt)
  t.same([...result.revoked_sessions].sort(), [sidOf(a.access_token), sidOf(b.access_token)].sort(), 'both logins revoked')

  for (const [name, tokens] of [
    ['first', a],
    ['second', b],
  ] as const) {
    const refused = await refresh(app, tokens.refresh_token)
    t.equal(refused.status, 400, `the ${name} login's refresh token is refused`)
    t.equal(refused.body.error, 'invalid_grant')
    const info = await userinfo(app, tokens.access_token)
    t.equal(info.status, 401, `the ${name} login's access token gets 401 at /userinfo`)
    t.match(info.headers.get('www-authenticate'), /^Bearer .*error="invalid_token"/)
  }

  const login = await tryLogin(app, 'oDisable')
  t.equal(login.status, 400, 'a new login is refused')
  t.equal(login.body.error, 'invalid_grant')
  t.match(login.body.error_description, /disabled/)
  t.notOk('access_token' in login.body)

  t.equal((await userinfo(app, other.access_token)).status, 200, 'other users are unaffected')
  t.equal((await refresh(app, other.refresh_token)).status, 200)

  const shown = JSON.parse((await cli(app, 'users', 'show', sub, '--json')).stdout) as Body
  t.equal(shown.disabled_at, disabledAt)
  t.equal(shown.live_sessions, 0)
  const shownText = await cli(app, 'users', 'show', sub)
  t.match(shownText.stdout, `sub       ${sub}  (disabled ${iso(disabledAt)})`)

  app.clock.advance(5)
  const again = await cli(app, 'users', 'disable', sub)
  t.equal(again.code, 0, 'disabling again is harmless')
  t.equal(again.stdout, `${sub} already disabled since ${iso(disabledAt)}; nothing changed\n`, 'and says so')
  const againJson = await cli(app, 'users', 'disable', sub, '--json')
  t.same(JSON.parse(againJson.stdout), { sub, disabled: true, changed: false, disabled_at: disabledAt, revoked_sessions: [] })
  t.equal(JSON.parse((await cli(app, 'users', 'show', sub, '--json')).stdout).disabled_at, disabledAt, 'the first disable time stays')

  app.clock.advance(10)
  const enabled = await cli(app, 'users', 'enable', sub)
  t.equal(enabled.code, 0)
  t.equal(enabled.stdout, `enabled ${sub}\n`)
  const back = await tryLogin(app, 'oDisable')
  t.equal(back.status, 200, 'a login works again')
  t.equal(subOf(back.body.access_token), sub, 'as the same user')
  t.equal((await userinfo(app, back.body.access_token)).status, 200)
  t.equal((await refresh(app, a.refresh_token)).status, 400, 'the logins revoked by disable stay revoked')
  t.same(JSON.parse((await cli(app, 'users', 'show', sub, '--json')).stdout).disabled_at, null)
  const enabledJson = await cli(app, 'users', 'enable', sub, '--json')
  t.same(JSON.parse(enabledJson.stdout), { sub, disabled: false, changed: false, disabled_at: null, revoked_sessions: [] }, 'enabling an enabled user changes nothing')
  t.equal((await cli(app, 'users', 'enable', sub)).stdout, `${sub} is not disabled; nothing changed\n`)

  const events = await app.deps.db
    .selectFrom('audit_events')
    .select(['event', 'sub', 'detail', 'at'])
    .where('event', 'in', ['user_disabled', 'user_enabled'])
    .orderBy('id')
    .execute()
  t.match(events, [
    { event: 'user_disabled', sub, detail: 'sessions=2', at: disabledAt },
    { event: 'user_enabled', sub, at: disabledAt + 15 },
  ])
  t.equal(events.length, 2, 'a disable or enable that changed nothing is not audited')
})

t.test('users disable takes an openid as well as a sub', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oByOpenid' })
  const out = await cli(app, 'users', 'disable', 'oByOpenid')
  t.equal(out.code, 0, 'an openid is accepted as the user id')
  t.match(out.stdout, `disabled ${subOf(login.access_token)}; revoked 1 login(s)`)
  t.equal((await refresh(app, login.refresh_token)).body.error, 'invalid_grant')
})
