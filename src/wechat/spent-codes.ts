import { createHash } from 'node:crypto'
import NodeCache from 'node-cache'
import { epochSeconds, type Clock } from '../clock.js'
import type { Db } from '../db/connection.js'
import { claimCode, releaseCode } from '../db/spent-codes.js'

/** A wx.login() or getPhoneNumber code lives 5 minutes on WeChat; remembering it longer is useless. */
export const CODE_LIFETIME_SECONDS = 5 * 60
const MAX_REMEMBERED = 200_000

/**
 * The codes sent to WeChat, so that a replayed code (or the second of two concurrent requests with one
 * code) is refused without another upstream call: a code reaches WeChat at most once (each phone-number
 * success is billed). Codes are kept only as hashes.
 */
export interface SpentCodes {
  /** Marks a code as spent; false when it already was. `kind` separates login and phone codes. */
  claim(kind: string, appid: string, code: string): Promise<boolean>
  /** Forgets a code WeChat did not consume (it was busy or unreachable), so the client may retry it. */
  release(kind: string, appid: string, code: string): Promise<void>
  close(): void
}

function codeHash(kind: string, appid: string, code: string): string {
  return createHash('sha256').update(`${kind}\n${appid}\n${code}`).digest('base64url')
}

/** In memory: for one process on SQLite, where every request passes through this process. */
export function memorySpentCodes(): SpentCodes {
  const cache = new NodeCache({ stdTTL: CODE_LIFETIME_SECONDS, checkperiod: 60, useClones: false, maxKeys: MAX_REMEMBERED })
  return {
    async claim(kind, appid, code) {
      const key = codeHash(kind, appid, code)
      if (cache.has(key)) return false
      try {
        cache.set(key, true)
      } catch {
        // Full: WeChat's own 40163 still refuses a reused login code.
      }
      return true
    },
    async release(kind, appid, code) {
      cache.del(codeHash(kind, appid, code))
    },
    close() {
      cache.close()
    },
  }
}

/**
 * In the database: shared by every instance on PostgreSQL, so a code replayed to another instance is
 * refused too. A claim is one insert that only one instance's can succeed; expired rows are purged.
 */
export function databaseSpentCodes(db: Db, clock: Clock): SpentCodes {
  return {
    claim: (kind, appid, code) => claimCode(db, codeHash(kind, appid, code), epochSeconds(clock) + CODE_LIFETIME_SECONDS),
    release: (kind, appid, code) => releaseCode(db, codeHash(kind, appid, code)),
    close() {},
  }
}
