import { listAuditEvents, type AuditFilter } from '../db/audit.js'
import { CliError, UsageError, when, type CliContext } from './context.js'
import { table } from './table.js'

export const auditHelp = `minigate audit [options]

  The audit log, newest first.

  --user <sub>       events about one user
  --event <name>     one kind of event (login, user_deleted, users_merged, ...)
  --since <time>     at or after an ISO 8601 time (2026-11-01 or 2026-11-01T08:00:00Z)
  --until <time>     before that time
  --limit <N>        at most N events (default 100, at most 10000)

Options: --json, --help.`

/** An ISO 8601 date or time as epoch seconds. */
function time(value: string, option: string): number {
  const ms = /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(value) ? Date.parse(value) : Number.NaN
  if (Number.isNaN(ms)) throw new UsageError(`--${option} must be an ISO 8601 time, like 2026-11-01 or 2026-11-01T08:00:00Z`)
  return Math.floor(ms / 1000)
}

export async function auditCommand(ctx: CliContext, args: string[], options: { user?: string; event?: string; since?: string; until?: string; limit?: number }): Promise<void> {
  if (args.length > 0) throw new UsageError(`unexpected arguments: ${args.join(' ')}`)
  const filter: AuditFilter = {}
  if (options.user !== undefined) filter.sub = options.user
  if (options.event !== undefined) filter.event = options.event
  if (options.since !== undefined) filter.since = time(options.since, 'since')
  if (options.until !== undefined) filter.until = time(options.until, 'until')
  if (options.limit !== undefined) filter.limit = options.limit
  if (filter.since !== undefined && filter.until !== undefined && filter.since >= filter.until) throw new CliError('--since must be before --until')
  const events = await listAuditEvents(ctx.db, filter)
  const rows = events.map((event) => ({
    at: when(event.at),
    event: event.event,
    actor: event.actor,
    sub: event.sub,
    client_id: event.client_id,
    sid: event.sid,
    detail: event.detail,
  }))
  const lines = table([['AT', 'EVENT', 'ACTOR', 'SUB', 'CLIENT', 'SID', 'DETAIL'], ...rows.map((row) => [row.at, row.event, row.actor ?? '-', row.sub ?? '-', row.client_id ?? '-', row.sid ?? '-', row.detail ?? ''])])
  ctx.print(rows, rows.length ? lines.join('\n') : 'no events')
}
