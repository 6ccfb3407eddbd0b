import NodeCache from 'node-cache'
import type { Clock } from '../clock.js'
import type { Logger } from '../log.js'
import type { WeChatClient } from './client.js'
import { WeChatError } from './errors.js'

/** Renew this long before WeChat's `expires_in` runs out, so a token never dies mid-call. */
const SAFETY_MARGIN_SECONDS = 300

interface CachedToken {
  accessToken: string
  /** Milliseconds since the epoch, by the injected clock. */
  expiresAt: number
}

/** WeChat's server-API access_token per appid, fetched once and shared by every request. */
export interface AccessTokenManager {
  /**
   * Runs `call` with a valid access_token. When WeChat says the token is invalid or expired
   * (40001/40014/42001), the cached token is dropped if it is still the failing one, and `call` is
   * retried once with a fresh token. `log` is the caller's logger (its lines carry the request id).
   */
  withAccessToken<T>(appid: string, call: (accessToken: string) => Promise<T>, log?: Logger): Promise<T>
  close(): void
}

export interface AccessTokenOptions {
  wechat: WeChatClient
  clock: Clock
  log: Logger
  /** `stable_token` (default: every instance shares one token) or the plain `token` API. */
  api: 'stable_token' | 'token'
  /** Delays before the retries of a fetch WeChat answered with -1 (busy). */
  busyBackoffMs?: number[]
}

/**
 * Creates the access_token manager: cached in node-cache with a safety margin, one fetch at a time per
 * appid however many requests wait (single flight), a bounded backoff when WeChat is busy.
 *
 * @example const tokens = createAccessTokenManager({ wechat, clock, log, api: 'stable_token' })
 */
export function createAccessTokenManager(options: AccessTokenOptions): AccessTokenManager {
  const cache = new NodeCache({ useClones: false, checkperiod: 600 })
  const inflight = new Map<string, Promise<CachedToken>>()
  const backoff = options.busyBackoffMs ?? [200, 800]

  async function fetchWithBackoff(appid: string, log: Logger): Promise<CachedToken> {
    for (let attempt = 0; ; attempt += 1) {
      try {
        const { accessToken, expiresIn } = await options.wechat.fetchAccessToken(appid, options.api, log)
        const lifetime = Math.max(expiresIn - SAFETY_MARGIN_SECONDS, Math.floor(expiresIn / 2))
        const token = { accessToken, expiresAt: options.clock.now() + lifetime * 1000 }
        cache.set(appid, token, lifetime)
        log.info({ appid, api: options.api, expires_in: expiresIn }, 'WeChat access_token fetched')
        return token
      } catch (error) {
        const delay = backoff[attempt]
        if (!(error instanceof WeChatError) || error.failure !== 'busy' || delay === undefined) throw error
        await new Promise((resolve) => setTimeout(resolve, delay))
      }
    }
  }

  /** The cached token, or one fetch shared by every waiting caller (logged with the first caller's logger). */
  function current(appid: string, log: Logger): Promise<CachedToken> {
    const cached = cache.get<CachedToken>(appid)
    if (cached && cached.expiresAt > options.clock.now()) return Promise.resolve(cached)
    let pending = inflight.get(appid)
    if (!pending) {
      pending = fetchWithBackoff(appid, log).finally(() => inflight.delete(appid))
      inflight.set(appid, pending)
    }
    return pending
  }

  return {
    async withAccessToken(appid, call, log = options.log) {
      const token = await current(appid, log)
      try {
        return await call(token.accessToken)
      } catch (error) {
        if (!(error instanceof WeChatError) || error.failure !== 'access_token_invalid') throw error
        if (cache.get<CachedToken>(appid)?.accessToken === token.accessToken) cache.del(appid)
        log.info({ appid, errcode: error.errcode }, 'WeChat access_token rejected: renewing once')
        return call((await current(appid, log)).accessToken)
      }
    },
    close() {
      cache.close()
    },
  }
}
