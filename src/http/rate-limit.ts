import type { Context, Next } from 'koa'
import type { Clock } from '../clock.js'
import type { RateLimitSettings } from '../config.js'
import { TooManyRequests } from '../errors.js'
import type { Metrics } from '../metrics.js'
import type { AccessTokenClaims } from '../tokens/claims.js'

/** Keys a limiter remembers at most; the least recently seen are forgotten first. */
const MAX_KEYS = 100_000

/**
 * A token bucket per key: `perMinute` requests, refilled continuously, bursts up to `perMinute`.
 * In-process: each instance limits what it serves.
 *
 * @example if (limiter.take(ip) > 0) throw new TooManyRequests(...)
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>()

  constructor(
    readonly perMinute: number,
    private readonly clock: Clock,
    /** Called for each request this limiter refuses (the refusal counter of the metrics). */
    readonly onRefusal?: () => void,
  ) {}

  /** Seconds until `key` may make a request (0: now), without taking one. */
  wait(key: string): number {
    const tokens = this.available(key, this.clock.now())
    return tokens >= 1 ? 0 : this.secondsUntilOne(tokens)
  }

  /** Takes one request for `key`: 0 when allowed, else the seconds until one is. */
  take(key: string): number {
    const now = this.clock.now()
    const tokens = this.available(key, now)
    this.buckets.delete(key)
    if (this.buckets.size >= MAX_KEYS) this.buckets.delete(this.buckets.keys().next().value as string)
    if (tokens >= 1) {
      this.buckets.set(key, { tokens: tokens - 1, at: now })
      return 0
    }
    this.buckets.set(key, { tokens, at: now })
    return this.secondsUntilOne(tokens)
  }

  private available(key: string, now: number): number {
    const bucket = this.buckets.get(key)
    return bucket ? Math.min(this.perMinute, bucket.tokens + (now - bucket.at) * (this.perMinute / 60_000)) : this.perMinute
  }

  private secondsUntilOne(tokens: number): number {
    return Math.max(1, Math.ceil(((1 - tokens) * 60) / this.perMinute))
  }
}

/** The limiters of an app; absent when `MINIGATE_RATE_LIMITS=off`. */
export interface RateLimits {
  /** Requests to /token and /revoke per client IP. */
  ip: RateLimiter
  /** Refreshes per client (appid). */
  client: RateLimiter
  /** Refreshes per user. */
  user: RateLimiter
  /** Calls of each WeChat data endpoint (/wechat/decrypt, /wechat/phone) per user. */
  wechat: RateLimiter
}

export function createRateLimits(settings: RateLimitSettings, clock: Clock, metrics?: Metrics): RateLimits {
  const limiter = (name: keyof RateLimitSettings) => {
    const refused = metrics?.rateLimited.labels(name)
    return new RateLimiter(settings[name], clock, refused && (() => refused.inc()))
  }
  return { ip: limiter('ip'), client: limiter('client'), user: limiter('user'), wechat: limiter('wechat') }
}

/**
 * Throws 429 when `key` is over `limiter`'s rate; otherwise counts the request, unless `peek` (then the
 * caller `spend`s it once the request proved worth counting).
 */
export function enforce(limiter: RateLimiter | undefined, key: string, what: string, options: { peek?: boolean } = {}): void {
  const wait = (options.peek ? limiter?.wait(key) : limiter?.take(key)) ?? 0
  if (wait > 0) {
    limiter?.onRefusal?.()
    throw new TooManyRequests(`too many requests ${what}; try again in ${wait} s`, wait)
  }
}

/** Counts a request `enforce` only peeked at. */
export function spend(limiter: RateLimiter | undefined, key: string): void {
  limiter?.take(key)
}

/**
 * The rate-limit key of an address: IPv4 as is, IPv6 by its /64 prefix (one subscriber's network: a
 * client can pick any address inside it).
 */
export function addressKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)
  if (mapped) return mapped[1] as string
  if (!ip.includes(':')) return ip
  const [head = '', tail = ''] = ip.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = ip.includes('::') && tail !== '' ? tail.split(':') : []
  const groups = ip.includes('::') ? [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right] : left
  return `${groups.slice(0, 4).map((group) => group.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`
}

/** Limits requests per client IP (`ctx.ip`: X-Forwarded-For is used only when MINIGATE_TRUST_PROXY is set). */
export function limitByIp(limits: RateLimits | undefined) {
  return async function rateLimitByIp(ctx: Context, next: Next) {
    enforce(limits?.ip, addressKey(ctx.ip), 'from this address')
    await next()
  }
}

/**
 * Limits an endpoint's requests per user (the `sub` of the access token `requireAccessToken` checked);
 * each endpoint has its own bucket in `limiter`.
 */
export function limitByUser(limiter: RateLimiter | undefined, endpoint: string) {
  return async function rateLimitByUser(ctx: Context, next: Next) {
    const claims: AccessTokenClaims = ctx.state.claims
    enforce(limiter, `${endpoint} ${claims.sub}`, `to ${endpoint} for this user`)
    await next()
  }
}
