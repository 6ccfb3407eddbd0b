import type { Test } from 'tap'

/**
 * Asserts an RFC 6749 §5.2 error answer: `status`, a JSON body of exactly `error` and a non-empty
 * `error_description`. Returns the body.
 */
export async function oauthError(t: Test, response: Response, status: number, error = 'invalid_request'): Promise<Record<string, any>> {
  const text = await response.text()
  t.equal(response.status, status, response.status === status ? `status ${status}` : `status ${status} (${text.slice(0, 200)})`)
  t.match(response.headers.get('content-type'), /^application\/json/)
  const body = JSON.parse(text) as Record<string, any>
  t.equal(body.error, error)
  t.type(body.error_description, 'string')
  t.ok((body.error_description as string).length > 0, 'a description is given')
  t.same(Object.keys(body).sort(), ['error', 'error_description'], 'only error and error_description')
  return body
}
