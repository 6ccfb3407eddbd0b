import { epochSeconds } from '../clock.js'
import { recordEvent } from '../db/audit.js'
import { findLoginSession, listUserSessions, revokeFamily, revokeUserSessions } from '../db/sessions.js'
import { findUserBySubOrOpenid } from '../db/users.js'
import { emitSessionsRevoked } from '../events/record.js'
import { CliError, UsageError, when, type CliContext } from './context.js'
import { table } from './table.js'

export const sessionsHelp = `minigate sessions <command>

  list <sub>           the user's logins (sid, app, scope, created, last used, state)
  revoke <sid>         end one login: its refresh tokens die, its access tokens fail introspection
  revoke --user <sub>  end every login of a user

Options: --json, --help.`

export async function sessionsCommand(ctx: CliContext, args: string[], userOption: string | undefined): Promise<void> {
  const [command, id, ...extra] = args
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`)
  const now = epochSeconds(ctx.io.clock)
  if (command === 'list') {
    if (!id) throw new UsageError('sessions list needs a user id')
    const user = await findUserBySubOrOpenid(ctx.db, id)
    if (!user) throw new CliError(`no user ${id}`, 'not_found')
    const sessions = (await listUserSessions(ctx.db, user.id)).map((session) => ({
      sid: session.id,
      client_id: session.client_id,
      scope: session.scope,
      created_at: session.created_at,
      last_used_at: session.last_used_at,
      expires_at: session.expires_at,
      state: session.revoked_at !== null ? `revoked (${session.revoked_reason ?? 'revoked'})` : session.expires_at <= now ? 'expired' : 'live',
    }))
    const rows = sessions.map((s) => [s.sid, s.client_id, s.state, when(s.created_at), when(s.last_used_at), s.scope])
    ctx.print(sessions, sessions.length ? table([['SID', 'CLIENT', 'STATE', 'CREATED', 'LAST USED', 'SCOPE'], ...rows]).join('\n') : 'no sessions')
    return
  }
  if (command !== 'revoke') throw new UsageError(command ? `unknown sessions command: ${command}` : 'sessions needs a command')
  if ((id === undefined) === (userOption === undefined)) throw new UsageError('sessions revoke needs a sid or --user <sub>, not both')

  if (userOption !== undefined) {
    const user = await findUserBySubOrOpenid(ctx.db, userOption)
    if (!user) throw new CliError(`no user ${userOption}`, 'not_found')
    const sids = await ctx.db.transaction().execute(async (trx) => {
      const revoked = await revokeUserSessions(trx, user.id, now, 'operator')
      await emitSessionsRevoked(trx, now, user.id, revoked, 'admin', 'operator')
      await recordEvent(trx, { at: now, event: 'sessions_revoked', sub: user.id, detail: `sessions=${revoked.length}`, actor: 'operator' })
      return revoked
    })
    ctx.print({ sub: user.id, revoked_sessions: sids }, `revoked ${sids.length} login(s) of ${user.id}`)
    return
  }
  const session = await findLoginSession(ctx.db, id as string)
  if (!session) throw new CliError(`no session ${id}`, 'not_found')
  const revoked = await ctx.db.transaction().execute(async (trx) => {
    const changed = await revokeFamily(trx, session.id, now, 'operator')
    if (changed) {
      await emitSessionsRevoked(trx, now, session.user_id, [session.id], 'admin', 'operator')
      await recordEvent(trx, { at: now, event: 'sessions_revoked', sub: session.user_id, client_id: session.client_id, sid: session.id, actor: 'operator' })
    }
    return changed
  })
  ctx.print({ sid: session.id, revoked }, revoked ? `revoked ${session.id}` : `${session.id} had already ended`)
}
