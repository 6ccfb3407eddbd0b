import { spawn } from 'node:child_process'
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { SERVER } from '../helpers/process.js'

// What is logged does not depend on the database: these run on a SQLite file only, with a fixture
// signing key (no key generation at each start).
function serverEnv(t: Test): Record<string, string> {
  const dir = t.testdir()
  mkdirSync(join(dir, 'keys'), { mode: 0o700 })
  copyFileSync(fileURLToPath(new URL('../../../test/fixtures/keys/key-01.pem', import.meta.url)), join(dir, 'keys', 'fixture.pem'))
  return { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1', MINIGATE_DB: join(dir, 'db', 'minigate.sqlite'), MINIGATE_KEYS_DIR: join(dir, 'keys') }
}

/**
 * Starts the built server until it logs that it listens, then stops it, and returns what it printed.
 * With `terminal`, stdout is a pseudo-terminal: util-linux `script` runs the server on one, as a person's
 * terminal would, and passes its output on.
 */
async function firstLines(t: Test, options: { terminal: boolean; format?: string }): Promise<string> {
  const env: Record<string, string> = { ...serverEnv(t), TERM: 'xterm-256color', ...(options.format ? { MINIGATE_LOG_FORMAT: options.format } : {}) }
  // With exec, script's shell becomes the server, so that a signal reaches it directly.
  const child = options.terminal
    ? spawn('script', ['--quiet', '--flush', '--return', '--command', `exec '${process.execPath}' '${SERVER}'`, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(process.execPath, [SERVER], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => child.kill('SIGKILL'))
  let output = ''
  let errors = ''
  child.stderr!.on('data', (chunk: Buffer) => (errors += chunk.toString()))
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      // Stopped once it listens, by SIGTERM to the server itself (script's child, thanks to exec).
      if (output.includes('minigate listening') && output.endsWith('\n')) serverOf(child.pid as number, options.terminal).kill('SIGTERM')
    })
    child.once('error', reject)
    child.once('close', () => (output.includes('minigate listening') ? resolve(output) : reject(new Error(`no listening line: ${output} ${errors}`))))
  })
}

/** The server's process: the child itself, or on a terminal the one child of `script`. */
function serverOf(pid: number, terminal: boolean): { kill(signal: NodeJS.Signals): void } {
  const server = terminal ? Number(readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ')[0]) : pid
  return { kill: (signal) => process.kill(server, signal) }
}

const ESCAPE = /\x1b\[\d+m/
const lines = (output: string) => output.split(/\r?\n/).filter(Boolean)

t.test('on a terminal: pretty, coloured lines, one per entry, no JSON', async (t) => {
  const output = await firstLines(t, { terminal: true })
  t.match(output, ESCAPE, 'colour escape codes')
  const listening = lines(output).find((line) => line.includes('minigate listening')) as string
  t.match(listening, /^\[\d\d:\d\d:\d\d\.\d{3}\] \x1b\[32mINFO\x1b\[39m: \x1b\[36mminigate listening\x1b\[39m /, 'time, coloured level and message')
  t.match(lines(output).find((line) => line.includes('DEVELOPMENT MODE')), /WARN/, 'the development warning stands out as a warning')
  t.notOk(lines(output).some((line) => line.startsWith('{')), 'no JSON line')
})

t.test('on a terminal with MINIGATE_LOG_FORMAT=json: JSON lines', async (t) => {
  const output = await firstLines(t, { terminal: true, format: 'json' })
  t.notMatch(output, ESCAPE)
  for (const line of lines(output)) t.type(JSON.parse(line), 'object', 'a JSON line')
})

t.test('piped (a collector reads it): JSON lines', async (t) => {
  const output = await firstLines(t, { terminal: false })
  const parsed = lines(output).map((line) => JSON.parse(line) as Record<string, unknown>)
  t.match(parsed.find((line) => line.msg === 'minigate listening'), { level: 30, service: 'minigate', listen: /^http:\/\/127\.0\.0\.1:\d+$/ })
})

t.test('piped with MINIGATE_LOG_FORMAT=pretty: pretty lines, without colour on a pipe', async (t) => {
  const output = await firstLines(t, { terminal: false, format: 'pretty' })
  t.notMatch(output, ESCAPE)
  t.match(output, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: minigate listening \{"listen":"http:\/\/127\.0\.0\.1:\d+"/m)
})

t.test('SIGTERM after the reader of stdout is gone (npm killed, a log pipe closed): the process still exits', async (t) => {
  // Exiting with process.exit right after the last log line made pino flush it synchronously on the
  // way out, retrying the broken pipe (EPIPE) forever: the server never ended.
  const child = spawn(process.execPath, [SERVER], { env: serverEnv(t), stdio: ['ignore', 'pipe', 'ignore'] })
  t.teardown(() => child.kill('SIGKILL'))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  let output = ''
  await new Promise<void>((resolve) =>
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes('minigate listening')) resolve()
    }),
  )
  child.stdout!.destroy()
  child.kill('SIGTERM')
  t.same(await exited, { code: 0, signal: null }, 'exited cleanly')
})
