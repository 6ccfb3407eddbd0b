import { identitiesOfUsers, searchUsers } from '../db/user-search.js'
import { when, type CliContext } from './context.js'
import { table } from './table.js'

/** Users `users list` shows unless `--limit` says otherwise. */
export const DEFAULT_LIST_LIMIT = 50

/**
 * `minigate users list [--search <text>] [--limit N]`: users newest first, those whose nickname, phone
 * number, unionid or an openid contains the text; one aligned row each (CJK nicknames count double).
 */
export async function listUsers(ctx: CliContext, options: { search?: string; limit?: number }): Promise<void> {
  const limit = options.limit ?? DEFAULT_LIST_LIMIT
  const users = await searchUsers(ctx.db, { limit, ...(options.search !== undefined ? { search: options.search } : {}) })
  const identities = await identitiesOfUsers(ctx.db, users.map((user) => user.id))
  const result = users.map((user) => ({
    sub: user.id,
    nickname: user.nickname,
    phone_number: user.phone_number,
    unionid: user.unionid,
    identities: identities.filter((identity) => identity.user_id === user.id).map(({ appid, openid }) => ({ appid, openid })),
    created_at: user.created_at,
    disabled_at: user.disabled_at,
  }))
  const rows = result.map((user) => [
    user.sub,
    when(user.created_at),
    user.disabled_at === null ? 'enabled' : 'disabled',
    user.nickname ?? '-',
    user.phone_number ?? '-',
    user.unionid ?? '-',
    user.identities.map((identity) => identity.openid).join(',') || '-',
  ])
  const text = result.length === 0 ? (options.search ? `no user matches "${options.search}"` : 'no users') : table([['SUB', 'CREATED', 'STATE', 'NICKNAME', 'PHONE', 'UNIONID', 'OPENID'], ...rows]).join('\n')
  ctx.print(result, text)
}
