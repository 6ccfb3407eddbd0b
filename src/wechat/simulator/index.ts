import Router from '@koa/router'
import type { Context } from 'koa'
import type { Clock } from '../../clock.js'
import type { WeChatApp } from '../../config.js'
import { InvalidRequest } from '../../errors.js'
import { parseParams, type Params } from '../../http/body.js'
import { encryptWeChatData, SESSION_KEY_FORMAT, sessionKeySignature } from '../crypto.js'
import { FAULT_MODES, SIMULATED_APIS, SimulatorState, type FaultMode, type SimulatedApi } from './state.js'

export { SimulatorState }

/** The simulator: its state (for tests) and its routes, mounted at `/_dev/wechat`. */
export interface Simulator {
  state: SimulatorState
  router: Router
}

/** How long a `timeout` fault holds its request when the caller never gives up. */
const HANG_MS = 60_000

const ID = /^[A-Za-z0-9_-]{1,64}$/
const PHONE = /^\d{3,20}$/
const COUNTRY_CODE = /^\d{1,4}$/

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

/** Reads a JSON request body the way WeChat does: anything unreadable is simply no parameters. */
async function readJson(ctx: Context): Promise<Record<string, unknown> | undefined> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > 16 * 1024) return undefined
    chunks.push(chunk)
  }
  try {
    const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
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

  router.post('/login', parseParams(['json', 'form'], { scalars: true }), function simulateWxLogin(ctx) {
    const params: Params = ctx.state.params
    const appid = appOf(params)
    const code = state.login({
      appid,
      openid: optional(params, 'openid', ID) ?? SimulatorState.defaultOpenid(appid),
      unionid: optional(params, 'unionid', ID),
      sessionKey: optional(params, 'session_key', SESSION_KEY_FORMAT),
    })
    ctx.set('Cache-Control', 'no-store')
    ctx.body = { code }
  })

  router.post('/faults', parseParams(['json', 'form'], { scalars: true }), function armFault(ctx) {
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

  router.post('/phone-code', parseParams(['json', 'form'], { scalars: true }), function simulateGetPhoneNumberButton(ctx) {
    const params: Params = ctx.state.params
    const appid = appOf(params)
    const phone = params.phone ?? ''
    if (!PHONE.test(phone)) throw new InvalidRequest('phone must be 3 to 20 digits (without the country code)')
    const code = state.phoneCode({
      appid,
      purePhoneNumber: phone,
      countryCode: optional(params, 'country_code', COUNTRY_CODE) ?? '86',
      watermarkAppid: optional(params, 'watermark_appid', ID),
    })
    ctx.set('Cache-Control', 'no-store')
    ctx.body = { code }
  })

  router.post('/encrypt', parseParams(['json', 'form'], { scalars: true }), function simulateEncryptedData(ctx) {
    const params: Params = ctx.state.params
    const appid = appOf(params)
    const openid = optional(params, 'openid', ID) ?? SimulatorState.defaultOpenid(appid)
    const user = state.users.get(`${appid}:${openid}`)
    if (!user) throw new InvalidRequest('that user has not logged in on the simulator')
    let data: unknown
    try {
      data = JSON.parse(params.data ?? '')
    } catch {
      data = undefined
    }
    if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new InvalidRequest('data must be the JSON text of an object')
    const sealed = encryptWeChatData({
      sessionKey: user.sessionKey,
      data: data as Record<string, unknown>,
      watermarkAppid: optional(params, 'watermark_appid', ID) ?? appid,
      timestamp: Math.floor(options.clock.now() / 1000),
    })
    ctx.body = { encrypted_data: sealed.encryptedData, iv: sealed.iv }
  })

  router.post('/access-tokens/invalidate', parseParams(['json', 'form'], { scalars: true }), function invalidateAccessTokens(ctx) {
    const appid = appOf(ctx.state.params)
    state.invalidateAccessTokens(appid)
    ctx.body = { appid, invalidated: true }
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

  /** The app a request's appid + secret authenticate, or WeChat's errcode. */
  function credentials(appid: unknown, secret: unknown): { appid: string } | { errcode: number; errmsg: string } {
    const app = typeof appid === 'string' ? state.app(appid) : undefined
    if (!app) return { errcode: 40013, errmsg: 'invalid appid' }
    if (secret !== app.secret) return { errcode: 40125, errmsg: 'invalid appsecret' }
    return { appid: app.appid }
  }

  router.post('/cgi-bin/stable_token', async function stableToken(ctx) {
    if (await playFault(ctx, state.nextCall('stable_token'))) return
    const body = await readJson(ctx)
    if (body?.grant_type !== 'client_credential') return wechatError(ctx, 40002, 'invalid grant_type')
    const app = credentials(body.appid, body.secret)
    if ('errcode' in app) return wechatError(ctx, app.errcode, app.errmsg)
    const issued = state.issueAccessToken(app.appid, 'stable_token', body.force_refresh === true)
    ctx.body = { access_token: issued.accessToken, expires_in: issued.expiresIn }
  })

  router.get('/cgi-bin/token', async function token(ctx) {
    if (await playFault(ctx, state.nextCall('token'))) return
    if (ctx.query.grant_type !== 'client_credential') return wechatError(ctx, 40002, 'invalid grant_type')
    const app = credentials(ctx.query.appid, ctx.query.secret)
    if ('errcode' in app) return wechatError(ctx, app.errcode, app.errmsg)
    const issued = state.issueAccessToken(app.appid, 'token')
    ctx.body = { access_token: issued.accessToken, expires_in: issued.expiresIn }
  })

  router.post('/wxa/business/getuserphonenumber', async function getUserPhoneNumber(ctx) {
    if (await playFault(ctx, state.nextCall('getuserphonenumber'))) return
    const checked = state.checkAccessToken(String(ctx.query.access_token ?? ''))
    if ('errcode' in checked) return wechatError(ctx, checked.errcode, checked.errcode === 42001 ? 'access_token expired' : 'invalid credential, access_token is invalid or not latest')
    const body = await readJson(ctx)
    const pending = typeof body?.code === 'string' ? state.redeemPhoneCode(checked.appid, body.code) : undefined
    if (!pending) return wechatError(ctx, 40029, 'invalid code')
    ctx.body = {
      errcode: 0,
      errmsg: 'ok',
      phone_info: {
        phoneNumber: pending.countryCode === '86' ? pending.purePhoneNumber : `+${pending.countryCode}${pending.purePhoneNumber}`,
        purePhoneNumber: pending.purePhoneNumber,
        countryCode: pending.countryCode,
        watermark: { timestamp: Math.floor(options.clock.now() / 1000), appid: pending.watermarkAppid },
      },
    }
  })

  router.get('/wxa/checksession', async function checkSession(ctx) {
    if (await playFault(ctx, state.nextCall('checksession'))) return
    const checked = state.checkAccessToken(String(ctx.query.access_token ?? ''))
    if ('errcode' in checked) return wechatError(ctx, checked.errcode, 'invalid credential')
    if (ctx.query.sig_method !== 'hmac_sha256') return wechatError(ctx, 87009, 'invalid signature method')
    const user = state.users.get(`${checked.appid}:${String(ctx.query.openid ?? '')}`)
    if (!user || ctx.query.signature !== sessionKeySignature(user.sessionKey)) return wechatError(ctx, 87009, 'invalid signature')
    ctx.body = { errcode: 0, errmsg: 'ok' }
  })

  return { state, router }
}
