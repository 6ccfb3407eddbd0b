import { spawn } from 'node:child_process'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { freshDatabaseLocation } from '../helpers/database.js'
import { SERVER } from '../helpers/process.js'

/**
 * Starts the built server until it logs that it listens, then stops it, and returns what it printed.
 * With `terminal`, stdout is a pseudo-terminal: util-linux `script` runs the server on one, as a person's
 * terminal would, and passes its output on.
 */
async function firstLines(t: Test, options: { terminal: boolean; format?: string }): Promise<string> {
  const dir = t.testdir()
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    TERM: 'xterm-256color',
    PORT: '0',
    HOST: '127.0.0.1',
    MINIGATE_DB: await freshDatabaseLocation(t, dir),
    MINIGATE_KEYS_DIR: join(dir, 'keys'),
    ...(options.format ? { MINIGATE_LOG_FORMAT: options.format } : {}),
  }
  const child = options.terminal
    ? spawn('script', ['--quiet', '--flush', '--return', '--command', `'${process.execPath}' '${SERVER}'`, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(process.execPath, [SERVER], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => child.kill('SIGKILL'))
  let output = ''
  let errors = ''
  child.stderr!.on('data', (chunk: Buffer) => (errors += chunk.toString()))
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      // Stopped once it listens; on the terminal, closing it (script exits) hangs the server up.
      if (output.includes('minigate listening') && output.endsWith('\n')) child.kill('SIGTERM')
    })
    child.once('error', reject)
    child.once('close', () => (output.includes('minigate listening') ? resolve(output) : reject(new Error(`no listening line: ${output} ${errors}`))))
  })
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
