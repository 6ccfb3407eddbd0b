import { randomBytes } from 'node:crypto'
import type { JWTPayload } from 'jose'
import { epochSeconds, type Clock } from '../clock.js'
import type { Config } from '../config.js'
import type { KeyStore } from '../keys/signing-keys.js'
import { TokenType } from './claims.js'
import { signJwt } from './jws.js'

export interface MintDeps {
  config: Pick<Config, 'issuer' | 'audience' | 'accessTtl' | 'refreshTtl' | 'idTokenTtl'> & Partial<Pick<Config, 'accountAudience'>>
  keys: KeyStore
  clock: Clock
}

export interface Minted {
  token: string
  jti: string
  iat: number
  exp: number
}

/** A fresh 128-bit random identifier (jti, sid, user id). */
export function randomId(): string {
  return randomBytes(16).toString('base64url')
}

async function sign(deps: MintDeps, typ: string, claims: JWTPayload, ttl: number): Promise<Minted> {
  const key = deps.keys.active()
  const iat = epochSeconds(deps.clock)
  const exp = iat + ttl
  const jti = randomId()
  const token = await signJwt(key, typ, { ...claims, iss: deps.config.issuer, iat, exp, jti })
  return { token, jti, iat, exp }
}

/**
 * The `aud` of an access token: the one resource it was asked for (RFC 8707), else the configured
 * audience and minigate's account endpoints together.
 */
export function accessAudience(config: MintDeps['config'], resource?: string): string | string[] {
  if (resource !== undefined) return resource
  return config.accountAudience ? [config.audience, config.accountAudience] : config.audience
}

/**
 * Mints an RFC 9068 access token for business services (`aud` = the configured audience and the
 * account audience, or the one `resource` asked for).
 *
 * @example const { token } = await mintAccessToken(deps, { sub, clientId: appid, scope: 'profile', sid, loginEndsAt })
 */
export function mintAccessToken(deps: MintDeps, input: { sub: string; clientId: string; scope: string; sid: string; loginEndsAt: number; resource?: string }): Promise<Minted> {
  // Services verify offline: an access token must not outlive its login.
  const ttl = Math.min(deps.config.accessTtl, input.loginEndsAt - epochSeconds(deps.clock))
  return sign(deps, TokenType.access, { sub: input.sub, aud: accessAudience(deps.config, input.resource), client_id: input.clientId, scope: input.scope, sid: input.sid }, ttl)
}

/**
 * Mints a refresh token: only minigate accepts it (`aud` = the issuer). `gen` is its login's generation:
 * it refreshes while that is the login's current one. It lives `refreshTtl` (an inactivity limit,
 * renewed by each rotation) but never past its login's absolute end.
 */
export function mintRefreshToken(deps: MintDeps, input: { sub: string; clientId: string; sid: string; generation: number; loginEndsAt: number }): Promise<Minted> {
  const ttl = Math.min(deps.config.refreshTtl, input.loginEndsAt - epochSeconds(deps.clock))
  return sign(deps, TokenType.refresh, { sub: input.sub, aud: deps.config.issuer, client_id: input.clientId, sid: input.sid, gen: input.generation }, ttl)
}

/** Mints an OpenID Connect ID token for the mini-program itself (`aud` = its appid). */
export function mintIdToken(deps: MintDeps, input: { sub: string; clientId: string; claims: Record<string, unknown> }): Promise<Minted> {
  return sign(deps, TokenType.id, { ...input.claims, sub: input.sub, aud: input.clientId }, deps.config.idTokenTtl)
}
