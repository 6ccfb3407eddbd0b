import { createServer as createHttpServer } from 'node:http'
import { createServer as createTcpServer, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { createLogger } from '../../src/log.js'
import { createMetrics } from '../../src/metrics.js'
import { createWeChatClient } from '../../src/wechat/client.js'
import { networkCauseOf, upstreamErrorFor, WeChatError, type NetworkCause } from '../../src/wechat/errors.js'
import { startTestApp, WECHAT_CODE_GRANT } from '../helpers/app.js'
import { oauthError } from '../helpers/assert.js'

const APPID = 'wx1234567890abcdef'
const SECRET = 'c0ffee0000secret0000not0000logged'

/** Listens on a loopback port until the test ends (its connections are cut then). */
async function listening(t: Test, server: Server | ReturnType<typeof createHttpServer>): Promise<number> {
  const sockets = new Set<Socket>()
  server.on('connection', (socket: Socket) => sockets.add(socket))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  )
  return (server.address() as AddressInfo).port
}

/** A loopback port nothing listens on any more. */
async function closedPort(): Promise<number> {
  const probe = createTcpServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as AddressInfo
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  return port
}

function client(base: string, timeoutMs = 2000) {
  const logs: Array<Record<string, any>> = []
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      logs.push(...chunk.toString().split('\n').filter(Boolean).map((line: string) => JSON.parse(line) as Record<string, any>))
      callback()
    },
  })
  const metrics = createMetrics()
  const wechat = createWeChatClient({ apiBase: base, apps: [{ appid: APPID, secret: SECRET }], timeoutMs, log: createLogger({ level: 'debug', destination }), metrics })
  return { wechat, logs, metrics }
}

/** Calls code2Session against `base` and checks the failure names `cause`, in the error, the log and the metrics. */
async function expectCause(t: Test, base: string, cause: NetworkCause, timeoutMs?: number): Promise<void> {
  const { wechat, logs, metrics } = client(base, timeoutMs)
  const error = await wechat.code2Session(APPID, 'the-code').then(
    () => undefined,
    (caught: unknown) => caught,
  )
  t.type(error, WeChatError)
  t.match(error, { failure: 'unreachable', network: cause }, `the error says ${cause}`)
  const line = logs.find((entry) => entry.failure === 'unreachable')
  t.match(line, { level: 40, api: 'jscode2session', cause, msg: /^WeChat could not be reached: / }, 'the log line says why')
  const text = JSON.stringify(logs)
  t.notMatch(text, new RegExp(`${SECRET}|the-code|127\\.0\\.0\\.1|no-such-host`), 'no secret, code or address in the log')
  const counted = (await metrics.wechatCalls.get()).values.find((value) => value.labels.outcome === cause)
  t.match(counted, { value: 1, labels: { api: 'jscode2session', errcode: '' } }, 'counted by cause')
}

t.test('connection refused', async (t) => {
  await expectCause(t, `http://127.0.0.1:${await closedPort()}`, 'connection_refused')
})

t.test('a name that does not resolve: DNS', async (t) => {
  await expectCause(t, 'http://no-such-host.invalid', 'dns')
})

t.test('TLS to a server that does not speak it: the handshake fails', async (t) => {
  const port = await listening(t, createHttpServer((_req, res) => res.end('plain http')))
  await expectCause(t, `https://127.0.0.1:${port}`, 'tls')
})

t.test('a connection closed or reset mid-way', async (t) => {
  const closing = await listening(t, createTcpServer((socket) => socket.destroy()))
  await expectCause(t, `http://127.0.0.1:${closing}`, 'reset')
  const resetting = await listening(t, createTcpServer((socket) => socket.once('data', () => socket.resetAndDestroy())))
  await expectCause(t, `http://127.0.0.1:${resetting}`, 'reset')
})

t.test('no answer in time', async (t) => {
  const hanging = createTcpServer(() => {
    // Accept, then never answer; the teardown closes it.
  })
  const port = await listening(t, hanging)
  await expectCause(t, `http://127.0.0.1:${port}`, 'timeout', 150)
})

t.test('networkCauseOf reads the codes Node and undici put on an error and its causes', async (t) => {
  const wrapped = (cause: unknown) => new TypeError('fetch failed', { cause })
  const coded = (code: string) => Object.assign(new Error(code), { code })
  const cases: Array<[unknown, boolean, NetworkCause]> = [
    [wrapped(coded('ECONNREFUSED')), false, 'connection_refused'],
    // Happy eyeballs: every address refused, as an AggregateError.
    [wrapped(Object.assign(new AggregateError([coded('ECONNREFUSED'), coded('ECONNREFUSED')]), { code: 'ECONNREFUSED' })), false, 'connection_refused'],
    [wrapped(new AggregateError([coded('ENETUNREACH'), coded('ECONNREFUSED')])), false, 'connection_refused'],
    [wrapped(coded('ENOTFOUND')), false, 'dns'],
    [wrapped(coded('EAI_AGAIN')), false, 'dns'],
    [wrapped(coded('CERT_HAS_EXPIRED')), false, 'tls'],
    [wrapped(coded('DEPTH_ZERO_SELF_SIGNED_CERT')), false, 'tls'],
    [wrapped(coded('UNABLE_TO_VERIFY_LEAF_SIGNATURE')), false, 'tls'],
    [wrapped(coded('ERR_TLS_CERT_ALTNAME_INVALID')), false, 'tls'],
    [wrapped(coded('SELF_SIGNED_CERT_IN_CHAIN')), false, 'tls'],
    [wrapped(coded('UND_ERR_CONNECT_TIMEOUT')), false, 'timeout'],
    [wrapped(coded('ECONNRESET')), false, 'reset'],
    [wrapped(coded('UND_ERR_SOCKET')), false, 'reset'],
    [wrapped(coded('EHOSTUNREACH')), false, 'network'],
    [new TypeError('fetch failed'), false, 'network'],
    ['not even an error', false, 'network'],
    [Object.assign(new DOMException('aborted', 'AbortError')), true, 'timeout'],
  ]
  for (const [error, timedOut, cause] of cases) t.equal(networkCauseOf(error, timedOut).cause, cause, `${JSON.stringify(error instanceof Error ? (error.cause as any)?.code ?? error.message : error)} → ${cause}`)
  t.same(networkCauseOf(wrapped(coded('EHOSTUNREACH')), false), { cause: 'network', code: 'EHOSTUNREACH' }, 'an unclassified code is kept for the log')
})

t.test('the client is told "could not be reached", or "did not answer in time" only for a timeout', async (t) => {
  const cases: Array<[NetworkCause, RegExp]> = [
    ['timeout', /^WeChat did not answer in time; try again shortly$/],
    ['connection_refused', /^WeChat could not be reached; try again shortly$/],
    ['dns', /^WeChat could not be reached; try again shortly$/],
    ['tls', /^WeChat could not be reached; try again shortly$/],
    ['reset', /^WeChat could not be reached; try again shortly$/],
  ]
  for (const [cause, description] of cases) {
    const error = upstreamErrorFor(new WeChatError('jscode2session', 'unreachable', undefined, cause))
    t.match(error, { status: 503, code: 'temporarily_unavailable', description }, cause)
    t.equal(error.headers['Retry-After'], '5')
  }
})

t.test('a login while WeChat refuses connections: 503 "could not be reached", nothing written, the cause logged', async (t) => {
  const app = await startTestApp(t, { WECHAT_API_BASE: `http://127.0.0.1:${await closedPort()}` })
  const code = await app.wxLogin()
  const response = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code }, { 'x-request-id': 'req-refused' })
  const body = await oauthError(t, response, 503, 'temporarily_unavailable')
  t.equal(body.error_description, 'WeChat could not be reached; try again shortly', 'not "did not answer in time"')
  t.equal(response.headers.get('retry-after'), '5')
  const line = app.logs.map((entry) => JSON.parse(entry) as Record<string, any>).find((entry) => entry.cause !== undefined)
  t.match(line, { req_id: 'req-refused', api: 'jscode2session', cause: 'connection_refused', error_code: 'ECONNREFUSED' }, 'the log says why, with the request id')
  t.equal(Number((await app.deps.db.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n), 0, 'no user created')
})

t.test('a login while WeChat does not answer: 503 "did not answer in time"', async (t) => {
  const app = await startTestApp(t, { WECHAT_TIMEOUT_MS: '150' })
  t.equal((await app.postJson('/_dev/wechat/faults', { api: 'jscode2session', mode: 'timeout', count: 1 })).status, 200)
  const response = await app.postForm('/token', { grant_type: WECHAT_CODE_GRANT, code: await app.wxLogin() })
  const body = await oauthError(t, response, 503, 'temporarily_unavailable')
  t.equal(body.error_description, 'WeChat did not answer in time; try again shortly')
})
