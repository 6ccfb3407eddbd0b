import type Router from '@koa/router'
import { epochSeconds } from '../clock.js'
import { deleteOtherAvatars, findAvatar, insertAvatar } from '../db/avatars.js'
import { updateProfile } from '../db/users.js'
import type { AppDeps } from '../deps.js'
import { InvalidRequest, NotFound } from '../errors.js'
import { requireAccessToken, requireScope } from '../http/bearer.js'
import { readSingleFile } from '../http/multipart.js'
import { noStore } from '../http/no-store.js'
import type { AccessTokenClaims } from '../tokens/claims.js'
import { randomId } from '../tokens/mint.js'
import { endpoint } from '../config.js'

/** The image type of a file by its first bytes; the name and declared type of an upload prove nothing. */
export function imageTypeOf(bytes: Buffer): 'image/png' | 'image/jpeg' | 'image/webp' | undefined {
  if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'image/png'
  if (bytes.length > 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'image/jpeg'
  if (bytes.subarray(0, 4).toString('latin1') === 'RIFF' && bytes.subarray(8, 12).toString('latin1') === 'WEBP') return 'image/webp'
  return undefined
}

/** An avatar's id: the last segment of its URL. */
export const AVATAR_ID = /^[A-Za-z0-9_-]{22}$/

/**
 * `POST /userinfo/picture` (Bearer, multipart from `wx.uploadFile`): stores a PNG, JPEG or WebP avatar
 * of at most 2 MB and makes it the user's `picture`. `GET /avatars/:id` serves it at that stable URL.
 */
export function mountAvatar(router: Router, deps: AppDeps): void {
  router.post('/userinfo/picture', noStore, requireAccessToken(deps), requireScope('profile'), async function uploadAvatar(ctx) {
    const claims: AccessTokenClaims = ctx.state.claims
    const bytes = await readSingleFile(ctx, deps.config.avatarMaxBytes)
    const contentType = imageTypeOf(bytes)
    if (!contentType) throw new InvalidRequest('the avatar must be a PNG, JPEG or WebP image')
    const id = randomId()
    const picture = endpoint(deps.config.issuer, `/avatars/${id}`)
    await deps.transaction(async (trx) => {
      const now = epochSeconds(deps.clock)
      await insertAvatar(trx, { id, user_id: claims.sub, content_type: contentType, bytes, created_at: now })
      await updateProfile(trx, claims.sub, { picture }, now)
      await deleteOtherAvatars(trx, claims.sub, id)
    })
    ctx.status = 201
    ctx.body = { picture }
  })

  router.get('/avatars/:id', async function serveAvatar(ctx) {
    const id = ctx.params.id ?? ''
    const avatar = AVATAR_ID.test(id) ? await findAvatar(deps.db, id) : undefined
    if (!avatar) throw new NotFound('no such avatar')
    ctx.set('Cache-Control', 'public, max-age=31536000, immutable')
    ctx.set('X-Content-Type-Options', 'nosniff')
    ctx.type = avatar.content_type
    ctx.body = avatar.bytes
  })
}
