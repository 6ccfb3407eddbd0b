import { readFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { run } from '../../src/cli/main.js'
import { startTestApp } from '../helpers/app.js'
import { cli } from '../helpers/cli.js'
import { TestClock } from '../helpers/clock.js'

const packageVersion = (JSON.parse(readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8')) as { version: string }).version

async function bare(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const code = await run(argv, { env: { MINIGATE_DB: join(t.testdirName, 'none', 'db.sqlite') }, stdout: (text) => (stdout += text), stderr: (text) => (stderr += text), clock: new TestClock() })
  return { code, stdout, stderr }
}

t.test('--version: the package version, exit 0, no database opened', async (t) => {
  t.same(await bare('--version'), { code: 0, stdout: `minigate ${packageVersion}\n`, stderr: '' })
  t.same(await bare('--version', '--json'), { code: 0, stdout: `${JSON.stringify({ version: packageVersion })}\n`, stderr: '' })
  t.match(packageVersion, /^\d+\.\d+\.\d+/)
  // As installed: the bin script of the build finds the package.json above it.
  const bin = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))
  const spawned = spawnSync(process.execPath, [bin, '--version'], { encoding: 'utf8' })
  t.equal(spawned.stdout, `minigate ${packageVersion}\n`)
  t.equal(spawned.status, 0)
})

t.test('--json: every failure is one JSON line on stderr, with the usual exit code', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oJson' })
  const sid = JSON.parse(Buffer.from((login.access_token as string).split('.')[1] as string, 'base64url').toString()).sid as string
  const cases: Array<[string[], number, string, RegExp]> = [
    [['users', 'show', 'nobody'], 1, 'not_found', /^no user nobody$/],
    [['sessions', 'revoke', 'no-such-sid'], 1, 'not_found', /^no session no-such-sid$/],
    [['keys', 'activate', 'no-such-kid'], 1, 'refused', /no-such-kid/],
    [['users', 'frobnicate'], 2, 'usage', /^unknown users command: frobnicate$/],
    [['frobnicate'], 2, 'usage', /^unknown command frobnicate$/],
    [['users', 'show', 'x', '--bogus'], 2, 'usage', /^unknown option --bogus$/],
    [[], 2, 'usage', /^a command is required$/],
  ]
  for (const [argv, code, error, message] of cases) {
    const out = await cli(app, ...argv, '--json')
    t.equal(out.code, code, `${argv.join(' ')}: exit ${code}`)
    t.equal(out.stdout, '', 'nothing on stdout')
    const lines = out.stderr.trimEnd().split('\n')
    t.equal(lines.length, 1, 'one line (no help text)')
    const body = JSON.parse(lines[0] as string) as Record<string, string>
    t.same(Object.keys(body), ['error', 'message'])
    t.equal(body.error, error)
    t.match(body.message, message)
  }
  const config = await run(['keys', 'list', '--json'], { env: { MINIGATE_DB: app.config.dbFile, PORT: 'abc' }, stdout: () => {}, stderr: (text) => t.same(JSON.parse(text), { error: 'config', message: 'PORT must be a whole number between 0 and 65535, got "abc"' }), clock: app.clock })
  t.equal(config, 1)

  const plain = await cli(app, 'users', 'show', 'nobody')
  t.equal(plain.stderr, 'minigate: no user nobody\n', 'without --json: the plain line as before')
  t.equal((await cli(app, 'sessions', 'revoke', sid, '--json')).code, 0, 'a success is unchanged')
})
