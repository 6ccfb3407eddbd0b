import { createPrivateKey } from 'node:crypto'
import { chmodSync, mkdirSync, readdirSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { defaults } from '../../src/config.js'
import type { Db } from '../../src/db/connection.js'
import type { SigningKeyRow } from '../../src/db/schema.js'
import { listSigningKeys, scheduleSigningKey } from '../../src/db/signing-keys.js'
import { loadSecretBox, type SecretBox } from '../../src/keys/data-key.js'
import { CLOCK_SKEW_SECONDS, KEY_RELOAD_SECONDS, keyState, keyTiming, openKeyRing, safeToDropAt, type KeyRing, type KeyTiming } from '../../src/keys/key-ring.js'
import { activateKey, addKey, retireKey, rotateKeys, type KeyAdmin } from '../../src/keys/rotation.js'
import { KeyFileError, parseSigningKey } from '../../src/keys/signing-keys.js'
import { createLogger } from '../../src/log.js'
import { TestClock } from '../helpers/clock.js'
import { openTestDatabase } from '../helpers/database.js'
import { fixtureKeyGenerator, fixtureKeyPem } from '../helpers/keys.js'

const pem = (index: number) => fixtureKeyPem(index)

function writeKey(dir: string, name: string, index: number, mtimeSeconds?: number, mode = 0o600): string {
  mkdirSync(dir, { recursive: true })
  const file = join(dir, name)
  writeFileSync(file, pem(index), { mode })
  if (mtimeSeconds !== undefined) utimesSync(file, mtimeSeconds, mtimeSeconds)
  return file
}

const kidOf = async (index: number) => (await parseSigningKey(pem(index), 'fixture')).kid
const epoch = (clock: TestClock) => Math.floor(clock.now() / 1000)
const timing = keyTiming(defaults)

interface Fixture {
  dir: string
  db: Db
  secretBox: SecretBox
  clock: TestClock
  admin: KeyAdmin
  open: (log?: ReturnType<typeof createLogger>) => Promise<KeyRing>
}

/** A keys folder (data key only) and a fresh migrated database, closed with the test; keys come from fixtures. */
async function fixture(t: Test): Promise<Fixture> {
  const dir = join(t.testdir(), 'keys')
  mkdirSync(dir, { recursive: true })
  const db = await openTestDatabase(t)
  const secretBox = loadSecretBox({ dir })
  const clock = new TestClock()
  const generateKey = fixtureKeyGenerator(6)
  return {
    dir,
    db,
    secretBox,
    clock,
    admin: { db, secretBox, clock, timing, generateKey },
    open: (log) => openKeyRing({ dir, db, secretBox, clock, timing, generateKey, ...(log ? { log } : {}) }),
  }
}

/** Each key's state, by its file name (imported keys) or its kid (generated ones). */
async function states(f: Fixture): Promise<Record<string, string>> {
  const now = epoch(f.clock)
  return Object.fromEntries((await listSigningKeys(f.db)).map((row) => [row.file ?? row.kid, keyState(row, now, timing)]))
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
  const row = (times: Partial<SigningKeyRow>): SigningKeyRow => ({ kid: 'k', private_key: null, file: 'k.pem', created_at: 0, activates_at: null, retires_at: null, removed_at: null, ...times })

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

t.test('a fresh start: one key is generated into the database, sealed; the keys folder holds the data key only', async (t) => {
  const f = await fixture(t)
  const keys = await f.open()
  t.same(readdirSync(f.dir), ['data-encryption.key'], 'no key file is written')
  t.equal(statSync(join(f.dir, 'data-encryption.key')).mode & 0o777, 0o600, 'the data key is 0600')
  t.equal(statSync(f.dir).mode & 0o777, 0o700, 'the keys folder is 0700')
  const [row] = await listSigningKeys(f.db)
  t.match(row, { kid: keys.active().kid, file: null, created_at: epoch(f.clock), activates_at: epoch(f.clock), retires_at: null, removed_at: null })
  t.match(row?.private_key, /^v2\./, 'the private key is sealed')
  t.notMatch(row?.private_key, /PRIVATE KEY/, 'not stored in the clear')
  t.throws(() => createPrivateKey(row?.private_key as string), 'not a readable key')
  t.same(keys.jwks().keys.map((key) => key.kid), [keys.active().kid])
  t.equal(keys.secondsUntilChange(), Number.POSITIVE_INFINITY, 'nothing is scheduled')

  const again = await f.open()
  t.equal((await listSigningKeys(f.db)).length, 1, 'a second start generates nothing')
  t.equal(again.active().kid, keys.active().kid)
})

t.test('two instances starting on one empty database at once agree on one signing key', async (t) => {
  const f = await fixture(t)
  const [one, two] = await Promise.all([
    openKeyRing({ dir: f.dir, db: f.db, secretBox: f.secretBox, clock: f.clock, timing, generateKey: fixtureKeyGenerator(1) }),
    openKeyRing({ dir: f.dir, db: f.db, secretBox: f.secretBox, clock: f.clock, timing, generateKey: fixtureKeyGenerator(2) }),
  ])
  t.equal(one.active().kid, two.active().kid, 'both sign with the same key')
  const rows = await listSigningKeys(f.db)
  t.equal(rows.filter((row) => keyState(row, epoch(f.clock), timing) === 'active').length, 1, 'exactly one key is active')
})

t.test('the database itself refuses a second open-ended key', async (t) => {
  const f = await fixture(t)
  const keys = await f.open()
  const now = epoch(f.clock)
  const second = { kid: 'second', private_key: null, file: null, created_at: now, activates_at: now + 10, retires_at: null, removed_at: null }
  await t.rejects(f.db.insertInto('signing_keys').values(second).execute(), 'a second key scheduled to sign with no end is refused')
  await f.db.insertInto('signing_keys').values({ ...second, activates_at: null }).execute()
  t.pass('a next key (not scheduled) is fine')
  t.equal(keys.active().kid, (await listSigningKeys(f.db))[0]?.kid)
})

t.test('a keys folder of several files with no schedule: the newest signs, the others are retired', async (t) => {
  const f = await fixture(t)
  // File names in the opposite order to their ages: the age (mtime) decides.
  writeKey(f.dir, 'c.pem', 0, 1_000)
  writeKey(f.dir, 'a.pem', 1, 2_000)
  writeKey(f.dir, 'b.pem', 2, 3_000)
  const keys = await f.open()
  t.same(await states(f), { 'a.pem': 'retired', 'b.pem': 'active', 'c.pem': 'retired' })
  t.equal(keys.active().kid, await kidOf(2), 'the newest file signs')
  t.equal(keys.jwks().keys.length, 3, 'the retired keys stay published: tokens they signed may still be valid')
  for (const index of [0, 1]) t.ok(keys.get(await kidOf(index)), `fixture ${index} verifies tokens`)
  const now = epoch(f.clock)
  for (const row of await listSigningKeys(f.db)) {
    t.equal(row.activates_at, now)
    t.equal(row.retires_at, row.file === 'b.pem' ? null : now)
  }
  f.clock.advance(timing.dropDelay)
  t.equal(keys.jwks().keys.length, 1, 'after the drop delay only the active key is published, with no reload')
  t.equal(keys.get(await kidOf(1)), undefined)
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
  const secondKid = await kidOf(1)
  t.ok(keys.get(secondKid), 'it is published')
  t.same(keys.jwks().keys.map((key) => key.kid).sort(), [activeKid, secondKid].sort())
  const row = (await listSigningKeys(f.db)).find((candidate) => candidate.file === 'second.pem')
  t.match(row, { created_at: epoch(f.clock), activates_at: null, retires_at: null, removed_at: null })
})

t.test('two new files holding one key stop the start; a file of a key already held is ignored', async (t) => {
  const f = await fixture(t)
  writeKey(f.dir, 'first.pem', 0)
  const keys = await f.open()
  writeKey(f.dir, 'again.pem', 0)
  t.equal((await f.open()).active().kid, keys.active().kid, 'a file of a registered key changes nothing')
  t.equal((await listSigningKeys(f.db)).length, 1)
  writeKey(f.dir, 'new.pem', 1)
  writeKey(f.dir, 'copy.pem', 1)
  await t.rejects(f.open(), KeyFileError)
  await t.rejects(f.open(), /(new|copy)\.pem is a copy of key/)
})

t.test('an imported key lives in the database: its file may be deleted', async (t) => {
  const f = await fixture(t)
  writeKey(f.dir, 'first.pem', 0)
  const first = await f.open()
  unlinkSync(join(f.dir, 'first.pem'))
  const again = await f.open()
  t.equal(again.active().kid, first.active().kid)
})

t.test('a key registered before keys lived in the database is imported from its file once', async (t) => {
  const f = await fixture(t)
  const kid = await kidOf(3)
  const now = epoch(f.clock)
  // What the migration leaves of an older installation: the schedule, and the key in its file.
  await f.db.insertInto('signing_keys').values({ kid, private_key: null, file: 'old.pem', created_at: now, activates_at: now, retires_at: null, removed_at: null }).execute()
  await t.rejects(f.open(), /signing key .* is registered with file old\.pem, which is not in/, 'without its file the start stops, naming it')
  writeKey(f.dir, 'old.pem', 3)
  const keys = await f.open()
  t.equal(keys.active().kid, kid)
  t.match((await listSigningKeys(f.db))[0]?.private_key, /^v2\./, 'sealed into the database')
  unlinkSync(join(f.dir, 'old.pem'))
  t.equal((await f.open()).active().kid, kid, 'and needs the file no more')
})

t.test('a sealed key that does not open with the configured data key stops the start', async (t) => {
  const f = await fixture(t)
  await f.open()
  const other = loadSecretBox({ dir: join(f.dir, '..', 'other') })
  await t.rejects(openKeyRing({ dir: f.dir, db: f.db, secretBox: other, clock: f.clock, timing }), /does not open with the configured data key/)
})

async function kidOfFile(db: Db, file: string): Promise<string> {
  const row = (await listSigningKeys(db)).find((candidate) => candidate.file === file)
  if (!row) throw new Error(`no row for ${file}`)
  return row.kid
}

t.test('no active key stops the start with a message pointing at keys rotate', async (t) => {
  const f = await fixture(t)
  writeKey(f.dir, 'first.pem', 0)
  await f.open()
  const kid = await kidOfFile(f.db, 'first.pem')
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

  t.equal(added.file, null, 'an added key has no file: it lives sealed in the database')

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
  t.same(await states(f), { 'first.pem': 'gone', [rotation.added.kid]: 'active' })
})

t.test('a key file others can read is imported with a warning to chmod (or delete) it', async (t) => {
  const f = await fixture(t)
  writeKey(f.dir, 'open.pem', 4, undefined, 0o644)
  chmodSync(join(f.dir, 'open.pem'), 0o644)
  const lines: string[] = []
  const log = createLogger({ level: 'warn', destination: new Writable({ write: (chunk, _encoding, done) => (lines.push(chunk.toString()), done()) }) })
  await f.open(log)
  t.ok(lines.some((line) => line.includes('chmod 600')), 'the operator is told')
})
