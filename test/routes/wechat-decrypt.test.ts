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

/** A failure that depends on the session_key: always this one answer. */
async function expectUndecryptable(t: Test, response: Response, name: string): Promise<string> {
  const body = await expectError(t, response, 400, 'decryption_failed', name)
  t.match(body.error_description, /wx\.login\(\)/, `${name}: tells to call wx.login() again`)
  return JSON.stringify(body)
}

t.test('malformed input gets its own 400; every failure that depends on the session_key is one answer', async (t) => {
  const app = await start(t)
  const accessToken = await loginWithKey(app, { openid: 'o-decrypt', session_key: SESSION_KEY })
  const good = await sealed(app, { a: 1 }, { openid: 'o-decrypt' })
  const fail = async (body: Record<string, string>, error: string, name: string) => expectError(t, await decrypt(app, accessToken, body), 400, error, name)

  // Format checks need no key: telling them apart helps a client and tells an attacker nothing.
  await fail({ ...good, iv: randomBytes(12).toString('base64') }, 'bad_iv', 'a 12-byte iv')
  await fail({ ...good, iv: 'not an iv at all, no!!!!' }, 'bad_iv', 'an iv that is not base64')
  await fail({ ...good, encrypted_data: 'this is not base64!' }, 'bad_encrypted_data', 'encrypted_data not base64')
  await fail({ ...good, encrypted_data: randomBytes(15).toString('base64') }, 'bad_encrypted_data', 'not a multiple of 16 bytes')

  const answers = new Set<string>()
  const undecryptable = async (body: Record<string, string>, name: string) => answers.add(await expectUndecryptable(t, await decrypt(app, accessToken, body), name))
  await undecryptable(await sealed(app, { a: 1 }, { openid: 'o-decrypt', watermark_appid: 'wxother0000000000' }), 'another app (was watermark_mismatch)')
  await undecryptable(sealRaw(SESSION_KEY, 'hello, this is not JSON'), 'a non-JSON plaintext (was not_json)')
  await undecryptable(sealRaw(SESSION_KEY, '["an","array"]'), 'a JSON array (was not_json)')
  await undecryptable(sealRaw('AAAAAAAAAAAAAAAAAAAAAA==', JSON.stringify({ a: 1, watermark: { appid: DEV_APP.appid } })), 'another key (was bad_padding)')
  await undecryptable({ ...good, raw_data: '{"nickName":"Band"}', signature: '0'.repeat(40) }, 'a wrong signature (was bad_signature)')
  t.equal(answers.size, 1, 'one and the same body for all of them')

  const again = await expectData(t, await decrypt(app, accessToken, good), 'the good data still opens')
  t.equal(again.a, 1)
})

t.test('no padding oracle: 256 iv bytes over HTTP give one answer', async (t) => {
  const app = await start(t)
  const accessToken = await loginWithKey(app, { openid: 'o-oracle', session_key: SESSION_KEY })
  const good = await sealed(app, { a: 1 }, { openid: 'o-oracle' })
  const blocks = Buffer.from(good.encrypted_data, 'base64')
  const lastBlock = blocks.subarray(-16).toString('base64')
  const answers = new Map<string, number>()
  for (let byte = 0; byte < 256; byte += 1) {
    // The attacker's move: the last block alone, behind an iv of their choice; about 1 in 256 has valid padding.
    const iv = Buffer.from(blocks.subarray(-32, -16))
    iv[15] = byte
    const response = await decrypt(app, accessToken, { encrypted_data: lastBlock, iv: iv.toString('base64') })
    const answer = `${response.status} ${response.headers.get('content-length')} ${await response.text()}`
    answers.set(answer, (answers.get(answer) ?? 0) + 1)
  }
  t.equal(answers.size, 1, `one answer for every iv (${[...answers.keys()].join(' | ').slice(0, 300)})`)
  t.match([...answers.keys()][0], /^400 \d+ \{"error":"decryption_failed"/)
  const warnings = app.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.event === 'wechat_decrypt_failed')
  t.equal(warnings.length, 256, 'every failure is logged')
  t.equal(warnings.at(-1)?.failures, 256, 'with a running count')
})

t.test('failed decryptions are logged with the sub and a running count, never the data, iv or key', async (t) => {
  const app = await start(t)
  const accessToken = await loginWithKey(app, { openid: 'o-logged', session_key: SESSION_KEY })
  const other = await loginWithKey(app, { openid: 'o-logged-other' })
  const sub = JSON.parse(Buffer.from(accessToken.split('.')[1] as string, 'base64url').toString()).sub as string
  const bad = sealRaw(SESSION_KEY, 'not json at all')
  for (let i = 0; i < 3; i += 1) await expectUndecryptable(t, await decrypt(app, accessToken, bad), `failure ${i + 1}`)
  await expectUndecryptable(t, await decrypt(app, other, sealRaw(SESSION_KEY, 'not json')), "another user's failure")
  await expectError(t, await decrypt(app, accessToken, { ...bad, iv: 'AAAA' }), 400, 'bad_iv', 'a malformed iv is no decryption')

  const warnings = app.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.event === 'wechat_decrypt_failed')
  t.equal(warnings.length, 4, 'one warning per failed decryption')
  t.same(warnings.slice(0, 3).map((line) => [line.level, line.sub, line.client_id, line.failures]), [1, 2, 3].map((count) => [40, sub, DEV_APP.appid, count]), 'a warning with the sub, the app and a running count')
  t.equal(warnings[3]?.failures, 1, 'counted per user')
  const logged = warnings.map((line) => JSON.stringify(line)).join('\n')
  for (const secret of [bad.encrypted_data, bad.iv, SESSION_KEY, Buffer.from(SESSION_KEY, 'base64').toString('hex')]) t.notOk(logged.includes(secret), 'no data, iv or key')
})

t.test('/wechat/decrypt and /wechat/phone are limited per user, each on its own', async (t) => {
  const app = await start(t, { MINIGATE_RATE_LIMITS: 'wechat=3' })
  const accessToken = await loginWithKey(app, { openid: 'o-limited' })
  const other = await loginWithKey(app, { openid: 'o-limited-other' })
  const good = await sealed(app, { a: 1 }, { openid: 'o-limited' })
  for (let i = 0; i < 3; i += 1) await expectData(t, await decrypt(app, accessToken, good), `request ${i + 1} of the minute`)
  const limited = await decrypt(app, accessToken, good)
  t.equal(limited.headers.get('retry-after'), '20', 'Retry-After: 3 a minute refill one every 20 s')
  const body = await expectError(t, limited, 429, 'too_many_requests', 'the fourth')
  t.match(body.error_description, /wechat\/decrypt/)
  await expectError(t, await decrypt(app, accessToken, { ...good, iv: 'AAAA' }), 429, 'too_many_requests', 'a malformed request counts too')
  const otherData = await sealed(app, { b: 1 }, { openid: 'o-limited-other' })
  await expectData(t, await decrypt(app, other, otherData), 'another user is not limited')
  const phone = await app.postJson('/wechat/phone', { code: 'x' }, { authorization: `Bearer ${accessToken}` })
  t.not(phone.status, 429, '/wechat/phone has its own budget')
  app.clock.advance(20)
  await expectData(t, await decrypt(app, accessToken, good), 'served again after Retry-After')
})

t.test('data encrypted with a replaced session_key: decryption_failed, which tells to call wx.login()', async (t) => {
  const app = await start(t)
  const accessToken = await loginWithKey(app, { openid: 'o-stale', session_key: SESSION_KEY })
  const old = await sealed(app, { a: 1, padding: 'x'.repeat(30) }, { openid: 'o-stale' })
  t.equal((await expectData(t, await decrypt(app, accessToken, old), 'before the new login')).a, 1)

  // A new wx.login() on the phone, sent to minigate: both hold the new session_key now.
  const newer = await loginWithKey(app, { openid: 'o-stale' })
  for (const [name, token] of [['the old login', accessToken], ['the new login', newer]] as const) {
    await expectUndecryptable(t, await decrypt(app, token, old), name)
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
  await expectUndecryptable(t, await decrypt(app, accessToken, { ...good, raw_data: `${rawData} `, signature }), 'changed raw_data')
  const stale = createHash('sha1').update(rawData + 'AAAAAAAAAAAAAAAAAAAAAA==').digest('hex')
  await expectUndecryptable(t, await decrypt(app, accessToken, { ...good, raw_data: rawData, signature: stale }), 'signed with another key')
  await expectUndecryptable(t, await decrypt(app, accessToken, { ...good, raw_data: rawData, signature: 'not-hex' }), 'not hex')
  await expectUndecryptable(t, await decrypt(app, accessToken, { ...sealRaw(SESSION_KEY, 'not json'), raw_data: rawData, signature }), 'a good signature does not make bad data open')
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
  await expectUndecryptable(t, await decrypt(app, tokenB, sealRaw(keyB, JSON.stringify({ x: 1, watermark: { appid: 'wxAAAA', timestamp: 1 } }))), 'B key, A watermark')
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
