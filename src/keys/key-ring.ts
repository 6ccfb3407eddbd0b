import { readdirSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import { epochSeconds, type Clock } from '../clock.js'
import type { Config } from '../config.js'
import type { Db } from '../db/connection.js'
import type { SigningKeyRow } from '../db/schema.js'
import { insertSigningKey, listSigningKeys } from '../db/signing-keys.js'
import type { Logger } from '../log.js'
import { generateSigningKeyFile, KeyFileError, readSigningKey, type KeyStore, type SigningKey } from './signing-keys.js'

export type KeyState = 'next' | 'active' | 'retired' | 'gone'

/** How often a running server re-reads the key schedule, in seconds. */
export const KEY_RELOAD_SECONDS = 5
/** Allowance for clocks of servers and verifiers that disagree, in seconds. */
export const CLOCK_SKEW_SECONDS = 60

/** The waits that make a rotation invisible to verifiers. */
export interface KeyTiming {
  /** A key must be published this long before it signs: every verifier's cached JWKS has expired by then. */
  publishDelay: number
  /** A key that stopped signing stays published this long: every token it signed has expired by then. */
  dropDelay: number
}

export function keyTiming(config: Pick<Config, 'jwksMaxAge' | 'accessTtl' | 'refreshTtl' | 'idTokenTtl'>): KeyTiming {
  return {
    publishDelay: config.jwksMaxAge + KEY_RELOAD_SECONDS + CLOCK_SKEW_SECONDS,
    dropDelay: Math.max(config.accessTtl, config.refreshTtl, config.idTokenTtl) + config.jwksMaxAge + CLOCK_SKEW_SECONDS,
  }
}

/** A key's state at `now`, from its schedule alone. */
export function keyState(row: SigningKeyRow, now: number, timing: KeyTiming): KeyState {
  if (row.removed_at !== null && row.removed_at <= now) return 'gone'
  if (row.retires_at !== null && row.retires_at <= now) return row.retires_at + timing.dropDelay <= now ? 'gone' : 'retired'
  if (row.activates_at !== null && row.activates_at <= now) return 'active'
  return 'next'
}

/** When a key may be dropped: a key that never signed at once; a retired one when its tokens have expired. */
export function safeToDropAt(row: SigningKeyRow, timing: KeyTiming): number | null {
  if (row.activates_at === null) return row.created_at
  return row.retires_at === null ? null : row.retires_at + timing.dropDelay
}

/** The next moment after `now` at which some key changes state. */
function nextTransition(rows: SigningKeyRow[], now: number, timing: KeyTiming): number {
  let next = Number.POSITIVE_INFINITY
  for (const row of rows) {
    for (const at of [row.activates_at, row.retires_at, row.retires_at === null ? null : row.retires_at + timing.dropDelay, row.removed_at]) {
      if (at !== null && at > now && at < next) next = at
    }
  }
  return next
}

export interface KeyRingOptions {
  dir: string
  db: Db
  clock: Clock
  timing: KeyTiming
  log?: Logger
}

/** The signing keys with their schedule; `reload()` picks up changes made by the CLI or another instance. */
export interface KeyRing extends KeyStore {
  reload(): Promise<void>
  /** Seconds until the schedule next changes the keys (a key activates, retires or goes). */
  secondsUntilChange(): number
}

/**
 * Registers key files that have no schedule yet. On a first start (or from a keys folder that predates
 * the schedule) the newest file becomes the active key and older ones are retired; later, a file an
 * operator drops in is a `next` key. With no key at all, one is generated.
 */
async function registerFiles(options: KeyRingOptions, rows: SigningKeyRow[]): Promise<void> {
  const now = epochSeconds(options.clock)
  const known = new Set(rows.map((row) => row.file))
  const files = readdirSync(options.dir).filter((name) => name.endsWith('.pem') && !known.has(name))
  if (rows.length === 0 && files.length === 0) files.push(basename(generateSigningKeyFile(options.dir, options.clock)))
  const keys = await Promise.all(files.map((name) => readSigningKey(join(options.dir, name))))
  keys.sort((a, b) => a.createdAt - b.createdAt || a.file.localeCompare(b.file))
  const hasActive = rows.some((row) => keyState(row, now, options.timing) === 'active')
  const kids = new Set(rows.map((row) => row.kid))
  const fresh: SigningKeyRow[] = []
  for (const [index, key] of keys.entries()) {
    if (kids.has(key.kid)) throw new KeyFileError(`signing key ${key.file} is a copy of key ${key.kid}`)
    kids.add(key.kid)
    const row: SigningKeyRow = { kid: key.kid, file: basename(key.file), created_at: now, activates_at: null, retires_at: null, removed_at: null }
    if (!hasActive) Object.assign(row, index === keys.length - 1 ? { activates_at: now } : { activates_at: now, retires_at: now })
    fresh.push(row)
  }
  await options.db.transaction().execute(async (trx) => {
    for (const row of fresh) await insertSigningKey(trx, row)
  })
  for (const row of fresh) options.log?.info({ kid: row.kid, state: keyState(row, now, options.timing) }, 'signing key registered')
}

/**
 * Opens the key ring: registers new key files, then loads every key that is not gone. A key file that
 * is unreadable, malformed or weaker than RSA-2048 stops the start.
 *
 * @example const keys = await openKeyRing({ dir: 'keys', db, clock, timing: keyTiming(config) })
 */
export async function openKeyRing(options: KeyRingOptions): Promise<KeyRing> {
  await registerFiles(options, await listSigningKeys(options.db))
  let rows: SigningKeyRow[] = []
  const loaded = new Map<string, SigningKey>()
  let snapshot: { until: number; active: SigningKey | undefined; published: Map<string, SigningKey>; jwks: { keys: SigningKey['publicJwk'][] } } | undefined

  async function load(): Promise<void> {
    const now = epochSeconds(options.clock)
    const current = await listSigningKeys(options.db)
    for (const row of current) {
      if (loaded.has(row.kid) || keyState(row, now, options.timing) === 'gone') continue
      const key = await readSigningKey(join(options.dir, row.file))
      if (key.kid !== row.kid) throw new KeyFileError(`signing key file ${row.file} does not hold key ${row.kid}`)
      if ((statSync(key.file).mode & 0o077) !== 0) {
        options.log?.warn({ kid: row.kid, file: row.file }, 'signing key file is readable by other users: chmod 600 it')
      }
      loaded.set(row.kid, key)
    }
    rows = current
    snapshot = undefined
  }

  function view(): NonNullable<typeof snapshot> {
    const now = epochSeconds(options.clock)
    if (snapshot && now < snapshot.until) return snapshot
    let active: { key: SigningKey; at: number } | undefined
    const published = new Map<string, SigningKey>()
    for (const row of rows) {
      const key = loaded.get(row.kid)
      const state = keyState(row, now, options.timing)
      if (!key || state === 'gone') continue
      published.set(row.kid, key)
      if (state === 'active' && (!active || (row.activates_at as number) > active.at)) active = { key, at: row.activates_at as number }
    }
    snapshot = { until: nextTransition(rows, now, options.timing), active: active?.key, published, jwks: { keys: [...published.values()].map((key) => key.publicJwk) } }
    return snapshot
  }

  await load()
  if (!view().active) throw new KeyFileError('no signing key is active: run `minigate keys rotate`, or `minigate keys activate <kid> --force`')

  return {
    active() {
      const key = view().active
      if (!key) throw new Error('no signing key is active')
      return key
    },
    get: (kid) => (typeof kid === 'string' ? view().published.get(kid) : undefined),
    jwks: () => view().jwks,
    reload: load,
    secondsUntilChange: () => view().until - epochSeconds(options.clock),
  }
}
