import { Validator } from '@seriousme/openapi-schema-validator'
import t from 'tap'
import { createRouter } from '../src/app.js'
import { openApiDocument } from '../src/openapi.js'
import { version } from '../src/version.js'
import { startTestApp } from './helpers/app.js'
import { createResponseChecker, OpenApiViolation, takeViolations } from './helpers/openapi.js'

type Json = Record<string, any>

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']

t.test('the document is valid OpenAPI 3.1 (checked by an OpenAPI schema validator) and every $ref resolves', async (t) => {
  const validator = new Validator()
  const result = await validator.validate(openApiDocument('https://id.example.com'))
  t.equal(validator.version, '3.1', 'OpenAPI 3.1')
  t.same(result.errors ?? [], [], 'no schema errors')
  t.ok(result.valid, 'valid')
  // Every response schema compiles with its $refs resolved (a dangling $ref would throw here).
  const document = openApiDocument('https://id.example.com') as Json
  t.ok(createResponseChecker(document).compileAll() >= 20, 'every JSON response schema compiles')
  const operations = Object.values(document.paths as Json).reduce((sum: number, item: Json) => sum + METHODS.filter((method) => item[method]).length, 0)
  t.ok(operations >= 19, `${operations} operations`)
  const broken = { ...document, paths: { '/x': { get: { responses: { '200': { content: {} } } } } } }
  t.notOk((await new Validator().validate(broken)).valid, 'the validator does refuse a broken document (a response without description)')
  t.equal((document.info as Json).version, version(), 'the version is the package version')
})

t.test('GET /openapi.json serves the document, its server the issuer, and discovery lists it', async (t) => {
  const app = await startTestApp(t, { MINIGATE_ISSUER: 'https://id.example.com/tenant/' })
  const response = await fetch(`${app.url}/openapi.json`)
  t.equal(response.status, 200)
  t.match(response.headers.get('content-type'), /^application\/json/)
  const served = (await response.json()) as Json
  t.same(served, JSON.parse(JSON.stringify(openApiDocument('https://id.example.com/tenant/'))))
  t.same(served.servers, [{ url: 'https://id.example.com/tenant' }])
  const discovery = (await (await fetch(`${app.url}/.well-known/openid-configuration`)).json()) as Json
  t.equal(discovery.openapi_endpoint, 'https://id.example.com/tenant/openapi.json')
})

t.test('the document and the router agree: every mounted path and method is documented, and nothing else', async (t) => {
  const app = await startTestApp(t, { MINIGATE_METRICS_TOKEN: 'metrics-token-0123456789' })
  const document = openApiDocument(app.url) as Json
  const mounted = new Map<string, Set<string>>()
  for (const layer of createRouter(app.deps).stack) {
    const path = String(layer.path)
    // The simulator is development-only and not part of the API.
    if (path.startsWith('/_dev/')) continue
    const template = path.replace(/:(\w+)/g, '{$1}')
    const methods = mounted.get(template) ?? new Set<string>()
    // koa-router answers HEAD wherever it answers GET: HTTP's own rule, not a separate operation.
    for (const method of layer.methods) if (method !== 'HEAD') methods.add(method.toLowerCase())
    mounted.set(template, methods)
  }
  const documented = new Map(Object.entries(document.paths as Json).map(([path, item]) => [path, new Set(METHODS.filter((method) => item[method]))]))
  t.same([...mounted.keys()].sort(), [...documented.keys()].sort(), 'the same paths')
  for (const [path, methods] of mounted) t.same([...methods].sort(), [...(documented.get(path) ?? [])].sort(), `${path}: the same methods`)
})

t.test('the response check refuses what the document does not say', async (t) => {
  const checker = createResponseChecker(openApiDocument('http://localhost') as Json)
  const headers = (contentType: string) => new Headers({ 'content-type': contentType, 'x-request-id': 'r' })
  const json = (value: unknown) => Buffer.from(JSON.stringify(value))
  const check = (method: string, path: string, status: number, body: Buffer, contentType = 'application/json') => checker.check({ method, path, status, headers: headers(contentType), body })

  t.same(check('GET', '/healthz', 200, json({ status: 'ok' })), [], 'a documented answer passes')
  t.same(check('GET', '/avatars/AbCdEfGhIjKlMnOpQrStUv', 200, Buffer.from([0x89, 0x50]), 'image/png'), [], 'a path template matches')
  t.same(check('GET', '/no-such-thing', 404, json({ error: 'not_found', error_description: 'no such endpoint' })), [], 'an unknown path answering 404 agrees with the document')
  t.same(check('DELETE', '/token', 405, json({ error: 'invalid_request', error_description: 'DELETE is not allowed here' })), [], 'an undocumented method answering 405 too')
  t.same(check('HEAD', '/.well-known/jwks.json', 200, Buffer.alloc(0), 'application/jwk-set+json'), [], 'HEAD is checked as GET, without a body')
  t.same(checker.check({ method: 'GET', path: '/healthz', status: 431, headers: new Headers(), body: Buffer.alloc(0) }), [], "Node's parser answers (no X-Request-Id) are not the app's")
  t.same(check('GET', '/_dev/wechat/sns/jscode2session', 200, json({ anything: true })), [], 'the simulator is not checked')

  t.match(check('GET', '/account/frobnicate', 200, json({})), [/undocumented path/], 'an endpoint missing from the document')
  t.match(check('DELETE', '/userinfo', 204, Buffer.alloc(0)), [/undocumented method DELETE/], 'a method missing from the document')
  t.match(check('GET', '/healthz', 418, json({ status: 'ok' })), [/status 418 is not documented/], 'an undocumented status')
  t.match(check('GET', '/healthz', 200, json({ status: 'ok', extra: 1 })), [/does not match the document/], 'a body with a field the schema does not allow')
  t.match(check('POST', '/token', 200, json({ access_token: 'a', token_type: 'bearer', expires_in: 900, refresh_token: 'r', scope: 'profile' })), [/does not match/], 'a wrong value')
  t.match(check('POST', '/token', 400, json({ error_description: 'no code' })), [/does not match/], 'an error without its code')
  t.match(check('GET', '/openapi.json', 200, Buffer.from('<html>'), 'text/html'), [/content type "text\/html" is not documented/], 'an undocumented content type')
  t.match(check('POST', '/logout', 204, Buffer.from('x'), 'text/plain'), [/no body/], 'a body where the document gives none')
  t.match(check('GET', '/no-such-thing', 404, Buffer.from('Not Found'), 'text/plain'), [/not JSON/], 'a 404 that is not an OAuth error')
})

t.test('a test that receives an undocumented answer fails: fetch rejects with OpenApiViolation', async (t) => {
  const app = await startTestApp(t)
  // A route the document does not have, mounted behind the app's back.
  app.server.prependListener('request', (req, res) => {
    if (req.url !== '/undocumented') return
    res.setHeader('x-request-id', 'r')
    res.setHeader('content-type', 'application/json')
    res.end('{}')
  })
  await t.rejects(fetch(`${app.url}/undocumented`), OpenApiViolation)
  t.match(takeViolations(), [/GET \/undocumented → 200: undocumented path/], 'recorded, so a test that swallowed the error still fails the run at exit')
  t.equal((await fetch(`${app.url}/healthz`)).status, 200, 'documented answers pass')
})
