import t from 'tap'
import { startTestApp } from '../helpers/app.js'

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
