import type { Clock } from './clock.js'
import type { Config } from './config.js'
import { migrateToLatest, openDatabase, type Db, type Trx } from './db/connection.js'
import { dialectOf } from './db/dialect.js'
import { groupCommit, openWalSync, type WalSync } from './db/group-commit.js'
import { loadSecretBox, type SecretBox } from './keys/data-key.js'
import { keyTiming, openKeyRing, type KeyRing } from './keys/key-ring.js'
import type { KeyGenerator } from './keys/signing-keys.js'
import { createRateLimits, type RateLimits } from './http/rate-limit.js'
import { safeError, type Logger } from './log.js'
import { createMetrics, type Metrics } from './metrics.js'
import { createAccessTokenManager, type AccessTokenManager } from './wechat/access-token.js'
import { createWeChatClient, type WeChatClient } from './wechat/client.js'
import type { WeChatFetch } from './wechat/http.js'
import { createSimulator, type Simulator } from './wechat/simulator/index.js'
import { databaseSpentCodes, memorySpentCodes, type SpentCodes } from './wechat/spent-codes.js'

/**
 * Runs a token-state change as one atomic, isolated unit and returns what `work` returned; if `work`
 * throws, nothing it wrote stays. Keep `work` short: no signing and no network inside.
 */
export type TransactionRunner = <T>(work: (trx: Trx) => Promise<T>) => Promise<T>

/** Everything the app is built from. `createApp(deps)` reads nothing else: no globals, no environment. */
export interface AppDeps {
  config: Config
  db: Db
  /** Runs token-state changes (see `TransactionRunner`). */
  transaction: TransactionRunner
  /** The signing keys and their rotation schedule. */
  keys: KeyRing
  secretBox: SecretBox
  wechat: WeChatClient
  /** WeChat server-API access_tokens, per appid. */
  wechatTokens: AccessTokenManager
  /** wx.login() and phone codes already sent to WeChat. */
  spentCodes: SpentCodes
  /** Rate limiters; absent when MINIGATE_RATE_LIMITS=off. */
  limits?: RateLimits
  clock: Clock
  log: Logger
  /** This app's Prometheus metrics (a registry of its own). */
  metrics: Metrics
  lifecycle: Lifecycle
  /** The WeChat simulator, when it is on: mounted at `/_dev/wechat`. */
  simulator?: Simulator
}

/** The server's state beyond its requests. */
export interface Lifecycle {
  /** Set by the server's `close()`: /readyz answers 503 while in-flight requests finish. */
  draining: boolean
  /** Set when SQLite's WAL could not be made durable: /healthz and /readyz answer 503, writes are refused. */
  storageFailed: boolean
  /** Called then; the server (main.ts) shuts down and exits 1 so that a supervisor restarts it. */
  onStorageFailure?: () => void
  /** The SQLite WAL file held open for syncs, closed with the database. */
  wal?: WalSync
}

export interface BuildOptions {
  clock: Clock
  log: Logger
  /** The WeChat client's HTTP (see `createWeChatClient`). */
  fetch?: WeChatFetch
  /** Makes new signing keys (RSA-2048 by default). */
  generateKey?: KeyGenerator
}

/**
 * Opens the database (migrating it), loads or generates the keys, and builds the WeChat client and
 * simulator that `config` asks for. `main.ts` and the tests build their apps with it.
 *
 * @example const deps = await buildDeps(loadConfig(process.env), { clock: systemClock, log })
 */
export async function buildDeps(config: Config, options: BuildOptions): Promise<AppDeps> {
  const secretBox = loadSecretBox({ dir: config.keysDir, keys: config.dataKeys })
  const db = openDatabase(config.dbFile, { poolSize: config.dbPoolSize })
  let keys: KeyRing
  try {
    await migrateToLatest(db)
    keys = await openKeyRing({ db, secretBox, clock: options.clock, timing: keyTiming(config), dir: config.keysDir, log: options.log, ...(options.generateKey ? { generateKey: options.generateKey } : {}) })
  } catch (error) {
    await db.destroy()
    throw error
  }
  const metrics = createMetrics({ secondsUntilKeyChange: () => keys.secondsUntilChange(), processMetrics: config.metricsPort !== null || config.metricsTokenHash !== null })
  const wechat = createWeChatClient({
    apiBase: config.wechatApiBase,
    apps: config.apps,
    timeoutMs: config.wechatTimeoutMs,
    log: options.log,
    metrics,
    ...(options.fetch ? { fetch: options.fetch } : {}),
  })
  const wechatTokens = createAccessTokenManager({ wechat, clock: options.clock, log: options.log, api: config.wechatTokenApi })
  // One process serves every request of a SQLite database; several instances share a PostgreSQL one.
  const spentCodes = dialectOf(db) === 'postgres' ? databaseSpentCodes(db, options.clock) : memorySpentCodes()
  // SQLite: one writer; concurrent changes share commits, made durable by a WAL fsync off the main thread.
  // PostgreSQL: a transaction per change on the pool; the server groups the WAL flushes itself.
  const lifecycle: Lifecycle = { draining: false, storageFailed: false }
  let run: TransactionRunner = (work) => db.transaction().execute(work)
  if (dialectOf(db) === 'sqlite') {
    const wal = openWalSync(config.dbFile)
    if (wal) lifecycle.wal = wal
    const onFailure = (error: unknown) => {
      lifecycle.storageFailed = true
      options.log.fatal({ err: safeError(error) }, 'the database WAL could not be synced to disk: changes are refused from now on; restart the server')
      lifecycle.onStorageFailure?.()
    }
    run = groupCommit(db, wal ? { syncWal: () => wal.sync(), onFailure } : {})
  }
  // The one place transactions are timed: whatever runs them, every deps.transaction is measured.
  const transaction = metrics.timeTransactions(run)
  const deps: AppDeps = { config, db, transaction, keys, secretBox, wechat, wechatTokens, spentCodes, clock: options.clock, log: options.log, metrics, lifecycle }
  if (config.rateLimits) deps.limits = createRateLimits(config.rateLimits, options.clock, metrics)
  if (config.simulator) deps.simulator = createSimulator({ apps: config.apps, clock: options.clock })
  return deps
}

/** Releases what `buildDeps` opened: caches' timers and the database connections. */
export async function closeDeps(deps: AppDeps): Promise<void> {
  deps.spentCodes.close()
  deps.wechatTokens.close()
  deps.wechat.close()
  await deps.db.destroy()
  deps.lifecycle.wal?.close()
}
