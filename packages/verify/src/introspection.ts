import type { AccessTokenClaims } from './claims.js'
import { ConfigurationError, InvalidToken, TemporarilyUnavailable } from './errors.js'

/**
 * The credentials a service introspects with (`MINIGATE_SERVICES` on the issuer).
 *
 * @example
 * createVerifier({ issuer, audience, introspection: { clientId: 'orders', clientSecret, cacheSeconds: 2 } })
 */
export interface IntrospectionOptions {
  /** The service's id. */
  clientId: string
  /** The service's secret. */
  clientSecret: string
  /**
   * How long a positive answer is trusted for the same token, seconds (default 5, capped at the token's
   * `exp`). 0 asks on every call. A revocation is noticed after at most this long.
   */
  cacheSeconds?: number
}

/** Entries kept before expired ones are swept out. */
const CACHE_SWEEP_SIZE = 10_000

/** RFC 6749 §2.3.1: id and secret are form-encoded before they are joined and base64-encoded. */
function basicAuthorization(id: string, secret: string): string {
  const encode = (value: string) => encodeURIComponent(value).replace(/%20/g, '+')
  return `Basic ${Buffer.from(`${encode(id)}:${encode(secret)}`).toString('base64')}`
}

/**
 * Online checks through the issuer's RFC 7662 introspection endpoint. Only tokens that already passed
 * offline verification get here, so the answer is trusted only when it is `active: true` for the same
 * `sub` and `jti`. Positive answers are cached briefly per `jti`; concurrent checks of one token share
 * one request.
 */
export function introspector(options: IntrospectionOptions, endpoint: () => Promise<string>, timeoutMs: number, now: () => number) {
  const cacheMs = Math.max(0, options.cacheSeconds ?? 5) * 1000
  const authorization = basicAuthorization(options.clientId, options.clientSecret)
  const activeUntil = new Map<string, number>()
  const inFlight = new Map<string, Promise<void>>()

  function remember(claims: AccessTokenClaims): void {
    if (cacheMs === 0) return
    if (activeUntil.size >= CACHE_SWEEP_SIZE) {
      const time = now()
      for (const [jti, until] of activeUntil) if (until <= time) activeUntil.delete(jti)
      if (activeUntil.size >= CACHE_SWEEP_SIZE) activeUntil.clear()
    }
    activeUntil.set(claims.jti, Math.min(now() + cacheMs, claims.exp * 1000))
  }

  async function ask(token: string, claims: AccessTokenClaims): Promise<void> {
    const url = await endpoint()
    let response: Response
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: { authorization, accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      })
    } catch (cause) {
      throw new TemporarilyUnavailable('the issuer introspection endpoint could not be reached', { cause })
    }
    if (response.status === 401 || response.status === 403) throw new ConfigurationError('the issuer refused the introspection credentials')
    if (response.status !== 200) throw new TemporarilyUnavailable(`the issuer introspection endpoint answered ${response.status}`)
    let answer: Record<string, unknown>
    try {
      answer = (await response.json()) as Record<string, unknown>
    } catch (cause) {
      throw new TemporarilyUnavailable('the issuer introspection answer is not JSON', { cause })
    }
    if (answer === null || typeof answer !== 'object') throw new TemporarilyUnavailable('the issuer introspection answer is not a JSON object')
    if (answer.active !== true) throw new InvalidToken('the token has been revoked')
    if (answer.sub !== claims.sub || answer.jti !== claims.jti) throw new InvalidToken('the issuer describes another token')
    remember(claims)
  }

  return function checkActive(token: string, claims: AccessTokenClaims): Promise<void> {
    const until = activeUntil.get(claims.jti)
    if (until !== undefined) {
      if (until > now()) return Promise.resolve()
      activeUntil.delete(claims.jti)
    }
    let pending = inFlight.get(claims.jti)
    if (!pending) {
      pending = ask(token, claims).finally(() => inFlight.delete(claims.jti))
      inFlight.set(claims.jti, pending)
    }
    return pending
  }
}
