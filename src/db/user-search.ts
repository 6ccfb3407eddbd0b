import type { Expression, Kysely, SqlBool } from 'kysely'
import { sql } from './kysely.js'
import type { Database, User, WeChatIdentity } from './schema.js'

type Q = Kysely<Database>

/** `text` as a LIKE pattern matching it anywhere, its own `%`, `_` and `\` taken literally (escaped with `\`). */
function containsPattern(text: string): string {
  return `%${text.toLowerCase().replace(/[\\%_]/g, (char) => `\\${char}`)}%`
}

/** `lower(column) LIKE pattern ESCAPE '\'`: the same on SQLite and PostgreSQL (SQLite lowers ASCII only). */
function contains(column: string, pattern: string): Expression<SqlBool> {
  return sql<SqlBool>`lower(${sql.ref(column)}) like ${pattern} escape ${'\\'}`
}

/**
 * Users newest first, at most `limit`; with `search`, only those whose nickname, phone number, unionid
 * or an openid contains it (case-insensitively for ASCII letters).
 *
 * @example await searchUsers(db, { search: '小明', limit: 20 })
 */
export function searchUsers(db: Q, options: { search?: string; limit: number }): Promise<User[]> {
  let query = db.selectFrom('users').selectAll('users')
  const search = options.search?.trim()
  if (search) {
    const pattern = containsPattern(search)
    query = query.where((eb) =>
      eb.or([
        contains('users.nickname', pattern),
        contains('users.phone_number', pattern),
        contains('users.unionid', pattern),
        eb.exists(eb.selectFrom('wechat_identities').select('wechat_identities.id').whereRef('wechat_identities.user_id', '=', 'users.id').where(contains('wechat_identities.openid', pattern))),
      ]),
    )
  }
  return query.orderBy('users.created_at', 'desc').orderBy('users.id', 'desc').limit(options.limit).execute()
}

/** The WeChat identities of several users at once, oldest first. */
export function identitiesOfUsers(db: Q, userIds: string[]): Promise<Array<Pick<WeChatIdentity, 'user_id' | 'appid' | 'openid'>>> {
  if (userIds.length === 0) return Promise.resolve([])
  return db.selectFrom('wechat_identities').select(['user_id', 'appid', 'openid']).where('user_id', 'in', userIds).orderBy('created_at').orderBy('id').execute()
}
