import { createServer, type RequestListener, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { dirname, resolve, sep } from 'node:path'
import { pathToFileURL } from 'node:url'
import { createApp, createMetricsApp } from './app.js'
import { systemClock } from './clock.js'
import { ConfigError, loadConfig, type Config } from './config.js'
import { buildDeps, closeDeps, type AppDeps } from './deps.js'
import { KeyFileError } from './keys/signing-keys.js'
import { startMaintenance } from './maintenance.js'
import { createLogger, prettyDestination, type Logger } from './log.js'

export interface Running {
  server: Server
  deps: AppDeps
  url: string
  /** The metrics listener (MINIGATE_METRICS_PORT), if any. */
  metricsUrl?: string
  /**
   * Stops accepting connections, answers /readyz with 503 while in-flight requests finish, then closes
   * the metrics listener and the database.
   */
  close(): Promise<void>
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
}

function urlOf(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`
}

/** Pretty lines for a person at a terminal, JSON lines for anything else (MINIGATE_LOG_FORMAT decides when set). */
async function loggerFor(config: Config): Promise<Logger> {
  const pretty = config.logFormat === 'pretty' || (config.logFormat === 'auto' && process.stdout.isTTY === true)
  return createLogger({ level: config.logLevel, ...(pretty ? { destination: await prettyDestination() } : {}) })
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
  const logger = log ?? (await loggerFor(config))
  // Listen first: with PORT=0 the port (and so the default issuer and the simulator's URL) is known only then.
  let handler: RequestListener = (_req, res) => {
    res.statusCode = 503
    res.setHeader('Retry-After', '1')
    res.end()
  }
  const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000, maxHeaderSize: 16 * 1024 }, (req, res) => handler(req, res))
  await listen(server, config.port, config.host)
  const port = (server.address() as AddressInfo).port
  if (config.port === 0) config = loadConfig({ ...env, PORT: String(port) })
  let deps: AppDeps
  try {
    deps = await buildDeps(config, { clock: systemClock, log: logger })
  } catch (error) {
    server.close()
    throw error
  }
  let metricsServer: Server | undefined
  let metricsUrl: string | undefined
  if (config.metricsPort !== null) {
    metricsServer = createServer({ requestTimeout: 30_000, headersTimeout: 10_000 }, createMetricsApp(deps).callback())
    try {
      await listen(metricsServer, config.metricsPort, config.metricsHost)
    } catch (error) {
      server.close()
      await closeDeps(deps)
      const message = listenFailure(error, 'MINIGATE_METRICS_PORT', 'MINIGATE_METRICS_HOST')
      throw message === undefined ? error : new ConfigError(message)
    }
    metricsUrl = urlOf(config.metricsHost, (metricsServer.address() as AddressInfo).port)
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
  const url = urlOf(config.host, port)
  logger.info({ listen: url, issuer: config.issuer, kid: deps.keys.active().kid }, 'minigate listening')
  if (metricsUrl) logger.info({ listen: metricsUrl }, 'metrics listening (/metrics, /healthz, /readyz)')

  const stopMaintenance = startMaintenance(deps)
  let closing: Promise<void> | undefined
  const closeMetrics = () =>
    new Promise<void>((resolve) => {
      if (!metricsServer) return resolve()
      metricsServer.close(() => resolve())
      metricsServer.closeAllConnections()
    })
  return {
    server,
    deps,
    url,
    ...(metricsUrl ? { metricsUrl } : {}),
    close() {
      stopMaintenance()
      // Not ready from now on: the metrics listener (and any request still arriving) sees /readyz 503.
      deps.lifecycle.draining = true
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeIdleConnections()
      })
        .then(() => (inflight === 0 ? undefined : new Promise<void>((resolve) => (drained = resolve))))
        .then(closeMetrics)
        .then(() => closeDeps(deps))
      return closing
    },
  }
}

/** One line for a listen that failed on the operator's port or host setting (named by its variable). */
function listenFailure(error: unknown, portVariable: string, hostVariable: string): string | undefined {
  const { code, syscall, port, address, hostname } = (error ?? {}) as NodeJS.ErrnoException & { port?: number; address?: string; hostname?: string }
  if (syscall === 'listen') {
    if (code === 'EADDRINUSE') return `port ${port} is in use (${portVariable})`
    if (code === 'EACCES') return `no permission to listen on port ${port} (${portVariable}): ports below 1024 need privileges, pick another`
    if (code === 'EADDRNOTAVAIL') return `address ${address} is not an address of this machine (${hostVariable})`
  }
  if (syscall === 'getaddrinfo' && (code === 'ENOTFOUND' || code === 'EAI_AGAIN')) {
    return `host ${hostname} ${code === 'ENOTFOUND' ? 'does not resolve' : 'could not be resolved (DNS did not answer)'} (${hostVariable})`
  }
  return undefined
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
  const listening = listenFailure(error, 'PORT', 'HOST')
  if (listening !== undefined) return listening
  const { code, path } = (error ?? {}) as NodeJS.ErrnoException
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
  // The database can no longer be written durably (a WAL fsync failed): stop and exit 1, so that the
  // supervisor restarts minigate and SQLite recovers from what the disk holds.
  running.deps.lifecycle.onStorageFailure = () => {
    if (stopping) return
    stopping = true
    void running.close().finally(() => process.exit(1))
  }
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
        // Nothing keeps the process alive any more: it ends once the log is written. process.exit here
        // would flush the log synchronously on the way out, which never ends when stdout's reader is
        // gone (EPIPE, e.g. npm killed): the timer is only a backstop.
        setTimeout(() => process.exit(0), 2000).unref()
      })
    })
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) void main()
