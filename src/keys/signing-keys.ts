import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { calculateJwkThumbprint, type JWK } from 'jose'
import type { Clock } from '../clock.js'
import { ensurePrivateDir, writePrivateFile } from './files.js'

/** An RSA signing key; `kid` is its RFC 7638 thumbprint. */
export interface SigningKey {
  kid: string
  privateKey: KeyObject
  publicKey: KeyObject
  /** The public half as published in the JWKS. */
  publicJwk: JWK
  file: string
  createdAt: number
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

/** Reads one PEM private key file; a key that is unreadable, not RSA or too weak stops the start. */
export async function readSigningKey(file: string): Promise<SigningKey> {
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey(readFileSync(file))
  } catch (error) {
    throw new KeyFileError(`signing key ${file} is unreadable or not a PEM private key (${(error as NodeJS.ErrnoException).code ?? 'malformed'})`)
  }
  const details = privateKey.asymmetricKeyDetails
  if (privateKey.asymmetricKeyType !== 'rsa') throw new KeyFileError(`signing key ${file} is not an RSA key`)
  if ((details?.modulusLength ?? 0) < MIN_RSA_BITS) {
    throw new KeyFileError(`signing key ${file} has ${details?.modulusLength} bits; RS256 keys need at least ${MIN_RSA_BITS}`)
  }
  const publicKey = createPublicKey(privateKey)
  const { kty, n, e } = publicKey.export({ format: 'jwk' })
  const kid = await calculateJwkThumbprint({ kty: kty as string, n: n as string, e: e as string }, 'sha256')
  return {
    kid,
    privateKey,
    publicKey,
    publicJwk: { kty: kty as string, kid, use: 'sig', alg: 'RS256', n: n as string, e: e as string },
    file,
    createdAt: statSync(file).mtimeMs,
  }
}

/** Generates an RSA-2048 key into `dir` as a 0600 PKCS#8 PEM file and returns its path. */
export function generateSigningKeyFile(dir: string, clock: Clock): string {
  ensurePrivateDir(dir)
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: MIN_RSA_BITS })
  const file = join(dir, `signing-${clock.now()}-${randomBytes(4).toString('hex')}.pem`)
  writePrivateFile(file, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string)
  return file
}
