import t from 'tap'
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
})

t.test('an issuer with a path or trailing slash is kept exactly', async (t) => {
  const app = await startTestApp(t, { MINIGATE_ISSUER: 'https://id.example.com/tenant/' })
  const metadata = (await (await fetch(`${app.url}/.well-known/openid-configuration`)).json()) as Record<string, unknown>
  t.equal(metadata.issuer, 'https://id.example.com/tenant/')
  t.equal(metadata.token_endpoint, 'https://id.example.com/tenant/token')
})
