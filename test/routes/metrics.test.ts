import t from 'tap'
import { startTestApp, WECHAT_CODE_GRANT, type TestApp } from '../helpers/app.js'
import { oauthError } from '../helpers/assert.js'

const TOKEN = 'metrics-token-0123456789'

/** A sample's value from Prometheus text, or undefined; `labels` must all be on the sample. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!match || match[1] !== name) continue
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((pair) => [pair[1], pair[2]]))
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) return match[3] === '+Inf' ? Infinity : Number(match[3])
  }
  return undefined
}

async function scrape(app: TestApp): Promise<string> {
  const response = await fetch(`${app.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
  if (response.status !== 200) throw new Error(`scrape: ${response.status}`)
  return response.text()
}

t.test('without MINIGATE_METRICS_TOKEN (or a metrics port) /metrics does not exist on the main port', async (t) => {
  const app = await startTestApp(t)
  await oauthError(t, await fetch(`${app.url}/metrics`), 404, 'not_found')
  await oauthError(t, await fetch(`${app.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } }), 404, 'not_found')
})

t.test('with MINIGATE_METRICS_TOKEN: only that Bearer token gets the metrics', async (t) => {
  const app = await startTestApp(t, { MINIGATE_METRICS_TOKEN: TOKEN })
  const missing = await fetch(`${app.url}/metrics`)
  t.equal(missing.status, 401)
  t.match(missing.headers.get('www-authenticate'), /^Bearer /)
  await oauthError(t, await fetch(`${app.url}/metrics`, { headers: { authorization: 'Bearer not-the-metrics-token' } }), 401, 'invalid_token')
  await oauthError(t, await fetch(`${app.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}x` } }), 401, 'invalid_token')
  await oauthError(t, await fetch(`${app.url}/metrics`, { headers: { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` } }), 401, 'invalid_token')
  const access = (await app.login()).access_token as string
  await oauthError(t, await fetch(`${app.url}/metrics`, { headers: { authorization: `Bearer ${access}` } }), 401, 'invalid_token')

  const response = await fetch(`${app.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal(response.status, 200)
  t.match(response.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  t.equal(response.headers.get('cache-control'), 'no-store')
  const text = await response.text()
  t.match(text, /# TYPE minigate_http_request_duration_seconds histogram/)
  for (const name of ['minigate_process_cpu_seconds_total', 'minigate_nodejs_eventloop_lag_seconds', 'minigate_process_resident_memory_bytes', 'minigate_nodejs_heap_size_used_bytes']) {
    t.type(sample(text, name), 'number', `process metric ${name}`)
  }
  t.equal(sample(text, 'minigate_signing_key_next_change_seconds'), Infinity, 'no key change is scheduled: +Inf')
})

t.test('metrics move: requests, logins, refreshes, reuse, revocations, logouts, WeChat calls, transactions', async (t) => {
  const app = await startTestApp(t, { MINIGATE_METRICS_TOKEN: TOKEN })
  const before = await scrape(app)
  t.equal(sample(before, 'minigate_logins_total', { new_user: 'true' }), undefined, 'no login yet')
  const tokenRequests = (text: string, status: string) => sample(text, 'minigate_http_request_duration_seconds_count', { method: 'POST', route: '/token', status }) ?? 0

  const first = await app.login({ openid: 'oMetrics' })
  await app.login({ openid: 'oMetrics' })
  let text = await scrape(app)
  t.equal(sample(text, 'minigate_logins_total', { new_user: 'true' }), 1, 'one first login')
  t.equal(sample(text, 'minigate_logins_total', { new_user: 'false' }), 1, 'one returning login')
  t.equal(tokenRequests(text, '200'), 2, 'the request histogram counts POST /token 200 by its route pattern')
  t.ok((sample(text, 'minigate_http_request_duration_seconds_sum', { method: 'POST', route: '/token', status: '200' }) as number) > 0, 'with their latency')
  t.equal(sample(text, 'minigate_wechat_calls_total', { api: 'jscode2session', outcome: 'ok', errcode: '0' }), 2, 'WeChat calls by api and outcome')
  t.equal(sample(text, 'minigate_wechat_call_duration_seconds_count', { api: 'jscode2session' }), 2, 'and their latency')
  t.ok((sample(text, 'minigate_db_transaction_duration_seconds_count', { outcome: 'commit' }) as number) >= 2, 'transactions are timed')

  const rotated = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: first.refresh_token })
  t.equal(rotated.status, 200)
  const replay = await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: first.refresh_token })
  t.equal(replay.status, 400)
  text = await scrape(app)
  t.equal(sample(text, 'minigate_refreshes_total', { kind: 'rotation' }), 1)
  t.equal(sample(text, 'minigate_refresh_token_reuse_total'), 1, 'the replay is a reuse detection')
  t.equal(tokenRequests(text, '400'), 1, 'the refused replay counts under 400')

  const third = await app.login({ openid: 'oMetrics' })
  t.equal((await app.postForm('/revoke', { token: third.refresh_token })).status, 200)
  t.equal((await app.postForm('/revoke', { token: third.refresh_token })).status, 200)
  const fourth = await app.login({ openid: 'oMetrics' })
  t.equal((await fetch(`${app.url}/logout`, { method: 'POST', headers: { authorization: `Bearer ${fourth.access_token}` } })).status, 204)
  t.equal((await app.postJson('/_dev/wechat/faults', { api: 'jscode2session', mode: 'busy', count: 1 })).status, 200)
  const busy = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: await app.wxLogin() })
  t.equal(busy.status, 503)

  text = await scrape(app)
  t.equal(sample(text, 'minigate_revocations_total', { token_type: 'refresh_token' }), 1, 'a revocation that changed nothing is not counted')
  t.equal(sample(text, 'minigate_logouts_total'), 1)
  t.equal(sample(text, 'minigate_wechat_calls_total', { api: 'jscode2session', outcome: 'errcode', errcode: '-1' }), 1, 'a WeChat errcode by its number')
  t.equal(tokenRequests(text, '503'), 1)
  t.equal(sample(text, 'minigate_http_request_duration_seconds_count', { method: 'POST', route: '/logout', status: '204' }), 1)
})

t.test('route labels are patterns: a raw path (which may hold a secret) never becomes a label', async (t) => {
  const app = await startTestApp(t, { MINIGATE_METRICS_TOKEN: TOKEN })
  t.equal((await fetch(`${app.url}/avatars/secretish0123456789abcd`)).status, 404)
  t.equal((await fetch(`${app.url}/no/such/path/eyJhbGciOiJSUzI1NiJ9.secret`)).status, 404)
  const text = await scrape(app)
  t.equal(sample(text, 'minigate_http_request_duration_seconds_count', { method: 'GET', route: '/avatars/:id', status: '404' }), 1)
  t.equal(sample(text, 'minigate_http_request_duration_seconds_count', { method: 'GET', route: '(unmatched)', status: '404' }), 1)
  t.notMatch(text, /secret/, 'no raw path in the metrics')
})

t.test('rate-limit refusals are counted by limiter', async (t) => {
  const app = await startTestApp(t, { MINIGATE_METRICS_TOKEN: TOKEN, MINIGATE_RATE_LIMITS: 'ip=1' })
  t.equal((await app.postForm('/revoke', { token: 'x' })).status, 200)
  t.equal((await app.postForm('/revoke', { token: 'x' })).status, 429)
  t.equal((await app.postForm('/token', { grant_type: 'refresh_token', refresh_token: 'x' })).status, 429)
  t.equal(sample(await scrape(app), 'minigate_rate_limited_total', { limiter: 'ip' }), 2)
})

t.test('each app counts for itself: no global registry', async (t) => {
  const one = await startTestApp(t, { MINIGATE_METRICS_TOKEN: TOKEN })
  const two = await startTestApp(t, { MINIGATE_METRICS_TOKEN: TOKEN })
  await one.login()
  t.equal(sample(await scrape(one), 'minigate_logins_total', { new_user: 'true' }), 1)
  t.equal(sample(await scrape(two), 'minigate_logins_total', { new_user: 'true' }), undefined, 'the other app saw no login')
})

t.test('the signing-key gauge counts down to a scheduled key change', async (t) => {
  const app = await startTestApp(t, { MINIGATE_METRICS_TOKEN: TOKEN })
  const { cli } = await import('../helpers/cli.js')
  t.equal((await cli(app, 'keys', 'rotate')).code, 0)
  await app.deps.keys.reload()
  const first = sample(await scrape(app), 'minigate_signing_key_next_change_seconds') as number
  t.ok(first > 0 && Number.isFinite(first), `a change is due in ${first} s`)
  app.clock.advance(10)
  t.equal(sample(await scrape(app), 'minigate_signing_key_next_change_seconds'), first - 10, 'and it counts down with the clock')
})
