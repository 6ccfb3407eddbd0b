import { request } from 'node:http'
import t, { type Test } from 'tap'
import { imageTypeOf } from '../../src/routes/avatar.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { sharedKeysDir } from '../helpers/keys.js'

// One keys folder for every app of this file: generating an RSA key per app is the slow part.
const KEYS_DIR = sharedKeysDir()

function start(t: Test, env: Record<string, string> = {}): Promise<TestApp> {
  return startTestApp(t, { MINIGATE_KEYS_DIR: KEYS_DIR, ...env })
}

const MAX = 2 * 1024 * 1024

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

function png(size = 64): Buffer {
  const bytes = Buffer.alloc(size)
  PNG_SIGNATURE.copy(bytes)
  for (let index = PNG_SIGNATURE.length; index < size; index += 1) bytes[index] = index % 251
  return bytes
}

function jpeg(): Buffer {
  return Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10]), Buffer.from('JFIF\0'), Buffer.alloc(40, 7), Buffer.from([0xff, 0xd9])])
}

function webp(): Buffer {
  const body = Buffer.concat([Buffer.from('WEBPVP8 '), Buffer.alloc(30, 3)])
  const size = Buffer.alloc(4)
  size.writeUInt32LE(body.length)
  return Buffer.concat([Buffer.from('RIFF'), size, body])
}

/** One part of a multipart body: a file (with bytes) or a plain field. */
type Part = { name: string; file: Buffer; filename?: string; type?: string } | { name: string; value: string }

/** POST /userinfo/picture with FormData, as a client's fetch would send wx.uploadFile's request. */
function upload(app: TestApp, accessToken: string | undefined, parts: Part[]): Promise<Response> {
  const form = new FormData()
  for (const part of parts) {
    if ('file' in part) form.append(part.name, new Blob([part.file], { type: part.type ?? 'application/octet-stream' }), part.filename ?? 'avatar.png')
    else form.append(part.name, part.value)
  }
  return fetch(`${app.url}/userinfo/picture`, { method: 'POST', headers: accessToken === undefined ? {} : { authorization: `Bearer ${accessToken}` }, body: form })
}

function uploadFile(app: TestApp, accessToken: string, file: Buffer, filename = 'avatar.png', type = 'image/png'): Promise<Response> {
  return upload(app, accessToken, [{ name: 'file', file, filename, type }])
}

async function picture(app: TestApp, accessToken: string): Promise<unknown> {
  const response = await fetch(`${app.url}/userinfo`, { headers: { authorization: `Bearer ${accessToken}` } })
  return ((await response.json()) as { picture?: unknown }).picture
}

/** GET with a raw, unnormalised path (fetch would resolve `..` before sending). */
function rawGet(app: TestApp, path: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(app.url)
  return new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, path, method: 'GET' }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }))
    })
    req.on('error', reject)
    req.end()
  })
}

async function expectError(t: Test, response: Response, status: number, error: string, name: string): Promise<Record<string, unknown>> {
  const text = await response.text()
  t.equal(response.status, status, `${name}: HTTP ${status} (${text})`)
  const body = JSON.parse(text) as Record<string, unknown>
  t.equal(body.error, error, `${name}: ${error}`)
  t.type(body.error_description, 'string')
  return body
}

t.test('imageTypeOf reads the magic bytes', async (t) => {
  t.equal(imageTypeOf(png()), 'image/png')
  t.equal(imageTypeOf(PNG_SIGNATURE), 'image/png', 'the bare 8-byte signature')
  t.equal(imageTypeOf(jpeg()), 'image/jpeg')
  t.equal(imageTypeOf(webp()), 'image/webp')
  t.equal(imageTypeOf(Buffer.alloc(0)), undefined, 'empty')
  t.equal(imageTypeOf(PNG_SIGNATURE.subarray(0, 7)), undefined, 'a cut PNG signature')
  t.equal(imageTypeOf(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0b, 0])), undefined, 'one signature byte off')
  t.equal(imageTypeOf(Buffer.from([0xff, 0xd8, 0xfe, 0xe0])), undefined, 'not quite JPEG')
  t.equal(imageTypeOf(Buffer.from('RIFF\0\0\0\0WAVE')), undefined, 'RIFF audio')
  t.equal(imageTypeOf(Buffer.from('RIFF')), undefined, 'RIFF alone')
  t.equal(imageTypeOf(Buffer.from('GIF89a')), undefined, 'GIF is not accepted')
  t.equal(imageTypeOf(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>')), undefined, 'SVG is not accepted')
  t.equal(imageTypeOf(Buffer.concat([Buffer.from('junk'), png()])), undefined, 'the signature must come first')
})

t.test('PNG, JPEG and WebP avatars are stored, served and become the picture', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const samples: Array<[string, Buffer, string]> = [
    ['image/png', png(), 'a.png'],
    ['image/jpeg', jpeg(), 'a.jpg'],
    ['image/webp', webp(), 'a.webp'],
  ]
  let previous: string | undefined
  for (const [type, bytes, filename] of samples) {
    await t.test(type, async (t) => {
      const response = await uploadFile(app, tokens.access_token, bytes, filename, type)
      t.equal(response.status, 201)
      t.equal(response.headers.get('cache-control'), 'no-store')
      const body = (await response.json()) as { picture: string }
      t.same(Object.keys(body), ['picture'])
      t.match(body.picture, new RegExp(`^${app.url.replace(/[.]/g, '\\.')}/avatars/[A-Za-z0-9_-]{22}$`), 'a URL under the issuer')

      const served = await fetch(body.picture)
      t.equal(served.status, 200)
      t.equal(served.headers.get('content-type'), type, 'the right Content-Type')
      t.match(served.headers.get('cache-control'), /immutable/)
      t.match(served.headers.get('cache-control'), /max-age=\d+/)
      t.equal(served.headers.get('x-content-type-options'), 'nosniff')
      t.ok(Buffer.from(await served.arrayBuffer()).equals(bytes), 'the same bytes')
      t.equal(await picture(app, tokens.access_token), body.picture, '/userinfo shows it')

      if (previous !== undefined) {
        t.not(body.picture, previous, 'a new URL')
        t.equal((await fetch(previous)).status, 404, 'the replaced avatar is gone')
      }
      previous = body.picture
    })
  }
  const rows = await app.deps.db.selectFrom('avatars').selectAll().execute()
  t.equal(rows.length, 1, 'only the current avatar is kept')
})

t.test("the bytes decide the type, not the file's name or declared type", async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const response = await uploadFile(app, tokens.access_token, png(), 'photo.jpg', 'image/jpeg')
  t.equal(response.status, 201)
  const served = await fetch(((await response.json()) as { picture: string }).picture)
  t.equal(served.headers.get('content-type'), 'image/png')

  const cases: Array<[string, Buffer, string, string]> = [
    ['a text file named .png', Buffer.from('just some text, honestly\n'), 'a.png', 'image/png'],
    ['an HTML page named .png', Buffer.from('<html><script>alert(1)</script></html>'), 'a.png', 'image/png'],
    ['an SVG', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'), 'a.svg', 'image/svg+xml'],
    ['a GIF', Buffer.concat([Buffer.from('GIF89a'), Buffer.alloc(20)]), 'a.gif', 'image/gif'],
    ['half a PNG signature', PNG_SIGNATURE.subarray(0, 4), 'a.png', 'image/png'],
    ['RIFF that is not WebP', Buffer.concat([Buffer.from('RIFF'), Buffer.alloc(4), Buffer.from('WAVEfmt '), Buffer.alloc(20)]), 'a.webp', 'image/webp'],
    ['an empty file', Buffer.alloc(0), 'a.png', 'image/png'],
  ]
  for (const [name, bytes, filename, type] of cases) {
    await expectError(t, await uploadFile(app, tokens.access_token, bytes, filename, type), 400, 'invalid_request', name)
  }
  t.equal((await app.deps.db.selectFrom('avatars').selectAll().execute()).length, 1, 'nothing stored for the refused files')
})

t.test('2 MB is the limit', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const exact = await uploadFile(app, tokens.access_token, png(MAX))
  t.equal(exact.status, 201, `exactly 2 MB is accepted (${exact.status})`)
  await exact.arrayBuffer()

  const under = await uploadFile(app, tokens.access_token, png(MAX - 1))
  t.equal(under.status, 201, '2 MB - 1 byte is accepted')
  const stored = ((await under.json()) as { picture: string }).picture
  const served = await fetch(stored)
  t.equal(Buffer.from(await served.arrayBuffer()).length, MAX - 1, 'all of it is served')

  await expectError(t, await uploadFile(app, tokens.access_token, png(MAX + 1)), 413, 'invalid_request', '2 MB + 1 byte')
  await expectError(t, await uploadFile(app, tokens.access_token, png(5 * MAX)), 413, 'invalid_request', '10 MB')
  t.equal(await picture(app, tokens.access_token), stored, 'the picture is unchanged')
  t.equal((await fetch(stored)).status, 200, 'the stored avatar is still served')
  t.equal((await app.login()).token_type, 'Bearer', 'the server answers a normal login afterwards')
})

t.test('the multipart body must hold exactly one file', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const two = await upload(app, tokens.access_token, [
    { name: 'file', file: png() },
    { name: 'file2', file: jpeg(), filename: 'b.jpg' },
  ])
  await expectError(t, two, 400, 'invalid_request', 'two files')
  await expectError(t, await upload(app, tokens.access_token, [{ name: 'nickname', value: 'only a field' }]), 400, 'invalid_request', 'no file, only a field')
  await expectError(t, await upload(app, tokens.access_token, []), 400, 'invalid_request', 'an empty form')

  const withField = await upload(app, tokens.access_token, [
    { name: 'user', value: 'wx.uploadFile formData' },
    { name: 'file', file: png() },
  ])
  t.equal(withField.status, 201, 'fields beside the one file are ignored')
  t.equal((await app.deps.db.selectFrom('avatars').selectAll().execute()).length, 1)
  t.equal((await app.login()).token_type, 'Bearer', 'the server answers a normal login afterwards')
})

t.test('the body must be multipart/form-data with a boundary', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const post = (contentType: string | undefined, body: string | Buffer) =>
    fetch(`${app.url}/userinfo/picture`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.access_token}`, ...(contentType ? { 'content-type': contentType } : {}) },
      body,
    })
  await expectError(t, await post('application/json', '{"picture":"x"}'), 415, 'invalid_request', 'JSON')
  await expectError(t, await post('image/png', png()), 415, 'invalid_request', 'a bare PNG body')
  await expectError(t, await post('application/x-www-form-urlencoded', 'file=x'), 415, 'invalid_request', 'a form')
  const noBoundary = await post('multipart/form-data', '--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nabc\r\n--x--\r\n')
  await expectError(t, noBoundary, 400, 'invalid_request', 'multipart without boundary')
  const junk = await post('multipart/form-data; boundary=XyZ', 'this is not a multipart body at all')
  await expectError(t, junk, 400, 'invalid_request', 'a body without any part')
  t.equal((await app.deps.db.selectFrom('avatars').selectAll().execute()).length, 0)
  t.equal((await app.login()).token_type, 'Bearer', 'the server answers a normal login afterwards')
})

/**
 * Runs `run` with the process's uncaughtException listeners swapped for a recorder, so an error that
 * would kill a real server is seen as a failed assertion here instead of aborting the test file.
 */
async function recordingUncaught<T>(run: () => Promise<T>): Promise<{ result: T; uncaught: Error[] }> {
  const saved = process.listeners('uncaughtException')
  const uncaught: Error[] = []
  const record = (error: Error) => {
    uncaught.push(error)
  }
  process.removeAllListeners('uncaughtException')
  process.on('uncaughtException', record)
  try {
    const result = await run()
    // Stream errors are emitted on later ticks: let them surface before the listeners go back.
    await new Promise((resolve) => setImmediate(resolve))
    await new Promise((resolve) => setImmediate(resolve))
    return { result, uncaught }
  } finally {
    process.off('uncaughtException', record)
    for (const listener of saved) process.on('uncaughtException', listener)
  }
}

t.test('a multipart body cut inside its file part is a 400, not a crash', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const head = '--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
  const { result, uncaught } = await recordingUncaught(async () => {
    const response = await fetch(`${app.url}/userinfo/picture`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.access_token}`, 'content-type': 'multipart/form-data; boundary=XyZ' },
      body: Buffer.concat([Buffer.from(head), png()]),
    })
    return { status: response.status, text: await response.text() }
  })
  t.equal(result.status, 400, `400 (${result.text})`)
  t.same(
    uncaught.map((error) => error.message),
    [],
    'no uncaught exception',
  )
  t.equal((await app.deps.db.selectFrom('avatars').selectAll().execute()).length, 0, 'nothing stored')
  t.equal((await app.login()).token_type, 'Bearer', 'the server answers a normal login afterwards')
})

t.test('unknown avatars and paths that are not avatar ids are 404', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const stored = ((await (await uploadFile(app, tokens.access_token, png())).json()) as { picture: string }).picture
  for (const path of ['/avatars/unknown', '/avatars/AAAAAAAAAAAAAAAAAAAAAA', '/avatars/', '/avatars/%2e%2e%2f%2e%2e%2fetc%2fpasswd']) {
    const response = await fetch(`${app.url}${path}`)
    t.equal(response.status, 404, `${path}: 404`)
    t.equal(((await response.json()) as { error: string }).error, 'not_found')
  }
  for (const path of ['/avatars/../../etc', '/avatars/../../etc/passwd', '/avatars/..%2F..%2Fetc%2Fpasswd', `/avatars/${stored.split('/').pop()}/../../etc`]) {
    const { status, body } = await rawGet(app, path)
    t.equal(status, 404, `raw ${path}: 404`)
    t.notOk(body.includes('root:'), `raw ${path}: no file content`)
  }
  t.equal((await fetch(stored)).status, 200, 'the real avatar is served')
  const head = await fetch(stored, { method: 'HEAD' })
  t.equal(head.status, 200, 'HEAD works too')
})

t.test('an avatar is per user', async (t) => {
  const app = await start(t)
  const alice = await app.login({ openid: 'o-alice' })
  const bob = await app.login({ openid: 'o-bob' })
  const alicePicture = ((await (await uploadFile(app, alice.access_token, png())).json()) as { picture: string }).picture
  const bobPicture = ((await (await uploadFile(app, bob.access_token, jpeg(), 'b.jpg')).json()) as { picture: string }).picture
  t.not(alicePicture, bobPicture)
  t.equal((await fetch(alicePicture)).status, 200, "bob's upload leaves alice's avatar alone")
  t.equal(await picture(app, alice.access_token), alicePicture)
  t.equal(await picture(app, bob.access_token), bobPicture)
})

t.test('scope profile and a Bearer token are required', async (t) => {
  const app = await start(t)
  const phoneOnly = await app.login({ scope: 'phone' })
  const refused = await uploadFile(app, phoneOnly.access_token, png())
  t.equal(refused.status, 403)
  t.match(refused.headers.get('www-authenticate'), /error="insufficient_scope"/)
  t.equal(((await refused.json()) as { error: string }).error, 'insufficient_scope')

  const anonymous = await upload(app, undefined, [{ name: 'file', file: png() }])
  t.equal(anonymous.status, 401)
  t.match(anonymous.headers.get('www-authenticate'), /^Bearer/)
  t.equal((await app.deps.db.selectFrom('avatars').selectAll().execute()).length, 0, 'nothing stored')
  t.equal((await app.login()).token_type, 'Bearer', 'the server answers a normal login afterwards')
})

t.test('an uploaded avatar URL is accepted back by PATCH /userinfo', async (t) => {
  const app = await start(t)
  const tokens = await app.login()
  const stored = ((await (await uploadFile(app, tokens.access_token, png())).json()) as { picture: string }).picture
  const response = await fetch(`${app.url}/userinfo`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${tokens.access_token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ picture: stored }),
  })
  t.equal(response.status, 200, 'our own avatar URL is accepted even over http in development')
  t.equal(((await response.json()) as { picture: string }).picture, stored)
})
