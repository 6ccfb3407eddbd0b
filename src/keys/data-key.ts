import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { KeyFileError } from './signing-keys.js'
import { ensurePrivateDir, writePrivateFile } from './files.js'

/** The data key file in the keys folder: one base64 key per line, the first seals. */
export const DATA_KEY_FILE = 'data-encryption.key'

/**
 * Encrypts secrets at rest (WeChat session_keys, signing keys) with AES-256-GCM. The associated data
 * binds a ciphertext to its row, so a value copied to another row does not decrypt.
 *
 * There may be several data keys: the first seals, every one opens, so the key can be rotated (a new
 * key first, `minigate keys rewrap`, then the old one removed). Sealed values name their key by a short
 * id (`v2.<id>.<iv>.<body>.<tag>`); values from before key ids (`v1.<iv>.<body>.<tag>`) are opened
 * with whichever key fits.
 *
 * @example const box = loadSecretBox({ dir: 'keys' }); box.open(box.seal('k', 'wx1:o1'), 'wx1:o1')
 */
export interface SecretBox {
  seal(plaintext: string, associatedData: string): string
  open(sealed: string, associatedData: string): string
  /** Whether a sealed value was sealed with an older data key (`minigate keys rewrap` re-seals it). */
  isStale(sealed: string): boolean
  /** A keyed, one-way fingerprint (for IP addresses in the audit log): stable, not reversible. */
  fingerprint(value: string): string
}

interface DataKey {
  id: string
  key: Buffer
}

function parseKey(text: string, where: string): DataKey {
  const key = Buffer.from(text, 'base64')
  if (key.length !== 32 || !/^[A-Za-z0-9+/]{43}=$/.test(text)) throw new KeyFileError(`${where} must hold 32 base64-encoded bytes per key`)
  return { key, id: Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), 'minigate data key id', 6)).toString('base64url') }
}

/**
 * The data keys: `MINIGATE_DATA_KEYS` (comma-separated base64 keys, the form every instance of a
 * cluster is given) when set, else the file in the keys folder, generated (0600) on first start.
 */
function readDataKeys(options: SecretBoxOptions): DataKey[] {
  if (options.keys && options.keys.length > 0) return options.keys.map((text) => parseKey(text.trim(), 'MINIGATE_DATA_KEYS'))
  const file = join(options.dir, DATA_KEY_FILE)
  if (!existsSync(file)) {
    // Only the server makes the first data key: a tool that made its own would seal with a key the
    // server does not have.
    if (options.create === false) throw new KeyFileError(`no data key at ${file} (set MINIGATE_KEYS_DIR to the server's keys folder, or MINIGATE_DATA_KEYS)`)
    ensurePrivateDir(options.dir)
    writePrivateFile(file, `${randomBytes(32).toString('base64')}\n`)
  }
  const lines = readFileSync(file, 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
  if (lines.length === 0) throw new KeyFileError(`data key ${file} holds no key`)
  return lines.map((line) => parseKey(line, `data key ${file}`))
}

export interface SecretBoxOptions {
  /** The keys folder, holding `data-encryption.key`. */
  dir: string
  /** Keys given in the environment (`MINIGATE_DATA_KEYS`); they take precedence over the file. */
  keys?: string[] | undefined
  /** Generate the file when it is missing (the server on first start). Default true. */
  create?: boolean
}

/** Loads the data keys (see `readDataKeys`); the first one seals. */
export function loadSecretBox(options: SecretBoxOptions): SecretBox {
  const keys = readDataKeys(options)
  const current = keys[0] as DataKey
  const byId = new Map(keys.map((entry) => [entry.id, entry]))
  const fingerprintKey = Buffer.from(hkdfSync('sha256', current.key, Buffer.alloc(0), 'minigate fingerprint', 32))

  function openWith(key: Buffer, iv: string, body: string, tag: string, associatedData: string): string {
    const authTag = Buffer.from(tag, 'base64url')
    if (authTag.length !== 16) throw new Error('sealed value has a truncated authentication tag')
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'), { authTagLength: 16 })
    decipher.setAAD(Buffer.from(associatedData))
    decipher.setAuthTag(authTag)
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8')
  }

  return {
    fingerprint(value) {
      return createHmac('sha256', fingerprintKey).update(value).digest('base64url').slice(0, 22)
    },
    seal(plaintext, associatedData) {
      const iv = randomBytes(12)
      const cipher = createCipheriv('aes-256-gcm', current.key, iv)
      cipher.setAAD(Buffer.from(associatedData))
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
      return ['v2', current.id, iv.toString('base64url'), body.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.')
    },
    open(sealed, associatedData) {
      const parts = sealed.split('.')
      if (parts[0] === 'v2' && parts.length === 5) {
        const [, id, iv, body, tag] = parts as [string, string, string, string, string]
        const entry = byId.get(id)
        if (!entry) throw new Error('sealed with a data key that is not configured')
        return openWith(entry.key, iv, body, tag, associatedData)
      }
      if (parts[0] === 'v1' && parts.length === 4) {
        const [, iv, body, tag] = parts as [string, string, string, string]
        for (const entry of keys) {
          try {
            return openWith(entry.key, iv, body, tag, associatedData)
          } catch {
            // Not this key: try the next.
          }
        }
        throw new Error('no configured data key opens this value')
      }
      throw new Error('unknown sealed format')
    },
    isStale(sealed) {
      return !sealed.startsWith(`v2.${current.id}.`)
    },
  }
}
