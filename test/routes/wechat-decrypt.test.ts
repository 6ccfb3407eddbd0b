import { createCipheriv, createHash, randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { DEV_APP } from '../../src/config.js'
import { startTestApp, WECHAT_CODE_GRANT, type TestApp } from '../helpers/app.js'
import { sharedKeysDir } from '../helpers/keys.js'

// One keys folder for every app of this file: generating an RSA key per app is the slow part.
const KEYS_DIR = sharedKeysDir()

function start(t: Test, env: Record<string, string> = {}): Promise<TestApp> {
  return startTestApp(t, { MINIGATE_KEYS_DIR: KEYS_DIR, ...env })
}

const SESSION_KEY = 'HyVFkGl5F5OQWJZZaNzBBg=='

/** wx.login() with a chosen session_key, then the wechat-code grant: the access token. */
async function loginWithKey(app: TestApp, input: { session_key?: string; openid?: string; unionid?: string; appid?: string } = {}): Promise<string> {
  const code = await app.wxLogin(input)
  const params: Record<string, string> = { grant_type: WECHAT_CODE_GRANT, code }
  if (input.appid !== undefined) params.client_id = input.appid
  const response = await app.postForm('/token', params)
  const body = (await response.json()) as { access_token: string }
  if (response.status !== 200) throw new Error(`login failed: ${response.status} ${JSON.stringify(body)}`)
  return body.access_token
}

/** What the phone's open-data API gives: data encrypted with the user's current session_key on the simulator. */
async function sealed(app: TestApp, data: unknown, extra: Record<string, string> = {}): Promise<{ encrypted_data: string; iv: string }> {
  const response = await app.postJson('/_dev/wechat/encrypt', { data: JSON.stringify(data), ...extra })
  if (response.status !== 200) throw new Error(`encrypt failed: ${response.status} ${await response.text()}`)
  return (await response.json()) as { encrypted_data: string; iv: string }
}

/** AES-128-CBC of arbitrary bytes with a session_key, done by hand. */
function sealRaw(sessionKey: string, plaintext: string): { encrypted_data: string; iv: string } {
  const iv = randomBytes(16)
  const cipher = createCipheriv('aes-128-cbc', Buffer.from(sessionKey, 'base64'), iv)
  return { encrypted_data: Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]).toString('base64'), iv: iv.toString('base64') }
}

function decrypt(app: TestApp, accessToken: string, body: Record<string, string>): Promise<Response> {
  return app.postJson('/wechat/decrypt', body, { authorization: `Bearer ${accessToken}` })
}

/** Every response body this file reads, to prove the session_key never shows. */
const bodies: string[] = []

async function expectError(t: Test, response: Response, status: number, error: string, name = error): Promise<Record<string, string>> {
  const text = await response.text()
  bodies.push(text)
  t.equal(response.status, status, `${name}: HTTP ${status} (${text})`)
  t.equal(response.headers.get('cache-control'), 'no-store', `${name}: no-store`)
  const body = JSON.parse(text) as Record<string, string>
  t.equal(body.error, error, `${name}: error ${error}`)
  t.type(body.error_description, 'string')
  t.ok((body.error_description ?? '').length > 0, `${name}: a description`)
  t.same(Object.keys(body).sort(), ['error', 'error_description'])
  return body
}

async function expectData(t: Test, response: Response, name: string): Promise<Record<string, any>> {
  const text = await response.text()
  bodies.push(text)
  t.equal(response.status, 200, `${name}: 200 (${text})`)
  t.equal(response.headers.get('cache-control'), 'no-store', `${name}: no-store`)
  const body = JSON.parse(text) as { data: Record<string, any> }
  t.same(Object.keys(body), ['data'], `${name}: {data}`)
  return body.data
}

t.test('encrypted data round trip', async (t) => {
  const app = await start(t)
  const accessToken = await loginWithKey(app, { session_key: SESSION_KEY })
  app.clock.advance(42)
  const fields = { openGId: 'tG-group-1', nested: { list: [1, 'two', null], ok: true }, text: '小明 🐱' }
  const data = await expectData(t, await decrypt(app, accessToken, await sealed(app, fields)), 'JSON body')
  t.same(data, { ...fields, watermark: { appid: DEV_APP.appid, timestamp: Math.floor(app.clock.now() / 1000) } })

  const form = await app.postForm('/wechat/decrypt', await sealed(app, { a: 1 }), { authorization: `Bearer ${accessToken}` })
  t.equal((await expectData(t, form, 'form body')).a, 1)
  t.notOk(app.logs.some((line) => line.includes(SESSION_KEY)), 'the session_key is never logged')
})

t.test("a form body whose '+' arrived as spaces still works", async (t) => {
  const app = await start(t)
  const accessToken = await loginWithKey(app)
  let sample = await sealed(app, { spaced: true })
  for (let tries = 0; tries < 500 && !(sample.encrypted_data.includes('+') && sample.iv.includes('+')); tries += 1) sample = await sealed(app, { spaced: true })
  t.ok(sample.encrypted_data.includes('+') && sample.iv.includes('+'), 'a sample with + in encrypted_data and in iv')

  const post = (body: string) =>
    fetch(`${app.url}/wechat/decrypt`, { method: 'POST', headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/x-www-form-urlencoded' }, body })

  // The client bug: base64 put in a form body without encoding, so the server decodes each '+' as a space.
  const unencoded = `encrypted_data=${sample.encrypted_data}&iv=${sample.iv}`
  t.ok(new URLSearchParams(unencoded).get('iv')?.includes(' '), 'the server-side decoding of this body has spaces')
  t.equal((await expectData(t, await post(unencoded), "raw '+'")).spaced, true)

  // Literal spaces sent where the '+' were.
  const spaces = `encrypted_data=${sample.encrypted_data.replace(/\+/g, ' ')}&iv=${sample.iv.replace(/\+/g, ' ')}`
  t.equal((await expectData(t, await post(spaces), 'literal spaces')).spaced, true)

  // The same repair applies to JSON.
  const json = await decrypt(app, accessToken, { encrypted_data: sample.encrypted_data.replace(/\+/g, ' '), iv: sample.iv.replace(/\+/g, ' ') })
  t.equal((await expectData(t, json, 'JSON with spaces')).spaced, true)

  const encoded = `encrypted_data=${encodeURIComponent(sample.encrypted_data)}&iv=${encodeURIComponent(sample.iv)}`
  t.equal((await expectData(t, await post(encoded), 'properly encoded')).spaced, true)
})

t.test('each failure is a distinct 400 with its own error code', async (t) => {
  const app = await start(t)
  const accessToken = await loginWithKey(app, { openid: 'o-decrypt', session_key: SESSION_KEY })
  const good = await sealed(app, { a: 1 }, { openid: 'o-decrypt' })
  const codes = new Set<string>()
  const fail = async (body: Record<string, string>, error: string, name: string) => {
    const answer = await expectError(t, await decrypt(app, accessToken, body), 400, error, name)
    codes.add(answer.error as string)
    return answer
  }

  await fail({ ...good, iv: randomBytes(12).toString('base64') }, 'bad_iv', 'a 12-byte iv')
  await fail({ ...good, iv: 'not an iv at all, no!!!!' }, 'bad_iv', 'an iv that is not base64')
  await fail({ ...good, encrypted_data: 'this is not base64!' }, 'bad_encrypted_data', 'encrypted_data not base64')
  await fail({ ...good, encrypted_data: randomBytes(15).toString('base64') }, 'bad_encrypted_data', 'not a multiple of 16 bytes')
  const mismatch = await fail(await sealed(app, { a: 1 }, { openid: 'o-decrypt', watermark_appid: 'wxother0000000000' }), 'watermark_mismatch', 'another app')
  t.match(mismatch.error_description, /another mini-program/)
  await fail(sealRaw(SESSION_KEY, 'hello, this is not JSON'), 'not_json', 'a non-JSON plaintext')
  await fail(sealRaw(SESSION_KEY, '["an","array"]'), 'not_json', 'a JSON array')
  await fail({ ...good, raw_data: '{"nickName":"Band"}', signature: '0'.repeat(40) }, 'bad_signature', 'a wrong signature')
  t.equal(codes.size, 5, 'five distinct error codes')
  t.same([...codes].sort(), ['bad_encrypted_data', 'bad_iv', 'bad_signature', 'not_json', 'watermark_mismatch'])

  const again = await expectData(t, await decrypt(app, accessToken, good), 'the good data still opens')
  t.equal(again.a, 1)
})

t.test('data encrypted with a replaced session_key: bad_padding that tells to call wx.login()', async (t) => {
  const app = await start(t)
  const accessToken = await loginWithKey(app, { openid: 'o-stale', session_key: SESSION_KEY })
  const old = await sealed(app, { a: 1, padding: 'x'.repeat(30) }, { openid: 'o-stale' })
  t.equal((await expectData(t, await decrypt(app, accessToken, old), 'before the new login')).a, 1)

  // A new wx.login() on the phone, sent to minigate: both hold the new session_key now.
  const newer = await loginWithKey(app, { openid: 'o-stale' })
  for (const [name, token] of [['the old login', accessToken], ['the new login', newer]] as const) {
    const response = await decrypt(app, token, old)
    const text = await response.text()
    bodies.push(text)
    t.equal(response.status, 400, `${name}: 400`)
    const body = JSON.parse(text) as { error: string; error_description: string }
    // A wrong key almost always breaks the padding; about 1 time in 256 the padding is valid by chance.
    t.ok(body.error === 'bad_padding' || body.error === 'not_json', `${name}: ${body.error}`)
    if (body.error === 'bad_padding') t.match(body.error_description, /wx\.login\(\)/, 'tells to call wx.login() again')
  }
  const fresh = await sealed(app, { b: 2 }, { openid: 'o-stale' })
  t.equal((await expectData(t, await decrypt(app, newer, fresh), 'new data')).b, 2, 'data under the new key opens')
  t.equal((await expectData(t, await decrypt(app, accessToken, fresh), 'new data, old login')).b, 2, "the user's newest session_key is used, whatever the login")
})

t.test('raw_data and signature', async (t) => {
  const app = await start(t)
  const accessToken = await loginWithKey(app, { session_key: SESSION_KEY })
  const good = await sealed(app, { a: 1 })
  const rawData = '{"nickName":"小明","gender":0,"avatarUrl":"https://thirdwx.qlogo.cn/x/132"}'
  const signature = createHash('sha1').update(rawData + SESSION_KEY).digest('hex')

  t.equal((await expectData(t, await decrypt(app, accessToken, { ...good, raw_data: rawData, signature }), 'a correct signature')).a, 1)
  await expectError(t, await decrypt(app, accessToken, { ...good, raw_data: `${rawData} `, signature }), 400, 'bad_signature', 'changed raw_data')
  const stale = createHash('sha1').update(rawData + 'AAAAAAAAAAAAAAAAAAAAAA==').digest('hex')
  await expectError(t, await decrypt(app, accessToken, { ...good, raw_data: rawData, signature: stale }), 400, 'bad_signature', 'signed with another key')
  await expectError(t, await decrypt(app, accessToken, { ...good, raw_data: rawData, signature: 'not-hex' }), 400, 'bad_signature', 'not hex')
  await expectError(t, await decrypt(app, accessToken, { ...good, raw_data: rawData }), 400, 'invalid_request', 'raw_data without signature')
  await expectError(t, await decrypt(app, accessToken, { ...good, signature }), 400, 'invalid_request', 'signature without raw_data')
})

t.test('missing input is invalid_request; no Bearer is 401', async (t) => {
  const app = await start(t)
  const accessToken = await loginWithKey(app)
  const good = await sealed(app, { a: 1 })
  await expectError(t, await decrypt(app, accessToken, { encrypted_data: good.encrypted_data }), 400, 'invalid_request', 'missing iv')
  await expectError(t, await decrypt(app, accessToken, { encrypted_data: good.encrypted_data, iv: '' }), 400, 'invalid_request', 'empty iv')
  await expectError(t, await decrypt(app, accessToken, { iv: good.iv }), 400, 'invalid_request', 'missing encrypted_data')
  await expectError(t, await decrypt(app, accessToken, {}), 400, 'invalid_request', 'empty body')
  const numbers = await app.postJson('/wechat/decrypt', { encrypted_data: 1, iv: 2 }, { authorization: `Bearer ${accessToken}` })
  await expectError(t, numbers, 400, 'invalid_request', 'values that are not strings')
  const text = await fetch(`${app.url}/wechat/decrypt`, { method: 'POST', headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'text/plain' }, body: 'x' })
  await expectError(t, text, 415, 'invalid_request', 'text/plain')

  const anonymous = await app.postJson('/wechat/decrypt', good)
  t.equal(anonymous.status, 401)
  t.match(anonymous.headers.get('www-authenticate'), /^Bearer/)
  const forged = await app.postJson('/wechat/decrypt', good, { authorization: 'Bearer abc.def.ghi' })
  t.equal(forged.status, 401)
  t.match(forged.headers.get('www-authenticate'), /invalid_token/)
})

t.test('a user without a stored session for the app is told to log in again', async (t) => {
  const app = await start(t)
  const accessToken = await loginWithKey(app)
  const good = await sealed(app, { a: 1 })
  await app.deps.db.deleteFrom('wechat_identities').execute()
  const body = await expectError(t, await decrypt(app, accessToken, good), 400, 'invalid_request', 'no identity')
  t.match(body.error_description, /wx\.login/)
})

t.test('a user linked across apps decrypts with the session_key of the token app', async (t) => {
  const app = await start(t, { WECHAT_APPS: 'wxAAAA:secret-a,wxBBBB:secret-b', MINIGATE_WECHAT_SIMULATOR: '1' })
  const keyA = 'AAAAAAAAAAAAAAAAAAAAAA=='
  const keyB = 'BBBBBBBBBBBBBBBBBBBBBA=='
  const tokenA = await loginWithKey(app, { appid: 'wxAAAA', openid: 'o-a', unionid: 'u-shared', session_key: keyA })
  const tokenB = await loginWithKey(app, { appid: 'wxBBBB', openid: 'o-b', unionid: 'u-shared', session_key: keyB })
  const forA = await sealed(app, { app: 'A' }, { appid: 'wxAAAA', openid: 'o-a' })
  const forB = await sealed(app, { app: 'B' }, { appid: 'wxBBBB', openid: 'o-b' })
  t.same((await expectData(t, await decrypt(app, tokenA, forA), 'A with A')).watermark?.appid, 'wxAAAA')
  t.same((await expectData(t, await decrypt(app, tokenB, forB), 'B with B')).watermark?.appid, 'wxBBBB')
  const crossed = await decrypt(app, tokenB, forA)
  t.equal(crossed.status, 400, "A's data with B's token does not open")
  // Sealed with B's key but watermarked for A: the watermark check catches it.
  await expectError(t, await decrypt(app, tokenB, sealRaw(keyB, JSON.stringify({ x: 1, watermark: { appid: 'wxAAAA', timestamp: 1 } }))), 400, 'watermark_mismatch', 'B key, A watermark')
  for (const line of app.logs) {
    if (line.includes(keyA) || line.includes(keyB)) t.fail(`a session_key was logged: ${line}`)
  }
})

t.test('the session_key never appears in any response body or log line', async (t) => {
  const app = await start(t)
  const accessToken = await loginWithKey(app, { session_key: SESSION_KEY })
  const data = await sealed(app, { a: 1 })
  const responses = [
    await decrypt(app, accessToken, data),
    await decrypt(app, accessToken, sealRaw(SESSION_KEY, 'not json')),
    await decrypt(app, accessToken, { ...data, iv: 'AAAA' }),
    await decrypt(app, accessToken, { ...data, raw_data: 'x', signature: 'y' }),
  ]
  for (const response of responses) bodies.push(await response.text())
  t.ok(bodies.length >= 30, `${bodies.length} response bodies of this file checked`)
  t.notOk(bodies.some((body) => body.includes(SESSION_KEY)), 'never in a response body')
  t.notOk(app.logs.some((line) => line.includes(SESSION_KEY)), 'never in a log line')
  const raw = Buffer.from(SESSION_KEY, 'base64').toString('hex')
  t.notOk(app.logs.some((line) => line.includes(raw)) || bodies.some((body) => body.includes(raw)), 'not even as hex')
})
