import { decodeProtectedHeader } from 'jose'
import t, { type Test } from 'tap'
import { keysHelp } from '../../src/cli/keys.js'
import { run } from '../../src/cli/main.js'
import { keyTiming } from '../../src/keys/key-ring.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { cli } from '../helpers/cli.js'

interface KeyJson {
  kid: string
  state: string
  file: string | null
  created_at: number
  activates_at: number | null
  retires_at: number | null
  safe_to_drop_at: number | null
}

async function listJson(t: Test, app: TestApp): Promise<KeyJson[]> {
  const out = await cli(app, 'keys', 'list', '--json')
  t.equal(out.code, 0, 'keys list --json succeeds')
  return JSON.parse(out.stdout) as KeyJson[]
}

async function stateOf(t: Test, app: TestApp, kid: string): Promise<string | undefined> {
  return (await listJson(t, app)).find((key) => key.kid === kid)?.state
}

/** `keys add --json`; the clock first moves one second, so keys are ordered by creation. */
async function addKey(t: Test, app: TestApp): Promise<KeyJson> {
  app.clock.advance(1)
  const out = await cli(app, 'keys', 'add', '--json')
  t.equal(out.code, 0, 'keys add succeeds')
  return JSON.parse(out.stdout) as KeyJson
}

async function jwksKids(app: TestApp): Promise<string[]> {
  const body = (await (await fetch(`${app.url}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> }
  return body.keys.map((key) => key.kid).sort()
}

const now = (app: TestApp) => Math.floor(app.clock.now() / 1000)
const iso = (seconds: number) => new Date(seconds * 1000).toISOString()
const kidOf = (token: string) => decodeProtectedHeader(token).kid as string
const userinfo = (app: TestApp, token: string) => fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${token}` } })

async function auditEvents(app: TestApp, event: string): Promise<Array<{ at: number; detail: string | null }>> {
  return app.deps.db.selectFrom('audit_events').select(['at', 'detail']).where('event', '=', event).orderBy('id').execute()
}

t.test('keys list: text and --json', async (t) => {
  const app = await startTestApp(t)
  const kid = app.deps.keys.active().kid
  const created = now(app)
  const [only, ...others] = await listJson(t, app)
  t.same(others, [])
  t.equal(only?.file, null, 'a generated key has no file: it lives sealed in the database')
  t.same({ ...only, file: undefined }, { kid, state: 'active', file: undefined, created_at: created, activates_at: created, retires_at: null, safe_to_drop_at: null })

  const next = await addKey(t, app)
  const keys = await listJson(t, app)
  t.same(
    keys.map((key) => [key.kid, key.state]),
    [
      [kid, 'active'],
      [next.kid, 'next'],
    ],
    'oldest first',
  )

  const text = await cli(app, 'keys', 'list')
  t.equal(text.code, 0)
  t.equal(text.stderr, '')
  const lines = text.stdout.trimEnd().split('\n')
  t.equal(lines.length, 3, 'a header and one line per key')
  // Every column as wide as its widest cell (a time is 24 characters; no key retires yet), two spaces apart.
  const row = (...cells: string[]) => [(cells[0] as string).padEnd(kid.length), (cells[1] as string).padEnd(6), (cells[2] as string).padEnd(24), (cells[3] as string).padEnd(24), (cells[4] as string).padEnd(7), cells[5]].join('  ')
  t.equal(lines[0], row('KID', 'STATE', 'CREATED', 'ACTIVATES', 'RETIRES', 'SAFE TO DROP'))
  t.equal(lines[1], row(kid, 'active', iso(created), iso(created), '-', '-'))
  t.equal(lines[2], row(next.kid, 'next', iso(next.created_at), '-', '-', iso(next.created_at)))
})

t.test('keys add: a next key, published by the running server after a reload, not signing', async (t) => {
  const app = await startTestApp(t)
  const oldKid = app.deps.keys.active().kid
  app.clock.advance(1)
  const text = await cli(app, 'keys', 'add')
  t.equal(text.code, 0)
  const timing = keyTiming(app.config)
  t.match(text.stdout, new RegExp(`^added \\S+ \\(next: published now, not signing; activate after ${iso(now(app) + timing.publishDelay)}\\)\\n$`))

  const added = await addKey(t, app)
  t.match(added, { state: 'next', created_at: now(app), activates_at: null, retires_at: null, safe_to_drop_at: now(app) })
  t.equal(added.file, null, 'no key file is written')
  const sealed = await app.deps.db.selectFrom('signing_keys').select('private_key').where('kid', '=', added.kid).executeTakeFirstOrThrow()
  t.match(sealed.private_key, /^v2\./, 'the new key is sealed in the database')

  t.same(await jwksKids(app), [oldKid], 'the running server has not reloaded yet')
  await app.deps.keys.reload()
  t.ok((await jwksKids(app)).includes(added.kid), 'after a reload the new key is in the JWKS')
  t.equal((await jwksKids(app)).length, 3)
  const tokens = await app.login()
  t.equal(kidOf(tokens.access_token), oldKid, 'but the old key still signs')
  t.equal(kidOf(tokens.refresh_token), oldKid)
  t.equal((await auditEvents(app, 'key_added')).length, 2, 'audited')
})

t.test('keys activate: refused until the key has been published for the JWKS cache time', async (t) => {
  const app = await startTestApp(t)
  const oldKid = app.deps.keys.active().kid
  const timing = keyTiming(app.config)
  const added = await addKey(t, app)
  await app.deps.keys.reload()

  const refused = await cli(app, 'keys', 'activate', added.kid)
  t.equal(refused.code, 1, 'refused right away')
  t.equal(refused.stdout, '')
  t.equal(
    refused.stderr,
    `minigate: key ${added.kid} was published at ${iso(added.created_at)}; verifiers may not have it before ${iso(added.created_at + timing.publishDelay)} (use --force to activate anyway)\n`,
    'the message says when it becomes safe',
  )
  app.clock.advance(timing.publishDelay - 1)
  t.equal((await cli(app, 'keys', 'activate', added.kid)).code, 1, 'still refused one second before')
  t.equal(await stateOf(t, app, added.kid), 'next')

  app.clock.advance(1)
  const done = await cli(app, 'keys', 'activate', added.kid, '--json')
  t.equal(done.code, 0, 'accepted once the publish delay has passed, without --force')
  t.match(JSON.parse(done.stdout), { kid: added.kid, state: 'active', activates_at: now(app), retires_at: null })
  const keys = await listJson(t, app)
  t.match(keys.find((key) => key.kid === oldKid), { state: 'retired', retires_at: now(app), safe_to_drop_at: now(app) + timing.dropDelay }, 'the old key retires')

  t.equal(kidOf((await app.login()).access_token), oldKid, 'the running server signs with the old key until it reloads')
  await app.deps.keys.reload()
  t.equal(kidOf((await app.login()).access_token), added.kid, 'then with the new one')
  t.same(await jwksKids(app), [oldKid, added.kid].sort(), 'both stay published')
  t.same(
    (await auditEvents(app, 'key_activated')).map((event) => event.detail),
    [`kid=${added.kid}`],
  )
})

t.test('keys activate --force: at once; new tokens carry the new kid after a reload', async (t) => {
  const app = await startTestApp(t)
  const oldKid = app.deps.keys.active().kid
  const added = await addKey(t, app)
  const text = await cli(app, 'keys', 'activate', added.kid, '--force')
  t.equal(text.code, 0)
  t.equal(text.stdout, `${added.kid} now signs new tokens\n`)
  t.equal(await stateOf(t, app, oldKid), 'retired')
  await app.deps.keys.reload()
  const tokens = await app.login({ scope: 'openid' })
  for (const name of ['access_token', 'refresh_token', 'id_token']) t.equal(kidOf(tokens[name]), added.kid, `${name} is signed by the new key`)
  t.same((await auditEvents(app, 'key_activated')).map((event) => event.detail), [`kid=${added.kid} forced`], 'the audit says it was forced')

  const again = await cli(app, 'keys', 'activate', oldKid, '--force')
  t.equal(again.code, 1, 'a retired key cannot be activated again')
  t.match(again.stderr, `key ${oldKid} is retired; only a next key can be activated`)
  const active = await cli(app, 'keys', 'activate', added.kid)
  t.equal(active.code, 1, 'nor the active one')
  t.match(active.stderr, 'is active; only a next key')
})

t.test('keys retire: refused for the signing key and while its tokens may be valid; --force withdraws it', async (t) => {
  const app = await startTestApp(t)
  const oldKid = app.deps.keys.active().kid
  const timing = keyTiming(app.config)

  const signing = await cli(app, 'keys', 'retire', oldKid)
  t.equal(signing.code, 1, 'the active key cannot be retired')
  t.match(signing.stderr, `key ${oldKid} is the signing key; activate another key first (minigate keys rotate)`)
  t.equal(await stateOf(t, app, oldKid), 'active')
  t.equal((await cli(app, 'keys', 'retire', oldKid, '--force')).code, 1, 'not even with --force')

  const oldTokens = await app.login({ openid: 'oRetire' })
  const added = await addKey(t, app)
  t.equal((await cli(app, 'keys', 'activate', added.kid, '--force')).code, 0)
  await app.deps.keys.reload()
  const newTokens = await app.login({ openid: 'oRetire' })
  t.equal(kidOf(newTokens.access_token), added.kid)
  const retiredAt = now(app)

  app.clock.advance(60)
  const early = await cli(app, 'keys', 'retire', oldKid)
  t.equal(early.code, 1, 'a retired key is kept while its tokens may be valid')
  t.equal(early.stderr, `minigate: tokens signed by key ${oldKid} may be valid until ${iso(retiredAt + timing.dropDelay)} (use --force to withdraw it anyway)\n`)
  t.equal(early.stdout, '')
  t.equal(await stateOf(t, app, oldKid), 'retired')
  t.equal((await userinfo(app, oldTokens.access_token)).status, 200, "the old key's tokens still work")

  const forced = await cli(app, 'keys', 'retire', oldKid, '--force', '--json')
  t.equal(forced.code, 0, '--force withdraws it (a compromised key)')
  t.match(JSON.parse(forced.stdout), { kid: oldKid, state: 'gone' })
  t.ok((await jwksKids(app)).includes(oldKid), 'the running server publishes it until it reloads')
  await app.deps.keys.reload()
  t.same(await jwksKids(app), [added.kid], 'then it is out of the JWKS')
  const rejected = await userinfo(app, oldTokens.access_token)
  t.equal(rejected.status, 401, "its access tokens fail at /userinfo")
  t.match(rejected.headers.get('www-authenticate'), /invalid_token/)
  const refresh = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: oldTokens.refresh_token })
  t.equal(refresh.status, 400, 'and its refresh tokens at /token')
  t.match(await refresh.json(), { error: 'invalid_grant' })
  t.equal((await userinfo(app, newTokens.access_token)).status, 200, "the new key's tokens are unaffected")
  t.same((await auditEvents(app, 'key_retired')).map((event) => event.detail), [`kid=${oldKid} forced`])

  const gone = await cli(app, 'keys', 'retire', oldKid, '--force')
  t.equal(gone.code, 1)
  t.match(gone.stderr, `key ${oldKid} is already gone`)
})

t.test('a retired key becomes gone on its own at its drop time', async (t) => {
  const app = await startTestApp(t)
  const oldKid = app.deps.keys.active().kid
  const timing = keyTiming(app.config)
  const added = await addKey(t, app)
  t.equal((await cli(app, 'keys', 'activate', added.kid, '--force')).code, 0)
  const retiredAt = now(app)
  t.match((await listJson(t, app)).find((key) => key.kid === oldKid), { state: 'retired', safe_to_drop_at: retiredAt + timing.dropDelay })

  app.clock.advance(timing.dropDelay - 1)
  t.equal(await stateOf(t, app, oldKid), 'retired', 'one second before its drop time')
  t.equal((await cli(app, 'keys', 'retire', oldKid)).code, 1, 'still refused then')
  app.clock.advance(1)
  t.equal(await stateOf(t, app, oldKid), 'gone', 'gone at its drop time, with no command')
  await app.deps.keys.reload()
  t.same(await jwksKids(app), [added.kid], 'and out of the JWKS')
  const gone = await cli(app, 'keys', 'retire', oldKid)
  t.equal(gone.code, 1)
  t.match(gone.stderr, 'is already gone')
})

t.test("the CLI's drop time follows the token lifetimes of its environment", async (t) => {
  const app = await startTestApp(t, { MINIGATE_ACCESS_TTL: '60', MINIGATE_REFRESH_TTL: '120' })
  const env = { MINIGATE_DB: app.config.dbFile, MINIGATE_KEYS_DIR: app.config.keysDir, MINIGATE_ACCESS_TTL: '60', MINIGATE_REFRESH_TTL: '120' }
  const exec = async (...argv: string[]) => {
    let stdout = ''
    let stderr = ''
    const code = await run(argv, { env, stdout: (text) => (stdout += text), stderr: (text) => (stderr += text), clock: app.clock })
    return { code, stdout, stderr }
  }
  const stateNow = async (kid: string) => (JSON.parse((await exec('keys', 'list', '--json')).stdout) as KeyJson[]).find((key) => key.kid === kid)?.state
  const oldKid = app.deps.keys.active().kid
  app.clock.advance(1)
  t.equal((await exec('keys', 'add')).code, 0)
  const [, added] = await listJson(t, app)
  t.equal((await exec('keys', 'activate', added?.kid as string, '--force')).code, 0)
  const timing = keyTiming(app.config)
  t.equal(timing.dropDelay, 900 + 300 + 60, 'the id token (15 min) is the longest-lived token here')
  app.clock.advance(timing.dropDelay - 1)
  const refused = await exec('keys', 'retire', oldKid)
  t.equal(refused.code, 1)
  t.match(refused.stderr, `may be valid until ${iso(now(app) + 1)}`)
  t.equal(await stateNow(oldKid), 'retired')
  t.equal(await stateOf(t, app, oldKid), 'retired', '(the same database read with the default 30-day refresh TTL)')
  app.clock.advance(1)
  t.equal(await stateNow(oldKid), 'gone', 'gone 20 minutes after it stopped signing, not 30 days')
})

t.test('keys retire on a key that never signed: at once, without --force', async (t) => {
  const app = await startTestApp(t)
  const oldKid = app.deps.keys.active().kid
  const added = await addKey(t, app)
  await app.deps.keys.reload()
  t.ok((await jwksKids(app)).includes(added.kid))
  const out = await cli(app, 'keys', 'retire', added.kid)
  t.equal(out.code, 0)
  t.equal(out.stdout, `${added.kid} withdrawn from the JWKS\n`)
  t.equal(await stateOf(t, app, added.kid), 'gone')
  await app.deps.keys.reload()
  t.same(await jwksKids(app), [oldKid])
  t.equal(kidOf((await app.login()).access_token), oldKid, 'the signing key is unchanged')
  t.equal((await cli(app, 'keys', 'activate', added.kid, '--force')).code, 1, 'a gone key cannot be activated')
})

t.test('keys: unknown kid, missing kid, unknown command', async (t) => {
  const app = await startTestApp(t)
  for (const command of ['activate', 'retire']) {
    const unknown = await cli(app, 'keys', command, 'no-such-kid')
    t.equal(unknown.code, 1, `${command} of an unknown kid is refused`)
    t.equal(unknown.stderr, 'minigate: no signing key no-such-kid\n')
    t.equal(unknown.stdout, '')

    const missing = await cli(app, 'keys', command)
    t.equal(missing.code, 2, `${command} without a kid is a usage error`)
    t.match(missing.stderr, `minigate: keys ${command} needs a kid`)
    t.match(missing.stderr, keysHelp, 'with the usage')
    t.equal(missing.stdout, '')

    const extra = await cli(app, 'keys', command, 'a', 'b')
    t.equal(extra.code, 2, 'extra arguments are a usage error')
    t.match(extra.stderr, 'unexpected arguments: b')
  }
  const unknownCommand = await cli(app, 'keys', 'explode')
  t.equal(unknownCommand.code, 2)
  t.match(unknownCommand.stderr, 'unknown keys command: explode')
  const none = await cli(app, 'keys')
  t.equal(none.code, 2)
  t.match(none.stderr, 'keys needs a command')
  t.match(none.stderr, keysHelp)
  const rotateKid = await cli(app, 'keys', 'rotate', 'some-kid')
  t.equal(rotateKid.code, 2)
  t.match(rotateKid.stderr, 'keys rotate takes no kid')
  t.same((await listJson(t, app)).length, 1, 'none of these changed the keys')
})

t.test('keys rotate: text and --json output, and the schedule it sets', async (t) => {
  const app = await startTestApp(t)
  const timing = keyTiming(app.config)
  const oldKid = app.deps.keys.active().kid
  app.clock.advance(1)
  const out = await cli(app, 'keys', 'rotate', '--json')
  t.equal(out.code, 0)
  t.equal(out.stderr, '')
  const rotation = JSON.parse(out.stdout) as { added: KeyJson; activatesAt: number; retiring: string[] }
  const at = now(app) + timing.publishDelay
  t.same(Object.keys(rotation).sort(), ['activatesAt', 'added', 'retiring'])
  t.match(rotation, { added: { state: 'next', created_at: now(app), activates_at: at, retires_at: null }, activatesAt: at, retiring: [oldKid] })
  const keys = await listJson(t, app)
  t.match(keys, [
    { kid: oldKid, state: 'active', retires_at: at, safe_to_drop_at: at + timing.dropDelay },
    { kid: rotation.added.kid, state: 'next', activates_at: at, retires_at: null, safe_to_drop_at: null },
  ])
  t.same((await auditEvents(app, 'key_rotation_scheduled')).map((event) => event.detail), [`kid=${rotation.added.kid} activates_at=${at}`])

  app.clock.advance(timing.publishDelay)
  t.same(
    (await listJson(t, app)).map((key) => key.state),
    ['retired', 'active'],
    'at activatesAt the schedule has switched the keys with no further command',
  )

  // The text form.
  app.clock.advance(1)
  const text = await cli(app, 'keys', 'rotate')
  t.equal(text.code, 0)
  const [, , third] = await listJson(t, app)
  t.equal(
    text.stdout,
    `added ${third?.kid}; it signs from ${iso(now(app) + timing.publishDelay)} (in ${timing.publishDelay} s); then ${rotation.added.kid} retires and stays published until its tokens have expired\n`,
  )
})

t.test('retiring the key a pending rotation will activate leaves a signing key', async (t) => {
  const app = await startTestApp(t)
  const timing = keyTiming(app.config)
  const oldKid = app.deps.keys.active().kid
  app.clock.advance(1)
  const rotation = JSON.parse((await cli(app, 'keys', 'rotate', '--json')).stdout) as { added: KeyJson; activatesAt: number }
  const out = await cli(app, 'keys', 'retire', rotation.added.kid)
  // Either refusing (exit 1) or withdrawing it and cancelling the old key's retirement is fine; what
  // must not happen is that at activatesAt the old key retires with nothing to take over.
  if (out.code === 0) t.equal(await stateOf(t, app, rotation.added.kid), 'gone')
  await app.deps.keys.reload()
  app.clock.advance(timing.publishDelay)
  const states = (await listJson(t, app)).map((key) => key.state)
  t.ok(states.includes('active'), 'after the planned activation time a key is still active', {
    states,
  })
  const response = await app.postForm('/token', { grant_type: 'urn:minigate:grant-type:wechat-code', code: await app.wxLogin() })
  t.equal(response.status, 200, `logins still work (got ${response.status})`)
  t.equal(app.deps.keys.get(oldKid) !== undefined, true)
})

t.test('a second rotate while one is pending is refused; retiring the pending key cancels the first', async (t) => {
  const app = await startTestApp(t)
  const original = app.deps.keys.active().kid
  const first = JSON.parse((await cli(app, 'keys', 'rotate', '--json')).stdout) as { added: KeyJson; activatesAt: number }
  app.clock.advance(10)
  const again = await cli(app, 'keys', 'rotate')
  t.equal(again.code, 1, 'refused')
  t.match(again.stderr, new RegExp(`already scheduled: key ${first.added.kid}`))
  t.equal((await cli(app, 'keys', 'retire', first.added.kid)).code, 0, 'the pending key can be withdrawn')
  const second = JSON.parse((await cli(app, 'keys', 'rotate', '--json')).stdout) as { added: KeyJson; activatesAt: number; retiring: string[] }
  t.same(second.retiring, [original], 'the new rotation retires the key that signs')
  app.clock.advance(second.activatesAt - now(app))
  await app.deps.keys.reload()
  t.equal(app.deps.keys.active().kid, second.added.kid, 'the newest rotation signs')
  const keys = await listJson(t, app)
  t.same(keys.filter((key) => key.state === 'active').map((key) => key.kid), [second.added.kid], 'exactly one key is in state active')
  t.equal(keys.find((key) => key.kid === first.added.kid)?.state, 'gone', 'the cancelled key is gone')
})

t.test('two keys generated in the same millisecond', async (t) => {
  // The first key of an app and `keys add` on a clock that has not moved: file names must not collide.
  const app = await startTestApp(t)
  const out = await cli(app, 'keys', 'add')
  t.equal(out.code, 0, 'keys add works at any moment', { stderr: out.stderr })
})

t.test('keys activate is refused while a rotation is scheduled', async (t) => {
  const app = await startTestApp(t)
  app.clock.advance(1)
  const rotation = JSON.parse((await cli(app, 'keys', 'rotate', '--json')).stdout) as { added: KeyJson }
  app.clock.advance(1)
  const other = await addKey(t, app)
  const refused = await cli(app, 'keys', 'activate', other.kid, '--force')
  t.equal(refused.code, 1)
  t.match(refused.stderr, new RegExp(`rotation is already scheduled: key ${rotation.added.kid}`))
  t.equal(await stateOf(t, app, other.kid), 'next', 'nothing changed')
})
