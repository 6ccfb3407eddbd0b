import { createCipheriv, createHash, createHmac, randomBytes } from 'node:crypto'
import t from 'tap'
import { DECRYPTION_FAILED, DecryptError, decryptWeChatData, encryptWeChatData, sessionKeySignature, verifyRawDataSignature } from '../../src/wechat/crypto.js'

// WeChat's own sample from its encryptedData documentation (also the test vector of most server SDKs).
const SAMPLE = {
  appid: 'wx4f4bc4dec97d474b',
  sessionKey: 'tiihtNczf5v6AKRyjwEUhQ==',
  encryptedData:
    'CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==',
  iv: 'r7BXXKkLb8qrSNn05n0qiA==',
}

// The legacy getUserInfo sample: signature = sha1(rawData + session_key).
const RAW_SAMPLE = {
  rawData:
    '{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}',
  signature: '75e81ceda165f4ffa64f4068af58c64b8f54b88c',
  sessionKey: 'HyVFkGl5F5OQWJZZaNzBBg==',
}

const APPID = 'wx0000000000000dev'
const KEY = 'HyVFkGl5F5OQWJZZaNzBBg=='

/** AES-128-CBC of arbitrary bytes with a session_key, as a phone would send them. */
function seal(sessionKey: string, plaintext: string | Buffer, iv = randomBytes(16)): { encryptedData: string; iv: string } {
  const cipher = createCipheriv('aes-128-cbc', Buffer.from(sessionKey, 'base64'), iv)
  return { encryptedData: Buffer.concat([cipher.update(plaintext), cipher.final()]).toString('base64'), iv: iv.toString('base64') }
}

function failureOf(run: () => unknown): string | undefined {
  try {
    run()
  } catch (error) {
    if (error instanceof DecryptError) return error.failure
    throw error
  }
  return undefined
}

t.test("WeChat's documented sample decrypts, watermark checked", async (t) => {
  const data = decryptWeChatData({ ...SAMPLE })
  t.equal(data.openId, 'oGZUI0egBJY1zhBYw2KhdUfwVJJE')
  t.equal(data.nickName, 'Band')
  t.equal(data.unionId, 'ocMvos6NjeKLIBqg5Mr9QjxrP1FA')
  t.same(data.watermark, { timestamp: 1477314187, appid: SAMPLE.appid })
  t.equal(failureOf(() => decryptWeChatData({ ...SAMPLE, appid: APPID })), 'decryption_failed', 'for another appid it is refused')
})

t.test('encrypt then decrypt round trip, with the watermark added', async (t) => {
  const data = { phoneNumber: '13800138000', nested: { list: [1, 2, 3] }, text: '小明 🐱', empty: '' }
  const sealed = encryptWeChatData({ sessionKey: KEY, data, watermarkAppid: APPID, timestamp: 1_800_000_000 })
  t.match(sealed.iv, /^[A-Za-z0-9+/]{22}==$/, 'iv: 16 bytes in base64')
  t.equal(Buffer.from(sealed.encryptedData, 'base64').length % 16, 0, 'whole blocks')
  t.notOk(sealed.encryptedData.includes('13800138000'), 'the plaintext does not show')
  const opened = decryptWeChatData({ sessionKey: KEY, encryptedData: sealed.encryptedData, iv: sealed.iv, appid: APPID })
  t.same(opened, { ...data, watermark: { appid: APPID, timestamp: 1_800_000_000 } })

  const again = encryptWeChatData({ sessionKey: KEY, data, watermarkAppid: APPID, timestamp: 1_800_000_000 })
  t.not(again.iv, sealed.iv, 'a fresh iv each time')
  t.not(again.encryptedData, sealed.encryptedData)
})

t.test('a data watermark field is replaced by the real one', async (t) => {
  const sealed = encryptWeChatData({ sessionKey: KEY, data: { watermark: { appid: 'wxforged' } }, watermarkAppid: APPID, timestamp: 1 })
  t.same(decryptWeChatData({ sessionKey: KEY, ...sealed, appid: APPID }).watermark, { appid: APPID, timestamp: 1 })
})

t.test("base64 whose '+' arrived as spaces is repaired", async (t) => {
  let sealed = encryptWeChatData({ sessionKey: KEY, data: { a: 1 }, watermarkAppid: APPID, timestamp: 1 })
  for (let tries = 0; !(sealed.encryptedData.includes('+') && sealed.iv.includes('+')) && tries < 10_000; tries += 1) {
    sealed = encryptWeChatData({ sessionKey: KEY, data: { a: 1 }, watermarkAppid: APPID, timestamp: 1 })
  }
  t.ok(sealed.encryptedData.includes('+') && sealed.iv.includes('+'), 'a sample with + in both')
  const spaced = { encryptedData: sealed.encryptedData.replace(/\+/g, ' '), iv: sealed.iv.replace(/\+/g, ' ') }
  t.equal(decryptWeChatData({ sessionKey: KEY, ...spaced, appid: APPID }).a, 1)

  const keyWithPlus = 'ab+cdefghijklmnopqrstu=='
  const withKey = encryptWeChatData({ sessionKey: keyWithPlus, data: { b: 2 }, watermarkAppid: APPID, timestamp: 1 })
  t.equal(decryptWeChatData({ sessionKey: keyWithPlus, ...withKey, appid: APPID }).b, 2, 'a session_key with + works')
})

t.test('malformed input has its own DecryptError; every failure that depends on the key is decryption_failed', async (t) => {
  const good = encryptWeChatData({ sessionKey: KEY, data: { a: 1 }, watermarkAppid: APPID, timestamp: 1 })
  const open = (overrides: Partial<{ sessionKey: string; encryptedData: string; iv: string; appid: string }>) =>
    failureOf(() => decryptWeChatData({ sessionKey: KEY, ...good, appid: APPID, ...overrides }))

  t.equal(open({}), undefined, 'the unchanged input opens')

  t.equal(open({ sessionKey: '' }), 'bad_session_key', 'empty session_key')
  t.equal(open({ sessionKey: 'HyVFkGl5F5OQWJZZaNzBBg=' }), 'bad_session_key', '23 characters')
  t.equal(open({ sessionKey: 'AAAAAAAAAAAAAAAAAAAAAAAA' }), 'bad_session_key', '24 characters but 18 bytes')
  t.equal(open({ sessionKey: 'HyVFkGl5F5OQWJZZaNzBB!==' }), 'bad_session_key', 'not base64')

  t.equal(open({ iv: randomBytes(12).toString('base64') }), 'bad_iv', 'a 12-byte iv')
  t.equal(open({ iv: randomBytes(17).toString('base64') }), 'bad_iv', 'a 17-byte iv')
  t.equal(open({ iv: '' }), 'bad_iv', 'an empty iv')
  t.equal(open({ iv: '!!!!!!!!!!!!!!!!!!!!!!==' }), 'bad_iv', 'an iv that is not base64')
  t.equal(open({ iv: randomBytes(16).toString('base64url').padEnd(24, '=').replace(/^./, '-') }), 'bad_iv', 'base64url is not base64')

  t.equal(open({ encryptedData: 'not base64 at all!' }), 'bad_encrypted_data', 'not base64')
  t.equal(open({ encryptedData: '' }), 'bad_encrypted_data', 'empty')
  t.equal(open({ encryptedData: randomBytes(15).toString('base64') }), 'bad_encrypted_data', '15 bytes')
  t.equal(open({ encryptedData: randomBytes(17).toString('base64') }), 'bad_encrypted_data', '17 bytes')
  t.equal(open({ encryptedData: `${good.encryptedData.slice(0, 20)}\n${good.encryptedData.slice(20)}` }), 'bad_encrypted_data', 'a line break inside')
  t.equal(open({ encryptedData: good.encryptedData.slice(0, -2) }), 'bad_encrypted_data', 'cut short')

  const keyDependent: Array<[string, { encryptedData: string; iv: string } | { appid: string }]> = [
    ['data sealed with another key', seal('AAAAAAAAAAAAAAAAAAAAAA==', JSON.stringify({ a: 1, watermark: { appid: APPID } }))],
    // 16 zero bytes sealed with a zero iv: the first block alone decrypts to zeros, whose last byte is no padding.
    ['a block without its padding block', (() => {
      const zeros = seal(KEY, Buffer.alloc(16), Buffer.alloc(16))
      return { encryptedData: Buffer.from(zeros.encryptedData, 'base64').subarray(0, 16).toString('base64'), iv: zeros.iv }
    })()],
    ['padding bytes that disagree', seal(KEY, Buffer.concat([Buffer.from('{"watermark":{"appid":"wx0000000000000dev"}}'), Buffer.from([3, 3, 2])]))],
    ['plaintext text', seal(KEY, 'hello, not JSON')],
    ['plaintext an array', seal(KEY, '[1,2,3]')],
    ['plaintext a string', seal(KEY, '"watermark"')],
    ['plaintext null', seal(KEY, 'null')],
    ['plaintext a number', seal(KEY, '42')],
    ['plaintext truncated JSON', seal(KEY, '{"a":1,"watermark":{"appid":"wx0000000000000dev"')],
    ['another appid', { appid: 'wxother0000000000' }],
    ['no watermark at all', seal(KEY, JSON.stringify({ a: 1 }))],
    ['a watermark that is not an object', seal(KEY, JSON.stringify({ a: 1, watermark: 'wx0000000000000dev' }))],
    ['a null watermark', seal(KEY, JSON.stringify({ a: 1, watermark: null }))],
    ['an appid that is not a string', seal(KEY, JSON.stringify({ a: 1, watermark: { appid: ['wx0000000000000dev'] } }))],
    ['an appid in other case', seal(KEY, JSON.stringify({ a: 1, watermark: { appid: 'WX0000000000000DEV' } }))],
  ]
  for (const [name, overrides] of keyDependent) t.equal(open(overrides), 'decryption_failed', `${name}: decryption_failed`)
})

t.test('no padding oracle: every iv byte gives data that opens or the same decryption_failed', async (t) => {
  // The attack: one block of real data, the last iv byte tried 256 ways. Exactly the values that make
  // valid padding used to answer differently (not_json instead of bad_padding).
  const sealed = encryptWeChatData({ sessionKey: KEY, data: { a: 1 }, watermarkAppid: APPID, timestamp: 1 })
  const lastBlock = Buffer.from(sealed.encryptedData, 'base64').subarray(-16)
  const previous = Buffer.from(sealed.encryptedData, 'base64').subarray(-32, -16)
  const answers = new Map<string, number>()
  for (let byte = 0; byte < 256; byte += 1) {
    const iv = Buffer.from(previous)
    iv[15] = byte
    let answer = 'opened'
    try {
      decryptWeChatData({ sessionKey: KEY, encryptedData: lastBlock.toString('base64'), iv: iv.toString('base64'), appid: APPID })
    } catch (error) {
      answer = `${(error as DecryptError).failure}: ${(error as DecryptError).message}`
    }
    answers.set(answer, (answers.get(answer) ?? 0) + 1)
  }
  t.same([...answers.keys()], [`decryption_failed: ${DECRYPTION_FAILED}`], 'one failure and one message for all 256')
  t.equal(answers.get(`decryption_failed: ${DECRYPTION_FAILED}`), 256)
})

t.test('DecryptError messages are fit for the client and never hold the key', async (t) => {
  const stale = seal('AAAAAAAAAAAAAAAAAAAAAA==', 'x'.repeat(40))
  t.throws(() => decryptWeChatData({ sessionKey: KEY, ...stale, appid: APPID }), { name: 'DecryptError', failure: 'decryption_failed', message: /wx\.login/ }, 'tells to call wx.login() again')
  t.notOk(DECRYPTION_FAILED.includes(KEY), 'the session_key is not in the message')
  t.throws(
    () => decryptWeChatData({ sessionKey: 'bad', encryptedData: '', iv: '', appid: APPID }),
    { name: 'DecryptError', failure: 'bad_session_key', message: /wx\.login/ },
    'the session_key is checked first, and an unusable one tells to call wx.login() again',
  )
})

t.test('verifyRawDataSignature: sha1(rawData + session_key), hex', async (t) => {
  t.ok(verifyRawDataSignature(RAW_SAMPLE.rawData, RAW_SAMPLE.signature, RAW_SAMPLE.sessionKey), "WeChat's documented sample")
  const computed = createHash('sha1').update(`{"a":"小明"}${KEY}`).digest('hex')
  t.ok(verifyRawDataSignature('{"a":"小明"}', computed, KEY), 'UTF-8 raw data')
  t.notOk(verifyRawDataSignature(`${RAW_SAMPLE.rawData} `, RAW_SAMPLE.signature, RAW_SAMPLE.sessionKey), 'other raw data')
  t.notOk(verifyRawDataSignature(RAW_SAMPLE.rawData, RAW_SAMPLE.signature, 'AAAAAAAAAAAAAAAAAAAAAA=='), 'another session_key')
  const flipped = `${RAW_SAMPLE.signature.slice(0, -1)}${RAW_SAMPLE.signature.endsWith('c') ? 'd' : 'c'}`
  t.notOk(verifyRawDataSignature(RAW_SAMPLE.rawData, flipped, RAW_SAMPLE.sessionKey), 'one hex digit off')
  t.notOk(verifyRawDataSignature(RAW_SAMPLE.rawData, RAW_SAMPLE.signature.slice(0, 38), RAW_SAMPLE.sessionKey), 'too short')
  t.notOk(verifyRawDataSignature(RAW_SAMPLE.rawData, `${RAW_SAMPLE.signature}00`, RAW_SAMPLE.sessionKey), 'too long')
  t.notOk(verifyRawDataSignature(RAW_SAMPLE.rawData, '', RAW_SAMPLE.sessionKey), 'empty')
  t.notOk(verifyRawDataSignature(RAW_SAMPLE.rawData, 'z'.repeat(40), RAW_SAMPLE.sessionKey), 'not hex')
  const sha256 = createHash('sha256').update(RAW_SAMPLE.rawData + RAW_SAMPLE.sessionKey).digest('hex')
  t.notOk(verifyRawDataSignature(RAW_SAMPLE.rawData, sha256, RAW_SAMPLE.sessionKey), 'a SHA-256 is not accepted')
  const reversed = createHash('sha1').update(RAW_SAMPLE.sessionKey + RAW_SAMPLE.rawData).digest('hex')
  t.notOk(verifyRawDataSignature(RAW_SAMPLE.rawData, reversed, RAW_SAMPLE.sessionKey), 'sha1(session_key + rawData) is not accepted')
})

t.test('sessionKeySignature: HMAC-SHA256 keyed with the session_key string, over "", lowercase hex', async (t) => {
  // Computed independently: printf '' | openssl dgst -sha256 -hmac 'HyVFkGl5F5OQWJZZaNzBBg=='
  t.equal(sessionKeySignature(KEY), '252b75c92698025afe925b29cca5517fdf9ee67aae072cf3225ebf3a53783058')
  const signature = sessionKeySignature(SAMPLE.sessionKey)
  t.match(signature, /^[0-9a-f]{64}$/, 'lowercase hex')
  t.equal(signature, createHmac('sha256', Buffer.from(SAMPLE.sessionKey, 'utf8')).update('').digest('hex'))
  t.not(signature, createHmac('sha256', Buffer.from(SAMPLE.sessionKey, 'base64')).update('').digest('hex'), 'not keyed with the decoded bytes')
  t.not(sessionKeySignature(KEY), sessionKeySignature(SAMPLE.sessionKey), 'depends on the key')
})
