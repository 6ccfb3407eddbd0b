import { join } from 'node:path'
import Database from 'better-sqlite3'
import t from 'tap'
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
  const env = { MINIGATE_DB: join(dir, 'db', 'minigate.sqlite'), MINIGATE_KEYS_DIR: join(dir, 'keys'), MINIGATE_ISSUER: 'http://minigate.test' }
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

  const db = new Database(env.MINIGATE_DB, { readonly: true })
  t.teardown(() => db.close())
  t.equal((db.pragma('integrity_check', { simple: true }) as string), 'ok', 'PRAGMA integrity_check is ok')
  const families = db
    .prepare('select session_id, sum(case when spent_at is null and revoked_at is null then 1 else 0 end) as live from refresh_tokens group by session_id')
    .all() as Array<{ session_id: string; live: number }>
  t.equal(families.length, CLIENTS, 'one family per client')
  for (const family of families) t.ok(family.live <= 1, `family ${family.session_id} has at most one live refresh token (${family.live})`)

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
