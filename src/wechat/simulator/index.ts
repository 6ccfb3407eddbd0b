import Router from '@koa/router'
import type { Context } from 'koa'
import type { Clock } from '../../clock.js'
import type { WeChatApp } from '../../config.js'
import { InvalidRequest } from '../../errors.js'
import { parseParams, type Params } from '../../http/body.js'
import { FAULT_MODES, SIMULATED_APIS, SimulatorState, type FaultMode, type SimulatedApi } from './state.js'

export { SimulatorState }

/** The simulator: its state (for tests) and its routes, mounted at `/_dev/wechat`. */
export interface Simulator {
  state: SimulatorState
  router: Router
}

/** How long a `timeout` fault holds its request when the caller never gives up. */
const HANG_MS = 60_000

const SESSION_KEY = /^[A-Za-z0-9+/]{22}==$/
const ID = /^[A-Za-z0-9_-]{1,64}$/

function optional(params: Params, name: string, pattern: RegExp): string | undefined {
  const value = params[name]
  if (value === undefined || value === '') return undefined
  if (!pattern.test(value)) throw new InvalidRequest(`${name} is malformed`)
  return value
}

/** Answers like WeChat: HTTP 200 and a JSON `errcode`. */
function wechatError(ctx: Context, errcode: number, errmsg: string): void {
  ctx.status = 200
  ctx.body = { errcode, errmsg }
}

/** Plays an armed fault; returns false when the call should proceed normally. */
async function playFault(ctx: Context, mode: FaultMode | undefined): Promise<boolean> {
  switch (mode) {
    case undefined:
      return false
    case 'busy':
      wechatError(ctx, -1, 'system error')
      return true
    case 'rate_limit':
      wechatError(ctx, 45011, 'api minute-quota reach limit  mustslower  retry next minute')
      return true
    case 'http_500':
      ctx.status = 500
      ctx.type = 'text/html'
      ctx.body = '<html><body><h1>500 Internal Server Error</h1></body></html>'
      return true
    case 'garbage':
      ctx.status = 200
      ctx.type = 'application/json'
      ctx.body = '<html>{"errcode":0,"openid":'
      return true
    case 'timeout':
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, HANG_MS)
        timer.unref()
        ctx.res.once('close', () => {
          clearTimeout(timer)
          resolve()
        })
      })
      ctx.status = 504
      ctx.body = ''
      return true
  }
}

/**
 * Builds the WeChat simulator: WeChat's own wire format for the server APIs, plus control endpoints that
 * play the phone's part (`/login` is what `wx.login()` gives). Development and tests only.
 *
 * @example router.use('/_dev/wechat', createSimulator({ apps, clock }).router.routes())
 */
export function createSimulator(options: { apps: WeChatApp[]; clock: Clock }): Simulator {
  const state = new SimulatorState(options.apps, options.clock)
  const router = new Router()

  function appOf(params: Params): string {
    const appid = optional(params, 'appid', ID) ?? (options.apps[0] as WeChatApp).appid
    if (!state.app(appid)) throw new InvalidRequest(`appid ${appid} is not configured`)
    return appid
  }

  router.post('/login', parseParams(['json', 'form']), function simulateWxLogin(ctx) {
    const params: Params = ctx.state.params
    const appid = appOf(params)
    const code = state.login({
      appid,
      openid: optional(params, 'openid', ID) ?? SimulatorState.defaultOpenid(appid),
      unionid: optional(params, 'unionid', ID),
      sessionKey: optional(params, 'session_key', SESSION_KEY),
    })
    ctx.set('Cache-Control', 'no-store')
    ctx.body = { code }
  })

  router.post('/faults', parseParams(['json', 'form']), function armFault(ctx) {
    const params: Params = ctx.state.params
    const api = params.api as SimulatedApi
    const mode = params.mode as FaultMode
    const count = params.count === undefined ? 1 : Number(params.count)
    if (!SIMULATED_APIS.includes(api)) throw new InvalidRequest(`api must be one of ${SIMULATED_APIS.join(', ')}`)
    if (!FAULT_MODES.includes(mode)) throw new InvalidRequest(`mode must be one of ${FAULT_MODES.join(', ')}`)
    if (!Number.isInteger(count) || count < 0 || count > 1000) throw new InvalidRequest('count must be a whole number from 0 to 1000')
    state.arm(api, mode, count)
    ctx.body = { api, mode, count }
  })

  router.get('/sns/jscode2session', async function jscode2session(ctx) {
    if (await playFault(ctx, state.nextCall('jscode2session'))) return
    const query = ctx.query
    const app = typeof query.appid === 'string' ? state.app(query.appid) : undefined
    if (!app) return wechatError(ctx, 40013, 'invalid appid')
    if (query.secret !== app.secret) return wechatError(ctx, 40125, 'invalid appsecret')
    if (query.grant_type !== 'authorization_code') return wechatError(ctx, 40002, 'invalid grant_type')
    if (typeof query.js_code !== 'string' || query.js_code === '') return wechatError(ctx, 41008, 'missing code')
    const redeemed = state.redeem(app.appid, query.js_code)
    if ('errcode' in redeemed) {
      return wechatError(ctx, redeemed.errcode, redeemed.errcode === 40163 ? 'code been used' : 'invalid code')
    }
    ctx.body = {
      openid: redeemed.openid,
      session_key: redeemed.sessionKey,
      ...(redeemed.unionid ? { unionid: redeemed.unionid } : {}),
    }
  })

  return { state, router }
}
