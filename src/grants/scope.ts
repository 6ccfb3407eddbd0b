import { InvalidScope } from '../errors.js'
import { DEFAULT_SCOPE, SCOPES } from '../tokens/claims.js'

/** Parses a requested `scope` (RFC 6749 §3.3): known scopes only, each once, in a canonical order. */
export function parseScope(requested: string | undefined): string {
  if (requested === undefined || requested.trim() === '') return DEFAULT_SCOPE
  const asked = new Set(requested.split(' ').filter((scope) => scope !== ''))
  for (const scope of asked) {
    if (!(SCOPES as readonly string[]).includes(scope)) {
      throw new InvalidScope(/^[\x21-\x7e]{1,40}$/.test(scope) ? `unknown scope ${scope}` : 'unknown scope')
    }
  }
  return SCOPES.filter((scope) => asked.has(scope)).join(' ')
}
