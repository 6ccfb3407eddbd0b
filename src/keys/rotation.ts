import { epochSeconds, type Clock } from '../clock.js'
import { recordEvent } from '../db/audit.js'
import type { Db, Trx } from '../db/connection.js'
import { isUniqueViolation } from '../db/dialect.js'
import type { SigningKeyRow } from '../db/schema.js'
import { insertSigningKey, listSigningKeys, scheduleSigningKey } from '../db/signing-keys.js'
import type { SecretBox } from './data-key.js'
import { keyState, safeToDropAt, sealedKeyBinding, type KeyState, type KeyTiming } from './key-ring.js'
import { generateRsaKey, parseSigningKey, type KeyGenerator } from './signing-keys.js'

/** What key operations work on: the schedule and the sealed keys in the database. */
export interface KeyAdmin {
  db: Db
  secretBox: SecretBox
  clock: Clock
  timing: KeyTiming
  /** Makes new keys (RSA-2048 by default). */
  generateKey?: KeyGenerator
  /** Who the audit log says acted: `operator` for the CLI, else `system`. */
  actor?: 'operator' | 'system'
}

/** An operation the rules refuse (the message says why and when it becomes possible). */
export class KeyOperationRefused extends Error {
  override name = 'KeyOperationRefused'
}

export interface KeyInfo {
  kid: string
  state: KeyState
  /** The PEM file the key was imported from; null for keys minigate generated. */
  file: string | null
  created_at: number
  activates_at: number | null
  retires_at: number | null
  /** When the key can go without any token it signed failing; null while it signs. */
  safe_to_drop_at: number | null
}

function info(row: SigningKeyRow, now: number, timing: KeyTiming): KeyInfo {
  return {
    kid: row.kid,
    state: keyState(row, now, timing),
    file: row.file,
    created_at: row.created_at,
    activates_at: row.activates_at,
    retires_at: row.retires_at,
    safe_to_drop_at: safeToDropAt(row, timing),
  }
}

function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString()
}

/** Every key with its state now. */
export async function listKeys(admin: KeyAdmin): Promise<KeyInfo[]> {
  const now = epochSeconds(admin.clock)
  return (await listSigningKeys(admin.db)).map((row) => info(row, now, admin.timing))
}

function findIn(rows: SigningKeyRow[], kid: string): SigningKeyRow {
  const row = rows.find((candidate) => candidate.kid === kid)
  if (!row) throw new KeyOperationRefused(`no signing key ${kid}`)
  return row
}

function pendingRotation(rows: SigningKeyRow[], now: number, timing: KeyTiming, except?: string): SigningKeyRow | undefined {
  return rows.find((row) => row.kid !== except && row.activates_at !== null && keyState(row, now, timing) === 'next')
}

function refusedPending(pending: SigningKeyRow): KeyOperationRefused {
  return new KeyOperationRefused(`a rotation is already scheduled: key ${pending.kid} signs from ${iso(pending.activates_at as number)} (keys retire ${pending.kid} cancels it)`)
}

/**
 * Runs a change of the key schedule in one transaction whose checks read the schedule inside it. The
 * database refuses a second open-ended key (a unique index): two operators, or two instances, changing
 * the schedule at once cannot leave two keys signing; the one that lost is told so.
 */
async function changeSchedule<T>(admin: KeyAdmin, work: (trx: Trx, rows: SigningKeyRow[]) => Promise<T>): Promise<T> {
  try {
    return await admin.db.transaction().execute(async (trx) => work(trx, await listSigningKeys(trx)))
  } catch (error) {
    if (isUniqueViolation(error)) throw new KeyOperationRefused('another key operation changed the schedule at the same moment; look at `minigate keys list` and try again')
    throw error
  }
}

/** A new key, generated outside any transaction (it takes a while), sealed for the database. */
async function newKeyRow(admin: KeyAdmin, now: number): Promise<SigningKeyRow> {
  const pem = await (admin.generateKey ?? generateRsaKey)()
  const key = await parseSigningKey(pem, 'generated')
  return { kid: key.kid, private_key: admin.secretBox.seal(pem, sealedKeyBinding(key.kid)), file: null, created_at: now, activates_at: null, retires_at: null, removed_at: null }
}

/** Generates a new RSA-2048 key as `next`: published in the JWKS from now on, not signing. */
export async function addKey(admin: KeyAdmin): Promise<KeyInfo> {
  const now = epochSeconds(admin.clock)
  const row = await newKeyRow(admin, now)
  await changeSchedule(admin, async (trx) => {
    await insertSigningKey(trx, row)
    await recordEvent(trx, { at: now, event: 'key_added', detail: `kid=${row.kid}`, actor: admin.actor ?? 'system' })
  })
  return info(row, now, admin.timing)
}

/**
 * Makes a `next` key the signing key now; the key that signed until now retires. Refused until the key
 * has been published for the whole JWKS cache time (verifiers would not know it yet), unless `force`.
 */
export async function activateKey(admin: KeyAdmin, kid: string, options: { force?: boolean } = {}): Promise<KeyInfo> {
  const now = epochSeconds(admin.clock)
  const row = await changeSchedule(admin, async (trx, rows) => {
    const row = findIn(rows, kid)
    const state = keyState(row, now, admin.timing)
    if (state !== 'next') throw new KeyOperationRefused(`key ${kid} is ${state}; only a next key can be activated`)
    const pending = pendingRotation(rows, now, admin.timing, kid)
    if (pending) throw refusedPending(pending)
    const safeAt = row.created_at + admin.timing.publishDelay
    if (now < safeAt && !options.force) {
      throw new KeyOperationRefused(`key ${kid} was published at ${iso(row.created_at)}; verifiers may not have it before ${iso(safeAt)} (use --force to activate anyway)`)
    }
    // The signing key stops being open-ended before this one becomes so (the unique index checks each statement).
    for (const other of rows) {
      if (other.kid !== kid && keyState(other, now, admin.timing) === 'active') await scheduleSigningKey(trx, other.kid, { retires_at: now })
    }
    await scheduleSigningKey(trx, kid, { activates_at: now })
    await recordEvent(trx, { at: now, event: 'key_activated', detail: `kid=${kid}${options.force ? ' forced' : ''}`, actor: admin.actor ?? 'system' })
    return { ...row, activates_at: now }
  })
  return info(row, now, admin.timing)
}

/**
 * Withdraws a key for good: out of the JWKS, no longer accepted. A key that never signed can go at once;
 * a retired key only once every token it signed has expired, unless `force` (a compromised key). The
 * signing key cannot go: activate another one first.
 */
export async function retireKey(admin: KeyAdmin, kid: string, options: { force?: boolean } = {}): Promise<KeyInfo> {
  const now = epochSeconds(admin.clock)
  const row = await changeSchedule(admin, async (trx, rows) => {
    const row = findIn(rows, kid)
    const state = keyState(row, now, admin.timing)
    if (state === 'gone') throw new KeyOperationRefused(`key ${kid} is already gone`)
    if (state === 'active') throw new KeyOperationRefused(`key ${kid} is the signing key; activate another key first (minigate keys rotate)`)
    const dropAt = safeToDropAt(row, admin.timing)
    if (state === 'retired' && dropAt !== null && now < dropAt && !options.force) {
      throw new KeyOperationRefused(`tokens signed by key ${kid} may be valid until ${iso(dropAt)} (use --force to withdraw it anyway)`)
    }
    await scheduleSigningKey(trx, kid, { removed_at: now })
    // Withdrawing a key a rotation was going to activate cancels that rotation: the keys scheduled to
    // retire at its activation keep signing.
    if (state === 'next' && row.activates_at !== null) {
      for (const other of rows) {
        if (other.kid !== kid && other.retires_at === row.activates_at) await scheduleSigningKey(trx, other.kid, { retires_at: null })
      }
    }
    await recordEvent(trx, { at: now, event: 'key_retired', detail: `kid=${kid}${options.force ? ' forced' : ''}`, actor: admin.actor ?? 'system' })
    return { ...row, removed_at: now }
  })
  return info(row, now, admin.timing)
}

/**
 * A rotation without a rejected token: a new key is published now, signs once every verifier's JWKS
 * cache has expired, and the current key then retires (published until its tokens have expired). One
 * transaction: a rotation refused, or lost to a concurrent one, leaves no key behind.
 */
export async function rotateKeys(admin: KeyAdmin): Promise<{ added: KeyInfo; activatesAt: number; retiring: string[] }> {
  const now = epochSeconds(admin.clock)
  const pending = pendingRotation(await listSigningKeys(admin.db), now, admin.timing)
  if (pending) throw refusedPending(pending)
  const row = await newKeyRow(admin, now)
  const activatesAt = now + admin.timing.publishDelay
  const retiring = await changeSchedule(admin, async (trx, rows) => {
    const pending = pendingRotation(rows, now, admin.timing)
    if (pending) throw refusedPending(pending)
    const retiring = rows.filter((other) => keyState(other, now, admin.timing) === 'active').map((other) => other.kid)
    for (const kid of retiring) await scheduleSigningKey(trx, kid, { retires_at: activatesAt })
    await insertSigningKey(trx, { ...row, activates_at: activatesAt })
    await recordEvent(trx, { at: now, event: 'key_rotation_scheduled', detail: `kid=${row.kid} activates_at=${activatesAt}`, actor: admin.actor ?? 'system' })
    return retiring
  })
  return { added: info({ ...row, activates_at: activatesAt }, now, admin.timing), activatesAt, retiring }
}
