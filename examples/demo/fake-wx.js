// A `wx` for Node: what @minigate/miniprogram needs of a mini-program's runtime, speaking real HTTP.
// wx.login mints a code on minigate's WeChat simulator (development mode), wx.request and
// wx.uploadFile go to the network with fetch, and storage is a Map. It follows WeChat's rules where the
// client could trip on them: only the methods wx.request supports (no PATCH), `data` serialized the way
// WeChat does, JSON parsed when dataType is json, uploadFile answering text and no headers.
// Used by `npm run demo` and by the client's tests.
import { readFile } from 'node:fs/promises'
import { basename } from 'node:path'

const METHODS = new Set(['OPTIONS', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'TRACE', 'CONNECT'])
const WECHAT_CODE_GRANT = 'urn:minigate:grant-type:wechat-code'

function headerValue(header, name) {
  for (const [key, value] of Object.entries(header ?? {})) if (key.toLowerCase() === name) return String(value)
  return undefined
}

function formEncode(data) {
  return Object.entries(data)
    .map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(typeof value === 'object' ? JSON.stringify(value) : String(value))}`)
    .join('&')
}

/** What a call was, in a few words: `POST /token (refresh_token)`. */
function describe(method, url, grant) {
  const { pathname } = new URL(url)
  return `${method} ${pathname}${grant ? ` (${grant === WECHAT_CODE_GRANT ? 'wechat-code' : grant})` : ''}`
}

/** The grant of a form body sent to a token endpoint, so tests and the demo can count refreshes. */
function grantOf(body) {
  if (typeof body !== 'string' || !body.includes('grant_type=')) return undefined
  return new URLSearchParams(body).get('grant_type') ?? undefined
}

/**
 * Creates a fake `wx`.
 *
 * @param {object} options
 * @param {string} options.issuer minigate's URL (its simulator is at `<issuer>/_dev/wechat`)
 * @param {string} [options.appid] the mini-program's appid (default: minigate's development app)
 * @param {string} [options.openid] the WeChat user wx.login logs in (default: the simulator's test user)
 * @param {(call: object) => void} [options.onCall] told of every call once it is answered
 */
export function createFakeWx({ issuer, appid = 'wx0000000000000dev', openid, onCall } = {}) {
  const storage = new Map()
  /** Every call so far: `{ api, method, url, what, grant?, statusCode?, error? }`. */
  const calls = []
  /** Answers to give instead of the network, each once: `{ match(call), statusCode?, data?, fail? }`. */
  const faults = []
  const simulator = `${issuer.replace(/\/+$/, '')}/_dev/wechat`

  function record(call) {
    calls.push(call)
    onCall?.(call)
  }

  function takeFault(call) {
    const index = faults.findIndex((fault) => fault.match(call))
    return index === -1 ? undefined : faults.splice(index, 1)[0]
  }

  const wx = {
    calls,
    /** Makes the next call that `match` accepts fail: `{ statusCode, data }` answers it, `{ fail: 'errMsg' }` is a network failure. */
    failNext(match, outcome) {
      faults.push({ match, ...outcome })
    },
    /** How many calls of a kind were made: `count('login')`, `count('request', 'refresh_token')`. */
    count(api, grant) {
      return calls.filter((call) => call.api === api && (grant === undefined || call.grant === grant)).length
    },

    login({ success, fail, complete } = {}) {
      const call = { api: 'login', what: 'wx.login()' }
      fetch(`${simulator}/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(openid === undefined ? { appid } : { appid, openid }),
      })
        .then(async (response) => {
          const body = await response.json()
          if (response.status !== 200 || typeof body.code !== 'string') throw new Error(`the simulator answered ${response.status}`)
          return body.code
        })
        .then(
          (code) => {
            record({ ...call, code })
            const result = { code, errMsg: 'login:ok' }
            success?.(result)
            complete?.(result)
          },
          (error) => {
            record({ ...call, error: error.message })
            const result = { errMsg: `login:fail ${error.message}` }
            fail?.(result)
            complete?.(result)
          },
        )
    },

    request(options) {
      const { url, data, header = {}, dataType = 'json', success, fail, complete } = options
      const method = String(options.method ?? 'GET').toUpperCase()
      const done = (ok, result) => {
        ;(ok ? success : fail)?.(result)
        complete?.(result)
      }
      if (!METHODS.has(method)) {
        const result = { errMsg: `request:fail invalid method "${method}"` }
        record({ api: 'request', method, url, what: describe(method, url), error: result.errMsg })
        queueMicrotask(() => done(false, result))
        return { abort() {} }
      }
      const headers = { ...header }
      let target = url
      let body
      if (method === 'GET' || method === 'HEAD') {
        if (data !== undefined && data !== null && data !== '') {
          const query = typeof data === 'string' ? data : formEncode(data)
          target += (url.includes('?') ? '&' : '?') + query
        }
      } else if (typeof data === 'string' || data instanceof ArrayBuffer) {
        body = data
      } else if (data !== undefined) {
        const contentType = headerValue(headers, 'content-type')
        if (contentType === undefined) headers['content-type'] = 'application/json'
        body = contentType?.includes('application/x-www-form-urlencoded') ? formEncode(data) : JSON.stringify(data)
      }
      const call = { api: 'request', method, url: target, what: describe(method, target, grantOf(body)), grant: grantOf(body) }
      const fault = takeFault(call)
      const answer = fault
        ? fault.fail
          ? Promise.reject(new Error(fault.fail))
          : Promise.resolve({ statusCode: fault.statusCode ?? 500, header: { 'Content-Type': 'application/json' }, text: JSON.stringify(fault.data ?? {}) })
        : fetch(target, { method, headers, body, redirect: 'manual' }).then(async (response) => ({
            statusCode: response.status,
            header: Object.fromEntries(response.headers),
            text: await response.text(),
          }))
      answer.then(
        ({ statusCode, header: responseHeader, text }) => {
          let parsed = text
          if (dataType === 'json') {
            try {
              parsed = JSON.parse(text)
            } catch {
              parsed = text
            }
          }
          record({ ...call, statusCode, data: parsed })
          done(true, { data: parsed, statusCode, header: responseHeader, cookies: [], errMsg: 'request:ok' })
        },
        (error) => {
          const errMsg = `request:fail ${error.message}`
          record({ ...call, error: errMsg })
          done(false, { errMsg })
        },
      )
      return { abort() {} }
    },

    uploadFile({ url, filePath, name, header = {}, formData = {}, success, fail, complete }) {
      const call = { api: 'uploadFile', method: 'POST', url, what: describe('POST', url) }
      const done = (ok, result) => {
        ;(ok ? success : fail)?.(result)
        complete?.(result)
      }
      const fault = takeFault(call)
      const answer = fault
        ? fault.fail
          ? Promise.reject(new Error(fault.fail))
          : Promise.resolve({ statusCode: fault.statusCode ?? 500, text: JSON.stringify(fault.data ?? {}) })
        : readFile(filePath).then((bytes) => {
            const form = new FormData()
            for (const [field, value] of Object.entries(formData)) form.append(field, String(value))
            form.append(name, new Blob([bytes]), basename(filePath))
            return fetch(url, { method: 'POST', headers: header, body: form, redirect: 'manual' }).then(async (response) => ({ statusCode: response.status, text: await response.text() }))
          })
      answer.then(
        ({ statusCode, text }) => {
          record({ ...call, statusCode, data: text })
          // Like WeChat: the body as text, and no response headers.
          done(true, { data: text, statusCode, errMsg: 'uploadFile:ok' })
        },
        (error) => {
          const errMsg = `uploadFile:fail ${error.message}`
          record({ ...call, error: errMsg })
          done(false, { errMsg })
        },
      )
      return { abort() {} }
    },

    // WeChat serializes what it stores: a copy goes in, a copy comes out.
    getStorageSync(key) {
      return storage.has(key) ? JSON.parse(storage.get(key)) : ''
    },
    setStorageSync(key, value) {
      storage.set(key, JSON.stringify(value))
    },
    removeStorageSync(key) {
      storage.delete(key)
    },
    getStorageInfoSync() {
      return { keys: [...storage.keys()], currentSize: 0, limitSize: 10240 }
    },
  }
  return wx
}
