import { decodeJwt } from 'jose'
import t from 'tap'
import { sessionsHelp } from '../../src/cli/sessions.js'
import { purgeExpired } from '../../src/maintenance.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { cli } from '../helpers/cli.js'

type Body = Record<string, any>

interface SessionJson {
  sid: string
  client_id: string
  scope: string
  created_at: number
  last_used_at: number
  expires_at: number
  state: string
}

const now = (app: TestApp) => Math.floor(app.clock.now() / 1000)
const iso = (seconds: number) => new Date(seconds * 1000).toISOString()
const subOf = (token: string) => decodeJwt(token).sub as string
const sidOf = (token: string) => decodeJwt(token).sid as string
const userinfo = (app: TestApp, token: string) => fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${token}` } })

async function refresh(app: TestApp, refreshToken: string): Promise<{ status: number; body: Body }> {
  const response = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: refreshToken })
  return { status: response.status, body: (await response.json()) as Body }
}

async function list(app: TestApp, id: string): Promise<SessionJson[]> {
  const out = await cli(app, 'sessions', 'list', id, '--json')
  if (out.code !== 0) throw new Error(`sessions list failed: ${out.stderr}`)
  return JSON.parse(out.stdout) as SessionJson[]
}

t.test('sessions list: every login of a user with its state, text and --json', async (t) => {
  const app = await startTestApp(t)
  const appid = app.config.apps[0]?.appid as string
  const first = await app.login({ openid: 'oList' })
  const firstAt = now(app)
  app.clock.advance(60)
  const second = await app.login({ openid: 'oList', scope: 'openid profile' })
  const secondAt = now(app)
  app.clock.advance(60)
  const third = await app.login({ openid: 'oList', scope: 'phone' })
  await app.login({ openid: 'oOtherUser' })
  const sub = subOf(first.access_token)
  const maxAge = app.config.sessionMaxAge

  app.clock.advance(30)
  t.equal((await refresh(app, first.refresh_token)).status, 200, 'a refresh marks the login as used')
  const usedAt = now(app)
  const logout = await fetch(`${app.url}/logout`, { method: 'POST', headers: { authorization: `Bearer ${second.access_token}` } })
  t.equal(logout.status, 204)
  t.equal((await cli(app, 'sessions', 'revoke', sidOf(third.access_token))).code, 0)

  const sessions = await list(app, sub)
  t.same(
    sessions,
    [
      { sid: sidOf(third.access_token), client_id: appid, scope: 'phone', created_at: secondAt + 60, last_used_at: secondAt + 60, expires_at: secondAt + 60 + maxAge, state: 'revoked (operator)' },
      { sid: sidOf(second.access_token), client_id: appid, scope: 'openid profile', created_at: secondAt, last_used_at: secondAt, expires_at: secondAt + maxAge, state: 'revoked (logout)' },
      { sid: sidOf(first.access_token), client_id: appid, scope: 'profile', created_at: firstAt, last_used_at: usedAt, expires_at: firstAt + maxAge, state: 'live' },
    ],
    'newest first, only this user, live and revoked with the reason',
  )
  t.same(await list(app, 'oList'), sessions, 'an openid works as the user id')

  const text = await cli(app, 'sessions', 'list', sub)
  t.equal(text.code, 0)
  t.equal(text.stderr, '')
  const lines = text.stdout.trimEnd().split('\n')
  t.equal(lines.length, 4, 'a header and one line per login')
  // Every column as wide as its widest cell (a sid is 22 characters, a time 24), two spaces apart.
  const row = (...cells: string[]) => [cells[0], cells[1], (cells[2] as string).padEnd('revoked (operator)'.length), (cells[3] as string).padEnd(24), (cells[4] as string).padEnd(24), cells[5]].join('  ')
  t.equal(lines[0], row('SID'.padEnd(22), 'CLIENT'.padEnd(appid.length), 'STATE', 'CREATED', 'LAST USED', 'SCOPE'))
  t.equal(lines[1], row(sidOf(third.access_token), appid, 'revoked (operator)', iso(secondAt + 60), iso(secondAt + 60), 'phone'))
  t.equal(lines[2], row(sidOf(second.access_token), appid, 'revoked (logout)', iso(secondAt), iso(secondAt), 'openid profile'))
  t.equal(lines[3], row(sidOf(first.access_token), appid, 'live', iso(firstAt), iso(usedAt), 'profile'), 'columns aligned however long the state')
})

t.test('sessions list: an expired login, and a user with none', async (t) => {
  const app = await startTestApp(t, { MINIGATE_SESSION_MAX_AGE: '3600', MINIGATE_REFRESH_TTL: '3600' })
  const login = await app.login({ openid: 'oExpiring' })
  app.clock.advance(3600)
  t.same((await list(app, 'oExpiring')).map((session) => session.state), ['expired'], 'past its maximum age')
  const text = await cli(app, 'sessions', 'list', subOf(login.access_token))
  t.match(text.stdout, `${sidOf(login.access_token)}  ${app.config.apps[0]?.appid}  expired  ${iso(now(app) - 3600)}`)

  app.clock.advance(1)
  t.match(await purgeExpired(app.deps), { sessions: 1, revocations: 0 }, 'the purge deletes the ended login')
  t.same(await list(app, 'oExpiring'), [], 'the user remains, with no login')
  const none = await cli(app, 'sessions', 'list', 'oExpiring')
  t.equal(none.code, 0)
  t.equal(none.stdout, 'no sessions\n')
})

t.test('sessions revoke <sid>: that login ends, the others keep working', async (t) => {
  const app = await startTestApp(t)
  const a = await app.login({ openid: 'oRevoke' })
  const b = await app.login({ openid: 'oRevoke' })
  const sid = sidOf(a.access_token)

  const out = await cli(app, 'sessions', 'revoke', sid)
  t.equal(out.code, 0)
  t.equal(out.stdout, `revoked ${sid}\n`)
  t.equal(out.stderr, '')

  const refused = await refresh(app, a.refresh_token)
  t.equal(refused.status, 400, "the revoked login's refresh token fails")
  t.equal(refused.body.error, 'invalid_grant')
  t.equal((await userinfo(app, a.access_token)).status, 401, 'and its access token at /userinfo')

  t.equal((await userinfo(app, b.access_token)).status, 200, 'the other login is unaffected')
  const refreshed = await refresh(app, b.refresh_token)
  t.equal(refreshed.status, 200, 'and still refreshes')
  t.equal(sidOf(refreshed.body.access_token), sidOf(b.access_token))

  const again = await cli(app, 'sessions', 'revoke', sid, '--json')
  t.equal(again.code, 0, 'revoking again is not an error')
  t.same(JSON.parse(again.stdout), { sid, revoked: false })
  const againText = await cli(app, 'sessions', 'revoke', sid)
  t.equal(againText.stdout, `${sid} had already ended\n`)

  const other = await cli(app, 'sessions', 'revoke', sidOf(b.access_token), '--json')
  t.same(JSON.parse(other.stdout), { sid: sidOf(b.access_token), revoked: true })
  t.equal((await refresh(app, refreshed.body.refresh_token)).status, 400, 'the refreshed token of a revoked login fails too')

  const events = await app.deps.db.selectFrom('audit_events').select(['sub', 'sid']).where('event', '=', 'sessions_revoked').orderBy('id').execute()
  t.same(
    events,
    [
      { sub: subOf(a.access_token), sid },
      { sub: subOf(a.access_token), sid: sidOf(b.access_token) },
    ],
    'each revocation audited once; a repeat is not',
  )
})

t.test('sessions revoke --user <sub>: every login of the user ends; the user may log in again', async (t) => {
  const app = await startTestApp(t)
  const a = await app.login({ openid: 'oAll' })
  const b = await app.login({ openid: 'oAll', scope: 'openid' })
  const bystander = await app.login({ openid: 'oNotMe' })
  const sub = subOf(a.access_token)

  const out = await cli(app, 'sessions', 'revoke', '--user', sub, '--json')
  t.equal(out.code, 0)
  const result = JSON.parse(out.stdout) as { sub: string; revoked_sessions: string[] }
  t.equal(result.sub, sub)
  t.same([...result.revoked_sessions].sort(), [sidOf(a.access_token), sidOf(b.access_token)].sort())
  for (const tokens of [a, b]) {
    t.equal((await refresh(app, tokens.refresh_token)).body.error, 'invalid_grant')
    t.equal((await userinfo(app, tokens.access_token)).status, 401)
  }
  t.equal((await refresh(app, bystander.refresh_token)).status, 200, 'other users keep their logins')

  const again = await cli(app, 'sessions', 'revoke', '--user', sub)
  t.equal(again.code, 0)
  t.equal(again.stdout, `revoked 0 login(s) of ${sub}\n`)

  const back = await app.login({ openid: 'oAll' })
  t.equal(subOf(back.access_token), sub, 'the user is not disabled: a new login works')
  t.equal((await userinfo(app, back.access_token)).status, 200)
  const byOpenid = await cli(app, 'sessions', 'revoke', '--user', 'oAll')
  t.equal(byOpenid.stdout, `revoked 1 login(s) of ${sub}\n`, '--user takes an openid too')
  t.match(
    await app.deps.db.selectFrom('audit_events').select(['sub', 'detail']).where('event', '=', 'sessions_revoked').orderBy('id').execute(),
    [
      { sub, detail: 'sessions=2' },
      { sub, detail: 'sessions=0' },
      { sub, detail: 'sessions=1' },
    ],
  )
})

t.test('sessions: usage errors and unknown ids', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oUsage' })
  const sid = sidOf(login.access_token)
  const sub = subOf(login.access_token)

  const both = await cli(app, 'sessions', 'revoke', sid, '--user', sub)
  t.equal(both.code, 2, 'a sid and --user together')
  t.match(both.stderr, 'sessions revoke needs a sid or --user <sub>, not both')
  t.match(both.stderr, sessionsHelp, 'with the usage')
  t.equal(both.stdout, '')
  const neither = await cli(app, 'sessions', 'revoke')
  t.equal(neither.code, 2, 'neither a sid nor --user')
  t.match(neither.stderr, 'sessions revoke needs a sid or --user <sub>')
  t.equal((await refresh(app, login.refresh_token)).status, 200, 'no usage error revoked anything')

  const unknown = await cli(app, 'sessions', 'revoke', 'no-such-sid')
  t.equal(unknown.code, 1, 'an unknown sid')
  t.equal(unknown.stderr, 'minigate: no session no-such-sid\n')
  const unknownUser = await cli(app, 'sessions', 'revoke', '--user', 'nobody')
  t.equal(unknownUser.code, 1)
  t.equal(unknownUser.stderr, 'minigate: no user nobody\n')
  const unknownList = await cli(app, 'sessions', 'list', 'nobody')
  t.equal(unknownList.code, 1)
  t.equal(unknownList.stderr, 'minigate: no user nobody\n')

  const listNoUser = await cli(app, 'sessions', 'list')
  t.equal(listNoUser.code, 2)
  t.match(listNoUser.stderr, 'sessions list needs a user id')
  const bogus = await cli(app, 'sessions', 'purge')
  t.equal(bogus.code, 2)
  t.match(bogus.stderr, 'unknown sessions command: purge')
  const none = await cli(app, 'sessions')
  t.equal(none.code, 2)
  t.match(none.stderr, 'sessions needs a command')
  const extra = await cli(app, 'sessions', 'revoke', sid, 'extra')
  t.equal(extra.code, 2)
  t.match(extra.stderr, 'unexpected arguments: extra')
  t.equal((await userinfo(app, login.access_token)).status, 200, 'the login is still live')
})
