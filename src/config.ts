import { createHash } from 'node:crypto'
import { statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'

/**
 * Every setting of minigate, its default, and the parsing of the environment.
 *
 * `defaults` is the one place where a default lives. `loadConfig(process.env)` turns the environment
 * into a typed `Config` or throws a `ConfigError` whose one-line message names the variable.
 */

/** A WeChat mini-program registered with minigate: its appid is the OAuth `client_id`. */
export interface WeChatApp {
  appid: string
  secret: string
}

/** A business service allowed to call introspection. Only a SHA-256 of its secret is kept. */
export interface Service {
  id: string
  secretHash: string
}

/** Per-minute rate limits (see `defaults.rateLimits`). */
export interface RateLimitSettings {
  ip: number
  client: number
  user: number
  wechat: number
}

export interface Config {
  /** True when no WeChat credentials are configured: the simulator stands in for WeChat. */
  development: boolean
  production: boolean
  port: number
  host: string
  issuer: string
  /** `MINIGATE_DB`: a SQLite file path, or a `postgres://` URL. */
  dbFile: string
  keysDir: string
  /** Data keys given in the environment (`MINIGATE_DATA_KEYS`), else read from the keys folder. */
  dataKeys: string[] | undefined
  /** PostgreSQL connections per instance. */
  dbPoolSize: number
  apps: WeChatApp[]
  wechatApiBase: string
  /** Whether the WeChat simulator is mounted at `/_dev/wechat`. */
  simulator: boolean
  wechatTimeoutMs: number
  /** Which WeChat API gives minigate its server-API access_token. */
  wechatTokenApi: 'stable_token' | 'token'
  /** The `aud` of access tokens asked for without a `resource`, beside `accountAudience`. */
  audience: string
  /** The audience of minigate's own account endpoints (profile, phone, export, deletion, logout). */
  accountAudience: string
  /** RFC 8707 resource indicators a client may ask a token for: each token's `aud` is the one resource. */
  resources: string[]
  /** Days audit events are kept. */
  auditRetentionDays: number
  /** Days security events stay in the stream services poll. */
  eventRetentionDays: number
  /** Seconds after which a delivered, unacknowledged security event is delivered again. */
  eventRedeliverySeconds: number
  accessTtl: number
  refreshTtl: number
  idTokenTtl: number
  /** A login (refresh-token family) ends this many seconds after it began, however active. */
  sessionMaxAge: number
  /** Seconds after a rotation during which the spent token may be replayed once more (0 = off). */
  refreshGraceSeconds: number
  /** How many replays the grace window allows per spent token. */
  refreshGraceReuses: number
  services: Service[]
  /** Seconds between purges of expired tokens and ended sessions. */
  purgeInterval: number
  jwksMaxAge: number
  avatarMaxBytes: number
  /** Requests per minute: per IP on /token and /revoke, refreshes per client and per user, and each WeChat data endpoint per user; null when off. */
  rateLimits: RateLimitSettings | null
  /** Proxy hops in front of minigate whose X-Forwarded-For is trusted (0: the socket address is the client). */
  trustProxy: number
  logLevel: string
  /** `json`, `pretty` (coloured lines for a person), or `auto`: pretty when stdout is a terminal. */
  logFormat: 'json' | 'pretty' | 'auto'
  /** Port of the separate listener that serves only /metrics, /healthz and /readyz; null: none. */
  metricsPort: number | null
  /** Interface of that listener. */
  metricsHost: string
  /** SHA-256 of `MINIGATE_METRICS_TOKEN`: with it, /metrics on the main port answers that Bearer token; null: /metrics is not on the main port. */
  metricsTokenHash: string | null
}

/** The development app used when `WECHAT_APPS` is unset: it exists only in the simulator. */
export const DEV_APP: WeChatApp = { appid: 'wx0000000000000dev', secret: 'development-secret-not-for-production' }

export const defaults = {
  /** TCP port of the HTTP server. */
  port: 3000,
  /** Interface to listen on; loopback so a development server is not reachable from the network. */
  host: '127.0.0.1',
  /** SQLite database file. */
  dbFile: 'db/minigate.sqlite',
  /** Folder of the data key (which seals the signing keys and session_keys in the database). */
  keysDir: 'keys',
  /** PostgreSQL connections per instance. */
  dbPoolSize: 10,
  /** WeChat's server API. */
  wechatApiBase: 'https://api.weixin.qq.com',
  /** How long a WeChat API call may take before minigate gives up on it, in milliseconds. */
  wechatTimeoutMs: 5000,
  /** `stable_token`: every instance shares one WeChat access_token; `token` invalidates the previous one on each fetch. */
  wechatTokenApi: 'stable_token',
  /**
   * Rate limits per minute: /token and /revoke requests per IP (generous: mobile carriers share
   * addresses), refreshes per client and per user, and calls of /wechat/decrypt and of /wechat/phone per
   * user (a real user makes a few a session; an attacker probing the decryption needs thousands).
   */
  rateLimits: { ip: 300, client: 6000, user: 30, wechat: 10 },
  /** Largest avatar upload, in bytes. */
  avatarMaxBytes: 2 * 1024 * 1024,
  /** The `aud` of access tokens: the business services that accept them. */
  audience: 'minigate-api',
  /** The audience of minigate's own account endpoints, under the issuer. */
  accountAudiencePath: '/account',
  /** Days audit events are kept before they are purged (about six months). */
  auditRetentionDays: 180,
  /** Days security events stay in the stream services poll; an event no service acknowledged by then is lost. */
  eventRetentionDays: 30,
  /** Seconds a delivered security event waits for its acknowledgement before it is delivered again. */
  eventRedeliverySeconds: 60,
  /** Access token lifetime in seconds (15 minutes): short, since services verify offline. */
  accessTtl: 15 * 60,
  /** Refresh token lifetime in seconds (30 days). */
  refreshTtl: 30 * 24 * 3600,
  /** Absolute maximum age of a login in seconds (90 days): refreshing cannot extend it. */
  sessionMaxAge: 90 * 24 * 3600,
  /** Grace window for replaying a just-rotated refresh token, in seconds; 0 turns it off (strict reuse detection). */
  refreshGraceSeconds: 0,
  /** Replays of one spent refresh token the grace window allows. */
  refreshGraceReuses: 1,
  /** The service allowed to introspect in development mode, when MINIGATE_SERVICES is unset. */
  devService: 'dev-service:dev-service-secret',
  /** Seconds between purges of expired rows. */
  purgeInterval: 10 * 60,
  /** ID token lifetime in seconds (the client reads it right away). */
  idTokenTtl: 15 * 60,
  /** How long verifiers may cache the JWKS, in seconds. */
  jwksMaxAge: 300,
  /** pino log level. */
  logLevel: 'info',
  /** Log lines: pretty when stdout is a terminal (a person reads them), JSON lines otherwise (a collector does). */
  logFormat: 'auto',
  /** No metrics listener: /metrics is served only where an operator turns it on (a port or a token). */
  metricsPort: null,
} as const

/** An endpoint's absolute URL under the issuer (which may end with a slash or carry a path). */
export function endpoint(issuer: string, path: string): string {
  return `${issuer.replace(/\/+$/, '')}${path}`
}

export class ConfigError extends Error {
  override name = 'ConfigError'
}

type Env = Record<string, string | undefined>

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be a whole number between ${min} and ${max}, got "${raw}"`)
  const value = Number(raw.trim())
  if (value < min || value > max) throw new ConfigError(`${name} must be a whole number between ${min} and ${max}, got ${value}`)
  return value
}

function httpUrl(env: Env, name: string, fallback: string): string {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new ConfigError(`${name} must be an absolute http(s) URL, got "${raw}"`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(`${name} must be an http(s) URL, got "${raw}"`)
  if (url.search || url.hash) throw new ConfigError(`${name} must not have a query or fragment, got "${raw}"`)
  return raw
}

function flag(env: Env, name: string): boolean {
  const raw = (env[name] ?? '').trim().toLowerCase()
  if (raw === '' || raw === '0' || raw === 'false' || raw === 'no' || raw === 'off') return false
  if (raw === '1' || raw === 'true' || raw === 'yes' || raw === 'on') return true
  throw new ConfigError(`${name} must be 1 or 0, got "${env[name]}"`)
}

/** `off`, `on` (the defaults), or `ip=300,client=6000,user=30,wechat=10` (per minute; unnamed ones keep their default). */
function rateLimits(env: Env): Config['rateLimits'] {
  const raw = env.MINIGATE_RATE_LIMITS?.trim().toLowerCase() ?? ''
  if (raw === 'off') return null
  const limits: RateLimitSettings = { ...defaults.rateLimits }
  if (raw === '' || raw === 'on') return limits
  for (const item of raw.split(',')) {
    const match = /^(ip|client|user|wechat)=(\d{1,7})$/.exec(item.trim())
    if (!match || Number(match[2]) < 1) throw new ConfigError(`MINIGATE_RATE_LIMITS must be off, on, or like ip=300,client=6000,user=30,wechat=10 (per minute), got "${raw}"`)
    limits[match[1] as keyof RateLimitSettings] = Number(match[2])
  }
  return limits
}

function trustProxy(env: Env): number {
  const raw = env.MINIGATE_TRUST_PROXY?.trim().toLowerCase() ?? ''
  if (raw === '' || raw === '0' || raw === 'false' || raw === 'off') return 0
  if (raw === 'true' || raw === 'on') return 1
  if (/^[1-9]$/.test(raw)) return Number(raw)
  throw new ConfigError(`MINIGATE_TRUST_PROXY must be the number of proxy hops (0 to 9) or true, got "${env.MINIGATE_TRUST_PROXY}"`)
}

/** `MINIGATE_DATA_KEYS`: base64 data keys, comma-separated, the first one seals (checked when loaded). */
function dataKeys(env: Env): string[] | undefined {
  const raw = env.MINIGATE_DATA_KEYS?.trim() ?? ''
  if (raw === '') return undefined
  return raw.split(',').map((key) => key.trim())
}

function tokenApi(env: Env): 'stable_token' | 'token' {
  const raw = env.WECHAT_ACCESS_TOKEN_API?.trim() || defaults.wechatTokenApi
  if (raw !== 'stable_token' && raw !== 'token') throw new ConfigError(`WECHAT_ACCESS_TOKEN_API must be stable_token or token, got "${raw}"`)
  return raw
}

const APPID = /^[A-Za-z0-9_-]{1,64}$/

/**
 * Parses `id:secret,id:secret` (the form of WECHAT_APPS and MINIGATE_SERVICES). An error names the
 * variable and the entry's position, never the secret.
 */
function parseCredentials(raw: string, variable: string, idName: string, minSecret: number): Array<{ id: string; secret: string }> {
  const entries: Array<{ id: string; secret: string }> = []
  for (const [index, entry] of raw.split(',').entries()) {
    const item = entry.trim()
    const colon = item.indexOf(':')
    if (colon === -1) throw new ConfigError(`${variable} entry ${index + 1} must be ${idName}:secret (no colon found)`)
    const id = item.slice(0, colon)
    const secret = item.slice(colon + 1)
    if (!APPID.test(id)) throw new ConfigError(`${variable} entry ${index + 1} must be ${idName}:secret with a plain ${idName}`)
    if (secret.length < minSecret || /\s/.test(secret)) {
      throw new ConfigError(`${variable} entry ${index + 1} (${id}) needs a secret of at least ${minSecret} characters without spaces`)
    }
    if (entries.some((other) => other.id === id)) throw new ConfigError(`${variable} lists ${id} twice`)
    entries.push({ id, secret })
  }
  return entries
}

/** Parses WECHAT_APPS: `appid:secret,appid:secret`. */
export function parseApps(raw: string): WeChatApp[] {
  return parseCredentials(raw, 'WECHAT_APPS', 'appid', 1).map(({ id, secret }) => ({ appid: id, secret }))
}

export function hashServiceSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('base64url')
}

/** Parses MINIGATE_SERVICES: `id:secret,...`; only the SHA-256 of each secret is kept. */
export function parseServices(raw: string): Service[] {
  return parseCredentials(raw, 'MINIGATE_SERVICES', 'id', 16).map(({ id, secret }) => ({ id, secretHash: hashServiceSecret(secret) }))
}

/** What WeChat issues: an appid is `wx` and 16 hex digits, an AppSecret 32 hex digits. */
const WECHAT_APPID = /^wx[0-9a-f]{16}$/i
const WECHAT_SECRET = /^[0-9a-f]{32}$/i

/** Production refuses WECHAT_APPS entries that cannot be real (a placeholder, a typo); the message never shows a secret. */
function checkProductionApps(apps: WeChatApp[]): void {
  for (const [index, app] of apps.entries()) {
    if (!WECHAT_APPID.test(app.appid)) throw new ConfigError(`WECHAT_APPS entry ${index + 1} must have an appid of wx and 16 hex digits when NODE_ENV=production`)
    if (!WECHAT_SECRET.test(app.secret)) throw new ConfigError(`WECHAT_APPS entry ${index + 1} (${app.appid}) needs an AppSecret of 32 hex digits when NODE_ENV=production`)
  }
}

/**
 * Production never creates the folder of the SQLite file: a missing one is far likelier a mistyped
 * MINIGATE_DB than a first start, and a new empty database would lose every user quietly.
 */
function checkProductionDbFolder(dbFile: string): void {
  if (/^postgres(ql)?:\/\//i.test(dbFile) || dbFile === ':memory:') return
  const folder = dirname(resolve(dbFile))
  let isFolder: boolean
  try {
    isFolder = statSync(folder).isDirectory()
  } catch {
    throw new ConfigError(`MINIGATE_DB: the folder ${folder} does not exist (it is not created when NODE_ENV=production)`)
  }
  if (!isFolder) throw new ConfigError(`MINIGATE_DB: ${folder} is not a folder`)
}

function logFormat(env: Env): Config['logFormat'] {
  const raw = env.MINIGATE_LOG_FORMAT?.trim().toLowerCase() || defaults.logFormat
  if (raw !== 'json' && raw !== 'pretty' && raw !== 'auto') throw new ConfigError(`MINIGATE_LOG_FORMAT must be json, pretty or auto, got "${env.MINIGATE_LOG_FORMAT}"`)
  return raw
}

/** `MINIGATE_METRICS_TOKEN`: a Bearer token of at least 16 characters; only its SHA-256 is kept. */
function metricsTokenHash(env: Env): string | null {
  const raw = env.MINIGATE_METRICS_TOKEN ?? ''
  if (raw === '') return null
  if (raw.length < 16 || !/^[\x21-\x7e]+$/.test(raw)) throw new ConfigError('MINIGATE_METRICS_TOKEN must be at least 16 printable characters without spaces')
  return hashServiceSecret(raw)
}

/**
 * MINIGATE_RESOURCES: RFC 8707 resource indicators, comma-separated absolute http(s) URIs without a
 * fragment (a token asked for one carries it as its only `aud`).
 */
function resources(env: Env): string[] {
  const raw = env.MINIGATE_RESOURCES?.trim() ?? ''
  if (raw === '') return []
  const list: string[] = []
  for (const [index, entry] of raw.split(',').entries()) {
    const item = entry.trim()
    let url: URL
    try {
      url = new URL(item)
    } catch {
      throw new ConfigError(`MINIGATE_RESOURCES entry ${index + 1} must be an absolute http(s) URI, got "${item}"`)
    }
    if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.hash || item.includes('#')) {
      throw new ConfigError(`MINIGATE_RESOURCES entry ${index + 1} must be an http(s) URI without a fragment, got "${item}"`)
    }
    if (list.includes(item)) throw new ConfigError(`MINIGATE_RESOURCES lists ${item} twice`)
    list.push(item)
  }
  return list
}

/** Builds the configuration from environment variables, or throws a `ConfigError`. */
export function loadConfig(env: Env): Config {
  const production = env.NODE_ENV === 'production'
  const port = integer(env, 'PORT', defaults.port, 0, 65535)
  const host = env.HOST?.trim() || defaults.host
  const issuer = httpUrl(env, 'MINIGATE_ISSUER', `http://localhost:${port}`)
  const appsRaw = env.WECHAT_APPS?.trim() ?? ''
  const apps = appsRaw === '' ? [] : parseApps(appsRaw)
  const simulatorAsked = flag(env, 'MINIGATE_WECHAT_SIMULATOR')
  const development = apps.length === 0

  if (production && development) {
    throw new ConfigError('WECHAT_APPS must be set when NODE_ENV=production (the WeChat simulator is for development only)')
  }
  if (production && simulatorAsked) {
    throw new ConfigError('MINIGATE_WECHAT_SIMULATOR cannot be on when NODE_ENV=production')
  }
  // OpenID Connect requires an https issuer; outside production http is fine (tests, localhost).
  if (production && new URL(issuer).protocol !== 'https:') {
    throw new ConfigError(env.MINIGATE_ISSUER ? 'MINIGATE_ISSUER must be https when NODE_ENV=production' : 'MINIGATE_ISSUER must be set to the https URL of minigate when NODE_ENV=production')
  }
  if (production) checkProductionApps(apps)
  const simulator = development || simulatorAsked
  const loopback = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host
  const simulatorBase = `http://${loopback.includes(':') ? `[${loopback}]` : loopback}:${port}/_dev/wechat`
  const apiBaseSet = env.WECHAT_API_BASE !== undefined && env.WECHAT_API_BASE !== ''
  if (production && apiBaseSet && !String(env.WECHAT_API_BASE).startsWith('https://')) {
    throw new ConfigError('WECHAT_API_BASE must be https when NODE_ENV=production (its URLs carry the AppSecret)')
  }

  const accessTtl = integer(env, 'MINIGATE_ACCESS_TTL', defaults.accessTtl, 30, 24 * 3600)
  const refreshTtl = integer(env, 'MINIGATE_REFRESH_TTL', defaults.refreshTtl, 60, 365 * 24 * 3600)
  if (refreshTtl <= accessTtl) throw new ConfigError(`MINIGATE_REFRESH_TTL (${refreshTtl}) must be longer than MINIGATE_ACCESS_TTL (${accessTtl})`)
  const sessionMaxAge = integer(env, 'MINIGATE_SESSION_MAX_AGE', defaults.sessionMaxAge, 3600, 5 * 365 * 24 * 3600)
  if (sessionMaxAge < refreshTtl) throw new ConfigError(`MINIGATE_SESSION_MAX_AGE (${sessionMaxAge}) must not be shorter than MINIGATE_REFRESH_TTL (${refreshTtl})`)
  const servicesRaw = env.MINIGATE_SERVICES?.trim() ?? ''
  const services = servicesRaw !== '' ? parseServices(servicesRaw) : development ? parseServices(defaults.devService) : []
  const audience = env.MINIGATE_AUDIENCE?.trim() || defaults.audience

  // Access, refresh and ID tokens must differ by aud as well as by typ (RFC 8725 §3.11), since
  // many verifiers look at aud only.
  if (audience === issuer) throw new ConfigError('MINIGATE_AUDIENCE must differ from MINIGATE_ISSUER (the audience of refresh tokens)')
  if ((development ? [DEV_APP] : apps).some((app) => app.appid === audience)) throw new ConfigError('MINIGATE_AUDIENCE must differ from every appid (the audience of ID tokens)')
  const accountAudience = env.MINIGATE_ACCOUNT_AUDIENCE?.trim() || endpoint(issuer, defaults.accountAudiencePath)
  const resourceList = resources(env)
  // A token for a service must never open minigate's account endpoints, nor be a refresh or ID token.
  for (const [name, value] of [['MINIGATE_ACCOUNT_AUDIENCE', accountAudience], ...resourceList.map((resource) => ['MINIGATE_RESOURCES', resource])] as Array<[string, string]>) {
    if (value === issuer || value === audience || (development ? [DEV_APP] : apps).some((app) => app.appid === value)) {
      throw new ConfigError(`${name} (${value}) must differ from MINIGATE_ISSUER, MINIGATE_AUDIENCE and every appid`)
    }
  }
  if (resourceList.includes(accountAudience)) throw new ConfigError('MINIGATE_RESOURCES must not list the account audience (MINIGATE_ACCOUNT_AUDIENCE)')

  const dbFile = env.MINIGATE_DB?.trim() || defaults.dbFile
  if (production) checkProductionDbFolder(dbFile)

  const logLevel = env.MINIGATE_LOG_LEVEL?.trim() || defaults.logLevel
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    throw new ConfigError(`MINIGATE_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "${logLevel}"`)
  }

  const metricsPort = env.MINIGATE_METRICS_PORT === undefined || env.MINIGATE_METRICS_PORT.trim() === '' ? defaults.metricsPort : integer(env, 'MINIGATE_METRICS_PORT', 0, 0, 65535)
  if (metricsPort !== null && metricsPort !== 0 && metricsPort === port) throw new ConfigError(`MINIGATE_METRICS_PORT must differ from PORT (${port})`)

  return {
    development,
    production,
    port,
    host,
    issuer,
    dbFile,
    keysDir: env.MINIGATE_KEYS_DIR?.trim() || defaults.keysDir,
    dataKeys: dataKeys(env),
    dbPoolSize: integer(env, 'MINIGATE_DB_POOL_SIZE', defaults.dbPoolSize, 1, 200),
    apps: development ? [DEV_APP] : apps,
    wechatApiBase: apiBaseSet ? httpUrl(env, 'WECHAT_API_BASE', defaults.wechatApiBase) : simulator ? simulatorBase : defaults.wechatApiBase,
    simulator,
    wechatTimeoutMs: integer(env, 'WECHAT_TIMEOUT_MS', defaults.wechatTimeoutMs, 100, 60_000),
    wechatTokenApi: tokenApi(env),
    audience,
    accountAudience,
    resources: resourceList,
    auditRetentionDays: integer(env, 'MINIGATE_AUDIT_RETENTION_DAYS', defaults.auditRetentionDays, 1, 3650),
    eventRetentionDays: integer(env, 'MINIGATE_EVENT_RETENTION_DAYS', defaults.eventRetentionDays, 1, 3650),
    eventRedeliverySeconds: integer(env, 'MINIGATE_EVENT_REDELIVERY_SECONDS', defaults.eventRedeliverySeconds, 5, 86400),
    accessTtl,
    refreshTtl,
    idTokenTtl: defaults.idTokenTtl,
    sessionMaxAge,
    refreshGraceSeconds: integer(env, 'MINIGATE_REFRESH_GRACE_SECONDS', defaults.refreshGraceSeconds, 0, 300),
    refreshGraceReuses: integer(env, 'MINIGATE_REFRESH_GRACE_REUSES', defaults.refreshGraceReuses, 1, 10),
    services,
    purgeInterval: defaults.purgeInterval,
    jwksMaxAge: defaults.jwksMaxAge,
    avatarMaxBytes: defaults.avatarMaxBytes,
    rateLimits: rateLimits(env),
    trustProxy: trustProxy(env),
    logLevel,
    logFormat: logFormat(env),
    metricsPort,
    metricsHost: env.MINIGATE_METRICS_HOST?.trim() || host,
    metricsTokenHash: metricsTokenHash(env),
  }
}
