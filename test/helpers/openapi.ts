import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js'
import { openApiDocument } from '../../src/openapi.js'

/**
 * Holds every response the test suite receives from a test app to the OpenAPI document
 * (src/openapi.ts), so the document cannot drift from the server:
 * - a path the document does not list must answer 404 (no such endpoint), a method it does not list
 *   for a path 405: anything else is an undocumented endpoint;
 * - the status must be one the operation lists, the content type one that status lists (or no body
 *   when it lists none), and a JSON body must match its schema.
 * The WeChat simulator (`/_dev/wechat/*`, development only) is not part of the API and is not checked;
 * neither are the bare 400/414/431 answers Node's HTTP parser gives before minigate sees a request
 * (they carry no X-Request-Id).
 */

type Json = Record<string, any>

export interface ObservedResponse {
  method: string
  /** The path, without the query string. */
  path: string
  status: number
  headers: Headers
  body: Buffer
}

/** The part of the API no check applies to: the development-only WeChat simulator. */
const UNCHECKED = /^\/_dev\/wechat(\/|$)/
/** Statuses Node's HTTP parser answers by itself, before the app (and its X-Request-Id) is reached. */
const PARSER_STATUSES = new Set([400, 413, 414, 431])
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']

const pointerPart = (part: string) => part.replace(/~/g, '~0').replace(/\//g, '~1')

/** A `{param}` template as the router matches paths: case-insensitive, an optional trailing slash. */
function templatePattern(template: string): RegExp {
  const source = template
    .split(/(\{[^}]+\})/)
    .map((part) => (/^\{[^}]+\}$/.test(part) ? '[^/]+' : part.replace(/[.*+?^$()|[\]\\]/g, '\\$&')))
    .join('')
  return new RegExp(`^${source}/?$`, 'i')
}

export interface ResponseChecker {
  /** The problems of one response (none: it matches the document). */
  check(response: ObservedResponse): string[]
  /** The path template of the document a concrete path falls under, if any. */
  templateOf(path: string): string | undefined
  /** Compiles the schema of every JSON response (a dangling `$ref` throws); returns how many. */
  compileAll(): number
}

/**
 * A checker for `document` (an OpenAPI 3.1 object): response bodies are validated with Ajv's JSON Schema
 * 2020-12 validator, the dialect of OpenAPI 3.1.
 *
 * @example createResponseChecker(openApiDocument('http://localhost')).check({ method: 'GET', path: '/healthz', ... })
 */
export function createResponseChecker(document: Json): ResponseChecker {
  // strict: false so that OpenAPI's own keywords around the schemas (paths, responses...) are ignored.
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false })
  ajv.addSchema(document, 'openapi')
  const validators = new Map<string, ValidateFunction>()
  const templates = Object.keys(document.paths as Json).map((template) => ({ template, pattern: templatePattern(template) }))

  const validatorAt = (pointer: string): ValidateFunction => {
    let validate = validators.get(pointer)
    if (!validate) {
      validate = ajv.getSchema(`openapi#${pointer}`)
      if (!validate) throw new Error(`the OpenAPI document has no schema at ${pointer}`)
      validators.set(pointer, validate)
    }
    return validate
  }

  /** Follows a `$ref` to components; returns the object and its JSON pointer. */
  const resolve = (value: Json, pointer: string): { value: Json; pointer: string } => {
    if (typeof value.$ref !== 'string') return { value, pointer }
    const target = value.$ref.replace(/^#/, '')
    const found = target
      .split('/')
      .slice(1)
      .reduce((node: any, part: string) => node?.[part.replace(/~1/g, '/').replace(/~0/g, '~')], document)
    if (!found) throw new Error(`unresolved $ref ${value.$ref}`)
    return resolve(found as Json, target)
  }

  const templateOf = (path: string) => templates.find(({ pattern }) => pattern.test(path))?.template

  function matchesError(body: Buffer): string[] {
    let parsed: unknown
    try {
      parsed = JSON.parse(body.toString('utf8'))
    } catch {
      return ['the body is not JSON']
    }
    const validate = validatorAt('/components/schemas/OAuthError')
    return validate(parsed) ? [] : [`the body is not an OAuth error: ${ajv.errorsText(validate.errors)}`]
  }

  function check(response: ObservedResponse): string[] {
    const { path, status } = response
    const method = response.method.toLowerCase()
    const where = `${response.method} ${path} → ${status}`
    if (UNCHECKED.test(path)) return []
    if (!response.headers.has('x-request-id') && PARSER_STATUSES.has(status)) return []
    const template = templateOf(path)
    if (template === undefined) {
      if (status === 404) return matchesError(response.body).map((problem) => `${where}: ${problem}`)
      return [`${where}: undocumented path (add it to src/openapi.ts)`]
    }
    const item = (document.paths as Json)[template] as Json
    const operationMethod = method === 'head' && !item.head && item.get ? 'get' : method
    const operation = METHODS.includes(operationMethod) ? (item[operationMethod] as Json | undefined) : undefined
    if (!operation) {
      if (status === 405) return method === 'head' ? [] : matchesError(response.body).map((problem) => `${where}: ${problem}`)
      return [`${where}: undocumented method ${response.method} for ${template} (add it to src/openapi.ts)`]
    }
    const responses = operation.responses as Json
    const key = [String(status), `${String(status)[0]}XX`, 'default'].find((candidate) => responses[candidate] !== undefined)
    if (key === undefined) return [`${where}: status ${status} is not documented for ${operationMethod.toUpperCase()} ${template}`]
    const { value: documented, pointer } = resolve(responses[key] as Json, `/paths/${pointerPart(template)}/${operationMethod}/responses/${key}`)
    const content = documented.content as Json | undefined
    if (!content) return response.body.length === 0 ? [] : [`${where}: the document gives this response no body, but it has ${response.body.length} bytes`]
    if (method === 'head') return []
    const mediaType = (response.headers.get('content-type') ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
    if (!Object.hasOwn(content, mediaType)) return [`${where}: content type "${mediaType}" is not documented (${Object.keys(content).join(', ')})`]
    if (!(mediaType === 'application/json' || mediaType.endsWith('+json'))) return []
    let parsed: unknown
    try {
      parsed = JSON.parse(response.body.toString('utf8'))
    } catch {
      return [`${where}: the body is not JSON`]
    }
    const validate = validatorAt(`${pointer}/content/${pointerPart(mediaType)}/schema`)
    return validate(parsed) ? [] : [`${where}: the body does not match the document: ${ajv.errorsText(validate.errors)}`]
  }

  function compileAll(): number {
    let count = 0
    for (const [template, item] of Object.entries(document.paths as Json)) {
      for (const method of METHODS.filter((name) => (item as Json)[name])) {
        for (const [status, documented] of Object.entries((item as Json)[method].responses as Json)) {
          const { value, pointer } = resolve(documented as Json, `/paths/${pointerPart(template)}/${method}/responses/${status}`)
          for (const mediaType of Object.keys((value.content as Json | undefined) ?? {})) {
            if (!(mediaType === 'application/json' || mediaType.endsWith('+json'))) continue
            validatorAt(`${pointer}/content/${pointerPart(mediaType)}/schema`)
            count += 1
          }
        }
      }
    }
    return count
  }

  return { check, templateOf, compileAll }
}

let checker: ResponseChecker | undefined
const bases = new Set<string>()
/** Every problem found in this process, reported again at exit in case a test swallowed the error. */
const violations: string[] = []

/** Takes the violations recorded so far (a test that provokes one on purpose takes it, so the run still passes). */
export function takeViolations(): string[] {
  return violations.splice(0)
}

/** Thrown by `fetch` when a response of a test app contradicts the OpenAPI document. */
export class OpenApiViolation extends Error {
  override name = 'OpenApiViolation'
}

/**
 * Checks every response `fetch` receives from `base` (a test app's URL) against the OpenAPI document.
 * The first call wraps `globalThis.fetch` for this process: tests that call `fetch(app.url + ...)`
 * directly are checked too. A response that contradicts the document makes that `fetch` reject with an
 * `OpenApiViolation`, and the process exit with an error.
 */
export function checkResponsesOf(base: string): void {
  bases.add(base.replace(/\/+$/, ''))
  if (checker) return
  checker = createResponseChecker(openApiDocument('http://localhost'))
  const active = checker
  const original = globalThis.fetch
  globalThis.fetch = async function fetchCheckedAgainstOpenApi(input: string | URL | Request, init?: RequestInit): Promise<Response> {
    const response = await original(input, init)
    const url = new URL(input instanceof Request ? input.url : String(input))
    if (!bases.has(url.origin) || UNCHECKED.test(url.pathname)) return response
    const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase()
    const body = Buffer.from(await response.clone().arrayBuffer())
    const problems = active.check({ method, path: url.pathname, status: response.status, headers: response.headers, body })
    if (problems.length > 0) {
      violations.push(...problems)
      throw new OpenApiViolation(`the response contradicts src/openapi.ts:\n  ${problems.join('\n  ')}`)
    }
    return response
  }
  process.once('exit', () => {
    if (violations.length === 0) return
    process.stderr.write(`responses that contradict src/openapi.ts:\n  ${violations.join('\n  ')}\n`)
    process.exitCode = 1
  })
}
