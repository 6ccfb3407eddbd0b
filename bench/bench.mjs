// npm run bench: measures minigate as it runs in production, each part in a process of its own:
//   - the machine's signing ceiling (jose RS256 signatures/s, bench/ceiling.mjs);
//   - the WeChat simulator (node dist/wechat/simulator/main.js) standing in for WeChat;
//   - minigate (node dist/main.js, one instance, or two sharing a PostgreSQL database) on a fresh
//     database seeded with users, an app configured, rate limits off, logs at warn;
//   - the load generator (autocannon in bench/load.mjs), keep-alive, fixed connections and duration.
// Prints a markdown table and the issue's targets, writes bench/results.json and bench/chart.svg.
// `npm run bench -- --help` lists the flags; the README's "Benchmark" section explains the columns.
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { killChildren, freePort, paths, runNodeJson, startMinigate, startSimulator } from './processes.mjs'
import { checkTargets, describeRun, describeSizes, formatTable, renderChart, targetsTable } from './report.mjs'
import { databaseSize, openidOf, prepareDatabase, seedUsers } from './seed.mjs'

const USAGE = `npm run bench -- [options]

  --duration <s>        seconds measured per endpoint (default 5)
  --warmup <s>          seconds of warm-up before each measurement, not counted (default 1; 0 for none)
  --connections <n>     concurrent keep-alive connections (default 20)
  --users <n>           also seed n users in bulk and measure login and refresh at n users (default: only ${'1,000'})
  --db <url>            a postgres:// URL: also run on PostgreSQL, one instance and two (default: MINIGATE_BENCH_PG)
  --start-postgres      start a throwaway PostgreSQL with scripts/postgres.sh (PGPORT) and run on it too
  --sqlite-only         SQLite only, even when a PostgreSQL URL is known
  --scenarios <list>    comma-separated subset of jwks,userinfo,introspect,login,refresh (default all)
  --scope <scope>       scope of the logins (default profile; "openid profile" adds an ID token: 3 signatures)
  --out <file>          results file (default bench/results.json)
  --chart <file>        chart file (default bench/chart.svg)
  --update-readme       also write the results into README.md, between its bench:results markers
  --help                this text`

const SCENARIOS = {
  jwks: { endpoint: 'GET /.well-known/jwks.json' },
  userinfo: { endpoint: 'GET /userinfo' },
  introspect: { endpoint: 'POST /introspect' },
  login: { endpoint: 'POST /token (login)', signs: true },
  refresh: { endpoint: 'POST /token (refresh)', signs: true },
}
/** The users every configuration is seeded with: the "1k users" of the issue's scale comparison. */
const BASE_USERS = 1000
/** Logins made to have access tokens for /userinfo and /introspect. */
const ACCESS_TOKENS = 200
/** The simulator keeps at most this many codes (src/wechat/simulator/state.ts). */
const SIMULATOR_CODE_LIMIT = 100_000
const WECHAT_CODE_GRANT = 'urn:minigate:grant-type:wechat-code'

function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      connections: { type: 'string', default: '20' },
      users: { type: 'string' },
      db: { type: 'string' },
      'start-postgres': { type: 'boolean', default: false },
      'sqlite-only': { type: 'boolean', default: false },
      scenarios: { type: 'string', default: Object.keys(SCENARIOS).join(',') },
      scope: { type: 'string', default: 'profile' },
      out: { type: 'string', default: 'bench/results.json' },
      chart: { type: 'string', default: 'bench/chart.svg' },
      'update-readme': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help) {
    console.log(USAGE)
    process.exit(0)
  }
  const whole = (name, min, max) => {
    const value = Number(values[name])
    if (!Number.isInteger(value) || value < min || value > max) usage(`--${name} must be a whole number from ${min} to ${max}`)
    return value
  }
  const scenarios = values.scenarios.split(',').map((name) => name.trim()).filter(Boolean)
  for (const name of scenarios) if (!SCENARIOS[name]) usage(`unknown scenario ${name} (known: ${Object.keys(SCENARIOS).join(', ')})`)
  const pgUrl = values['sqlite-only'] ? undefined : values.db ?? process.env.MINIGATE_BENCH_PG
  if (pgUrl !== undefined && !/^postgres(ql)?:\/\//i.test(pgUrl)) usage('--db must be a postgres:// URL')
  if (!/^[a-z ]+$/.test(values.scope)) usage('--scope must be space-separated scope names')
  return {
    duration: whole('duration', 1, 600),
    warmup: whole('warmup', 0, 60),
    connections: whole('connections', 1, 1000),
    users: values.users === undefined ? undefined : whole('users', 1, 100_000_000),
    pgUrl,
    startPostgres: values['start-postgres'] && !values['sqlite-only'],
    scenarios,
    scope: values.scope,
    signatures: values.scope.split(' ').includes('openid') ? 3 : 2,
    out: resolve(paths.root, values.out),
    chart: resolve(paths.root, values.chart),
    updateReadme: values['update-readme'],
    /** Seconds per phase of each ceiling measurement. */
    ceilingSeconds: Math.min(2, Number(values.duration)),
  }
}

function usage(message) {
  console.error(`bench: ${message}\n\n${USAGE}`)
  process.exit(2)
}

function machine() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
  return {
    cpu: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    kernel: release(),
    date: new Date().toISOString(),
    loadAverageAtStart: loadavg().map((value) => Math.round(value * 100) / 100),
  }
}

function clockTicks() {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
}

// --- talking to the simulator and minigate from the bench (setup only, never measured) ---------------

/** Runs `work(i)` for i in 0..count-1, `lanes` at a time. */
async function inLanes(count, lanes, work) {
  const results = new Array(count)
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(lanes, count) }, async () => {
      while (next < count) {
        const i = next++
        results[i] = await work(i)
      }
    }),
  )
  return results
}

/** wx.login() codes of seeded users picked at random among `users`, minted through the simulator's control endpoint. */
function mintCodes(simulatorUrl, count, users) {
  return inLanes(count, 16, async () => {
    const response = await fetch(`${simulatorUrl}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ openid: openidOf(Math.floor(Math.random() * users)) }),
    })
    if (response.status !== 200) throw new Error(`the simulator refused to mint a code: HTTP ${response.status}`)
    return (await response.json()).code
  })
}

/** `count` logins of random seeded users, spread over the instances: their token responses. */
async function logins(ctx, count, users) {
  const codes = await mintCodes(ctx.simulator.url, count, users)
  return inLanes(count, 8, async (i) => {
    const response = await fetch(`${ctx.urls[i % ctx.urls.length]}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: WECHAT_CODE_GRANT, code: codes[i], scope: ctx.options.scope }),
    })
    const body = await response.json()
    if (response.status !== 200) throw new Error(`a setup login failed: HTTP ${response.status} ${JSON.stringify(body)}`)
    return body
  })
}

// --- one measurement ----------------------------------------------------------------------------------

/** The data a run of `scenario` spends: codes for logins, one refresh chain per connection, access tokens. */
async function jobData(ctx, scenario, seconds, users, estimate) {
  switch (scenario) {
    case 'login': {
      // Enough fresh codes for the run: 1.5 times the warm-up's rate, and at least half of what the
      // signing ceiling allows (all of it, 1.5 times, without a warm-up), plus some per connection. A run
      // that spends them all anyway says so (codesExhausted).
      const ceilingRate = ctx.ceiling.inFlight / ctx.options.signatures
      const rate = estimate === undefined ? ceilingRate * 1.5 : Math.max(estimate * 1.5 + 100, ceilingRate / 2)
      const count = Math.min(SIMULATOR_CODE_LIMIT / 2, Math.ceil(rate * seconds) + 20 * ctx.options.connections)
      return { codes: await mintCodes(ctx.simulator.url, count, users) }
    }
    case 'refresh':
      return { refreshTokens: (await logins(ctx, ctx.options.connections, users)).map((tokens) => tokens.refresh_token) }
    case 'userinfo':
    case 'introspect':
      return { accessTokens: ctx.accessTokens }
    default:
      return {}
  }
}

function runLoad(ctx, scenario, seconds, data) {
  return runNodeJson(paths.load, {
    scenario,
    urls: ctx.urls,
    connections: ctx.options.connections,
    duration: seconds,
    pids: ctx.servers.map((server) => server.pid),
    clockTicks: ctx.clockTicks,
    basic: ctx.basic,
    scope: ctx.options.scope,
    ...data,
  })
}

/** Warms `scenario` up, then measures it; the table's row. `tag` marks the printed line. */
async function measure(ctx, scenario, users, tag = '') {
  const { endpoint, signs } = SCENARIOS[scenario]
  let estimate
  let warmupErrors = 0
  if (ctx.options.warmup > 0) {
    const warm = await runLoad(ctx, scenario, ctx.options.warmup, await jobData(ctx, scenario, ctx.options.warmup, users))
    estimate = warm.rps
    warmupErrors = warm.non2xx + warm.errors + warm.timeouts
  }
  // The machine is shared and its signing capacity drifts: a signing endpoint is judged against the
  // mean of the ceilings measured just before and just after it, under much the same conditions.
  const nearCeiling = () => runNodeJson(paths.ceiling, undefined, [String(ctx.options.ceilingSeconds / 2), '64', 'in-flight'])
  const ceilingBefore = signs ? await nearCeiling() : undefined
  const result = await runLoad(ctx, scenario, ctx.options.duration, await jobData(ctx, scenario, ctx.options.duration, users, estimate))
  const ceilingAfter = signs ? await nearCeiling() : undefined
  const ceiling = signs ? { inFlight: (ceilingBefore.inFlight + ceilingAfter.inFlight) / 2, before: ceilingBefore.inFlight, after: ceilingAfter.inFlight } : undefined
  const signatures = signs ? ctx.options.signatures : 0
  const row = {
    scenario,
    endpoint,
    rps: result.rps,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.non2xx + result.errors + result.timeouts,
    cpuMsPerRequest: result.cpuMsPerRequest,
    peakRssMB: (result.peakRssKib * 1024) / 1e6,
    signaturesPerRequest: signatures,
    efficiency: signs ? (result.rps * signatures) / ceiling.inFlight : null,
    ceilingInFlight: ceiling?.inFlight ?? null,
    ceilingInFlightBeforeAfter: ceiling ? [ceiling.before, ceiling.after] : null,
    warmupErrors,
    raw: result,
  }
  const problems = []
  if (row.errors > 0) problems.push(`${row.errors} errors (non-2xx ${result.non2xx} ${JSON.stringify(result.statusCodes)}, socket ${result.errors}, timeouts ${result.timeouts})`)
  if (result.codesExhausted > 0) problems.push(`ran out of minted codes ${result.codesExhausted} times`)
  if (warmupErrors > 0) problems.push(`${warmupErrors} errors during the warm-up`)
  const efficiency = signs ? `  efficiency ${row.efficiency.toFixed(2)} (ceiling ${Math.round(ceiling.before)}/s before, ${Math.round(ceiling.after)}/s after)` : ''
  console.log(`  ${`${tag}${endpoint}`.padEnd(tag ? 44 : 28)} ${String(Math.round(row.rps)).padStart(6)} req/s  p50 ${row.p50} ms  p99 ${row.p99} ms  errors ${row.errors}${efficiency}${problems.length ? `  !! ${problems.join('; ')}` : ''}`)
  return row
}

// --- one configuration ----------------------------------------------------------------------------------

function withSchema(url, schema) {
  const parsed = new URL(url)
  parsed.searchParams.set('schema', schema)
  return parsed.toString()
}

/** A fresh database: a SQLite file in `dir`, or a schema of its own on PostgreSQL; `drop` removes it. */
async function freshDatabase(options, dialect, dir, name) {
  if (dialect === 'sqlite') return { location: join(dir, `${name}.sqlite`), drop: async () => {} }
  const schema = `bench_${randomBytes(5).toString('hex')}`
  const admin = new pg.Client({ connectionString: options.pgUrl })
  await admin.connect()
  await admin.query(`create schema ${schema}`)
  await admin.end()
  return {
    location: withSchema(options.pgUrl, schema),
    drop: async () => {
      const client = new pg.Client({ connectionString: options.pgUrl })
      await client.connect()
      await client.query(`drop schema ${schema} cascade`)
      await client.end()
    },
  }
}

/** Starts `instances` minigates on `location`, one after the other (the first creates the signing key). */
async function startInstances(ctx, shared, location, keysDir, instances) {
  const ports = await Promise.all(Array.from({ length: instances }, () => freePort()))
  const env = {
    WECHAT_APPS: `${shared.appid}:${shared.appSecret}`,
    WECHAT_API_BASE: ctx.simulator.url,
    MINIGATE_DB: location,
    MINIGATE_KEYS_DIR: keysDir,
    MINIGATE_ISSUER: `http://127.0.0.1:${ports[0]}`,
    MINIGATE_SERVICES: `bench-service:${shared.serviceSecret}`,
    MINIGATE_RATE_LIMITS: 'off',
    MINIGATE_LOG_LEVEL: 'warn',
  }
  const servers = []
  for (const port of ports) {
    const server = await startMinigate(env, port)
    ctx.started.push(server)
    servers.push(server)
  }
  return servers
}

async function runConfiguration(options, config, shared) {
  console.log(`\n${config.label}`)
  const dir = mkdtempSync(join(tmpdir(), 'minigate-bench-'))
  const keysDir = join(dir, 'keys')
  const databases = []
  const ctx = { options, ceiling: shared.ceiling, clockTicks: shared.clockTicks, started: [], simulator: undefined }
  try {
    const baseUsers = Math.min(BASE_USERS, options.users ?? BASE_USERS)
    const base = await freshDatabase(options, config.dialect, dir, 'minigate')
    databases.push(base)
    await prepareDatabase(base.location, keysDir)
    await seedUsers(base.location, { keysDir, appid: shared.appid, to: baseUsers })
    ctx.simulator = await startSimulator(`${shared.appid}:${shared.appSecret}`)
    ctx.servers = await startInstances(ctx, shared, base.location, keysDir, config.instances)
    ctx.urls = ctx.servers.map((server) => server.url)
    ctx.basic = `Basic ${Buffer.from(`bench-service:${shared.serviceSecret}`).toString('base64')}`
    ctx.accessTokens = (await logins(ctx, ACCESS_TOKENS, baseUsers)).map((tokens) => tokens.access_token)

    const scenarios = []
    for (const scenario of options.scenarios) scenarios.push(await measure(ctx, scenario, baseUsers))
    const result = {
      key: config.key,
      label: config.label,
      dialect: config.dialect,
      instances: config.instances,
      users: baseUsers,
      databaseSize: await databaseSize(base.location),
      scenarios,
    }
    const scaleScenarios = options.scenarios.filter((name) => name === 'login' || name === 'refresh')
    if (options.users !== undefined && options.users > baseUsers && config.scale && scaleScenarios.length > 0) {
      // A second database with all N users and a server of its own, measured right after the base one
      // for each endpoint: a shared machine's speed drifts over minutes, and the comparison is what counts.
      const big = await freshDatabase(options, config.dialect, dir, 'minigate-scale')
      databases.push(big)
      await prepareDatabase(big.location, keysDir)
      console.log(`  seeding ${options.users.toLocaleString('en-US')} users into a second database...`)
      const seedSeconds = await seedUsers(big.location, { keysDir, appid: shared.appid, to: options.users })
      console.log(`  seeded in ${seedSeconds.toFixed(1)} s; each endpoint at ${baseUsers.toLocaleString('en-US')} users, then at ${options.users.toLocaleString('en-US')}:`)
      // Both sides on a freshly started server, so they differ by their database alone.
      await Promise.all(ctx.servers.map((server) => server.stop()))
      const baseServers = await startInstances(ctx, shared, base.location, keysDir, 1)
      const baseCtx = { ...ctx, servers: baseServers, urls: baseServers.map((server) => server.url) }
      const bigServers = await startInstances(ctx, shared, big.location, keysDir, 1)
      const bigCtx = { ...ctx, servers: bigServers, urls: bigServers.map((server) => server.url) }
      const again = []
      const scaled = []
      for (const scenario of scaleScenarios) {
        again.push(await measure(baseCtx, scenario, baseUsers, `${baseUsers.toLocaleString('en-US')} users: `))
        scaled.push(await measure(bigCtx, scenario, options.users, `${options.users.toLocaleString('en-US')} users: `))
      }
      result.scale = { users: options.users, seedSeconds, databaseSize: await databaseSize(big.location), base: again, scenarios: scaled }
    }
    const warnings = ctx.started.flatMap((server) => server.logs)
    result.serverLogLines = warnings.length
    if (warnings.length > 0) console.log(`  the server logged ${warnings.length} warning or error lines, the first: ${warnings[0]}`)
    return result
  } finally {
    await Promise.all(ctx.started.map((server) => server.stop()))
    await ctx.simulator?.stop()
    for (const database of databases) await database.drop().catch((error) => console.error(`bench: could not drop the benchmark's schema: ${error.message}`))
    rmSync(dir, { recursive: true, force: true })
  }
}

// --- PostgreSQL -------------------------------------------------------------------------------------------

async function reachable(url) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 })
  try {
    await client.connect()
    await client.end()
    return true
  } catch {
    return false
  }
}

/** `--start-postgres`: scripts/postgres.sh start, unless it already runs; returns the URL and how to stop it. */
async function startPostgres() {
  const script = join(paths.root, 'scripts', 'postgres.sh')
  const url = execFileSync(script, ['url'], { encoding: 'utf8' }).trim()
  if (await reachable(url)) return { url, stop: () => {} }
  console.log('starting a throwaway PostgreSQL (scripts/postgres.sh start)...')
  const started = execFileSync(script, ['start'], { encoding: 'utf8' }).trim().split('\n').pop()
  return { url: started, stop: () => execFileSync(script, ['stop'], { stdio: 'ignore' }) }
}

// --- the README -------------------------------------------------------------------------------------------

const README_START = '<!-- bench:results'
const README_END = '<!-- /bench:results -->'

/** Replaces the README's results block (between the bench:results markers) with this run's. */
function updateReadme(results, options) {
  const file = join(paths.root, 'README.md')
  const text = readFileSync(file, 'utf8')
  const start = text.indexOf(README_START)
  const end = text.indexOf(README_END)
  if (start === -1 || end < start) throw new Error(`README.md has no ${README_START} ... ${README_END} block to update`)
  const block = [
    `${README_START}: written by \`npm run bench -- --update-readme\`; change the harness, not this block -->`,
    describeRun(results),
    '',
    formatTable(results),
    '',
    `Database size: ${describeSizes(results)}.`,
    '',
    'The targets of issue 12:',
    '',
    targetsTable(results),
    '',
    `![npm run bench: requests per second and p99 latency per endpoint and configuration](${relative(paths.root, options.chart)})`,
    README_END,
  ].join('\n')
  writeFileSync(file, `${text.slice(0, start)}${block}${text.slice(end + README_END.length)}`)
}

// --- main ---------------------------------------------------------------------------------------------

async function main() {
  const options = parseOptions(process.argv.slice(2))
  let postgres
  if (options.startPostgres && !options.pgUrl) {
    postgres = await startPostgres()
    options.pgUrl = postgres.url
  }
  const configurations = [{ key: 'sqlite', label: 'SQLite', dialect: 'sqlite', instances: 1, scale: true }]
  if (options.pgUrl) {
    configurations.push({ key: 'postgres', label: 'PostgreSQL', dialect: 'postgres', instances: 1, scale: true })
    configurations.push({ key: 'postgres-2', label: 'PostgreSQL, 2 instances', dialect: 'postgres', instances: 2, scale: false })
  }
  const shared = {
    appid: `wx${randomBytes(8).toString('hex')}`,
    appSecret: randomBytes(16).toString('hex'),
    serviceSecret: randomBytes(16).toString('hex'),
    clockTicks: clockTicks(),
  }
  const started = performance.now()
  const info = machine()
  console.log(`minigate benchmark: ${info.cpu}, ${info.cores} cores, Node ${info.node}; ${options.connections} connections, ${options.duration} s per endpoint after ${options.warmup} s of warm-up`)
  const before = await runNodeJson(paths.ceiling, undefined, [String(options.ceilingSeconds), '64'])
  shared.ceiling = before
  console.log(`signing ceiling (jose RS256, 2048-bit): ${Math.round(before.sequential)}/s one at a time, ${Math.round(before.inFlight)}/s with 64 in flight`)

  const results = {
    machine: info,
    settings: {
      duration: options.duration,
      warmup: options.warmup,
      connections: options.connections,
      scope: options.scope,
      signaturesPerLoginAndRefresh: options.signatures,
      users: options.users ?? BASE_USERS,
      loadGenerator: 'autocannon in a child process (bench/load.mjs), keep-alive',
      twoInstances: 'the load generator alternates its connections between the two ports (no proxy)',
      refreshChains: 'one login per connection, made after seeding; connection k always presents the newest refresh token of chain k',
      efficiency: 'req/s x signatures per request / the mean of the in-flight ceilings measured just before and just after the row',
      cpuAndMemory: 'utime+stime of /proc/<pid>/stat and VmHWM of /proc/<pid>/status (reset through clear_refs) around each run; two instances: CPU summed, peak the larger',
      scale: 'a second database seeded with all N users and a server of its own; login and refresh measured on the base database (its server restarted) and right after on the big one',
    },
    ceiling: { sequential: before.sequential, inFlight: before.inFlight, inFlightWidth: before.inFlightWidth },
    configurations: [],
  }
  try {
    for (const config of configurations) results.configurations.push(await runConfiguration(options, config, shared))
  } finally {
    postgres?.stop()
  }
  results.machine.loadAverageAtEnd = loadavg().map((value) => Math.round(value * 100) / 100)
  results.seconds = Math.round((performance.now() - started) / 100) / 10
  results.targets = checkTargets(results)

  mkdirSync(dirname(options.out), { recursive: true })
  writeFileSync(options.out, `${JSON.stringify(results, null, 2)}\n`)
  mkdirSync(dirname(options.chart), { recursive: true })
  writeFileSync(options.chart, renderChart(results))

  console.log(`\n${formatTable(results)}\n`)
  console.log(`database size: ${describeSizes(results)}`)
  console.log('\ntargets (issue 12):')
  for (const check of results.targets) console.log(`  ${check.met ? 'met    ' : 'NOT MET'}  ${check.target}: ${check.value}`)
  if (options.updateReadme) updateReadme(results, options)
  console.log(`\nwrote ${options.out} and ${options.chart}${options.updateReadme ? ' and the README\'s results' : ''} (${results.seconds} s)`)
  const errors = results.configurations.flatMap((config) => [...config.scenarios, ...(config.scale?.base ?? []), ...(config.scale?.scenarios ?? [])]).reduce((sum, row) => sum + row.errors + row.warmupErrors, 0)
  if (errors > 0) {
    console.error(`bench: ${errors} requests failed (warm-ups included): the figures above are not a clean run`)
    process.exitCode = 1
  }
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    killChildren()
    process.exit(130)
  })
}
try {
  await main()
} catch (error) {
  killChildren()
  console.error(`bench: ${error.stack ?? error}${error.cause ? `\ncause: ${error.cause.stack ?? error.cause}` : ""}`)
  process.exitCode = 1
}
