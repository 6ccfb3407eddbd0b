import { ConfigurationError, TemporarilyUnavailable } from './errors.js'

/** The part of the issuer's discovery document the verifier uses. */
export interface IssuerMetadata {
  issuer: string
  jwks_uri: string
  introspection_endpoint?: string
  /** RFC 8936 Security Event Token polling (minigate's `events_endpoint`). */
  events_endpoint?: string
}

/** How long a failed discovery is remembered before the next request tries again, ms. */
const RETRY_AFTER_FAILURE_MS = 5_000

/** OpenID Connect Discovery §4: the issuer without a trailing slash, then the well-known path. */
export function discoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`
}

function isUrl(value: unknown): value is string {
  if (typeof value !== 'string') return false
  try {
    const url = new URL(value)
    return url.protocol === 'https:' || url.protocol === 'http:'
  } catch {
    return false
  }
}

/** Fetches and checks the discovery document: its `issuer` must be exactly ours (OIDC Discovery §4.3). */
async function fetchMetadata(issuer: string, timeoutMs: number): Promise<IssuerMetadata> {
  let response: Response
  try {
    response = await fetch(discoveryUrl(issuer), { headers: { accept: 'application/json' }, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) })
  } catch (cause) {
    throw new TemporarilyUnavailable('the issuer discovery document could not be fetched', { cause })
  }
  if (response.status !== 200) throw new TemporarilyUnavailable(`the issuer discovery document answered ${response.status}`)
  let metadata: Record<string, unknown>
  try {
    metadata = (await response.json()) as Record<string, unknown>
  } catch (cause) {
    throw new TemporarilyUnavailable('the issuer discovery document is not JSON', { cause })
  }
  if (metadata === null || typeof metadata !== 'object') throw new TemporarilyUnavailable('the issuer discovery document is not a JSON object')
  if (metadata.issuer !== issuer) throw new ConfigurationError(`the discovery document names the issuer ${JSON.stringify(metadata.issuer)}, not ${JSON.stringify(issuer)}`)
  if (!isUrl(metadata.jwks_uri)) throw new TemporarilyUnavailable('the issuer discovery document has no jwks_uri')
  return {
    issuer,
    jwks_uri: metadata.jwks_uri,
    ...(isUrl(metadata.introspection_endpoint) ? { introspection_endpoint: metadata.introspection_endpoint } : {}),
    ...(isUrl(metadata.events_endpoint) ? { events_endpoint: metadata.events_endpoint } : {}),
  }
}

/**
 * The issuer's metadata, fetched once on first use and kept; a failure is remembered for a few seconds
 * (so a down issuer is not asked on every request) and then tried again.
 */
export function issuerMetadata(issuer: string, timeoutMs: number, now: () => number): () => Promise<IssuerMetadata> {
  let pending: Promise<IssuerMetadata> | undefined
  let failedAt = 0
  return () => {
    if (pending && failedAt !== 0 && now() - failedAt >= RETRY_AFTER_FAILURE_MS) pending = undefined
    if (!pending) {
      failedAt = 0
      pending = fetchMetadata(issuer, timeoutMs)
      pending.catch(() => (failedAt = now()))
    }
    return pending
  }
}
