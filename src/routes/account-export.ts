import type Router from '@koa/router'
import { epochSeconds } from '../clock.js'
import { listAuditEvents } from '../db/audit.js'
import { listIdentitiesOfUser } from '../db/identities.js'
import type { User } from '../db/schema.js'
import { eventsAbout } from '../db/security-events.js'
import { listUserSessions } from '../db/sessions.js'
import { subsMergedInto } from '../db/tombstones.js'
import type { AppDeps } from '../deps.js'
import { requireAccessToken } from '../http/bearer.js'
import { noStore } from '../http/no-store.js'
import { EVENT_TYPES, type EventType } from '../events/types.js'

const iso = (seconds: number | null) => (seconds === null ? null : new Date(seconds * 1000).toISOString())

/** Audit rows kept per user in an export (the newest). */
const AUDIT_LIMIT = 10_000

/**
 * `GET /account/export` (Bearer, account audience; PIPL Art. 45): everything minigate holds about the
 * caller as JSON: profile, phone number, WeChat identities by app, logins, the `sub`s merged into the
 * account, the audit events and the security events about it. Never a secret: no session_key, no
 * token, no code. The audit's `ip_hash` is a keyed hash (not the address), shown as stored.
 */
export function mountAccountExport(router: Router, deps: AppDeps): void {
  router.get('/account/export', noStore, requireAccessToken(deps), async function exportAccount(ctx) {
    const user: User = ctx.state.user
    const now = epochSeconds(deps.clock)
    const [identities, sessions, merged] = await Promise.all([listIdentitiesOfUser(deps.db, user.id), listUserSessions(deps.db, user.id), subsMergedInto(deps.db, user.id)])
    const subs = [user.id, ...merged.map((tombstone) => tombstone.id)]
    const audit = (await Promise.all(subs.map((sub) => listAuditEvents(deps.db, { sub, limit: AUDIT_LIMIT })))).flat().sort((a, b) => a.at - b.at || a.id - b.id)
    const events = (await Promise.all(subs.map((sub) => eventsAbout(deps.db, sub)))).flat().sort((a, b) => a.id - b.id)
    ctx.set('Content-Disposition', 'attachment; filename="minigate-account.json"')
    ctx.body = {
      exported_at: iso(now),
      sub: user.id,
      created_at: iso(user.created_at),
      updated_at: iso(user.updated_at),
      unionid: user.unionid,
      profile: { nickname: user.nickname, picture: user.picture },
      phone: user.phone_number === null ? null : { phone_number: user.phone_number, country_code: user.phone_country_code, verified_at: iso(user.phone_verified_at) },
      wechat_identities: identities.map((identity) => ({ appid: identity.appid, openid: identity.openid, created_at: iso(identity.created_at), session_key_updated_at: iso(identity.session_key_updated_at) })),
      logins: sessions.map((session) => ({
        sid: session.id,
        client_id: session.client_id,
        scope: session.scope,
        created_at: iso(session.created_at),
        last_used_at: iso(session.last_used_at),
        expires_at: iso(session.expires_at),
        state: session.revoked_at !== null ? 'ended' : session.expires_at <= now ? 'expired' : 'live',
        ended_at: iso(session.revoked_at),
        ended_because: session.revoked_reason,
      })),
      merged_subs: merged.map((tombstone) => ({ sub: tombstone.id, merged_at: iso(tombstone.ended_at) })),
      audit_events: audit.map((event) => ({ at: iso(event.at), event: event.event, sub: event.sub, client_id: event.client_id, sid: event.sid, actor: event.actor, detail: event.detail, ip_hash: event.ip_hash })),
      security_events: events.map((event) => ({ at: iso(event.at), type: EVENT_TYPES[event.type as EventType] ?? event.type, sub: event.sub, sid: event.sid })),
    }
  })
}
