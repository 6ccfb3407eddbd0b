/**
 * Shared checks of the hostile-input battery and the fuzzers (test/security/*.test.ts). Not a test file.
 *
 * Every hostile case must end in a clear 4xx (never a 5xx) with an RFC 6749 §5.2 JSON body, a Bearer
 * challenge on 401s of Bearer endpoints, no row written, and no secret in a response body or a log line.
 */
import { connect } from 'node:net'
import fc from 'fast-check'
import type { Test } from 'tap'
import { sql } from '../../src/db/kysely.js'
import { testDialect } from '../helpers/database.js'
import { DEV_APP } from '../../src/config.js'
import { sharedKeysDir } from '../helpers/keys.js'
import { rowCounts, startTestApp, type TestApp } from '../helpers/app.js'
import type { TestClock } from '../helpers/clock.js'

export { WECHAT_CODE_GRANT } from '../helpers/app.js'

export const APP_SECRET = DEV_APP.secret
export const SERVICE_BASIC = `Basic ${Buffer.from('dev-service:dev-service-secret').toString('base64')}`
export const TWO_APPS = {
  WECHAT_APPS: 'wxaaaaaaaaaaaaaaaa:secret-aaaaaaaaaaaaaaaa,wxbbbbbbbbbbbbbbbb:secret-bbbbbbbbbbbbbbbb',
  MINIGATE_WECHAT_SIMULATOR: '1',
}
export const APP_A = 'wxaaaaaaaaaaaaaaaa'
export const APP_B = 'wxbbbbbbbbbbbbbbbb'

/** The RFC 6749 §5.2 / RFC 6750 error codes minigate may answer a hostile request with. */
export const ERROR_CODES = [
  'invalid_request',
  'invalid_client',
  'invalid_grant',
  'unauthorized_client',
  'unsupported_grant_type',
  'invalid_scope',
  'invalid_token',
  'insufficient_scope',
  'not_found',
  // /wechat/decrypt's own codes
  'bad_iv',
  'bad_encrypted_data',
  'bad_session_key',
  'decryption_failed',
]

/** Starts an app on the test process's shared signing key (key generation is the slow part). */
export function startApp(t: Test, env: Record<string, string> = {}, clock?: TestClock): Promise<TestApp> {
  return startTestApp(t, { MINIGATE_KEYS_DIR: sharedKeysDir(), MINIGATE_RATE_LIMITS: 'off', ...env }, clock)
}

/** The secrets a test has seen: none may show up in an error body or in a log line. */
export class Secrets {
  private readonly values = new Set<string>([APP_SECRET, 'secret-aaaaaaaaaaaaaaaa', 'secret-bbbbbbbbbbbbbbbb', 'dev-service-secret'])

  constructor(private readonly app: TestApp) {}

  add(...values: Array<string | undefined>): void {
    for (const value of values) if (value !== undefined && value.length >= 8) this.values.add(value)
  }

  /** Every token of a token response. */
  addTokens(tokens: Record<string, unknown>): void {
    for (const name of ['access_token', 'refresh_token', 'id_token']) {
      const value = tokens[name]
      if (typeof value === 'string') this.add(value, value.split('.')[2])
    }
  }

  /** The session_keys the simulator handed out (what WeChat would send minigate). */
  private sessionKeys(): string[] {
    return [...this.app.simulator.users.values()].map((user) => user.sessionKey)
  }

  /** The first secret `text` contains, if any. */
  foundIn(text: string): string | undefined {
    for (const value of [...this.values, ...this.sessionKeys()]) if (text.includes(value)) return value
    return undefined
  }

  checkText(t: Test, text: string, name: string): void {
    const found = this.foundIn(text)
    if (found !== undefined) t.fail(`${name}: a secret leaks into the response: ${found.slice(0, 24)}...`)
  }

  /** No secret in any log line, and no unhandled error logged (in the lines from `from` on). */
  checkLogs(t: Test, from = 0, name = 'logs'): void {
    const lines = this.app.logs.slice(from)
    const leaking = lines.filter((line) => this.foundIn(line) !== undefined).map((line) => line.slice(0, 300))
    t.same(leaking, [], `${name}: no secret in any log line`)
    t.same(unhandled(lines), [], `${name}: no unhandled error logged`)
  }
}

/** Log lines of errors that reached the 500 handler or escaped the pipeline. */
export function unhandled(lines: string[]): string[] {
  return lines.filter((line) => {
    const entry = JSON.parse(line) as { level?: number; msg?: string }
    return (entry.level ?? 0) >= 50 || entry.msg === 'unhandled error' || entry.msg === 'error outside the request pipeline'
  })
}

export interface ErrorExpectation {
  /** Expected status, or statuses allowed; any 4xx when omitted. */
  status?: number | number[]
  /** Expected `error` code, or codes allowed. */
  error?: string | string[]
  /** A Bearer endpoint: a 401 carries `WWW-Authenticate: Bearer`. */
  bearer?: boolean
}

/**
 * Checks an OAuth-style error answer: a 4xx (or the expected status), JSON `{error, error_description}`
 * with string values, the expected error code, `Cache-Control: no-store`, a challenge on 401, and no
 * secret in the body. One assertion per answer, listing every problem found. Returns the body.
 */
export async function expectError(t: Test, response: Response, name: string, expected: ErrorExpectation = {}, secrets?: Secrets): Promise<Record<string, unknown>> {
  const text = await response.text()
  const { status } = response
  const problems: string[] = []
  const allowed = expected.status === undefined ? undefined : ([] as number[]).concat(expected.status)
  if (allowed ? !allowed.includes(status) : status < 400 || status >= 500) problems.push(`status ${status}, expected ${allowed ? allowed.join('/') : 'a 4xx'}`)
  const leak = secrets?.foundIn(text)
  if (leak !== undefined) problems.push(`a secret leaks into the body: ${leak.slice(0, 24)}...`)
  let body: Record<string, unknown> = {}
  const contentType = response.headers.get('content-type')
  if (contentType?.startsWith('application/json')) {
    try {
      body = JSON.parse(text) as Record<string, unknown>
    } catch {
      problems.push('the body is not JSON')
    }
  } else if (status !== 405 || text !== '') {
    problems.push(`the body is ${String(contentType)}, not application/json`)
  }
  if (typeof body.error !== 'string') problems.push('error is not a string')
  if (typeof body.error_description !== 'string') problems.push('error_description is not a string')
  const codes = expected.error === undefined ? ERROR_CODES : ([] as string[]).concat(expected.error)
  if (!codes.includes(body.error as string)) problems.push(`error ${String(body.error)}, expected ${codes.join('/')}`)
  if (status === 401) {
    const challenge = response.headers.get('www-authenticate') ?? ''
    if (!(expected.bearer ? /^Bearer realm="minigate"/ : /^(Basic|Bearer) realm="minigate"/).test(challenge)) problems.push(`401 without the right WWW-Authenticate challenge: ${challenge}`)
  }
  if (response.headers.get('cache-control') !== 'no-store') problems.push(`Cache-Control is ${String(response.headers.get('cache-control'))}, not no-store`)
  t.same(problems, [], `${name}: ${status} ${String(body.error)}`, problems.length > 0 ? { body: text.slice(0, 300) } : {})
  return body
}

/** RFC 6750: 401 `invalid_token` with the Bearer challenge naming it. */
export async function expectInvalidToken(t: Test, response: Response, name: string, secrets?: Secrets): Promise<void> {
  const challenge = response.headers.get('www-authenticate') ?? ''
  await expectError(t, response, name, { status: 401, error: 'invalid_token', bearer: true }, secrets)
  if (!/error="invalid_token"/.test(challenge)) t.fail(`${name}: the challenge does not say invalid_token: ${challenge}`)
}

/** POST with a raw body and content type. */
export function postRaw(app: TestApp, path: string, body: string | Uint8Array, contentType?: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${app.url}${path}`, {
    method: 'POST',
    headers: { ...(contentType === undefined ? {} : { 'content-type': contentType }), ...headers },
    body,
  })
}

export interface RawAnswer {
  /** 0 when the server closed the connection without answering. */
  status: number
  head: string
  body: string
}

/**
 * Sends raw bytes on a fresh TCP connection and reads until the server closes it (or `Connection: close`
 * answers end). For requests fetch refuses to send: bad request lines, NUL/CR/LF in headers, broken chunking.
 */
export function rawRequest(app: TestApp, bytes: string | Buffer, options: { end?: boolean } = {}): Promise<RawAnswer> {
  const { port } = new URL(app.url)
  return new Promise<RawAnswer>((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1')
    const chunks: Buffer[] = []
    let settled = false
    const finish = () => {
      if (settled) return
      settled = true
      socket.destroy()
      const text = Buffer.concat(chunks).toString('latin1')
      const split = text.indexOf('\r\n\r\n')
      const head = split === -1 ? text : text.slice(0, split)
      const length = /\r\ncontent-length: *(\d+)/i.exec(head)
      // Only the first answer's body (Node may append its own 400 after minigate's answer).
      const rest = split === -1 ? '' : text.slice(split + 4)
      const body = length ? rest.slice(0, Number(length[1])) : rest
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0)
      resolve({ status, head, body })
    }
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      // A complete answer with Content-Length: stop reading even if the server keeps the socket open.
      const text = Buffer.concat(chunks).toString('latin1')
      const split = text.indexOf('\r\n\r\n')
      const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, split === -1 ? undefined : split))
      if (split !== -1 && length && Buffer.byteLength(text.slice(split + 4), 'latin1') >= Number(length[1])) finish()
    })
    socket.on('end', finish)
    socket.on('close', finish)
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // A reset after the server answered and hung up is fine; before any answer it is a closed connection.
      if (error.code === 'ECONNRESET' || error.code === 'EPIPE') finish()
      else if (!settled) {
        settled = true
        reject(error)
      }
    })
    socket.write(bytes, () => {
      if (options.end ?? true) socket.end()
    })
  })
}

/** A normal login and /userinfo still work: the server keeps serving after a battery. */
export async function expectStillServing(t: Test, app: TestApp, secrets?: Secrets, input: Parameters<TestApp['login']>[0] = {}): Promise<void> {
  const tokens = await app.login({ openid: `o-still-serving-${Math.random().toString(36).slice(2)}`, ...input })
  secrets?.addTokens(tokens)
  t.type(tokens.access_token, 'string', 'still serving: a normal login works')
  const response = await fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${tokens.access_token}` } })
  t.equal(response.status, 200, 'still serving: /userinfo answers 200')
  const health = await fetch(`${app.url}/healthz`)
  t.equal(health.status, 200, 'still serving: /healthz answers 200')
}

/**
 * The database is whole: SQLite's `PRAGMA integrity_check` says ok; on PostgreSQL (which has no such
 * check) no identity, login or avatar is left without its user.
 */
export async function expectIntegrity(t: Test, app: TestApp): Promise<void> {
  if (testDialect === 'sqlite') {
    const result = await sql<{ integrity_check: string }>`PRAGMA integrity_check`.execute(app.deps.db)
    t.same(result.rows.map((row) => row.integrity_check), ['ok'], 'PRAGMA integrity_check is ok')
    return
  }
  const { rows } = await sql<{ orphans: number }>`
    SELECT (SELECT count(*) FROM wechat_identities WHERE user_id NOT IN (SELECT id FROM users))
         + (SELECT count(*) FROM login_sessions WHERE user_id NOT IN (SELECT id FROM users)) AS orphans`.execute(app.deps.db)
  t.equal(Number(rows[0]?.orphans), 0, 'no row is left without its user')
}

export { rowCounts }

/** The payload of a JWT, unverified. */
export function payloadOf(jwt: string): Record<string, any> {
  return JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString()) as Record<string, any>
}

export function b64url(value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')
}

/** A value fit for an assertion name: quoted, cut to `max`, everything outside printable ASCII escaped (U+2028 breaks TAP). */
export function show(value: unknown, max = 40): string {
  const text = typeof value === 'string' ? value : String(JSON.stringify(value))
  const cut = text.length > max ? `${text.slice(0, max)}...(${text.length})` : text
  return JSON.stringify(cut).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/**
 * Every row count of the token state, how many sessions are revoked, and how many rotations the logins
 * made: a refused request leaves all of it unchanged (rowCounts alone would miss an UPDATE).
 */
export async function tokenState(app: TestApp): Promise<Record<string, number>> {
  const { rows } = await sql<Record<string, number>>`
    SELECT
      (SELECT count(*) FROM users) AS users,
      (SELECT count(*) FROM wechat_identities) AS identities,
      (SELECT count(*) FROM login_sessions) AS sessions,
      (SELECT count(*) FROM login_sessions WHERE revoked_at IS NOT NULL) AS sessions_revoked,
      (SELECT CAST(coalesce(sum(generation), 0) AS bigint) FROM login_sessions) AS rotations,
      (SELECT CAST(coalesce(sum(grace_uses), 0) AS bigint) FROM login_sessions) AS grace_replays,
      (SELECT count(*) FROM revoked_access_tokens) AS access_revoked,
      (SELECT count(*) FROM audit_events) AS audit_events
  `.execute(app.deps.db)
  return { ...(rows[0] as Record<string, number>) }
}

/**
 * Whether a refresh token would still be accepted: of its login's current generation, the login live.
 * Read from the database, since introspection never shows a refresh token as active and a refresh
 * rotates it.
 */
export async function refreshTokenLive(app: TestApp, token: string): Promise<boolean> {
  const { sid, gen } = payloadOf(token) as { sid: string; gen: number }
  const row = await app.deps.db.selectFrom('login_sessions').select(['generation', 'revoked_at']).where('id', '=', sid).executeTakeFirst()
  return row !== undefined && row.generation === gen && row.revoked_at === null
}

/** A POST over a raw socket, for header values fetch refuses to send. */
export function rawPost(app: TestApp, path: string, headers: Record<string, string>, body: string | Uint8Array): Promise<RawAnswer> {
  const bytes = typeof body === 'string' ? Buffer.from(body) : Buffer.from(body)
  const lines = [`POST ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close', `Content-Length: ${bytes.length}`, ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)]
  return rawRequest(app, Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), bytes]))
}

/** fast-check's report of a counterexample, with the error it raised. */
function failure(error: unknown): string {
  const { message, cause } = error as Error & { cause?: unknown }
  const reason = cause instanceof Error ? cause.message : String(cause ?? '')
  return `${message.replace(/\s*Hint: [^\n]*/g, '').slice(0, 1500)} -- ${reason.slice(0, 1500)}`
}

/**
 * Runs a fast-check property as one assertion (a counterexample becomes one failure with fast-check's
 * report), then checks that the token state is unchanged, no secret reached the logs, `after`'s own
 * checks, and that the server still serves.
 */
export async function holds(
  t: Test,
  app: TestApp,
  secrets: Secrets,
  what: string,
  property: fc.IAsyncPropertyWithHooks<any>,
  runs: number,
  /** `unchanged: false` for inputs that may rightly change the state (validly signed tokens). */
  options: { unchanged?: string | false; after?: () => Promise<void> } = {},
): Promise<void> {
  const from = app.logs.length
  const before = await tokenState(app)
  try {
    await fc.assert(property, { numRuns: runs })
    t.pass(`${what}: held for ${runs} runs`)
  } catch (error) {
    t.fail(`${what}: ${failure(error)}`)
  }
  if (options.unchanged !== false) t.same(await tokenState(app), before, `${what}: ${options.unchanged ?? 'nothing was written'}`)
  secrets.checkLogs(t, from, what)
  await options.after?.()
  await expectStillServing(t, app, secrets)
}
