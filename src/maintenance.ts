import { epochSeconds } from './clock.js'
import { purgeAuditEvents } from './db/audit.js'
import { purgeExpiredRevocations } from './db/revoked-access-tokens.js'
import { purgeSecurityEvents } from './db/security-events.js'
import { purgeEndedSessions } from './db/sessions.js'
import { purgeExpiredCodes } from './db/spent-codes.js'
import type { AppDeps } from './deps.js'
import { KEY_RELOAD_SECONDS } from './keys/key-ring.js'
import { safeError } from './log.js'

const DAY = 24 * 3600

/**
 * Deletes rows that can no longer matter: ended logins, expired revocations and spent codes; and rows
 * past their retention: audit events older than `MINIGATE_AUDIT_RETENTION_DAYS`, security events (and
 * their delivery state) older than `MINIGATE_EVENT_RETENTION_DAYS`.
 */
export async function purgeExpired(deps: AppDeps): Promise<{ sessions: number; revocations: number; codes: number; audit: number; events: number }> {
  const now = epochSeconds(deps.clock)
  return deps.db.transaction().execute(async (trx) => ({
    sessions: await purgeEndedSessions(trx, now, deps.config.refreshTtl),
    revocations: await purgeExpiredRevocations(trx, now),
    codes: await purgeExpiredCodes(trx, now),
    audit: await purgeAuditEvents(trx, now - deps.config.auditRetentionDays * DAY),
    events: await purgeSecurityEvents(trx, now - deps.config.eventRetentionDays * DAY),
  }))
}

/**
 * Runs `purgeExpired` every `purgeInterval` seconds, and re-reads the signing-key schedule every
 * `KEY_RELOAD_SECONDS` so key changes made with the CLI take effect without a restart. Returns the
 * function that stops both.
 */
export function startMaintenance(deps: AppDeps): () => void {
  const purge = setInterval(() => {
    purgeExpired(deps).then(
      (purged) => deps.log.info({ event: 'purge', ...purged }, 'purged expired rows'),
      (error: unknown) => deps.log.error({ err: safeError(error) }, 'purge failed'),
    )
  }, deps.config.purgeInterval * 1000)
  const reload = setInterval(() => {
    deps.keys.reload().catch((error: unknown) => deps.log.error({ err: safeError(error) }, 'signing key reload failed; keeping the keys loaded before'))
  }, KEY_RELOAD_SECONDS * 1000)
  purge.unref()
  reload.unref()
  return () => {
    clearInterval(purge)
    clearInterval(reload)
  }
}
