import { run } from '../../src/cli/main.js'
import type { TestApp } from './app.js'

export interface CliOutput {
  code: number
  stdout: string
  stderr: string
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
  })
  return { code, stdout, stderr }
}
