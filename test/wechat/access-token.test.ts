import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { DEV_APP } from '../../src/config.js'
import { createLogger } from '../../src/log.js'
import { createAccessTokenManager, type AccessTokenManager } from '../../src/wechat/access-token.js'
import type { WeChatAccessToken, WeChatClient } from '../../src/wechat/client.js'
import { WeChatError } from '../../src/wechat/errors.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { TestClock } from '../helpers/clock.js'
import { sharedKeysDir } from '../helpers/keys.js'

// ---------------------------------------------------------------------------------------------------
// Unit tests: the manager over a fake WeChat client.
// ---------------------------------------------------------------------------------------------------

interface Deferred<T> {
  promise: Promise<T>
  resolve(value: T): void
  reject(error: unknown): void
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void
  let reject!: (error: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/** A fake WeChat client whose fetchAccessToken answers from a script; the other APIs are never used. */
class FakeWeChat implements WeChatClient {
  fetches: Array<{ appid: string; api: string }> = []
  /** Each fetch takes the next scripted answer; once the script is empty, fresh tokens are issued. */
  script: Array<WeChatAccessToken | Error | Promise<WeChatAccessToken>> = []
  issued = 0
  expiresIn = 7200

  fetchAccessToken(appid: string, api: 'stable_token' | 'token'): Promise<WeChatAccessToken> {
    this.fetches.push({ appid, api })
    const next = this.script.shift()
    if (next instanceof Error) return Promise.reject(next)
    if (next !== undefined) return Promise.resolve(next)
    this.issued += 1
    return Promise.resolve({ accessToken: `T${this.issued}`, expiresIn: this.expiresIn })
  }

  close(): void {}

  code2Session(): never {
    throw new Error('not used by the access_token manager')
  }

  getPhoneNumber(): never {
    throw new Error('not used by the access_token manager')
  }
}

interface Harness {
  wechat: FakeWeChat
  clock: TestClock
  manager: AccessTokenManager
  logs: string[]
}

function harness(t: Test, options: { api?: 'stable_token' | 'token'; busyBackoffMs?: number[] } = {}): Harness {
  const wechat = new FakeWeChat()
  const clock = new TestClock()
  const logs: string[] = []
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      logs.push(...chunk.toString().split('\n').filter(Boolean))
      callback()
    },
  })
  const manager = createAccessTokenManager({
    wechat,
    clock,
    log: createLogger({ level: 'debug', destination }),
    api: options.api ?? 'stable_token',
    busyBackoffMs: options.busyBackoffMs ?? [1, 1],
  })
  t.teardown(() => manager.close())
  return { wechat, clock, manager, logs }
}

const invalidToken = (errcode = 40001) => new WeChatError('getuserphonenumber', 'access_token_invalid', errcode)
const busy = (api = 'stable_token') => new WeChatError(api, 'busy', -1)

t.test('50 concurrent calls share one fetch (single flight)', async (t) => {
  const { wechat, manager } = harness(t)
  const pending = deferred<WeChatAccessToken>()
  wechat.script.push(pending.promise)
  const seen: string[] = []
  const calls = Array.from({ length: 50 }, (_, index) =>
    manager.withAccessToken(DEV_APP.appid, async (token) => {
      seen.push(token)
      return index
    }),
  )
  // Let every caller reach the manager before WeChat answers.
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(wechat.fetches.length, 1, 'one fetch while 50 callers wait')
  pending.resolve({ accessToken: 'T-shared', expiresIn: 7200 })
  t.same(await Promise.all(calls), Array.from({ length: 50 }, (_, index) => index), 'every call ran and returned its own result')
  t.equal(wechat.fetches.length, 1, 'still one fetch')
  t.equal(seen.length, 50)
  t.ok(seen.every((token) => token === 'T-shared'), 'every call got the shared token')

  await manager.withAccessToken(DEV_APP.appid, async () => undefined)
  t.equal(wechat.fetches.length, 1, 'a later call uses the cached token')
})

t.test('a failed single-flight fetch fails every waiter, and the next call fetches again', async (t) => {
  const { wechat, manager } = harness(t)
  const pending = deferred<WeChatAccessToken>()
  wechat.script.push(pending.promise)
  let ran = 0
  const calls = Array.from({ length: 10 }, () =>
    manager.withAccessToken(DEV_APP.appid, async () => {
      ran += 1
    }),
  )
  await new Promise((resolve) => setImmediate(resolve))
  pending.reject(new WeChatError('stable_token', 'rate_limited', 45011))
  const results = await Promise.allSettled(calls)
  t.ok(results.every((result) => result.status === 'rejected' && result.reason instanceof WeChatError && result.reason.failure === 'rate_limited'), 'all ten rejected with the WeChat failure')
  t.equal(ran, 0, 'no call ran without a token')
  t.equal(wechat.fetches.length, 1, 'one fetch for the ten')

  t.equal(await manager.withAccessToken(DEV_APP.appid, async (token) => token), 'T1', 'the next call fetches anew')
  t.equal(wechat.fetches.length, 2)
})

t.test('the configured API is the one fetched, per appid', async (t) => {
  const stable = harness(t)
  await stable.manager.withAccessToken('wxA', async () => undefined)
  await stable.manager.withAccessToken('wxB', async () => undefined)
  await stable.manager.withAccessToken('wxA', async () => undefined)
  t.same(stable.wechat.fetches, [
    { appid: 'wxA', api: 'stable_token' },
    { appid: 'wxB', api: 'stable_token' },
  ], 'one fetch per appid, stable_token by default')

  const plain = harness(t, { api: 'token' })
  t.equal(await plain.manager.withAccessToken('wxA', async (token) => token), 'T1')
  t.same(plain.wechat.fetches, [{ appid: 'wxA', api: 'token' }], "api 'token' uses the plain token API")
})

t.test('a cached token is reused until expires_in - 300 s by the injected clock', async (t) => {
  const { wechat, clock, manager } = harness(t)
  const tokenNow = () => manager.withAccessToken(DEV_APP.appid, async (token) => token)
  t.equal(await tokenNow(), 'T1')
  clock.advance(7200 - 300 - 1)
  t.equal(await tokenNow(), 'T1', 'still cached 1 s before the safety margin')
  t.equal(wechat.fetches.length, 1)
  clock.advance(1)
  t.equal(await tokenNow(), 'T2', 'renewed at expires_in - 300 s')
  t.equal(wechat.fetches.length, 2)
  clock.advance(6899)
  t.equal(await tokenNow(), 'T2', 'the new token is cached for its own lifetime')
  t.equal(wechat.fetches.length, 2)
})

t.test('a short-lived token is kept for half its life, never past it', async (t) => {
  const { wechat, clock, manager } = harness(t)
  wechat.expiresIn = 400
  const tokenNow = () => manager.withAccessToken(DEV_APP.appid, async (token) => token)
  t.equal(await tokenNow(), 'T1')
  clock.advance(199)
  t.equal(await tokenNow(), 'T1', 'kept for half of a 400 s token')
  clock.advance(1)
  t.equal(await tokenNow(), 'T2', 'renewed at 200 s, well before WeChat expires it')
  t.equal(wechat.fetches.length, 2)
})

t.test('an invalid-token failure drops the token and retries once with a fresh one', async (t) => {
  for (const errcode of [40001, 40014, 42001]) {
    await t.test(`errcode ${errcode}`, async (t) => {
      const { wechat, manager, logs } = harness(t)
      const tokens: string[] = []
      const result = await manager.withAccessToken(DEV_APP.appid, async (token) => {
        tokens.push(token)
        if (token === 'T1') throw invalidToken(errcode)
        return 'phone'
      })
      t.equal(result, 'phone', 'the retried call succeeded')
      t.same(tokens, ['T1', 'T2'], 'called twice: the failing token, then a fresh one')
      t.equal(wechat.fetches.length, 2, 'one renewal')
      t.equal(await manager.withAccessToken(DEV_APP.appid, async (token) => token), 'T2', 'the fresh token is cached')
      t.equal(wechat.fetches.length, 2)
      t.ok(logs.some((line) => line.includes('renewing once')), 'the renewal is logged')
      t.notOk(logs.some((line) => /"T[12]"/.test(line)), 'no token value is logged')
    })
  }
})

t.test('a token another request already renewed is not dropped', async (t) => {
  const { wechat, manager } = harness(t)
  const releaseSlow = deferred<void>()
  const slowTokens: string[] = []
  const fastTokens: string[] = []
  // Both requests start with T1. The fast one fails at once and renews to T2; the slow one fails later,
  // with T1, after T2 is cached: it must retry with T2 and leave T2 in the cache.
  const slow = manager.withAccessToken(DEV_APP.appid, async (token) => {
    slowTokens.push(token)
    if (token === 'T1') {
      await releaseSlow.promise
      throw invalidToken()
    }
    return 'slow done'
  })
  const fast = manager.withAccessToken(DEV_APP.appid, async (token) => {
    fastTokens.push(token)
    if (token === 'T1') throw invalidToken()
    return 'fast done'
  })
  t.equal(await fast, 'fast done')
  t.same(fastTokens, ['T1', 'T2'])
  t.equal(wechat.fetches.length, 2, 'the fast request renewed the token')
  releaseSlow.resolve()
  t.equal(await slow, 'slow done')
  t.same(slowTokens, ['T1', 'T2'], 'the slow request retried with the token already renewed')
  t.equal(wechat.fetches.length, 2, 'no third fetch: the newer token was not dropped')
  t.equal(await manager.withAccessToken(DEV_APP.appid, async (token) => token), 'T2', 'T2 is still cached')
  t.equal(wechat.fetches.length, 2)
})

t.test('a second consecutive invalid-token failure propagates', async (t) => {
  const { wechat, manager } = harness(t)
  const tokens: string[] = []
  await t.rejects(
    manager.withAccessToken(DEV_APP.appid, async (token) => {
      tokens.push(token)
      throw invalidToken()
    }),
    { name: 'WeChatError', failure: 'access_token_invalid', errcode: 40001 },
  )
  t.same(tokens, ['T1', 'T2'], 'exactly one retry')
  t.equal(wechat.fetches.length, 2)
})

t.test('busy on fetch is retried with backoff up to the bound, then propagates', async (t) => {
  await t.test('two busy answers, then a token', async (t) => {
    const { wechat, manager } = harness(t, { busyBackoffMs: [1, 1] })
    wechat.script.push(busy(), busy())
    t.equal(await manager.withAccessToken(DEV_APP.appid, async (token) => token), 'T1')
    t.equal(wechat.fetches.length, 3, 'two retries')
  })
  await t.test('busy beyond the bound', async (t) => {
    const { wechat, manager } = harness(t, { busyBackoffMs: [1, 1] })
    wechat.script.push(busy(), busy(), busy(), busy())
    let ran = false
    await t.rejects(
      manager.withAccessToken(DEV_APP.appid, async () => {
        ran = true
      }),
      { name: 'WeChatError', failure: 'busy' },
    )
    t.equal(wechat.fetches.length, 3, 'one try and as many retries as delays')
    t.notOk(ran, 'the call never ran')
    t.equal(await manager.withAccessToken(DEV_APP.appid, async (token) => token), 'T1', 'the next request starts over')
  })
  await t.test('the number of retries follows busyBackoffMs', async (t) => {
    const { wechat, manager } = harness(t, { busyBackoffMs: [1, 1, 1] })
    wechat.script.push(busy(), busy(), busy(), busy(), busy())
    await t.rejects(manager.withAccessToken(DEV_APP.appid, async () => undefined), { name: 'WeChatError', failure: 'busy' })
    t.equal(wechat.fetches.length, 4)
  })
  await t.test('no delays: no retry', async (t) => {
    const { wechat, manager } = harness(t, { busyBackoffMs: [] })
    wechat.script.push(busy())
    await t.rejects(manager.withAccessToken(DEV_APP.appid, async () => undefined), { name: 'WeChatError', failure: 'busy' })
    t.equal(wechat.fetches.length, 1)
  })
})

t.test('other failures propagate without a retry', async (t) => {
  for (const failure of ['rate_limited', 'unreachable', 'http_error', 'bad_response', 'rejected'] as const) {
    await t.test(`fetch fails with ${failure}`, async (t) => {
      const { wechat, manager } = harness(t)
      wechat.script.push(new WeChatError('stable_token', failure))
      await t.rejects(manager.withAccessToken(DEV_APP.appid, async () => undefined), { name: 'WeChatError', failure })
      t.equal(wechat.fetches.length, 1, 'fetched once')
    })
  }

  await t.test('fetch throws something other than a WeChatError', async (t) => {
    const { wechat, manager } = harness(t)
    wechat.script.push(new Error('no WeChat app wxX is configured'))
    await t.rejects(manager.withAccessToken('wxX', async () => undefined), { message: /no WeChat app/ })
    t.equal(wechat.fetches.length, 1)
  })

  for (const failure of ['invalid_code', 'code_used', 'busy', 'rate_limited', 'unreachable', 'bad_response'] as const) {
    await t.test(`the call fails with ${failure}`, async (t) => {
      const { wechat, manager } = harness(t)
      let calls = 0
      await t.rejects(
        manager.withAccessToken(DEV_APP.appid, async () => {
          calls += 1
          throw new WeChatError('getuserphonenumber', failure)
        }),
        { name: 'WeChatError', failure },
      )
      t.equal(calls, 1, 'not retried')
      t.equal(wechat.fetches.length, 1)
      t.equal(await manager.withAccessToken(DEV_APP.appid, async (token) => token), 'T1', 'the token stays cached')
    })
  }

  await t.test('the call throws a plain error', async (t) => {
    const { wechat, manager } = harness(t)
    let calls = 0
    await t.rejects(
      manager.withAccessToken(DEV_APP.appid, async () => {
        calls += 1
        throw new TypeError('boom')
      }),
      TypeError,
    )
    t.equal(calls, 1)
    t.equal(wechat.fetches.length, 1)
  })
})

// ---------------------------------------------------------------------------------------------------
// Through the app: minigate, its WeChat client and the simulator over real HTTP.
// ---------------------------------------------------------------------------------------------------

// One keys folder for every app of this file: generating an RSA key per app is the slow part.
const KEYS_DIR = sharedKeysDir()

function start(t: Test, env: Record<string, string> = {}): Promise<TestApp> {
  return startTestApp(t, { MINIGATE_KEYS_DIR: KEYS_DIR, ...env })
}

async function phoneCode(app: TestApp, phone = '13800138000'): Promise<string> {
  const response = await app.postJson('/_dev/wechat/phone-code', { phone })
  if (response.status !== 200) throw new Error(`simulator phone-code failed: ${response.status} ${await response.text()}`)
  return ((await response.json()) as { code: string }).code
}

function bindPhone(app: TestApp, accessToken: string, code: string): Promise<Response> {
  return app.postJson('/wechat/phone', { code }, { authorization: `Bearer ${accessToken}` })
}

t.test('50 concurrent phone bindings fetch one stable_token', async (t) => {
  const app = await start(t)
  const { access_token: accessToken } = await app.login({ scope: 'phone' })
  const codes = await Promise.all(Array.from({ length: 50 }, (_, index) => phoneCode(app, `138001380${String(index).padStart(2, '0')}`)))
  const responses = await Promise.all(codes.map((code) => bindPhone(app, accessToken, code)))
  t.same(responses.map((response) => response.status), Array(50).fill(200), 'all 200')
  const numbers = await Promise.all(responses.map(async (response) => ((await response.json()) as { phone_number: string }).phone_number))
  t.equal(new Set(numbers).size, 50, 'each request got its own number')
  t.equal(app.simulator.calls.stable_token, 1, 'one access_token fetch for 50 requests')
  t.equal(app.simulator.calls.token, 0)
  t.equal(app.simulator.calls.getuserphonenumber, 50)
})

t.test('the app reuses its access_token until expires_in - 300 s', async (t) => {
  const app = await start(t)
  const { access_token: accessToken } = await app.login()
  t.equal((await bindPhone(app, accessToken, await phoneCode(app))).status, 200)
  app.clock.advance(7200 - 300 - 1)
  // Access tokens of minigate live 15 minutes: log in again to keep calling.
  const later = (await app.login()).access_token as string
  t.equal((await bindPhone(app, later, await phoneCode(app))).status, 200)
  t.equal(app.simulator.calls.stable_token, 1, 'cached until 1 s before the margin')
  app.clock.advance(1)
  t.equal((await bindPhone(app, later, await phoneCode(app))).status, 200)
  t.equal(app.simulator.calls.stable_token, 2, 'fetched again at expires_in - 300 s')
  t.equal(app.simulator.calls.getuserphonenumber, 3, 'no call was refused')
})

t.test("WECHAT_ACCESS_TOKEN_API 'token' uses the plain /cgi-bin/token", async (t) => {
  const app = await start(t, { WECHAT_ACCESS_TOKEN_API: 'token' })
  const { access_token: accessToken } = await app.login()
  t.equal((await bindPhone(app, accessToken, await phoneCode(app))).status, 200)
  t.equal((await bindPhone(app, accessToken, await phoneCode(app))).status, 200)
  t.equal(app.simulator.calls.token, 1, 'fetched once, then cached')
  t.equal(app.simulator.calls.stable_token, 0)
})

t.test('an invalidated access_token is renewed once and the call retried', async (t) => {
  const app = await start(t)
  const { access_token: accessToken } = await app.login()
  t.equal((await bindPhone(app, accessToken, await phoneCode(app))).status, 200)
  t.equal(app.simulator.calls.stable_token, 1)

  const invalidated = await app.postJson('/_dev/wechat/access-tokens/invalidate', {})
  t.equal(invalidated.status, 200)
  const response = await bindPhone(app, accessToken, await phoneCode(app, '13900139000'))
  t.equal(response.status, 200, 'the binding still succeeds')
  t.equal(((await response.json()) as { phone_number: string }).phone_number, '+8613900139000')
  t.equal(app.simulator.calls.stable_token, 2, 'renewed once')
  t.equal(app.simulator.calls.getuserphonenumber, 3, 'the refused call, then its one retry')
  t.ok(app.logs.some((line) => line.includes('renewing once')), 'the renewal is logged')
})

t.test("with the plain token API, another instance's fetch kills our token after 5 minutes; we recover", async (t) => {
  const app = await start(t, { WECHAT_ACCESS_TOKEN_API: 'token' })
  const { access_token: accessToken } = await app.login()
  t.equal((await bindPhone(app, accessToken, await phoneCode(app))).status, 200)
  t.equal(app.simulator.calls.token, 1)

  // Another instance fetches its own token: ours now dies after the 5-minute overlap.
  const query = new URLSearchParams({ grant_type: 'client_credential', appid: DEV_APP.appid, secret: DEV_APP.secret })
  const other = await fetch(`${app.url}/_dev/wechat/cgi-bin/token?${query.toString()}`)
  t.equal(other.status, 200)
  t.type(((await other.json()) as { access_token: unknown }).access_token, 'string')
  t.equal(app.simulator.calls.token, 2)
  app.clock.advance(301)

  const response = await bindPhone(app, accessToken, await phoneCode(app, '13700137000'))
  t.equal(response.status, 200, 'the binding succeeds after one renewal')
  t.equal(((await response.json()) as { phone_number: string }).phone_number, '+8613700137000')
  t.equal(app.simulator.calls.token, 3, 'renewed exactly once')
  t.equal(app.simulator.calls.getuserphonenumber, 3, 'the refused call, then its one retry')
})
