// Types of @minigate/miniprogram (src/index.js). The `wx` shapes below are the few members the client
// uses, so neither the mini-program typings nor Node's are needed.

/** The options of `wx.request` the client passes through (callbacks are replaced by the Promise). */
export interface RequestOptions {
  url: string
  method?: 'OPTIONS' | 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE' | 'TRACE' | 'CONNECT'
  data?: string | object | ArrayBuffer
  header?: Record<string, string>
  timeout?: number
  dataType?: string
  responseType?: 'text' | 'arraybuffer'
  [option: string]: unknown
}

/** What `wx.request`'s `success` callback gives. */
export interface RequestResult<T = any> {
  statusCode: number
  data: T
  header: Record<string, string>
  [field: string]: unknown
}

/** The members of `wx` the client calls. */
export interface WxLike {
  login(options: { success(result: { code: string }): void; fail(error: { errMsg: string }): void }): unknown
  request(options: RequestOptions & { success(result: RequestResult): void; fail(error: { errMsg: string }): void }): unknown
  uploadFile(options: {
    url: string
    filePath: string
    name: string
    header?: Record<string, string>
    success(result: { statusCode: number; data: string; header?: Record<string, string> }): void
    fail(error: { errMsg: string }): void
  }): unknown
  getStorageSync(key: string): any
  setStorageSync(key: string, value: any): void
  removeStorageSync(key: string): void
}

export interface ClientOptions {
  /** minigate's issuer URL, exactly as its discovery document states it. */
  issuer: string
  /** The mini-program's appid (its client_id at minigate). */
  clientId: string
  /** Scopes to log in with, space-separated: `openid`, `profile`, `phone` (minigate's default: `profile`). */
  scope?: string
  /** The `wx` object; defaults to the global one. */
  wx?: WxLike
  /** The storage key the tokens are kept under (default `minigate:tokens`). */
  storageKey?: string
  /** The current time in ms (default `Date.now`); for tests. */
  now?: () => number
}

/** What `login()` resolves with. */
export interface LoginResult {
  /** The granted scopes. */
  scope: string
  /** When the access token expires, ms since the epoch. */
  expiresAt: number
  /** With scope `openid`: the ID token. */
  idToken?: string
}

/** What `getUser()` resolves with (`/userinfo`); fields depend on the scopes. */
export interface UserInfo {
  sub: string
  nickname?: string
  picture?: string
  phone_number?: string
  phone_number_verified?: boolean
  updated_at?: number
  [claim: string]: unknown
}

/** What `bindPhone()` resolves with. */
export interface PhoneNumber {
  phone_number: string
  phone_number_verified: boolean
  country_code: string
  pure_phone_number: string
}

export interface Client {
  /**
   * `wx.login`, then minigate's `wechat-code` grant; the tokens are kept with `wx.setStorageSync`.
   * Joins a login or refresh already in flight.
   * @example App({ onLaunch() { if (!auth.isLoggedIn()) auth.login() } })
   */
  login(): Promise<LoginResult>
  /** Whether tokens are stored (they may still need a refresh). */
  isLoggedIn(): boolean
  /**
   * `wx.request` with `Authorization: Bearer`. Resolves with what `wx.request`'s success gives, whatever
   * the status; rejects with `MinigateError` (`network_error`, ...) only when no answer came or no
   * token could be had. Logs in when there are no tokens, refreshes when the access token is within 60 s
   * of expiry or the call answers `401 invalid_token` (then sends it once more). One refresh serves every
   * waiting call; a refused refresh logs in again with `wx.login`.
   * @example const { statusCode, data } = await auth.request({ url: 'https://api.example.com/orders' })
   */
  request<T = any>(options: RequestOptions): Promise<RequestResult<T>>
  /** A usable access token, for APIs the client does not wrap (wx.connectSocket, ...). */
  accessToken(): Promise<string>
  /** `GET /userinfo`. */
  getUser(): Promise<UserInfo>
  /** `POST /userinfo/profile`: the nickname from `<input type="nickname">`, a picture URL. */
  updateProfile(profile: { nickname?: string; picture?: string }): Promise<UserInfo>
  /** Uploads the avatar `<button open-type="chooseAvatar">` gave (its `avatarUrl`, a temp file path). */
  uploadAvatar(tempFilePath: string): Promise<{ picture: string }>
  /** Binds the phone number behind the `code` of `<button open-type="getPhoneNumber">`. */
  bindPhone(code: string): Promise<PhoneNumber>
  /** Removes the user's phone number (`DELETE /wechat/phone`). */
  removePhone(): Promise<void>
  /** Everything minigate holds about the user (`GET /account/export`). */
  exportAccount(): Promise<Record<string, unknown>>
  /** Deletes the account (a fresh `wx.login()` code confirms it) and forgets the tokens; a later `login()` creates a new user. */
  deleteAccount(): Promise<void>
  /** Ends the login on minigate and forgets the tokens (forgotten even if minigate cannot be reached). */
  logout(): Promise<void>
}

/**
 * Creates the client; make one per mini-program (e.g. in `utils/auth.js`) and share it.
 * @example
 * const { createClient } = require('@minigate/miniprogram')
 * const auth = createClient({ issuer: 'https://id.example.com', clientId: 'wx1234567890abcdef', scope: 'profile phone' })
 */
export function createClient(options: ClientOptions): Client

/** The client's error: `code` (`invalid_grant`, `network_error`, ...), `status` (HTTP, 0 if none), `description`. */
export interface MinigateError extends Error {
  code: string
  status: number
  description: string
}
export const MinigateError: {
  new (code: string, description?: string, status?: number): MinigateError
  prototype: MinigateError
}
