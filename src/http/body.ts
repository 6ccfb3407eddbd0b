import type { Context, Middleware, Next } from 'koa'
import bodyParser from 'koa-bodyparser'
import { InvalidRequest, PayloadTooLarge, UnsupportedMediaType } from '../errors.js'

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
  queryString: { allowDots: false, depth: 0, arrayLimit: 100, parameterLimit: 100, throwOnLimitExceeded: true },
} as bodyParser.Options)

/** No body at all: no content type, no length (or 0), not chunked. */
function bodyless(ctx: Context): boolean {
  return ctx.get('Content-Type') === '' && ctx.get('Transfer-Encoding') === '' && !(Number(ctx.get('Content-Length')) > 0)
}

/** Reads the body with koa-bodyparser; its refusals become OAuth errors (413, 415, else 400). */
async function readBody(ctx: Context): Promise<void> {
  try {
    await parser(ctx, async () => {})
  } catch (error) {
    const status = (error as { status?: unknown }).status
    if (status === 413) throw new PayloadTooLarge('the request body is too large')
    if (status === 415) throw new UnsupportedMediaType('the request body has an unsupported encoding or charset')
    throw new InvalidRequest('the request body is malformed')
  }
}

/**
 * Parses a form or JSON body (RFC 6749 §3.2 endpoints) into `ctx.state.params`. No body at all is
 * `invalid_request`; another content type is 415; a malformed body, a repeated parameter, or a value
 * that is not a string is `invalid_request`.
 *
 * @example router.post('/token', parseParams(), tokenEndpoint)
 */
export function parseParams(types: Array<'form' | 'json'> = ['form', 'json'], options: { scalars?: boolean } = {}): Middleware {
  const accepted = types.map((type) => (type === 'form' ? FORM : JSON_TYPE))
  return async function parseParamsMiddleware(ctx: Context, next: Next) {
    // A client that forgot the body altogether is missing parameters, not speaking another media type.
    if (bodyless(ctx)) throw new InvalidRequest(`the request body is required: send the parameters as ${accepted.join(' or ')}`)
    if (!ctx.request.is(...accepted)) {
      throw new UnsupportedMediaType(`the body must be ${accepted.join(' or ')}`)
    }
    await readBody(ctx)
    const params = toParams(ctx.request.body, options.scalars ?? false)
    if (ctx.request.is(JSON_TYPE)) {
      const repeated = repeatedJsonKey((ctx.request as { rawBody?: string }).rawBody ?? '')
      if (repeated !== undefined) throw new InvalidRequest(`the ${safeName(repeated)} parameter must not be repeated`)
    }
    ctx.state.params = params
    await next()
  }
}

function toParams(body: unknown, scalars: boolean): Params {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidRequest('the body must be an object of parameters')
  }
  const params: Params = {}
  for (const [name, value] of Object.entries(body)) {
    if (Array.isArray(value)) throw new InvalidRequest(`the ${safeName(name)} parameter must not be repeated`)
    if (scalars && (typeof value === 'number' || typeof value === 'boolean')) params[name] = String(value)
    else if (typeof value !== 'string') throw new InvalidRequest(`the ${safeName(name)} parameter must be a string`)
    else params[name] = value
  }
  return params
}

const JSON_STRING = /"(?:[^"\\]|\\.)*"/y
const JSON_SCALAR = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null/y

/**
 * The first key a flat JSON object repeats. JSON.parse silently keeps the last of repeated keys, so a
 * repeated parameter in JSON would slip past the check form bodies get. Called only on a body that
 * already parsed as a flat object of scalars.
 */
function repeatedJsonKey(raw: string): string | undefined {
  const seen = new Set<string>()
  let at = raw.indexOf('{') + 1
  const token = (pattern: RegExp): string => {
    while (/\s/.test(raw[at] ?? '')) at += 1
    pattern.lastIndex = at
    const match = pattern.exec(raw)
    if (!match) return ''
    at = pattern.lastIndex
    return match[0]
  }
  for (;;) {
    const key = token(JSON_STRING)
    if (key === '') return undefined
    const name = JSON.parse(key) as string
    if (seen.has(name)) return name
    seen.add(name)
    token(/:/y)
    if (token(JSON_STRING) === '') token(JSON_SCALAR)
    if (token(/,/y) === '') return undefined
  }
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

/**
 * Parses a JSON object body of any shape (arrays and objects inside, as RFC 8936 poll requests have)
 * into `ctx.state.json`; the route checks its members. No body, another content type, a malformed
 * body or one that is not an object are refused like `parseParams` refuses them.
 */
export function parseJsonObject(): Middleware {
  return async function parseJsonObjectMiddleware(ctx: Context, next: Next) {
    if (bodyless(ctx)) throw new InvalidRequest(`the request body is required: send a JSON object`)
    if (!ctx.request.is(JSON_TYPE)) throw new UnsupportedMediaType(`the body must be ${JSON_TYPE}`)
    await readBody(ctx)
    const body: unknown = ctx.request.body
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new InvalidRequest('the body must be a JSON object')
    ctx.state.json = body
    await next()
  }
}
