import { randomBytes } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
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
  const box = loadSecretBox(join(t.testdir(), 'keys'))
  const sealed = box.seal(SESSION_KEY, AD)
  t.match(sealed, /^v1\.[\w-]+\.[\w-]+\.[\w-]+$/, 'versioned, dot-separated base64url')
  t.notOk(sealed.includes(SESSION_KEY), 'the plaintext is not visible')
  t.equal(box.open(sealed, AD), SESSION_KEY)
  t.equal(box.open(box.seal('', AD), AD), '', 'the empty string')
  t.equal(box.open(box.seal('微信 ✓', AD), AD), '微信 ✓', 'UTF-8')
})

t.test('each seal uses a fresh IV', async (t) => {
  const box = loadSecretBox(t.testdir())
  const sealed = new Set(Array.from({ length: 20 }, () => box.seal(SESSION_KEY, AD)))
  t.equal(sealed.size, 20, 'twenty different ciphertexts for one plaintext')
  const ivs = new Set([...sealed].map((value) => value.split('.')[1]))
  t.equal(ivs.size, 20, 'twenty different IVs')
  for (const value of sealed) t.equal(box.open(value, AD), SESSION_KEY)
})

t.test('the associated data binds a ciphertext to its row', async (t) => {
  const box = loadSecretBox(t.testdir())
  const sealed = box.seal(SESSION_KEY, AD)
  t.throws(() => box.open(sealed, 'wx0000000000000dev:o-user-2'), 'another identity cannot open it')
  t.throws(() => box.open(sealed, ''), 'empty associated data fails')
  t.throws(() => box.open(sealed, `${AD} `), 'one extra character fails')
})

t.test('tampered or malformed ciphertexts fail', async (t) => {
  const box = loadSecretBox(t.testdir())
  const sealed = box.seal(SESSION_KEY, AD)
  const [version, iv, body, tag] = sealed.split('.') as [string, string, string, string]
  const tampered: Array<[string, string]> = [
    ['body bit flip', [version, iv, flipChar(body, 0), tag].join('.')],
    ['iv bit flip', [version, flipChar(iv, 0), body, tag].join('.')],
    ['tag bit flip', [version, iv, body, flipChar(tag, 0)].join('.')],
    ['truncated tag', [version, iv, body, tag.slice(0, 8)].join('.')],
    ['empty tag', [version, iv, body, ''].join('.')],
    ['wrong version', ['v2', iv, body, tag].join('.')],
    ['missing part', [version, iv, body].join('.')],
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
  const one = loadSecretBox(join(root, 'one'))
  const two = loadSecretBox(join(root, 'two'))
  t.throws(() => two.open(one.seal(SESSION_KEY, AD), AD))
})

t.test('the key file is created once, 0600, and reused', async (t) => {
  const dir = join(t.testdir(), 'keys')
  const first = loadSecretBox(dir)
  const file = join(dir, 'data-encryption.key')
  t.equal(statSync(file).mode & 0o777, 0o600, 'key file is 0600')
  t.equal(statSync(dir).mode & 0o777, 0o700, 'folder is 0700')
  const contents = readFileSync(file, 'utf8')
  t.equal(Buffer.from(contents.trim(), 'base64').length, 32, '256-bit key')

  const sealed = first.seal(SESSION_KEY, AD)
  const second = loadSecretBox(dir)
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
    t.throws(() => loadSecretBox(dir), KeyFileError, name)
    try {
      loadSecretBox(dir)
    } catch (error) {
      t.match((error as Error).message, /data key .*data-encryption\.key must hold 32 base64-encoded bytes/, `${name}: clear message`)
      t.notOk((error as Error).message.includes(contents) && contents !== '', `${name}: the key material is not in the message`)
    }
    t.equal(readFileSync(join(dir, 'data-encryption.key'), 'utf8'), contents, `${name}: the file is left alone`)
  }
})

t.test('a valid key written by an operator is used as is', async (t) => {
  const key = randomBytes(32)
  const dir = t.testdir({ 'data-encryption.key': `${key.toString('base64')}\n` })
  const box = loadSecretBox(dir)
  const sealed = box.seal(SESSION_KEY, AD)
  t.equal(loadSecretBox(dir).open(sealed, AD), SESSION_KEY)
})

t.test('a truncated authentication tag is refused', async (t) => {
  const box = loadSecretBox(t.testdir())
  const [version, iv, body, tag] = box.seal(SESSION_KEY, AD).split('.') as [string, string, string, string]
  for (const bytes of [4, 8, 12, 15]) {
    const short = Buffer.from(tag, 'base64url').subarray(0, bytes).toString('base64url')
    t.throws(() => box.open([version, iv, body, short].join('.'), AD), `a ${bytes}-byte tag`)
  }
})
