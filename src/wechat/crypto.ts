import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

/** Why WeChat data could not be opened. Each is a distinct client error. */
export type DecryptFailure =
  | 'bad_session_key'
  | 'bad_iv'
  | 'bad_encrypted_data'
  | 'bad_padding'
  | 'not_json'
  | 'watermark_mismatch'

export class DecryptError extends Error {
  override name = 'DecryptError'
  constructor(
    readonly failure: DecryptFailure,
    message: string,
  ) {
    super(message)
  }
}

/** A WeChat session_key: 16 bytes in base64, 24 characters. */
export const SESSION_KEY_FORMAT = /^[A-Za-z0-9+/]{22}==$/

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

/**
 * Strict base64, after repairing the commonest client bug: base64 sent in a form field unencoded, so
 * every `+` arrived as a space.
 */
function base64(value: string): Buffer | undefined {
  const repaired = value.replace(/ /g, '+')
  return BASE64.test(repaired) ? Buffer.from(repaired, 'base64') : undefined
}

/**
 * Opens WeChat's encryptedData: AES-128-CBC, PKCS#7, key = the session_key, then JSON whose
 * `watermark.appid` must be `appid` (WxJava and EasyWeChat skip that check; we don't).
 *
 * @example const data = decryptWeChatData({ sessionKey, encryptedData, iv, appid })
 */
export function decryptWeChatData(input: { sessionKey: string; encryptedData: string; iv: string; appid: string }): Record<string, unknown> {
  const key = input.sessionKey.length === 24 ? base64(input.sessionKey) : undefined
  if (!key || key.length !== 16) throw new DecryptError('bad_session_key', 'the stored session_key is unusable; call wx.login() again')
  const iv = input.iv.length === 24 ? base64(input.iv) : undefined
  if (!iv || iv.length !== 16) throw new DecryptError('bad_iv', 'iv must be 16 bytes in base64 (24 characters)')
  const data = base64(input.encryptedData)
  if (!data || data.length === 0 || data.length % 16 !== 0) {
    throw new DecryptError('bad_encrypted_data', 'encrypted_data must be base64 of a whole number of 16-byte blocks')
  }
  let plaintext: string
  try {
    const decipher = createDecipheriv('aes-128-cbc', key, iv)
    plaintext = Buffer.concat([decipher.update(data), decipher.final()]).toString('utf8')
  } catch {
    throw new DecryptError('bad_padding', 'the data does not decrypt with the current session_key: it is stale, call wx.login() and fetch the data again')
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(plaintext)
  } catch {
    parsed = undefined
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new DecryptError('not_json', 'the decrypted data is not a JSON object: the session_key or iv does not match the data')
  }
  const watermark = (parsed as { watermark?: { appid?: unknown } }).watermark
  if (watermark?.appid !== input.appid) throw new DecryptError('watermark_mismatch', 'the data was encrypted for another mini-program')
  return parsed as Record<string, unknown>
}

/** Encrypts data the way WeChat does, with a watermark; the simulator uses it to play the phone. */
export function encryptWeChatData(input: { sessionKey: string; data: Record<string, unknown>; watermarkAppid: string; timestamp: number }): { encryptedData: string; iv: string } {
  const iv = randomBytes(16)
  const cipher = createCipheriv('aes-128-cbc', Buffer.from(input.sessionKey, 'base64'), iv)
  const plaintext = JSON.stringify({ ...input.data, watermark: { appid: input.watermarkAppid, timestamp: input.timestamp } })
  return { encryptedData: Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]).toString('base64'), iv: iv.toString('base64') }
}

/** The legacy getUserInfo check: `signature == sha1(rawData + session_key)`, compared in constant time. */
export function verifyRawDataSignature(rawData: string, signature: string, sessionKey: string): boolean {
  if (!/^[0-9a-fA-F]{40}$/.test(signature)) return false
  const expected = createHash('sha1').update(rawData + sessionKey).digest()
  return timingSafeEqual(expected, Buffer.from(signature, 'hex'))
}

/** checksession's signature: HMAC-SHA256 keyed with the session_key string's UTF-8 bytes, over "". */
export function sessionKeySignature(sessionKey: string): string {
  return createHmac('sha256', Buffer.from(sessionKey, 'utf8')).update('').digest('hex')
}
