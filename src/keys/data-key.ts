import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { KeyFileError } from './signing-keys.js'
import { ensurePrivateDir, writePrivateFile } from './files.js'

const FILE = 'data-encryption.key'
const VERSION = 'v1'

/**
 * Encrypts small secrets at rest (WeChat session_keys) with AES-256-GCM. The associated data binds a
 * ciphertext to its row, so a value copied to another identity does not decrypt.
 *
 * @example const box = loadSecretBox('keys'); box.open(box.seal('k', 'wx1:o1'), 'wx1:o1')
 */
export interface SecretBox {
  seal(plaintext: string, associatedData: string): string
  open(sealed: string, associatedData: string): string
  /** A keyed, one-way fingerprint (for IP addresses in the audit log): stable, not reversible. */
  fingerprint(value: string): string
}

/** Loads the 256-bit data key from `dir`, generating it (0600) on first start. */
export function loadSecretBox(dir: string): SecretBox {
  ensurePrivateDir(dir)
  const file = join(dir, FILE)
  if (!existsSync(file)) writePrivateFile(file, `${randomBytes(32).toString('base64')}\n`)
  const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64')
  if (key.length !== 32) throw new KeyFileError(`data key ${file} must hold 32 base64-encoded bytes`)
  const fingerprintKey = Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), 'minigate fingerprint', 32))
  return {
    fingerprint(value) {
      return createHmac('sha256', fingerprintKey).update(value).digest('base64url').slice(0, 22)
    },
    seal(plaintext, associatedData) {
      const iv = randomBytes(12)
      const cipher = createCipheriv('aes-256-gcm', key, iv)
      cipher.setAAD(Buffer.from(associatedData))
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
      return [VERSION, iv.toString('base64url'), body.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.')
    },
    open(sealed, associatedData) {
      const [version, iv, body, tag] = sealed.split('.')
      if (version !== VERSION || iv === undefined || body === undefined || tag === undefined) throw new Error('unknown sealed format')
      const authTag = Buffer.from(tag, 'base64url')
      if (authTag.length !== 16) throw new Error('sealed value has a truncated authentication tag')
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'), { authTagLength: 16 })
      decipher.setAAD(Buffer.from(associatedData))
      decipher.setAuthTag(authTag)
      return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8')
    },
  }
}
