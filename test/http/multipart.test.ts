import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import Koa from 'koa'
import t, { type Test } from 'tap'
import { renderErrors } from '../../src/http/error-handler.js'
import { readSingleFile } from '../../src/http/multipart.js'
import { createLogger } from '../../src/log.js'

const MAX = 1024

/** A bare app whose one endpoint reads the single file of a multipart body (at most MAX bytes) and describes it. */
async function startReader(t: Test): Promise<string> {
  const app = new Koa()
  app.silent = true
  app.use(renderErrors(createLogger({ level: 'silent' })))
  app.use(async (ctx) => {
    const bytes = await readSingleFile(ctx, MAX)
    ctx.body = { length: bytes.length, base64: bytes.toString('base64') }
  })
  const server = createServer(app.callback())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  )
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
}

type Part = { name: string; file: Buffer; filename?: string } | { name: string; value: string }

function form(parts: Part[]): FormData {
  const body = new FormData()
  for (const part of parts) {
    if ('file' in part) body.append(part.name, new Blob([part.file]), part.filename ?? 'f.bin')
    else body.append(part.name, part.value)
  }
  return body
}

function post(url: string, body: FormData | string | Buffer, contentType?: string): Promise<Response> {
  return fetch(url, { method: 'POST', headers: contentType === undefined ? {} : { 'content-type': contentType }, body })
}

async function fileOf(t: Test, response: Response, name: string): Promise<Buffer> {
  const text = await response.text()
  t.equal(response.status, 200, `${name}: 200 (${text.slice(0, 200)})`)
  const body = JSON.parse(text) as { length: number; base64: string }
  return Buffer.from(body.base64, 'base64')
}

async function expectError(t: Test, response: Response, status: number, name: string): Promise<string> {
  const text = await response.text()
  t.equal(response.status, status, `${name}: ${status} (${text})`)
  const body = JSON.parse(text) as { error: string; error_description: string }
  t.equal(body.error, 'invalid_request', `${name}: invalid_request`)
  return body.error_description
}

/** Swaps the uncaughtException listeners for a recorder while `run` runs (an error there would kill a server). */
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
    await new Promise((resolve) => setImmediate(resolve))
    await new Promise((resolve) => setImmediate(resolve))
    return { result, uncaught }
  } finally {
    process.off('uncaughtException', record)
    for (const listener of saved) process.on('uncaughtException', listener)
  }
}

t.test('the one file comes back byte for byte', async (t) => {
  const url = await startReader(t)
  const tricky = Buffer.concat([Buffer.from('\r\n--boundary\r\n--\r\n\r\n'), Buffer.from([0, 255, 13, 10, 45, 45]), Buffer.from('Content-Disposition: form-data\r\n')])
  t.ok((await fileOf(t, await post(url, form([{ name: 'file', file: tricky }])), 'CRLF and dashes inside')).equals(tricky), 'the same bytes')
  const binary = Buffer.from(Array.from({ length: 256 }, (_, index) => index))
  t.ok((await fileOf(t, await post(url, form([{ name: 'any-name', file: binary, filename: '头像.png' }])), 'every byte value')).equals(binary), 'any field name and file name')
  t.equal((await fileOf(t, await post(url, form([{ name: 'file', file: Buffer.alloc(0) }])), 'an empty file')).length, 0, 'an empty file is zero bytes')
})

t.test('size limit', async (t) => {
  const url = await startReader(t)
  t.equal((await fileOf(t, await post(url, form([{ name: 'file', file: Buffer.alloc(MAX - 1, 1) }])), 'max - 1')).length, MAX - 1)
  const exact = await post(url, form([{ name: 'file', file: Buffer.alloc(MAX, 2) }]))
  const exactText = await exact.text()
  t.equal(exact.status, 200, `exactly maxBytes is accepted (${exact.status} ${exactText})`)
  const over = await expectError(t, await post(url, form([{ name: 'file', file: Buffer.alloc(MAX + 1, 3) }])), 413, 'max + 1')
  t.match(over, new RegExp(String(MAX)), 'the description names the limit')
  await expectError(t, await post(url, form([{ name: 'file', file: Buffer.alloc(1024 * 1024, 4) }])), 413, '1 MB')
  t.equal((await fileOf(t, await post(url, form([{ name: 'file', file: Buffer.from('after') }])), 'after the big one')).toString(), 'after', 'the server goes on')
})

t.test('fields beside the file are ignored, within limits', async (t) => {
  const url = await startReader(t)
  const file = Buffer.from('the file')
  const around = form([{ name: 'a', value: '1' }, { name: 'file', file }, { name: 'b', value: '2' }])
  t.ok((await fileOf(t, await post(url, around), 'fields before and after')).equals(file))
  const long = form([{ name: 'note', value: 'x'.repeat(5000) }, { name: 'file', file }])
  t.ok((await fileOf(t, await post(url, long), 'a long field')).equals(file), 'a field over 1 KB is cut, not refused')
  const nine = form([...Array.from({ length: 9 }, (_, index) => ({ name: `f${index}`, value: 'v' })), { name: 'file', file }])
  t.ok((await fileOf(t, await post(url, nine), 'nine fields')).equals(file), 'nine fields and the file')
  const ten = await post(url, form([...Array.from({ length: 10 }, (_, index) => ({ name: `f${index}`, value: 'v' })), { name: 'file', file }]))
  t.equal(ten.status, 200, `ten fields and the file (limits fields: 10, parts: 11) are accepted (${ten.status} ${await ten.text()})`)
  const eleven = form([...Array.from({ length: 11 }, (_, index) => ({ name: `f${index}`, value: 'v' })), { name: 'file', file }])
  await expectError(t, await post(url, eleven), 400, 'eleven fields')
  const many = form(Array.from({ length: 500 }, (_, index) => ({ name: `f${index}`, value: 'v' })))
  await expectError(t, await post(url, many), 400, '500 fields and no file')
})

t.test('exactly one file', async (t) => {
  const url = await startReader(t)
  const two = await expectError(t, await post(url, form([{ name: 'a', file: Buffer.from('1') }, { name: 'b', file: Buffer.from('2') }])), 400, 'two files')
  t.match(two, /one file/)
  await expectError(t, await post(url, form([{ name: 'a', file: Buffer.from('1') }, { name: 'a', file: Buffer.from('2') }, { name: 'a', file: Buffer.from('3') }])), 400, 'three files')
  const none = await expectError(t, await post(url, form([{ name: 'a', value: 'only a field' }])), 400, 'only a field')
  t.match(none, /no file/)
  await expectError(t, await post(url, '--XyZ--\r\n', 'multipart/form-data; boundary=XyZ'), 400, 'no part at all')
})

t.test('content type', async (t) => {
  const url = await startReader(t)
  await expectError(t, await post(url, '{"file":"x"}', 'application/json'), 415, 'JSON')
  await expectError(t, await post(url, 'file=x', 'application/x-www-form-urlencoded'), 415, 'a form')
  await expectError(t, await post(url, 'x', 'text/plain'), 415, 'text')
  await expectError(t, await post(url, '--XyZ--\r\n', 'multipart/mixed; boundary=XyZ'), 415, 'multipart/mixed')
  const noType = await fetch(url, { method: 'POST', body: new Uint8Array([1, 2, 3]) })
  await expectError(t, noType, 415, 'no content type')
  const noBoundary = await expectError(t, await post(url, '--XyZ\r\n\r\nabc\r\n--XyZ--\r\n', 'multipart/form-data'), 400, 'no boundary')
  t.match(noBoundary, /boundary/)
  const upper = await post(url, '--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc\r\n--XyZ--\r\n', 'Multipart/Form-Data; boundary=XyZ')
  t.equal((await fileOf(t, upper, 'media type in capitals')).toString(), 'abc', 'media types are case-insensitive')
})

t.test('malformed bodies', async (t) => {
  const url = await startReader(t)
  const type = 'multipart/form-data; boundary=XyZ'
  await expectError(t, await post(url, 'no boundary line anywhere', type), 400, 'no delimiter')
  await expectError(t, await post(url, '--XyZ\r\nContent-Disposition: form-da', type), 400, 'cut inside the part headers')
  const wrongBoundary = '--Other\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc\r\n--Other--\r\n'
  await expectError(t, await post(url, wrongBoundary, type), 400, 'another boundary than declared')

  const { result, uncaught } = await recordingUncaught(async () => {
    const response = await post(url, '--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc', type)
    return { status: response.status, text: await response.text() }
  })
  t.equal(result.status, 400, `cut inside the file: 400 (${result.text})`)
  t.same(uncaught.map((error) => error.message), [], 'cut inside the file: no uncaught exception')
  t.equal((await fileOf(t, await post(url, form([{ name: 'file', file: Buffer.from('ok') }])), 'afterwards')).toString(), 'ok', 'the server goes on')
})
