import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose'
import type { TestApp } from './app.js'

/** HTTP Basic credentials as RFC 6749 §2.3.1 sends them. */
export function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`
}

/** The service that exists in development mode. */
export const DEV_SERVICE = basic('dev-service', 'dev-service-secret')

export const subOf = (token: string) => decodeJwt(token).sub as string
export const sidOf = (token: string) => decodeJwt(token).sid as string

/** A Bearer request to minigate. */
export function bearer(app: TestApp, path: string, token: string, init: { method?: string; json?: unknown } = {}): Promise<Response> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` }
  if (init.json !== undefined) headers['content-type'] = 'application/json'
  return fetch(`${app.url}${path}`, { method: init.method ?? 'GET', headers, ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : {}) })
}

/** One RFC 8936 poll as a service. */
export async function poll(app: TestApp, body: Record<string, unknown> = {}, authorization = DEV_SERVICE): Promise<{ status: number; body: { sets: Record<string, string>; moreAvailable: boolean } & Record<string, any> }> {
  const response = await app.postJson('/events', { returnImmediately: true, ...body }, { authorization })
  return { status: response.status, body: (await response.json()) as any }
}

/** Verifies a SET the way a service does: against minigate's JWKS, `typ`, `iss`, `aud`. */
export async function verifySet(app: TestApp, set: string, audience = 'dev-service'): Promise<JWTPayload> {
  const jwks = createLocalJWKSet((await (await fetch(`${app.url}/.well-known/jwks.json`)).json()) as JSONWebKeySet)
  const { payload } = await jwtVerify(set, jwks, { algorithms: ['RS256'], typ: 'secevent+jwt', issuer: app.url, audience })
  return payload
}

/** Polls (acknowledging nothing) and verifies every SET: `{type short name, sub, payload}` each. */
export async function pollVerified(app: TestApp, body: Record<string, unknown> = {}, authorization = DEV_SERVICE, audience = 'dev-service') {
  const { status, body: answer } = await poll(app, { maxEvents: 100, ...body }, authorization)
  if (status !== 200) throw new Error(`poll failed: ${status} ${JSON.stringify(answer)}`)
  const events = []
  for (const [jti, set] of Object.entries(answer.sets)) {
    const payload = await verifySet(app, set, audience)
    const uri = Object.keys(payload.events as object)[0] as string
    const subject = payload.sub_id as { format: string; sub?: string; user?: { sub: string } }
    events.push({ jti, type: uri.split('/').pop() as string, sub: subject.sub ?? subject.user?.sub, payload })
  }
  return { events, moreAvailable: answer.moreAvailable }
}
