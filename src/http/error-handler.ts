import type { Context, Next } from 'koa'
import {
  ClientError,
  InvalidRequest,
  NotFound,
  OAuthError,
  PayloadTooLarge,
  UnsupportedMediaType,
} from '../errors.js'
import { safeError, type Logger } from '../log.js'
import { requestLogger } from './request-log.js'

/** Errors thrown by koa and its body parser carry an HTTP status; these are the client's fault. */
function fromHttpError(error: unknown): OAuthError | undefined {
  const status = (error as { status?: unknown } | null)?.status
  if (typeof status !== 'number' || status < 400 || status >= 500) return undefined
  if (status === 413) return new PayloadTooLarge('the request body is too large')
  if (status === 415) return new UnsupportedMediaType('the request body has an unsupported content type or charset')
  if (status === 404) return new NotFound('not found')
  if (status === 400) return new InvalidRequest('the request is malformed')
  return new ClientError(`the request was refused (HTTP ${status})`, status)
}

/**
 * Renders every error as an RFC 6749 §5.2 body. An unexpected error becomes a bland 500 `server_error`
 * and is logged with the request id; its message never reaches the client.
 */
export function renderErrors(log: Logger) {
  return async function renderErrorsMiddleware(ctx: Context, next: Next) {
    try {
      await next()
    } catch (caught) {
      const error = caught instanceof OAuthError ? caught : fromHttpError(caught)
      if (error) {
        ctx.status = error.status
        ctx.set(error.headers)
        ctx.set('Cache-Control', 'no-store')
        ctx.body = { error: error.code, error_description: error.expose ? error.description : 'the server could not handle the request' }
        if (error.status >= 500) requestLogger(ctx, log).warn({ error: error.code, status: error.status }, error.description)
        return
      }
      requestLogger(ctx, log).error({ err: safeError(caught) }, 'unhandled error')
      ctx.status = 500
      ctx.set('Cache-Control', 'no-store')
      ctx.body = { error: 'server_error', error_description: 'the server could not handle the request' }
    }
  }
}
