// The machine's signing ceiling for `npm run bench`: jose RS256 signatures per second with a 2048-bit key,
// in a process of its own (no other work on its event loop or thread pool). Signs tokens shaped like
// minigate's access tokens, first one at a time (await each), then with many in flight. Prints JSON.
//
//   node bench/ceiling.mjs [seconds per phase, default 2] [in flight, default 64] [in-flight: only that phase]
import { randomBytes } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import { generateKeyPair, SignJWT } from 'jose'

function sign(privateKey) {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({
    sub: randomBytes(16).toString('base64url'),
    aud: 'minigate-api',
    client_id: 'wx0123456789abcdef',
    scope: 'profile',
    sid: randomBytes(16).toString('base64url'),
    iss: 'http://localhost:3000',
    iat: now,
    exp: now + 900,
    jti: randomBytes(16).toString('base64url'),
  })
    .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: 'bench' })
    .sign(privateKey)
}

async function sequential(privateKey, seconds) {
  const end = performance.now() + seconds * 1000
  const start = performance.now()
  let count = 0
  while (performance.now() < end) {
    await sign(privateKey)
    count += 1
  }
  return count / ((performance.now() - start) / 1000)
}

async function inFlight(privateKey, seconds, width) {
  const start = performance.now()
  const end = start + seconds * 1000
  let count = 0
  async function lane() {
    while (performance.now() < end) {
      await sign(privateKey)
      count += 1
    }
  }
  await Promise.all(Array.from({ length: width }, lane))
  return count / ((performance.now() - start) / 1000)
}

/** Measures the ceilings (signatures per second); `inFlightOnly` skips the one-at-a-time figure. */
export async function measureCeiling(seconds = 2, width = 64, inFlightOnly = false) {
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048 })
  await inFlight(privateKey, Math.min(0.5, seconds / 2), width) // warm-up
  const sequentialPerSecond = inFlightOnly ? null : await sequential(privateKey, seconds)
  const inFlightPerSecond = await inFlight(privateKey, seconds, width)
  return { sequential: sequentialPerSecond, inFlight: inFlightPerSecond, inFlightWidth: width, seconds, threadpool: Number(process.env.UV_THREADPOOL_SIZE ?? 4) }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await measureCeiling(Number(process.argv[2] ?? 2), Number(process.argv[3] ?? 64), process.argv[4] === 'in-flight')
  process.stdout.write(`${JSON.stringify(result)}\n`)
}
