/**
 * The errors minigate answers with. Each class carries its OAuth `error` code and HTTP status;
 * `src/http/error-handler.ts` renders them as RFC 6749 §5.2 bodies. Anything that is not an
 * `OAuthError` becomes a bland `server_error`.
 *
 * @example throw new InvalidGrant('the code was already used')
 */
export class OAuthError extends Error {
  readonly code: string = 'server_error'
  readonly status: number = 500
  /** Extra response headers (`WWW-Authenticate`, `Retry-After`, `Allow`). */
  headers: Record<string, string> = {}

  constructor(readonly description: string) {
    super(description)
  }

  /** Whether the description may be shown to the client. */
  get expose(): boolean {
    return this.status < 500
  }
}

export class InvalidRequest extends OAuthError {
  override readonly code = 'invalid_request'
  override readonly status: number = 400
}

/** Any other 4xx a library raised (its own message is not shown: it may quote the input). */
export class ClientError extends InvalidRequest {
  constructor(
    description: string,
    override readonly status: number,
  ) {
    super(description)
  }
}

/** A request body over the size limit. */
export class PayloadTooLarge extends InvalidRequest {
  override readonly status = 413
}

/** A request body in a content type the endpoint does not read. */
export class UnsupportedMediaType extends InvalidRequest {
  override readonly status = 415
}

/** A method the endpoint does not accept (GET on a POST endpoint). */
export class MethodNotAllowed extends InvalidRequest {
  override readonly status = 405
  constructor(description: string, allowed: string[]) {
    super(description)
    this.headers.Allow = allowed.join(', ')
  }
}

export class NotFound extends OAuthError {
  override readonly code = 'not_found'
  override readonly status = 404
}

export class InvalidClient extends OAuthError {
  override readonly code = 'invalid_client'
  override readonly status = 401
  constructor(description: string, scheme = 'Basic') {
    super(description)
    this.headers['WWW-Authenticate'] = `${scheme} realm="minigate"`
  }
}

export class InvalidGrant extends OAuthError {
  override readonly code = 'invalid_grant'
  override readonly status = 400
}

export class UnsupportedGrantType extends OAuthError {
  override readonly code = 'unsupported_grant_type'
  override readonly status = 400
}

export class InvalidScope extends OAuthError {
  override readonly code = 'invalid_scope'
  override readonly status = 400
}

/** RFC 8707 §2: a `resource` minigate issues no tokens for. */
export class InvalidTarget extends OAuthError {
  override readonly code = 'invalid_target'
  override readonly status = 400
}

/**
 * WeChat data that does not open: 400 with a code of its own. Malformed input (`bad_iv`,
 * `bad_encrypted_data`) and an unusable stored key (`bad_session_key`) are told apart; everything that
 * depends on the session_key is one `decryption_failed` (see `decryptWeChatData`).
 */
export class DecryptionFailed extends OAuthError {
  override readonly status = 400
  constructor(
    override readonly code: string,
    description: string,
  ) {
    super(description)
  }
}

function quote(value: string): string {
  return value.replace(/[\\"]/g, '').replace(/[^\x20-\x7e]/g, '?')
}

/** RFC 6750 §3: a Bearer request without credentials gets no error code, only the challenge. */
export class BearerRequired extends OAuthError {
  override readonly code = 'invalid_request'
  override readonly status = 401
  constructor(description = 'a Bearer access token is required') {
    super(description)
    this.headers['WWW-Authenticate'] = 'Bearer realm="minigate"'
  }
}

/** RFC 6750 §3.1 `invalid_token`: expired, revoked, malformed or not an access token. */
export class InvalidToken extends OAuthError {
  override readonly code = 'invalid_token'
  override readonly status = 401
  constructor(description: string) {
    super(description)
    this.headers['WWW-Authenticate'] = `Bearer realm="minigate", error="invalid_token", error_description="${quote(description)}"`
  }
}

/** RFC 6750 §3.1 `insufficient_scope`: the access token lacks a scope the endpoint needs. */
export class InsufficientScope extends OAuthError {
  override readonly code = 'insufficient_scope'
  override readonly status = 403
  constructor(scope: string) {
    super(`this endpoint needs the ${scope} scope`)
    this.headers['WWW-Authenticate'] = `Bearer realm="minigate", error="insufficient_scope", scope="${quote(scope)}"`
  }
}

/** 429: over a rate limit; the client may try again after `retryAfter` seconds. */
export class TooManyRequests extends OAuthError {
  override readonly code = 'too_many_requests'
  override readonly status = 429
  constructor(description: string, retryAfter: number) {
    super(description)
    this.headers['Retry-After'] = String(retryAfter)
  }
}

/** WeChat is busy, rate limited or slow: the client may try again after `retryAfter` seconds. */
export class TemporarilyUnavailable extends OAuthError {
  override readonly code = 'temporarily_unavailable'
  override readonly status = 503
  override get expose(): boolean {
    return true
  }
  constructor(description: string, retryAfter: number) {
    super(description)
    this.headers['Retry-After'] = String(retryAfter)
  }
}

/** WeChat answered with something unusable (HTTP 5xx, not JSON, a missing field). */
export class UpstreamError extends OAuthError {
  override readonly code = 'server_error'
  override readonly status = 502
  override get expose(): boolean {
    return true
  }
}
