import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import Koa, { type Context } from 'koa'
import t, { type Test } from 'tap'
import {
  InvalidClient,
  InvalidToken,
  MethodNotAllowed,
  OAuthError,
  TemporarilyUnavailable,
  UpstreamError,
} from '../../src/errors.js'
import { renderErrors } from '../../src/http/error-handler.js'
import { requestLog } from '../../src/http/request-log.js'
import { createLogger } from '../../src/log.js'
import { startTestApp, WECHAT_CODE_GRANT, type TestApp } from '../helpers/app.js'
import { oauthError } from '../helpers/assert.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

async function stillServes(t: Test, app: TestApp): Promise<void> {
  const body = await app.login()
  t.equal(body.token_type, 'Bearer', 'a normal login works right after')
}

/**
 * A tiny Koa app made of minigate's request log and error renderer around `handler`, served over HTTP,
 * to see how the renderer answers errors the real routes cannot be made to throw.
 */
async function tinyApp(t: Test, handler: (ctx: Context) => unknown): Promise<{ url: string; logs: string[] }> {
  const logs: string[] = []
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      logs.push(...chunk.toString().split('\n').filter(Boolean))
      callback()
    },
  })
  const log = createLogger({ level: 'debug', destination })
  const app = new Koa()
  app.silent = true
  app.use(requestLog(log))
  app.use(renderErrors(log))
  app.use(async (ctx) => {
    await handler(ctx)
  })
  const server = createServer(app.callback())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  )
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, logs }
}

/** An error shaped like those koa-bodyparser (co-body, raw-body) throws. */
function bodyParserError(message: string, status: number, type: string): Error {
  return Object.assign(new Error(message), { status, statusCode: status, expose: true, type })
}

t.test('renderErrors: an unexpected error is a bland 500, logged but never shown', async (t) => {
  const { url, logs } = await tinyApp(t, () => {
    throw new Error('secret internals: db at /var/lib/minigate password=hunter2')
  })
  const response = await fetch(url, { headers: { 'x-request-id': 'req-boom-1' } })
  const text = await response.clone().text()
  const body = await oauthError(t, response, 500, 'server_error')
  t.equal(response.headers.get('cache-control'), 'no-store')
  t.notMatch(text, /secret internals|hunter2|\/var\/lib|stack|at .*\.ts/, 'the message and stack stay on the server')
  t.equal(body.error_description, 'the server could not handle the request')
  const line = logs.find((entry) => entry.includes('secret internals'))
  t.ok(line, 'the error is logged for operators')
  t.match(line, /"req_id":"req-boom-1"/, 'with the request id')
})

t.test('renderErrors: throwing values that are not errors is still a bland 500', async (t) => {
  for (const thrown of ['a string with secret internals', null, undefined, 42, { message: 'secret internals' }]) {
    const { url } = await tinyApp(t, () => {
      throw thrown
    })
    const response = await fetch(url)
    const text = await response.clone().text()
    await oauthError(t, response, 500, 'server_error')
    t.notMatch(text, /secret internals/)
  }
})

t.test('renderErrors: body parser errors map to 413, 415 and 400', async (t) => {
  const cases: Array<[Error, number]> = [
    [bodyParserError('request entity too large', 413, 'entity.too.large'), 413],
    [bodyParserError('unsupported charset "UTF-7"', 415, 'charset.unsupported'), 415],
    [bodyParserError('Unsupported Content-Encoding: x-zip', 415, 'encoding.unsupported'), 415],
    [Object.assign(new SyntaxError('Unexpected token } in JSON at position 17'), { status: 400, body: '{"code":"secret-code"}' }), 400],
    [bodyParserError('invalid JSON, only supports object and array', 400, 'entity.parse.failed'), 400],
    [bodyParserError('request size did not match content length', 400, 'request.size.invalid'), 400],
  ]
  for (const [error, status] of cases) {
    const { url } = await tinyApp(t, () => {
      throw error
    })
    const response = await fetch(url, { method: 'POST' })
    const text = await response.clone().text()
    await oauthError(t, response, status, 'invalid_request')
    t.notOk(text.includes(error.message), `${status}: the parser's own message is not echoed`)
    t.notMatch(text, /secret-code/, 'the body is not echoed')
  }
})

t.test('renderErrors: koa HTTP errors', async (t) => {
  t.test('ctx.throw(400) is invalid_request', async (t) => {
    const { url } = await tinyApp(t, (ctx) => ctx.throw(400, 'bad thing'))
    await oauthError(t, await fetch(url), 400, 'invalid_request')
  })

  t.test('a 5xx HTTP error is a bland 500', async (t) => {
    for (const status of [500, 502, 503]) {
      const { url } = await tinyApp(t, (ctx) => ctx.throw(status, 'upstream at 10.0.0.7 said no'))
      const response = await fetch(url)
      const text = await response.clone().text()
      await oauthError(t, response, 500, 'server_error')
      t.notMatch(text, /10\.0\.0\.7/)
    }
  })

  t.test('other 4xx statuses keep their status', async (t) => {
    for (const status of [404, 429]) {
      const { url } = await tinyApp(t, (ctx) => ctx.throw(status))
      const response = await fetch(url)
      const body = (await response.json()) as Record<string, unknown>
      t.ok(response.status >= 400 && response.status < 500, `${status}: still a 4xx`)
      t.type(body.error, 'string')
      t.equal(response.status, status, `${status}: keeps its status`)
    }
  })
  t.end()
})

t.test('renderErrors: OAuth errors carry their status, code and headers', async (t) => {
  const cases: Array<{ error: OAuthError; status: number; code: string; headers: Record<string, RegExp>; shows: boolean }> = [
    { error: new OAuthError('internal detail xyz'), status: 500, code: 'server_error', headers: {}, shows: false },
    { error: new UpstreamError('WeChat returned an unusable answer'), status: 502, code: 'server_error', headers: {}, shows: true },
    { error: new TemporarilyUnavailable('WeChat is busy', 7), status: 503, code: 'temporarily_unavailable', headers: { 'retry-after': /^7$/ }, shows: true },
    { error: new InvalidClient('unknown client_id'), status: 401, code: 'invalid_client', headers: { 'www-authenticate': /realm="minigate"/ }, shows: true },
    { error: new InvalidToken('the token "has" expired\r\n'), status: 401, code: 'invalid_token', headers: { 'www-authenticate': /^Bearer realm="minigate", error="invalid_token"/ }, shows: true },
    { error: new MethodNotAllowed('GET is not allowed here', ['POST']), status: 405, code: 'invalid_request', headers: { allow: /^POST$/ }, shows: true },
  ]
  for (const c of cases) {
    const { url, logs } = await tinyApp(t, () => {
      throw c.error
    })
    const response = await fetch(url)
    const body = await oauthError(t, response, c.status, c.code)
    t.equal(response.headers.get('cache-control'), 'no-store')
    for (const [name, pattern] of Object.entries(c.headers)) t.match(response.headers.get(name), pattern, `${c.code}: ${name}`)
    if (c.shows) t.equal(body.error_description, c.error.description)
    else t.not(body.error_description, c.error.description, 'a 500 description stays on the server')
    if (c.status >= 500) t.ok(logs.some((line) => line.includes(c.error.description)), `${c.status}: logged for operators`)
  }
})

// One app serves the tests below; each ends by logging in normally.
const app = await startTestApp(t)

t.test('unknown paths are 404 not_found', async (t) => {
  const calls = app.simulator.calls.jscode2session
  for (const path of ['/nope', '/token/extra', '/.well-known/nope', '/_dev/wechat/nope', '/..%2f..%2fetc%2fpasswd', '/%E0%A4%A', '/%00']) {
    const response = await fetch(`${app.url}${path}`)
    await oauthError(t, response, 404, 'not_found')
  }
  const post = await app.postForm('/nope', { grant_type: WECHAT_CODE_GRANT, code: 'abc' })
  await oauthError(t, post, 404, 'not_found')
  t.equal(app.simulator.calls.jscode2session, calls, 'WeChat not called')
  await stillServes(t, app)
})

t.test('a path with a malformed escape is a 4xx, never a 5xx', async (t) => {
  for (const path of ['/token%', '/token%E0%A4%A', '/.well-known/jwks.json%ZZ']) {
    const response = await fetch(`${app.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
    const body = (await response.json()) as Record<string, unknown>
    t.ok(response.status >= 400 && response.status < 500, `${path}: 4xx (${response.status})`)
    t.type(body.error, 'string')
    t.type(body.error_description, 'string')
  }
  await stillServes(t, app)
})

t.test('methods other than the route allows are 405 with Allow', async (t) => {
  const response = await fetch(`${app.url}/.well-known/jwks.json`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  await oauthError(t, response, 405, 'invalid_request')
  t.match(response.headers.get('allow'), /\bGET\b/)
  const token = await fetch(`${app.url}/token`)
  await oauthError(t, token, 405, 'invalid_request')
  t.equal(token.headers.get('allow'), 'POST')
  await stillServes(t, app)
})

t.test('X-Request-Id is echoed when well-formed and replaced when not', async (t) => {
  const wellFormed = 'req-ABC_123.xyz'
  const ok = await fetch(`${app.url}/.well-known/jwks.json`, { headers: { 'x-request-id': wellFormed } })
  t.equal(ok.status, 200)
  t.equal(ok.headers.get('x-request-id'), wellFormed)
  const failed = await app.postForm('/token', { grant_type: 'nope' }, { 'x-request-id': 'req-failed-1' })
  t.equal(failed.status, 400)
  t.equal(failed.headers.get('x-request-id'), 'req-failed-1', 'echoed on errors too')
  t.equal(((await (await fetch(`${app.url}/nope`, { headers: { 'x-request-id': 'a'.repeat(64) } })).headers.get('x-request-id'))), 'a'.repeat(64), '64 characters is fine')

  const seen = new Set<string>()
  for (const bad of ['has space', 'a'.repeat(65), '<script>alert(1)</script>', 'id;drop', '../../etc/passwd', 'x"y', 'tab\there']) {
    const response = await fetch(`${app.url}/.well-known/jwks.json`, { headers: { 'x-request-id': bad } })
    const id = response.headers.get('x-request-id') ?? ''
    t.not(id, bad, `${JSON.stringify(bad)} is not echoed`)
    t.match(id, UUID, 'a fresh UUID instead')
    seen.add(id)
  }
  const none = await fetch(`${app.url}/.well-known/jwks.json`)
  t.match(none.headers.get('x-request-id'), UUID, 'a request without one gets one')
  seen.add(none.headers.get('x-request-id') ?? '')
  t.equal(seen.size, 8, 'each request its own id')

  t.ok(app.logs.some((line) => line.includes(`"req_id":"${wellFormed}"`)), 'the id is in the request log')
  t.notOk(app.logs.some((line) => line.includes('<script>')), 'a malformed id never reaches the log')
})

t.test('neither the query string nor the raw path reaches the log', async (t) => {
  await fetch(`${app.url}/token?code=querySecretCode123&access_token=querySecretToken456`)
  await fetch(`${app.url}/nope?refresh_token=querySecretToken789`)
  await fetch(`${app.url}/userinfo/pathSecretToken000`)
  t.ok(app.logs.some((line) => line.includes('"route":"/token"')), 'a matched request is logged by its route')
  t.ok(app.logs.some((line) => line.includes('"route":"(unmatched)"')), 'an unmatched one without its path')
  t.notOk(app.logs.some((line) => /querySecret|pathSecret/.test(line)), 'no query value or path segment in any log line')
})

t.test('oversized request headers are refused and the server keeps serving', async (t) => {
  const outcome = await fetch(`${app.url}/token`, { method: 'POST', headers: { 'x-huge': 'h'.repeat(64 * 1024) } }).then(
    (response) => response.status,
    () => 'connection closed',
  )
  t.ok(outcome === 431 || outcome === 'connection closed', `refused (${outcome})`)
  await stillServes(t, app)
})
