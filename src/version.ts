import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

let cached: string | undefined

/**
 * minigate's version, from its package.json: the first one named `minigate` above this module
 * (`dist/` in an install, `.build/src/` in the tests).
 *
 * @example version() // '0.1.0'
 */
export function version(): string {
  if (cached !== undefined) return cached
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown }
      if (pkg.name === 'minigate' && typeof pkg.version === 'string') return (cached = pkg.version)
    } catch {
      // No package.json here (or not minigate's): look further up.
    }
    const parent = dirname(dir)
    if (parent === dir) return (cached = 'unknown')
    dir = parent
  }
}
