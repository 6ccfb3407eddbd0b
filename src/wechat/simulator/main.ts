import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pathToFileURL } from 'node:url'
import Koa from 'koa'
import { systemClock } from '../../clock.js'
import { ConfigError, parseApps } from '../../config.js'
import { renderErrors } from '../../http/error-handler.js'
import { createLogger } from '../../log.js'
import { createSimulator, type Simulator } from './index.js'

/** The simulator on a port of its own: what `node dist/wechat/simulator/main.js` runs. */
export interface RunningSimulator {
  server: Server
  simulator: Simulator
  /** The base URL to give minigate as `WECHAT_API_BASE`. */
  url: string
  close(): Promise<void>
}

/**
 * Serves the WeChat simulator at the root of its own HTTP server, so a minigate configured as in
 * production (`WECHAT_APPS`, `WECHAT_API_BASE=<url>`, no simulator mounted) talks to it as it would to
 * WeChat, and the simulator's work runs in another process (the benchmark measures minigate alone).
 * Reads `WECHAT_APPS` (required: the same apps as minigate's), `PORT` (default 0: any free port) and
 * `HOST` (default 127.0.0.1).
 *
 * @example const running = await startSimulator({ WECHAT_APPS: 'wx0123456789abcdef:0123...', PORT: '0' })
 */
export async function startSimulator(env: Record<string, string | undefined>): Promise<RunningSimulator> {
  const appsRaw = env.WECHAT_APPS?.trim() ?? ''
  if (appsRaw === '') throw new ConfigError('WECHAT_APPS must name the apps the simulator plays WeChat for (appid:secret,...), the same as minigate\'s')
  const apps = parseApps(appsRaw)
  const portRaw = env.PORT?.trim() || '0'
  if (!/^\d{1,5}$/.test(portRaw) || Number(portRaw) > 65535) throw new ConfigError(`PORT must be a whole number between 0 and 65535, got "${portRaw}"`)
  const host = env.HOST?.trim() || '127.0.0.1'

  const simulator = createSimulator({ apps, clock: systemClock })
  const app = new Koa()
  app.silent = true
  app.use(renderErrors(createLogger({ level: 'warn' })))
  app.use(simulator.router.routes())
  app.use(simulator.router.allowedMethods())
  const server = createServer(app.callback())
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(Number(portRaw), host, () => resolve())
  })
  const { port } = server.address() as AddressInfo
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`
  return {
    server,
    simulator,
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

async function main(): Promise<void> {
  let running: RunningSimulator
  try {
    running = await startSimulator(process.env)
  } catch (error) {
    const { code, port } = error as NodeJS.ErrnoException & { port?: number }
    if (!(error instanceof ConfigError) && code !== 'EADDRINUSE') throw error
    process.stderr.write(`wechat simulator: ${error instanceof ConfigError ? error.message : `port ${port} is in use (PORT)`}\n`)
    process.exit(1)
  }
  const appids = running.simulator.state.apps.map((app) => app.appid).join(', ')
  process.stdout.write(`WeChat simulator listening on ${running.url} (apps: ${appids}); set WECHAT_API_BASE=${running.url} in minigate\n`)
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => void running.close().then(() => process.exit(0)))
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) void main()
