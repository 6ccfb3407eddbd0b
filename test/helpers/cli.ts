import { run } from '../../src/cli/main.js'
import type { TestApp } from './app.js'
import { fixtureKeyGenerator } from './keys.js'

export interface CliOutput {
  code: number
  stdout: string
  stderr: string
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
  return { code, stdout, stderr }
}
