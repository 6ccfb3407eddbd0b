import { timingSafeEqual } from 'node:crypto'
import type { Context, Next } from 'koa'
import { hashServiceSecret, type Service } from '../config.js'
import { InvalidClient } from '../errors.js'

const BASIC = /^Basic +([A-Za-z0-9+/]+=*) *$/i

function formDecode(value: string): string | undefined {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '))
  } catch {
    return undefined
  }
}

/** RFC 6749 §2.3.1: `client_secret_basic`, id and secret form-encoded before base64. */
function basicCredentials(header: string): { id: string; secret: string } | undefined {
  const match = BASIC.exec(header)
  if (!match) return undefined
  const decoded = Buffer.from(match[1] as string, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon === -1) return undefined
  const id = formDecode(decoded.slice(0, colon))
  const secret = formDecode(decoded.slice(colon + 1))
  return id === undefined || secret === undefined ? undefined : { id, secret }
}

/**
 * Authenticates a business service with HTTP Basic against the configured services (secrets compared
 * as hashes, in constant time). Anything else is 401 `invalid_client` with a `WWW-Authenticate` challenge.
 */
export function requireService(services: Service[]) {
  return async function authenticateService(ctx: Context, next: Next) {
    const credentials = basicCredentials(ctx.get('Authorization'))
    if (!credentials) throw new InvalidClient('service authentication is required (HTTP Basic)')
    const presented = Buffer.from(hashServiceSecret(credentials.secret))
    const service = services.find((candidate) => candidate.id === credentials.id)
    const expected = Buffer.from(service?.secretHash ?? hashServiceSecret(`unknown:${credentials.secret}`))
    if (!service || !timingSafeEqual(presented, expected)) throw new InvalidClient('service authentication failed')
    ctx.state.service = service
    await next()
  }
}
