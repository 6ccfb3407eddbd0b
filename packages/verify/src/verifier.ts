import { createRemoteJWKSet, errors, jwtVerify, type JWTHeaderParameters, type FlattenedJWSInput, type JWTPayload } from 'jose'
import { accessTokenClaims, type AccessTokenClaims } from './claims.js'
import { issuerMetadata } from './discovery.js'
import { ConfigurationError, InvalidToken, TemporarilyUnavailable, VerifyError } from './errors.js'
import { introspector, type IntrospectionOptions } from './introspection.js'
import { expressMiddleware, koaMiddleware, type ExpressMiddleware, type KoaMiddleware } from './middleware.js'

/**
 * Options of {@link createVerifier}.
 *
 * @example
 * const options: VerifierOptions = {
 *   issuer: 'https://id.example.com',
 *   audience: 'minigate-api',
 *   introspection: { clientId: 'orders', clientSecret: process.env.ORDERS_SECRET! },
 * }
 */
export interface VerifierOptions {
  /** The issuer, exactly as minigate's `MINIGATE_ISSUER` (tokens must carry it as `iss`). */
  issuer: string
  /** The audience access tokens must carry in `aud` (minigate's `MINIGATE_AUDIENCE`, by default `minigate-api`). */
  audience: string
  /** Seconds of clock skew tolerated on `exp` and `iat` (default 60, as minigate allows). */
  clockTolerance?: number
  /** The service's introspection credentials; needed for `verify(token, { online: true })`. */
  introspection?: IntrospectionOptions
  /**
   * The JWKS cache (jose's remote JWK set), in ms: `cacheMaxAge` (default 300000, minigate's JWKS
   * `max-age`), `cooldownDuration` (default 30000: an unknown `kid` refetches the JWKS at most that
   * often), `timeoutDuration` (default 5000, also used for discovery and introspection requests).
   */
  jwks?: { cacheMaxAge?: number; cooldownDuration?: number; timeoutDuration?: number }
  /** The current time in ms (default `Date.now`); for tests. */
  now?: () => number
}

/**
 * Options of one verification or middleware.
 *
 * @example
 * router.post('/pay', verifier.koa({ online: true } satisfies VerifyOptions), pay)
 */
export interface VerifyOptions {
  /**
   * Also ask the issuer's introspection endpoint whether the token is still active, so a revoked login
   * is refused at once rather than when the token expires. For revocation-sensitive routes
   * (payments, account changes); needs the verifier's `introspection` option.
   */
  online?: boolean
}

/**
 * What {@link createVerifier} returns: one per issuer and audience, shared by every route.
 *
 * @example
 * export const verifier: Verifier = createVerifier({ issuer, audience: 'minigate-api' })
 */
export interface Verifier {
  /**
   * Verifies an access token and returns its claims; throws a {@link VerifyError} (`invalid_token`,
   * `temporarily_unavailable`, ...) otherwise.
   *
   * @example
   * const claims = await verifier.verify(token)                    // offline, against the JWKS
   * const fresh = await verifier.verify(token, { online: true })   // and not revoked
   */
  verify(token: string, options?: VerifyOptions): Promise<AccessTokenClaims>
  /**
   * Koa middleware: verifies the `Authorization: Bearer` token, puts the claims at `ctx.state.auth`,
   * answers 401/403/503 itself.
   *
   * @example
   * router.get('/orders', verifier.koa(), (ctx) => { ctx.body = ordersOf(ctx.state.auth.sub) })
   */
  koa(options?: VerifyOptions): KoaMiddleware
  /**
   * Express (or plain Node http) middleware: verifies the `Authorization: Bearer` token, puts the
   * claims at `req.auth`, answers 401/403/503 itself.
   *
   * @example
   * app.get('/orders', verifier.express(), (req, res) => res.json(ordersOf(req.auth.sub)))
   */
  express(options?: VerifyOptions): ExpressMiddleware
}

/** Longer than any token minigate issues; a bigger input is refused before it is parsed. */
const MAX_TOKEN_LENGTH = 8192

/** A JWT verification failure from jose, in words safe to show the caller. */
function invalidToken(error: unknown): VerifyError {
  if (error instanceof VerifyError) return error
  if (error instanceof errors.JWTExpired) return new InvalidToken('the token has expired')
  if (error instanceof errors.JWTClaimValidationFailed) return new InvalidToken(`the token ${error.claim} is invalid`)
  if (error instanceof errors.JOSEAlgNotAllowed) return new InvalidToken('the token algorithm is not allowed')
  if (error instanceof errors.JWSSignatureVerificationFailed) return new InvalidToken('the token signature is invalid')
  if (error instanceof errors.JWKSNoMatchingKey) return new InvalidToken('the token was signed by an unknown key')
  if (error instanceof errors.JOSEError) return new InvalidToken('the token is malformed')
  throw error
}

/**
 * Creates a verifier of minigate access tokens for a service. It finds `jwks_uri` (and the
 * introspection endpoint) through the issuer's discovery document on first use, then verifies offline:
 * RS256 only, header `typ: at+jwt`, exact `iss`, the configured `aud`, `exp`, `iat`, `sub`, `jti`,
 * `client_id`. Refresh tokens (`rt+jwt`) and ID tokens (`JWT`) are refused. A token signed by a `kid`
 * the cached JWKS lacks refetches it (at most once per `jwks.cooldownDuration`), so a key rotation never
 * rejects a valid token.
 *
 * @example
 * import { createVerifier } from '@minigate/verify'
 * const verifier = createVerifier({ issuer: 'https://id.example.com', audience: 'minigate-api' })
 * const claims = await verifier.verify(token)
 * console.log(claims.sub, claims.scope)
 */
export function createVerifier(options: VerifierOptions): Verifier {
  const { issuer, audience } = options
  if (typeof issuer !== 'string' || issuer === '') throw new TypeError('createVerifier: issuer must be the issuer URL')
  if (typeof audience !== 'string' || audience === '') throw new TypeError('createVerifier: audience must be a non-empty string')
  if (options.introspection && (!options.introspection.clientId || !options.introspection.clientSecret)) {
    throw new TypeError('createVerifier: introspection needs clientId and clientSecret')
  }
  const now = options.now ?? Date.now
  const clockTolerance = options.clockTolerance ?? 60
  const timeoutMs = options.jwks?.timeoutDuration ?? 5_000
  const metadata = issuerMetadata(issuer, timeoutMs, now)

  let keySet: ReturnType<typeof createRemoteJWKSet> | undefined
  async function signingKey(header: JWTHeaderParameters, token: FlattenedJWSInput) {
    if (!keySet) {
      const { jwks_uri } = await metadata()
      keySet ??= createRemoteJWKSet(new URL(jwks_uri), {
        cacheMaxAge: options.jwks?.cacheMaxAge ?? 300_000,
        cooldownDuration: options.jwks?.cooldownDuration ?? 30_000,
        timeoutDuration: timeoutMs,
      })
    }
    try {
      return await keySet(header, token)
    } catch (error) {
      if (error instanceof errors.JWKSNoMatchingKey) throw error
      throw new TemporarilyUnavailable("the issuer's JWKS could not be fetched", { cause: error })
    }
  }

  const checkActive = options.introspection
    ? introspector(
        options.introspection,
        async () => {
          const { introspection_endpoint } = await metadata()
          if (!introspection_endpoint) throw new ConfigurationError('the issuer publishes no introspection_endpoint')
          return introspection_endpoint
        },
        timeoutMs,
        now,
      )
    : undefined

  async function verify(token: string, verifyOptions: VerifyOptions = {}): Promise<AccessTokenClaims> {
    if (verifyOptions.online && !checkActive) throw new ConfigurationError('online verification needs the introspection option of createVerifier')
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) throw new InvalidToken('the token is malformed')
    let payload: JWTPayload
    try {
      ;({ payload } = await jwtVerify(token, signingKey, {
        algorithms: ['RS256'],
        typ: 'at+jwt',
        issuer,
        audience,
        clockTolerance,
        currentDate: new Date(now()),
        requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'client_id'],
      }))
    } catch (error) {
      throw invalidToken(error)
    }
    const claims = accessTokenClaims(payload)
    // jose checks `iat` only against a maximum token age; a token from the future is forged or broken.
    if (claims.iat > now() / 1000 + clockTolerance) throw new InvalidToken('the token iat is in the future')
    if (verifyOptions.online) await checkActive!(token, claims)
    return claims
  }

  return {
    verify,
    koa: (middlewareOptions) => koaMiddleware(verify, middlewareOptions),
    express: (middlewareOptions) => expressMiddleware(verify, middlewareOptions),
  }
}
