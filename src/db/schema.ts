import type { Generated, Insertable, Selectable } from 'kysely'

/** Every timestamp is whole seconds since the Unix epoch. */
export interface UserTable {
  /** minigate's stable user id: the `sub` of every token. */
  id: string
  unionid: string | null
  nickname: string | null
  picture: string | null
  phone_number: string | null
  phone_country_code: string | null
  phone_verified_at: number | null
  disabled_at: number | null
  created_at: number
  updated_at: number
}

/** A user as seen by one mini-program: (appid, openid), with that app's newest session_key. */
export interface WeChatIdentityTable {
  id: Generated<number>
  user_id: string
  appid: string
  openid: string
  /** The session_key, AES-256-GCM encrypted with the data key from `keys/`. */
  session_key_enc: string
  session_key_updated_at: number
  created_at: number
}

/**
 * A login: the refresh-token family whose id is the `sid` claim. Its refresh tokens are not stored:
 * each carries the login's `generation` when it was issued (the `gen` claim), and only the current
 * generation refreshes; each rotation is a compare-and-set of the counter.
 */
export interface LoginSessionTable {
  id: string
  user_id: string
  client_id: string
  scope: string
  created_at: number
  last_used_at: number
  /** The absolute end of the login: refreshing never extends it. */
  expires_at: number
  revoked_at: number | null
  revoked_reason: string | null
  /** The generation of the refresh tokens that may refresh now; each rotation adds one. */
  generation: Generated<number>
  /** When the last rotation happened (null before the first): the grace window runs from it. */
  rotated_at: number | null
  /** Grace-window replays of the previous generation answered since the last rotation. */
  grace_uses: Generated<number>
}

/** A WeChat code (hashed) sent upstream, so no instance sends it again; kept until it expires. */
export interface SpentCodeTable {
  code_hash: string
  expires_at: number
}

/** An access token revoked before its `exp`; kept until then. */
export interface RevokedAccessTokenTable {
  jti: string
  expires_at: number
  revoked_at: number
}

/** Security events: logins, new users, refresh-token reuse, revocations, logouts. */
export interface AuditEventTable {
  id: Generated<number>
  at: number
  event: string
  sub: string | null
  client_id: string | null
  sid: string | null
  detail: string | null
  /** Keyed hash of the client IP (see SecretBox.fingerprint); null for operator actions. */
  ip_hash: string | null
  /** Who acted: `user` (a request on the user's behalf), `system` (minigate itself), `operator` (the CLI). */
  actor: string | null
}

/**
 * A `sub` that ended: deleted (`reason` `deleted`) or merged into another user (`merged`, with
 * `merged_into`). Kept for good: a tombstoned id is never given to a new user.
 */
export interface UserTombstoneTable {
  id: string
  ended_at: number
  reason: 'deleted' | 'merged'
  merged_into: string | null
}

/**
 * The stream of security events services poll (RFC 8936), written in the transaction of the change it
 * reports. `type` is the short name of a RISC/CAEP event type (see src/events/types.ts).
 */
export interface SecurityEventTable {
  id: Generated<number>
  /** The `jti` of the SET that carries the event: the same on every delivery. */
  jti: string
  at: number
  type: string
  /** The subject: the `sub` the event is about. */
  sub: string
  sid: string | null
  /** JSON: what the event type adds (the new `sub` of a merge, who initiated a revocation). */
  detail: string | null
}

/** One service's delivery state of one event; a service that never polled has no rows. */
export interface EventDeliveryTable {
  service_id: string
  event_id: number
  attempts: Generated<number>
  /** Until then the event, delivered and not acknowledged, is not delivered again. */
  next_attempt_at: number
  acked_at: number | null
  /** The service's `setErrs` entry for the event (RFC 8936 §2.4), as JSON. */
  error: string | null
}

/** An uploaded avatar image (PNG, JPEG or WebP). */
export interface AvatarTable {
  id: string
  user_id: string
  content_type: string
  bytes: Buffer
  created_at: number
}

/**
 * A signing key and its schedule. Its state follows from the times: `next` until `activates_at`,
 * `active` until `retires_at`, `retired` (published, not signing) until every token it signed has
 * expired, then gone. `removed_at` ends it early.
 */
export interface SigningKeyTable {
  kid: string
  /** The PKCS#8 PEM private key sealed with the data key; null only until a key file is imported. */
  private_key: string | null
  /** The PEM file in the keys folder the key was imported from; null for keys minigate generated. */
  file: string | null
  created_at: number
  activates_at: number | null
  retires_at: number | null
  removed_at: number | null
}

/**
 * Where a service's scan of the event stream starts (`floor`: every event up to it is acknowledged by
 * the service), and the next floor once it is safe (see `settleCursor`).
 */
export interface EventCursorTable {
  service_id: string
  floor: number
  candidate: number | null
  /** PostgreSQL: `pg_snapshot_xmax` when `candidate` was read. */
  candidate_xmax: string | null
}

export interface Database {
  users: UserTable
  wechat_identities: WeChatIdentityTable
  login_sessions: LoginSessionTable
  spent_codes: SpentCodeTable
  revoked_access_tokens: RevokedAccessTokenTable
  audit_events: AuditEventTable
  avatars: AvatarTable
  signing_keys: SigningKeyTable
  user_tombstones: UserTombstoneTable
  security_events: SecurityEventTable
  event_deliveries: EventDeliveryTable
  event_cursors: EventCursorTable
}

export type User = Selectable<UserTable>
export type NewUser = Insertable<UserTable>
export type WeChatIdentity = Selectable<WeChatIdentityTable>
export type LoginSession = Selectable<LoginSessionTable>
export type NewLoginSession = Insertable<LoginSessionTable>
export type NewAuditEvent = Insertable<AuditEventTable>
export type Avatar = Selectable<AvatarTable>
export type SigningKeyRow = Selectable<SigningKeyTable>
export type SecurityEvent = Selectable<SecurityEventTable>
export type AuditEvent = Selectable<AuditEventTable>
