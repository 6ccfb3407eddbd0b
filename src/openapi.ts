/**
 * The OpenAPI 3.1 description of minigate's HTTP API, served at `/openapi.json`.
 *
 * The test suite holds the server to it: every response a test receives from a test app is checked
 * against this document (path, method, status, content type and body schema), and a path or method the
 * router mounts but the document lacks fails a test. To add an endpoint, add its entry to `paths` below
 * (the helpers `json`, `errors` and `form` keep an entry short). The WeChat simulator (`/_dev/wechat/*`)
 * is development-only and not part of the API: it is left out.
 */

import { version } from './version.js'

type Schema = Record<string, unknown>

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` })

/** A response with a JSON body (or another media type) of `schema`. */
function json(description: string, schema: Schema, mediaType = 'application/json'): Schema {
  return { description, content: { [mediaType]: { schema } } }
}

/** The error responses an operation may give, by status: each an RFC 6749 §5.2 body. */
const ERROR_RESPONSES: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  413: 'PayloadTooLarge',
  415: 'UnsupportedMediaType',
  429: 'TooManyRequests',
  500: 'ServerError',
  502: 'BadGateway',
  503: 'ServiceUnavailable',
}

/** `{ '400': {$ref}, ... }` for the statuses given, plus 500, which any endpoint may answer. */
function errors(...statuses: number[]): Record<string, Schema> {
  const responses: Record<string, Schema> = {}
  for (const status of [...statuses, 500]) responses[String(status)] = { $ref: `#/components/responses/${ERROR_RESPONSES[status]}` }
  return responses
}

/** A request body of `schema`, sent as a form (what `wx.request` sends) or as JSON. */
function form(schema: Schema, required = true): Schema {
  return { required, content: { 'application/x-www-form-urlencoded': { schema }, 'application/json': { schema } } }
}

const bearer = [{ accessToken: [] }]
/** Errors of every endpoint that reads a form or JSON body. */
const BODY_ERRORS = [400, 413, 415]

const oauthError: Schema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: { type: 'string', description: 'RFC 6749 §5.2 / RFC 6750 §3.1 error code, or `too_many_requests`, `not_found`, `decryption_failed`...' },
    error_description: { type: 'string' },
  },
  additionalProperties: false,
}

const errorResponse = (description: string, headers: Record<string, Schema> = {}): Schema => ({
  description,
  ...(Object.keys(headers).length ? { headers } : {}),
  content: { 'application/json': { schema: ref('OAuthError') } },
})

const retryAfter = { 'Retry-After': { description: 'Seconds to wait before trying again', schema: { type: 'string' } } }
const wwwAuthenticate = { 'WWW-Authenticate': { description: 'RFC 6750 challenge (Bearer) or Basic for introspection', schema: { type: 'string' } } }

const tokenResponse: Schema = {
  type: 'object',
  required: ['access_token', 'token_type', 'expires_in', 'refresh_token', 'scope'],
  properties: {
    access_token: { type: 'string', description: 'RS256 JWT, `typ: at+jwt` (RFC 9068)' },
    token_type: { const: 'Bearer' },
    expires_in: { type: 'integer', minimum: 1 },
    refresh_token: { type: 'string', description: 'RS256 JWT, `typ: rt+jwt`; rotated on every use' },
    scope: { type: 'string' },
    id_token: { type: 'string', description: 'With scope `openid`: an ID token for the mini-program (audience: the appid)' },
  },
  additionalProperties: false,
}

const userinfo: Schema = {
  type: 'object',
  required: ['sub', 'updated_at'],
  properties: {
    sub: { type: 'string', description: "minigate's stable user id (never the openid)" },
    nickname: { type: 'string', description: 'scope profile' },
    picture: { type: 'string', description: 'scope profile' },
    phone_number: { type: 'string', description: 'scope phone; E.164' },
    phone_number_verified: { type: 'boolean', description: 'scope phone' },
    updated_at: { type: 'integer' },
  },
  additionalProperties: false,
}

const endpointUrl: Schema = { type: 'string', format: 'uri' }

const discovery: Schema = {
  type: 'object',
  required: ['issuer', 'jwks_uri', 'token_endpoint', 'response_types_supported', 'subject_types_supported', 'id_token_signing_alg_values_supported'],
  properties: {
    issuer: { type: 'string' },
    jwks_uri: endpointUrl,
    grant_types_supported: { type: 'array', items: { type: 'string' } },
    token_endpoint_auth_methods_supported: { type: 'array', items: { type: 'string' } },
    revocation_endpoint_auth_methods_supported: { type: 'array', items: { type: 'string' } },
    introspection_endpoint_auth_methods_supported: { type: 'array', items: { type: 'string' } },
    response_types_supported: { type: 'array', items: { type: 'string' } },
    scopes_supported: { type: 'array', items: { type: 'string' } },
    subject_types_supported: { type: 'array', items: { type: 'string' } },
    id_token_signing_alg_values_supported: { type: 'array', items: { const: 'RS256' } },
    claims_supported: { type: 'array', items: { type: 'string' } },
    events_endpoint_auth_methods_supported: { type: 'array', items: { type: 'string' } },
    account_audience: { type: 'string', description: "The audience of minigate's own account endpoints" },
    resources_supported: { type: 'array', items: { type: 'string' }, description: 'RFC 8707 resources a token may be asked for' },
  },
  // Every endpoint is listed, the standard ones and minigate's own, as `<what>_endpoint`.
  patternProperties: { '_endpoint$': endpointUrl },
  additionalProperties: false,
}

const jwks: Schema = {
  type: 'object',
  required: ['keys'],
  properties: {
    keys: {
      type: 'array',
      items: {
        type: 'object',
        required: ['kty', 'kid', 'use', 'alg', 'n', 'e'],
        properties: {
          kty: { const: 'RSA' },
          kid: { type: 'string', description: 'RFC 7638 thumbprint' },
          use: { const: 'sig' },
          alg: { const: 'RS256' },
          n: { type: 'string' },
          e: { type: 'string' },
        },
        additionalProperties: false,
      },
    },
  },
  additionalProperties: false,
}

const introspection: Schema = {
  oneOf: [
    { type: 'object', required: ['active'], properties: { active: { const: false } }, additionalProperties: false },
    {
      type: 'object',
      required: ['active', 'token_type', 'scope', 'client_id', 'sub', 'iss', 'aud', 'iat', 'exp', 'jti', 'sid'],
      properties: {
        active: { const: true },
        token_type: { const: 'Bearer' },
        scope: { type: 'string' },
        client_id: { type: 'string' },
        sub: { type: 'string' },
        iss: { type: 'string' },
        aud: { oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
        iat: { type: 'integer' },
        exp: { type: 'integer' },
        jti: { type: 'string' },
        sid: { type: 'string' },
        openid: { type: 'string', description: "The user's openid for the token's app" },
        unionid: { type: 'string' },
      },
      additionalProperties: false,
    },
  ],
}

const profileUpdate: Schema = {
  type: 'object',
  properties: {
    nickname: { type: 'string', minLength: 1, description: '1 to 64 characters, nothing invisible' },
    picture: { type: 'string', description: 'an https URL, or an avatar uploaded to this server' },
  },
  additionalProperties: false,
}

const time: Schema = { type: ['string', 'null'], description: 'ISO 8601' }
const nullableString: Schema = { type: ['string', 'null'] }

const accountExport: Schema = {
  type: 'object',
  required: ['exported_at', 'sub', 'created_at', 'updated_at', 'unionid', 'profile', 'phone', 'wechat_identities', 'logins', 'merged_subs', 'audit_events', 'security_events'],
  properties: {
    exported_at: time,
    sub: { type: 'string' },
    created_at: time,
    updated_at: time,
    unionid: nullableString,
    profile: { type: 'object', properties: { nickname: nullableString, picture: nullableString }, additionalProperties: false },
    phone: { oneOf: [{ type: 'null' }, { type: 'object', properties: { phone_number: { type: 'string' }, country_code: nullableString, verified_at: time }, additionalProperties: false }] },
    wechat_identities: { type: 'array', items: { type: 'object', properties: { appid: { type: 'string' }, openid: { type: 'string' }, created_at: time, session_key_updated_at: time }, additionalProperties: false } },
    logins: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          sid: { type: 'string' },
          client_id: { type: 'string' },
          scope: { type: 'string' },
          created_at: time,
          last_used_at: time,
          expires_at: time,
          state: { enum: ['live', 'expired', 'ended'] },
          ended_at: time,
          ended_because: nullableString,
        },
        additionalProperties: false,
      },
    },
    merged_subs: { type: 'array', items: { type: 'object', properties: { sub: { type: 'string' }, merged_at: time }, additionalProperties: false } },
    audit_events: {
      type: 'array',
      items: {
        type: 'object',
        properties: { at: time, event: { type: 'string' }, sub: nullableString, client_id: nullableString, sid: nullableString, actor: nullableString, detail: nullableString, ip_hash: nullableString },
        additionalProperties: false,
      },
    },
    security_events: { type: 'array', items: { type: 'object', properties: { at: time, type: { type: 'string' }, sub: nullableString, sid: nullableString }, additionalProperties: false } },
  },
  additionalProperties: false,
}

/** The document, its server being the issuer. */
export function openApiDocument(issuer: string): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'minigate',
      version: version(),
      summary: 'Identity provider for WeChat mini-programs: wx.login code in, RS256 JWTs out',
      description:
        'Errors are RFC 6749 §5.2 bodies `{"error", "error_description"}`; Bearer endpoints answer RFC 6750 401 + `WWW-Authenticate`. ' +
        'Form and JSON bodies are at most 16 KiB, each parameter once; a method a path does not list is 405 with `Allow`, a path not listed is 404. ' +
        'The WeChat simulator (`/_dev/wechat`, development only) is not described here.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    servers: [{ url: issuer.replace(/\/+$/, '') }],
    tags: [
      { name: 'oauth', description: 'Discovery, keys, tokens' },
      { name: 'user', description: "The signed-in user's own data (Bearer access token)" },
      { name: 'wechat', description: 'WeChat data of the signed-in user' },
      { name: 'operations', description: 'Health, readiness, metrics and this document' },
    ],
    paths: {
      '/.well-known/openid-configuration': {
        get: { tags: ['oauth'], summary: 'OpenID Connect discovery', operationId: 'openidConfiguration', responses: { '200': json('The metadata', ref('Discovery')), ...errors() } },
      },
      '/.well-known/oauth-authorization-server': {
        get: { tags: ['oauth'], summary: 'RFC 8414 metadata (the same document)', operationId: 'authorizationServerMetadata', responses: { '200': json('The metadata', ref('Discovery')), ...errors() } },
      },
      '/.well-known/jwks.json': {
        get: { tags: ['oauth'], summary: 'The public signing keys', operationId: 'jwks', responses: { '200': json('The JWK set', ref('Jwks'), 'application/jwk-set+json'), ...errors() } },
      },
      '/token': {
        post: {
          tags: ['oauth'],
          summary: 'Log in with a wx.login() code, or refresh',
          operationId: 'token',
          requestBody: form({
            oneOf: [
              {
                type: 'object',
                required: ['grant_type', 'code'],
                properties: { grant_type: { const: 'urn:minigate:grant-type:wechat-code' }, code: { type: 'string' }, client_id: { type: 'string' }, scope: { type: 'string' }, resource: { type: 'string', description: 'RFC 8707' } },
              },
              {
                type: 'object',
                required: ['grant_type', 'refresh_token'],
                properties: { grant_type: { const: 'refresh_token' }, refresh_token: { type: 'string' }, client_id: { type: 'string' }, scope: { type: 'string' }, resource: { type: 'string', description: 'RFC 8707' } },
              },
            ],
          }),
          responses: { '200': json('Tokens', ref('TokenResponse')), ...errors(...BODY_ERRORS, 401, 429, 502, 503) },
        },
      },
      '/revoke': {
        post: {
          tags: ['oauth'],
          summary: 'RFC 7009 revocation',
          operationId: 'revoke',
          requestBody: form({ type: 'object', required: ['token'], properties: { token: { type: 'string' }, token_type_hint: { type: 'string' }, client_id: { type: 'string' } } }),
          responses: { '200': { description: 'Revoked, or nothing to revoke (an empty body)' }, ...errors(...BODY_ERRORS, 401, 429) },
        },
      },
      '/introspect': {
        post: {
          tags: ['oauth'],
          summary: 'RFC 7662 introspection, for registered services',
          operationId: 'introspect',
          security: [{ serviceBasic: [] }],
          requestBody: form({ type: 'object', required: ['token'], properties: { token: { type: 'string' }, token_type_hint: { type: 'string' } } }),
          responses: { '200': json('The token, or only `{"active": false}`', ref('Introspection')), ...errors(...BODY_ERRORS, 401) },
        },
      },
      '/userinfo': {
        get: { tags: ['user'], summary: 'OpenID Connect userinfo', operationId: 'userinfo', security: bearer, responses: { '200': json('Claims per scope', ref('Userinfo')), ...errors(400, 401) } },
        post: { tags: ['user'], summary: 'Userinfo by POST (the body is not read)', operationId: 'userinfoPost', security: bearer, responses: { '200': json('Claims per scope', ref('Userinfo')), ...errors(400, 401) } },
        patch: {
          tags: ['user'],
          summary: 'Set nickname and/or picture (scope profile)',
          operationId: 'updateUserinfo',
          security: bearer,
          requestBody: form(profileUpdate),
          responses: { '200': json('The new userinfo', ref('Userinfo')), ...errors(...BODY_ERRORS, 401, 403) },
        },
      },
      '/userinfo/profile': {
        post: {
          tags: ['user'],
          summary: 'The same update as PATCH /userinfo, for wx.request (which cannot PATCH)',
          operationId: 'updateProfile',
          security: bearer,
          requestBody: form(profileUpdate),
          responses: { '200': json('The new userinfo', ref('Userinfo')), ...errors(...BODY_ERRORS, 401, 403) },
        },
      },
      '/userinfo/picture': {
        post: {
          tags: ['user'],
          summary: 'Upload an avatar (what wx.uploadFile sends)',
          operationId: 'uploadPicture',
          security: bearer,
          requestBody: { required: true, content: { 'multipart/form-data': { schema: { type: 'object', properties: { file: { type: 'string', contentMediaType: 'application/octet-stream' } } } } } },
          responses: {
            '201': json('The avatar is the user’s picture', { type: 'object', required: ['picture'], properties: { picture: { type: 'string', format: 'uri' } }, additionalProperties: false }),
            ...errors(...BODY_ERRORS, 401, 403),
          },
        },
      },
      '/avatars/{id}': {
        get: {
          tags: ['user'],
          summary: 'An uploaded avatar, at the URL the picture claim gives',
          operationId: 'avatar',
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
          responses: {
            '200': { description: 'The image', content: { 'image/png': { schema: { type: 'string', contentMediaType: 'image/png' } }, 'image/jpeg': { schema: { type: 'string', contentMediaType: 'image/jpeg' } }, 'image/webp': { schema: { type: 'string', contentMediaType: 'image/webp' } } } },
            ...errors(404),
          },
        },
      },
      '/wechat/phone': {
        post: {
          tags: ['wechat'],
          summary: 'Bind the phone number behind a getPhoneNumber button code',
          operationId: 'bindPhone',
          security: bearer,
          requestBody: form({ type: 'object', required: ['code'], properties: { code: { type: 'string' } } }),
          responses: {
            '200': json('The bound number', {
              type: 'object',
              required: ['phone_number', 'phone_number_verified', 'country_code', 'pure_phone_number'],
              properties: { phone_number: { type: 'string' }, phone_number_verified: { const: true }, country_code: { type: 'string' }, pure_phone_number: { type: 'string' } },
              additionalProperties: false,
            }),
            ...errors(...BODY_ERRORS, 401, 429, 502, 503),
          },
        },
        delete: {
          tags: ['wechat'],
          summary: 'Remove the bound phone number',
          operationId: 'removePhone',
          security: bearer,
          responses: { '204': { description: 'No phone number is bound any more' }, ...errors(400, 401) },
        },
      },
      '/wechat/decrypt': {
        post: {
          tags: ['wechat'],
          summary: "Open WeChat encryptedData with the user's session_key",
          operationId: 'decrypt',
          security: bearer,
          requestBody: form({ type: 'object', required: ['encrypted_data', 'iv'], properties: { encrypted_data: { type: 'string' }, iv: { type: 'string' }, raw_data: { type: 'string' }, signature: { type: 'string' } } }),
          responses: { '200': json('The data', { type: 'object', required: ['data'], properties: { data: { type: 'object' } }, additionalProperties: false }), ...errors(...BODY_ERRORS, 401, 429) },
        },
      },
      '/account/export': {
        get: {
          tags: ['user'],
          summary: 'Everything minigate holds about the caller (PIPL Art. 45), secrets excluded',
          operationId: 'exportAccount',
          security: bearer,
          responses: { '200': json('The account', ref('AccountExport')), ...errors(400, 401) },
        },
      },
      '/account/delete': {
        post: {
          tags: ['user'],
          summary: 'Delete the caller’s account; `code` from a fresh wx.login() proves the person is present',
          operationId: 'deleteAccount',
          security: bearer,
          requestBody: form({ type: 'object', required: ['code'], properties: { code: { type: 'string' } } }),
          responses: { '204': { description: 'The account is deleted; its sub is never reused' }, ...errors(...BODY_ERRORS, 401, 429, 502, 503) },
        },
      },
      '/events': {
        post: {
          tags: ['oauth'],
          summary: 'Security Event Tokens for a registered service, by polling (RFC 8936)',
          operationId: 'pollEvents',
          security: [{ serviceBasic: [] }],
          requestBody: {
            required: true,
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  properties: {
                    ack: { type: 'array', items: { type: 'string' } },
                    setErrs: { type: 'object', additionalProperties: { type: 'object' } },
                    maxEvents: { type: 'integer', minimum: 0 },
                    returnImmediately: { type: 'boolean' },
                  },
                },
              },
            },
          },
          responses: {
            '200': json('Signed SETs by jti (`typ: secevent+jwt`), and whether more are waiting', {
              type: 'object',
              required: ['sets', 'moreAvailable'],
              properties: { sets: { type: 'object', additionalProperties: { type: 'string' } }, moreAvailable: { type: 'boolean' } },
              additionalProperties: false,
            }),
            ...errors(...BODY_ERRORS, 401),
          },
        },
      },
      '/logout': {
        post: { tags: ['user'], summary: 'End this login', operationId: 'logout', security: bearer, responses: { '204': { description: 'The login ended' }, ...errors(400, 401) } },
      },
      '/healthz': {
        get: {
          tags: ['operations'],
          summary: 'Liveness: the database answers and a signing key is loaded',
          operationId: 'healthz',
          responses: {
            '200': json('Alive', { type: 'object', required: ['status'], properties: { status: { const: 'ok' } }, additionalProperties: false }),
            '503': json('Not serving', { type: 'object', required: ['status'], properties: { status: { const: 'unavailable' } }, additionalProperties: false }),
          },
        },
      },
      '/readyz': {
        get: {
          tags: ['operations'],
          summary: 'Readiness: the database answers, a signing key is loaded, and the server is not shutting down',
          operationId: 'readyz',
          responses: {
            '200': json('Ready for traffic', { type: 'object', required: ['status'], properties: { status: { const: 'ready' } }, additionalProperties: false }),
            '503': json('Not ready: the checks that failed', {
              type: 'object',
              required: ['status', 'failed'],
              properties: { status: { const: 'not_ready' }, failed: { type: 'array', minItems: 1, items: { enum: ['database', 'signing_key', 'shutting_down'] } } },
              additionalProperties: false,
            }),
          },
        },
      },
      '/openapi.json': {
        get: { tags: ['operations'], summary: 'This document', operationId: 'openapi', responses: { '200': json('OpenAPI 3.1', { type: 'object', required: ['openapi', 'paths'] }) } },
      },
      '/metrics': {
        get: {
          tags: ['operations'],
          summary: 'Prometheus metrics; on this port only with MINIGATE_METRICS_TOKEN (else 404), always on MINIGATE_METRICS_PORT',
          operationId: 'metrics',
          security: [{ metricsToken: [] }],
          responses: {
            '200': { description: 'Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } },
            ...errors(401, 404),
          },
        },
      },
    },
    components: {
      securitySchemes: {
        accessToken: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'An access token (`typ: at+jwt`)' },
        serviceBasic: { type: 'http', scheme: 'basic', description: 'A service of MINIGATE_SERVICES' },
        metricsToken: { type: 'http', scheme: 'bearer', description: 'MINIGATE_METRICS_TOKEN' },
      },
      schemas: {
        OAuthError: oauthError,
        TokenResponse: tokenResponse,
        Userinfo: userinfo,
        Discovery: discovery,
        Jwks: jwks,
        Introspection: introspection,
        AccountExport: accountExport,
      },
      responses: {
        BadRequest: errorResponse('Bad input: invalid_request, invalid_grant, invalid_scope, invalid_target, unsupported_grant_type, ...'),
        Unauthorized: errorResponse('invalid_client, or a missing or invalid Bearer token', wwwAuthenticate),
        Forbidden: errorResponse('insufficient_scope', wwwAuthenticate),
        NotFound: errorResponse('not_found'),
        PayloadTooLarge: errorResponse('The body is over the size limit'),
        UnsupportedMediaType: errorResponse('The body has a content type this endpoint does not read'),
        TooManyRequests: errorResponse('too_many_requests: over a rate limit', retryAfter),
        ServerError: errorResponse('server_error, never with internals'),
        BadGateway: errorResponse('WeChat answered with something unusable'),
        ServiceUnavailable: errorResponse('temporarily_unavailable: WeChat busy, rate limiting or unreachable', retryAfter),
      },
    },
  }
}
