import type { JWTPayload } from 'jose'
import { InvalidToken } from './errors.js'

/**
 * The claims of a verified minigate access token (RFC 9068, plus `sid`).
 *
 * @example
 * const claims: AccessTokenClaims = await verifier.verify(token)
 * claims.sub       // minigate's stable user id (never the WeChat openid)
 * claims.client_id // the mini-program's appid
 * claims.scope     // 'profile phone'
 */
export interface AccessTokenClaims {
  /** The issuer, exactly as configured. */
  iss: string
  /** minigate's stable user id. */
  sub: string
  /** The audience the token was issued for (`MINIGATE_AUDIENCE`). */
  aud: string | string[]
  /** The mini-program (its WeChat appid) the user logged in with. */
  client_id: string
  /** Issued at, seconds since the epoch. */
  iat: number
  /** Expires at, seconds since the epoch. */
  exp: number
  /** The token's unique id. */
  jti: string
  /** Space-separated scopes granted to the token (`profile`, `phone`, `openid`). */
  scope: string
  /** The login (refresh-token family) the token belongs to. */
  sid?: string
  [claim: string]: unknown
}

/**
 * The scopes of a token, as a list.
 *
 * @example
 * scopesOf(await verifier.verify(token)) // ['profile', 'phone']
 */
export function scopesOf(claims: Pick<AccessTokenClaims, 'scope'>): string[] {
  return typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : []
}

function nonEmptyString(payload: JWTPayload, name: string): void {
  if (typeof payload[name] !== 'string' || payload[name] === '') throw new InvalidToken(`the token ${name} claim is missing or invalid`)
}

/** The claim checks jose leaves to us: types of the RFC 9068 claims jose only requires to be present. */
export function accessTokenClaims(payload: JWTPayload): AccessTokenClaims {
  for (const name of ['sub', 'client_id', 'jti']) nonEmptyString(payload, name)
  if (typeof payload.iat !== 'number') throw new InvalidToken('the token iat claim is missing or invalid')
  if (payload.scope !== undefined && typeof payload.scope !== 'string') throw new InvalidToken('the token scope claim is invalid')
  if (payload.sid !== undefined && typeof payload.sid !== 'string') throw new InvalidToken('the token sid claim is invalid')
  return { ...payload, scope: payload.scope ?? '' } as AccessTokenClaims
}
