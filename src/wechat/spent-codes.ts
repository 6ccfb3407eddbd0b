import { createHash } from 'node:crypto'
import NodeCache from 'node-cache'

/** A wx.login() code lives 5 minutes on WeChat; remembering it longer is useless. */
const CODE_LIFETIME_SECONDS = 5 * 60
const MAX_REMEMBERED = 200_000

/**
 * The codes this process has sent to WeChat, so a replayed code (or the second of two concurrent
 * requests with one code) is refused without another upstream call. Codes are kept as hashes.
 * Across instances WeChat's own 40163 still catches a reuse.
 */
export class SpentCodes {
  private readonly cache = new NodeCache({ stdTTL: CODE_LIFETIME_SECONDS, checkperiod: 60, useClones: false, maxKeys: MAX_REMEMBERED })

  private static key(appid: string, code: string): string {
    return createHash('sha256').update(`${appid}\n${code}`).digest('base64url')
  }

  /** Marks a code as spent; false when it already was. */
  claim(appid: string, code: string): boolean {
    const key = SpentCodes.key(appid, code)
    if (this.cache.has(key)) return false
    try {
      this.cache.set(key, true)
    } catch {
      // Full: WeChat's 40163 still refuses a reused code.
    }
    return true
  }

  /** Forgets a code WeChat did not consume (it was busy or unreachable), so the client may retry it. */
  release(appid: string, code: string): void {
    this.cache.del(SpentCodes.key(appid, code))
  }

  close(): void {
    this.cache.close()
  }
}
