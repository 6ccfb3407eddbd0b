import type { Clock } from './clock.js'
import type { Config } from './config.js'
import { SpentCodes } from './wechat/spent-codes.js'
import { migrateToLatest, openDatabase, type Db } from './db/connection.js'
import { loadSecretBox, type SecretBox } from './keys/data-key.js'
import { keyTiming, openKeyRing, type KeyRing } from './keys/key-ring.js'
import { createRateLimits, type RateLimits } from './http/rate-limit.js'
import type { Logger } from './log.js'
import { createAccessTokenManager, type AccessTokenManager } from './wechat/access-token.js'
import { createWeChatClient, type WeChatClient } from './wechat/client.js'
import { createSimulator, type Simulator } from './wechat/simulator/index.js'

/** Everything the app is built from. `createApp(deps)` reads nothing else: no globals, no environment. */
export interface AppDeps {
  config: Config
  db: Db
  /** The signing keys and their rotation schedule. */
  keys: KeyRing
  secretBox: SecretBox
  wechat: WeChatClient
  /** WeChat server-API access_tokens, per appid. */
  wechatTokens: AccessTokenManager
  /** wx.login() codes already sent to WeChat. */
  spentCodes: SpentCodes
  /** Rate limiters; absent when MINIGATE_RATE_LIMITS=off. */
  limits?: RateLimits
  clock: Clock
  log: Logger
  /** The WeChat simulator, when it is on: mounted at `/_dev/wechat`. */
  simulator?: Simulator
}

/**
 * Opens the database (migrating it), loads or generates the keys, and builds the WeChat client and
 * simulator that `config` asks for. `main.ts` and the tests build their apps with it.
 *
 * @example const deps = await buildDeps(loadConfig(process.env), { clock: systemClock, log })
 */
export async function buildDeps(config: Config, options: { clock: Clock; log: Logger; fetch?: typeof fetch }): Promise<AppDeps> {
  const secretBox = loadSecretBox(config.keysDir)
  const db = openDatabase(config.dbFile)
  let keys: KeyRing
  try {
    await migrateToLatest(db)
    keys = await openKeyRing({ dir: config.keysDir, db, clock: options.clock, timing: keyTiming(config), log: options.log })
  } catch (error) {
    await db.destroy()
    throw error
  }
  const wechat = createWeChatClient({
    apiBase: config.wechatApiBase,
    apps: config.apps,
    timeoutMs: config.wechatTimeoutMs,
    log: options.log,
    ...(options.fetch ? { fetch: options.fetch } : {}),
  })
  const wechatTokens = createAccessTokenManager({ wechat, clock: options.clock, log: options.log, api: config.wechatTokenApi })
  const deps: AppDeps = { config, db, keys, secretBox, wechat, wechatTokens, spentCodes: new SpentCodes(), clock: options.clock, log: options.log }
  if (config.rateLimits) deps.limits = createRateLimits(config.rateLimits, options.clock)
  if (config.simulator) deps.simulator = createSimulator({ apps: config.apps, clock: options.clock })
  return deps
}

/** Releases what `buildDeps` opened: caches' timers and the SQLite connection. */
export async function closeDeps(deps: AppDeps): Promise<void> {
  deps.spentCodes.close()
  deps.wechatTokens.close()
  await deps.db.destroy()
}
