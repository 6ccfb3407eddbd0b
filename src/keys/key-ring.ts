import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { epochSeconds, type Clock } from '../clock.js'
import type { Config } from '../config.js'
import type { Db } from '../db/connection.js'
import { isUniqueViolation } from '../db/dialect.js'
import type { SigningKeyRow } from '../db/schema.js'
import { insertSigningKey, listSigningKeys, storePrivateKey } from '../db/signing-keys.js'
import type { Logger } from '../log.js'
import type { SecretBox } from './data-key.js'
import { generateRsaKey, KeyFileError, parseSigningKey, readSigningKeyFile, type KeyGenerator, type KeyStore, type SigningKey } from './signing-keys.js'

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

/** The associated data a signing key is sealed with: a sealed key moved to another row does not open. */
export function sealedKeyBinding(kid: string): string {
  return `signing-key:${kid}`
}

export interface KeyRingOptions {
  db: Db
  secretBox: SecretBox
  clock: Clock
  timing: KeyTiming
  /** The keys folder: PEM files an operator drops there are imported. */
  dir: string
  /** Makes new keys (RSA-2048 by default). */
  generateKey?: KeyGenerator
  log?: Logger
}

/** The signing keys with their schedule; `reload()` picks up changes made by the CLI or another instance. */
export interface KeyRing extends KeyStore {
  reload(): Promise<void>
  /** Seconds until the schedule next changes the keys (a key activates, retires or goes). */
  secondsUntilChange(): number
}

/**
 * Imports PEM files from the keys folder into the database, sealed: a file whose key is not registered
 * yet (an operator's own key), and the file of a key registered before keys lived in the database. On a
 * first start (or from a folder that predates the schedule) the newest file becomes the active key and
 * older ones are retired; later, an imported file is a `next` key.
 */
async function importKeyFiles(options: KeyRingOptions, rows: SigningKeyRow[]): Promise<void> {
  const now = epochSeconds(options.clock)
  const byKid = new Map(rows.map((row) => [row.kid, row]))
  // With MINIGATE_DATA_KEYS there may be no keys folder at all.
  const names = existsSync(options.dir) ? readdirSync(options.dir).filter((name) => name.endsWith('.pem')) : []
  const files = await Promise.all(names.map(async (name) => ({ name, mtime: statSync(join(options.dir, name)).mtimeMs, key: await readSigningKeyFile(join(options.dir, name)) })))
  files.sort((a, b) => a.mtime - b.mtime || a.name.localeCompare(b.name))
  const fresh = files.filter(({ key }) => !byKid.has(key.kid))
  const hasActive = rows.some((row) => keyState(row, now, options.timing) === 'active')
  const seen = new Set<string>()
  for (const { name, key } of fresh) {
    if (seen.has(key.kid)) throw new KeyFileError(`signing key ${name} is a copy of key ${key.kid}`)
    seen.add(key.kid)
  }
  for (const [index, { name, key }] of fresh.entries()) {
    const row: SigningKeyRow = { kid: key.kid, private_key: options.secretBox.seal(key.pem, sealedKeyBinding(key.kid)), file: name, created_at: now, activates_at: null, retires_at: null, removed_at: null }
    if (!hasActive) Object.assign(row, index === fresh.length - 1 ? { activates_at: now } : { activates_at: now, retires_at: now })
    if ((statSync(join(options.dir, name)).mode & 0o077) !== 0) {
      options.log?.warn({ kid: row.kid, file: name }, 'signing key file is readable by other users: chmod 600 it (or delete it: the key now lives in the database)')
    }
    try {
      await insertSigningKey(options.db, row)
    } catch (error) {
      // Another instance imported the same file at the same moment.
      if (isUniqueViolation(error)) continue
      throw error
    }
    options.log?.info({ kid: row.kid, file: name, state: keyState(row, now, options.timing) }, 'signing key imported')
  }
  for (const row of rows) {
    if (row.private_key !== null) continue
    const file = files.find(({ key }) => key.kid === row.kid)
    if (!file) throw new KeyFileError(`signing key ${row.kid} is registered with file ${row.file ?? '(none)'}, which is not in ${options.dir}`)
    await storePrivateKey(options.db, row.kid, options.secretBox.seal(file.key.pem, sealedKeyBinding(row.kid)))
  }
}

/**
 * With no key at all, generates one and makes it active. Two instances starting on an empty database at
 * once both try: the unique index on open-ended keys admits one, and the other uses it.
 */
async function ensureFirstKey(options: KeyRingOptions): Promise<void> {
  if ((await listSigningKeys(options.db)).length > 0) return
  const pem = await (options.generateKey ?? generateRsaKey)()
  const key = await parseSigningKey(pem, 'generated')
  const now = epochSeconds(options.clock)
  try {
    await insertSigningKey(options.db, { kid: key.kid, private_key: options.secretBox.seal(pem, sealedKeyBinding(key.kid)), file: null, created_at: now, activates_at: now, retires_at: null, removed_at: null })
    options.log?.info({ kid: key.kid }, 'signing key generated')
  } catch (error) {
    if (!isUniqueViolation(error)) throw error
  }
}

/**
 * Opens the key ring: imports key files, generates a first key if there is none, then loads every key
 * that is not gone from the database. A key that does not open or is weaker than RSA-2048 stops the start.
 *
 * @example const keys = await openKeyRing({ db, secretBox, clock, timing: keyTiming(config), dir: 'keys' })
 */
export async function openKeyRing(options: KeyRingOptions): Promise<KeyRing> {
  await importKeyFiles(options, await listSigningKeys(options.db))
  await ensureFirstKey(options)
  let rows: SigningKeyRow[] = []
  const loaded = new Map<string, SigningKey>()
  let snapshot: { until: number; active: SigningKey | undefined; published: Map<string, SigningKey>; jwks: { keys: SigningKey['publicJwk'][] } } | undefined

  async function load(): Promise<void> {
    const now = epochSeconds(options.clock)
    const current = await listSigningKeys(options.db)
    for (const row of current) {
      if (loaded.has(row.kid) || keyState(row, now, options.timing) === 'gone') continue
      if (row.private_key === null) throw new KeyFileError(`signing key ${row.kid} has no private key in the database; restart a server that has its file in the keys folder`)
      let pem: string
      try {
        pem = options.secretBox.open(row.private_key, sealedKeyBinding(row.kid))
      } catch {
        throw new KeyFileError(`signing key ${row.kid} does not open with the configured data key (MINIGATE_DATA_KEYS or ${join(options.dir, 'data-encryption.key')})`)
      }
      const key = await parseSigningKey(pem, row.kid)
      if (key.kid !== row.kid) throw new KeyFileError(`the database holds another key under kid ${row.kid}`)
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
