/**
 * The security events minigate tells services about, by short name, with the event-type URIs of the
 * OpenID RISC and CAEP profiles that carry them in a Security Event Token (RFC 8417).
 */
export const EVENT_TYPES = {
  /** The account was deleted: forget everything kept under its `sub`. */
  'account-purged': 'https://schemas.openid.net/secevent/risc/event-type/account-purged',
  /** An operator disabled the account: its logins ended and new ones are refused. */
  'account-disabled': 'https://schemas.openid.net/secevent/risc/event-type/account-disabled',
  'account-enabled': 'https://schemas.openid.net/secevent/risc/event-type/account-enabled',
  /** The account was merged into another: `new-value` is the `sub` to use from now on. */
  'identifier-changed': 'https://schemas.openid.net/secevent/risc/event-type/identifier-changed',
  /** A login ended (logout, revocation, refresh-token reuse, an operator, a merge or unlink). */
  'session-revoked': 'https://schemas.openid.net/secevent/caep/event-type/session-revoked',
} as const

export type EventType = keyof typeof EVENT_TYPES

/** The JOSE `typ` of a Security Event Token (RFC 8417 §2.3). */
export const SET_TYPE = 'secevent+jwt'
