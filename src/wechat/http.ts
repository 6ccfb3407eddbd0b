import http from 'node:http'
import https from 'node:https'

/** What the WeChat client needs of an HTTP exchange: fetch's shape, so a test can pass `fetch` itself. */
export type WeChatFetch = (url: string, init: RequestInit) => Promise<Pick<Response, 'status' | 'text'>>

/** `keepAliveFetch`'s fetch, with `close()` to end its kept-alive connections. */
export type ClosableFetch = WeChatFetch & { close(): void }

/** WeChat's answers are a few hundred bytes; anything far larger is not WeChat. */
const MAX_ANSWER_BYTES = 1024 * 1024

/** Idle connections are closed before a server's usual keep-alive timeout (5 s for Node, nginx 75 s). */
const IDLE_SOCKET_MS = 4000

/**
 * The WeChat client's HTTP: `node:http`/`node:https` over keep-alive agents. It costs a login less CPU
 * and garbage than the global `fetch` (undici: WHATWG streams, headers and abort plumbing per call), and
 * fails with the same Node error codes (`ECONNREFUSED`, `ENOTFOUND`, TLS codes, `ECONNRESET`) that
 * `networkCauseOf` reads. Aborting `init.signal` aborts the call.
 *
 * @example const wechatFetch = keepAliveFetch(); const { status } = await wechatFetch(url, { signal })
 */
export function keepAliveFetch(): ClosableFetch {
  const agents = {
    'http:': new http.Agent({ keepAlive: true, timeout: IDLE_SOCKET_MS }),
    'https:': new https.Agent({ keepAlive: true, timeout: IDLE_SOCKET_MS }),
  }
  const wechatFetch: WeChatFetch = (url, init) =>
    new Promise((resolve, reject) => {
      const target = new URL(url)
      const secure = target.protocol === 'https:'
      const request = (secure ? https : http).request(target, {
        method: init.method ?? 'GET',
        headers: init.headers as Record<string, string>,
        agent: agents[secure ? 'https:' : 'http:'],
        ...(init.signal ? { signal: init.signal } : {}),
      })
      request.on('error', reject)
      request.on('response', (response) => {
        const chunks: Buffer[] = []
        let size = 0
        response.on('data', (chunk: Buffer) => {
          size += chunk.length
          if (size > MAX_ANSWER_BYTES) request.destroy(Object.assign(new Error('the answer is too large'), { code: 'ERR_ANSWER_TOO_LARGE' }))
          else chunks.push(chunk)
        })
        response.on('error', reject)
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          resolve({ status: response.statusCode ?? 0, text: async () => text })
        })
      })
      request.end(typeof init.body === 'string' ? init.body : undefined)
    })
  return Object.assign(wechatFetch, {
    close() {
      agents['http:'].destroy()
      agents['https:'].destroy()
    },
  })
}
