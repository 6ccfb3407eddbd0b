import type { WeChatApp } from '../config.js'
import { InvalidClient, InvalidRequest } from '../errors.js'

/**
 * The mini-program a request comes from. Its `client_id` is its appid; it may be omitted when exactly
 * one app is configured. Mini-programs are public clients: they hold no secret.
 */
export function resolveClient(apps: WeChatApp[], clientId: string | undefined): WeChatApp {
  if (clientId === undefined || clientId === '') {
    if (apps.length === 1) return apps[0] as WeChatApp
    throw new InvalidRequest('the client_id parameter is required')
  }
  const app = apps.find((candidate) => candidate.appid === clientId)
  if (!app) throw new InvalidClient('unknown client_id')
  return app
}
