import type Router from '@koa/router'
import type { Context } from 'koa'
import { epochSeconds } from '../clock.js'
import type { User } from '../db/schema.js'
import { updateProfile } from '../db/users.js'
import type { AppDeps } from '../deps.js'
import { InvalidRequest } from '../errors.js'
import { parseParams, type Params } from '../http/body.js'
import { requireAccessToken, requireScope } from '../http/bearer.js'
import { noStore } from '../http/no-store.js'
import type { AccessTokenClaims } from '../tokens/claims.js'
import { userClaims } from '../tokens/user-claims.js'
import { AVATAR_ID } from './avatar.js'
import { endpoint } from '../config.js'

const PROFILE_FIELDS = new Set(['nickname', 'picture'])

// Emoji sequences that use invisible characters on purpose; they are taken out before INVISIBLE is
// applied. A zero-width joiner is allowed only between two emoji (👨‍👩‍👧, ❤️‍🔥, 👨🏽‍💻): between letters it
// hides nothing visible but makes two names that look alike differ.
/** Subdivision flags (🏴 + tag characters + cancel tag). */
const EMOJI_TAG_SEQUENCE = /\u{1F3F4}[\u{E0020}-\u{E007E}]+\u{E007F}/gu
/** Emoji or text presentation after a pictograph, and the emoji selector of a keycap (1️⃣). */
const EMOJI_PRESENTATION = /(?<=\p{Extended_Pictographic})[\uFE0E\uFE0F]|(?<=[#*0-9])\uFE0F(?=\u20E3)/gu
/** A zero-width joiner between two emoji (the first perhaps with a skin tone). */
const EMOJI_JOINER = /(?<=\p{Extended_Pictographic}\p{Emoji_Modifier}?)\u200D(?=\p{Extended_Pictographic})/gu
/**
 * What lets one name display as another: control and format characters (bidi overrides and isolates,
 * zero-width spaces and joiners, BOM, soft hyphen), other default-ignorable characters (variation
 * selectors, Hangul fillers), lone surrogates, the blank braille pattern, and spaces other than the
 * plain and the ideographic space.
 */
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}\u2800]|[^\P{Zs} \u3000]/u

/**
 * A nickname from `<input type="nickname">`: trimmed, NFC, 1 to 64 characters, nothing invisible (see
 * INVISIBLE); Chinese, emoji and spaces inside the name are fine.
 */
function nickname(value: string): string {
  const trimmed = value.trim().normalize('NFC')
  const length = [...trimmed].length
  if (length < 1 || length > 64) throw new InvalidRequest('nickname must be 1 to 64 characters')
  const withoutEmojiSequences = trimmed.replace(EMOJI_TAG_SEQUENCE, '\u{1F3F4}').replace(EMOJI_PRESENTATION, '').replace(EMOJI_JOINER, '')
  if (INVISIBLE.test(withoutEmojiSequences)) {
    throw new InvalidRequest('nickname must not contain control or invisible characters (bidi controls, zero-width characters, unusual spaces)')
  }
  return trimmed
}

/** A picture URL: https, or an avatar this server stores (which may be http in development). */
function picture(value: string, issuer: string): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new InvalidRequest('picture must be an absolute https URL')
  }
  const avatars = new URL(endpoint(issuer, '/avatars/'))
  const ours = url.origin === avatars.origin && url.pathname.startsWith(avatars.pathname) && AVATAR_ID.test(url.pathname.slice(avatars.pathname.length)) && !url.search && !url.hash
  if ((url.protocol !== 'https:' && !ours) || url.username || url.password || value.length > 2048) {
    throw new InvalidRequest('picture must be an https URL of at most 2048 characters, without credentials')
  }
  return value
}

/**
 * `GET /userinfo` and `POST /userinfo` (OpenID Connect Core 5.3.1 asks for both): OpenID Connect claims
 * about the token's user, as far as its scope allows; the token comes from the Authorization header
 * only, and a POST body is not read. `PATCH /userinfo` and `POST /userinfo/profile` (scope `profile`):
 * set `nickname` and/or `picture`, the way current mini-programs collect them (chooseAvatar and the
 * nickname input). The POST twin exists because `wx.request` cannot send PATCH.
 */
export function mountUserinfo(router: Router, deps: AppDeps): void {
  function userinfo(ctx: Context) {
    const claims: AccessTokenClaims = ctx.state.claims
    const user: User = ctx.state.user
    ctx.set('Cache-Control', 'no-store')
    ctx.body = { sub: user.id, ...userClaims(user, claims.scope) }
  }
  router.get('/userinfo', requireAccessToken(deps), userinfo)
  router.post('/userinfo', requireAccessToken(deps), userinfo)

  async function updateUserinfo(ctx: Context) {
    const params: Params = ctx.state.params
    const claims: AccessTokenClaims = ctx.state.claims
    const unknown = Object.keys(params).find((name) => !PROFILE_FIELDS.has(name))
    if (unknown !== undefined) throw new InvalidRequest(`only nickname and picture can be changed`)
    const profile: { nickname?: string; picture?: string } = {}
    if (params.nickname !== undefined) profile.nickname = nickname(params.nickname)
    if (params.picture !== undefined) profile.picture = picture(params.picture, deps.config.issuer)
    if (Object.keys(profile).length === 0) throw new InvalidRequest('send nickname and/or picture')
    const user = await updateProfile(deps.db, claims.sub, profile, epochSeconds(deps.clock))
    ctx.body = { sub: user.id, ...userClaims(user, claims.scope) }
  }
  router.patch('/userinfo', noStore, requireAccessToken(deps), requireScope('profile'), parseParams(), updateUserinfo)
  router.post('/userinfo/profile', noStore, requireAccessToken(deps), requireScope('profile'), parseParams(), updateUserinfo)
}
