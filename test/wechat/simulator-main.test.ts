import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { seedKeysDir } from '../helpers/keys.js'
import { startServer } from '../helpers/process.js'

// The simulator on a port of its own (`node dist/wechat/simulator/main.js`), as `npm run bench` runs it:
// a minigate configured as in production talks to it as it would to WeChat.

const SIMULATOR = fileURLToPath(new URL('../../src/wechat/simulator/main.js', import.meta.url))
const APPID = 'wx0123456789abcdef'
const SECRET = '0123456789abcdef0123456789abcdef'

interface Simulator {
  child: ChildProcess
  url: string
  stdout: string[]
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

function spawnSimulator(env: Record<string, string>): { child: ChildProcess; stdout: string[]; stderr: () => string; exited: Simulator['exited'] } {
  const child = spawn(process.execPath, [SIMULATOR], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const stdout: string[] = []
  let stderr = ''
  createInterface({ input: child.stdout! }).on('line', (line) => stdout.push(line))
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })))
  return { child, stdout, stderr: () => stderr, exited }
}

/** Starts the simulator for one app on a free port; resolves once it printed its URL. */
function startSimulator(t: Test): Promise<Simulator> {
  const spawned = spawnSimulator({ WECHAT_APPS: `${APPID}:${SECRET}`, PORT: '0' })
  t.teardown(() => void spawned.child.kill('SIGKILL'))
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: spawned.child.stdout! })
    rl.on('line', (line) => {
      const match = /listening on (\S+)/.exec(line)
      if (match) resolve({ ...spawned, url: match[1] as string })
    })
    void spawned.exited.then(({ code }) => reject(new Error(`the simulator exited (${code}): ${spawned.stderr()}`)))
  })
}

async function mintCode(url: string, body: Record<string, string>): Promise<string> {
  const response = await fetch(`${url}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return ((await response.json()) as { code: string }).code
}

async function jscode2session(url: string, code: string, secret = SECRET): Promise<Record<string, unknown>> {
  const query = new URLSearchParams({ appid: APPID, secret, js_code: code, grant_type: 'authorization_code' })
  return (await fetch(`${url}/sns/jscode2session?${query.toString()}`)).json() as Promise<Record<string, unknown>>
}

t.test('it prints its URL, mints a code at /login and exchanges it at /sns/jscode2session, once', async (t) => {
  const simulator = await startSimulator(t)
  t.match(simulator.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  t.match(simulator.stdout[0], `WECHAT_API_BASE=${simulator.url}`, 'it says how to point minigate at it')

  const code = await mintCode(simulator.url, { openid: 'oStandalone', unionid: 'uStandalone' })
  const session = await jscode2session(simulator.url, code)
  t.equal(session.openid, 'oStandalone')
  t.equal(session.unionid, 'uStandalone')
  t.match(session.session_key, /^[A-Za-z0-9+/]{22}==$/)
  t.same(await jscode2session(simulator.url, code), { errcode: 40163, errmsg: 'code been used' }, 'a code works once, as on WeChat')
  t.same(await jscode2session(simulator.url, await mintCode(simulator.url, {}), 'f'.repeat(32)), { errcode: 40125, errmsg: 'invalid appsecret' })

  const refused = await fetch(`${simulator.url}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ appid: 'wxffffffffffffffff' }) })
  t.equal(refused.status, 400, 'a control call for an app it does not play is a 400')
  t.match(await refused.json(), { error: 'invalid_request' })

  simulator.child.kill('SIGTERM')
  t.same(await simulator.exited, { code: 0, signal: null }, 'SIGTERM stops it cleanly')
})

t.test('minigate configured as in production logs in through it; the simulator is not mounted in minigate', async (t) => {
  const simulator = await startSimulator(t)
  const dir = t.testdir()
  seedKeysDir(join(dir, 'keys'))
  const server = await startServer({
    WECHAT_APPS: `${APPID}:${SECRET}`,
    WECHAT_API_BASE: simulator.url,
    MINIGATE_DB: join(dir, 'db', 'minigate.sqlite'),
    MINIGATE_KEYS_DIR: join(dir, 'keys'),
  })
  t.teardown(() => void server.child.kill('SIGKILL'))

  const code = await mintCode(simulator.url, { openid: 'oThroughMinigate' })
  const response = await fetch(`${server.url}/token`, { method: 'POST', body: new URLSearchParams({ grant_type: 'urn:minigate:grant-type:wechat-code', code }) })
  t.equal(response.status, 200)
  t.match(await response.json(), { token_type: 'Bearer', access_token: /^ey/, refresh_token: /^ey/ })
  t.same(await jscode2session(simulator.url, code), { errcode: 40163, errmsg: 'code been used' }, 'minigate spent the code at the simulator')
  t.equal((await fetch(`${server.url}/_dev/wechat/login`, { method: 'POST', body: '{}' })).status, 404, 'minigate mounts no simulator of its own')
  t.notOk(server.lines.some((line) => line.includes('DEVELOPMENT MODE')), 'minigate is not in development mode')
})

t.test('without WECHAT_APPS, or with a malformed PORT, it exits 1 with a message naming the variable', async (t) => {
  const cases = [
    [{}, /^wechat simulator: WECHAT_APPS must name the apps/],
    [{ WECHAT_APPS: 'wx-no-secret' }, /^wechat simulator: WECHAT_APPS entry 1 must be appid:secret/],
    [{ WECHAT_APPS: `${APPID}:${SECRET}`, PORT: 'eighty' }, /^wechat simulator: PORT must be a whole number/],
  ] as const
  const runs = cases.map(([env]) => spawnSimulator(env))
  for (const [i, spawned] of runs.entries()) {
    t.same(await spawned.exited, { code: 1, signal: null })
    t.match(spawned.stderr(), cases[i]![1])
    t.notMatch(spawned.stderr(), /\n\s+at /, 'no stack trace')
    t.same(spawned.stdout, [])
  }
})

t.test('a port in use is refused with a message, not a stack trace', async (t) => {
  const simulator = await startSimulator(t)
  const spawned = spawnSimulator({ WECHAT_APPS: `${APPID}:${SECRET}`, PORT: new URL(simulator.url).port })
  t.same(await spawned.exited, { code: 1, signal: null })
  t.match(spawned.stderr(), /^wechat simulator: port \d+ is in use \(PORT\)/)
})
