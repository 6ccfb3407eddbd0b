import { createCipheriv, randomBytes } from 'node:crypto'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { loadSecretBox } from '../../src/keys/data-key.js'
import { KeyFileError } from '../../src/keys/signing-keys.js'

const SESSION_KEY = 'HyVFkGl5F5OQWJZZaNzBBg=='
const AD = 'wx0000000000000dev:o-user-1'

/** Changes one base64url character of `text` at `index`. */
function flipChar(text: string, index: number): string {
  const char = text[index] as string
  return text.slice(0, index) + (char === 'A' ? 'B' : 'A') + text.slice(index + 1)
}

t.test('seal and open round-trip, including non-ASCII text', async (t) => {
  const box = loadSecretBox({ dir: join(t.testdir(), 'keys') })
  const sealed = box.seal(SESSION_KEY, AD)
  t.match(sealed, /^v2\.[\w-]{8}\.[\w-]+\.[\w-]+\.[\w-]+$/, 'versioned, names its key, dot-separated base64url')
  t.notOk(sealed.includes(SESSION_KEY), 'the plaintext is not visible')
  t.equal(box.open(sealed, AD), SESSION_KEY)
  t.equal(box.open(box.seal('', AD), AD), '', 'the empty string')
  t.equal(box.open(box.seal('微信 ✓', AD), AD), '微信 ✓', 'UTF-8')
})

t.test('each seal uses a fresh IV', async (t) => {
  const box = loadSecretBox({ dir: t.testdir() })
  const sealed = new Set(Array.from({ length: 20 }, () => box.seal(SESSION_KEY, AD)))
  t.equal(sealed.size, 20, 'twenty different ciphertexts for one plaintext')
  const ivs = new Set([...sealed].map((value) => value.split('.')[2]))
  t.equal(ivs.size, 20, 'twenty different IVs')
  for (const value of sealed) t.equal(box.open(value, AD), SESSION_KEY)
})

t.test('the associated data binds a ciphertext to its row', async (t) => {
  const box = loadSecretBox({ dir: t.testdir() })
  const sealed = box.seal(SESSION_KEY, AD)
  t.throws(() => box.open(sealed, 'wx0000000000000dev:o-user-2'), 'another identity cannot open it')
  t.throws(() => box.open(sealed, ''), 'empty associated data fails')
  t.throws(() => box.open(sealed, `${AD} `), 'one extra character fails')
})

t.test('tampered or malformed ciphertexts fail', async (t) => {
  const box = loadSecretBox({ dir: t.testdir() })
  const sealed = box.seal(SESSION_KEY, AD)
  const [version, id, iv, body, tag] = sealed.split('.') as [string, string, string, string, string]
  const tampered: Array<[string, string]> = [
    ['body bit flip', [version, id, iv, flipChar(body, 0), tag].join('.')],
    ['iv bit flip', [version, id, flipChar(iv, 0), body, tag].join('.')],
    ['tag bit flip', [version, id, iv, body, flipChar(tag, 0)].join('.')],
    ['key id changed', [version, flipChar(id, 0), iv, body, tag].join('.')],
    ['truncated tag', [version, id, iv, body, tag.slice(0, 8)].join('.')],
    ['empty tag', [version, id, iv, body, ''].join('.')],
    ['wrong version', ['v3', id, iv, body, tag].join('.')],
    ['missing part', [version, id, iv, body].join('.')],
    ['not sealed at all', SESSION_KEY],
    ['empty string', ''],
  ]
  for (const [name, value] of tampered) {
    t.throws(() => box.open(value, AD), name)
  }
  t.equal(box.open(sealed, AD), SESSION_KEY, 'the original still opens')
})

t.test('a box with another key cannot open the ciphertext', async (t) => {
  const root = t.testdir()
  const one = loadSecretBox({ dir: join(root, 'one') })
  const two = loadSecretBox({ dir: join(root, 'two') })
  t.throws(() => two.open(one.seal(SESSION_KEY, AD), AD))
})

t.test('the key file is created once, 0600, and reused', async (t) => {
  const dir = join(t.testdir(), 'keys')
  const first = loadSecretBox({ dir })
  const file = join(dir, 'data-encryption.key')
  t.equal(statSync(file).mode & 0o777, 0o600, 'key file is 0600')
  t.equal(statSync(dir).mode & 0o777, 0o700, 'folder is 0700')
  const contents = readFileSync(file, 'utf8')
  t.equal(Buffer.from(contents.trim(), 'base64').length, 32, '256-bit key')

  const sealed = first.seal(SESSION_KEY, AD)
  const second = loadSecretBox({ dir })
  t.equal(readFileSync(file, 'utf8'), contents, 'the file is not rewritten')
  t.equal(second.open(sealed, AD), SESSION_KEY, 'a later load (a restart) opens earlier ciphertexts')
})

t.test('a key file of the wrong length stops the start', async (t) => {
  const cases: Array<[string, string]> = [
    ['16 bytes', randomBytes(16).toString('base64')],
    ['33 bytes', randomBytes(33).toString('base64')],
    ['empty', ''],
    ['not base64', '!!!! definitely not a key !!!!'],
  ]
  for (const [name, contents] of cases) {
    const dir = t.testdir({ 'data-encryption.key': contents })
    t.throws(() => loadSecretBox({ dir }), KeyFileError, name)
    try {
      loadSecretBox({ dir })
    } catch (error) {
      t.match((error as Error).message, /data key .*data-encryption\.key (must hold 32 base64-encoded bytes|holds no key)/, `${name}: clear message`)
      t.notOk((error as Error).message.includes(contents) && contents !== '', `${name}: the key material is not in the message`)
    }
    t.equal(readFileSync(join(dir, 'data-encryption.key'), 'utf8'), contents, `${name}: the file is left alone`)
  }
})

t.test('a valid key written by an operator is used as is', async (t) => {
  const key = randomBytes(32)
  const dir = t.testdir({ 'data-encryption.key': `${key.toString('base64')}\n` })
  const box = loadSecretBox({ dir })
  const sealed = box.seal(SESSION_KEY, AD)
  t.equal(loadSecretBox({ dir }).open(sealed, AD), SESSION_KEY)
})

t.test('a truncated authentication tag is refused', async (t) => {
  const box = loadSecretBox({ dir: t.testdir() })
  const [version, id, iv, body, tag] = box.seal(SESSION_KEY, AD).split('.') as [string, string, string, string, string]
  for (const bytes of [4, 8, 12, 15]) {
    const short = Buffer.from(tag, 'base64url').subarray(0, bytes).toString('base64url')
    t.throws(() => box.open([version, id, iv, body, short].join('.'), AD), `a ${bytes}-byte tag`)
  }
})

/** A value sealed the way minigate sealed before data keys had ids: `v1.<iv>.<body>.<tag>`. */
function sealV1(key: Buffer, plaintext: string, ad: string): string {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  cipher.setAAD(Buffer.from(ad))
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
  return ['v1', iv.toString('base64url'), body.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.')
}

t.test('a data-key rotation: the first key seals, every key opens, older values are stale', async (t) => {
  const [oldKey, newKey] = [randomBytes(32), randomBytes(32)]
  const before = loadSecretBox({ dir: t.testdir({ 'data-encryption.key': `${oldKey.toString('base64')}\n` }) })
  const sealedBefore = before.seal(SESSION_KEY, AD)
  const legacy = sealV1(oldKey, SESSION_KEY, AD)
  t.equal(before.open(legacy, AD), SESSION_KEY, 'values sealed before key ids still open')
  t.ok(before.isStale(legacy), 'and are stale: rewrap re-seals them')
  t.notOk(before.isStale(sealedBefore))

  const during = loadSecretBox({ dir: t.testdir({ 'data-encryption.key': `# the new key first\n${newKey.toString('base64')}\n${oldKey.toString('base64')}\n` }) })
  t.equal(during.open(sealedBefore, AD), SESSION_KEY, 'the old key still opens what it sealed')
  t.equal(during.open(legacy, AD), SESSION_KEY)
  t.ok(during.isStale(sealedBefore), 'a value of the old key is stale')
  const sealedDuring = during.seal(SESSION_KEY, AD)
  t.notOk(during.isStale(sealedDuring), 'the new key seals')
  t.throws(() => before.open(sealedDuring, AD), /data key that is not configured/, 'an instance without the new key cannot open it')

  const after = loadSecretBox({ dir: t.testdir({ 'data-encryption.key': `${newKey.toString('base64')}\n` }) })
  t.equal(after.open(sealedDuring, AD), SESSION_KEY)
  t.throws(() => after.open(sealedBefore, AD), 'once the old key is removed its values no longer open')
})

t.test('MINIGATE_DATA_KEYS: keys from the environment, and no file is written', async (t) => {
  const [first, second] = [randomBytes(32).toString('base64'), randomBytes(32).toString('base64')]
  const dir = join(t.testdir(), 'keys')
  const box = loadSecretBox({ dir, keys: [first, second] })
  t.equal(box.open(box.seal(SESSION_KEY, AD), AD), SESSION_KEY)
  t.notOk(existsSync(join(dir, 'data-encryption.key')), 'no key file is created')
  const fromFile = loadSecretBox({ dir: t.testdir({ 'data-encryption.key': `${first}\n` }) })
  t.equal(fromFile.open(box.seal(SESSION_KEY, AD), AD), SESSION_KEY, 'the same key in a file opens it: instances may be given either')
  t.throws(() => loadSecretBox({ dir, keys: ['short'] }), /MINIGATE_DATA_KEYS must hold 32 base64-encoded bytes/)
})

t.test('a tool that must not create the data key refuses to, naming where it looked', async (t) => {
  const dir = join(t.testdir(), 'elsewhere')
  t.throws(() => loadSecretBox({ dir, create: false }), /no data key at .*elsewhere\/data-encryption\.key/)
  t.notOk(existsSync(dir), 'nothing is created')
})
