import { createHash, randomBytes } from 'node:crypto'
import type { Clock } from '../../clock.js'
import type { WeChatApp } from '../../config.js'

/** The WeChat APIs the simulator serves, by the last segment of their path. */
export const SIMULATED_APIS = ['jscode2session', 'stable_token', 'token', 'getuserphonenumber', 'checksession'] as const
export type SimulatedApi = (typeof SIMULATED_APIS)[number]

export const FAULT_MODES = ['busy', 'rate_limit', 'http_500', 'garbage', 'timeout'] as const
export type FaultMode = (typeof FAULT_MODES)[number]

/** A wx.login() code lives 5 minutes and works once, as on WeChat. */
export const CODE_TTL_MS = 5 * 60 * 1000
/** WeChat access_tokens live 7200 s; a replaced one keeps working for 5 more minutes. */
export const ACCESS_TOKEN_TTL_MS = 7200 * 1000
export const ACCESS_TOKEN_OVERLAP_MS = 5 * 60 * 1000

/** Bounds on the simulator's memory: it may be reachable by anyone who reaches a development server. */
const MAX_PENDING_CODES = 100_000
const MAX_USERS = 100_000

interface PendingCode {
  appid: string
  openid: string
  unionid: string | null
  sessionKey: string
  expiresAt: number
  used: boolean
}

interface PendingPhoneCode {
  appid: string
  countryCode: string
  purePhoneNumber: string
  watermarkAppid: string
  expiresAt: number
}

interface IssuedAccessToken {
  appid: string
  kind: 'stable_token' | 'token'
  expiresAt: number
}

export interface SimulatedUser {
  sessionKey: string
  unionid: string | null
}

/** The simulator's memory: WeChat's users per app, outstanding codes, armed faults, call counts. */
export class SimulatorState {
  readonly users = new Map<string, SimulatedUser>()
  readonly calls: Record<SimulatedApi, number> = { jscode2session: 0, stable_token: 0, token: 0, getuserphonenumber: 0, checksession: 0 }
  private readonly codes = new Map<string, PendingCode>()
  private readonly phoneCodes = new Map<string, PendingPhoneCode>()
  private readonly accessTokens = new Map<string, IssuedAccessToken>()
  private readonly stableTokens = new Map<string, string>()
  private readonly faults = new Map<SimulatedApi, { mode: FaultMode; remaining: number }>()

  constructor(
    readonly apps: WeChatApp[],
    private readonly clock: Clock,
  ) {}

  app(appid: string): WeChatApp | undefined {
    return this.apps.find((app) => app.appid === appid)
  }

  /** The openid a phone gets when the caller names none: stable per app, like a real WeChat user. */
  static defaultOpenid(appid: string): string {
    return `o${createHash('sha256').update(`${appid}:default-user`).digest('base64url').slice(0, 27)}`
  }

  static newSessionKey(): string {
    return randomBytes(16).toString('base64')
  }

  /** What wx.login() does: a new session_key for the user (newest wins) and a single-use code. */
  login(input: { appid: string; openid: string; unionid?: string; sessionKey?: string }): string {
    const userKey = `${input.appid}:${input.openid}`
    const previous = this.users.get(userKey)
    this.users.delete(userKey)
    if (this.users.size >= MAX_USERS) this.users.delete(this.users.keys().next().value as string)
    const user: SimulatedUser = {
      sessionKey: input.sessionKey ?? SimulatorState.newSessionKey(),
      unionid: input.unionid ?? previous?.unionid ?? null,
    }
    this.users.set(userKey, user)
    this.pruneCodes()
    const code = randomBytes(24).toString('base64url')
    this.codes.set(code, {
      appid: input.appid,
      openid: input.openid,
      unionid: user.unionid,
      sessionKey: user.sessionKey,
      expiresAt: this.clock.now() + CODE_TTL_MS,
      used: false,
    })
    return code
  }

  /** Spends a code for `appid`: the WeChat errcode on failure, the session on success. */
  redeem(appid: string, code: string): { errcode: 40029 | 40163 } | PendingCode {
    const pending = this.codes.get(code)
    if (!pending || pending.appid !== appid || pending.expiresAt <= this.clock.now()) return { errcode: 40029 }
    if (pending.used) return { errcode: 40163 }
    pending.used = true
    return pending
  }

  /** What the getPhoneNumber button gives: a single-use code for a phone number, valid 5 minutes. */
  phoneCode(input: { appid: string; countryCode: string; purePhoneNumber: string; watermarkAppid?: string }): string {
    const now = this.clock.now()
    for (const [pendingCode, pending] of this.phoneCodes) {
      if (pending.expiresAt > now && this.phoneCodes.size < MAX_PENDING_CODES) break
      this.phoneCodes.delete(pendingCode)
    }
    const code = randomBytes(24).toString('hex')
    this.phoneCodes.set(code, {
      appid: input.appid,
      countryCode: input.countryCode,
      purePhoneNumber: input.purePhoneNumber,
      watermarkAppid: input.watermarkAppid ?? input.appid,
      expiresAt: now + CODE_TTL_MS,
    })
    return code
  }

  /** Spends a phone code; unknown, expired, used or another app's codes are all 40029, like WeChat. */
  redeemPhoneCode(appid: string, code: string): PendingPhoneCode | undefined {
    const pending = this.phoneCodes.get(code)
    this.phoneCodes.delete(code)
    if (!pending || pending.appid !== appid || pending.expiresAt <= this.clock.now()) return undefined
    return pending
  }

  /**
   * Issues an access_token. `stable_token` returns the app's current stable token while it is valid;
   * the plain `token` API always issues a new one, and every older plain token of the app then dies
   * after a 5-minute overlap.
   */
  issueAccessToken(appid: string, kind: 'stable_token' | 'token', forceRefresh = false): { accessToken: string; expiresIn: number } {
    const now = this.clock.now()
    if (kind === 'stable_token' && !forceRefresh) {
      const current = this.stableTokens.get(appid)
      const issued = current === undefined ? undefined : this.accessTokens.get(current)
      if (current !== undefined && issued && issued.expiresAt > now) {
        return { accessToken: current, expiresIn: Math.floor((issued.expiresAt - now) / 1000) }
      }
    }
    for (const issued of this.accessTokens.values()) {
      if (issued.appid === appid && issued.kind === kind) issued.expiresAt = Math.min(issued.expiresAt, now + ACCESS_TOKEN_OVERLAP_MS)
    }
    for (const [token, issued] of this.accessTokens) {
      if (issued.expiresAt <= now) this.accessTokens.delete(token)
    }
    const accessToken = `${kind === 'stable_token' ? 'S' : 'T'}_${randomBytes(24).toString('base64url')}`
    this.accessTokens.set(accessToken, { appid, kind, expiresAt: now + ACCESS_TOKEN_TTL_MS })
    if (kind === 'stable_token') this.stableTokens.set(appid, accessToken)
    return { accessToken, expiresIn: ACCESS_TOKEN_TTL_MS / 1000 }
  }

  /** The app an access_token belongs to, or WeChat's errcode: 40001 unknown, 42001 expired. */
  checkAccessToken(accessToken: string): { appid: string } | { errcode: 40001 | 42001 } {
    const issued = this.accessTokens.get(accessToken)
    if (!issued) return { errcode: 40001 }
    if (issued.expiresAt <= this.clock.now()) return { errcode: 42001 }
    return { appid: issued.appid }
  }

  /** Kills every access_token of an app at once, as a token reset on WeChat's side would. */
  invalidateAccessTokens(appid: string): void {
    for (const [token, issued] of this.accessTokens) {
      if (issued.appid === appid) this.accessTokens.delete(token)
    }
    this.stableTokens.delete(appid)
  }

  arm(api: SimulatedApi, mode: FaultMode, count: number): void {
    if (count === 0) this.faults.delete(api)
    else this.faults.set(api, { mode, remaining: count })
  }

  /** Counts a call of `api` and returns the fault it must suffer, if one is armed. */
  nextCall(api: SimulatedApi): FaultMode | undefined {
    this.calls[api] += 1
    const fault = this.faults.get(api)
    if (!fault) return undefined
    fault.remaining -= 1
    if (fault.remaining <= 0) this.faults.delete(api)
    return fault.mode
  }

  /** Codes expire in the order they were minted, so expired ones are always at the front of the map. */
  private pruneCodes(): void {
    const now = this.clock.now()
    for (const [code, pending] of this.codes) {
      if (pending.expiresAt > now && this.codes.size < MAX_PENDING_CODES) break
      this.codes.delete(code)
    }
  }
}
