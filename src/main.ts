import { createServer, type RequestListener, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { dirname, resolve, sep } from 'node:path'
import { pathToFileURL } from 'node:url'
import { createApp } from './app.js'
import { systemClock } from './clock.js'
import { ConfigError, loadConfig, type Config } from './config.js'
import { buildDeps, closeDeps, type AppDeps } from './deps.js'
import { KeyFileError } from './keys/signing-keys.js'
import { startMaintenance } from './maintenance.js'
import { createLogger, type Logger } from './log.js'

export interface Running {
  server: Server
  deps: AppDeps
  url: string
  /** Stops accepting connections, lets in-flight requests finish, then closes SQLite. */
  close(): Promise<void>
}

function warnDevelopment(log: Logger, config: Config): void {
  if (config.development) {
    log.warn(
      { appid: config.apps[0]?.appid, simulator: `${config.wechatApiBase}` },
      '*** DEVELOPMENT MODE: no WECHAT_APPS configured; logins go to the built-in WeChat simulator, not to WeChat. Never expose this server. ***',
    )
  } else if (config.simulator) {
    log.warn({ simulator: config.wechatApiBase }, '*** MINIGATE_WECHAT_SIMULATOR=1: the WeChat simulator is mounted at /_dev/wechat ***')
  }
}

/**
 * Starts minigate from environment variables: the one place that reads the environment and listens.
 *
 * @example const running = await start(process.env)
 */
export async function start(env: Record<string, string | undefined>, log?: Logger): Promise<Running> {
  let config = loadConfig(env)
  const logger = log ?? createLogger({ level: config.logLevel })
  // Listen first: with PORT=0 the port (and so the default issuer and the simulator's URL) is known only then.
  let handler: RequestListener = (_req, res) => {
    res.statusCode = 503
    res.setHeader('Retry-After', '1')
    res.end()
  }
  const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000, maxHeaderSize: 16 * 1024 }, (req, res) => handler(req, res))
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.port, config.host, () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  if (config.port === 0) config = loadConfig({ ...env, PORT: String(port) })
  let deps: AppDeps
  try {
    deps = await buildDeps(config, { clock: systemClock, log: logger })
  } catch (error) {
    server.close()
    throw error
  }
  // Count requests until their handlers finish: a client may drop its connection mid-request, and
  // SQLite must stay open until every handler is done with it.
  const app = createApp(deps).callback()
  let inflight = 0
  let drained: (() => void) | undefined
  handler = (req, res) => {
    inflight += 1
    void app(req, res).finally(() => {
      inflight -= 1
      if (inflight === 0) drained?.()
    })
  }
  warnDevelopment(logger, config)
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`
  logger.info({ listen: url, issuer: config.issuer, kid: deps.keys.active().kid }, 'minigate listening')

  const stopMaintenance = startMaintenance(deps)
  let closing: Promise<void> | undefined
  return {
    server,
    deps,
    url,
    close() {
      stopMaintenance()
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeIdleConnections()
      })
        .then(() => (inflight === 0 ? undefined : new Promise<void>((resolve) => (drained = resolve))))
        .then(() => closeDeps(deps))
      return closing
    },
  }
}

/** The variable that names a path minigate failed to use: the keys folder or the database's. */
function variableOfPath(path: string, env: Record<string, string | undefined>): { variable: string; path: string } | undefined {
  const config = loadConfig(env)
  const failed = resolve(path)
  const within = (folder: string) => failed === folder || failed.startsWith(`${folder}${sep}`)
  if (within(resolve(config.keysDir))) return { variable: 'MINIGATE_KEYS_DIR', path: resolve(config.keysDir) }
  if (within(dirname(resolve(config.dbFile)))) return { variable: 'MINIGATE_DB', path: failed }
  return undefined
}

/**
 * One line saying what to change, for a start that failed on the operator's settings (a busy port, a
 * host that does not resolve, a keys folder that is a file...); undefined for anything else, a bug whose
 * stack trace is wanted.
 *
 * @example const message = startupFailure(error, process.env)
 */
export function startupFailure(error: unknown, env: Record<string, string | undefined>): string | undefined {
  if (error instanceof ConfigError || error instanceof KeyFileError) return error.message
  const { code, syscall, port, address, hostname, path } = (error ?? {}) as NodeJS.ErrnoException & { port?: number; address?: string; hostname?: string }
  if (syscall === 'listen') {
    if (code === 'EADDRINUSE') return `port ${port} is in use (PORT)`
    if (code === 'EACCES') return `no permission to listen on port ${port} (PORT): ports below 1024 need privileges, pick another`
    if (code === 'EADDRNOTAVAIL') return `address ${address} is not an address of this machine (HOST)`
  }
  if (syscall === 'getaddrinfo' && (code === 'ENOTFOUND' || code === 'EAI_AGAIN')) {
    return `host ${hostname} ${code === 'ENOTFOUND' ? 'does not resolve' : 'could not be resolved (DNS did not answer)'} (HOST)`
  }
  if (code === 'SQLITE_CANTOPEN' || code === 'SQLITE_NOTADB') {
    return `${resolve(loadConfig(env).dbFile)} ${code === 'SQLITE_NOTADB' ? 'is not a SQLite database' : 'cannot be opened as a database'} (MINIGATE_DB)`
  }
  const named = typeof path === 'string' ? variableOfPath(path, env) : undefined
  if (named) {
    if (code === 'EEXIST' || code === 'ENOTDIR') return `${named.path} must be a folder, and it or a folder above it is a file (${named.variable})`
    if (code === 'EACCES' || code === 'EPERM') return `no permission to use ${path} (${named.variable})`
    if (code === 'EROFS') return `${path} is on a read-only file system (${named.variable})`
  }
  return undefined
}

async function main(): Promise<void> {
  let running: Running
  try {
    running = await start(process.env)
  } catch (error) {
    const message = startupFailure(error, process.env)
    if (message === undefined) throw error
    process.stderr.write(`minigate: ${message}\n`)
    process.exit(1)
  }
  let stopping = false
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (stopping) {
        running.deps.log.warn({ signal }, 'second signal: exiting without waiting')
        process.exit(1)
      }
      stopping = true
      const closed = running.close()
      running.deps.log.info({ signal }, 'shutting down: no new connections, finishing in-flight requests')
      void closed.then(() => {
        running.deps.log.info('shut down cleanly')
        process.exit(0)
      })
    })
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) void main()
