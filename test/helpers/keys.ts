import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Clock } from '../../src/clock.js'
import { defaults } from '../../src/config.js'
import type { Test } from 'tap'
import type { Db } from '../../src/db/connection.js'
import { loadSecretBox, type SecretBox } from '../../src/keys/data-key.js'
import { keyTiming, openKeyRing, type KeyRing } from '../../src/keys/key-ring.js'
import { TestClock } from './clock.js'
import { openTestDatabase } from './database.js'
import { scratchFolder } from './scratch.js'

export const testTiming = keyTiming(defaults)

/** RSA-2048 keys generated once and committed (test/fixtures/keys): generating one costs about 130 ms. */
const FIXTURE_KEYS = 12

/** The PEM of fixture key `index` (0 to 11). */
export function fixtureKeyPem(index: number): string {
  if (index < 0 || index >= FIXTURE_KEYS) throw new Error(`there are ${FIXTURE_KEYS} fixture keys`)
  return readFileSync(new URL(`../../../test/fixtures/keys/key-${String(index + 1).padStart(2, '0')}.pem`, import.meta.url), 'utf8')
}

/**
 * A key generator for one app that hands out fixture keys `first`, `first + 1`, ...: a rotation test gets
 * distinct keys without paying for RSA generation.
 */
export function fixtureKeyGenerator(first = 0): () => Promise<string> {
  let next = first
  return async () => {
    const pem = fixtureKeyPem(next)
    next = (next + 1) % FIXTURE_KEYS
    return pem
  }
}

/** Puts fixture key `index` into `dir` (0700, the file 0600), as if minigate had generated it there. */
export function seedKeysDir(dir: string, index = 0): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  chmodSync(dir, 0o700)
  const file = join(dir, `signing-fixture-${index + 1}.pem`)
  writeFileSync(file, fixtureKeyPem(index), { mode: 0o600 })
  return file
}

/** A folder holding one fixture signing key, made once per test process; every app on its own database registers it anew. */
let shared: string | undefined
export function sharedKeysDir(): string {
  if (!shared) {
    const { dir } = scratchFolder('keys')
    seedKeysDir(dir)
    shared = dir
  }
  return shared
}

/** A key ring on a fresh database (see openTestDatabase) and a data key in `dir`, with fixture keys. */
export async function openTestKeyRing(t: Test, dir: string, clock: Clock = new TestClock()): Promise<{ keys: KeyRing; db: Db; secretBox: SecretBox }> {
  const db = await openTestDatabase(t)
  const secretBox = loadSecretBox({ dir })
  return { keys: await openKeyRing({ dir, db, secretBox, clock, timing: testTiming, generateKey: fixtureKeyGenerator() }), db, secretBox }
}
