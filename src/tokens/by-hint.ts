import { TokenRejected } from './verify.js'

/** The kinds of token the revocation and introspection endpoints accept. */
export type TokenKind = 'access_token' | 'refresh_token'

/**
 * Tries to read a token as each kind, the hinted kind first: RFC 7009 and RFC 7662 make
 * `token_type_hint` only a hint. Returns the first kind that succeeds, or undefined.
 *
 * @example const found = await byHint(params.token_type_hint, 'refresh_token', { access_token: ..., refresh_token: ... })
 */
export async function byHint<T>(hint: string | undefined, usualFirst: TokenKind, readers: Record<TokenKind, () => Promise<T>>): Promise<T | undefined> {
  const first: TokenKind = hint === 'access_token' || hint === 'refresh_token' ? hint : usualFirst
  const order: TokenKind[] = first === 'access_token' ? ['access_token', 'refresh_token'] : ['refresh_token', 'access_token']
  for (const kind of order) {
    try {
      return await readers[kind]()
    } catch (error) {
      // Not readable as this kind (not ours, expired, inactive): try the other. Anything else is a fault.
      if (!(error instanceof TokenRejected)) throw error
    }
  }
  return undefined
}
