import { createHash, randomBytes } from 'node:crypto'
import type { Clock } from '../../clock.js'
import type { WeChatApp } from '../../config.js'

/** The WeChat APIs the simulator serves, by the last segment of their path. */
export const SIMULATED_APIS = ['jscode2session'] as const
export type SimulatedApi = (typeof SIMULATED_APIS)[number]

export const FAULT_MODES = ['busy', 'rate_limit', 'http_500', 'garbage', 'timeout'] as const
export type FaultMode = (typeof FAULT_MODES)[number]

/** A wx.login() code lives 5 minutes and works once, as on WeChat. */
export const CODE_TTL_MS = 5 * 60 * 1000

const MAX_PENDING_CODES = 100_000

interface PendingCode {
  appid: string
  openid: string
  unionid: string | null
  sessionKey: string
  expiresAt: number
  used: boolean
}

export interface SimulatedUser {
  sessionKey: string
  unionid: string | null
}

/** The simulator's memory: WeChat's users per app, outstanding codes, armed faults, call counts. */
export class SimulatorState {
  readonly users = new Map<string, SimulatedUser>()
  readonly calls: Record<SimulatedApi, number> = { jscode2session: 0 }
  private readonly codes = new Map<string, PendingCode>()
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
