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
 * Creates the logger: JSON lines, or whatever `destination` makes of them (see `prettyDestination`).
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
 * A destination that prints each line for a person: coloured (when the terminal supports it), one line
 * per entry, local time. pino-pretty is loaded only when asked for: JSON needs none of it.
 *
 * @example const log = createLogger({ level: 'info', destination: await prettyDestination() })
 */
export async function prettyDestination(): Promise<DestinationStream> {
  const { default: pretty } = await import('pino-pretty')
  // Synchronous: the last lines before process.exit (a clean shutdown) are not lost.
  return pretty({ translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service', singleLine: true, sync: true })
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
