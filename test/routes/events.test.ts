import { decodeProtectedHeader } from 'jose'
import t from 'tap'
import { appendSecurityEvent } from '../../src/db/security-events.js'
import { startTestApp } from '../helpers/app.js'
import { testDialect } from '../helpers/database.js'
import { oauthError } from '../helpers/assert.js'
import { cli } from '../helpers/cli.js'
import { basic, bearer, DEV_SERVICE, poll, pollVerified, sidOf, subOf, verifySet } from '../helpers/lifecycle.js'

const ORDERS = basic('orders', 'orders-secret-0123456789')
const SERVICES = { MINIGATE_SERVICES: 'dev-service:dev-service-secret,orders:orders-secret-0123456789' }
const RISC = 'https://schemas.openid.net/secevent/risc/event-type/'
const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/'

t.test('polling: at-least-once delivery, per service, acknowledged, kept across a restart', async (t) => {
  const app = await startTestApp(t, SERVICES)
  const login = await app.login({ openid: 'oEvents' })
  const sub = subOf(login.access_token)
  t.equal((await bearer(app, '/logout', login.access_token, { method: 'POST' })).status, 204)
  t.equal((await cli(app, 'users', 'disable', sub)).code, 0)
  t.equal((await cli(app, 'users', 'enable', sub)).code, 0)

  const first = await pollVerified(app, { maxEvents: 2 })
  t.same(first.events.map((event) => event.type), ['session-revoked', 'account-disabled'], 'in the order they happened')
  t.equal(first.moreAvailable, true)
  const [revoked, disabled] = first.events
  t.match(revoked?.payload, {
    iss: app.url,
    aud: 'dev-service',
    jti: revoked?.jti,
    sub_id: { format: 'complex', user: { format: 'iss_sub', iss: app.url, sub }, session: { format: 'opaque', id: sidOf(login.access_token) } },
    events: { [`${CAEP}session-revoked`]: { initiating_entity: 'user', reason_admin: { en: 'logout' } } },
  })
  t.equal(revoked?.payload.exp, undefined, 'a SET has no exp')
  t.match(disabled?.payload, { sub_id: { format: 'iss_sub', iss: app.url, sub }, events: { [`${RISC}account-disabled`]: { subject: { sub } } } })

  const second = await pollVerified(app, { ack: [revoked?.jti] })
  t.same(second.events.map((event) => event.type), ['account-enabled'], 'the rest; delivered ones wait for their acknowledgement')
  t.equal(second.moreAvailable, false)

  // Another service has its own state: it gets everything.
  const orders = await pollVerified(app, {}, ORDERS, 'orders')
  t.same(orders.events.map((event) => event.type), ['session-revoked', 'account-disabled', 'account-enabled'])
  const other = await poll(app, { ack: orders.events.map((event) => event.jti) }, ORDERS)
  t.same(other.body, { sets: {}, moreAvailable: false }, "the orders service's acknowledgements")

  await app.restart()
  app.clock.advance(app.config.eventRedeliverySeconds)
  const redelivered = await pollVerified(app)
  t.same(redelivered.events.map((event) => event.type), ['account-disabled', 'account-enabled'], 'after a restart and the redelivery time, the unacknowledged events come again')
  t.same(redelivered.events.map((event) => event.jti), [disabled?.jti, second.events[0]?.jti], 'as the same SETs (jti)')
  const attempts = await app.deps.db.selectFrom('event_deliveries').select(['attempts']).where('service_id', '=', 'dev-service').where('acked_at', 'is', null).execute()
  t.same(attempts.map((row) => row.attempts), [2, 2])
  // setErrs acknowledges too (RFC 8936 §2.4), keeping the error.
  const done = await poll(app, { ack: [disabled?.jti], setErrs: { [second.events[0]?.jti as string]: { err: 'invalid_key', description: 'not ours' } }, maxEvents: 0 })
  t.same(done.body, { sets: {}, moreAvailable: false })
  app.clock.advance(3600)
  t.same((await poll(app)).body, { sets: {}, moreAvailable: false }, 'nothing is delivered again once acknowledged')
  const errored = await app.deps.db.selectFrom('event_deliveries').select('error').where('error', 'is not', null).executeTakeFirstOrThrow()
  t.same(JSON.parse(errored.error as string), { err: 'invalid_key', description: 'not ours' })
  t.ok(app.logs.some((line) => line.includes('"event":"sets_polled"')))
})

t.test('a SET verifies against the JWKS and nothing else', async (t) => {
  const app = await startTestApp(t)
  const login = await app.login({ openid: 'oSet' })
  await bearer(app, '/logout', login.access_token, { method: 'POST' })
  const { body } = await poll(app)
  const [set] = Object.values(body.sets) as string[]
  const header = decodeProtectedHeader(set as string)
  t.match(header, { alg: 'RS256', typ: 'secevent+jwt' })
  t.ok(app.deps.keys.jwks().keys.some((key) => key.kid === header.kid), 'signed by a published key')
  t.ok(await verifySet(app, set as string))
  await t.rejects(verifySet(app, set as string, 'orders'), /aud/, 'for dev-service only')
  const [h, p, s] = (set as string).split('.')
  const tampered = `${h}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p as string, 'base64url').toString()), sub_id: { format: 'iss_sub', iss: app.url, sub: 'someone-else' } })).toString('base64url')}.${s}`
  await t.rejects(verifySet(app, tampered), /signature/)
})

t.test('the poll endpoint refuses bad callers and bad bodies', async (t) => {
  const app = await startTestApp(t)
  await oauthError(t, await app.postJson('/events', {}), 401, 'invalid_client')
  await oauthError(t, await app.postJson('/events', {}, { authorization: basic('dev-service', 'wrong-secret-000000') }), 401, 'invalid_client')
  const login = await app.login({ openid: 'oNoBearer' })
  await oauthError(t, await app.postJson('/events', {}, { authorization: `Bearer ${login.access_token}` }), 401, 'invalid_client')
  for (const [label, body] of [
    ['ack not an array', { ack: 'x' }],
    ['ack of numbers', { ack: [1] }],
    ['ack of strange jtis', { ack: ['../x'] }],
    ['setErrs an array', { setErrs: [] }],
    ['setErrs without err', { setErrs: { abc: { description: 'x' } } }],
    ['negative maxEvents', { maxEvents: -1 }],
    ['fractional maxEvents', { maxEvents: 1.5 }],
    ['returnImmediately a string', { returnImmediately: 'yes' }],
  ] as const) {
    await oauthError(t, await app.postJson('/events', body, { authorization: DEV_SERVICE }), 400, 'invalid_request').then(() => t.pass(label))
  }
  await oauthError(t, await app.postJson('/events', [1], { authorization: DEV_SERVICE }), 400)
  await oauthError(t, await app.postForm('/events', { ack: 'x' }, { authorization: DEV_SERVICE }), 415)
  await oauthError(t, await fetch(`${app.url}/events`, { method: 'POST', headers: { authorization: DEV_SERVICE } }), 400)
  await oauthError(t, await fetch(`${app.url}/events`, { method: 'POST', headers: { authorization: DEV_SERVICE, 'content-type': 'application/json' }, body: '{"ack":' }), 400)
  t.equal((await fetch(`${app.url}/events`, { headers: { authorization: DEV_SERVICE } })).status, 405)
  t.same((await poll(app, { ack: ['unknown-jti'], maxEvents: 1000 })).body, { sets: {}, moreAvailable: false }, 'unknown jtis are ignored; maxEvents is capped')
})

t.test('retention: audit rows and events age out; the operator and the purge see it', async (t) => {
  const app = await startTestApp(t, { MINIGATE_AUDIT_RETENTION_DAYS: '10', MINIGATE_EVENT_RETENTION_DAYS: '2' })
  const { purgeExpired } = await import('../../src/maintenance.js')
  const login = await app.login({ openid: 'oRetention' })
  await bearer(app, '/logout', login.access_token, { method: 'POST' })
  await poll(app)
  app.clock.advance(2 * 86400 + 1)
  t.match(await purgeExpired(app.deps), { events: 1, audit: 0 }, 'events after MINIGATE_EVENT_RETENTION_DAYS, with their delivery state')
  t.equal((await app.deps.db.selectFrom('event_deliveries').selectAll().execute()).length, 0)
  app.clock.advance(8 * 86400)
  t.match(await purgeExpired(app.deps), { events: 0, audit: 2 }, 'audit rows after MINIGATE_AUDIT_RETENTION_DAYS')
})

t.test('retention and redelivery settings: defaults and bounds', async (t) => {
  const { loadConfig, ConfigError } = await import('../../src/config.js')
  t.match(loadConfig({}), { auditRetentionDays: 180, eventRetentionDays: 30, eventRedeliverySeconds: 60 })
  t.match(loadConfig({ MINIGATE_AUDIT_RETENTION_DAYS: '365', MINIGATE_EVENT_RETENTION_DAYS: '7', MINIGATE_EVENT_REDELIVERY_SECONDS: '300' }), { auditRetentionDays: 365, eventRetentionDays: 7, eventRedeliverySeconds: 300 })
  for (const [name, value] of [['MINIGATE_AUDIT_RETENTION_DAYS', '0'], ['MINIGATE_EVENT_RETENTION_DAYS', 'a week'], ['MINIGATE_EVENT_REDELIVERY_SECONDS', '1']] as const) {
    t.throws(() => loadConfig({ [name]: value }), ConfigError, `${name}=${value}`)
    t.throws(() => loadConfig({ [name]: value }), { message: new RegExp(name) })
  }
})

t.test('an event that commits after a later one was delivered and acknowledged is still delivered', { skip: testDialect === 'sqlite' ? 'SQLite runs one writer at a time: events commit in id order' : false }, async (t) => {
  const app = await startTestApp(t)
  let release = () => {}
  const held = new Promise<void>((resolve) => (release = resolve))
  let inserted = () => {}
  const insertedYet = new Promise<void>((resolve) => (inserted = resolve))
  const now = Math.floor(app.clock.now() / 1000)
  // A transaction that took its event id first and commits last.
  const slow = app.deps.transaction(async (trx) => {
    await appendSecurityEvent(trx, { at: now, type: 'account-disabled', sub: 'slow-sub' })
    inserted()
    await held
  })
  await insertedYet
  await app.deps.transaction((trx) => appendSecurityEvent(trx, { at: now, type: 'account-enabled', sub: 'fast-sub' }))
  for (let round = 0; round < 3; round += 1) {
    const { events } = await pollVerified(app)
    await poll(app, { ack: events.map((event) => event.jti), maxEvents: 0 })
    t.same(events.map((event) => event.sub), round === 0 ? ['fast-sub'] : [], `poll ${round}: only what has committed`)
  }
  release()
  await slow
  const { events } = await pollVerified(app)
  t.same(events.map((event) => event.sub), ['slow-sub'], 'the late event comes, though a later id was acknowledged before')
  await poll(app, { ack: events.map((event) => event.jti), maxEvents: 0 })
  const last = await app.deps.db.selectFrom('security_events').select((eb) => eb.fn.max('id').as('max')).executeTakeFirstOrThrow()
  const floor = async () => (await app.deps.db.selectFrom('event_cursors').select('floor').where('service_id', '=', 'dev-service').executeTakeFirstOrThrow()).floor
  // Settling waits for every transaction that was running on the server when the candidate was read,
  // other test files' included (they share the PostgreSQL server): poll until it has.
  for (let attempt = 0; attempt < 500 && (await floor()) !== Number(last.max); attempt += 1) {
    await poll(app, { maxEvents: 0 })
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  t.equal(await floor(), Number(last.max), 'once everything is acknowledged and settled, polls scan nothing below')
})
