import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import t from 'tap'
import { startKitApp } from '../helpers/kit.js'

// `npm run demo` is `node examples/demo/demo.js`: run it the same way, against a real minigate.
const DEMO = join(dirname(createRequire(import.meta.url).resolve('@minigate/demo/package.json')), 'demo.js')

function runDemo(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DEMO, ...args], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child.once('error', reject)
    child.once('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

t.test('npm run demo plays the whole story to its end against a development minigate', async (t) => {
  const app = await startKitApp(t)
  const { code, stdout, stderr } = await runDemo('--issuer', app.url)
  t.equal(stderr, '')
  t.equal(code, 0, 'exit code 0')
  t.match(stdout, /\n✓ all 7 steps behaved as shown\n$/)
  t.notMatch(stdout, /✗/)
  for (const line of [
    /1\. The mini-program logs in/,
    /phone +wx\.login\(\) +→ code \S+ \(minted by the simulator\)/,
    /minigate +POST \/token \(wechat-code\) +→ 200 tokens \(scope "profile phone", access token for 900 s\)/,
    /orders +POST \/orders +→ 201 \{"id":1,"item":"green tea","status":"placed"\}/,
    /orders +POST \/orders +→ 403 insufficient_scope/,
    /minigate +POST \/token \(refresh_token\) +→ 200 tokens/,
    /minigate +POST \/token \(refresh_token, replayed\) +→ 400 invalid_grant/,
    /orders +POST \/orders\/1\/pay +→ 401 invalid_token\n/,
    /minigate +POST \/token \(refresh_token\) +→ 400 invalid_grant/,
    /orders +POST \/orders\/1\/pay +→ 200 \{"id":1,"item":"green tea","status":"paid"\}/,
  ]) {
    t.match(stdout, line)
  }
  // What the demo did, as minigate saw it.
  const events = await app.deps.db.selectFrom('audit_events').select('event').execute()
  t.ok(events.some((event) => event.event === 'refresh_token_reuse'), 'minigate recorded the replay as refresh token reuse')
})

t.test('the demo fails when a step does not behave as shown', async (t) => {
  // With a grace window, a replay of the token spent last gets new tokens instead of ending the login.
  const app = await startKitApp(t, { MINIGATE_REFRESH_GRACE_SECONDS: '60' })
  const { code, stdout } = await runDemo('--issuer', app.url)
  t.equal(code, 1, 'exit code 1')
  t.match(stdout, /✗ the replay is refused with invalid_grant/)
  t.match(stdout, /\n✗ \d of 7 steps did not behave as shown\n$/)
})

t.test('the demo needs a minigate with the WeChat simulator, and says so', async (t) => {
  const production = await startKitApp(t, { WECHAT_APPS: 'wx1234567890abcdef:0123456789abcdef0123456789abcdef' })
  const refused = await runDemo('--issuer', production.url, '--client-id', 'wx1234567890abcdef')
  t.equal(refused.code, 1)
  t.match(refused.stderr, /the WeChat simulator .* answered 404: the demo needs minigate in development mode/)

  const usage = await runDemo('--nonsense')
  t.equal(usage.code, 2)
  t.match(usage.stderr, /usage: npm run demo/)
})
