import type { WxLike } from '@minigate/miniprogram'

/** One call the fake `wx` made, once answered. */
export interface FakeWxCall {
  api: 'login' | 'request' | 'uploadFile'
  /** In a few words: `wx.login()`, `GET /userinfo`, `POST /token (refresh_token)`. */
  what: string
  method?: string
  url?: string
  /** The `grant_type` of a form body (token endpoint calls). */
  grant?: string
  /** The code wx.login gave. */
  code?: string
  statusCode?: number
  data?: unknown
  /** The errMsg of a failed call. */
  error?: string
}

export interface FakeWx extends WxLike {
  /** Every call so far, in the order they were answered. */
  calls: FakeWxCall[]
  /** Makes the next call that `match` accepts fail: with an HTTP answer, or (`fail`) with no answer at all. */
  failNext(match: (call: FakeWxCall) => boolean, outcome: { statusCode?: number; data?: unknown; fail?: string }): void
  /** The keys in storage, as the real `wx.getStorageInfoSync` gives them. */
  getStorageInfoSync(): { keys: string[]; currentSize: number; limitSize: number }
  /** How many calls of `api` were made (with `grant`, only token endpoint calls of that grant). */
  count(api: FakeWxCall['api'], grant?: string): number
}

/** A `wx` for Node that speaks real HTTP to minigate and logs in through its WeChat simulator. */
export function createFakeWx(options: {
  issuer: string
  appid?: string
  openid?: string
  onCall?: (call: FakeWxCall) => void
}): FakeWx
