import { generateKeyPairSync } from 'node:crypto'
import { mkdirSync, readdirSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { defaults } from '../../src/config.js'
import { migrateToLatest, openDatabase, type Db } from '../../src/db/connection.js'
import type { SigningKeyRow } from '../../src/db/schema.js'
import { listSigningKeys, scheduleSigningKey } from '../../src/db/signing-keys.js'
import { CLOCK_SKEW_SECONDS, KEY_RELOAD_SECONDS, keyState, keyTiming, openKeyRing, safeToDropAt, type KeyRing, type KeyTiming } from '../../src/keys/key-ring.js'
import { activateKey, addKey, retireKey, rotateKeys, type KeyAdmin } from '../../src/keys/rotation.js'
import { KeyFileError, readSigningKey } from '../../src/keys/signing-keys.js'
import { TestClock } from '../helpers/clock.js'

// RSA key generation is the slow part: three PEMs made once, copied into each test's keys folder.
const PEMS = Array.from({ length: 3 }, () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string)
const pem = (index: number) => PEMS[index] as string

function writeKey(dir: string, name: string, index: number, mtimeSeconds?: number): string {
  mkdirSync(dir, { recursive: true })
  const file = join(dir, name)
  writeFileSync(file, pem(index), { mode: 0o600 })
  if (mtimeSeconds !== undefined) utimesSync(file, mtimeSeconds, mtimeSeconds)
  return file
}

const kidOfPem = async (dir: string, name: string) => (await readSigningKey(join(dir, name))).kid
const epoch = (clock: TestClock) => Math.floor(clock.now() / 1000)
const timing = keyTiming(defaults)

interface Fixture {
  dir: string
  db: Db
  clock: TestClock
  admin: KeyAdmin
  open: () => Promise<KeyRing>
}

/** A keys folder and a migrated database in the test's directory, closed with the test. */
async function fixture(t: Test): Promise<Fixture> {
  const root = t.testdir()
  const dir = join(root, 'keys')
  mkdirSync(dir, { recursive: true })
  const db = openDatabase(join(root, 'db', 'minigate.sqlite'))
  t.teardown(() => db.destroy())
  await migrateToLatest(db)
  const clock = new TestClock()
  return { dir, db, clock, admin: { dir, db, clock, timing }, open: () => openKeyRing({ dir, db, clock, timing }) }
}

async function states(f: Fixture): Promise<Record<string, string>> {
  const now = epoch(f.clock)
  return Object.fromEntries((await listSigningKeys(f.db)).map((row) => [row.file, keyState(row, now, timing)]))
}

t.test('keyTiming: publish after the JWKS cache time, drop after the longest token life', async (t) => {
  t.equal(KEY_RELOAD_SECONDS, 5)
  t.equal(CLOCK_SKEW_SECONDS, 60)
  t.same(keyTiming(defaults), { publishDelay: 300 + 5 + 60, dropDelay: 30 * 24 * 3600 + 300 + 60 })
  t.same(keyTiming({ jwksMaxAge: 100, accessTtl: 50, refreshTtl: 70, idTokenTtl: 900 }), { publishDelay: 165, dropDelay: 900 + 100 + 60 }, 'the id token can be the longest')
  t.same(keyTiming({ jwksMaxAge: 0, accessTtl: 600, refreshTtl: 60, idTokenTtl: 30 }), { publishDelay: 65, dropDelay: 660 })
})

t.test('keyState and safeToDropAt at the exact seconds of each boundary', async (t) => {
  const timing: KeyTiming = { publishDelay: 100, dropDelay: 1000 }
  const row = (times: Partial<SigningKeyRow>): SigningKeyRow => ({ kid: 'k', file: 'k.pem', created_at: 0, activates_at: null, retires_at: null, removed_at: null, ...times })

  const never = row({})
  t.equal(keyState(never, 0, timing), 'next', 'a key with no activation is next')
  t.equal(keyState(never, 10 ** 9, timing), 'next', 'forever')
  t.equal(safeToDropAt(never, timing), 0, 'a key that never signed is safe to drop from its creation')

  const scheduled = row({ activates_at: 10 })
  t.equal(keyState(scheduled, 9, timing), 'next')
  t.equal(keyState(scheduled, 10, timing), 'active', 'active from activates_at on')
  t.equal(keyState(scheduled, 10 ** 9, timing), 'active', 'and stays active with no retirement')
  t.equal(safeToDropAt(scheduled, timing), null, 'a key that signs (or will) has no drop time')

  const full = row({ activates_at: 10, retires_at: 50 })
  t.equal(keyState(full, 9, timing), 'next')
  t.equal(keyState(full, 10, timing), 'active')
  t.equal(keyState(full, 49, timing), 'active')
  t.equal(keyState(full, 50, timing), 'retired', 'retired from retires_at on')
  t.equal(keyState(full, 50 + 1000 - 1, timing), 'retired', 'published until dropDelay has passed')
  t.equal(keyState(full, 50 + 1000, timing), 'gone', 'gone at retires_at + dropDelay')
  t.equal(safeToDropAt(full, timing), 1050)

  const removed = row({ activates_at: 10, retires_at: 50, removed_at: 70 })
  t.equal(keyState(removed, 69, timing), 'retired')
  t.equal(keyState(removed, 70, timing), 'gone', 'removed_at ends it early')
  const removedNext = row({ removed_at: 5 })
  t.equal(keyState(removedNext, 4, timing), 'next')
  t.equal(keyState(removedNext, 5, timing), 'gone')
  const removedActive = row({ activates_at: 10, removed_at: 20 })
  t.equal(keyState(removedActive, 19, timing), 'active')
  t.equal(keyState(removedActive, 20, timing), 'gone')
})

t.test('a fresh keys folder: one key is generated, active, 0600 in a 0700 folder', async (t) => {
  const f = await fixture(t)
  const keys = await f.open()
  const files = readdirSync(f.dir).filter((name) => name.endsWith('.pem'))
  t.equal(files.length, 1, 'one key generated')
  const file = join(f.dir, files[0] as string)
  t.equal(statSync(file).mode & 0o777, 0o600, 'the key file is 0600')
  t.equal(statSync(f.dir).mode & 0o777, 0o700, 'the keys folder is 0700')
  t.same(await states(f), { [files[0] as string]: 'active' })
  t.equal(keys.active().kid, await kidOfPem(f.dir, files[0] as string))
  t.same(keys.jwks().keys.map((key) => key.kid), [keys.active().kid])
  const [row] = await listSigningKeys(f.db)
  t.match(row, { created_at: epoch(f.clock), activates_at: epoch(f.clock), retires_at: null, removed_at: null })
  t.equal(keys.secondsUntilChange(), Number.POSITIVE_INFINITY, 'nothing is scheduled')

  const again = await f.open()
  t.equal(readdirSync(f.dir).filter((name) => name.endsWith('.pem')).length, 1, 'a second start generates nothing')
  t.equal(again.active().kid, keys.active().kid)
})

t.test('a keys folder of several files with no schedule: the newest signs, the others are retired', async (t) => {
  const f = await fixture(t)
  // File names in the opposite order to their ages: the age (mtime) decides.
  writeKey(f.dir, 'c.pem', 0, 1_000)
  writeKey(f.dir, 'a.pem', 1, 2_000)
  writeKey(f.dir, 'b.pem', 2, 3_000)
  const keys = await f.open()
  t.same(await states(f), { 'a.pem': 'retired', 'b.pem': 'active', 'c.pem': 'retired' })
  t.equal(keys.active().kid, await kidOfPem(f.dir, 'b.pem'), 'the newest file signs')
  t.equal(keys.jwks().keys.length, 3, 'the retired keys stay published: tokens they signed may still be valid')
  for (const name of ['a.pem', 'c.pem']) t.ok(keys.get(await kidOfPem(f.dir, name)), `${name} verifies tokens`)
  const now = epoch(f.clock)
  for (const row of await listSigningKeys(f.db)) {
    t.equal(row.activates_at, now)
    t.equal(row.retires_at, row.file === 'b.pem' ? null : now)
  }
  f.clock.advance(timing.dropDelay)
  t.equal(keys.jwks().keys.length, 1, 'after the drop delay only the active key is published, with no reload')
  t.equal(keys.get(await kidOfPem(f.dir, 'a.pem')), undefined)
})

t.test('a key file dropped in after the ring exists registers as next on the next start', async (t) => {
  const f = await fixture(t)
  writeKey(f.dir, 'first.pem', 0)
  const first = await f.open()
  const activeKid = first.active().kid
  f.clock.advance(60)
  writeKey(f.dir, 'second.pem', 1)
  const keys = await f.open()
  t.same(await states(f), { 'first.pem': 'active', 'second.pem': 'next' })
  t.equal(keys.active().kid, activeKid, 'the dropped-in key does not sign')
  const secondKid = await kidOfPem(f.dir, 'second.pem')
  t.ok(keys.get(secondKid), 'it is published')
  t.same(keys.jwks().keys.map((key) => key.kid).sort(), [activeKid, secondKid].sort())
  const row = (await listSigningKeys(f.db)).find((candidate) => candidate.file === 'second.pem')
  t.match(row, { created_at: epoch(f.clock), activates_at: null, retires_at: null, removed_at: null })
})

t.test('a copy of a registered key under another name stops the start', async (t) => {
  const f = await fixture(t)
  writeKey(f.dir, 'first.pem', 0)
  await f.open()
  writeKey(f.dir, 'copy.pem', 0)
  await t.rejects(f.open(), KeyFileError)
  await t.rejects(f.open(), /copy\.pem is a copy of key/)
})

t.test('a registered key whose file is missing stops the start; a gone key may lose its file', async (t) => {
  const f = await fixture(t)
  writeKey(f.dir, 'first.pem', 0)
  await f.open()
  writeKey(f.dir, 'second.pem', 1)
  await f.open()
  unlinkSync(join(f.dir, 'second.pem'))
  await t.rejects(f.open(), KeyFileError, 'a next key without its file')
  await t.rejects(f.open(), /second\.pem/, 'the message names the file')

  await retireKey(f.admin, await kidOfPemFromDb(f.db, 'second.pem'))
  const keys = await f.open()
  t.equal(keys.jwks().keys.length, 1, 'once withdrawn, its missing file does not matter')
})

async function kidOfPemFromDb(db: Db, file: string): Promise<string> {
  const row = (await listSigningKeys(db)).find((candidate) => candidate.file === file)
  if (!row) throw new Error(`no row for ${file}`)
  return row.kid
}

t.test('a key file that holds another key than its row stops the start', async (t) => {
  const f = await fixture(t)
  writeKey(f.dir, 'first.pem', 0)
  await f.open()
  unlinkSync(join(f.dir, 'first.pem'))
  writeKey(f.dir, 'first.pem', 1)
  await t.rejects(f.open(), /first\.pem does not hold key/)
})

t.test('no active key stops the start with a message pointing at keys rotate', async (t) => {
  const f = await fixture(t)
  writeKey(f.dir, 'first.pem', 0)
  await f.open()
  const kid = await kidOfPemFromDb(f.db, 'first.pem')
  await scheduleSigningKey(f.db, kid, { retires_at: epoch(f.clock) })
  await t.rejects(f.open(), KeyFileError)
  await t.rejects(f.open(), /no signing key is active.*keys rotate/)
})

t.test('get() knows only published keys, and takes nothing but a string', async (t) => {
  const f = await fixture(t)
  writeKey(f.dir, 'first.pem', 0)
  const keys = await f.open()
  const kid = keys.active().kid
  t.equal(keys.get(kid)?.kid, kid)
  for (const value of [undefined, null, 42, {}, [kid], { toString: () => kid }, '', '../first.pem', 'first.pem']) {
    t.equal(keys.get(value), undefined, `get(${JSON.stringify(value) ?? String(value)}) is undefined`)
  }

  f.clock.advance(1)
  const added = await addKey(f.admin)
  await keys.reload()
  t.ok(keys.get(added.kid), 'a next key is published')
  await retireKey(f.admin, added.kid)
  t.ok(keys.get(added.kid), 'until the ring reloads')
  await keys.reload()
  t.equal(keys.get(added.kid), undefined, 'a gone key is unknown')
  t.same(keys.jwks().keys.map((key) => key.kid), [kid])
})

t.test('reload() picks up keys added, activated and retired through the rotation functions', async (t) => {
  const f = await fixture(t)
  writeKey(f.dir, 'first.pem', 0)
  const keys = await f.open()
  const oldKid = keys.active().kid
  f.clock.advance(1)
  const added = await addKey(f.admin)
  t.equal(added.state, 'next')
  t.equal(keys.jwks().keys.length, 1, 'nothing changes before a reload')
  t.equal(keys.get(added.kid), undefined)
  await keys.reload()
  t.same(keys.jwks().keys.map((key) => key.kid).sort(), [oldKid, added.kid].sort(), 'after a reload the new key is published')
  t.equal(keys.active().kid, oldKid, 'but does not sign')

  const file = join(f.dir, added.file)
  t.equal(statSync(file).mode & 0o777, 0o600, 'an added key file is 0600')
  t.equal(statSync(f.dir).mode & 0o777, 0o700)

  await activateKey(f.admin, added.kid, { force: true })
  t.equal(keys.active().kid, oldKid, 'activation too waits for a reload')
  await keys.reload()
  t.equal(keys.active().kid, added.kid, 'the activated key signs')
  t.ok(keys.get(oldKid), 'the old one is retired: still published')
  t.equal(keys.secondsUntilChange(), timing.dropDelay, 'the next change is the old key going')
})

t.test('a scheduled rotation takes effect by the clock alone, without a reload', async (t) => {
  const f = await fixture(t)
  writeKey(f.dir, 'first.pem', 0)
  const keys = await f.open()
  const oldKid = keys.active().kid
  f.clock.advance(1)
  const rotation = await rotateKeys(f.admin)
  await keys.reload()
  t.equal(rotation.activatesAt, epoch(f.clock) + timing.publishDelay)
  t.equal(keys.secondsUntilChange(), timing.publishDelay)
  f.clock.advance(timing.publishDelay - 1)
  t.equal(keys.active().kid, oldKid, 'one second before activation the old key signs')
  t.equal(keys.secondsUntilChange(), 1)
  f.clock.advance(1)
  t.equal(keys.active().kid, rotation.added.kid, 'at activation the new key signs')
  t.ok(keys.get(oldKid), 'the old key is still published')
  t.equal(keys.secondsUntilChange(), timing.dropDelay)
  f.clock.advance(timing.dropDelay - 1)
  t.ok(keys.get(oldKid), 'one second before its drop time the old key verifies')
  f.clock.advance(1)
  t.equal(keys.get(oldKid), undefined, 'at its drop time it is gone')
  t.same(keys.jwks().keys.map((key) => key.kid), [rotation.added.kid])
  t.same(await states(f), { 'first.pem': 'gone', [rotation.added.file]: 'active' })
})

t.test('a key file others can read is loaded with a warning to chmod it', async (t) => {
  const { chmodSync } = await import('node:fs')
  const { Writable } = await import('node:stream')
  const { createLogger } = await import('../../src/log.js')
  const { generateSigningKeyFile } = await import('../../src/keys/signing-keys.js')
  const dir = t.testdir()
  const file = generateSigningKeyFile(dir, new TestClock())
  chmodSync(file, 0o644)
  const lines: string[] = []
  const log = createLogger({ level: 'warn', destination: new Writable({ write: (chunk, _encoding, done) => (lines.push(chunk.toString()), done()) }) })
  const db = openDatabase(':memory:')
  t.teardown(() => db.destroy())
  await migrateToLatest(db)
  await openKeyRing({ dir, db, clock: new TestClock(), timing: keyTiming(defaults), log })
  t.ok(lines.some((line) => line.includes('chmod 600')), 'the operator is told')
})
