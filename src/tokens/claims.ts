/** The JOSE `typ` of each token kind (RFC 9068 for access tokens); verifiers refuse the others. */
export const TokenType = {
  access: 'at+jwt',
  refresh: 'rt+jwt',
  id: 'JWT',
} as const

/** Scopes minigate grants. `profile` when a login asks for none. */
export const SCOPES = ['openid', 'profile', 'phone'] as const
export const DEFAULT_SCOPE = 'profile'

/** Whether a space-delimited scope string includes `wanted`. */
export function hasScope(scope: string, wanted: string): boolean {
  return scope.split(' ').includes(wanted)
}

/** Claims of a verified access token (RFC 9068 plus `sid`). */
export interface AccessTokenClaims {
  iss: string
  sub: string
  aud: string | string[]
  client_id: string
  iat: number
  exp: number
  jti: string
  scope: string
  sid: string
}

/** Claims of a verified refresh token. */
export interface RefreshTokenClaims {
  iss: string
  sub: string
  aud: string | string[]
  client_id: string
  iat: number
  exp: number
  jti: string
  sid: string
  /** The generation of its login the token belongs to. */
  gen: number
}

/** Longest token minigate reads; a longer one is rejected before it is parsed. */
export const MAX_TOKEN_LENGTH = 4096
