import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import pg from 'pg'
import type { Test } from 'tap'
import { migrateToLatest, openDatabase, type Db } from '../../src/db/connection.js'
import { scratchFolder } from './scratch.js'

/**
 * The database engine this test process runs on. The suite runs once on SQLite; with MINIGATE_TEST_PG
 * set, `npm test` also runs every database test file a second time on PostgreSQL (its `.pg.test.js`
 * twin sets MINIGATE_TEST_DIALECT, see test/prepare-dialects.mjs).
 */
export const testDialect: 'sqlite' | 'postgres' = process.env.MINIGATE_TEST_DIALECT === 'postgres' ? 'postgres' : 'sqlite'

let admin: pg.Pool | undefined

function adminPool(): pg.Pool {
  const url = process.env.MINIGATE_TEST_PG
  if (!url) throw new Error('MINIGATE_TEST_PG must be set to run the PostgreSQL suite')
  // Idle connections do not hold the test process open, so no teardown has to come last.
  admin ??= new pg.Pool({ connectionString: url, max: 2, allowExitOnIdle: true })
  return admin
}

/** Appends a query parameter to a connection URL. */
function withParam(url: string, name: string, value: string): string {
  const parsed = new URL(url)
  parsed.searchParams.set(name, value)
  return parsed.toString()
}

/**
 * A fresh, empty database: a SQLite file in `dir`, or on PostgreSQL a schema of its own, so test files run
 * in parallel on one server. `drop` removes the schema; register it with the teardown that closes what
 * uses it, once that is built: a teardown on tap's root test makes it end as soon as it is idle, which
 * a top-level `await startTestApp(t)` would be in the middle of.
 */
export async function createFreshDatabase(dir: string): Promise<{ location: string; drop: () => Promise<void> }> {
  if (testDialect === 'sqlite') return { location: join(dir, 'db', 'minigate.sqlite'), drop: async () => {} }
  const schema = `t_${randomBytes(6).toString('hex')}`
  const pool = adminPool()
  await pool.query(`create schema ${schema}`)
  return {
    location: withParam(process.env.MINIGATE_TEST_PG as string, 'schema', schema),
    drop: async () => {
      await pool.query(`drop schema ${schema} cascade`)
    },
  }
}

/** A fresh database (see `createFreshDatabase`) for a subtest, dropped when it ends. */
export async function freshDatabaseLocation(t: Test, dir: string): Promise<string> {
  const { location, drop } = await createFreshDatabase(dir)
  t.teardown(drop)
  return location
}

/**
 * A fresh database (see `freshDatabaseLocation`), migrated, closed when the test ends. Its SQLite file
 * lives in a folder of its own (not `t.testdir()`, which a second call would empty).
 */
export async function openTestDatabase(t: Test): Promise<Db> {
  const { dir, remove } = scratchFolder('test-db')
  const { location, drop } = await createFreshDatabase(dir)
  const db = openDatabase(location, { poolSize: 4 })
  await migrateToLatest(db)
  t.teardown(async () => {
    await db.destroy()
    await drop()
    remove()
  })
  return db
}
