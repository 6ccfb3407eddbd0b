#!/usr/bin/env node
// npm run demo [-- --issuer URL]: the whole story of minigate's two ends, against a running
// development minigate (`npm start`). A mini-program (@minigate/miniprogram, driven by a fake wx whose
// wx.login mints codes on minigate's WeChat simulator) logs in and calls the example orders service
// (@minigate/verify); its token is refreshed; a replayed refresh token ends the login; the service's
// online route refuses the revoked login; the mini-program recovers with a new wx.login.
// Every step checks what it shows; the exit code is 1 if any step does not behave as shown.
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { createClient } from '@minigate/miniprogram'
import { startOrdersService } from '@minigate/example-orders-service'
import { createFakeWx } from './fake-wx.js'

const USAGE = `usage: npm run demo [-- --issuer URL] [--client-id APPID] [--audience AUD] [--service-id ID --service-secret SECRET]
  --issuer          minigate's issuer (default: MINIGATE_ISSUER or http://localhost:3000)
  --client-id       the mini-program's appid (default: minigate's development app, wx0000000000000dev)
  --audience        the aud of access tokens (default: MINIGATE_AUDIENCE or minigate-api)
  --service-id, --service-secret   the orders service's introspection credentials (default: dev-service)`

class StepFailed extends Error {}

function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      issuer: { type: 'string' },
      'client-id': { type: 'string' },
      audience: { type: 'string' },
      'service-id': { type: 'string' },
      'service-secret': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  return {
    help: values.help === true,
    issuer: values.issuer ?? process.env.MINIGATE_ISSUER ?? 'http://localhost:3000',
    clientId: values['client-id'] ?? 'wx0000000000000dev',
    audience: values.audience ?? process.env.MINIGATE_AUDIENCE ?? 'minigate-api',
    introspection: { clientId: values['service-id'] ?? 'dev-service', clientSecret: values['service-secret'] ?? 'dev-service-secret' },
  }
}

const short = (text, length = 70) => (text.length > length ? `${text.slice(0, length - 1)}…` : text)

/** An answer in a few words: `200 []`, `401 invalid_token`, `201 {"id":1,...}`. */
function outcome({ statusCode, data, error, code }) {
  if (error) return `failed: ${error}`
  if (code) return `code ${code.slice(0, 8)}… (minted by the simulator)`
  if (data && typeof data === 'object' && typeof data.error === 'string') return `${statusCode} ${data.error}`
  if (statusCode === 204 || data === '' || data === undefined) return String(statusCode)
  if (data && typeof data === 'object' && typeof data.jwks_uri === 'string') return `${statusCode} the issuer's endpoints`
  if (data && typeof data === 'object' && typeof data.access_token === 'string') {
    return `${statusCode} tokens (scope "${data.scope}", access token for ${data.expires_in} s)`
  }
  return `${statusCode} ${short(typeof data === 'string' ? data : JSON.stringify(data), 60)}`
}

async function runDemo(options, print = console.log) {
  const issuer = options.issuer.replace(/\/+$/, '')
  let ordersUrl = ''
  const where = (url) => (url?.startsWith(ordersUrl) ? 'orders  ' : 'minigate')
  /** The calls of the current step, as `what status`, to compare with what the step expects. */
  let seen = []
  const show = (call) => {
    const label = call.api === 'login' ? `phone     ${call.what}` : `${where(call.url)}  ${call.what}`
    print(`     ${label.padEnd(50)} → ${outcome(call)}`)
    const status = call.statusCode ?? (call.error ? 'failed' : 'code')
    const error = call.data && typeof call.data === 'object' && typeof call.data.error === 'string' ? ` ${call.data.error}` : ''
    seen.push(`${call.what} ${status}${error}`)
  }

  const openid = `oDemo${randomBytes(6).toString('hex')}`
  const wx = createFakeWx({ issuer, appid: options.clientId, openid, onCall: show })
  let phoneClock = Date.now()
  const client = createClient({ issuer: options.issuer, clientId: options.clientId, scope: 'profile phone', wx, now: () => phoneClock })

  let stepNumber = 0
  const failures = []
  async function step(title, run) {
    stepNumber += 1
    seen = []
    print(`\n${stepNumber}. ${title}`)
    try {
      await run()
    } catch (error) {
      if (!(error instanceof StepFailed)) throw error
      failures.push(`step ${stepNumber}: ${error.message}`)
      print(`   ✗ ${error.message}`)
    }
  }
  function expect(condition, message) {
    if (!condition) throw new StepFailed(message)
  }
  function expectCalls(expected) {
    const actual = seen.map((entry) => entry.replace(/ code$/, ''))
    expect(JSON.stringify(actual) === JSON.stringify(expected), `expected the calls\n       ${expected.join('\n       ')}\n     but saw\n       ${actual.join('\n       ')}`)
  }
  /** A request outside the mini-program (an attacker's, or a look behind the scenes), shown like the others. */
  async function direct(label, url, init) {
    const response = await fetch(url, init)
    const text = await response.text()
    let data = text
    try {
      data = JSON.parse(text)
    } catch {
      // not JSON: shown as text
    }
    show({ api: 'request', what: label, url, statusCode: response.status, data })
    return { status: response.status, data, header: response.headers }
  }
  const tokenOf = () => wx.getStorageSync('minigate:tokens')

  // Is a development minigate there?
  const discovery = await fetch(`${issuer}/.well-known/openid-configuration`).catch((error) => {
    throw new Error(`minigate does not answer at ${issuer} (${error.cause?.code ?? error.cause?.message ?? error.message}); start it with \`npm start\` or pass --issuer`)
  })
  if (discovery.status !== 200) throw new Error(`${issuer}/.well-known/openid-configuration answered ${discovery.status}`)
  const simulator = await fetch(`${issuer}/_dev/wechat/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ appid: options.clientId, openid }) })
  if (simulator.status !== 200) {
    throw new Error(`the WeChat simulator at ${issuer}/_dev/wechat answered ${simulator.status}: the demo needs minigate in development mode (no WECHAT_APPS) or with MINIGATE_WECHAT_SIMULATOR=1`)
  }

  const orders = await startOrdersService({ issuer: options.issuer, audience: options.audience, introspection: options.introspection, port: 0 })
  ordersUrl = orders.url
  print('minigate demo: a mini-program and a business service, the two ends of minigate')
  print(`   minigate        ${options.issuer}  (development mode: wx.login codes come from its WeChat simulator)`)
  print(`   orders service  ${orders.url}  (examples/orders-service, protected by @minigate/verify)`)
  print(`   mini-program    @minigate/miniprogram with a fake wx, WeChat user ${openid}`)

  try {
    let firstRefreshToken = ''
    let orderId = 0

    await step('The mini-program logs in: wx.login, then minigate’s wechat-code grant', async () => {
      const result = await client.login()
      expectCalls(['wx.login()', 'GET /.well-known/openid-configuration 200', 'POST /token (wechat-code) 200'])
      expect(result.scope === 'profile phone', `scope "${result.scope}"`)
      firstRefreshToken = tokenOf().refresh_token
      print(`   ✓ logged in; tokens kept in wx storage under "minigate:tokens"`)
    })

    await step('It calls the orders service, which verifies the token offline against minigate’s JWKS', async () => {
      const list = await client.request({ url: `${orders.url}/orders` })
      const placed = await client.request({ url: `${orders.url}/orders`, method: 'POST', data: { item: 'green tea' } })
      expectCalls(['GET /orders 200', 'POST /orders 201'])
      expect(Array.isArray(list.data) && list.data.length === 0, 'a new user has no orders')
      expect(placed.data.status === 'placed', 'the order is placed')
      orderId = placed.data.id
      print(`   ✓ order ${orderId} placed (POST /orders needs scope phone, which this login has)`)
    })

    await step('Another user, logged in with scope profile only, may not place orders', async () => {
      const guestWx = createFakeWx({ issuer, appid: options.clientId, openid: `${openid}guest`, onCall: show })
      const guest = createClient({ issuer: options.issuer, clientId: options.clientId, scope: 'profile', wx: guestWx })
      const refused = await guest.request({ url: `${orders.url}/orders`, method: 'POST', data: { item: 'black tea' } })
      expectCalls(['wx.login()', 'GET /.well-known/openid-configuration 200', 'POST /token (wechat-code) 200', 'POST /orders 403 insufficient_scope'])
      expect(refused.statusCode === 403, 'refused with 403')
      print('   ✓ request() logged the guest in by itself; requireScope(\'phone\') answered 403 insufficient_scope')
    })

    await step('Later: the access token is near its expiry, so the next call refreshes it first', async () => {
      const tokens = tokenOf()
      phoneClock = tokens.expires_at - 30_000
      print(`     (the demo moves the phone’s clock to 30 s before the access token expires)`)
      const list = await client.request({ url: `${orders.url}/orders` })
      expectCalls(['POST /token (refresh_token) 200', 'GET /orders 200'])
      expect(list.data.length === 1, 'the order is still there')
      expect(tokenOf().refresh_token !== firstRefreshToken, 'the refresh token was rotated')
      print('   ✓ one refresh, then the call; the old refresh token is now spent')
    })

    await step('An attacker replays the spent refresh token (copied before the refresh)', async () => {
      const replay = await direct('POST /token (refresh_token, replayed)', `${issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: firstRefreshToken, client_id: options.clientId }),
      })
      expect(replay.status === 400 && replay.data.error === 'invalid_grant', 'the replay is refused with invalid_grant')
      print('   ✓ refused, and minigate takes it for theft: the whole login is revoked, the phone’s tokens too')
    })

    await step('The orders service: offline routes accept the token until it expires; the online route refuses it', async () => {
      const accessToken = tokenOf().access_token
      const bearer = { authorization: `Bearer ${accessToken}` }
      const { exp } = JSON.parse(Buffer.from(accessToken.split('.')[1], 'base64url').toString())
      const list = await direct('GET /orders', `${orders.url}/orders`, { headers: bearer })
      const pay = await direct(`POST /orders/${orderId}/pay`, `${orders.url}/orders/${orderId}/pay`, { method: 'POST', headers: bearer })
      expect(list.status === 200, 'GET /orders (offline) still accepts the token: its signature and exp are fine')
      expect(pay.status === 401 && pay.data.error === 'invalid_token', 'the online route refuses the revoked login')
      expect(/error="invalid_token"/.test(pay.header.get('www-authenticate') ?? ''), 'with a Bearer invalid_token challenge')
      print(`   ✓ ${pay.data.error_description}: introspection says the login is over (offline, it would pass for up to ${Math.round((exp * 1000 - Date.now()) / 60_000)} more minutes)`)
    })

    await step('The mini-program pays anyway: 401, its refresh is refused, so it logs in again and retries', async () => {
      const paid = await client.request({ url: `${orders.url}/orders/${orderId}/pay`, method: 'POST' })
      expectCalls([
        `POST /orders/${orderId}/pay 401 invalid_token`,
        'POST /token (refresh_token) 400 invalid_grant',
        'wx.login()',
        'POST /token (wechat-code) 200',
        `POST /orders/${orderId}/pay 200`,
      ])
      expect(paid.statusCode === 200 && paid.data.status === 'paid', 'the order is paid')
      print(`   ✓ order ${orderId} paid after a new login; the user never saw the revocation`)
    })
  } finally {
    await orders.close()
  }

  if (failures.length > 0) {
    print(`\n✗ ${failures.length} of ${stepNumber} steps did not behave as shown`)
    return false
  }
  print(`\n✓ all ${stepNumber} steps behaved as shown`)
  return true
}

let options
try {
  options = parseOptions(process.argv.slice(2))
} catch (error) {
  console.error(`${error.message}\n${USAGE}`)
  process.exit(2)
}
if (options.help) {
  console.log(USAGE)
} else {
  try {
    process.exitCode = (await runDemo(options)) ? 0 : 1
  } catch (error) {
    console.error(`\ndemo failed: ${error.message}`)
    process.exitCode = 1
  }
}
