// Koa and Express middleware without importing either: the shapes below are the few members used,
// so a service installs only jose with this package.
import { scopesOf, type AccessTokenClaims } from './claims.js'
import { InsufficientScope, InvalidRequest, InvalidToken, TokenRequired, VerifyError } from './errors.js'
import type { VerifyOptions } from './verifier.js'

type Headers = Record<string, string | string[] | undefined>

/**
 * The members of a Koa context the middleware uses (Koa's own `Context` fits).
 *
 * @example
 * const handler = (ctx: KoaContextLike) => { ctx.body = ctx.state.auth.sub }
 */
export interface KoaContextLike {
  headers: Headers
  url: string
  originalUrl?: string
  state: Record<string, any>
  status: number
  body: unknown
  set(field: string, value: string): void
}

/**
 * A Koa middleware (`ctx.state.auth` holds the claims after it).
 *
 * @example
 * const auth: KoaMiddleware = verifier.koa()
 * router.get('/orders', auth, listOrders)
 */
export type KoaMiddleware = (ctx: KoaContextLike, next: () => Promise<unknown>) => Promise<void>

/**
 * The members of an Express (or Node http) request the middleware uses (Express's `Request` fits).
 *
 * @example
 * const handler = (req: ExpressRequestLike) => req.auth?.sub
 */
export interface ExpressRequestLike {
  headers: Headers
  url?: string
  originalUrl?: string
  auth?: AccessTokenClaims
}

/**
 * The members of an Express (or Node http) response the middleware uses (Express's `Response` and
 * Node's `ServerResponse` fit).
 *
 * @example
 * http.createServer((req, res) => verifier.express()(req, res, () => res.end('ok')))
 */
export interface ExpressResponseLike {
  statusCode: number
  setHeader(name: string, value: string): unknown
  end(body: string): unknown
}

/**
 * An Express middleware (`req.auth` holds the claims after it).
 *
 * @example
 * const auth: ExpressMiddleware = verifier.express()
 * app.get('/orders', auth, listOrders)
 */
export type ExpressMiddleware = (req: ExpressRequestLike, res: ExpressResponseLike, next: (error?: unknown) => void) => void

declare global {
  // Express's own Request gets `auth`, so `req.auth` is typed in handlers after `verifier.express()`.
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The verified access token's claims, set by `verifier.express()`. */
      auth?: AccessTokenClaims
    }
  }
}

/** RFC 6750 §2.1 b64token. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i

/**
 * The Bearer token of a request, from the `Authorization` header only. A token in the URL query
 * (`?access_token=`) is refused and never read; a request body is never read either. For frameworks
 * other than Koa and Express; throws a {@link VerifyError}.
 *
 * @example
 * // Fastify
 * fastify.addHook('preHandler', async (request) => {
 *   request.auth = await verifier.verify(bearerToken(request.headers, request.url))
 * })
 */
export function bearerToken(headers: Headers, url: string | undefined): string {
  const query = url?.includes('?') ? url.slice(url.indexOf('?') + 1) : ''
  if (query !== '' && new URLSearchParams(query).has('access_token')) {
    throw new InvalidRequest('access tokens must not be sent in the URL; use the Authorization header')
  }
  const header = headers.authorization
  if (typeof header !== 'string' || !/^Bearer(\s|$)/i.test(header)) throw new TokenRequired()
  const match = BEARER.exec(header)
  if (!match) throw new InvalidToken('the Authorization header is not a well-formed Bearer token')
  return match[1] as string
}

function errorBody(error: VerifyError): string {
  const description = error.expose ? error.message : 'the access token could not be checked right now'
  return JSON.stringify({ error: error.code, error_description: description })
}

function renderKoa(ctx: KoaContextLike, error: VerifyError): void {
  ctx.status = error.status
  if (error.challenge) ctx.set('WWW-Authenticate', error.challenge)
  ctx.set('Cache-Control', 'no-store')
  ctx.set('Content-Type', 'application/json; charset=utf-8')
  ctx.body = errorBody(error)
}

function renderExpress(res: ExpressResponseLike, error: VerifyError): void {
  res.statusCode = error.status
  if (error.challenge) res.setHeader('WWW-Authenticate', error.challenge)
  res.setHeader('Cache-Control', 'no-store')
  res.setHeader('Content-Type', 'application/json; charset=utf-8')
  res.end(errorBody(error))
}

type Verify = (token: string, options?: VerifyOptions) => Promise<AccessTokenClaims>

export function koaMiddleware(verify: Verify, options: VerifyOptions = {}): KoaMiddleware {
  return async function minigateAuth(ctx, next) {
    let claims: AccessTokenClaims
    try {
      claims = await verify(bearerToken(ctx.headers, ctx.originalUrl ?? ctx.url), options)
    } catch (error) {
      if (!(error instanceof VerifyError)) throw error
      renderKoa(ctx, error)
      return
    }
    ctx.state.auth = claims
    await next()
  }
}

export function expressMiddleware(verify: Verify, options: VerifyOptions = {}): ExpressMiddleware {
  return function minigateAuth(req, res, next) {
    let token: string
    try {
      token = bearerToken(req.headers, req.originalUrl ?? req.url)
    } catch (error) {
      renderExpress(res, error as VerifyError)
      return
    }
    verify(token, options).then(
      (claims) => {
        req.auth = claims
        next()
      },
      (error: unknown) => {
        if (error instanceof VerifyError) renderExpress(res, error)
        else next(error)
      },
    )
  }
}

/**
 * Middleware for Koa and Express alike: it tells them apart by Express's third argument, `next`.
 *
 * @example
 * const needsPhone: ScopeMiddleware = requireScope('phone')
 */
export type ScopeMiddleware = KoaMiddleware & ExpressMiddleware

/**
 * Requires every one of `scopes` on the verified token: `403 insufficient_scope` otherwise. Works in
 * Koa and Express; place it after `verifier.koa()` / `verifier.express()`.
 *
 * @example
 * router.post('/orders', verifier.koa(), requireScope('phone'), placeOrder)      // Koa
 * app.post('/orders', verifier.express(), requireScope('phone'), placeOrder)     // Express
 */
export function requireScope(...scopes: string[]): ScopeMiddleware {
  if (scopes.length === 0 || scopes.some((scope) => typeof scope !== 'string' || !/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(scope))) {
    throw new TypeError('requireScope: give one or more scope names (no spaces or quotes)')
  }
  const missing = (claims: AccessTokenClaims) => {
    const granted = new Set(scopesOf(claims))
    return scopes.filter((scope) => !granted.has(scope))
  }
  const misplaced = 'requireScope() must come after verifier.koa() or verifier.express()'
  function checkScope(ctx: KoaContextLike, next: () => Promise<unknown>): Promise<void>
  function checkScope(req: ExpressRequestLike, res: ExpressResponseLike, next: (error?: unknown) => void): void
  function checkScope(first: any, second: any, third?: any): Promise<void> | void {
    if (typeof third === 'function') {
      const req = first as ExpressRequestLike
      if (!req.auth) return third(new Error(misplaced))
      if (missing(req.auth).length > 0) return renderExpress(second as ExpressResponseLike, new InsufficientScope(scopes))
      return third()
    }
    const ctx = first as KoaContextLike
    const claims = ctx.state?.auth as AccessTokenClaims | undefined
    if (!claims) return Promise.reject(new Error(misplaced))
    if (missing(claims).length > 0) {
      renderKoa(ctx, new InsufficientScope(scopes))
      return Promise.resolve()
    }
    return (second as () => Promise<unknown>)().then(() => undefined)
  }
  return checkScope as ScopeMiddleware
}
