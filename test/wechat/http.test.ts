import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { networkCauseOf } from '../../src/wechat/errors.js'
import { keepAliveFetch } from '../../src/wechat/http.js'

/** A local server answering with `answer`, counting its connections, keeping the requests it got. */
async function serve(t: Test, answer: (request: IncomingMessage, body: string) => { status: number; body: string | Buffer } | undefined) {
  const requests: Array<{ method: string; url: string; headers: IncomingMessage['headers']; body: string }> = []
  let connections = 0
  let open = 0
  const server: Server = createServer((request, response) => {
    let body = ''
    request.on('data', (chunk: Buffer) => (body += chunk.toString()))
    request.on('end', () => {
      requests.push({ method: request.method ?? '', url: request.url ?? '', headers: request.headers, body })
      const reply = answer(request, body)
      if (!reply) return // no answer: the caller times out
      response.writeHead(reply.status, { 'content-type': 'application/json' })
      response.end(reply.body)
    })
  })
  server.on('connection', (socket) => {
    connections += 1
    open += 1
    socket.on('close', () => (open -= 1))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, connections: () => connections, open: () => open }
}

t.test('GET and POST as WeChat expects them, over one kept-alive connection', async (t) => {
  const server = await serve(t, (request, body) => ({ status: request.url?.startsWith('/missing') ? 404 : 200, body: JSON.stringify({ echo: body || request.url }) }))
  const wechatFetch = keepAliveFetch()
  const get = await wechatFetch(`${server.url}/sns/jscode2session?appid=wx1&js_code=c`, { headers: { accept: 'application/json' } })
  t.equal(get.status, 200)
  t.same(JSON.parse(await get.text()), { echo: '/sns/jscode2session?appid=wx1&js_code=c' })
  const post = await wechatFetch(`${server.url}/cgi-bin/stable_token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"grant_type":"client_credential"}' })
  t.same(JSON.parse(await post.text()), { echo: '{"grant_type":"client_credential"}' })
  t.match(server.requests[1], { method: 'POST', headers: { 'content-type': 'application/json' } })
  const missing = await wechatFetch(`${server.url}/missing`, {})
  t.equal(missing.status, 404, 'an HTTP error status is passed on, not thrown')
  t.equal(server.connections(), 1, 'the three calls shared one connection')
})

t.test('an answer over 1 MiB is refused, as something WeChat never sends', async (t) => {
  const server = await serve(t, () => ({ status: 200, body: Buffer.alloc(2 * 1024 * 1024, 'a') }))
  const error = await keepAliveFetch()(`${server.url}/sns/jscode2session`, {}).then(
    () => undefined,
    (reason: unknown) => reason,
  )
  t.match(error, { code: 'ERR_ANSWER_TOO_LARGE' })
  t.same(networkCauseOf(error, false), { cause: 'network', code: 'ERR_ANSWER_TOO_LARGE' })
})

t.test('aborting the signal aborts the call', async (t) => {
  const server = await serve(t, () => undefined)
  const abort = new AbortController()
  const call = keepAliveFetch()(`${server.url}/sns/jscode2session`, { signal: abort.signal })
  setTimeout(() => abort.abort(), 20)
  await t.rejects(call, { name: 'AbortError' })
})

t.test('close() ends the kept-alive connections', async (t) => {
  const server = await serve(t, () => ({ status: 200, body: '{}' }))
  const wechatFetch = keepAliveFetch()
  await (await wechatFetch(`${server.url}/sns/jscode2session`, {})).text()
  t.equal(server.open(), 1, 'kept alive after the call')
  wechatFetch.close()
  for (let turn = 0; turn < 1000 && server.open() > 0; turn++) await new Promise((resolve) => setTimeout(resolve, 1))
  t.equal(server.open(), 0, 'closed by close()')
})
