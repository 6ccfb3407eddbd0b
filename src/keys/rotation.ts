import { basename } from 'node:path'
import { epochSeconds, type Clock } from '../clock.js'
import { recordEvent } from '../db/audit.js'
import type { Db } from '../db/connection.js'
import type { SigningKeyRow } from '../db/schema.js'
import { insertSigningKey, listSigningKeys, scheduleSigningKey } from '../db/signing-keys.js'
import { keyState, safeToDropAt, type KeyState, type KeyTiming } from './key-ring.js'
import { generateSigningKeyFile, readSigningKey } from './signing-keys.js'

/** What key operations work on: the keys folder and the schedule in the database. */
export interface KeyAdmin {
  dir: string
  db: Db
  clock: Clock
  timing: KeyTiming
}

/** An operation the rules refuse (the message says why and when it becomes possible). */
export class KeyOperationRefused extends Error {
  override name = 'KeyOperationRefused'
}

export interface KeyInfo {
  kid: string
  state: KeyState
  file: string
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

async function findKey(admin: KeyAdmin, kid: string): Promise<SigningKeyRow> {
  const row = (await listSigningKeys(admin.db)).find((candidate) => candidate.kid === kid)
  if (!row) throw new KeyOperationRefused(`no signing key ${kid}`)
  return row
}

/** Generates a new RSA-2048 key as `next`: published in the JWKS from now on, not signing. */
export async function addKey(admin: KeyAdmin): Promise<KeyInfo> {
  const now = epochSeconds(admin.clock)
  const file = generateSigningKeyFile(admin.dir, admin.clock)
  const key = await readSigningKey(file)
  const row: SigningKeyRow = { kid: key.kid, file: basename(file), created_at: now, activates_at: null, retires_at: null, removed_at: null }
  await admin.db.transaction().execute(async (trx) => {
    await insertSigningKey(trx, row)
    await recordEvent(trx, { at: now, event: 'key_added', detail: `kid=${row.kid}` })
  })
  return info(row, now, admin.timing)
}

/**
 * Makes a `next` key the signing key now; the key that signed until now retires. Refused until the key
 * has been published for the whole JWKS cache time (verifiers would not know it yet), unless `force`.
 */
export async function activateKey(admin: KeyAdmin, kid: string, options: { force?: boolean } = {}): Promise<KeyInfo> {
  const now = epochSeconds(admin.clock)
  const row = await findKey(admin, kid)
  if (keyState(row, now, admin.timing) !== 'next') throw new KeyOperationRefused(`key ${kid} is ${keyState(row, now, admin.timing)}; only a next key can be activated`)
  const pending = (await listSigningKeys(admin.db)).find((other) => other.kid !== kid && other.activates_at !== null && keyState(other, now, admin.timing) === 'next')
  if (pending) throw new KeyOperationRefused(`a rotation is scheduled: key ${pending.kid} signs from ${iso(pending.activates_at as number)} (keys retire ${pending.kid} cancels it)`)
  const safeAt = row.created_at + admin.timing.publishDelay
  if (now < safeAt && !options.force) {
    throw new KeyOperationRefused(`key ${kid} was published at ${iso(row.created_at)}; verifiers may not have it before ${iso(safeAt)} (use --force to activate anyway)`)
  }
  await admin.db.transaction().execute(async (trx) => {
    for (const other of await listSigningKeys(trx)) {
      if (other.kid !== kid && keyState(other, now, admin.timing) === 'active') await scheduleSigningKey(trx, other.kid, { retires_at: now })
    }
    await scheduleSigningKey(trx, kid, { activates_at: now })
    await recordEvent(trx, { at: now, event: 'key_activated', detail: `kid=${kid}${options.force ? ' forced' : ''}` })
  })
  return info(await findKey(admin, kid), now, admin.timing)
}

/**
 * Withdraws a key for good: out of the JWKS, no longer accepted. A key that never signed can go at once;
 * a retired key only once every token it signed has expired, unless `force` (a compromised key). The
 * signing key cannot go: activate another one first.
 */
export async function retireKey(admin: KeyAdmin, kid: string, options: { force?: boolean } = {}): Promise<KeyInfo> {
  const now = epochSeconds(admin.clock)
  const row = await findKey(admin, kid)
  const state = keyState(row, now, admin.timing)
  if (state === 'gone') throw new KeyOperationRefused(`key ${kid} is already gone`)
  if (state === 'active') throw new KeyOperationRefused(`key ${kid} is the signing key; activate another key first (minigate keys rotate)`)
  const dropAt = safeToDropAt(row, admin.timing)
  if (state === 'retired' && dropAt !== null && now < dropAt && !options.force) {
    throw new KeyOperationRefused(`tokens signed by key ${kid} may be valid until ${iso(dropAt)} (use --force to withdraw it anyway)`)
  }
  await admin.db.transaction().execute(async (trx) => {
    await scheduleSigningKey(trx, kid, { removed_at: now })
    // Withdrawing a key a rotation was going to activate cancels that rotation: the keys scheduled to
    // retire at its activation keep signing.
    if (state === 'next' && row.activates_at !== null) {
      for (const other of await listSigningKeys(trx)) {
        if (other.kid !== kid && other.retires_at === row.activates_at) await scheduleSigningKey(trx, other.kid, { retires_at: null })
      }
    }
    await recordEvent(trx, { at: now, event: 'key_retired', detail: `kid=${kid}${options.force ? ' forced' : ''}` })
  })
  return info(await findKey(admin, kid), now, admin.timing)
}

/**
 * A rotation without a rejected token: a new key is published now, signs once every verifier's JWKS
 * cache has expired, and the current key then retires (published until its tokens have expired).
 */
export async function rotateKeys(admin: KeyAdmin): Promise<{ added: KeyInfo; activatesAt: number; retiring: string[] }> {
  const pending = (await listKeys(admin)).find((key) => key.state === 'next' && key.activates_at !== null)
  if (pending) {
    throw new KeyOperationRefused(`a rotation is already scheduled: key ${pending.kid} signs from ${iso(pending.activates_at as number)} (keys retire ${pending.kid} cancels it)`)
  }
  const added = await addKey(admin)
  const now = epochSeconds(admin.clock)
  const activatesAt = now + admin.timing.publishDelay
  const retiring: string[] = []
  await admin.db.transaction().execute(async (trx) => {
    for (const row of await listSigningKeys(trx)) {
      const state = keyState(row, now, admin.timing)
      if (row.kid === added.kid) continue
      if (state === 'active') {
        await scheduleSigningKey(trx, row.kid, { retires_at: activatesAt })
        retiring.push(row.kid)
      }
    }
    await scheduleSigningKey(trx, added.kid, { activates_at: activatesAt })
    await recordEvent(trx, { at: now, event: 'key_rotation_scheduled', detail: `kid=${added.kid} activates_at=${activatesAt}` })
  })
  return { added: { ...added, activates_at: activatesAt }, activatesAt, retiring }
}
