import t from 'tap'
import { createRouter } from '../../src/app.js'
import { endpoint } from '../../src/config.js'
import { startTestApp } from '../helpers/app.js'

t.test('discovery metadata names the issuer exactly and every endpoint under it', async (t) => {
  const app = await startTestApp(t)
  const response = await fetch(`${app.url}/.well-known/openid-configuration`)
  t.equal(response.status, 200)
  t.match(response.headers.get('content-type'), /^application\/json/)
  t.match(response.headers.get('cache-control'), /max-age=\d+/)
  const metadata = (await response.json()) as Record<string, unknown>
  t.equal(metadata.issuer, app.url)
  t.equal(metadata.jwks_uri, `${app.url}/.well-known/jwks.json`)
  t.equal(metadata.token_endpoint, `${app.url}/token`)
  t.equal(metadata.userinfo_endpoint, `${app.url}/userinfo`)
  t.equal(metadata.revocation_endpoint, `${app.url}/revoke`)
  t.equal(metadata.introspection_endpoint, `${app.url}/introspect`)
  t.same(metadata.grant_types_supported, ['urn:minigate:grant-type:wechat-code', 'refresh_token'])
  t.same(metadata.token_endpoint_auth_methods_supported, ['none'])
  t.same(metadata.revocation_endpoint_auth_methods_supported, ['none'])
  t.same(metadata.introspection_endpoint_auth_methods_supported, ['client_secret_basic'])
  t.same(metadata.id_token_signing_alg_values_supported, ['RS256'])
  t.same(metadata.subject_types_supported, ['public'])
  t.same(metadata.scopes_supported, ['openid', 'profile', 'phone'])
  t.same(metadata.response_types_supported, [])
  t.ok((metadata.claims_supported as string[]).includes('phone_number'))
  t.equal(metadata.logout_endpoint, `${app.url}/logout`)
  t.equal(metadata.userinfo_profile_endpoint, `${app.url}/userinfo/profile`)
  t.equal(metadata.userinfo_picture_endpoint, `${app.url}/userinfo/picture`)
  t.equal(metadata.wechat_phone_endpoint, `${app.url}/wechat/phone`)
  t.equal(metadata.wechat_decrypt_endpoint, `${app.url}/wechat/decrypt`)
  t.equal(metadata.health_endpoint, `${app.url}/healthz`)
  t.equal(metadata.readiness_endpoint, `${app.url}/readyz`)
  t.equal(metadata.openapi_endpoint, `${app.url}/openapi.json`)
  t.equal(metadata.account_export_endpoint, `${app.url}/account/export`)
  t.equal(metadata.account_delete_endpoint, `${app.url}/account/delete`)
  t.equal(metadata.events_endpoint, `${app.url}/events`)
  t.same(metadata.events_endpoint_auth_methods_supported, ['client_secret_basic'])
  t.equal(metadata.account_audience, `${app.url}/account`)
  t.same(metadata.resources_supported, [])
})

t.test('the RFC 8414 location serves the same metadata', async (t) => {
  const app = await startTestApp(t)
  const oidc = await fetch(`${app.url}/.well-known/openid-configuration`)
  const oauth = await fetch(`${app.url}/.well-known/oauth-authorization-server`)
  t.equal(oauth.status, 200)
  t.match(oauth.headers.get('content-type'), /^application\/json/)
  t.equal(oauth.headers.get('cache-control'), oidc.headers.get('cache-control'))
  t.equal(await oauth.text(), await oidc.text(), 'byte for byte')
})

t.test('every endpoint the router mounts is listed in discovery', async (t) => {
  const app = await startTestApp(t, { MINIGATE_METRICS_TOKEN: 'metrics-token-0123456789' })
  const metadata = (await (await fetch(`${app.url}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>
  const listed = new Set(Object.values(metadata).filter((value): value is string => typeof value === 'string'))
  // Not endpoints a client looks up: the simulator, the discovery documents themselves, avatars, whose
  // URLs come from the picture claim, and the operators' metrics (mounted here only with a token).
  const unlisted = (path: string) =>
    path.startsWith('/_dev/') || path === '/.well-known/openid-configuration' || path === '/.well-known/oauth-authorization-server' || path === '/avatars/:id' || path === '/metrics'
  const paths = [...new Set(createRouter(app.deps).stack.map((layer) => String(layer.path)))].filter((path) => !unlisted(path))
  t.ok(paths.length >= 10, `${paths.length} endpoints checked`)
  for (const path of paths) t.ok(listed.has(endpoint(app.url, path)), `${path} is in discovery`)
})

t.test('an issuer with a path or trailing slash is kept exactly', async (t) => {
  const app = await startTestApp(t, { MINIGATE_ISSUER: 'https://id.example.com/tenant/' })
  const metadata = (await (await fetch(`${app.url}/.well-known/openid-configuration`)).json()) as Record<string, unknown>
  t.equal(metadata.issuer, 'https://id.example.com/tenant/')
  t.equal(metadata.token_endpoint, 'https://id.example.com/tenant/token')
})
