import t, { type Test } from 'tap'
import { startTestApp, type TestApp } from '../helpers/app.js'

function start(t: Test, env: Record<string, string> = {}): Promise<TestApp> {
  return startTestApp(t, env)
}

function userinfo(app: TestApp, authorization?: string, query = ''): Promise<Response> {
  return fetch(`${app.url}/userinfo${query}`, authorization === undefined ? {} : { headers: { authorization } })
}

function payloadOf(jwt: string): Record<string, any> {
  return JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString()) as Record<string, any>
}

async function expectInvalidToken(t: Test, response: Response, name: string): Promise<void> {
  t.equal(response.status, 401, `${name}: 401`)
  const challenge = response.headers.get('www-authenticate') ?? ''
  t.match(challenge, /^Bearer realm="minigate"/, `${name}: Bearer challenge`)
  t.match(challenge, /error="invalid_token"/, `${name}: error="invalid_token" in the challenge`)
  t.equal(response.headers.get('cache-control'), 'no-store', `${name}: no-store`)
  const body = (await response.json()) as { error: string; error_description: string }
  t.equal(body.error, 'invalid_token', `${name}: invalid_token body`)
  t.equal(typeof body.error_description, 'string')
}

t.test('a fresh login sees only sub and updated_at', async (t) => {
  const app = await start(t)
  const tokens = await app.login({ openid: 'o-never-shown' })
  const response = await userinfo(app, `Bearer ${tokens.access_token}`)
  t.equal(response.status, 200)
  t.match(response.headers.get('content-type'), /^application\/json/)
  t.equal(response.headers.get('cache-control'), 'no-store')
  const body = (await response.json()) as Record<string, unknown>
  t.same(Object.keys(body).sort(), ['sub', 'updated_at'])
  t.equal(body.sub, payloadOf(tokens.access_token).sub)
  t.equal(body.updated_at, Math.floor(app.clock.now() / 1000))
  t.notOk(JSON.stringify(body).includes('o-never-shown'), 'the openid is not disclosed')
})

t.test('profile and phone claims follow the scope', async (t) => {
  const app = await start(t)
  const profile = await app.login({ scope: 'profile', openid: 'o-claims' })
  const sub = payloadOf(profile.access_token).sub as string
  await app.deps.db
    .updateTable('users')
    .set({ nickname: '小明', picture: 'https://cdn.example.com/a.png', phone_number: '+8613800138000', phone_country_code: '86', phone_verified_at: 1_700_000_000, updated_at: 1_800_000_000 })
    .where('id', '=', sub)
    .execute()

  const asProfile = (await (await userinfo(app, `Bearer ${profile.access_token}`)).json()) as Record<string, unknown>
  t.same(asProfile, { sub, nickname: '小明', picture: 'https://cdn.example.com/a.png', updated_at: 1_800_000_000 }, 'profile: nickname and picture, no phone')

  const phone = await app.login({ scope: 'phone', openid: 'o-claims' })
  const asPhone = (await (await userinfo(app, `Bearer ${phone.access_token}`)).json()) as Record<string, unknown>
  t.same(asPhone, { sub, phone_number: '+8613800138000', phone_number_verified: true, updated_at: 1_800_000_000 }, 'phone: phone claims, no profile')

  const both = await app.login({ scope: 'openid profile phone', openid: 'o-claims' })
  const asBoth = (await (await userinfo(app, `Bearer ${both.access_token}`)).json()) as Record<string, unknown>
  t.same(Object.keys(asBoth).sort(), ['nickname', 'phone_number', 'phone_number_verified', 'picture', 'sub', 'updated_at'])

  const openidOnly = await app.login({ scope: 'openid', openid: 'o-claims' })
  const asOpenid = (await (await userinfo(app, `Bearer ${openidOnly.access_token}`)).json()) as Record<string, unknown>
  t.same(asOpenid, { sub, updated_at: 1_800_000_000 }, 'openid alone: no profile, no phone')

  await app.deps.db.updateTable('users').set({ phone_verified_at: null, picture: null }).where('id', '=', sub).execute()
  const unverified = (await (await userinfo(app, `Bearer ${both.access_token}`)).json()) as Record<string, unknown>
  t.equal(unverified.phone_number_verified, false, 'an unverified number says so')
  t.notOk('picture' in unverified, 'an unset picture is left out, not null')
  t.equal(unverified.nickname, '小明')
})

t.test('no credentials: 401 with a bare Bearer challenge', async (t) => {
  const app = await start(t)
  for (const [name, authorization] of [
    ['no header', undefined],
    ['empty header', ''],
    ['Basic scheme', 'Basic dXNlcjpwYXNz'],
    ['Digest scheme', 'Digest username="x"'],
  ] as const) {
    const response = await userinfo(app, authorization)
    t.equal(response.status, 401, `${name}: 401`)
    t.equal(response.headers.get('www-authenticate'), 'Bearer realm="minigate"', `${name}: challenge without error=`)
    t.equal(response.headers.get('cache-control'), 'no-store')
  }
})

t.test('malformed and forged tokens: 401 invalid_token', async (t) => {
  const app = await start(t)
  const tokens = await app.login({ scope: 'openid profile' })
  const [header, payload, signature] = (tokens.access_token as string).split('.') as [string, string, string]
  const flipped = Buffer.from(signature, 'base64url')
  flipped[0] = (flipped[0] as number) ^ 1
  const cases: Array<[string, string]> = [
    ['garbage', 'Bearer garbage'],
    ['Bearer without token', 'Bearer '],
    ['token with a comma', 'Bearer abc,def'],
    ['two tokens', `Bearer ${tokens.access_token} ${tokens.access_token}`],
    ['bit-flipped signature', `Bearer ${header}.${payload}.${flipped.toString('base64url')}`],
    ['unsigned', `Bearer ${Buffer.from('{"alg":"none","typ":"at+jwt"}').toString('base64url')}.${payload}.`],
    ['refresh token', `Bearer ${tokens.refresh_token}`],
    ['id token', `Bearer ${tokens.id_token}`],
    ['oversized', `Bearer ${'a'.repeat(5000)}`],
  ]
  for (const [name, authorization] of cases) await expectInvalidToken(t, await userinfo(app, authorization), name)
  t.equal((await userinfo(app, `bearer ${tokens.access_token}`)).status, 200, 'the scheme is case-insensitive')
})

t.test('an expired access token is refused', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  app.clock.advance(app.config.accessTtl - 1)
  t.equal((await userinfo(app, `Bearer ${tokens.access_token}`)).status, 200, 'valid until exp')
  app.clock.advance(2)
  const response = await userinfo(app, `Bearer ${tokens.access_token}`)
  await expectInvalidToken(t, response.clone(), 'expired')
  t.match(((await response.json()) as { error_description: string }).error_description, /expired/)
})

t.test('a token in the URL query is refused', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const response = await userinfo(app, undefined, `?access_token=${tokens.access_token}`)
  t.equal(response.status, 400)
  t.equal(((await response.json()) as { error: string }).error, 'invalid_request')
  const withHeader = await userinfo(app, `Bearer ${tokens.access_token}`, `?access_token=${tokens.access_token}`)
  t.equal(withHeader.status, 400, 'even next to a valid header')
  t.notOk(app.logs.join('\n').includes(tokens.access_token), 'the token in the URL was not logged')
})

t.test('a token of an ended login is refused', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const other = await app.login()
  const sid = payloadOf(tokens.access_token).sid as string
  await app.deps.db.updateTable('login_sessions').set({ revoked_at: Math.floor(app.clock.now() / 1000), revoked_reason: 'test' }).where('id', '=', sid).execute()
  await expectInvalidToken(t, await userinfo(app, `Bearer ${tokens.access_token}`), 'revoked login')
  t.equal((await userinfo(app, `Bearer ${other.access_token}`)).status, 200, 'another login of the same user still works')
})

t.test('a login past its maximum age is refused', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const sid = payloadOf(tokens.access_token).sid as string
  await app.deps.db.updateTable('login_sessions').set({ expires_at: Math.floor(app.clock.now() / 1000) }).where('id', '=', sid).execute()
  await expectInvalidToken(t, await userinfo(app, `Bearer ${tokens.access_token}`), 'login at its absolute end')
})

t.test('a revoked access token is refused', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const claims = payloadOf(tokens.access_token)
  await app.deps.db.insertInto('revoked_access_tokens').values({ jti: claims.jti, expires_at: claims.exp, revoked_at: claims.iat }).execute()
  await expectInvalidToken(t, await userinfo(app, `Bearer ${tokens.access_token}`), 'revoked jti')
})

t.test('a disabled user is refused', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const sub = payloadOf(tokens.access_token).sub as string
  await app.deps.db.updateTable('users').set({ disabled_at: Math.floor(app.clock.now() / 1000) }).where('id', '=', sub).execute()
  await expectInvalidToken(t, await userinfo(app, `Bearer ${tokens.access_token}`), 'disabled user')
  await app.deps.db.updateTable('users').set({ disabled_at: null }).where('id', '=', sub).execute()
  t.equal((await userinfo(app, `Bearer ${tokens.access_token}`)).status, 200, 'enabled again')
})

t.test('a token of another minigate (another issuer) is refused', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  await t.test('a second instance with the same keys but another issuer', async (t) => {
    const other = await start(t, { MINIGATE_ISSUER: 'https://other.example.com' })
    await expectInvalidToken(t, await userinfo(other, `Bearer ${tokens.access_token}`), 'other issuer')
  })
})

t.test('a token is never logged', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  await userinfo(app, `Bearer ${tokens.access_token}`)
  await userinfo(app, 'Bearer garbage-token-value')
  const logs = app.logs.join('\n')
  t.notOk(logs.includes(tokens.access_token), 'the access token is not logged')
  t.notOk(logs.includes('garbage-token-value'), 'a rejected token is not logged')
  t.ok(app.logs.some((line) => JSON.parse(line).route === '/userinfo'), 'the request itself is logged')
})

t.test('POST /userinfo answers as GET does (OpenID Connect Core 5.3.1)', async (t) => {
  const app = await start(t)
  const tokens = await app.login({ scope: 'openid profile', openid: 'o-post-userinfo' })
  const sub = payloadOf(tokens.access_token).sub as string
  await app.deps.db.updateTable('users').set({ nickname: '小明' }).where('id', '=', sub).execute()
  const get = (await (await userinfo(app, `Bearer ${tokens.access_token}`)).json()) as Record<string, unknown>
  const post = (body?: string, contentType?: string) =>
    fetch(`${app.url}/userinfo`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.access_token}`, ...(contentType ? { 'content-type': contentType } : {}) },
      ...(body === undefined ? {} : { body }),
    })
  for (const [what, response] of [
    ['no body', await post()],
    ['an empty form body', await post('', 'application/x-www-form-urlencoded')],
    ['a form body', await post('ignored=1', 'application/x-www-form-urlencoded')],
  ] as const) {
    t.equal(response.status, 200, `${what}: 200`)
    t.equal(response.headers.get('cache-control'), 'no-store', `${what}: no-store`)
    t.same(await response.json(), get, `${what}: the same claims as GET`)
  }
  t.same(get, { sub, nickname: '小明', updated_at: get.updated_at })

  const anonymous = await fetch(`${app.url}/userinfo`, { method: 'POST', body: new URLSearchParams({ access_token: tokens.access_token }) })
  t.equal(anonymous.status, 401, 'a token in the body instead of the Authorization header: 401')
  t.equal(anonymous.headers.get('www-authenticate'), 'Bearer realm="minigate"')
  const queried = await fetch(`${app.url}/userinfo?access_token=${tokens.access_token}`, { method: 'POST' })
  t.equal(queried.status, 400, 'a token in the URL is refused on POST too')
  await expectInvalidToken(t, await fetch(`${app.url}/userinfo`, { method: 'POST', headers: { authorization: `Bearer ${tokens.refresh_token}` } }), 'POST with a refresh token')
})
