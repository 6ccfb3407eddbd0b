import t, { type Test } from 'tap'
import { startTestApp, type TestApp } from '../helpers/app.js'

function start(t: Test): Promise<TestApp> {
  return startTestApp(t)
}

t.test('healthy: 200 {status: ok}, never cached', async (t) => {
  const app = await start(t)
  const response = await fetch(`${app.url}/healthz`)
  t.equal(response.status, 200)
  t.equal(response.headers.get('cache-control'), 'no-store')
  t.same(await response.json(), { status: 'ok' })
})

t.test('with the database gone: 503 {status: unavailable} and no internals', async (t) => {
  const app = await start(t)
  await app.deps.db.destroy()
  const response = await fetch(`${app.url}/healthz`)
  t.equal(response.status, 503)
  t.equal(response.headers.get('cache-control'), 'no-store')
  const text = await response.text()
  t.same(JSON.parse(text), { status: 'unavailable' }, 'exactly the status, nothing else')
  t.notMatch(text, /sqlite|database|connection|Error|at /i, 'no error message or stack')
  t.ok(
    app.logs.some((line) => {
      const entry = JSON.parse(line) as { level: number; msg: string }
      return entry.level >= 50 && /health check failed/.test(entry.msg)
    }),
    'the cause is logged for operators',
  )
  const again = await fetch(`${app.url}/healthz`)
  t.equal(again.status, 503, 'still answering, still unavailable')
  const discovery = await fetch(`${app.url}/.well-known/openid-configuration`)
  t.equal(discovery.status, 200, 'the server keeps serving what needs no database')
})
