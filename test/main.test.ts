import { generateKeyPairSync } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { ConfigError } from '../src/config.js'
import { KeyFileError } from '../src/keys/signing-keys.js'
import { seedKeysDir } from './helpers/keys.js'
import { scratchFolder } from './helpers/scratch.js'
import { createLogger, type Logger } from '../src/log.js'
import { start } from '../src/main.js'

// One keys folder for every start of this file, holding a fixture key file that each start imports:
// generating an RSA key each time is the slow part.
// A folder of its own rather than t.testdir(), which tap's root test may empty while a start still reads it.
const KEYS_DIR = join(scratchFolder('main').dir, 'keys')
seedKeysDir(KEYS_DIR)

function capture(): { log: Logger; lines: () => Array<Record<string, any>> } {
  const raw: string[] = []
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      raw.push(...chunk.toString().split('\n').filter(Boolean))
      callback()
    },
  })
  return { log: createLogger({ level: 'info', destination }), lines: () => raw.map((line) => JSON.parse(line) as Record<string, any>) }
}

function env(t: Test, extra: Record<string, string> = {}): Record<string, string> {
  return { PORT: '0', HOST: '127.0.0.1', MINIGATE_DB: join(t.testdir(), 'db', 'minigate.sqlite'), MINIGATE_KEYS_DIR: KEYS_DIR, ...extra }
}

t.test('start() serves, warns loudly in development mode, and closes once', async (t) => {
  const { log, lines } = capture()
  const running = await start(env(t), log)
  t.teardown(() => running.close())
  t.match(running.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  t.not(running.url, 'http://127.0.0.1:0', 'the real port is reported')

  const health = await fetch(`${running.url}/healthz`)
  t.equal(health.status, 200)
  t.same(await health.json(), { status: 'ok' })

  const warning = lines().find((line) => /DEVELOPMENT MODE/.test(line.msg))
  t.ok(warning, 'the development warning is logged')
  t.equal(warning?.level, 40, 'as a warning')
  t.equal(warning?.appid, 'wx0000000000000dev')
  const listening = lines().find((line) => line.msg === 'minigate listening')
  t.equal(listening?.listen, running.url)
  t.equal(listening?.kid, running.deps.keys.active().kid)
  t.notOk(JSON.stringify(lines()).includes('development-secret-not-for-production'), 'the development secret is not logged')

  const first = running.close()
  const second = running.close()
  t.equal(second, first, 'a second close() returns the same promise')
  await t.resolves(first)
  await t.rejects(fetch(`${running.url}/healthz`), 'no longer listening')
  t.equal(running.close(), first, 'still the same promise after it settled')
})

t.test('an invalid environment rejects with a ConfigError and listens nowhere', async (t) => {
  const { log, lines } = capture()
  await t.rejects(start(env(t, { PORT: 'abc' }), log), ConfigError)
  await t.rejects(start(env(t, { PORT: 'abc' }), log), /PORT/)
  await t.rejects(start(env(t, { NODE_ENV: 'production' }), log), /WECHAT_APPS/)
  t.same(lines(), [], 'nothing was logged: the error is for the caller to print')
})

t.test('WECHAT_APPS with MINIGATE_WECHAT_SIMULATOR=1 logs the simulator warning', async (t) => {
  const { log, lines } = capture()
  const running = await start(env(t, { WECHAT_APPS: 'wxStaging:staging-secret-value', MINIGATE_WECHAT_SIMULATOR: '1' }), log)
  t.teardown(() => running.close())
  const messages = lines().map((line) => line.msg as string)
  t.ok(messages.some((msg) => /MINIGATE_WECHAT_SIMULATOR=1/.test(msg)), 'the simulator warning')
  t.notOk(messages.some((msg) => /DEVELOPMENT MODE/.test(msg)), 'not the development warning')
  t.notOk(JSON.stringify(lines()).includes('staging-secret-value'), 'the AppSecret is not logged')
  const login = await fetch(`${running.url}/_dev/wechat/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  t.equal(login.status, 200, 'the simulator is mounted')
})

t.test('real WeChat apps: no warning, no simulator', async (t) => {
  const { log, lines } = capture()
  // Production wants an existing database folder: the test's own directory.
  const production = { WECHAT_APPS: 'wx0123456789abcdef:0123456789abcdef0123456789abcdef', NODE_ENV: 'production', MINIGATE_ISSUER: 'https://id.example.com', MINIGATE_DB: join(t.testdir(), 'minigate.sqlite') }
  const running = await start(env(t, production), log)
  t.teardown(() => running.close())
  const warnings = lines().filter((line) => line.level >= 40)
  t.same(warnings, [], 'no warning')
  t.equal((await fetch(`${running.url}/_dev/wechat/login`, { method: 'POST' })).status, 404)
  t.equal((await fetch(`${running.url}/healthz`)).status, 200)
})

t.test('with PORT=0 the development server can still log in through its simulator', async (t) => {
  const { log } = capture()
  const running = await start(env(t), log)
  t.teardown(() => running.close())
  const login = await fetch(`${running.url}/_dev/wechat/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  const { code } = (await login.json()) as { code: string }
  const token = await fetch(`${running.url}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'urn:minigate:grant-type:wechat-code', code }).toString(),
  })
  t.equal(token.status, 200, 'the WeChat client reached the simulator on the real port')
  const discovery = (await (await fetch(`${running.url}/.well-known/openid-configuration`)).json()) as { issuer: string }
  t.equal(discovery.issuer, running.url.replace('127.0.0.1', 'localhost'), 'the default issuer names the real port')
})

t.test('a start that fails after listening releases its port', async (t) => {
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const port = (probe.address() as AddressInfo).port
  await new Promise<void>((resolve) => probe.close(() => resolve()))

  const { log } = capture()
  const dir = t.testdir({ keys: { 'weak.pem': generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string } })
  const started = start({ PORT: String(port), HOST: '127.0.0.1', MINIGATE_KEYS_DIR: join(dir, 'keys'), MINIGATE_DB: join(dir, 'db', 'minigate.sqlite') }, log)
  await t.rejects(started, KeyFileError)

  const again = createServer()
  await t.resolves(new Promise<void>((resolve, reject) => {
    again.once('error', reject)
    again.listen(port, '127.0.0.1', resolve)
  }), 'the port is free again')
  await new Promise<void>((resolve) => again.close(() => resolve()))
})

t.test('a port already in use rejects the start', async (t) => {
  const holder = createServer()
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => holder.close(() => resolve())))
  const { log } = capture()
  await t.rejects(start(env(t, { PORT: String((holder.address() as AddressInfo).port) }), log), { code: 'EADDRINUSE' })
})
