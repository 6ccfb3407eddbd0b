import type Router from '@koa/router'
import type { Context } from 'koa'
import type { AppDeps } from '../deps.js'
import { endpoint } from '../config.js'
import { SCOPES } from '../tokens/claims.js'
import { grants } from './token.js'

/**
 * `GET /.well-known/openid-configuration` (OpenID Connect Discovery) and
 * `GET /.well-known/oauth-authorization-server` (RFC 8414): the same metadata. It lists every endpoint,
 * those without a standard field as `<what>_endpoint`, so a client needs only the issuer URL.
 */
export function mountDiscovery(router: Router, deps: AppDeps): void {
  const { issuer } = deps.config
  const metadata = JSON.stringify({
    issuer,
    jwks_uri: endpoint(issuer, '/.well-known/jwks.json'),
    token_endpoint: endpoint(issuer, '/token'),
    userinfo_endpoint: endpoint(issuer, '/userinfo'),
    revocation_endpoint: endpoint(issuer, '/revoke'),
    introspection_endpoint: endpoint(issuer, '/introspect'),
    // minigate's own endpoints; no standard names them. Avatars are served at the URL a picture claim gives.
    userinfo_profile_endpoint: endpoint(issuer, '/userinfo/profile'),
    userinfo_picture_endpoint: endpoint(issuer, '/userinfo/picture'),
    logout_endpoint: endpoint(issuer, '/logout'),
    wechat_phone_endpoint: endpoint(issuer, '/wechat/phone'),
    wechat_decrypt_endpoint: endpoint(issuer, '/wechat/decrypt'),
    health_endpoint: endpoint(issuer, '/healthz'),
    readiness_endpoint: endpoint(issuer, '/readyz'),
    openapi_endpoint: endpoint(issuer, '/openapi.json'),
    account_export_endpoint: endpoint(issuer, '/account/export'),
    account_delete_endpoint: endpoint(issuer, '/account/delete'),
    // RFC 8936 names no metadata field; the Shared Signals Framework's configuration is a document of its own.
    events_endpoint: endpoint(issuer, '/events'),
    events_endpoint_auth_methods_supported: ['client_secret_basic'],
    // The audience of minigate's own account endpoints, and the RFC 8707 resources a token may be asked for.
    account_audience: deps.config.accountAudience,
    resources_supported: deps.config.resources,
    grant_types_supported: Object.keys(grants),
    // Mini-programs are public clients: they authenticate with nothing but their client_id.
    token_endpoint_auth_methods_supported: ['none'],
    revocation_endpoint_auth_methods_supported: ['none'],
    // Business services authenticate to introspection with their id and secret.
    introspection_endpoint_auth_methods_supported: ['client_secret_basic'],
    // There is no authorization endpoint: every login is the wechat-code grant at the token endpoint.
    response_types_supported: [],
    scopes_supported: [...SCOPES],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['RS256'],
    claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'auth_time', 'sid', 'nickname', 'picture', 'phone_number', 'phone_number_verified', 'updated_at'],
  })
  function discovery(ctx: Context) {
    ctx.set('Cache-Control', `public, max-age=${deps.config.jwksMaxAge}`)
    ctx.type = 'application/json'
    ctx.body = metadata
  }
  router.get('/.well-known/openid-configuration', discovery)
  router.get('/.well-known/oauth-authorization-server', discovery)
}
