import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { checkResponsesOf } from './openapi.js'

/** The compiled server (`npm test` compiles src/ into .build/ first), started as `npm start` starts dist/main.js. */
export const SERVER = fileURLToPath(new URL('../../src/main.js', import.meta.url))

export interface ServerProcess {
  child: ChildProcess
  url: string
  /** Every stdout line so far (JSON log lines). */
  lines: string[]
  /** Resolves with the first log line whose message matches. */
  waitForLog(msg: RegExp): Promise<Record<string, unknown>>
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** Starts `dist/main.js` on a free port and resolves once it is listening. */
export function startServer(env: Record<string, string>): Promise<ServerProcess> {
  const child = spawn(process.execPath, [SERVER], {
    env: { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1', MINIGATE_RATE_LIMITS: 'off', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const lines: string[] = []
  const waiters: Array<{ msg: RegExp; resolve: (line: Record<string, unknown>) => void }> = []
  createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.push(line)
    let parsed: Record<string, unknown>
    try {
      parsed = JSON.parse(line) as Record<string, unknown>
    } catch {
      return
    }
    for (const waiter of [...waiters]) {
      if (waiter.msg.test(String(parsed.msg))) {
        waiters.splice(waiters.indexOf(waiter), 1)
        waiter.resolve(parsed)
      }
    }
  })
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  const waitForLog = (msg: RegExp) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const seen = lines.map((line) => {
        try {
          return JSON.parse(line) as Record<string, unknown>
        } catch {
          return {}
        }
      })
      const found = seen.find((line) => msg.test(String(line.msg)))
      if (found) return resolve(found)
      waiters.push({ msg, resolve })
      void exited.then(({ code }) => reject(new Error(`server exited (${code}) before logging ${msg}: ${stderr}`)))
    })
  return waitForLog(/minigate listening/).then((line) => {
    checkResponsesOf(String(line.listen))
    return { child, url: String(line.listen), lines, waitForLog, exited }
  })
}

export interface FailedStart {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/**
 * Starts `dist/main.js` where it is expected to fail, and resolves once it has exited. A server that
 * starts instead is killed after `timeoutMs` (its exit is then a signal, which the test reports).
 */
export function startFailingServer(env: Record<string, string>, timeoutMs = 15_000): Promise<FailedStart> {
  const child = spawn(process.execPath, [SERVER], {
    env: { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1', MINIGATE_RATE_LIMITS: 'off', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  return new Promise((resolve) =>
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    }),
  )
}
