import type { Context, Middleware, Next } from 'koa'
import bodyParser from 'koa-bodyparser'
import { InvalidRequest, UnsupportedMediaType } from '../errors.js'

/** Largest body minigate reads on its JSON and form endpoints. */
export const BODY_LIMIT = '16kb'

const FORM = 'application/x-www-form-urlencoded'
const JSON_TYPE = 'application/json'

/** The parameters of a request body: each appears once, as a string. */
export type Params = Record<string, string>

// `queryString` (qs options) is a koa-bodyparser option its type definitions do not list.
const parser = bodyParser({
  enableTypes: ['json', 'form'],
  jsonLimit: BODY_LIMIT,
  formLimit: BODY_LIMIT,
  strict: true,
  // koa-bodyparser reads form bodies with qs: keep it from building arrays or nested objects.
  queryString: { allowDots: false, depth: 0, arrayLimit: 100, parameterLimit: 100 },
} as bodyParser.Options)

/**
 * Parses a form or JSON body (RFC 6749 §3.2 endpoints) into `ctx.state.params`. Another content type is
 * 415; a malformed body, a repeated parameter, or a value that is not a string is `invalid_request`.
 *
 * @example router.post('/token', parseParams(), tokenEndpoint)
 */
export function parseParams(types: Array<'form' | 'json'> = ['form', 'json']): Middleware {
  const accepted = types.map((type) => (type === 'form' ? FORM : JSON_TYPE))
  return async function parseParamsMiddleware(ctx: Context, next: Next) {
    if (!ctx.request.is(...accepted)) {
      throw new UnsupportedMediaType(`the body must be ${accepted.join(' or ')}`)
    }
    await parser(ctx, async () => {})
    ctx.state.params = toParams(ctx.request.body)
    await next()
  }
}

function toParams(body: unknown): Params {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidRequest('the body must be an object of parameters')
  }
  const params: Params = {}
  for (const [name, value] of Object.entries(body)) {
    if (Array.isArray(value)) throw new InvalidRequest(`the ${safeName(name)} parameter must not be repeated`)
    if (typeof value !== 'string') throw new InvalidRequest(`the ${safeName(name)} parameter must be a string`)
    params[name] = value
  }
  return params
}

/** A parameter name fit to echo in an error description. */
function safeName(name: string): string {
  return /^[\w.-]{1,40}$/.test(name) ? name : 'a'
}

/** A parameter that must be present and non-empty. */
export function required(params: Params, name: string): string {
  const value = params[name]
  if (value === undefined || value === '') throw new InvalidRequest(`the ${name} parameter is required`)
  return value
}
