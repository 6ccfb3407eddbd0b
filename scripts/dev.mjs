// npm run dev: the TypeScript compiler in watch mode beside `node --watch dist/main.js`, so a saved
// change to src/ is rebuilt and the server restarted (it shuts down cleanly on each restart). Ctrl-C
// stops both. Nothing but TypeScript and Node itself: no extra dependency.
import { spawn, spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
const build = ['-b', 'tsconfig.build.json']

// One build first, so the server starts on the current source (an error is shown, and watched).
spawnSync(process.execPath, [tsc, ...build], { cwd: root, stdio: 'inherit' })

const children = [
  spawn(process.execPath, [tsc, ...build, '--watch', '--preserveWatchOutput'], { cwd: root, stdio: 'inherit' }),
  spawn(process.execPath, ['--watch', 'dist/main.js'], { cwd: root, stdio: 'inherit' }),
]

let stopping = false
function stop(code) {
  if (stopping) return
  stopping = true
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM')
  process.exitCode = code
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => stop(0))
for (const child of children) child.once('exit', (code) => stop(code ?? 0))
