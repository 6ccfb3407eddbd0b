import { epochSeconds } from '../clock.js'
import { recordEvent } from '../db/audit.js'
import { listIdentitiesOfUser } from '../db/identities.js'
import { listUserSessions, revokeUserSessions } from '../db/sessions.js'
import { findUserBySubOrOpenid, setUserDisabled } from '../db/users.js'
import { CliError, UsageError, when, type CliContext } from './context.js'

export const usersHelp = `minigate users <command>

  show <sub|openid>   the user, its WeChat identities and logins
  disable <sub>       revoke every login of the user and refuse new ones
  enable <sub>        allow the user to log in again

Options: --json, --help.`

export async function usersCommand(ctx: CliContext, args: string[]): Promise<void> {
  const [command, id, ...extra] = args
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`)
  if (!command) throw new UsageError('users needs a command')
  if (!['show', 'disable', 'enable'].includes(command)) throw new UsageError(`unknown users command: ${command}`)
  if (!id) throw new UsageError(`users ${command} needs a user id`)
  const user = await findUserBySubOrOpenid(ctx.db, id)
  if (!user) throw new CliError(`no user ${id}`)
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
  const revoked = await ctx.db.transaction().execute(async (trx) => {
    await setUserDisabled(trx, user.id, disabling ? now : null, now)
    const sids = disabling ? await revokeUserSessions(trx, user.id, now, 'user_disabled') : []
    await recordEvent(trx, { at: now, event: disabling ? 'user_disabled' : 'user_enabled', sub: user.id, detail: disabling ? `sessions=${sids.length}` : null })
    return sids
  })
  ctx.print(
    { sub: user.id, disabled: disabling, revoked_sessions: revoked },
    disabling ? `disabled ${user.id}; revoked ${revoked.length} login(s)` : `enabled ${user.id}`,
  )
}
