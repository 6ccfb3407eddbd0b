// The processes of `npm run bench`: the WeChat simulator, minigate instances, and one-shot Node children
// (the load generator, the signing ceiling). Each runs apart from the bench's own event loop.
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
export const paths = {
  root,
  server: fileURLToPath(new URL('../dist/main.js', import.meta.url)),
  simulator: fileURLToPath(new URL('../dist/wechat/simulator/main.js', import.meta.url)),
  load: fileURLToPath(new URL('./load.mjs', import.meta.url)),
  ceiling: fileURLToPath(new URL('./ceiling.mjs', import.meta.url)),
}

const children = new Set()

/** Kills every child still running (on a failure or Ctrl-C), by its own pid. */
export function killChildren() {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
}

function track(child) {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

/** Whether `port` can be bound on 127.0.0.1 now. */
function canListen(port) {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/**
 * A free port for a minigate instance (at log level warn it prints nothing, so it is told its port).
 * Taken below the kernel's ephemeral range, from which every `PORT=0` server and outgoing connection on
 * this shared machine draws: one of those cannot take it between this check and minigate's listen.
 */
export async function freePort() {
  let low = 32768
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low
  } catch {
    // Not Linux: the usual range.
  }
  const from = Math.max(1024, Math.min(20000, low - 2000))
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const port = from + Math.floor(Math.random() * (low - from))
    if (await canListen(port)) return port
  }
  throw new Error('no free port found below the ephemeral range')
}

function exitOf(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve({ code: child.exitCode, signal: child.signalCode })
    child.once('exit', (code, signal) => resolve({ code, signal }))
  })
}

async function stop(child, timeoutMs = 10_000) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = exitOf(child)
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  await exited
  clearTimeout(timer)
}

/** Starts `node dist/wechat/simulator/main.js` for `apps` and resolves with its URL once it listens. */
export function startSimulator(apps) {
  const child = track(
    spawn(process.execPath, [paths.simulator], {
      env: { PATH: process.env.PATH ?? '', WECHAT_APPS: apps, PORT: '0', HOST: '127.0.0.1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  )
  let stderr = ''
  child.stderr.on('data', (chunk) => (stderr += chunk))
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const match = /listening on (\S+)/.exec(line)
      if (match) resolve({ child, pid: child.pid, url: match[1], stop: () => stop(child) })
    })
    void exitOf(child).then(({ code }) => reject(new Error(`the WeChat simulator exited (${code}): ${stderr.trim()}`)))
  })
}

/**
 * Starts `node dist/main.js` with `env` on `port` and resolves once `/healthz` answers 200. Its log
 * lines (warnings and errors only, at MINIGATE_LOG_LEVEL=warn) are kept in `logs`.
 */
export async function startMinigate(env, port) {
  // MINIGATE_BENCH_NODE_ARGS: node options for the server only, e.g. to profile it (README "Benchmark").
  const nodeArgs = (process.env.MINIGATE_BENCH_NODE_ARGS ?? '').split(/\s+/).filter(Boolean)
  const child = track(
    spawn(process.execPath, [...nodeArgs, paths.server], {
      env: { PATH: process.env.PATH ?? '', ...env, PORT: String(port), HOST: '127.0.0.1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  )
  const logs = []
  let stderr = ''
  createInterface({ input: child.stdout }).on('line', (line) => logs.push(line))
  child.stderr.on('data', (chunk) => (stderr += chunk))
  let stopping = false
  child.once('exit', (code, signal) => {
    if (!stopping) console.error(`bench: minigate (pid ${child.pid}) exited unexpectedly (${code ?? signal}): ${stderr.trim() || logs.slice(-5).join('\n')}`)
  })
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 60_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`minigate exited (${child.exitCode}) on start: ${stderr.trim() || logs.join('\n')}`)
    try {
      const response = await fetch(`${url}/healthz`)
      // The issuer tells this run's server from anything else that might answer on the port.
      if (response.status === 200 && (await (await fetch(`${url}/.well-known/openid-configuration`)).json()).issuer === env.MINIGATE_ISSUER) break
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`minigate did not become healthy within 60 s: ${stderr.trim()}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return {
    child,
    pid: child.pid,
    url,
    logs,
    stop: () => {
      stopping = true
      return stop(child)
    },
  }
}

/** Runs `node <script> ...args` with `input` as JSON on stdin and resolves with the JSON it prints. */
export function runNodeJson(script, input, args = []) {
  const child = track(spawn(process.execPath, [script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] }))
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => (stdout += chunk))
  child.stderr.on('data', (chunk) => (stderr += chunk))
  child.stdin.end(input === undefined ? '' : JSON.stringify(input))
  return exitOf(child).then(({ code, signal }) => {
    if (code !== 0) throw new Error(`${script} failed (${code ?? signal}): ${stderr.trim()}`)
    return JSON.parse(stdout.trim().split('\n').pop())
  })
}
