import { pino, type DestinationStream, type Logger } from 'pino'

export type { Logger }

/**
 * Paths pino censors if a secret ever reaches a log call. Code logs ids (`jti`, `sid`, `client_id`,
 * hashed openids) and never these; the list is the safety net behind that rule.
 */
const redactedPaths = [
  'secret', '*.secret',
  'session_key', '*.session_key', '*.sessionKey',
  'code', 'params.code', 'body.code', '*.js_code',
  'token', '*.token', '*.access_token', '*.refresh_token', '*.id_token',
  '*.authorization', '*.headers.authorization', '*.headers.cookie',
  'url', '*.url',
  // Node's HTTP parser errors carry the raw request bytes, Authorization header and body included.
  'rawPacket', '*.rawPacket',
]

/**
 * Creates the JSON logger.
 *
 * @example const log = createLogger({ level: 'info' })
 */
export function createLogger(options: { level: string; destination?: DestinationStream }): Logger {
  return pino(
    {
      level: options.level,
      base: { service: 'minigate' },
      redact: { paths: redactedPaths, censor: '[redacted]' },
    },
    options.destination,
  )
}

/**
 * The loggable part of an error: its type, message, code and stack, and nothing else it may carry
 * (Node's parser errors hold the raw request in `rawPacket`; library errors may hold a request or URL).
 */
export function safeError(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { type: typeof error }
  const { code } = error as { code?: unknown }
  return { type: error.name, message: error.message, ...(typeof code === 'string' ? { code } : {}), stack: error.stack }
}

/** Errors a client causes on its own connection (malformed HTTP, hanging up): not a server fault. */
export function isClientConnectionError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && (code.startsWith('HPE_') || code === 'ECONNRESET' || code === 'ECONNABORTED' || code === 'EPIPE')
}
