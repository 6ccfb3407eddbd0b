import { epochSeconds } from '../clock.js'
import { recordEvent } from '../db/audit.js'
import { listIdentitiesOfUser } from '../db/identities.js'
import { listUserSessions, revokeUserSessions } from '../db/sessions.js'
import { findUserBySubOrOpenid, lockUser, setUserDisabled } from '../db/users.js'
import { CliError, UsageError, when, type CliContext } from './context.js'
import { DEFAULT_LIST_LIMIT, listUsers } from './users-list.js'

export const usersHelp = `minigate users <command>

  list [--search <text>] [--limit N]
                      users newest first (at most ${DEFAULT_LIST_LIMIT}, or N), those whose nickname,
                      openid, phone number or unionid contains the text
  show <sub|openid>   the user, its WeChat identities and logins
  disable <sub>       revoke every login of the user and refuse new ones
  enable <sub>        allow the user to log in again

Options: --json, --help.`

export async function usersCommand(ctx: CliContext, args: string[], options: { search?: string; limit?: number } = {}): Promise<void> {
  const [command, id, ...extra] = args
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`)
  if (!command) throw new UsageError('users needs a command')
  if (command === 'list') {
    if (id) throw new UsageError(`unexpected arguments: ${id} (search with --search <text>)`)
    return listUsers(ctx, options)
  }
  if (options.search !== undefined || options.limit !== undefined) throw new UsageError('--search and --limit go with users list')
  if (!['show', 'disable', 'enable'].includes(command)) throw new UsageError(`unknown users command: ${command}`)
  if (!id) throw new UsageError(`users ${command} needs a user id`)
  const user = await findUserBySubOrOpenid(ctx.db, id)
  if (!user) throw new CliError(`no user ${id}`, 'not_found')
  const now = epochSeconds(ctx.io.clock)

  if (command === 'show') {
    const identities = await listIdentitiesOfUser(ctx.db, user.id)
    const sessions = await listUserSessions(ctx.db, user.id)
    const live = sessions.filter((session) => session.revoked_at === null && session.expires_at > now)
    const result = {
      sub: user.id,
      unionid: user.unionid,
      nickname: user.nickname,
      phone_number: user.phone_number,
      disabled_at: user.disabled_at,
      created_at: user.created_at,
      identities: identities.map((identity) => ({ appid: identity.appid, openid: identity.openid, created_at: identity.created_at })),
      live_sessions: live.length,
    }
    const text = [
      `sub       ${user.id}${user.disabled_at !== null ? `  (disabled ${when(user.disabled_at)})` : ''}`,
      `unionid   ${user.unionid ?? '-'}`,
      `nickname  ${user.nickname ?? '-'}`,
      `phone     ${user.phone_number ?? '-'}`,
      `created   ${when(user.created_at)}`,
      ...identities.map((identity) => `identity  ${identity.appid} ${identity.openid}`),
      `sessions  ${live.length} live of ${sessions.length}`,
    ].join('\n')
    ctx.print(result, text)
    return
  }

  const disabling = command === 'disable'
  const outcome = await ctx.db.transaction().execute(async (trx) => {
    // Read under the row lock: of two disables at once, one disables and audits, the other finds it done.
    const current = await lockUser(trx, user.id)
    const disabledAt = current?.disabled_at ?? null
    if ((disabledAt !== null) === disabling) return { changed: false as const, disabledAt }
    await setUserDisabled(trx, user.id, disabling ? now : null, now)
    const sids = disabling ? await revokeUserSessions(trx, user.id, now, 'user_disabled') : []
    await recordEvent(trx, { at: now, event: disabling ? 'user_disabled' : 'user_enabled', sub: user.id, detail: disabling ? `sessions=${sids.length}` : null })
    return { changed: true as const, sids }
  })
  if (!outcome.changed) {
    // Nothing to do: no logins revoked again, no second audit event.
    ctx.print(
      { sub: user.id, disabled: disabling, changed: false, disabled_at: outcome.disabledAt, revoked_sessions: [] },
      disabling ? `${user.id} already disabled since ${when(outcome.disabledAt)}; nothing changed` : `${user.id} is not disabled; nothing changed`,
    )
    return
  }
  ctx.print(
    { sub: user.id, disabled: disabling, changed: true, disabled_at: disabling ? now : null, revoked_sessions: outcome.sids },
    disabling ? `disabled ${user.id}; revoked ${outcome.sids.length} login(s)` : `enabled ${user.id}`,
  )
}
