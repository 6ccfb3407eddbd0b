import { join } from 'node:path'
import { decodeJwt } from 'jose'
import { sql } from '../../src/db/kysely.js'
import t from 'tap'
import { openDatabase } from '../../src/db/connection.js'
import { freshDatabaseLocation, testDialect } from '../helpers/database.js'
import { startServer, type ServerProcess } from '../helpers/process.js'

const GRANT = 'urn:minigate:grant-type:wechat-code'
const CLIENTS = 8
const KILL_AFTER = 80

async function json(response: Response): Promise<Record<string, string>> {
  return (await response.json()) as Record<string, string>
}

function refresh(url: string, token: string): Promise<Response> {
  return fetch(`${url}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: token }),
  })
}

t.test('SIGKILL in the middle of a refresh storm: the database stays whole and every client can go on', async (t) => {
  const dir = t.testdir()
  // A fixed issuer: with PORT=0 each start would otherwise have its own, and refuse the other's tokens.
  const env = { MINIGATE_DB: await freshDatabaseLocation(t, dir), MINIGATE_KEYS_DIR: join(dir, 'keys'), MINIGATE_ISSUER: 'http://minigate.test' }
  const first: ServerProcess = await startServer(env)
  t.teardown(() => first.child.kill('SIGKILL'))

  // Each client logs in, then refreshes as fast as it can, always keeping the newest refresh token it was given.
  const newest: string[] = []
  for (let client = 0; client < CLIENTS; client += 1) {
    const { code } = await json(await fetch(`${first.url}/_dev/wechat/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ openid: `oCrash${client}` }) }))
    const tokens = await json(await fetch(`${first.url}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: GRANT, code: code as string }) }))
    newest.push(tokens.refresh_token as string)
  }

  let completed = 0
  let killed = false
  let serverErrors = 0
  const storm = newest.map(async (_token, client) => {
    while (!killed) {
      try {
        const response = await refresh(first.url, newest[client] as string)
        if (response.status >= 500) serverErrors += 1
        if (response.status === 200) newest[client] = (await json(response)).refresh_token as string
        else await response.body?.cancel()
        completed += 1
        if (completed >= KILL_AFTER && !killed) {
          killed = true
          first.child.kill('SIGKILL')
        }
      } catch {
        return // the connection died with the server
      }
    }
  })
  await Promise.all(storm)
  const exit = await first.exited
  t.equal(exit.signal, 'SIGKILL', 'the server was killed, not stopped')
  t.equal(serverErrors, 0, 'no 5xx before the kill')

  const second = await startServer(env)
  t.teardown(() => second.child.kill('SIGKILL'))

  const db = openDatabase(env.MINIGATE_DB, { create: false })
  t.teardown(() => db.destroy())
  if (testDialect === 'sqlite') t.equal((await sql<{ integrity_check: string }>`pragma integrity_check`.execute(db)).rows[0]?.integrity_check, 'ok', 'PRAGMA integrity_check is ok')
  const sessions = await db.selectFrom('login_sessions').select(['id', 'generation']).execute()
  t.equal(sessions.length, CLIENTS, 'one login per client')
  // Every rotation a client was answered survived the kill; at most one more (committed, its answer
  // lost with the connection) may be ahead of what the client holds.
  for (const [client, token] of newest.entries()) {
    const { sid, gen } = decodeJwt(token) as { sid: string; gen: number }
    const stored = sessions.find((session) => session.id === sid)?.generation
    t.ok(stored === gen || stored === gen + 1, `client ${client}: the login is at generation ${stored}, the client holds ${gen}`)
  }

  // A client whose last refresh was committed but never answered replays a spent token: a clean
  // invalid_grant (and its family is revoked). Every other client goes on.
  let goingOn = 0
  for (const [client, token] of newest.entries()) {
    const response = await refresh(second.url, token)
    const body = await json(response)
    if (response.status === 200) goingOn += 1
    else t.same([response.status, body.error], [400, 'invalid_grant'], `client ${client} gets a clean invalid_grant`)
  }
  t.ok(goingOn >= 1, `${goingOn} of ${CLIENTS} clients go on with their newest token`)
  second.child.kill('SIGTERM')
  await second.exited
})
