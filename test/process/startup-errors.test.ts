import { createServer } from 'node:net'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { startupFailure } from '../../src/main.js'
import { startFailingServer, type FailedStart } from '../helpers/process.js'

/** A database and keys folder in the test's own directory. */
function paths(t: Test, fixture: Record<string, string> = {}): { dir: string; env: Record<string, string> } {
  const dir = t.testdir(fixture)
  return { dir, env: { MINIGATE_DB: join(dir, 'db', 'minigate.sqlite'), MINIGATE_KEYS_DIR: join(dir, 'keys') } }
}

/** The start failed with exactly one line on stderr, no stack trace, exit code 1. */
function oneLine(t: Test, result: FailedStart, expected: string | RegExp): void {
  t.equal(result.signal, null, 'the server exited by itself (it did not keep running)')
  t.equal(result.code, 1, 'exit code 1')
  if (typeof expected === 'string') t.equal(result.stderr, `minigate: ${expected}\n`, 'one line saying what to change')
  else t.match(result.stderr, expected, 'one line saying what to change')
  t.equal(result.stderr.split('\n').length, 2, 'a single line')
  t.notMatch(result.stderr, /\n\s+at /, 'no stack trace')
}

t.test('a port in use', async (t) => {
  const holder = createServer()
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => holder.close(() => resolve())))
  const port = (holder.address() as { port: number }).port
  oneLine(t, await startFailingServer({ ...paths(t).env, PORT: String(port) }), `port ${port} is in use (PORT)`)
})

t.test('a HOST that does not resolve', async (t) => {
  // .invalid never resolves (RFC 6761); without a resolver the lookup fails with EAI_AGAIN instead.
  oneLine(t, await startFailingServer({ ...paths(t).env, HOST: 'no-such-host.invalid' }), /^minigate: host no-such-host\.invalid (does not resolve|could not be resolved \(DNS did not answer\)) \(HOST\)\n$/)
})

t.test('a HOST address this machine does not have', async (t) => {
  // 192.0.2.1 is TEST-NET-1 (RFC 5737): documentation only, on no interface.
  oneLine(t, await startFailingServer({ ...paths(t).env, HOST: '192.0.2.1' }), 'address 192.0.2.1 is not an address of this machine (HOST)')
})

t.test('a privileged port without the privilege', { skip: process.getuid?.() === 0 ? 'running as root: every port may be bound' : false }, async (t) => {
  oneLine(t, await startFailingServer({ ...paths(t).env, PORT: '1' }), 'no permission to listen on port 1 (PORT): ports below 1024 need privileges, pick another')
})

t.test('a MINIGATE_KEYS_DIR that is a file, or lies under one', async (t) => {
  const { dir, env } = paths(t, { 'keys-file': 'not a folder' })
  const file = join(dir, 'keys-file')
  oneLine(t, await startFailingServer({ ...env, MINIGATE_KEYS_DIR: file }), `${file} must be a folder, and it or a folder above it is a file (MINIGATE_KEYS_DIR)`)
  const under = join(file, 'keys')
  oneLine(t, await startFailingServer({ ...env, MINIGATE_KEYS_DIR: under }), `${under} must be a folder, and it or a folder above it is a file (MINIGATE_KEYS_DIR)`)
})

t.test('a MINIGATE_DB whose folder is a file', async (t) => {
  const { dir, env } = paths(t, { 'db-file': 'not a folder' })
  const folder = join(dir, 'db-file')
  oneLine(t, await startFailingServer({ ...env, MINIGATE_DB: join(folder, 'minigate.sqlite') }), `${folder} must be a folder, and it or a folder above it is a file (MINIGATE_DB)`)
})

t.test('a MINIGATE_DB that is not a database', async (t) => {
  const { dir, env } = paths(t, { 'not-a-db': 'this is not SQLite, and it is long enough to have a header of its own'.repeat(2) })
  oneLine(t, await startFailingServer({ ...env, MINIGATE_DB: join(dir, 'not-a-db') }), `${join(dir, 'not-a-db')} is not a SQLite database (MINIGATE_DB)`)
})

t.test('startupFailure: the message for each operator error, nothing for a bug', async (t) => {
  const env = { MINIGATE_KEYS_DIR: '/srv/minigate/keys', MINIGATE_DB: '/srv/minigate/db/minigate.sqlite' }
  const errno = (fields: Record<string, unknown>) => Object.assign(new Error('x'), fields)
  t.equal(startupFailure(errno({ code: 'EACCES', syscall: 'listen', port: 80 }), env), 'no permission to listen on port 80 (PORT): ports below 1024 need privileges, pick another')
  t.equal(startupFailure(errno({ code: 'EACCES', syscall: 'open', path: '/srv/minigate/keys/data-encryption.key' }), env), 'no permission to use /srv/minigate/keys/data-encryption.key (MINIGATE_KEYS_DIR)')
  t.equal(startupFailure(errno({ code: 'EROFS', syscall: 'mkdir', path: '/srv/minigate/db' }), env), '/srv/minigate/db is on a read-only file system (MINIGATE_DB)')
  t.equal(startupFailure(errno({ code: 'EAI_AGAIN', syscall: 'getaddrinfo', hostname: 'gate.internal' }), env), 'host gate.internal could not be resolved (DNS did not answer) (HOST)')
  t.equal(startupFailure(errno({ code: 'EEXIST', syscall: 'mkdir', path: '/elsewhere' }), env), undefined, 'a path of neither setting: not the operator\'s to fix here')
  t.equal(startupFailure(new TypeError('x is not a function'), env), undefined, 'a bug keeps its stack trace')
  t.equal(startupFailure(undefined, env), undefined)
})
