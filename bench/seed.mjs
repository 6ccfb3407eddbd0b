// Bulk seeding for `npm run bench` (`--users N`): users, their WeChat identities (session_keys sealed with
// the server's data key, bound to appid + openid as minigate seals them), one login each (a login_sessions
// row: the state its refresh tokens rotate), and one `user_created` audit event each. Written straight into
// the database with the raw drivers, in big transactions: multi-row INSERTs on SQLite, INSERT ... SELECT
// FROM unnest(arrays) on PostgreSQL. The schema comes from minigate's own migrations (dist/).
import { randomBytes } from 'node:crypto'
import { statSync } from 'node:fs'
import SQLite from 'better-sqlite3'
import pg from 'pg'
import { migrateToLatest, openDatabase } from '../dist/db/connection.js'
import { isPostgresUrl, postgresSettings } from '../dist/db/dialect.js'
import { loadSecretBox } from '../dist/keys/data-key.js'

/** The openid of seeded user `i`: 28 characters, like WeChat's. */
export function openidOf(i) {
  return `oBench${i.toString(36).padStart(22, '0')}`
}

const DAY = 24 * 3600
/** Rows per INSERT statement on SQLite (each row of 8 values at most: well under its 32766 variables). */
const SQLITE_ROWS = 500
/** Rows per statement on PostgreSQL (arrays: no parameter limit), and users per transaction on both. */
const PG_ROWS = 10_000
const USERS_PER_TRANSACTION = 50_000

/** Creates the schema (minigate's migrations) and the data key the server will use. */
export async function prepareDatabase(location, keysDir) {
  loadSecretBox({ dir: keysDir })
  const db = openDatabase(location)
  try {
    await migrateToLatest(db)
  } finally {
    await db.destroy()
  }
}

/** The rows of users `from` .. `to - 1`, column-major (one array per column), for one batch. */
function batch(from, to, { appid, secretBox, now, sessionMaxAge }) {
  const rows = { users: [], identities: [], sessions: [], events: [] }
  for (let i = from; i < to; i += 1) {
    const userId = randomBytes(16).toString('base64url')
    const sid = randomBytes(16).toString('base64url')
    const openid = openidOf(i)
    // Spread over the last 30 days, as a live deployment's logins would be.
    const created = now - Math.floor(Math.random() * 30 * DAY)
    const sealed = secretBox.seal(randomBytes(16).toString('base64'), `${appid}:${openid}`)
    rows.users.push([userId, created, created])
    rows.identities.push([userId, appid, openid, sealed, created, created])
    rows.sessions.push([sid, userId, appid, 'profile', created, created, created + sessionMaxAge, Math.floor(Math.random() * 20)])
    rows.events.push([created, 'user_created', userId, appid, sid])
  }
  return rows
}

const TABLES = {
  users: { table: 'users', columns: ['id', 'created_at', 'updated_at'], pgTypes: ['text', 'bigint', 'bigint'] },
  identities: {
    table: 'wechat_identities',
    columns: ['user_id', 'appid', 'openid', 'session_key_enc', 'session_key_updated_at', 'created_at'],
    pgTypes: ['text', 'text', 'text', 'text', 'bigint', 'bigint'],
  },
  sessions: {
    table: 'login_sessions',
    columns: ['id', 'user_id', 'client_id', 'scope', 'created_at', 'last_used_at', 'expires_at', 'generation'],
    pgTypes: ['text', 'text', 'text', 'text', 'bigint', 'bigint', 'bigint', 'bigint'],
  },
  events: { table: 'audit_events', columns: ['at', 'event', 'sub', 'client_id', 'sid'], pgTypes: ['bigint', 'text', 'text', 'text', 'text'] },
}

async function seedSqlite(file, from, to, options) {
  const sqlite = new SQLite(file, { fileMustExist: true })
  try {
    sqlite.pragma('busy_timeout = 30000')
    // The bench's own connection: a big page cache for the random-key index inserts; each transaction is
    // still atomic, and the file is thrown away after the run.
    sqlite.pragma('cache_size = -262144')
    sqlite.pragma('synchronous = NORMAL')
    const statements = new Map()
    const insert = (kind, rows) => {
      const { table, columns } = TABLES[kind]
      const row = `(${columns.map(() => '?').join(', ')})`
      const key = `${kind}:${rows.length}`
      if (!statements.has(key)) statements.set(key, sqlite.prepare(`insert into ${table} (${columns.join(', ')}) values ${Array(rows.length).fill(row).join(', ')}`))
      statements.get(key).run(rows.flat())
    }
    for (let start = from; start < to; start += USERS_PER_TRANSACTION) {
      const end = Math.min(to, start + USERS_PER_TRANSACTION)
      const write = sqlite.transaction(() => {
        for (let chunk = start; chunk < end; chunk += SQLITE_ROWS) {
          const rows = batch(chunk, Math.min(end, chunk + SQLITE_ROWS), options)
          for (const kind of Object.keys(TABLES)) insert(kind, rows[kind])
        }
      })
      write.immediate()
    }
    // Leave no big WAL behind for the server's first checkpoint to pay for during a measurement.
    sqlite.pragma('wal_checkpoint(TRUNCATE)')
  } finally {
    sqlite.close()
  }
}

async function seedPostgres(location, from, to, options) {
  const { connectionString, schema } = postgresSettings(location)
  const client = new pg.Client({ connectionString, ...(schema ? { options: `-c search_path=${schema}` } : {}) })
  await client.connect()
  try {
    for (let start = from; start < to; start += USERS_PER_TRANSACTION) {
      const end = Math.min(to, start + USERS_PER_TRANSACTION)
      await client.query('begin')
      for (let chunk = start; chunk < end; chunk += PG_ROWS) {
        const rows = batch(chunk, Math.min(end, chunk + PG_ROWS), options)
        for (const kind of Object.keys(TABLES)) {
          const { table, columns, pgTypes } = TABLES[kind]
          const arrays = columns.map((_, c) => rows[kind].map((row) => row[c]))
          const unnest = pgTypes.map((type, c) => `$${c + 1}::${type}[]`).join(', ')
          await client.query(`insert into ${table} (${columns.join(', ')}) select * from unnest(${unnest})`, arrays)
        }
      }
      await client.query('commit')
    }
    // What autovacuum would have done on a live database: fresh planner statistics.
    await client.query('analyze users, wechat_identities, login_sessions, audit_events')
  } finally {
    await client.end()
  }
}

/**
 * Seeds users `from` .. `to - 1` (openids `openidOf(i)`) into the migrated database at `location`.
 * Returns the seconds it took.
 */
export async function seedUsers(location, { keysDir, appid, from = 0, to, sessionMaxAge = 90 * DAY }) {
  const started = performance.now()
  const options = { appid, secretBox: loadSecretBox({ dir: keysDir, create: false }), now: Math.floor(Date.now() / 1000), sessionMaxAge }
  if (isPostgresUrl(location)) await seedPostgres(location, from, to, options)
  else await seedSqlite(location, from, to, options)
  return (performance.now() - started) / 1000
}

function fileSize(path) {
  try {
    return statSync(path).size
  } catch {
    return 0
  }
}

/**
 * The database's size in bytes: on SQLite the file and its WAL; on PostgreSQL the tables of minigate's
 * schema with their indexes and TOAST (`pg_total_relation_size`), and the whole database
 * (`pg_database_size`, which also counts anything else in it).
 */
export async function databaseSize(location) {
  if (!isPostgresUrl(location)) {
    const file = fileSize(location)
    const wal = fileSize(`${location}-wal`)
    return { bytes: file + wal, file, wal }
  }
  const { connectionString, schema } = postgresSettings(location)
  const client = new pg.Client({ connectionString })
  await client.connect()
  try {
    const tables = await client.query(
      `select c.relname as table, pg_total_relation_size(c.oid)::bigint as bytes
         from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = coalesce($1, current_schema()) and c.relkind = 'r'
        order by 2 desc`,
      [schema ?? null],
    )
    const database = await client.query('select pg_database_size(current_database())::bigint as bytes')
    const byTable = Object.fromEntries(tables.rows.map((row) => [row.table, Number(row.bytes)]))
    return { bytes: Object.values(byTable).reduce((sum, bytes) => sum + bytes, 0), tables: byTable, database: Number(database.rows[0].bytes) }
  } finally {
    await client.end()
  }
}
