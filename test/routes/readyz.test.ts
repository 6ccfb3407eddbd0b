import t from 'tap'
import { startTestApp, WECHAT_CODE_GRANT } from '../helpers/app.js'
import { testDialect } from '../helpers/database.js'

t.test('ready: 200 {status: ready}, never cached', async (t) => {
  const app = await startTestApp(t)
  const response = await fetch(`${app.url}/readyz`)
  t.equal(response.status, 200)
  t.equal(response.headers.get('cache-control'), 'no-store')
  t.same(await response.json(), { status: 'ready' })
})

t.test('draining (the server is shutting down): 503 naming the check, while /healthz stays 200', async (t) => {
  const app = await startTestApp(t)
  app.deps.lifecycle.draining = true
  const response = await fetch(`${app.url}/readyz`)
  t.equal(response.status, 503)
  t.equal(response.headers.get('cache-control'), 'no-store')
  t.same(await response.json(), { status: 'not_ready', failed: ['shutting_down'] })
  t.same(await (await fetch(`${app.url}/healthz`)).json(), { status: 'ok' }, 'alive all the same: liveness is not readiness')
  t.equal((await app.login()).token_type, 'Bearer', 'requests that still arrive are served')
})

t.test('the database gone: 503 naming the database, no internals, the cause logged', async (t) => {
  const app = await startTestApp(t)
  await app.deps.db.destroy()
  const response = await fetch(`${app.url}/readyz`, { headers: { 'x-request-id': 'ready-probe-1' } })
  t.equal(response.status, 503)
  const text = await response.text()
  t.same(JSON.parse(text), { status: 'not_ready', failed: ['database'] })
  t.notMatch(text, /sqlite|postgres|connection|Error|at /i)
  const logged = app.logs.map((line) => JSON.parse(line) as Record<string, unknown>).find((entry) => /readiness check: the database/.test(String(entry.msg)))
  t.match(logged, { level: 50, req_id: 'ready-probe-1' }, 'logged as an error with the request id')
})

t.test('no active signing key: 503 naming it', async (t) => {
  const app = await startTestApp(t)
  app.deps.keys.active = () => {
    throw new Error('no signing key is active')
  }
  app.deps.lifecycle.draining = true
  const response = await fetch(`${app.url}/readyz`)
  t.equal(response.status, 503)
  t.same(await response.json(), { status: 'not_ready', failed: ['shutting_down', 'signing_key'] }, 'every failed check is named')
})

t.test('a database that can no longer be written durably: changes refused, /healthz and /readyz 503, a fatal line', { skip: testDialect !== 'sqlite' && 'SQLite only: PostgreSQL makes its commits durable itself' }, async (t) => {
  const app = await startTestApp(t)
  let notified = 0
  app.deps.lifecycle.onStorageFailure = () => (notified += 1)
  const wal = app.deps.lifecycle.wal as NonNullable<typeof app.deps.lifecycle.wal>
  const before = await app.login()
  // The disk fails to write the WAL back: fdatasync reports it once.
  wal.sync = async () => {
    throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', syscall: 'fdatasync' })
  }
  const login = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: await app.wxLogin() })
  t.equal(login.status, 500, 'the login that could not be made durable is not acknowledged')
  t.same(await login.json(), { error: 'server_error', error_description: 'the server could not handle the request' })
  wal.sync = async () => undefined
  const refresh = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: before.refresh_token })
  t.equal(refresh.status, 500, 'nor is any change after it, though a sync would succeed now')
  t.same(await (await fetch(`${app.url}/readyz`)).json(), { status: 'not_ready', failed: ['database'] })
  t.equal((await fetch(`${app.url}/healthz`)).status, 503, 'not alive either: the process must restart')
  t.equal(notified, 1, 'the server is told once (main.ts then shuts down and exits 1)')
  const fatal = app.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.level === 60)
  t.equal(fatal.length, 1)
  t.match(fatal[0], { msg: /WAL could not be synced/, err: { code: 'EIO' } })
})
