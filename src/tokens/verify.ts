import { errors, jwtVerify, type JWTHeaderParameters, type JWTPayload } from 'jose'
import type { Clock } from '../clock.js'
import type { Config } from '../config.js'
import type { KeyStore } from '../keys/signing-keys.js'
import { MAX_TOKEN_LENGTH, TokenType, type AccessTokenClaims, type RefreshTokenClaims } from './claims.js'

export interface VerifyDeps {
  config: Pick<Config, 'issuer' | 'audience'> & Partial<Pick<Config, 'accountAudience' | 'resources'>>
  keys: KeyStore
  clock: Clock
}

/** A token that failed verification; `reason` is safe to show the client. */
export class TokenRejected extends Error {
  override name = 'TokenRejected'
  constructor(readonly reason: string) {
    super(reason)
  }
}

function reasonOf(error: unknown): string {
  if (error instanceof TokenRejected) return error.reason
  if (error instanceof errors.JWTExpired) return 'the token has expired'
  if (error instanceof errors.JWSSignatureVerificationFailed) return 'the token signature is invalid'
  if (error instanceof errors.JWTClaimValidationFailed) return `the token ${error.claim} claim is invalid`
  return 'the token is malformed or not signed by minigate'
}

function stringClaims(payload: JWTPayload, names: string[]): void {
  for (const name of names) {
    if (typeof payload[name] !== 'string' || payload[name] === '') throw new TokenRejected(`the token ${name} claim is missing`)
  }
}

const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/

/** Whether a segment is base64url as an encoder writes it (no stray bits in its last character). */
function canonical(segment: string): boolean {
  return Buffer.from(segment, 'base64url').toString('base64url') === segment
}

/**
 * A compact JWS as minigate writes them: three canonical base64url segments. Base64 decoders skip
 * characters they do not know and ignore a last character's spare bits, so without this check many
 * spellings of one token would pass as the same token.
 */
function wellFormed(token: string): boolean {
  return token.length > 0 && token.length <= MAX_TOKEN_LENGTH && COMPACT.test(token) && token.split('.').every(canonical)
}

/** RFC 8725: RS256 only, the `typ` of the expected kind, `iss`, `aud` and `exp` checked; `kid` is a lookup key only. */
async function verify(deps: VerifyDeps, token: string, typ: string, audience: string | string[]): Promise<JWTPayload> {
  if (!wellFormed(token)) throw new TokenRejected('the token is malformed or not signed by minigate')
  try {
    const { payload } = await jwtVerify(
      token,
      (header: JWTHeaderParameters) => {
        const key = deps.keys.get(header.kid)
        if (!key) throw new TokenRejected('the token was signed by an unknown key')
        return key.publicKey
      },
      {
        algorithms: ['RS256'],
        typ,
        issuer: deps.config.issuer,
        audience,
        currentDate: new Date(deps.clock.now()),
        requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti'],
      },
    )
    return payload
  } catch (error) {
    throw new TokenRejected(reasonOf(error))
  }
}

/** Every audience minigate issues access tokens for: the default, its account endpoints', the resources'. */
export function accessAudiences(config: VerifyDeps['config']): string[] {
  return [config.audience, ...(config.accountAudience ? [config.accountAudience] : []), ...(config.resources ?? [])]
}

/** Whether a token's `aud` includes `audience`. */
export function hasAudience(aud: string | string[], audience: string): boolean {
  return Array.isArray(aud) ? aud.includes(audience) : aud === audience
}

/**
 * Verifies an access token the way a business service does, offline. Any audience minigate issues
 * access tokens for is accepted here; an endpoint that wants one in particular checks it after.
 *
 * @example const claims = await verifyAccessToken(deps, bearer)
 */
export async function verifyAccessToken(deps: VerifyDeps, token: string): Promise<AccessTokenClaims> {
  const payload = await verify(deps, token, TokenType.access, accessAudiences(deps.config))
  stringClaims(payload, ['sub', 'jti', 'client_id', 'sid', 'scope'])
  return payload as unknown as AccessTokenClaims
}

/** Verifies a refresh token's signature and claims; the caller still checks its row. */
export async function verifyRefreshToken(deps: VerifyDeps, token: string): Promise<RefreshTokenClaims> {
  const payload = await verify(deps, token, TokenType.refresh, deps.config.issuer)
  stringClaims(payload, ['sub', 'jti', 'client_id', 'sid'])
  if (!Number.isSafeInteger(payload.gen) || (payload.gen as number) < 0) throw new TokenRejected('the token gen claim is missing')
  return payload as unknown as RefreshTokenClaims
}
