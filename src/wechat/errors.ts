import {
  InvalidGrant,
  TemporarilyUnavailable,
  UpstreamError,
  type OAuthError,
} from '../errors.js'

/** What went wrong talking to WeChat, independent of the HTTP answer minigate gives. */
export type WeChatFailure =
  /** 40029: the code is unknown or expired. */
  | 'invalid_code'
  /** 40163: the code was already used. */
  | 'code_used'
  /** 40226: WeChat blocked a high-risk user. */
  | 'user_blocked'
  /** 45011: WeChat's rate limit. */
  | 'rate_limited'
  /** -1: WeChat is busy. */
  | 'busy'
  /** 40001, 40014, 42001: the access_token is invalid or expired; fetch a new one and retry once. */
  | 'access_token_invalid'
  /** No answer within the timeout, or the connection failed. */
  | 'unreachable'
  /** HTTP status other than 200. */
  | 'http_error'
  /** Not JSON, or a required field missing. */
  | 'bad_response'
  /** Any other errcode (bad appid or secret, ...): a configuration problem on our side. */
  | 'rejected'

/** A failed WeChat API call. Its message names the API and errcode, never the URL or a secret. */
export class WeChatError extends Error {
  override name = 'WeChatError'
  constructor(
    readonly api: string,
    readonly failure: WeChatFailure,
    readonly errcode?: number,
  ) {
    super(`WeChat ${api} failed: ${failure}${errcode === undefined ? '' : ` (errcode ${errcode})`}`)
  }
}

const FAILURE_BY_ERRCODE: Record<number, WeChatFailure> = {
  40029: 'invalid_code',
  40163: 'code_used',
  40226: 'user_blocked',
  45011: 'rate_limited',
  [-1]: 'busy',
  40001: 'access_token_invalid',
  40014: 'access_token_invalid',
  42001: 'access_token_invalid',
}

export function failureOf(errcode: number): WeChatFailure {
  return FAILURE_BY_ERRCODE[errcode] ?? 'rejected'
}

/** Seconds a client should wait before trying again, by failure. */
export const retryAfterSeconds = { busy: 2, rate_limited: 60, unreachable: 5 } as const

/** The answer when WeChat trouble (not the client's input) made a call fail. */
export function upstreamErrorFor(error: WeChatError): OAuthError {
  switch (error.failure) {
    case 'rate_limited':
      return new TemporarilyUnavailable('WeChat is rate limiting; try again later', retryAfterSeconds.rate_limited)
    case 'busy':
      return new TemporarilyUnavailable('WeChat is busy; try again shortly', retryAfterSeconds.busy)
    case 'unreachable':
      return new TemporarilyUnavailable('WeChat did not answer in time; try again shortly', retryAfterSeconds.unreachable)
    default:
      return new UpstreamError('WeChat returned an unusable answer')
  }
}

/**
 * The answer to a client whose login WeChat refused or could not serve. WeChat trouble is never
 * `invalid_grant`: the code may still be good.
 */
export function loginErrorFor(error: WeChatError): OAuthError {
  switch (error.failure) {
    case 'invalid_code':
      return new InvalidGrant('the code is invalid or expired; call wx.login() again')
    case 'code_used':
      return new InvalidGrant('the code was already used; call wx.login() again')
    case 'user_blocked':
      // RFC 6749 §5.2 gives the token endpoint no access_denied: the grant is what WeChat refused.
      return new InvalidGrant('WeChat blocked this user as high-risk; they cannot log in')
    default:
      return upstreamErrorFor(error)
  }
}
