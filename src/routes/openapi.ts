import type Router from '@koa/router'
import type { AppDeps } from '../deps.js'
import { openApiDocument } from '../openapi.js'

/** `GET /openapi.json`: the OpenAPI 3.1 description of the HTTP API (src/openapi.ts), its server the issuer. */
export function mountOpenApi(router: Router, deps: AppDeps): void {
  const document = JSON.stringify(openApiDocument(deps.config.issuer))
  router.get('/openapi.json', function openApi(ctx) {
    ctx.set('Cache-Control', `public, max-age=${deps.config.jwksMaxAge}`)
    ctx.type = 'application/json'
    ctx.body = document
  })
}
