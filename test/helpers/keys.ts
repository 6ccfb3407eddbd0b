import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Clock } from '../../src/clock.js'
import { defaults } from '../../src/config.js'
import { migrateToLatest, openDatabase, type Db } from '../../src/db/connection.js'
import { keyTiming, openKeyRing, type KeyRing } from '../../src/keys/key-ring.js'
import { generateSigningKeyFile } from '../../src/keys/signing-keys.js'
import { TestClock } from './clock.js'

export const testTiming = keyTiming(defaults)

/**
 * A folder holding one freshly generated signing key, made once per test process: RSA key generation is
 * the slowest step of building an app, and every app on its own database registers the key anew.
 */
let shared: string | undefined
export function sharedKeysDir(): string {
  if (!shared) {
    const dir = mkdtempSync(join(tmpdir(), 'minigate-keys-'))
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
    generateSigningKeyFile(dir, new TestClock())
    shared = dir
  }
  return shared
}

/** A key ring on `dir` (generating a key if it has none) with its schedule in a fresh in-memory database. */
export async function openTestKeyRing(dir: string, clock: Clock = new TestClock()): Promise<{ keys: KeyRing; db: Db }> {
  const db = openDatabase(':memory:')
  await migrateToLatest(db)
  return { keys: await openKeyRing({ dir, db, clock, timing: testTiming }), db }
}
