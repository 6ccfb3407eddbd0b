import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { Test } from 'tap'
import { createApp } from '../../src/app.js'
import { loadConfig, type Config } from '../../src/config.js'
import { buildDeps, closeDeps, type AppDeps } from '../../src/deps.js'
import { keyTiming } from '../../src/keys/key-ring.js'
import type { KeyAdmin } from '../../src/keys/rotation.js'
import { createLogger } from '../../src/log.js'
import type { SimulatorState } from '../../src/wechat/simulator/state.js'
import { TestClock } from './clock.js'
import { scratchFolder } from './scratch.js'
import { createFreshDatabase } from './database.js'
import { fixtureKeyGenerator } from './keys.js'
import { checkResponsesOf } from './openapi.js'

export const WECHAT_CODE_GRANT = 'urn:minigate:grant-type:wechat-code'

export interface TestApp {
  url: string
  config: Config
  deps: AppDeps
  clock: TestClock
  /** Everything the app logged, one JSON line each. */
  logs: string[]
  simulator: SimulatorState
  server: Server
  /** POST a form body, as a mini-program's wx.request does. */
  postForm(path: string, params: Record<string, string>, headers?: Record<string, string>): Promise<Response>
  /** POST a JSON body. */
  postJson(path: string, body: unknown, headers?: Record<string, string>): Promise<Response>
  /** wx.login() against the simulator: a fresh code. */
  wxLogin(input?: { appid?: string; openid?: string; unionid?: string; session_key?: string }): Promise<string>
  /** wx.login() and then the wechat-code grant; returns the token response. */
  login(input?: { appid?: string; openid?: string; unionid?: string; scope?: string; client_id?: string; resource?: string }): Promise<Record<string, any>>
  /** Stops this minigate and starts a new one on the same database, keys and URL: a restart. */
  restart(): Promise<void>
  close(): Promise<void>
}

/**
 * Builds minigate on a fresh database and key folder in the test's own directory, with the WeChat
 * simulator mounted in-process, listening on a random loopback port. The WeChat client reaches the
 * simulator over real HTTP. Every response `fetch` gets from the app is checked against the OpenAPI
 * document (src/openapi.ts): one that contradicts it fails the test. Rate limits are off unless `env` sets MINIGATE_RATE_LIMITS. Torn down with the test.
 */
export async function startTestApp(t: Test, env: Record<string, string> = {}, clock = new TestClock()): Promise<TestApp> {
  const { dir, remove } = scratchFolder('app')
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const url = `http://127.0.0.1:${port}`
  const database = await createFreshDatabase(dir)
  const config = loadConfig({
    PORT: String(port),
    MINIGATE_ISSUER: url,
    MINIGATE_DB: database.location,
    MINIGATE_DB_POOL_SIZE: '4',
    MINIGATE_KEYS_DIR: join(dir, 'keys'),
    WECHAT_API_BASE: `${url}/_dev/wechat`,
    // Tests of other features send hundreds of requests from one address without moving the clock;
    // the rate-limit tests turn limits on themselves.
    MINIGATE_RATE_LIMITS: 'off',
    ...env,
  })
  const logs: string[] = []
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      logs.push(...chunk.toString().split('\n').filter(Boolean))
      callback()
    },
  })
  const log = createLogger({ level: 'debug', destination })
  // Committed fixture keys instead of fresh RSA keys (130 ms each): key generation is tested on its own.
  const generateKey = fixtureKeyGenerator()
  const deps = await buildDeps(config, { clock, log, generateKey })
  server.on('request', createApp(deps).callback())
  // Every response a test receives from this app is held to the OpenAPI document (test/helpers/openapi.ts).
  checkResponsesOf(url)

  const post = (path: string, body: string, contentType: string, headers: Record<string, string> = {}) =>
    fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': contentType, ...headers }, body })

  const app: TestApp = {
    url,
    config,
    deps,
    clock,
    logs,
    simulator: deps.simulator?.state as SimulatorState,
    server,
    postForm: (path, params, headers) => post(path, new URLSearchParams(params).toString(), 'application/x-www-form-urlencoded', headers),
    postJson: (path, body, headers) => post(path, JSON.stringify(body), 'application/json', headers),
    async wxLogin(input = {}) {
      const response = await app.postJson('/_dev/wechat/login', input)
      if (response.status !== 200) throw new Error(`simulator login failed: ${response.status} ${await response.text()}`)
      return ((await response.json()) as { code: string }).code
    },
    async login(input = {}) {
      const { scope, client_id, resource, ...phone } = input
      const code = await app.wxLogin(phone)
      const params: Record<string, string> = { grant_type: WECHAT_CODE_GRANT, code }
      if (scope !== undefined) params.scope = scope
      if (resource !== undefined) params.resource = resource
      if (client_id !== undefined) params.client_id = client_id
      else if (phone.appid !== undefined) params.client_id = phone.appid
      const response = await app.postForm('/token', params)
      const body = (await response.json()) as Record<string, any>
      if (response.status !== 200) throw new Error(`login failed: ${response.status} ${JSON.stringify(body)}`)
      return body
    },
    async restart() {
      // Keep-alive connections stay open: closing them here raced the client, which could still send
      // its next request on a socket it had not yet seen closed ("other side closed").
      server.removeAllListeners('request')
      await closeDeps(app.deps)
      app.deps = await buildDeps(config, { clock, log, generateKey })
      app.simulator = app.deps.simulator?.state as SimulatorState
      server.on('request', createApp(app.deps).callback())
    },
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await closeDeps(app.deps)
    },
  }
  t.teardown(async () => {
    await app.close()
    await database.drop()
    remove()
  })
  return app
}

/** The key operations (what the CLI does) on a test app's database, with fixture keys. */
export function keyAdminOf(app: TestApp, generateKey = fixtureKeyGenerator(5)): KeyAdmin {
  return { db: app.deps.db, secretBox: app.deps.secretBox, clock: app.clock, timing: keyTiming(app.config), generateKey }
}

/** Counts the rows of every table, to prove a failed request wrote nothing. */
export async function rowCounts(deps: AppDeps): Promise<Record<string, number>> {
  const counts: Record<string, number> = {}
  for (const table of ['users', 'wechat_identities', 'login_sessions'] as const) {
    const row = await deps.db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()
    counts[table] = Number(row.n)
  }
  return counts
}
