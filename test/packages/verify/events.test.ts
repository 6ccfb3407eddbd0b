import { ConfigurationError, createEventPoller, type SecurityEvent } from '@minigate/verify'
import t from 'tap'
import { cli } from '../../helpers/cli.js'
import { startKitApp } from '../../helpers/kit.js'

const DEV_SERVICE = { clientId: 'dev-service', clientSecret: 'dev-service-secret' }

t.test('createEventPoller: polls, verifies against the JWKS, hands events over in order, acknowledges them', async (t) => {
  const app = await startKitApp(t)
  const poller = createEventPoller({ issuer: app.url, ...DEV_SERVICE, now: () => app.clock.now() })
  t.equal(await poller.drain(() => { t.fail('no events yet') }), 0)

  const login = await app.login({ openid: 'oKitEvents' })
  const sub = JSON.parse(Buffer.from((login.access_token as string).split('.')[1] as string, 'base64url').toString()) as { sub: string; sid: string }
  await fetch(`${app.url}/logout`, { method: 'POST', headers: { authorization: `Bearer ${login.access_token}` } })
  t.equal((await cli(app, 'users', 'disable', sub.sub)).code, 0)
  t.equal((await cli(app, 'users', 'delete', sub.sub)).code, 0)

  const seen: SecurityEvent[] = []
  // A handler that fails leaves its event unacknowledged: it comes again.
  let failOnce = true
  await t.rejects(
    poller.drain((event) => {
      if (event.type === 'account-disabled' && failOnce) {
        failOnce = false
        throw new Error('database down')
      }
      seen.push(event)
    }),
    /database down/,
  )
  t.same(seen.map((event) => event.type), ['session-revoked'], 'the first event was handled before the failure')
  t.match(seen[0], { sub: sub.sub, sid: sub.sid, uri: 'https://schemas.openid.net/secevent/caep/event-type/session-revoked' })
  app.clock.advance(app.config.eventRedeliverySeconds)
  t.equal(await poller.drain((event) => void seen.push(event)), 2)
  t.same(seen.map((event) => [event.type, event.sub]), [['session-revoked', sub.sub], ['account-disabled', sub.sub], ['account-purged', sub.sub]], 'the failed one again, then the rest, never the acknowledged one')
  app.clock.advance(3600)
  t.equal(await poller.drain(() => { t.fail('everything was acknowledged') }), 0)

  const result = await poller.poll()
  t.same(result, { events: [], invalid: [], moreAvailable: false })
})

t.test('createEventPoller: an identifier change names the new sub; bad credentials are a configuration error', async (t) => {
  const app = await startKitApp(t, { WECHAT_APPS: 'wxaaaaaaaaaaaaaaaa:s1,wxbbbbbbbbbbbbbbbb:s2', MINIGATE_WECHAT_SIMULATOR: '1', MINIGATE_SERVICES: 'dev-service:dev-service-secret' })
  const a = await app.login({ appid: 'wxaaaaaaaaaaaaaaaa', openid: 'oKitMergeA' })
  app.clock.advance(5)
  const b = await app.login({ appid: 'wxbbbbbbbbbbbbbbbb', openid: 'oKitMergeB' })
  const subOf = (token: string) => (JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()) as { sub: string }).sub
  t.equal((await cli(app, 'users', 'merge', subOf(a.access_token), subOf(b.access_token))).code, 0)
  const poller = createEventPoller({ issuer: app.url, ...DEV_SERVICE })
  const { events } = await poller.poll({ maxEvents: 10 })
  t.match(events[0], { type: 'identifier-changed', sub: subOf(b.access_token), newSub: subOf(a.access_token) })

  const stranger = createEventPoller({ issuer: app.url, clientId: 'dev-service', clientSecret: 'not-the-secret-0000' })
  await t.rejects(stranger.poll(), ConfigurationError)
  t.throws(() => createEventPoller({ issuer: app.url, clientId: '', clientSecret: 'x' }), TypeError)
})
