import type { User } from '../db/schema.js'
import { hasScope } from './claims.js'

/** The OpenID Connect claims about a user that `scope` grants; absent values are left out. */
export function userClaims(user: User, scope: string): Record<string, string | number | boolean> {
  const claims: Record<string, string | number | boolean> = {}
  if (hasScope(scope, 'profile')) {
    if (user.nickname !== null) claims.nickname = user.nickname
    if (user.picture !== null) claims.picture = user.picture
  }
  if (hasScope(scope, 'phone') && user.phone_number !== null) {
    claims.phone_number = user.phone_number
    claims.phone_number_verified = user.phone_verified_at !== null
  }
  claims.updated_at = user.updated_at
  return claims
}
