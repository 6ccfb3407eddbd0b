import { chmodSync, mkdirSync, writeFileSync } from 'node:fs'

/** Creates the keys folder with mode 0700, tightening an existing one we own. */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  chmodSync(dir, 0o700)
}

/** Writes a new secret file with mode 0600; refuses to overwrite an existing one. */
export function writePrivateFile(path: string, contents: string): void {
  writeFileSync(path, contents, { mode: 0o600, flag: 'wx' })
}
