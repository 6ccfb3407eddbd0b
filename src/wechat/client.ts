import type { WeChatApp } from '../config.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import { SESSION_KEY_FORMAT } from './crypto.js'
import { failureOf, networkCauseOf, networkCauseText, WeChatError } from './errors.js'
import { keepAliveFetch, type ClosableFetch, type WeChatFetch } from './http.js'

/** What `code2Session` yields. `sessionKey` never leaves the server. */
export interface WeChatSession {
  openid: string
  sessionKey: string
  unionid: string | null
}

/** A WeChat server-API access_token and when it expires (seconds from now). */
export interface WeChatAccessToken {
  accessToken: string
  expiresIn: number
}

/** What `getuserphonenumber` yields. */
export interface WeChatPhone {
  phoneNumber: string
  purePhoneNumber: string
  countryCode: string
  watermarkAppid: string | null
}

/** minigate's client of the WeChat server API. `log` is the caller's logger (its lines carry the request id). */
export interface WeChatClient {
  /** Exchanges a `wx.login()` code (`/sns/jscode2session`). */
  code2Session(appid: string, code: string, log?: Logger): Promise<WeChatSession>
  /** Fetches an access_token: `/cgi-bin/stable_token` (shared by every caller) or the plain `/cgi-bin/token`. */
  fetchAccessToken(appid: string, api: 'stable_token' | 'token', log?: Logger): Promise<WeChatAccessToken>
  /** Trades a getPhoneNumber button code for the user's phone number (`/wxa/business/getuserphonenumber`). */
  getPhoneNumber(appid: string, accessToken: string, code: string, log?: Logger): Promise<WeChatPhone>
  /** Ends the kept-alive connections to WeChat (not those of an injected fetch). */
  close(): void
}

export interface WeChatClientOptions {
  apiBase: string
  apps: WeChatApp[]
  timeoutMs: number
  /** Used when a call is given no logger of its own. */
  log: Logger
  /** Counts calls by api and outcome, and times them. */
  metrics?: Pick<Metrics, 'wechatCalls' | 'wechatCallDuration'>
  /** The HTTP client; `keepAliveFetch()` unless given (tests pass stubs, or the global `fetch`). */
  fetch?: WeChatFetch
}

/**
 * Creates the WeChat client. Every call has a timeout; WeChat's errcodes (sent with HTTP 200) become
 * `WeChatError`s, and a call that reaches no WeChat says why (timeout, refused, DNS, TLS, reset). URLs
 * carry the AppSecret, so they are never logged or put in an error.
 *
 * @example const wechat = createWeChatClient({ apiBase, apps, timeoutMs: 5000, log })
 */
export function createWeChatClient(options: WeChatClientOptions): WeChatClient {
  const ownFetch = options.fetch ? undefined : keepAliveFetch()
  const doFetch = options.fetch ?? (ownFetch as ClosableFetch)
  const secrets = new Map(options.apps.map((app) => [app.appid, app.secret]))
  const base = options.apiBase.replace(/\/+$/, '')
  const metrics = options.metrics

  function secretOf(appid: string): string {
    const secret = secrets.get(appid)
    if (secret === undefined) throw new Error(`no WeChat app ${appid} is configured`)
    return secret
  }

  interface Call<T> {
    api: string
    path: string
    query: Record<string, string>
    appid: string
    json?: unknown
    log: Logger | undefined
    /** Reads WeChat's successful answer; undefined when a required field is missing or malformed. */
    read: (body: Record<string, unknown>) => T | undefined
    /** What the log says when `read` finds nothing usable. */
    lacks: string
  }

  /** One WeChat call: fetched with a timeout, counted and timed by outcome, its failure a `WeChatError`. */
  async function call<T>(request: Call<T>): Promise<T> {
    const { api, appid } = request
    const log = request.log ?? options.log
    const started = performance.now()
    const elapsed = () => performance.now() - started
    const done = (outcome: string, errcode: string) => {
      metrics?.wechatCalls.inc({ api, outcome, errcode })
      metrics?.wechatCallDuration.observe({ api }, elapsed() / 1000)
    }
    const url = `${base}${request.path}?${new URLSearchParams(request.query).toString()}`
    const abort = new AbortController()
    const timer = setTimeout(() => abort.abort(), options.timeoutMs)
    const init: RequestInit =
      request.json === undefined
        ? { signal: abort.signal, headers: { accept: 'application/json' } }
        : { method: 'POST', signal: abort.signal, headers: { accept: 'application/json', 'content-type': 'application/json' }, body: JSON.stringify(request.json) }
    let status: number
    let text: string
    try {
      const response = await doFetch(url, init)
      status = response.status
      text = await response.text()
    } catch (error) {
      // The error itself is not logged: fetch's messages may hold the URL, and with it the AppSecret.
      const { cause, code } = networkCauseOf(error, abort.signal.aborted)
      done(cause, '')
      log.warn({ api, appid, failure: 'unreachable', cause, ...(code ? { error_code: code } : {}), ms: Math.round(elapsed()) }, `WeChat could not be reached: ${networkCauseText[cause]}`)
      throw new WeChatError(api, 'unreachable', undefined, cause)
    } finally {
      clearTimeout(timer)
    }
    const ms = Math.round(elapsed())
    if (status !== 200) {
      done('http_error', '')
      log.warn({ api, appid, status, ms }, 'WeChat answered with an HTTP error')
      throw new WeChatError(api, 'http_error')
    }
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      body = undefined
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      done('bad_response', '')
      log.warn({ api, appid, ms }, 'WeChat answered with something other than a JSON object')
      throw new WeChatError(api, 'bad_response')
    }
    const record = body as Record<string, unknown>
    const errcode = record.errcode
    if (errcode !== undefined && errcode !== 0) {
      const code = typeof errcode === 'number' ? errcode : Number(errcode)
      if (!Number.isFinite(code)) {
        done('bad_response', '')
        log.warn({ api, appid, ms }, 'WeChat answered with an errcode that is not a number')
        throw new WeChatError(api, 'bad_response')
      }
      done('errcode', String(code))
      log.warn({ api, appid, errcode: code, ms }, 'WeChat refused the call')
      throw new WeChatError(api, failureOf(code), code)
    }
    const value = request.read(record)
    if (value === undefined) {
      done('bad_response', '')
      log.warn({ api, appid, ms }, request.lacks)
      throw new WeChatError(api, 'bad_response')
    }
    done('ok', '0')
    log.debug({ api, appid, ms }, 'WeChat call done')
    return value
  }

  return {
    close() {
      ownFetch?.close()
    },

    async code2Session(appid, code, log) {
      const secret = secretOf(appid)
      return call({
        api: 'jscode2session',
        path: '/sns/jscode2session',
        query: { appid, secret, js_code: code, grant_type: 'authorization_code' },
        appid,
        log,
        lacks: 'WeChat answer lacks openid or a well-formed session_key',
        read: ({ openid, session_key: sessionKey, unionid }) =>
          typeof openid !== 'string' || openid === '' || typeof sessionKey !== 'string' || !SESSION_KEY_FORMAT.test(sessionKey)
            ? undefined
            : { openid, sessionKey, unionid: typeof unionid === 'string' && unionid !== '' ? unionid : null },
      })
    },

    async fetchAccessToken(appid, api, log) {
      const secret = secretOf(appid)
      const read = ({ access_token: accessToken, expires_in: expiresIn }: Record<string, unknown>) =>
        typeof accessToken !== 'string' || accessToken === '' || typeof expiresIn !== 'number' || !(expiresIn > 0) ? undefined : { accessToken, expiresIn }
      const lacks = 'WeChat answer lacks access_token or expires_in'
      return api === 'stable_token'
        ? call({ api, path: '/cgi-bin/stable_token', query: {}, appid, json: { grant_type: 'client_credential', appid, secret, force_refresh: false }, log, read, lacks })
        : call({ api, path: '/cgi-bin/token', query: { grant_type: 'client_credential', appid, secret }, appid, log, read, lacks })
    },

    async getPhoneNumber(appid, accessToken, code, log) {
      return call({
        api: 'getuserphonenumber',
        path: '/wxa/business/getuserphonenumber',
        query: { access_token: accessToken },
        appid,
        json: { code },
        log,
        lacks: 'WeChat answer lacks a well-formed phone_info',
        read: (body) => {
          const info = body.phone_info as Record<string, unknown> | undefined
          const watermark = info?.watermark as Record<string, unknown> | undefined
          const countryCode = info?.countryCode
          if (
            typeof info?.phoneNumber !== 'string' ||
            typeof info.purePhoneNumber !== 'string' ||
            !/^\d{3,20}$/.test(info.purePhoneNumber) ||
            !(typeof countryCode === 'string' || typeof countryCode === 'number') ||
            !/^\d{1,4}$/.test(String(countryCode))
          ) {
            return undefined
          }
          return {
            phoneNumber: info.phoneNumber,
            purePhoneNumber: info.purePhoneNumber,
            countryCode: String(countryCode),
            watermarkAppid: typeof watermark?.appid === 'string' ? watermark.appid : null,
          }
        },
      })
    },
  }
}
