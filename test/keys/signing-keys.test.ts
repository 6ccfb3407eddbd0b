import { createPublicKey, generateKeyPairSync } from 'node:crypto'
import { chmodSync, mkdirSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { calculateJwkThumbprint, compactVerify, decodeProtectedHeader, importJWK } from 'jose'
import t, { type Test } from 'tap'
import { defaults } from '../../src/config.js'
import type { Db } from '../../src/db/connection.js'
import { loadSecretBox } from '../../src/keys/data-key.js'
import { keyState, keyTiming, openKeyRing, type KeyRing } from '../../src/keys/key-ring.js'
import { ensurePrivateDir } from '../../src/keys/files.js'
import { KeyFileError, MIN_RSA_BITS, parseSigningKey, readSigningKeyFile, type KeyGenerator } from '../../src/keys/signing-keys.js'
import { mintAccessToken } from '../../src/tokens/mint.js'
import { startTestApp } from '../helpers/app.js'
import { TestClock } from '../helpers/clock.js'
import { freshDatabaseLocation, openTestDatabase } from '../helpers/database.js'
import { fixtureKeyGenerator, fixtureKeyPem } from '../helpers/keys.js'

const timing = keyTiming(defaults)

function rsaPem(bits: number): string {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: bits })
  return privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
}

const RSA_A = fixtureKeyPem(0)
const RSA_B = fixtureKeyPem(1)
// Generated once: a 1024-bit key is quick to make, and no fixture is that weak.
const RSA_WEAK = rsaPem(1024)

/** Opens the key ring of `keysDir` against `db`, as a server start does (generating real RSA keys unless told). */
function ring(keysDir: string, db: Db, clock = new TestClock(), generateKey?: KeyGenerator): Promise<KeyRing> {
  mkdirSync(keysDir, { recursive: true })
  return openKeyRing({ dir: keysDir, db, secretBox: loadSecretBox({ dir: keysDir }), clock, timing, ...(generateKey ? { generateKey } : {}) })
}

async function keyFileError(t: Test, promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (error) {
    t.type(error, KeyFileError)
    t.equal((error as Error).name, 'KeyFileError')
    return (error as Error).message
  }
  t.fail('expected a KeyFileError')
  return ''
}

t.test('an existing keys folder is tightened to 0700', async (t) => {
  const dir = join(t.testdir({ keys: {} }), 'keys')
  chmodSync(dir, 0o755)
  ensurePrivateDir(dir)
  t.equal(statSync(dir).mode & 0o777, 0o700)
})

t.test('the first start generates one RSA-2048 key, sealed in the database, and later starts keep it', async (t) => {
  const dir = t.testdir()
  const keysDir = join(dir, 'keys')
  const db = await openTestDatabase(t)
  const clock = new TestClock()
  const first = await ring(keysDir, db, clock)
  t.same(readdirSync(keysDir), ['data-encryption.key'], 'no key file: the key lives in the database')

  const active = first.active()
  t.equal(active.privateKey.asymmetricKeyType, 'rsa')
  t.equal(active.privateKey.asymmetricKeyDetails?.modulusLength, MIN_RSA_BITS)
  t.equal(MIN_RSA_BITS, 2048)
  const exported = active.publicKey.export({ format: 'jwk' })
  const thumbprint = await calculateJwkThumbprint({ kty: 'RSA', n: exported.n as string, e: exported.e as string }, 'sha256')
  t.equal(active.kid, thumbprint, 'kid is the RFC 7638 thumbprint')
  t.same(first.jwks(), { keys: [{ kty: 'RSA', kid: thumbprint, use: 'sig', alg: 'RS256', n: exported.n, e: exported.e }] })
  t.equal(first.get(active.kid), active)
  const rows = await db.selectFrom('signing_keys').selectAll().execute()
  t.equal(rows.length, 1)
  t.equal(rows[0]?.kid, active.kid)
  t.equal(keyState(rows[0]!, Math.floor(clock.now() / 1000), timing), 'active')

  clock.advance(3600)
  const second = await ring(keysDir, db, clock)
  t.equal(second.active().kid, active.kid, 'same kid after a restart')
  t.equal((await db.selectFrom('signing_keys').selectAll().execute()).length, 1, 'no second key was generated')
})

t.test('a keys folder given with a trailing or doubled slash works on first start', async (t) => {
  const root = t.testdir()
  const db = await openTestDatabase(t)
  const keys = await ring(`${root}//keys/`, db, new TestClock(), fixtureKeyGenerator())
  t.equal((await ring(join(root, 'keys'), db)).active().kid, keys.active().kid, 'the same folder without the slashes')
})

t.test('over HTTP: a restarted server on the same keys and database publishes the same kid', async (t) => {
  // startTestApp empties its test's own directory, so the shared folders live in this parent test's one.
  const dir = t.testdir({ 'shared-keys': { 'signing.pem': RSA_A } })
  const env = { MINIGATE_KEYS_DIR: join(dir, 'shared-keys'), MINIGATE_DB: await freshDatabaseLocation(t, dir) }
  const readKid = async (t: Test, url: string) => {
    const jwks = (await (await fetch(`${url}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> }
    t.equal(jwks.keys.length, 1)
    return jwks.keys[0]?.kid
  }
  let kid: string | undefined
  await t.test('first start', async (t) => {
    const app = await startTestApp(t, env)
    kid = await readKid(t, app.url)
    t.equal(kid, (await parseSigningKey(RSA_A, 'fixture')).kid, 'the key file in the folder was imported')
    await app.login()
    await app.close()
  })
  await t.test('second start', async (t) => {
    const app = await startTestApp(t, env)
    t.equal(await readKid(t, app.url), kid, 'same kid')
    t.equal((await app.deps.db.selectFrom('signing_keys').select('kid').execute()).length, 1, 'no new key')
    const users = await app.deps.db.selectFrom('users').select('id').execute()
    t.equal(users.length, 1, 'the database of the first start was reused')
  })
})

t.test('bad key files stop the start with a clear KeyFileError', async (t) => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
  const ed = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
  const publicOnly = createPublicKey(RSA_A).export({ type: 'spki', format: 'pem' }) as string
  const cases: Array<[string, string, RegExp]> = [
    ['malformed PEM', '-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n', /not a PEM private key/],
    ['empty file', '', /not a PEM private key/],
    ['EC key', ec, /not an RSA key/],
    ['Ed25519 key', ed, /not an RSA key/],
    ['public key only', publicOnly, /not a PEM private key/],
    ['1024-bit RSA key', RSA_WEAK, /1024 bits.*at least 2048/],
  ]
  for (const [name, contents, expected] of cases) {
    const dir = t.testdir({ keys: { 'bad.pem': contents } })
    const keysDir = join(dir, 'keys')
    const db = await openTestDatabase(t)
    const message = await keyFileError(t, ring(keysDir, db, new TestClock(), fixtureKeyGenerator()))
    t.match(message, expected, name)
    t.match(message, 'bad.pem', `${name}: names the file`)
    t.same(await db.selectFrom('signing_keys').selectAll().execute(), [], `${name}: not skipped by generating a new key`)
    await keyFileError(t, readSigningKeyFile(join(keysDir, 'bad.pem')))
  }
})

t.test('a bad key next to a good one still stops the start', async (t) => {
  const dir = t.testdir({ keys: { 'good.pem': RSA_A, 'weak.pem': RSA_WEAK } })
  await keyFileError(t, ring(join(dir, 'keys'), await openTestDatabase(t)))
})

t.test('a bad key dropped in after the first start stops the next start', async (t) => {
  const dir = t.testdir({ keys: { 'good.pem': RSA_A } })
  const db = await openTestDatabase(t)
  await ring(join(dir, 'keys'), db)
  writeFileSync(join(dir, 'keys', 'later.pem'), RSA_WEAK)
  await keyFileError(t, ring(join(dir, 'keys'), db))
})

t.test('files that are not .pem are ignored', async (t) => {
  const dir = t.testdir({ keys: { 'good.pem': RSA_A, 'README.txt': 'notes' } })
  const keys = await ring(join(dir, 'keys'), await openTestDatabase(t))
  t.equal(keys.jwks().keys.length, 1)
})

t.test('get() looks kids up, never paths', async (t) => {
  const dir = t.testdir({ keys: { 'k.pem': RSA_A } })
  const keys = await ring(join(dir, 'keys'), await openTestDatabase(t))
  const active = keys.active()
  for (const kid of [
    'unknown',
    '',
    '../../etc/passwd',
    join(dir, 'keys', 'k.pem'),
    'k.pem',
    'k',
    '__proto__',
    'constructor',
    'toString',
    `${active.kid} `,
    active.kid.toLowerCase() === active.kid ? active.kid.toUpperCase() : active.kid.toLowerCase(),
  ]) {
    t.equal(keys.get(kid), undefined, `string ${JSON.stringify(kid)}`)
  }
  for (const kid of [undefined, null, 42, {}, [active.kid], { toString: () => active.kid }]) {
    t.equal(keys.get(kid), undefined, `non-string ${JSON.stringify(kid)}`)
  }
  t.equal(keys.get(active.kid)?.kid, active.kid)
})

t.test('two keys on a first start: the newest signs, both are published', async (t) => {
  const dir = t.testdir({ keys: { 'old.pem': RSA_A, 'new.pem': RSA_B } })
  const keysDir = join(dir, 'keys')
  // Make "old" older and "new" newer, against the alphabetical order of their names.
  utimesSync(join(keysDir, 'old.pem'), new Date('2026-01-01T00:00:00Z'), new Date('2026-01-01T00:00:00Z'))
  utimesSync(join(keysDir, 'new.pem'), new Date('2026-06-01T00:00:00Z'), new Date('2026-06-01T00:00:00Z'))
  const clock = new TestClock()
  const keys = await ring(keysDir, await openTestDatabase(t), clock)
  const active = keys.active()
  t.equal(active.kid, (await parseSigningKey(RSA_B, 'fixture')).kid, 'the newer file signs')
  const kids = keys.jwks().keys.map((key) => key.kid)
  t.equal(kids.length, 2)
  t.ok(kids.includes(active.kid))
  const old = kids.find((kid) => kid !== active.kid) as string
  t.equal(keys.get(old)?.kid, (await parseSigningKey(RSA_A, 'fixture')).kid, 'the older key is still found by kid')

  const token = await mintAccessToken(
    { config: { issuer: 'https://id.example.com', audience: 'api', accessTtl: 900, refreshTtl: 3600, idTokenTtl: 900 }, keys, clock },
    { sub: 'u1', clientId: 'wx1', scope: 'profile', sid: 's1', loginEndsAt: Number.MAX_SAFE_INTEGER },
  )
  t.equal(decodeProtectedHeader(token.token).kid, active.kid, 'new tokens name the newest key')
  const jwk = keys.jwks().keys.find((key) => key.kid === active.kid)
  await t.resolves(compactVerify(token.token, await importJWK(jwk as object, 'RS256')), 'the published key verifies it')

  clock.advance(timing.dropDelay + 1)
  t.same(keys.jwks().keys.map((key) => key.kid), [active.kid], 'the retired key leaves the JWKS once its tokens have expired')
  t.equal(keys.get(old), undefined)
})

t.test('a key added to a running installation is published before it signs', async (t) => {
  const dir = t.testdir({ keys: { 'first.pem': RSA_A } })
  const keysDir = join(dir, 'keys')
  const db = await openTestDatabase(t)
  const clock = new TestClock()
  const first = (await ring(keysDir, db, clock)).active().kid
  writeFileSync(join(keysDir, 'second.pem'), RSA_B, { mode: 0o600 })
  clock.advance(60)
  const keys = await ring(keysDir, db, clock)
  t.equal(keys.active().kid, first, 'the old key still signs')
  t.equal(keys.jwks().keys.length, 2, 'the new key is already published')
  const added = keys.jwks().keys.find((key) => key.kid !== first)
  t.ok(added && keys.get(added.kid), 'and verifies')
})

t.test('two copies of one key in a new keys folder are a KeyFileError, and nothing is registered', async (t) => {
  const dir = t.testdir({ keys: { 'a.pem': RSA_A, 'b.pem': RSA_A } })
  const db = await openTestDatabase(t)
  t.match(await keyFileError(t, ring(join(dir, 'keys'), db)), /copy/)
  t.same(await db.selectFrom('signing_keys').selectAll().execute(), [], 'no half-registered key')
})
