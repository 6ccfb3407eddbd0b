// npm run bench: load-tests the built server in-process on loopback with autocannon.
// Each scenario runs BENCH_SECONDS (default 5) with BENCH_CONNECTIONS (default 16) connections.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { start } from '../dist/main.js'
import { createLogger } from '../dist/log.js'

const seconds = Number(process.env.BENCH_SECONDS ?? 5)
const connections = Number(process.env.BENCH_CONNECTIONS ?? 16)
const dir = mkdtempSync(join(tmpdir(), 'minigate-bench-'))
const running = await start(
  {
    PORT: '0',
    MINIGATE_DB: join(dir, 'minigate.sqlite'),
    MINIGATE_KEYS_DIR: join(dir, 'keys'),
    MINIGATE_RATE_LIMITS: 'off',
  },
  createLogger({ level: 'warn' }),
)
const url = running.url
const simulator = running.deps.simulator.state
const appid = running.deps.config.apps[0].appid
const form = { 'content-type': 'application/x-www-form-urlencoded' }
const GRANT = 'urn:minigate:grant-type:wechat-code'
let users = 0

function newCode() {
  users += 1
  return simulator.login({ appid, openid: `oBench${users}` })
}

async function login() {
  const response = await fetch(`${url}/token`, { method: 'POST', headers: form, body: new URLSearchParams({ grant_type: GRANT, code: newCode() }) })
  return response.json()
}

const pool = await Promise.all(Array.from({ length: connections * 4 }, login))
const accessTokens = pool.map((tokens) => tokens.access_token)
const refreshTokens = pool.map((tokens) => tokens.refresh_token)
const basic = `Basic ${Buffer.from('dev-service:dev-service-secret').toString('base64')}`

// autocannon resets a connection's context after every request, so rotating state lives out here.
let next = 0
const nextAccessToken = () => accessTokens[(next = (next + 1) % accessTokens.length)]

const scenarios = [
  { name: 'GET /.well-known/jwks.json', requests: [{ method: 'GET', path: '/.well-known/jwks.json' }] },
  {
    name: 'GET /userinfo',
    requests: [{ method: 'GET', path: '/userinfo', setupRequest: (req) => ({ ...req, headers: { authorization: `Bearer ${nextAccessToken()}` } }) }],
  },
  {
    name: 'POST /introspect',
    requests: [{ method: 'POST', path: '/introspect', setupRequest: (req) => ({ ...req, headers: { ...form, authorization: basic }, body: `token=${nextAccessToken()}` }) }],
  },
  {
    name: 'POST /token (wechat-code login, simulator over HTTP)',
    requests: [{ method: 'POST', path: '/token', setupRequest: (req) => ({ ...req, headers: form, body: `grant_type=${encodeURIComponent(GRANT)}&code=${newCode()}` }) }],
  },
  {
    name: 'POST /token (refresh rotation)',
    requests: [
      {
        method: 'POST',
        path: '/token',
        // Each family's newest refresh token waits in the queue while no request holds it.
        setupRequest: (req) => ({ ...req, headers: form, body: `grant_type=refresh_token&refresh_token=${refreshTokens.shift()}` }),
        onResponse: (status, body) => {
          if (status === 200) refreshTokens.push(JSON.parse(body).refresh_token)
        },
      },
    ],
  },
]

const rows = []
for (const scenario of scenarios) {
  const result = await autocannon({ url, connections, duration: seconds, requests: scenario.requests })
  rows.push({
    scenario: scenario.name,
    'req/s': Math.round(result.requests.average),
    'p50 ms': result.latency.p50,
    'p99 ms': result.latency.p99,
    requests: result.requests.total,
    'non-2xx': result.non2xx,
    errors: result.errors + result.timeouts,
  })
}
console.log(`minigate ${url}: ${connections} connections, ${seconds} s per scenario, node ${process.version}`)
console.table(rows)
await running.close()
rmSync(dir, { recursive: true, force: true })
