// The load generator of `npm run bench`, in a process of its own so it never shares an event loop with
// the bench or the server. Reads one JSON job on stdin, runs autocannon (keep-alive, fixed connections
// and duration), reads the servers' CPU time and peak RSS from /proc around the run, and prints one JSON
// result on stdout.
//
// job: { scenario: 'jwks'|'userinfo'|'introspect'|'login'|'refresh', urls: [..], connections, duration,
//        pids: [..], clockTicks, codes?: [..], accessTokens?: [..], refreshTokens?: [..one per connection],
//        basic?: 'Basic ...', grantType? }
import { readFileSync, writeFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import autocannon from 'autocannon'

const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
const WECHAT_CODE_GRANT = 'urn:minigate:grant-type:wechat-code'

/** CPU time (ms, every thread) and current and peak RSS (KiB) of a process, from /proc. */
export function processStats(pid, clockTicks = 100) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name (which may hold spaces) in parentheses: state is field 3.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = Number(fields[11]) + Number(fields[12])
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { cpuMs: (ticks * 1000) / clockTicks, rssKib: kib('VmRSS'), peakRssKib: kib('VmHWM') }
}

/** Resets a process's peak RSS (VmHWM) to its current RSS, so a scenario's peak is its own; false when not allowed. */
export function resetPeakRss(pid) {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5')
    return true
  } catch {
    return false
  }
}

/** The autocannon requests of a scenario, and what the scenario counts beside autocannon's figures. */
function scenarioOf(job) {
  const counters = { codesExhausted: 0, chainBreaks: 0 }
  let next = 0
  const rotating = (list) => () => list[(next = (next + 1) % list.length)]
  switch (job.scenario) {
    case 'jwks':
      return { counters, requests: [{ method: 'GET', path: '/.well-known/jwks.json' }] }
    case 'userinfo': {
      const token = rotating(job.accessTokens)
      return { counters, requests: [{ method: 'GET', path: '/userinfo', setupRequest: (req) => ({ ...req, headers: { authorization: `Bearer ${token()}` } }) }] }
    }
    case 'introspect': {
      const token = rotating(job.accessTokens)
      return {
        counters,
        requests: [{ method: 'POST', path: '/introspect', setupRequest: (req) => ({ ...req, headers: { ...FORM, authorization: job.basic }, body: `token=${token()}` }) }],
      }
    }
    case 'login': {
      // Every request spends a fresh code minted in advance; the bench mints more than the run can use.
      const codes = job.codes
      let used = 0
      const scope = job.scope ? `&scope=${encodeURIComponent(job.scope)}` : ''
      return {
        counters,
        requests: [
          {
            method: 'POST',
            path: '/token',
            setupRequest: (req) => {
              if (used >= codes.length) counters.codesExhausted += 1
              const code = codes[Math.min(used++, codes.length - 1)]
              return { ...req, headers: FORM, body: `grant_type=${encodeURIComponent(WECHAT_CODE_GRANT)}&code=${code}${scope}` }
            },
          },
        ],
      }
    }
    case 'refresh': {
      // autocannon resets a connection's context after each request, so each connection's chain lives
      // here, keyed by the connection's number: connection k always presents chain k's newest token.
      const chains = [...job.refreshTokens]
      let clients = 0
      return {
        counters,
        requests: [{ method: 'POST', path: '/token', headers: FORM, body: 'grant_type=refresh_token' }],
        setupClient(client) {
          const k = clients++ % chains.length
          client.setRequests([
            {
              method: 'POST',
              path: '/token',
              setupRequest: (req) => ({ ...req, headers: FORM, body: `grant_type=refresh_token&refresh_token=${chains[k]}` }),
              onResponse: (status, body) => {
                if (status === 200) chains[k] = JSON.parse(body).refresh_token
                else counters.chainBreaks += 1
              },
            },
          ])
        },
      }
    }
    default:
      throw new Error(`unknown scenario ${job.scenario}`)
  }
}

/** Runs one job; the result is plain JSON. */
export async function runLoad(job) {
  const { requests, setupClient, counters } = scenarioOf(job)
  const ticks = job.clockTicks ?? 100
  const pids = job.pids ?? []
  const peakReset = pids.map((pid) => resetPeakRss(pid)).every(Boolean)
  const before = pids.map((pid) => processStats(pid, ticks))
  const result = await autocannon({
    url: job.urls.length === 1 ? job.urls[0] : job.urls,
    connections: job.connections,
    duration: job.duration,
    timeout: job.timeout ?? 10,
    requests,
    ...(setupClient ? { setupClient } : {}),
  })
  const after = pids.map((pid) => processStats(pid, ticks))
  const cpuMs = after.reduce((sum, stats, i) => sum + stats.cpuMs - before[i].cpuMs, 0)
  const completed = result.requests.total
  const statusCodes = Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, { count }]) => [code, count]))
  return {
    scenario: job.scenario,
    connections: job.connections,
    duration: result.duration,
    requests: completed,
    rps: completed / result.duration,
    latency: { p50: result.latency.p50, p90: result.latency.p90, p99: result.latency.p99, max: result.latency.max, mean: result.latency.mean },
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
    codesExhausted: counters.codesExhausted,
    chainBreaks: counters.chainBreaks,
    cpuMs,
    cpuMsPerRequest: completed > 0 ? cpuMs / completed : null,
    // Per instance: the largest of the instances' peaks during this run (since the reset above when allowed).
    peakRssKib: Math.max(...after.map((stats) => stats.peakRssKib)),
    peakRssScope: peakReset ? 'run' : 'process',
  }
}

async function main() {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  const job = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  const result = await runLoad(job)
  process.stdout.write(`${JSON.stringify(result)}\n`)
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main()
