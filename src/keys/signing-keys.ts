import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { calculateJwkThumbprint, type JWK } from 'jose'

/** An RSA signing key; `kid` is its RFC 7638 thumbprint. */
export interface SigningKey {
  kid: string
  privateKey: KeyObject
  publicKey: KeyObject
  /** The public half as published in the JWKS. */
  publicJwk: JWK
}

/** The signing keys: the one that signs, and every key verifiers may see in the JWKS. */
export interface KeyStore {
  /** The key that signs new tokens. */
  active(): SigningKey
  /** A published key by `kid`; `undefined` for any other value, which is never used as a path. */
  get(kid: unknown): SigningKey | undefined
  /** The JSON Web Key Set of the public keys. */
  jwks(): { keys: JWK[] }
}

export class KeyFileError extends Error {
  override name = 'KeyFileError'
}

export const MIN_RSA_BITS = 2048

/**
 * Reads a PEM private key; one that is malformed, not RSA or too weak is refused with a message naming
 * `source` (a file, or a key's kid).
 */
export async function parseSigningKey(pem: string | Buffer, source: string): Promise<SigningKey> {
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey(pem)
  } catch {
    throw new KeyFileError(`signing key ${source} is not a PEM private key`)
  }
  const details = privateKey.asymmetricKeyDetails
  if (privateKey.asymmetricKeyType !== 'rsa') throw new KeyFileError(`signing key ${source} is not an RSA key`)
  if ((details?.modulusLength ?? 0) < MIN_RSA_BITS) {
    throw new KeyFileError(`signing key ${source} has ${details?.modulusLength} bits; RS256 keys need at least ${MIN_RSA_BITS}`)
  }
  const publicKey = createPublicKey(privateKey)
  const { kty, n, e } = publicKey.export({ format: 'jwk' })
  const kid = await calculateJwkThumbprint({ kty: kty as string, n: n as string, e: e as string }, 'sha256')
  return { kid, privateKey, publicKey, publicJwk: { kty: kty as string, kid, use: 'sig', alg: 'RS256', n: n as string, e: e as string } }
}

/** Reads a PEM private key file (an operator's own key dropped into the keys folder). */
export async function readSigningKeyFile(file: string): Promise<SigningKey & { pem: string }> {
  let pem: string
  try {
    pem = readFileSync(file, 'utf8')
  } catch (error) {
    throw new KeyFileError(`signing key ${file} is unreadable (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  return { ...(await parseSigningKey(pem, file)), pem }
}

/** Makes a new PKCS#8 PEM private key. */
export type KeyGenerator = () => Promise<string>

const generateRsa = promisify(generateKeyPair)

/** A new RSA-2048 key, generated off the main thread. */
export const generateRsaKey: KeyGenerator = async () => {
  const { privateKey } = await generateRsa('rsa', { modulusLength: MIN_RSA_BITS, privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } })
  return privateKey
}
