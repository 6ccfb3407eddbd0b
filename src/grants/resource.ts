import type { Config } from '../config.js'
import { InvalidTarget } from '../errors.js'

/**
 * RFC 8707 `resource`: the one service the access token is asked for, or undefined for the default
 * audience. It must be one of `MINIGATE_RESOURCES`, or minigate's account audience; anything else is
 * `invalid_target`. (A repeated `resource` is refused like any repeated parameter.)
 */
export function parseResource(config: Pick<Config, 'resources' | 'accountAudience'>, resource: string | undefined): string | undefined {
  if (resource === undefined || resource === '') return undefined
  if (resource === config.accountAudience || config.resources.includes(resource)) return resource
  throw new InvalidTarget('the resource is not one minigate issues tokens for')
}
