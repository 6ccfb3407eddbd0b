import type { WeChatApp } from '../config.js'
import type { Logger } from '../log.js'
import { SESSION_KEY_FORMAT } from './crypto.js'
import { failureOf, WeChatError } from './errors.js'

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

/** minigate's client of the WeChat server API. */
export interface WeChatClient {
  /** Exchanges a `wx.login()` code (`/sns/jscode2session`). */
  code2Session(appid: string, code: string): Promise<WeChatSession>
  /** Fetches an access_token: `/cgi-bin/stable_token` (shared by every caller) or the plain `/cgi-bin/token`. */
  fetchAccessToken(appid: string, api: 'stable_token' | 'token'): Promise<WeChatAccessToken>
  /** Trades a getPhoneNumber button code for the user's phone number (`/wxa/business/getuserphonenumber`). */
  getPhoneNumber(appid: string, accessToken: string, code: string): Promise<WeChatPhone>
}

export interface WeChatClientOptions {
  apiBase: string
  apps: WeChatApp[]
  timeoutMs: number
  log: Logger
  fetch?: typeof fetch
}


/**
 * Creates the WeChat client. Every call has a timeout; WeChat's errcodes (sent with HTTP 200) become
 * `WeChatError`s. URLs carry the AppSecret, so they are never logged or put in an error.
 *
 * @example const wechat = createWeChatClient({ apiBase, apps, timeoutMs: 5000, log })
 */
export function createWeChatClient(options: WeChatClientOptions): WeChatClient {
  const doFetch = options.fetch ?? fetch
  const secrets = new Map(options.apps.map((app) => [app.appid, app.secret]))
  const base = options.apiBase.replace(/\/+$/, '')

  function secretOf(appid: string): string {
    const secret = secrets.get(appid)
    if (secret === undefined) throw new Error(`no WeChat app ${appid} is configured`)
    return secret
  }

  async function call(api: string, path: string, query: Record<string, string>, appid: string, json?: unknown): Promise<Record<string, unknown>> {
    const url = `${base}${path}?${new URLSearchParams(query).toString()}`
    const started = performance.now()
    const abort = new AbortController()
    const timer = setTimeout(() => abort.abort(), options.timeoutMs)
    const init: RequestInit =
      json === undefined
        ? { signal: abort.signal, headers: { accept: 'application/json' } }
        : { method: 'POST', signal: abort.signal, headers: { accept: 'application/json', 'content-type': 'application/json' }, body: JSON.stringify(json) }
    let status: number
    let text: string
    try {
      const response = await doFetch(url, init)
      status = response.status
      text = await response.text()
    } catch {
      options.log.warn({ api, appid, ms: Math.round(performance.now() - started) }, 'WeChat unreachable or timed out')
      throw new WeChatError(api, 'unreachable')
    } finally {
      clearTimeout(timer)
    }
    const ms = Math.round(performance.now() - started)
    if (status !== 200) {
      options.log.warn({ api, appid, status, ms }, 'WeChat answered with an HTTP error')
      throw new WeChatError(api, 'http_error')
    }
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      body = undefined
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      options.log.warn({ api, appid, ms }, 'WeChat answered with something other than a JSON object')
      throw new WeChatError(api, 'bad_response')
    }
    const record = body as Record<string, unknown>
    const errcode = record.errcode
    if (errcode !== undefined && errcode !== 0) {
      const code = typeof errcode === 'number' ? errcode : Number(errcode)
      options.log.warn({ api, appid, errcode: code, ms }, 'WeChat refused the call')
      throw new WeChatError(api, Number.isFinite(code) ? failureOf(code) : 'bad_response', Number.isFinite(code) ? code : undefined)
    }
    options.log.debug({ api, appid, ms }, 'WeChat call done')
    return record
  }

  return {
    async code2Session(appid, code) {
      const secret = secretOf(appid)
      const body = await call('jscode2session', '/sns/jscode2session', { appid, secret, js_code: code, grant_type: 'authorization_code' }, appid)
      const { openid, session_key: sessionKey, unionid } = body
      if (typeof openid !== 'string' || openid === '' || typeof sessionKey !== 'string' || !SESSION_KEY_FORMAT.test(sessionKey)) {
        options.log.warn({ api: 'jscode2session', appid }, 'WeChat answer lacks openid or a well-formed session_key')
        throw new WeChatError('jscode2session', 'bad_response')
      }
      return { openid, sessionKey, unionid: typeof unionid === 'string' && unionid !== '' ? unionid : null }
    },

    async fetchAccessToken(appid, api) {
      const secret = secretOf(appid)
      const body =
        api === 'stable_token'
          ? await call(api, '/cgi-bin/stable_token', {}, appid, { grant_type: 'client_credential', appid, secret, force_refresh: false })
          : await call(api, '/cgi-bin/token', { grant_type: 'client_credential', appid, secret }, appid)
      const { access_token: accessToken, expires_in: expiresIn } = body
      if (typeof accessToken !== 'string' || accessToken === '' || typeof expiresIn !== 'number' || !(expiresIn > 0)) {
        options.log.warn({ api, appid }, 'WeChat answer lacks access_token or expires_in')
        throw new WeChatError(api, 'bad_response')
      }
      return { accessToken, expiresIn }
    },

    async getPhoneNumber(appid, accessToken, code) {
      const api = 'getuserphonenumber'
      const body = await call(api, '/wxa/business/getuserphonenumber', { access_token: accessToken }, appid, { code })
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
        options.log.warn({ api, appid }, 'WeChat answer lacks a well-formed phone_info')
        throw new WeChatError(api, 'bad_response')
      }
      return {
        phoneNumber: info.phoneNumber,
        purePhoneNumber: info.purePhoneNumber,
        countryCode: String(countryCode),
        watermarkAppid: typeof watermark?.appid === 'string' ? watermark.appid : null,
      }
    },
  }
}
