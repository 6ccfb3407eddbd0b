import { epochSeconds } from './clock.js'
import { purgeExpiredRefreshTokens } from './db/refresh-tokens.js'
import { purgeExpiredRevocations } from './db/revoked-access-tokens.js'
import { purgeEndedSessions } from './db/sessions.js'
import type { AppDeps } from './deps.js'

/** Deletes rows that can no longer matter: expired refresh tokens and revocations, ended logins. */
export async function purgeExpired(deps: AppDeps): Promise<{ refreshTokens: number; sessions: number; revocations: number }> {
  const now = epochSeconds(deps.clock)
  return deps.db.transaction().execute(async (trx) => ({
    refreshTokens: await purgeExpiredRefreshTokens(trx, now),
    sessions: await purgeEndedSessions(trx, now, deps.config.refreshTtl),
    revocations: await purgeExpiredRevocations(trx, now),
  }))
}

/** Runs `purgeExpired` every `purgeInterval` seconds; returns the function that stops it. */
export function startMaintenance(deps: AppDeps): () => void {
  const timer = setInterval(() => {
    purgeExpired(deps).then(
      (purged) => deps.log.info({ event: 'purge', ...purged }, 'purged expired rows'),
      (error: unknown) => deps.log.error({ err: error }, 'purge failed'),
    )
  }, deps.config.purgeInterval * 1000)
  timer.unref()
  return () => clearInterval(timer)
}
