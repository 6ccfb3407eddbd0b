import { sign } from 'node:crypto'
import type { SigningKey } from '../keys/signing-keys.js'

/** The encoded protected headers of a key, by `typ`: the same few bytes for every token it signs. */
const headers = new WeakMap<SigningKey, Map<string, string>>()

function encodedHeader(key: SigningKey, typ: string): string {
  let byTyp = headers.get(key)
  if (!byTyp) headers.set(key, (byTyp = new Map()))
  let header = byTyp.get(typ)
  if (header === undefined) {
    header = Buffer.from(JSON.stringify({ alg: 'RS256', typ, kid: key.kid })).toString('base64url')
    byTyp.set(typ, header)
  }
  return header
}

/**
 * Signs a JWT as a compact JWS with RS256 (RFC 7515, RSASSA-PKCS1-v1_5 with SHA-256) on the thread pool.
 * Tokens are signed on every login and refresh, so this takes the shortest path: node's own RSA signer
 * called with the KeyObject, which leaves about a third of the main-thread time jose's WebCrypto path
 * needs. Verification stays with jose.
 *
 * @example const token = await signJwt(keys.active(), 'at+jwt', { sub, aud, exp })
 */
export function signJwt(key: SigningKey, typ: string, payload: Record<string, unknown>): Promise<string> {
  const input = `${encodedHeader(key, typ)}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`
  return new Promise((resolve, reject) => {
    sign('sha256', Buffer.from(input), key.privateKey, (error, signature) => {
      if (error) reject(error)
      else resolve(`${input}.${signature.toString('base64url')}`)
    })
  })
}
