import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const SCRIPT = fileURLToPath(new URL('../../test/prepare-dialects.mjs', import.meta.url))

t.test('prepare-dialects: a build with MINIGATE_TEST_PG after one without it (whose notice is still there) makes the twins', async (t) => {
  const dir = t.testdir({
    '.build': {
      test: {
        helpers: { 'database.js': 'export const testDialect = "sqlite"\n' },
        'uses-db.test.js': "import { testDialect } from './helpers/database.js'\n",
        'no-db.test.js': 'export {}\n',
      },
    },
  })
  const run = (env: Record<string, string>) => spawnSync(process.execPath, [SCRIPT], { cwd: dir, env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8' })
  const without = run({})
  t.equal(without.status, 0, without.stderr)
  t.ok(existsSync(join(dir, '.build/test/postgres-suite.test.js')), 'without PostgreSQL: the notice of the skipped suite')

  const withPg = run({ MINIGATE_TEST_PG: 'postgres://nobody@127.0.0.1:1/none' })
  t.equal(withPg.status, 0, withPg.stderr)
  t.notOk(existsSync(join(dir, '.build/test/postgres-suite.test.js')), 'the notice is gone')
  t.match(readFileSync(join(dir, '.build/test/uses-db.pg.test.js'), 'utf8'), /MINIGATE_TEST_DIALECT = 'postgres'/, 'a twin for the file that reaches the database')
  t.notOk(existsSync(join(dir, '.build/test/no-db.pg.test.js')), 'none for the file that does not')
})
