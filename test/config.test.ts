import { writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { ConfigError, DEV_APP, defaults, hashServiceSecret, loadConfig, parseApps, parseServices } from '../src/config.js'

const SECRET = 'f3a1b2c3d4e5f60718293a4b5c6d7e8f'

const PROD_APPID = 'wx0123456789abcdef'

/** A production environment that passes every check (loadConfig only looks for the database folder, it creates nothing). */
function production(extra: Record<string, string> = {}): Record<string, string> {
  return { NODE_ENV: 'production', WECHAT_APPS: `${PROD_APPID}:${SECRET}`, MINIGATE_ISSUER: 'https://id.example.com', MINIGATE_DB: join(tmpdir(), 'minigate.sqlite'), ...extra }
}

/** Runs `fn`, which must throw a ConfigError; returns its message. */
function configError(t: Test, fn: () => unknown): string {
  try {
    fn()
  } catch (error) {
    t.type(error, ConfigError, 'throws a ConfigError')
    t.equal((error as Error).name, 'ConfigError')
    return (error as Error).message
  }
  t.fail('expected a ConfigError')
  return ''
}

t.test('defaults describe a working development server', async (t) => {
  const config = loadConfig({})
  t.equal(config.port, 3000)
  t.equal(config.host, '127.0.0.1')
  t.equal(config.issuer, 'http://localhost:3000')
  t.equal(config.dbFile, 'db/minigate.sqlite')
  t.equal(config.keysDir, 'keys')
  t.equal(config.audience, 'minigate-api')
  t.equal(config.accessTtl, 900)
  t.equal(config.refreshTtl, 2592000)
  t.equal(config.development, true)
  t.equal(config.production, false)
  t.equal(config.simulator, true)
  t.same(config.apps, [DEV_APP])
  t.equal(config.wechatApiBase, 'http://127.0.0.1:3000/_dev/wechat')
  t.equal(config.wechatTimeoutMs, defaults.wechatTimeoutMs)
  t.equal(config.jwksMaxAge, defaults.jwksMaxAge)
  t.equal(config.logLevel, 'info')
})

t.test('empty strings fall back to the defaults', async (t) => {
  const config = loadConfig({ PORT: '', HOST: '', MINIGATE_ISSUER: '', WECHAT_APPS: '  ', MINIGATE_ACCESS_TTL: '', WECHAT_API_BASE: '' })
  t.equal(config.port, 3000)
  t.equal(config.host, '127.0.0.1')
  t.equal(config.issuer, 'http://localhost:3000')
  t.equal(config.development, true)
  t.equal(config.accessTtl, 900)
  t.equal(config.wechatApiBase, 'http://127.0.0.1:3000/_dev/wechat')
})

t.test('the default issuer and simulator base follow PORT', async (t) => {
  const config = loadConfig({ PORT: '8080' })
  t.equal(config.issuer, 'http://localhost:8080')
  t.equal(config.wechatApiBase, 'http://127.0.0.1:8080/_dev/wechat')
})

t.test('explicit settings are read', async (t) => {
  const config = loadConfig({
    PORT: '4000',
    HOST: '127.0.0.2',
    MINIGATE_ISSUER: 'https://id.example.com',
    MINIGATE_DB: '/var/lib/minigate/db.sqlite',
    MINIGATE_KEYS_DIR: '/etc/minigate/keys',
    MINIGATE_AUDIENCE: 'shop-api',
    MINIGATE_ACCESS_TTL: '600',
    MINIGATE_REFRESH_TTL: '86400',
    WECHAT_TIMEOUT_MS: '2500',
    MINIGATE_LOG_LEVEL: 'warn',
  })
  t.equal(config.port, 4000)
  t.equal(config.host, '127.0.0.2')
  t.equal(config.issuer, 'https://id.example.com')
  t.equal(config.dbFile, '/var/lib/minigate/db.sqlite')
  t.equal(config.keysDir, '/etc/minigate/keys')
  t.equal(config.audience, 'shop-api')
  t.equal(config.accessTtl, 600)
  t.equal(config.refreshTtl, 86400)
  t.equal(config.wechatTimeoutMs, 2500)
  t.equal(config.logLevel, 'warn')
})

t.test('parseApps reads appid:secret pairs', async (t) => {
  t.same(parseApps('wx1:s1'), [{ appid: 'wx1', secret: 's1' }])
  t.same(parseApps(' wx1:s1 , wx2:s2:with:colons '), [
    { appid: 'wx1', secret: 's1' },
    { appid: 'wx2', secret: 's2:with:colons' },
  ])
})

t.test('WECHAT_APPS errors name the variable and never repeat the secret', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['missing secret', 'wx1:', /secret/],
    ['no colon at all', 'wx1', /secret/],
    ['appid with a space', `wx 1:${SECRET}`, /appid/],
    ['appid with a slash', `../wx1:${SECRET}`, /appid/],
    ['empty appid', `:${SECRET}`, /appid/],
    ['secret with whitespace', `wx1:${SECRET} tail`, /secret/],
    ['duplicate appid', `wx1:${SECRET},wx1:${SECRET}x`, /twice/],
    ['empty entry', `wx1:${SECRET},`, /entry 2/],
  ]
  for (const [name, raw, expected] of cases) {
    const viaParse = configError(t, () => parseApps(raw))
    t.match(viaParse, /WECHAT_APPS/, `${name}: names WECHAT_APPS`)
    t.match(viaParse, expected, `${name}: says what is wrong`)
    t.notOk(viaParse.includes(SECRET), `${name}: the secret is not in the message`)
    const viaLoad = configError(t, () => loadConfig({ WECHAT_APPS: raw }))
    t.equal(viaLoad, viaParse, `${name}: loadConfig reports the same error`)
  }
})

t.test('an entry that is only a secret (appid forgotten) is not echoed', async (t) => {
  const apps = configError(t, () => parseApps(SECRET))
  t.notOk(apps.includes(SECRET), 'WECHAT_APPS: the secret is not in the message')
  const services = configError(t, () => parseServices(SECRET))
  t.notOk(services.includes(SECRET), 'MINIGATE_SERVICES: the secret is not in the message')
})

t.test('production requires real WeChat apps and refuses the simulator', async (t) => {
  const noApps = configError(t, () => loadConfig({ NODE_ENV: 'production' }))
  t.match(noApps, /WECHAT_APPS/)
  t.match(noApps, /production/)

  const simulator = configError(t, () => loadConfig(production({ MINIGATE_WECHAT_SIMULATOR: '1' })))
  t.match(simulator, /MINIGATE_WECHAT_SIMULATOR/)
  t.notOk(simulator.includes(SECRET))

  const config = loadConfig(production())
  t.equal(config.production, true)
  t.equal(config.development, false)
  t.equal(config.simulator, false)
  t.equal(config.wechatApiBase, 'https://api.weixin.qq.com')
})

t.test('configured apps turn development mode and the simulator off', async (t) => {
  const config = loadConfig({ WECHAT_APPS: `wx1:${SECRET},wx2:other` })
  t.equal(config.development, false)
  t.equal(config.simulator, false)
  t.equal(config.wechatApiBase, 'https://api.weixin.qq.com')
  t.same(config.apps, [
    { appid: 'wx1', secret: SECRET },
    { appid: 'wx2', secret: 'other' },
  ])
  t.notOk(config.apps.some((app) => app.appid === DEV_APP.appid), 'the development app is not added')
})

t.test('MINIGATE_WECHAT_SIMULATOR=1 with apps mounts the simulator and points the client at it', async (t) => {
  const config = loadConfig({ WECHAT_APPS: `wx1:${SECRET}`, MINIGATE_WECHAT_SIMULATOR: '1', PORT: '3100' })
  t.equal(config.development, false)
  t.equal(config.simulator, true)
  t.equal(config.wechatApiBase, 'http://127.0.0.1:3100/_dev/wechat')
  t.same(config.apps, [{ appid: 'wx1', secret: SECRET }])

  const explicit = loadConfig({ WECHAT_APPS: `wx1:${SECRET}`, MINIGATE_WECHAT_SIMULATOR: 'true', WECHAT_API_BASE: 'https://wechat-proxy.internal/base' })
  t.equal(explicit.simulator, true)
  t.equal(explicit.wechatApiBase, 'https://wechat-proxy.internal/base', 'an explicit WECHAT_API_BASE wins')

  for (const off of ['0', 'false', 'no', 'off', 'OFF', '']) {
    t.equal(loadConfig({ WECHAT_APPS: `wx1:${SECRET}`, MINIGATE_WECHAT_SIMULATOR: off }).simulator, false, `"${off}" is off`)
  }
  for (const on of ['1', 'true', 'yes', 'on', ' YES ']) {
    t.equal(loadConfig({ WECHAT_APPS: `wx1:${SECRET}`, MINIGATE_WECHAT_SIMULATOR: on }).simulator, true, `"${on}" is on`)
  }
})

t.test('the simulator base is reachable when listening on every interface', async (t) => {
  t.equal(loadConfig({ HOST: '0.0.0.0', PORT: '3200' }).wechatApiBase, 'http://127.0.0.1:3200/_dev/wechat')
  t.equal(loadConfig({ HOST: '::', PORT: '3200' }).wechatApiBase, 'http://127.0.0.1:3200/_dev/wechat')
  t.equal(loadConfig({ HOST: '::1', PORT: '3200' }).wechatApiBase, 'http://[::1]:3200/_dev/wechat')
  t.equal(loadConfig({ HOST: '0.0.0.0' }).host, '0.0.0.0', 'the listen host itself is kept')
})

t.test('invalid values are ConfigErrors that name the variable', async (t) => {
  const cases: Array<[string, Record<string, string>]> = [
    ['PORT', { PORT: 'abc' }],
    ['PORT', { PORT: '-1' }],
    ['PORT', { PORT: '65536' }],
    ['PORT', { PORT: '3000.5' }],
    ['PORT', { PORT: '1e3' }],
    ['MINIGATE_ACCESS_TTL', { MINIGATE_ACCESS_TTL: 'ten' }],
    ['MINIGATE_ACCESS_TTL', { MINIGATE_ACCESS_TTL: '5' }],
    ['MINIGATE_ACCESS_TTL', { MINIGATE_ACCESS_TTL: '999999' }],
    ['MINIGATE_REFRESH_TTL', { MINIGATE_REFRESH_TTL: '-5' }],
    ['MINIGATE_REFRESH_TTL', { MINIGATE_REFRESH_TTL: '99999999999' }],
    ['WECHAT_TIMEOUT_MS', { WECHAT_TIMEOUT_MS: '0' }],
    ['MINIGATE_ISSUER', { MINIGATE_ISSUER: 'not a url' }],
    ['MINIGATE_ISSUER', { MINIGATE_ISSUER: 'ftp://id.example.com' }],
    ['MINIGATE_ISSUER', { MINIGATE_ISSUER: 'https://id.example.com/?tenant=1' }],
    ['MINIGATE_ISSUER', { MINIGATE_ISSUER: 'https://id.example.com/#x' }],
    ['WECHAT_API_BASE', { WECHAT_API_BASE: 'api.weixin.qq.com' }],
    ['WECHAT_API_BASE', { WECHAT_API_BASE: 'file:///etc/passwd' }],
    ['WECHAT_API_BASE', { WECHAT_API_BASE: 'https://api.weixin.qq.com?x=1' }],
    ['MINIGATE_WECHAT_SIMULATOR', { MINIGATE_WECHAT_SIMULATOR: 'maybe' }],
    ['MINIGATE_WECHAT_SIMULATOR', { MINIGATE_WECHAT_SIMULATOR: '2' }],
    ['MINIGATE_LOG_LEVEL', { MINIGATE_LOG_LEVEL: 'verbose' }],
  ]
  for (const [name, env] of cases) {
    const message = configError(t, () => loadConfig(env))
    t.match(message, name, `${JSON.stringify(env)} names ${name}`)
    t.notMatch(message, /\n/, 'the message is one line')
  }
})

t.test('WECHAT_API_BASE is validated even when the simulator is off', async (t) => {
  const message = configError(t, () => loadConfig({ WECHAT_APPS: `wx1:${SECRET}`, WECHAT_API_BASE: 'nope' }))
  t.match(message, /WECHAT_API_BASE/)
  t.equal(loadConfig({ WECHAT_APPS: `wx1:${SECRET}`, WECHAT_API_BASE: 'http://127.0.0.1:9/wx' }).wechatApiBase, 'http://127.0.0.1:9/wx')
})

t.test('the refresh TTL must be longer than the access TTL', async (t) => {
  const equal = configError(t, () => loadConfig({ MINIGATE_ACCESS_TTL: '3600', MINIGATE_REFRESH_TTL: '3600' }))
  t.match(equal, /MINIGATE_REFRESH_TTL/)
  t.match(equal, /MINIGATE_ACCESS_TTL/)
  const shorter = configError(t, () => loadConfig({ MINIGATE_ACCESS_TTL: '3600', MINIGATE_REFRESH_TTL: '600' }))
  t.match(shorter, /MINIGATE_REFRESH_TTL/)
  const config = loadConfig({ MINIGATE_ACCESS_TTL: '3600', MINIGATE_REFRESH_TTL: '3601' })
  t.equal(config.refreshTtl, 3601)
})

t.test('PORT 0 is allowed (an ephemeral port) and numbers may be padded', async (t) => {
  t.equal(loadConfig({ PORT: '0' }).port, 0)
  t.equal(loadConfig({ PORT: ' 8081 ' }).port, 8081)
})

t.test('login lifetime and refresh grace settings', async (t) => {
  const config = loadConfig({})
  t.equal(config.sessionMaxAge, 90 * 24 * 3600, 'a login lasts at most 90 days by default')
  t.equal(config.refreshGraceSeconds, 0, 'strict reuse detection by default')
  t.equal(config.refreshGraceReuses, 1)
  t.ok(config.purgeInterval > 0)

  const custom = loadConfig({ MINIGATE_SESSION_MAX_AGE: String(40 * 24 * 3600), MINIGATE_REFRESH_GRACE_SECONDS: '30', MINIGATE_REFRESH_GRACE_REUSES: '2' })
  t.equal(custom.sessionMaxAge, 40 * 24 * 3600)
  t.equal(custom.refreshGraceSeconds, 30)
  t.equal(custom.refreshGraceReuses, 2)

  const shorter = configError(t, () => loadConfig({ MINIGATE_SESSION_MAX_AGE: String(7 * 24 * 3600) }))
  t.match(shorter, /MINIGATE_SESSION_MAX_AGE/, 'a maximum age below the refresh TTL is refused')
  t.match(shorter, /MINIGATE_REFRESH_TTL/)
  t.equal(loadConfig({ MINIGATE_SESSION_MAX_AGE: '7200', MINIGATE_REFRESH_TTL: '7200' }).sessionMaxAge, 7200, 'equal is allowed')
  for (const [name, value] of [
    ['MINIGATE_SESSION_MAX_AGE', 'forever'],
    ['MINIGATE_REFRESH_GRACE_SECONDS', '301'],
    ['MINIGATE_REFRESH_GRACE_REUSES', '0'],
    ['WECHAT_ACCESS_TOKEN_API', 'cgi-bin/token'],
  ] as const) {
    t.match(configError(t, () => loadConfig({ [name]: value })), name, `${name}=${value} names the variable`)
  }
})

t.test('the WeChat access_token API defaults to stable_token', async (t) => {
  t.equal(loadConfig({}).wechatTokenApi, 'stable_token')
  t.equal(loadConfig({ WECHAT_ACCESS_TOKEN_API: 'token' }).wechatTokenApi, 'token')
  t.equal(loadConfig({ WECHAT_ACCESS_TOKEN_API: 'stable_token' }).wechatTokenApi, 'stable_token')
})

t.test('MINIGATE_SERVICES: hashed secrets, a development default, errors without secrets', async (t) => {
  const serviceSecret = 'svc-secret-0123456789abcdef'
  const config = loadConfig({ MINIGATE_SERVICES: `orders:${serviceSecret}, billing:${serviceSecret}x` })
  t.same(config.services, [
    { id: 'orders', secretHash: hashServiceSecret(serviceSecret) },
    { id: 'billing', secretHash: hashServiceSecret(`${serviceSecret}x`) },
  ])
  t.notOk(JSON.stringify(config).includes(serviceSecret), 'the configuration keeps no service secret in the clear')
  t.not(hashServiceSecret('a'), hashServiceSecret('b'))

  const dev = loadConfig({})
  t.same(dev.services.map((service) => service.id), ['dev-service'], 'development mode has a known introspection client')
  t.same(loadConfig({ WECHAT_APPS: `wx1:${SECRET}` }).services, [], 'with real apps there is none unless configured')

  const cases: Array<[string, string, RegExp]> = [
    ['short secret', 'orders:short', /at least 16/],
    ['secret with whitespace', `orders:${serviceSecret} x`, /secret/],
    ['bad id', `or/ders:${serviceSecret}`, /plain id/],
    ['duplicate', `orders:${serviceSecret},orders:${serviceSecret}y`, /twice/],
  ]
  for (const [name, raw, expected] of cases) {
    const message = configError(t, () => loadConfig({ MINIGATE_SERVICES: raw }))
    t.match(message, /MINIGATE_SERVICES/, `${name}: names MINIGATE_SERVICES`)
    t.match(message, expected, `${name}: says what is wrong`)
    t.notOk(message.includes(serviceSecret) || message.includes('short'), `${name}: no secret in the message`)
  }
})

t.test('rate limits are on by default, "off" disables them, and bad values name the variable', async (t) => {
  const limits = loadConfig({}).rateLimits
  t.ok(limits && limits.ip > 0 && limits.client > 0 && limits.user > 0 && limits.wechat > 0, 'on by default, every limit positive')
  t.same(loadConfig({ MINIGATE_RATE_LIMITS: 'on' }).rateLimits, limits)
  t.equal(loadConfig({ MINIGATE_RATE_LIMITS: 'off' }).rateLimits, null, 'off for benchmarks and load tests')
  t.equal(loadConfig({ MINIGATE_RATE_LIMITS: ' OFF ' }).rateLimits, null)
  const custom = loadConfig({ MINIGATE_RATE_LIMITS: 'ip=10,user=5' }).rateLimits
  t.equal(custom?.ip, 10)
  t.equal(custom?.user, 5)
  t.equal(custom?.client, limits?.client, 'an unnamed limit keeps its default')
  for (const value of ['ip=0', 'ip=-1', 'ip', 'everyone=5', 'maybe']) {
    t.match(configError(t, () => loadConfig({ MINIGATE_RATE_LIMITS: value })), /MINIGATE_RATE_LIMITS/, `"${value}" is refused`)
  }

  t.equal(loadConfig({}).trustProxy, 0, 'X-Forwarded-For is not trusted by default')
  t.equal(loadConfig({ MINIGATE_TRUST_PROXY: '2' }).trustProxy, 2)
  t.match(configError(t, () => loadConfig({ MINIGATE_TRUST_PROXY: 'lots' })), /MINIGATE_TRUST_PROXY/)
})

t.test('the access-token audience cannot be the audience of refresh or ID tokens', async (t) => {
  t.match(configError(t, () => loadConfig({ MINIGATE_ISSUER: 'https://id.example.com', MINIGATE_AUDIENCE: 'https://id.example.com' })), /MINIGATE_AUDIENCE must differ from MINIGATE_ISSUER/)
  t.match(configError(t, () => loadConfig({ WECHAT_APPS: `wx1:${SECRET}`, MINIGATE_AUDIENCE: 'wx1' })), /MINIGATE_AUDIENCE must differ from every appid/)
  t.match(configError(t, () => loadConfig({ MINIGATE_AUDIENCE: DEV_APP.appid })), /every appid/)
})

t.test('in production the WeChat API is reached over https only', async (t) => {
  const message = configError(t, () => loadConfig(production({ WECHAT_API_BASE: 'http://api.weixin.qq.com' })))
  t.match(message, /WECHAT_API_BASE must be https/)
  t.notMatch(message, new RegExp(SECRET))
  t.equal(loadConfig(production({ WECHAT_API_BASE: 'https://proxy.example.com' })).wechatApiBase, 'https://proxy.example.com')
  t.equal(loadConfig({ WECHAT_APPS: `wx1:${SECRET}`, WECHAT_API_BASE: 'http://127.0.0.1:9' }).wechatApiBase, 'http://127.0.0.1:9', 'http is fine outside production')
})

t.test('production preflight: an https issuer, real-looking WeChat credentials, an existing database folder', async (t) => {
  t.equal(loadConfig(production()).issuer, 'https://id.example.com', 'a complete production environment loads')

  t.equal(configError(t, () => loadConfig(production({ MINIGATE_ISSUER: 'http://id.example.com' }))), 'MINIGATE_ISSUER must be https when NODE_ENV=production')
  t.equal(configError(t, () => loadConfig(production({ MINIGATE_ISSUER: '' }))), 'MINIGATE_ISSUER must be set to the https URL of minigate when NODE_ENV=production', 'the http://localhost default is refused too')

  const short = configError(t, () => loadConfig(production({ WECHAT_APPS: `${PROD_APPID}:x` })))
  t.equal(short, `WECHAT_APPS entry 1 (${PROD_APPID}) needs an AppSecret of 32 hex digits when NODE_ENV=production`)
  const notHex = `${SECRET.slice(0, 31)}g`
  const second = configError(t, () => loadConfig(production({ WECHAT_APPS: `${PROD_APPID}:${SECRET},wxfedcba9876543210:${notHex}` })))
  t.match(second, /^WECHAT_APPS entry 2 \(wxfedcba9876543210\) needs an AppSecret of 32 hex digits/)
  t.notOk(second.includes(notHex), 'the secret is not in the message')
  for (const appid of ['wx1', 'wxProd', 'wx0123456789abcdeg', 'xx0123456789abcdef', 'wx0123456789abcdef0']) {
    const message = configError(t, () => loadConfig(production({ WECHAT_APPS: `${appid}:${SECRET}` })))
    t.equal(message, 'WECHAT_APPS entry 1 must have an appid of wx and 16 hex digits when NODE_ENV=production', `appid ${appid}`)
  }
  t.equal(loadConfig(production({ WECHAT_APPS: `WX0123456789ABCDEF:${SECRET.toUpperCase()}` })).apps[0]?.appid, 'WX0123456789ABCDEF', 'hex digits in either case')

  const dir = t.testdir({ 'a-file': 'x' })
  const missing = join(dir, 'no-such-folder', 'minigate.sqlite')
  t.equal(configError(t, () => loadConfig(production({ MINIGATE_DB: missing }))), `MINIGATE_DB: the folder ${join(dir, 'no-such-folder')} does not exist (it is not created when NODE_ENV=production)`)
  t.equal(configError(t, () => loadConfig(production({ MINIGATE_DB: join(dir, 'a-file', 'minigate.sqlite') }))), `MINIGATE_DB: ${join(dir, 'a-file')} is not a folder`)
  for (const url of ['postgres://minigate:pw@db.internal/minigate', 'postgresql://db.internal/minigate']) {
    t.equal(loadConfig(production({ MINIGATE_DB: url })).dbFile, url, `${url.split(':')[0]}: not a file, not checked here`)
  }
  writeFileSync(join(dir, 'existing.sqlite'), '')
  t.equal(loadConfig(production({ MINIGATE_DB: join(dir, 'existing.sqlite') })).dbFile, join(dir, 'existing.sqlite'))
})

t.test('outside production the preflight stays lenient', async (t) => {
  const config = loadConfig({ WECHAT_APPS: 'wx1:x', MINIGATE_ISSUER: 'http://id.example.com', MINIGATE_DB: join(t.testdir(), 'not', 'yet', 'minigate.sqlite') })
  t.equal(config.issuer, 'http://id.example.com', 'http issuer')
  t.same(config.apps, [{ appid: 'wx1', secret: 'x' }], 'a short appid and a one-character secret')
  t.match(config.dbFile, /not\/yet\/minigate\.sqlite$/, 'a database folder that does not exist yet')
})
