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
  /** No answer within the timeout, or the connection failed: `network` says which. */
  | 'unreachable'
  /** HTTP status other than 200. */
  | 'http_error'
  /** Not JSON, or a required field missing. */
  | 'bad_response'
  /** Any other errcode (bad appid or secret, ...): a configuration problem on our side. */
  | 'rejected'

/** Why WeChat could not be reached. */
export type NetworkCause =
  /** No answer within WECHAT_TIMEOUT_MS (or a connect timeout). */
  | 'timeout'
  /** Nothing listens at WECHAT_API_BASE (ECONNREFUSED). */
  | 'connection_refused'
  /** The host name does not resolve (ENOTFOUND, EAI_AGAIN). */
  | 'dns'
  /** The TLS handshake failed: a certificate that does not verify, or not TLS at all. */
  | 'tls'
  /** The connection was closed or reset mid-way. */
  | 'reset'
  /** Any other network error (no route to the host, ...). */
  | 'network'

/** What each cause means, for a log line an operator reads. */
export const networkCauseText: Record<NetworkCause, string> = {
  timeout: 'no answer in time (WECHAT_TIMEOUT_MS)',
  connection_refused: 'connection refused (is WECHAT_API_BASE right?)',
  dns: 'the host name does not resolve (DNS)',
  tls: 'the TLS handshake failed (certificate or protocol)',
  reset: 'the connection was reset',
  network: 'a network error',
}

/** A failed WeChat API call. Its message names the API, errcode and network cause, never the URL or a secret. */
export class WeChatError extends Error {
  override name = 'WeChatError'
  constructor(
    readonly api: string,
    readonly failure: WeChatFailure,
    readonly errcode?: number,
    /** Why WeChat was unreachable (failure `unreachable` only). */
    readonly network?: NetworkCause,
  ) {
    super(`WeChat ${api} failed: ${failure}${errcode === undefined ? '' : ` (errcode ${errcode})`}${network === undefined ? '' : ` (${network})`}`)
  }
}

const DNS_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NODATA', 'EAI_NONAME'])
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'])
const TIMEOUT_CODES = new Set(['ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])
/** OpenSSL's and Node's codes for certificates that do not verify and handshakes that fail. */
const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|ERR_OSSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH$|EPROTO$)/

/** The error codes of an error and of its causes (fetch wraps the socket's error; happy eyeballs aggregates several). */
function codesOf(error: unknown, depth = 0): string[] {
  if (typeof error !== 'object' || error === null || depth > 4) return []
  const { code, cause, errors } = error as { code?: unknown; cause?: unknown; errors?: unknown }
  return [
    ...(typeof code === 'string' ? [code] : []),
    ...codesOf(cause, depth + 1),
    ...(Array.isArray(errors) ? errors.flatMap((inner) => codesOf(inner, depth + 1)) : []),
  ]
}

/**
 * Why a fetch to WeChat failed, from the error it threw: the codes Node and undici put on it or on its
 * `cause`. `timedOut` is true when minigate's own timeout aborted the call.
 *
 * @example networkCauseOf(error, abort.signal.aborted) // 'connection_refused'
 */
export function networkCauseOf(error: unknown, timedOut: boolean): { cause: NetworkCause; code?: string } {
  if (timedOut) return { cause: 'timeout' }
  const codes = codesOf(error)
  const find = (test: (code: string) => boolean, cause: NetworkCause) => {
    const code = codes.find(test)
    return code === undefined ? undefined : { cause, code }
  }
  return (
    find((code) => code === 'ECONNREFUSED', 'connection_refused') ??
    find((code) => DNS_CODES.has(code), 'dns') ??
    find((code) => TLS_CODE.test(code), 'tls') ??
    find((code) => TIMEOUT_CODES.has(code), 'timeout') ??
    find((code) => RESET_CODES.has(code), 'reset') ??
    (codes[0] === undefined ? { cause: 'network' } : { cause: 'network', code: codes[0] })
  )
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
      return new TemporarilyUnavailable(
        error.network === 'timeout' ? 'WeChat did not answer in time; try again shortly' : 'WeChat could not be reached; try again shortly',
        retryAfterSeconds.unreachable,
      )
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
