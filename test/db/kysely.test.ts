import { readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { Kysely, sql } from '../../src/db/kysely.js'

const ROOT = fileURLToPath(new URL('../../..', import.meta.url))

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  )
}

t.test("Kysely's values come from src/db/kysely.ts only: one copy of Kysely, its CommonJS build", async (t) => {
  const offenders = [...sources(join(ROOT, 'src')), ...sources(join(ROOT, 'test'))].filter((file) =>
    /^import (?!type )[^\n]*from 'kysely'/m.test(readFileSync(file, 'utf8')),
  )
  t.same(offenders, [], "no value import from 'kysely' elsewhere (type imports are fine)")
  const commonjs = createRequire(import.meta.url)('kysely') as { Kysely: unknown; sql: unknown }
  t.equal(Kysely, commonjs.Kysely, "the CommonJS build's Kysely")
  t.equal(sql, commonjs.sql)
})
