import { connect } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { freshDatabaseLocation } from '../helpers/database.js'
import { startServer } from '../helpers/process.js'

t.test('the metrics port serves /metrics, /healthz and /readyz; during SIGTERM /readyz answers 503 while a request finishes', async (t) => {
  const dir = t.testdir()
  const env = { MINIGATE_DB: await freshDatabaseLocation(t, dir), MINIGATE_KEYS_DIR: join(dir, 'keys'), MINIGATE_METRICS_PORT: '0' }
  const server = await startServer(env)
  t.teardown(() => server.child.kill('SIGKILL'))
  const metricsUrl = String((await server.waitForLog(/metrics listening/)).listen)
  t.not(metricsUrl, server.url, 'a listener of its own')

  t.equal((await fetch(`${server.url}/metrics`)).status, 404, 'not on the main port (no MINIGATE_METRICS_TOKEN)')
  const metrics = await fetch(`${metricsUrl}/metrics`)
  t.equal(metrics.status, 200, 'the metrics port needs no token')
  t.match(await metrics.text(), /minigate_nodejs_eventloop_lag_seconds/, 'process metrics included')
  t.same(await (await fetch(`${metricsUrl}/readyz`)).json(), { status: 'ready' })
  t.equal((await fetch(`${metricsUrl}/token`)).status, 404, 'and nothing else')

  const login = await fetch(`${server.url}/_dev/wechat/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  const { code } = (await login.json()) as { code: string }
  const tokens = await fetch(`${server.url}/token`, { method: 'POST', body: new URLSearchParams({ grant_type: 'urn:minigate:grant-type:wechat-code', code }) })
  const { refresh_token: refreshToken } = (await tokens.json()) as { refresh_token: string }
  const body = `grant_type=refresh_token&refresh_token=${refreshToken}`

  // A request in flight: headers and half of the body sent, the rest held back.
  const { port } = new URL(server.url)
  const socket = connect(Number(port), '127.0.0.1')
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  let answer = ''
  socket.on('data', (chunk: Buffer) => (answer += chunk.toString()))
  const half = Math.floor(body.length / 2)
  socket.write(`POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.slice(0, half)}`)

  server.child.kill('SIGTERM')
  await server.waitForLog(/shutting down/)
  const draining = await fetch(`${metricsUrl}/readyz`)
  t.equal(draining.status, 503, 'not ready while draining')
  t.same(await draining.json(), { status: 'not_ready', failed: ['shutting_down'] })
  t.equal((await fetch(`${metricsUrl}/healthz`)).status, 200, 'still alive')

  socket.write(body.slice(half))
  await new Promise<void>((resolve) => socket.once('close', () => resolve()))
  t.match(answer, /^HTTP\/1\.1 200 OK/, 'the request in flight got its answer')
  t.same(await server.exited, { code: 0, signal: null }, 'then the process exited cleanly')
})
