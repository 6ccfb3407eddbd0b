import { run } from '../../src/cli/main.js'
import type { TestApp } from './app.js'
import { fixtureKeyGenerator } from './keys.js'

export interface CliOutput {
  code: number
  stdout: string
  /** stderr without the `database: ...` line every command that opens the database begins with. */
  stderr: string
  /** What that line named, if it came. */
  database?: string
}

/** Takes the leading `database: <where>` line off a command's stderr. */
export function splitDatabaseLine(stderr: string): { stderr: string; database?: string } {
  const match = /^database: (.*)\n/.exec(stderr)
  return match ? { stderr: stderr.slice(match[0].length), database: match[1] as string } : { stderr }
}

const generators = new WeakMap<TestApp, () => Promise<string>>()

/** One fixture-key generator per app, so the keys a test adds through the CLI differ. */
function generatorOf(app: TestApp): () => Promise<string> {
  let generator = generators.get(app)
  if (!generator) generators.set(app, (generator = fixtureKeyGenerator(7)))
  return generator
}

/** Runs the minigate CLI in-process against a test app's database and keys, on its clock. */
export async function cli(app: TestApp, ...argv: string[]): Promise<CliOutput> {
  let stdout = ''
  let stderr = ''
  const code = await run(argv, {
    env: { MINIGATE_DB: app.config.dbFile, MINIGATE_KEYS_DIR: app.config.keysDir },
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
    clock: app.clock,
    generateKey: generatorOf(app),
  })
  return { code, stdout, ...splitDatabaseLine(stderr) }
}
