import busboy from 'busboy'
import type { Context } from 'koa'
import { InvalidRequest, PayloadTooLarge, UnsupportedMediaType } from '../errors.js'

/**
 * Reads the one file of a `multipart/form-data` request (what `wx.uploadFile` sends), at most `maxBytes`.
 * Form fields beside it are ignored; a second file, an oversized file or a broken body is a 4xx.
 */
export function readSingleFile(ctx: Context, maxBytes: number): Promise<Buffer> {
  if (!ctx.request.is('multipart/form-data')) throw new UnsupportedMediaType('the body must be multipart/form-data with one file')
  return new Promise<Buffer>((resolve, reject) => {
    let parser: busboy.Busboy
    try {
      // busboy reports a limit when it is reached, not passed: one more byte and part than we allow.
      parser = busboy({ headers: ctx.req.headers, limits: { files: 1, fileSize: maxBytes + 1, fields: 10, fieldSize: 1024, parts: 12 } })
    } catch {
      reject(new InvalidRequest('the multipart body has no boundary'))
      return
    }
    const chunks: Buffer[] = []
    let file = false
    let failure: Error | undefined
    const fail = (error: Error) => {
      failure ??= error
      ctx.req.unpipe(parser)
      ctx.req.resume()
      reject(failure)
    }
    parser.on('file', (_name, stream) => {
      file = true
      stream.on('data', (chunk: Buffer) => chunks.push(chunk))
      stream.on('error', () => fail(new InvalidRequest('the multipart body is malformed')))
      stream.on('limit', () => fail(new PayloadTooLarge(`the file is larger than ${maxBytes} bytes`)))
    })
    parser.on('filesLimit', () => fail(new InvalidRequest('send exactly one file')))
    parser.on('partsLimit', () => fail(new InvalidRequest('too many parts in the multipart body')))
    parser.on('fieldsLimit', () => fail(new InvalidRequest('too many fields in the multipart body')))
    parser.on('error', () => fail(new InvalidRequest('the multipart body is malformed')))
    parser.on('close', () => {
      if (failure) return
      if (!file) reject(new InvalidRequest('the multipart body has no file'))
      else resolve(Buffer.concat(chunks))
    })
    ctx.req.once('close', () => {
      if (!ctx.req.complete) fail(new InvalidRequest('the upload was cut off'))
    })
    ctx.req.pipe(parser)
  })
}
