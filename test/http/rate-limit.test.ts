import t from 'tap'
import { RateLimiter } from '../../src/http/rate-limit.js'
import { startTestApp, WECHAT_CODE_GRANT } from '../helpers/app.js'
import { TestClock } from '../helpers/clock.js'

t.test('a token bucket: a burst of perMinute, then one request per refill, with the wait in seconds', async (t) => {
  const clock = new TestClock()
  const limiter = new RateLimiter(6, clock)
  for (let i = 0; i < 6; i += 1) t.equal(limiter.take('a'), 0, `request ${i + 1} of the burst`)
  t.equal(limiter.take('a'), 10, 'the 7th waits 10 s (6 per minute)')
  t.equal(limiter.take('b'), 0, 'another key has its own bucket')
  clock.advance(10)
  t.equal(limiter.take('a'), 0, 'one request is back after 10 s')
  t.ok(limiter.take('a') > 0, 'and only one')
  clock.advance(3600)
  for (let i = 0; i < 6; i += 1) t.equal(limiter.take('a'), 0, 'the bucket refills up to the burst, no further')
  t.ok(limiter.take('a') > 0)
})

t.test('/token per IP: 429 with Retry-After and an OAuth body, other endpoints unaffected', async (t) => {
  const app = await startTestApp(t, { MINIGATE_RATE_LIMITS: 'ip=3' })
  for (let i = 0; i < 3; i += 1) {
    const response = await app.postForm('/token', { grant_type: 'nope' })
    t.equal(response.status, 400, `request ${i + 1} is served`)
  }
  const limited = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: 'abc' })
  t.equal(limited.status, 429)
  t.equal(limited.headers.get('retry-after'), '20')
  t.equal(limited.headers.get('cache-control'), 'no-store')
  t.match(await limited.json(), { error: 'too_many_requests', error_description: /try again in 20 s/ })
  t.equal(app.simulator.calls.jscode2session, 0, 'a limited login never reaches WeChat')
  t.equal((await fetch(`${app.url}/.well-known/jwks.json`)).status, 200, 'the JWKS is not limited')
  app.clock.advance(20)
  t.equal((await app.postForm('/token', { grant_type: 'nope' })).status, 400, 'served again after Retry-After')
})

t.test('X-Forwarded-For counts only behind a trusted proxy', async (t) => {
  const direct = await startTestApp(t, { MINIGATE_RATE_LIMITS: 'ip=1' })
  t.equal((await direct.postForm('/token', {}, { 'X-Forwarded-For': '198.51.100.1' })).status, 400)
  const spoofed = await direct.postForm('/token', {}, { 'X-Forwarded-For': '198.51.100.2' })
  t.equal(spoofed.status, 429, 'without MINIGATE_TRUST_PROXY a forged X-Forwarded-For does not escape the limit')

  const proxied = await startTestApp(t, { MINIGATE_RATE_LIMITS: 'ip=1', MINIGATE_TRUST_PROXY: '1' })
  t.equal((await proxied.postForm('/token', {}, { 'X-Forwarded-For': '198.51.100.1' })).status, 400)
  t.equal((await proxied.postForm('/token', {}, { 'X-Forwarded-For': '198.51.100.2' })).status, 400, 'behind a proxy each client address has its own bucket')
  t.equal((await proxied.postForm('/token', {}, { 'X-Forwarded-For': '203.0.113.9, 198.51.100.1' })).status, 429, 'only the hop the proxy appended counts, not what the client wrote before it')
})

t.test('refresh is limited per user and per client', async (t) => {
  const app = await startTestApp(t, { MINIGATE_RATE_LIMITS: 'ip=1000,client=1000,user=2' })
  let tokens = await app.login({ openid: 'oLimited' })
  for (let i = 0; i < 2; i += 1) {
    const response = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token })
    t.equal(response.status, 200, `refresh ${i + 1}`)
    tokens = (await response.json()) as Record<string, any>
  }
  const limited = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token })
  t.equal(limited.status, 429, 'the third refresh in a minute is limited')
  t.ok(Number(limited.headers.get('retry-after')) > 0)
  const other = await app.login({ openid: 'oOther' })
  t.equal((await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: other.refresh_token })).status, 200, 'another user is not')
  const claims = JSON.parse(Buffer.from(tokens.refresh_token.split('.')[1], 'base64url').toString())
  const row = await app.deps.db.selectFrom('login_sessions').select('generation').where('id', '=', claims.sid).executeTakeFirstOrThrow()
  t.equal(row.generation, claims.gen, 'the limited refresh spent nothing: the client can retry later with the same token')
  app.clock.advance(30)
  t.equal((await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token })).status, 200, 'and it works after the wait')

  const perClient = await startTestApp(t, { MINIGATE_RATE_LIMITS: 'client=1' })
  const a = await perClient.login({ openid: 'oA' })
  const b = await perClient.login({ openid: 'oB' })
  t.equal((await perClient.postForm('/token', { grant_type: 'refresh_token', refresh_token: a.refresh_token })).status, 200)
  t.equal((await perClient.postForm('/token', { grant_type: 'refresh_token', refresh_token: b.refresh_token })).status, 429, 'the client limit spans users')
})

t.test('MINIGATE_RATE_LIMITS=off turns every limit off', async (t) => {
  const app = await startTestApp(t, { MINIGATE_RATE_LIMITS: 'off' })
  t.equal(app.deps.limits, undefined)
  for (let i = 0; i < 400; i += 1) {
    const response = await app.postForm('/token', { grant_type: 'nope' })
    if (response.status !== 400) t.fail(`request ${i} got ${response.status}`)
  }
  t.pass('400 requests from one address, none limited')
})

t.test('audit events carry a keyed hash of the client address, never the address', async (t) => {
  const app = await startTestApp(t)
  await app.login({ openid: 'oAudited' })
  const event = await app.deps.db.selectFrom('audit_events').selectAll().where('event', '=', 'user_created').executeTakeFirstOrThrow()
  t.equal(event.ip_hash, app.deps.secretBox.fingerprint('127.0.0.1'))
  t.notMatch(JSON.stringify(event), /127\.0\.0\.1/)
})

t.test('MINIGATE_RATE_LIMITS and MINIGATE_TRUST_PROXY parse strictly', async (t) => {
  const { loadConfig, ConfigError } = await import('../../src/config.js')
  t.same(loadConfig({}).rateLimits, { ip: 300, client: 6000, user: 30, wechat: 10 }, 'on by default')
  t.same(loadConfig({ MINIGATE_RATE_LIMITS: 'on' }).rateLimits, { ip: 300, client: 6000, user: 30, wechat: 10 })
  t.same(loadConfig({ MINIGATE_RATE_LIMITS: 'user=5, ip=10' }).rateLimits, { ip: 10, client: 6000, user: 5, wechat: 10 })
  t.same(loadConfig({ MINIGATE_RATE_LIMITS: 'wechat=4' }).rateLimits, { ip: 300, client: 6000, user: 30, wechat: 4 }, 'the WeChat data endpoints per user')
  t.equal(loadConfig({ MINIGATE_RATE_LIMITS: 'OFF' }).rateLimits, null)
  for (const bad of ['ip=0', 'ip=-1', 'ip', 'foo=1', 'ip=1;user=2', 'wechat=0', 'wechat']) {
    t.throws(() => loadConfig({ MINIGATE_RATE_LIMITS: bad }), ConfigError, bad)
  }
  t.equal(loadConfig({}).trustProxy, 0)
  t.equal(loadConfig({ MINIGATE_TRUST_PROXY: 'true' }).trustProxy, 1)
  t.equal(loadConfig({ MINIGATE_TRUST_PROXY: '2' }).trustProxy, 2)
  t.throws(() => loadConfig({ MINIGATE_TRUST_PROXY: 'maybe' }), /MINIGATE_TRUST_PROXY/)
})

t.test('addresses are limited per IPv4 address and per IPv6 /64', async (t) => {
  const { addressKey } = await import('../../src/http/rate-limit.js')
  t.equal(addressKey('198.51.100.7'), '198.51.100.7')
  t.equal(addressKey('::ffff:198.51.100.7'), '198.51.100.7', 'IPv4-mapped IPv6 is the IPv4 address')
  t.equal(addressKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd'), '2001:db8:1:2::/64')
  t.equal(addressKey('2001:0db8:0001:0002::1'), '2001:db8:1:2::/64', 'leading zeros and :: are normalised')
  t.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64')
  t.equal(addressKey('::1'), '0:0:0:0::/64')
  t.equal(addressKey('2001:DB8:1:2::9'), addressKey('2001:db8:1:2:ffff::1'), 'every address of one /64 shares a bucket')
})
