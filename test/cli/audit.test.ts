import t from 'tap'
import { auditHelp } from '../../src/cli/audit.js'
import { startTestApp } from '../helpers/app.js'
import { cli } from '../helpers/cli.js'
import { bearer, subOf } from '../helpers/lifecycle.js'

t.test('minigate audit: by user, event and time, as text or JSON; CLI rows say the operator acted', async (t) => {
  const app = await startTestApp(t)
  const start = new Date(app.clock.now()).toISOString()
  const a = await app.login({ openid: 'oAuditA' })
  app.clock.advance(3600)
  const middle = new Date(app.clock.now()).toISOString()
  const b = await app.login({ openid: 'oAuditB' })
  await bearer(app, '/logout', b.access_token, { method: 'POST' })
  t.equal((await cli(app, 'users', 'disable', subOf(a.access_token))).code, 0)
  const [subA, subB] = [subOf(a.access_token), subOf(b.access_token)]

  const all = await cli(app, 'audit', '--json')
  t.equal(all.code, 0, all.stderr)
  const rows = JSON.parse(all.stdout) as Array<Record<string, unknown>>
  t.same(rows.map((row) => [row.event, row.sub, row.actor]), [
    ['user_disabled', subA, 'operator'],
    ['logout', subB, 'user'],
    ['user_created', subB, 'user'],
    ['user_created', subA, 'user'],
  ], 'newest first, with who acted')
  t.match(rows[0], { at: new Date(app.clock.now() - (app.clock.now() % 1000)).toISOString(), client_id: null, detail: 'sessions=1' })

  const byUser = JSON.parse((await cli(app, 'audit', '--user', subB, '--json')).stdout) as Array<Record<string, unknown>>
  t.same(byUser.map((row) => row.event), ['logout', 'user_created'])
  const byEvent = JSON.parse((await cli(app, 'audit', '--event=user_created', '--json')).stdout) as Array<Record<string, unknown>>
  t.same(byEvent.map((row) => row.sub), [subB, subA])
  const early = JSON.parse((await cli(app, 'audit', '--since', start, '--until', middle, '--json')).stdout) as Array<Record<string, unknown>>
  t.same(early.map((row) => [row.event, row.sub]), [['user_created', subA]], '--since is inclusive, --until exclusive')
  const limited = JSON.parse((await cli(app, 'audit', '--limit', '1', '--json')).stdout) as Array<Record<string, unknown>>
  t.equal(limited.length, 1)

  const text = await cli(app, 'audit', '--user', subA)
  t.equal(text.code, 0)
  t.match(text.stdout, new RegExp(`user_disabled\\s+operator\\s+${subA.replace(/[-]/g, '\\-')}`))
  t.equal((await cli(app, 'audit', '--user', 'nobody')).stdout, 'no events\n')

  for (const [args, message] of [
    [['--since', 'yesterday'], '--since must be an ISO 8601 time'],
    [['--limit', '0'], '--limit needs a number from 1 to 10000'],
    [['--limit', 'x'], '--limit needs a number'],
    [['--event'], '--event needs a value'],
    [['extra'], 'unexpected arguments: extra'],
  ] as const) {
    const out = await cli(app, 'audit', ...args)
    t.equal(out.code, 2, args.join(' '))
    t.match(out.stderr, message)
  }
  t.match(await cli(app, 'audit', '--since', middle, '--until', start), { code: 1, stderr: /--since must be before --until/ })
  t.match((await cli(app, 'audit', '--help')).stdout, auditHelp)
})

t.test('key operations from the CLI are recorded as the operator', async (t) => {
  const app = await startTestApp(t)
  t.equal((await cli(app, 'keys', 'add')).code, 0)
  const rows = JSON.parse((await cli(app, 'audit', '--event', 'key_added', '--json')).stdout) as Array<Record<string, unknown>>
  t.match(rows, [{ event: 'key_added', actor: 'operator' }])
})
