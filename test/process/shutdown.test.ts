import { connect } from 'node:net'
import { join } from 'node:path'
import { sql } from '../../src/db/kysely.js'
import t from 'tap'
import { openDatabase } from '../../src/db/connection.js'
import { freshDatabaseLocation, testDialect } from '../helpers/database.js'
import { startServer } from '../helpers/process.js'

t.test('SIGTERM: no new connections, the request in flight is finished, the database is closed, exit 0', async (t) => {
  const dir = t.testdir()
  const env = { MINIGATE_DB: await freshDatabaseLocation(t, dir), MINIGATE_KEYS_DIR: join(dir, 'keys') }
  const server = await startServer(env)
  t.teardown(() => server.child.kill('SIGKILL'))
  const { port } = new URL(server.url)

  const login = await fetch(`${server.url}/_dev/wechat/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  const { code } = (await login.json()) as { code: string }
  const tokens = await fetch(`${server.url}/token`, { method: 'POST', body: new URLSearchParams({ grant_type: 'urn:minigate:grant-type:wechat-code', code }) })
  const { refresh_token: refreshToken } = (await tokens.json()) as { refresh_token: string }
  // The request held in flight is a refresh: it needs no WeChat call (the simulator shares this server, and
  // a server shutting down accepts no connection, not even its own).
  const body = `grant_type=refresh_token&refresh_token=${refreshToken}`

  // A request in flight: headers and half of the body sent, the rest held back.
  const socket = connect(Number(port), '127.0.0.1')
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  let answer = ''
  socket.on('data', (chunk: Buffer) => (answer += chunk.toString()))
  const half = Math.floor(body.length / 2)
  socket.write(`POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.slice(0, half)}`)

  server.child.kill('SIGTERM')
  await server.waitForLog(/shutting down/)

  const refused = await new Promise<boolean>((resolve) => {
    const probe = connect(Number(port), '127.0.0.1')
    probe.once('connect', () => {
      probe.destroy()
      resolve(false)
    })
    probe.once('error', () => resolve(true))
  })
  t.ok(refused, 'a new connection is refused once shutdown began')

  socket.write(body.slice(half))
  await new Promise<void>((resolve) => socket.once('close', () => resolve()))
  t.match(answer, /^HTTP\/1\.1 200 OK/, 'the request in flight got its answer')
  t.match(answer, /"access_token":"ey/, 'and its tokens')

  const exit = await server.exited
  t.same(exit, { code: 0, signal: null }, 'the process exited cleanly')
  t.ok(server.lines.some((line) => line.includes('shut down cleanly')), 'it logged the clean shutdown')
  const db = openDatabase(env.MINIGATE_DB, { create: false })
  if (testDialect === 'sqlite') t.equal((await sql<{ integrity_check: string }>`pragma integrity_check`.execute(db)).rows[0]?.integrity_check, 'ok')
  const sessions = await db.selectFrom('login_sessions').select('generation').execute()
  t.same(sessions, [{ generation: 1 }], 'the refresh in flight was committed')
  await db.destroy()
})

