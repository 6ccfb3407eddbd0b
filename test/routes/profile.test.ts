import t, { type Test } from 'tap'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { sharedKeysDir } from '../helpers/keys.js'

// One keys folder for every app of this file: generating an RSA key per app is the slow part.
const KEYS_DIR = sharedKeysDir()

function start(t: Test, env: Record<string, string> = {}): Promise<TestApp> {
  return startTestApp(t, { MINIGATE_KEYS_DIR: KEYS_DIR, ...env })
}

function payloadOf(jwt: string): Record<string, any> {
  return JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString()) as Record<string, any>
}

function patch(app: TestApp, accessToken: string | undefined, body: unknown, contentType = 'application/json'): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': contentType }
  if (accessToken !== undefined) headers.authorization = `Bearer ${accessToken}`
  return fetch(`${app.url}/userinfo`, { method: 'PATCH', headers, body: typeof body === 'string' ? body : JSON.stringify(body) })
}

async function userinfo(app: TestApp, accessToken: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${accessToken}` } })
  if (response.status !== 200) throw new Error(`userinfo failed: ${response.status}`)
  return (await response.json()) as Record<string, unknown>
}

async function expectInvalid(t: Test, response: Response, name: string): Promise<void> {
  const text = await response.text()
  t.equal(response.status, 400, `${name}: 400 (${text})`)
  const body = JSON.parse(text) as Record<string, unknown>
  t.equal(body.error, 'invalid_request', `${name}: invalid_request`)
  t.type(body.error_description, 'string')
}

t.test('PATCH /userinfo sets nickname and picture and answers the updated userinfo', async (t) => {
  const app = await start(t)
  const tokens = await app.login({ scope: 'profile' })
  const sub = payloadOf(tokens.access_token).sub as string
  app.clock.advance(100)

  const response = await patch(app, tokens.access_token, { nickname: '  小明 🐱  ', picture: 'https://thirdwx.qlogo.cn/mmopen/abc/132' })
  t.equal(response.status, 200)
  t.match(response.headers.get('content-type'), /^application\/json/)
  t.equal(response.headers.get('cache-control'), 'no-store')
  const now = Math.floor(app.clock.now() / 1000)
  const expected = { sub, nickname: '小明 🐱', picture: 'https://thirdwx.qlogo.cn/mmopen/abc/132', updated_at: now }
  t.same(await response.json(), expected, 'nickname trimmed; the response is the updated userinfo')
  t.same(await userinfo(app, tokens.access_token), expected, 'GET /userinfo shows it')
  const row = await app.deps.db.selectFrom('users').selectAll().where('id', '=', sub).executeTakeFirstOrThrow()
  t.equal(row.nickname, '小明 🐱', 'stored trimmed')

  app.clock.advance(600)
  const later = await patch(app, tokens.access_token, { nickname: '小红' })
  t.same(await later.json(), { ...expected, nickname: '小红', updated_at: now + 600 }, 'one field alone; the other stays; updated_at advances with the clock')

  const both = await app.login({ scope: 'openid profile' })
  t.match(payloadOf(both.id_token as string), { nickname: '小红', picture: 'https://thirdwx.qlogo.cn/mmopen/abc/132' }, 'a new id_token carries the profile')
})

t.test('a form body works too', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const response = await patch(app, tokens.access_token, new URLSearchParams({ nickname: 'Form 名字' }).toString(), 'application/x-www-form-urlencoded')
  t.equal(response.status, 200)
  t.match(await response.json(), { nickname: 'Form 名字' })
})

t.test('the response shows only what the scope grants', async (t) => {
  const app = await start(t)
  const tokens = await app.login({ scope: 'profile phone' })
  const sub = payloadOf(tokens.access_token).sub as string
  await app.deps.db.updateTable('users').set({ phone_number: '+8613800138000', phone_verified_at: 1 }).where('id', '=', sub).execute()
  const response = await patch(app, tokens.access_token, { nickname: 'n' })
  t.match(await response.json(), { nickname: 'n', phone_number: '+8613800138000', phone_number_verified: true })
  const profileOnly = await app.login({ scope: 'profile' })
  const body = (await (await patch(app, profileOnly.access_token, { nickname: 'm' })).json()) as Record<string, unknown>
  t.notOk('phone_number' in body, 'no phone claims without scope phone')
})

t.test('nickname rules', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const accept = async (nickname: string, stored: string, name: string) => {
    const response = await patch(app, tokens.access_token, { nickname })
    t.equal(response.status, 200, `${name}: 200`)
    t.equal(((await response.json()) as { nickname: string }).nickname, stored, `${name}: stored as ${JSON.stringify(stored)}`)
  }
  await accept('a'.repeat(64), 'a'.repeat(64), '64 ASCII characters')
  await accept('字'.repeat(64), '字'.repeat(64), '64 CJK characters')
  await accept('🐱'.repeat(64), '🐱'.repeat(64), '64 emoji (128 UTF-16 units) count as 64 characters')
  await accept(`  ${'b'.repeat(64)}  `, 'b'.repeat(64), '64 characters once trimmed')
  await accept('x', 'x', 'one character')

  const refused: Array<[string, string]> = [
    ['65 characters', 'a'.repeat(65)],
    ['65 CJK characters', '字'.repeat(65)],
    ['empty', ''],
    ['only spaces', '    '],
    ['only whitespace', ' \t\u3000 '],
    ['a NUL inside', 'a\u0000b'],
    ['a line break inside', 'a\nb'],
    ['a carriage return inside', 'a\rb'],
    ['a DEL inside', 'a\u007fb'],
    ['an escape sequence', 'a\u001b[31mb'],
    ['a C1 control', 'a\u0085b'],
    ['a line separator', 'a\u2028b'],
  ]
  for (const [name, nickname] of refused) await expectInvalid(t, await patch(app, tokens.access_token, { nickname }), name)
  t.equal((await userinfo(app, tokens.access_token)).nickname, 'x', 'refused updates changed nothing')
})

t.test('nicknames refuse what lets one name display as another; Chinese, emoji and spaces still work', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const accepted: Array<[string, string]> = [
    ['Chinese', '小明'],
    ['a space inside', '小 明'],
    ['an ideographic space inside', '小\u3000明'],
    ['Latin with a space', 'Anna Lee'],
    ['emoji', '小明 🐱'],
    ['a ZWJ family sequence', '👨\u200D👩\u200D👧 一家'],
    ['a ZWJ sequence with a variation selector', '❤\uFE0F\u200D🔥'],
    ['a ZWJ sequence with a skin tone', '👨🏽\u200D💻'],
    ['the rainbow flag', '🏳\uFE0F\u200D🌈'],
    ['a gendered emoji', '🏃\u200D♀\uFE0F'],
    ['a keycap', '1\uFE0F\u20E3号'],
    ['a subdivision flag (tag characters)', '🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}'],
    ['Thai', 'สมชาย'],
    ['Devanagari', 'नमस्ते'],
    ['Arabic', 'مرحبا'],
  ]
  for (const [name, nickname] of accepted) {
    const response = await patch(app, tokens.access_token, { nickname })
    t.equal(response.status, 200, `${name}: 200`)
    t.equal(((await response.json()) as { nickname: string }).nickname, nickname, `${name}: stored as sent`)
  }
  const composed = await patch(app, tokens.access_token, { nickname: 'Jose\u0301' })
  t.equal(((await composed.json()) as { nickname: string }).nickname, 'Jos\u00e9', 'stored in NFC: one way to write each name')

  const refused: Array<[string, string]> = [
    ['a right-to-left override (U+202E)', 'admin\u202Egnp.exe'],
    ['a left-to-right override', 'a\u202Db'],
    ['a right-to-left mark', 'a\u200Fb'],
    ['a bidi isolate', 'a\u2066b\u2069'],
    ['an Arabic letter mark', 'a\u061Cb'],
    ['a zero-width space', '小\u200B明'],
    ['a zero-width non-joiner', '小\u200C明'],
    ['a zero-width joiner between letters', '小\u200D明'],
    ['a zero-width joiner after an emoji, before a letter', '🐱\u200Da'],
    ['a zero-width joiner before an emoji, after a letter', 'a\u200D🐱'],
    ['a trailing zero-width joiner', 'a🐱\u200D'],
    ['a word joiner', 'a\u2060b'],
    ['a byte order mark inside', 'a\uFEFFb'],
    ['a soft hyphen', 'a\u00ADb'],
    ['a Mongolian vowel separator', 'a\u180Eb'],
    ['a variation selector after a letter', 'a\uFE0Fb'],
    ['a combining grapheme joiner', 'a\u034Fb'],
    ['a stray tag character', 'a\u{E0061}b'],
    ['a Hangul filler (a blank name)', '\u3164'],
    ['a halfwidth Hangul filler inside', 'a\uFFA0b'],
    ['a blank braille pattern', 'a\u2800b'],
    ['a no-break space inside', 'a\u00A0b'],
    ['an em space inside', 'a\u2003b'],
    ['a narrow no-break space inside', 'a\u202Fb'],
  ]
  for (const [name, nickname] of refused) {
    const response = await patch(app, tokens.access_token, { nickname })
    await expectInvalid(t, response.clone(), name)
    t.match(((await response.json()) as { error_description: string }).error_description, /invisible/, `${name}: says why`)
  }
  t.equal((await userinfo(app, tokens.access_token)).nickname, 'Jos\u00e9', 'refused updates changed nothing')
})

t.test('picture rules', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  for (const picture of ['https://thirdwx.qlogo.cn/mmopen/vi_32/abc/132', 'https://cdn.example.com/a.png?size=132#x', `${app.url}/avatars/AAAAAAAAAAAAAAAAAAAAAA`]) {
    const response = await patch(app, tokens.access_token, { picture })
    t.equal(response.status, 200, `${picture}: 200`)
    t.equal(((await response.json()) as { picture: string }).picture, picture)
  }
  const refused: Array<[string, string]> = [
    ['http', 'http://cdn.example.com/a.png'],
    ['javascript:', 'javascript:alert(1)'],
    ['data:', 'data:image/png;base64,iVBORw0KGgo='],
    ['credentials in the URL', 'https://user:pass@cdn.example.com/a.png'],
    ['a user name in the URL', 'https://user@cdn.example.com/a.png'],
    ['a relative URL', '/avatars/abc'],
    ['not a URL', 'a picture'],
    ['empty', ''],
    ['longer than 2048', `https://cdn.example.com/${'a'.repeat(2048)}`],
    ['ftp', 'ftp://cdn.example.com/a.png'],
    ['our host but not an avatar path', `${app.url}/userinfo`],
  ]
  for (const [name, picture] of refused) await expectInvalid(t, await patch(app, tokens.access_token, { picture }), name)
  t.equal((await userinfo(app, tokens.access_token)).picture, `${app.url}/avatars/AAAAAAAAAAAAAAAAAAAAAA`, 'refused updates changed nothing')

  // The http exception is for avatars this server stores; a dot-segment path leaves /avatars/.
  const escaping = await patch(app, tokens.access_token, { picture: `${app.url}/avatars/../userinfo` })
  t.equal(escaping.status, 400, `an http URL that only starts like an avatar URL is refused (${escaping.status})`)
})

t.test('the body must name nickname and/or picture only', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  await expectInvalid(t, await patch(app, tokens.access_token, { nickname: 'ok', phone_number: '+8613800138000' }), 'an unknown field beside a good one')
  await expectInvalid(t, await patch(app, tokens.access_token, { sub: 'someone-else' }), 'sub')
  await expectInvalid(t, await patch(app, tokens.access_token, { updated_at: '1' }), 'updated_at')
  await expectInvalid(t, await patch(app, tokens.access_token, { constructor: 'x', nickname: 'ok' }), 'constructor')
  await expectInvalid(t, await patch(app, tokens.access_token, '{"toString":"x"}'), 'toString')
  await expectInvalid(t, await patch(app, tokens.access_token, {}), 'an empty JSON object')
  await expectInvalid(t, await patch(app, tokens.access_token, '', 'application/x-www-form-urlencoded'), 'an empty form body')
  await expectInvalid(t, await patch(app, tokens.access_token, { nickname: 12 }), 'a number as nickname')
  await expectInvalid(t, await patch(app, tokens.access_token, { nickname: ['a', 'b'] }), 'an array as nickname')
  await expectInvalid(t, await patch(app, tokens.access_token, '[]'), 'a JSON array')
  await expectInvalid(t, await patch(app, tokens.access_token, '{"nickname":'), 'broken JSON')
  const text = await patch(app, tokens.access_token, 'nickname=x', 'text/plain')
  t.equal(text.status, 415, 'text/plain: 415')
  const user = await userinfo(app, tokens.access_token)
  t.notOk('nickname' in user, 'nothing was changed')
  t.notOk('phone_number' in user)
})

t.test('a __proto__ field is an unknown field too', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const response = await patch(app, tokens.access_token, '{"__proto__":"x","nickname":"ok"}')
  await expectInvalid(t, response, 'an own __proto__ key')
  t.notOk('nickname' in (await userinfo(app, tokens.access_token)), 'the nickname beside it was not applied')
})

t.test('scope profile is required', async (t) => {
  const app = await start(t)
  for (const scope of ['phone', 'openid', 'openid phone']) {
    const tokens = await app.login({ scope })
    const response = await patch(app, tokens.access_token, { nickname: 'no' })
    t.equal(response.status, 403, `scope ${scope}: 403`)
    const challenge = response.headers.get('www-authenticate') ?? ''
    t.match(challenge, /^Bearer /, 'a Bearer challenge')
    t.match(challenge, /error="insufficient_scope"/, 'naming insufficient_scope')
    t.match(challenge, /scope="profile"/, 'and the scope needed')
    const body = (await response.json()) as Record<string, unknown>
    t.equal(body.error, 'insufficient_scope')
  }
  const sub = payloadOf((await app.login({ scope: 'profile' })).access_token).sub as string
  const row = await app.deps.db.selectFrom('users').selectAll().where('id', '=', sub).executeTakeFirstOrThrow()
  t.equal(row.nickname, null, 'nothing was changed')
})

t.test('a Bearer access token is required', async (t) => {
  const app = await start(t)
  const none = await patch(app, undefined, { nickname: 'x' })
  t.equal(none.status, 401)
  t.match(none.headers.get('www-authenticate'), /^Bearer realm="minigate"/)
  const bad = await patch(app, 'garbage', { nickname: 'x' })
  t.equal(bad.status, 401)
  t.match(bad.headers.get('www-authenticate'), /error="invalid_token"/)
  const tokens = await app.login()
  const refresh = await patch(app, tokens.refresh_token as string, { nickname: 'x' })
  t.equal(refresh.status, 401, 'a refresh token is refused')
  const revoked = await app.postForm('/revoke', { token: tokens.access_token as string })
  t.equal(revoked.status, 200)
  t.equal((await patch(app, tokens.access_token as string, { nickname: 'x' })).status, 401, 'a revoked access token is refused')
})

t.test('unsupported methods on /userinfo and /userinfo/profile', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const response = await fetch(`${app.url}/userinfo`, { method: 'PUT', headers: { authorization: `Bearer ${tokens.access_token}`, 'content-type': 'application/json' }, body: '{"nickname":"x"}' })
  t.equal(response.status, 405)
  t.same(response.headers.get('allow')?.split(', ').sort(), ['GET', 'HEAD', 'PATCH', 'POST'])
  const get = await fetch(`${app.url}/userinfo/profile`, { headers: { authorization: `Bearer ${tokens.access_token}` } })
  t.equal(get.status, 405, 'GET /userinfo/profile: 405')
  t.equal(get.headers.get('allow'), 'POST')
})

t.test('POST /userinfo/profile is the same update, for wx.request, which cannot send PATCH', async (t) => {
  const app = await start(t)
  const tokens = await app.login({ scope: 'profile' })
  const sub = payloadOf(tokens.access_token).sub as string
  const post = (accessToken: string | undefined, body: string, contentType = 'application/json') =>
    fetch(`${app.url}/userinfo/profile`, { method: 'POST', headers: { 'content-type': contentType, ...(accessToken ? { authorization: `Bearer ${accessToken}` } : {}) }, body })
  app.clock.advance(100)

  const json = await post(tokens.access_token, JSON.stringify({ nickname: '  小明 🐱  ', picture: 'https://thirdwx.qlogo.cn/mmopen/abc/132' }))
  t.equal(json.status, 200)
  t.equal(json.headers.get('cache-control'), 'no-store')
  const expected = { sub, nickname: '小明 🐱', picture: 'https://thirdwx.qlogo.cn/mmopen/abc/132', updated_at: Math.floor(app.clock.now() / 1000) }
  t.same(await json.json(), expected, 'the updated userinfo, as PATCH answers')
  t.same(await userinfo(app, tokens.access_token), expected, 'GET /userinfo shows it')

  const form = await post(tokens.access_token, new URLSearchParams({ nickname: '小红' }).toString(), 'application/x-www-form-urlencoded')
  t.match(await form.json(), { nickname: '小红', picture: expected.picture }, 'a form body with one field; the other stays')

  await expectInvalid(t, await post(tokens.access_token, JSON.stringify({ nickname: 'ok', sub: 'someone-else' })), 'an unknown field')
  await expectInvalid(t, await post(tokens.access_token, '{}'), 'nothing to change')
  await expectInvalid(t, await post(tokens.access_token, JSON.stringify({ nickname: 'a\u0007b' })), 'a nickname PATCH refuses')
  t.equal((await post(undefined, '{"nickname":"x"}')).status, 401, 'no Bearer: 401')
  const phoneOnly = await app.login({ scope: 'phone' })
  t.equal((await post(phoneOnly.access_token, '{"nickname":"x"}')).status, 403, 'without scope profile: 403')
  t.equal((await userinfo(app, tokens.access_token)).nickname, '小红', 'the refused requests changed nothing')
})
