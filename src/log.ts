import { pino, type DestinationStream, type Logger } from 'pino'

export type { Logger }

/**
 * Paths pino censors if a secret ever reaches a log call. Code logs ids (`jti`, `sid`, `client_id`,
 * hashed openids) and never these; the list is the safety net behind that rule.
 */
export const redactedPaths = [
  'secret', '*.secret',
  'session_key', '*.session_key', '*.sessionKey',
  'code', 'params.code', 'body.code', '*.js_code',
  'token', '*.token', '*.access_token', '*.refresh_token', '*.id_token',
  '*.authorization', '*.headers.authorization', '*.headers.cookie',
  'url', '*.url',
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
