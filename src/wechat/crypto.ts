import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

/**
 * Why WeChat data could not be opened. The format failures (`bad_iv`, `bad_encrypted_data`) need no key
 * and `bad_session_key` does not depend on the data, so each may be told apart; every failure that
 * depends on the key and the data is the one `decryption_failed`, or the answers would make a padding
 * oracle (see `decryptWeChatData`).
 */
export type DecryptFailure = 'bad_session_key' | 'bad_iv' | 'bad_encrypted_data' | 'decryption_failed'

export class DecryptError extends Error {
  override name = 'DecryptError'
  constructor(
    readonly failure: DecryptFailure,
    message: string,
  ) {
    super(message)
  }
}

/** The one message of every failure that depends on the session_key. */
export const DECRYPTION_FAILED =
  "the data does not open with this user's current session_key for this mini-program: call wx.login(), log in again, and fetch the data again"

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
 * The PKCS#7 padding length of a decrypted buffer (1 to 16), or 0 when its padding is invalid. Reads the
 * whole last block whatever its bytes say: how long this takes must not tell valid padding from invalid.
 */
function paddingLength(plaintext: Buffer): number {
  const end = plaintext.length
  const last = plaintext[end - 1] as number
  let bad = Number(last === 0) | Number(last > 16)
  for (let i = 1; i <= 16; i += 1) bad |= Number(i <= last) & Number(plaintext[end - i] !== last)
  return bad === 0 ? last : 0
}

/**
 * Opens WeChat's encryptedData: AES-128-CBC, PKCS#7, key = the session_key, then JSON whose
 * `watermark.appid` must be `appid` (WxJava and EasyWeChat skip that check; we don't).
 *
 * The data carries no MAC and the client chooses the iv, so an answer that told bad padding from bad
 * JSON from a wrong watermark would be a padding oracle: enough tries would let a client forge data that
 * opens. Every step that depends on the key therefore runs on every input (the padding check over the
 * whole last block, JSON.parse even after bad padding, the watermark check) and they fail as one
 * `decryption_failed`.
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
  const decipher = createDecipheriv('aes-128-cbc', key, iv)
  decipher.setAutoPadding(false)
  const padded = Buffer.concat([decipher.update(data), decipher.final()])
  const padding = paddingLength(padded)
  let parsed: unknown
  try {
    parsed = JSON.parse(padded.subarray(0, padded.length - padding).toString('utf8'))
  } catch {
    parsed = undefined
  }
  const object = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
  const watermark = object ? (parsed as { watermark?: { appid?: unknown } | null }).watermark : undefined
  const ours = typeof watermark === 'object' && watermark !== null && watermark.appid === input.appid
  if (padding === 0 || !object || !ours) throw new DecryptError('decryption_failed', DECRYPTION_FAILED)
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
