import { epochSeconds } from '../clock.js'
import { recordEvent } from '../db/audit.js'
import { listIdentitiesOfUser } from '../db/identities.js'
import { listUserSessions, revokeUserSessions } from '../db/sessions.js'
import type { User } from '../db/schema.js'
import { findTombstone } from '../db/tombstones.js'
import { findUserBySubOrOpenid, lockUser, setUserDisabled, unusedUserId } from '../db/users.js'
import { deleteAccount } from '../accounts/delete.js'
import { MergeRefused, mergeUsers } from '../accounts/merge.js'
import { UnlinkRefused, unlinkIdentity } from '../accounts/unlink.js'
import { emitEvent } from '../events/record.js'
import { randomId } from '../tokens/mint.js'
import { CliError, UsageError, when, type CliContext } from './context.js'
import { DEFAULT_LIST_LIMIT, listUsers } from './users-list.js'

export const usersHelp = `minigate users <command>

  list [--search <text>] [--limit N]
                      users newest first (at most ${DEFAULT_LIST_LIMIT}, or N), those whose nickname,
                      openid, phone number or unionid contains the text
  show <sub|openid>   the user, its WeChat identities and logins
  disable <sub>       revoke every login of the user and refuse new ones
  enable <sub>        allow the user to log in again
  delete <sub>        delete the user: identities, session_keys, phone, profile, logins; the sub is never reused
  merge <sub> <sub>   make two users one (the older survives; see the README for the rule)
  unlink <sub> <appid>  move the user's identity in that app to a new user, ending its logins there

Options: --json, --help.`

/** A user by sub or openid; a tombstoned sub says what became of it. */
async function userOrExplain(ctx: CliContext, id: string): Promise<User> {
  const user = await findUserBySubOrOpenid(ctx.db, id)
  if (user) return user
  const tombstone = await findTombstone(ctx.db, id)
  if (tombstone?.reason === 'merged') throw new CliError(`${id} was merged into ${tombstone.merged_into ?? '(a user since deleted)'} at ${when(tombstone.ended_at)}`, 'not_found')
  if (tombstone) throw new CliError(`${id} was deleted at ${when(tombstone.ended_at)}`, 'not_found')
  throw new CliError(`no user ${id}`, 'not_found')
}

export async function usersCommand(ctx: CliContext, args: string[], options: { search?: string; limit?: number } = {}): Promise<void> {
  const [command, id, second, ...extra] = args
  if (!command) throw new UsageError('users needs a command')
  if (command === 'list') {
    if (id) throw new UsageError(`unexpected arguments: ${args.slice(1).join(' ')} (search with --search <text>)`)
    return listUsers(ctx, options)
  }
  if (options.search !== undefined || options.limit !== undefined) throw new UsageError('--search and --limit go with users list')
  const takesTwo = command === 'merge' || command === 'unlink'
  if (extra.length > 0 || (!takesTwo && second !== undefined)) throw new UsageError(`unexpected arguments: ${[...(takesTwo ? [] : [second]), ...extra].join(' ')}`)
  if (!['show', 'disable', 'enable', 'delete', 'merge', 'unlink'].includes(command)) throw new UsageError(`unknown users command: ${command}`)
  if (!id) throw new UsageError(`users ${command} needs a user id`)
  if (takesTwo && !second) throw new UsageError(command === 'merge' ? 'users merge needs two user ids' : 'users unlink needs a user id and an appid')
  const user = await userOrExplain(ctx, id)
  const now = epochSeconds(ctx.io.clock)

  if (command === 'delete') {
    const deleted = await ctx.db.transaction().execute((trx) => deleteAccount(trx, { sub: user.id, now, actor: 'operator' }))
    if (!deleted) throw new CliError(`no user ${id}`)
    ctx.print({ sub: user.id, deleted: true, ended_sessions: deleted.endedSessions }, `deleted ${user.id}; ended ${deleted.endedSessions} login(s); the sub is never reused`)
    return
  }
  if (command === 'merge') {
    const other = await userOrExplain(ctx, second as string)
    if (other.id === user.id) throw new CliError('a user cannot be merged with itself')
    let merged
    try {
      merged = await ctx.db.transaction().execute((trx) => mergeUsers(trx, { ids: [user.id, other.id], now, actor: 'operator', cause: 'operator' }))
    } catch (error) {
      if (error instanceof MergeRefused) throw new CliError(`refused: ${error.message}`)
      throw error
    }
    if (!merged) throw new CliError('one of the users changed meanwhile; try again')
    ctx.print(
      { sub: merged.survivor.id, merged: merged.mergedAway, revoked_sessions: merged.revokedSessions },
      `merged ${merged.mergedAway} into ${merged.survivor.id}; ended ${merged.revokedSessions.length} login(s) of ${merged.mergedAway}`,
    )
    return
  }
  if (command === 'unlink') {
    const newId = await unusedUserId(ctx.db, randomId)
    let unlinked
    try {
      unlinked = await ctx.db.transaction().execute((trx) => unlinkIdentity(trx, { sub: user.id, appid: second as string, newId, now }))
    } catch (error) {
      if (error instanceof UnlinkRefused) throw new CliError(`refused: ${error.message}`)
      throw error
    }
    ctx.print(
      { sub: user.id, appid: second, new_sub: unlinked.newSub, revoked_sessions: unlinked.revokedSessions },
      `moved ${user.id}'s identity in ${second} to the new user ${unlinked.newSub}; ended ${unlinked.revokedSessions.length} login(s)`,
    )
    return
  }

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
    await emitEvent(trx, now, disabling ? 'account-disabled' : 'account-enabled', user.id)
    await recordEvent(trx, { at: now, event: disabling ? 'user_disabled' : 'user_enabled', sub: user.id, detail: disabling ? `sessions=${sids.length}` : null, actor: 'operator' })
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
