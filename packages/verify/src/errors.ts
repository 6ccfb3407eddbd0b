/**
 * Every error the verifier throws is a `VerifyError`: `code` is stable (the RFC 6750 code where one
 * applies) and `status` is the HTTP status a service answers with. The middleware renders them as
 * `{"error": code, "error_description": message}` with the `WWW-Authenticate` challenge of RFC 6750.
 *
 * @example
 * try {
 *   const claims = await verifier.verify(token)
 * } catch (error) {
 *   if (error instanceof VerifyError) console.log(error.status, error.code) // 401 'invalid_token'
 *   else throw error
 * }
 */
export class VerifyError extends Error {
  override name = 'VerifyError'
  readonly code: string = 'server_error'
  readonly status: number = 500

  /** The `WWW-Authenticate` header value for this error, when it has one. */
  get challenge(): string | undefined {
    return undefined
  }

  /** Whether `message` may be shown to the caller; 5xx messages describe the service's trouble, not the token. */
  get expose(): boolean {
    return this.status < 500
  }
}

/** Quotes a value for a `WWW-Authenticate` parameter: printable ASCII, no quote or backslash. */
function quote(value: string): string {
  return value.replace(/[\\"]/g, '').replace(/[^\x20-\x7e]/g, '?')
}

/**
 * 401 without an error code (RFC 6750 §3.1): the request carried no Bearer token.
 *
 * @example
 * new TokenRequired().challenge // 'Bearer'
 */
export class TokenRequired extends VerifyError {
  override name = 'TokenRequired'
  override readonly code = 'invalid_request'
  override readonly status = 401
  constructor(message = 'a Bearer access token is required') {
    super(message)
  }
  override get challenge(): string {
    return 'Bearer'
  }
}

/**
 * 400 `invalid_request`: the request is malformed, e.g. it carries a token in the URL query, which
 * is never read (URLs end up in logs and browser histories).
 *
 * @example
 * new InvalidRequest('access tokens must not be sent in the URL').status // 400
 */
export class InvalidRequest extends VerifyError {
  override name = 'InvalidRequest'
  override readonly code = 'invalid_request'
  override readonly status = 400
  override get challenge(): string {
    return `Bearer error="invalid_request", error_description="${quote(this.message)}"`
  }
}

/**
 * 401 `invalid_token`: malformed, forged, expired, of another kind (a refresh or ID token), for
 * another audience or issuer, or revoked (online verification).
 *
 * @example
 * new InvalidToken('the token has expired').challenge
 * // 'Bearer error="invalid_token", error_description="the token has expired"'
 */
export class InvalidToken extends VerifyError {
  override name = 'InvalidToken'
  override readonly code = 'invalid_token'
  override readonly status = 401
  override get challenge(): string {
    return `Bearer error="invalid_token", error_description="${quote(this.message)}"`
  }
}

/**
 * 403 `insufficient_scope`: a good token that was not granted every scope the route needs.
 *
 * @example
 * new InsufficientScope(['phone']).challenge // 'Bearer error="insufficient_scope", scope="phone"'
 */
export class InsufficientScope extends VerifyError {
  override name = 'InsufficientScope'
  override readonly code = 'insufficient_scope'
  override readonly status = 403
  constructor(readonly scopes: string[]) {
    super(`this route needs the scope ${scopes.join(' ')}`)
  }
  override get challenge(): string {
    return `Bearer error="insufficient_scope", scope="${quote(this.scopes.join(' '))}"`
  }
}

/**
 * 503 `temporarily_unavailable`: the issuer's discovery document, JWKS or introspection endpoint did
 * not answer usefully (network error, timeout, 5xx, not JSON). The token was not judged.
 *
 * @example
 * new TemporarilyUnavailable('the issuer did not answer').status // 503
 */
export class TemporarilyUnavailable extends VerifyError {
  override name = 'TemporarilyUnavailable'
  override readonly code = 'temporarily_unavailable'
  override readonly status = 503
}

/**
 * 500 `server_error`: the verifier is set up wrongly: the discovery document names another issuer,
 * the introspection credentials are refused, or `online` was asked without `introspection` options.
 *
 * @example
 * new ConfigurationError('the issuer refused the introspection credentials').status // 500
 */
export class ConfigurationError extends VerifyError {
  override name = 'ConfigurationError'
  override readonly code = 'server_error'
  override readonly status = 500
}
