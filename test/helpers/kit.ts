import { createPrivateKey, type KeyObject } from 'node:crypto'
import { SignJWT, decodeProtectedHeader, type JWTPayload } from 'jose'
import type { Test } from 'tap'
import { startTestApp, type TestApp } from './app.js'
import { TestClock } from './clock.js'
import { fixtureKeyPem } from './keys.js'

/**
 * A minigate for the kit's tests (packages/ and examples/): its clock starts at the real time, since
 * the verifier (jose) and the mini-program client judge tokens by the real clock unless told otherwise.
 */
export function startKitApp(t: Test, env: Record<string, string> = {}): Promise<TestApp> {
  return startTestApp(t, env, new TestClock(Date.now()))
}

/** How many requests the app answered on `route` (a route pattern such as `/.well-known/jwks.json`). */
export function requestsTo(app: TestApp, route: string): number {
  return app.logs.filter((line) => {
    const entry = JSON.parse(line) as { msg?: string; route?: string }
    return entry.msg === 'request' && entry.route === route
  }).length
}

/** The private key the test app signs with (fixture key 0), to forge tokens the real key signed. */
export function signingKeyOfTestApps(): KeyObject {
  return createPrivateKey(fixtureKeyPem(0))
}

/** Another RSA key, minigate's in no test app (fixture key 11). */
export function strangerKey(): KeyObject {
  return createPrivateKey(fixtureKeyPem(11))
}

/** Signs `payload` with `key` under `header` (alg defaults to RS256). */
export function sign(payload: JWTPayload, key: KeyObject | Uint8Array, header: Record<string, unknown>): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: 'RS256', ...header } as { alg: string }).sign(key)
}

const base64url = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')

/** An unsigned JWT (`alg: none`), which jose will not make. */
export function unsigned(payload: JWTPayload, header: Record<string, unknown>): string {
  return `${base64url({ alg: 'none', ...header })}.${base64url(payload)}.`
}

/** The claims and header of a real access token, to forge variations of it. */
export function anatomy(token: string): { header: Record<string, unknown>; payload: JWTPayload } {
  const [, payload] = token.split('.')
  return { header: decodeProtectedHeader(token) as Record<string, unknown>, payload: JSON.parse(Buffer.from(payload as string, 'base64url').toString()) as JWTPayload }
}
