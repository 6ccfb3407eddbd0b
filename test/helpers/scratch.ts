import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const folders = new Set<string>()
// One listener for the process, however many folders come and go.
process.once('exit', () => folders.forEach((dir) => rmSync(dir, { recursive: true, force: true })))

/**
 * A new empty folder under the system's temporary folder, deleted by `remove` or, at the latest, when the
 * process exits: tap may end a test process before an asynchronous teardown on its root test has run.
 * (Not t.testdir(): a second folder in the same test, or one at a file's top level, would empty the first.)
 */
export function scratchFolder(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `minigate-${prefix}-`))
  folders.add(dir)
  return {
    dir,
    remove() {
      rmSync(dir, { recursive: true, force: true })
      folders.delete(dir)
    },
  }
}
