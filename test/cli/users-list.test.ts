import { decodeJwt } from 'jose'
import t from 'tap'
import { epochSeconds } from '../../src/clock.js'
import { setUserPhone, updateProfile } from '../../src/db/users.js'
import { displayWidth } from '../../src/cli/table.js'
import { startTestApp, type TestApp } from '../helpers/app.js'
import { cli } from '../helpers/cli.js'

type Listed = { sub: string; nickname: string | null; phone_number: string | null; unionid: string | null; identities: Array<{ appid: string; openid: string }>; created_at: number; disabled_at: number | null }

const subOf = (token: string) => decodeJwt(token).sub as string

async function list(app: TestApp, ...args: string[]): Promise<Listed[]> {
  const out = await cli(app, 'users', 'list', ...args, '--json')
  if (out.code !== 0) throw new Error(`users list failed: ${out.stderr}`)
  return JSON.parse(out.stdout) as Listed[]
}

/** Four users a second apart: a nickname each, a phone and a unionid on some. */
async function people(app: TestApp): Promise<Record<string, string>> {
  const subs: Record<string, string> = {}
  const add = async (name: string, openid: string, nickname: string, extra: { unionid?: string; phone?: string } = {}) => {
    const login = await app.login({ openid, ...(extra.unionid ? { unionid: extra.unionid } : {}) })
    const sub = subOf(login.access_token)
    await updateProfile(app.deps.db, sub, { nickname }, epochSeconds(app.clock))
    if (extra.phone) await setUserPhone(app.deps.db, sub, { number: extra.phone, countryCode: '86' }, epochSeconds(app.clock))
    subs[name] = sub
    app.clock.advance(1)
  }
  await add('ming', 'oMing', '小明', { phone: '+8613800138000' })
  await add('alice', 'oAlice', 'Alice Wong', { unionid: 'uAliceUnion' })
  await add('percent', 'oPercent', '100% real')
  await add('under', 'oUnder_score', 'snake_case')
  return subs
}

t.test('users list: newest first, every field, text and --json', async (t) => {
  const app = await startTestApp(t)
  const appid = app.config.apps[0]?.appid as string
  const subs = await people(app)
  const all = await list(app)
  t.same(all.map((user) => user.sub), [subs.under, subs.percent, subs.alice, subs.ming], 'newest first')
  t.match(all[3], { nickname: '小明', phone_number: '+8613800138000', unionid: null, identities: [{ appid, openid: 'oMing' }], disabled_at: null })
  t.match(all[2], { nickname: 'Alice Wong', unionid: 'uAliceUnion' })

  t.same((await list(app, '--limit', '2')).map((user) => user.sub), [subs.under, subs.percent], '--limit N: the N newest')
  t.same((await list(app, '--limit=1')).map((user) => user.sub), [subs.under], '--limit=N')

  t.equal((await cli(app, 'users', 'disable', subs.alice as string)).code, 0)
  const text = await cli(app, 'users', 'list')
  t.equal(text.code, 0)
  t.equal(text.stderr, '')
  const lines = text.stdout.trimEnd().split('\n')
  t.equal(lines.length, 5, 'a header and a line per user')
  t.match(lines[0], /^SUB\s+CREATED\s+STATE\s+NICKNAME\s+PHONE\s+UNIONID\s+OPENID$/)
  t.match(lines[3], /disabled\s+Alice Wong\s+-\s+uAliceUnion\s+oAlice$/)
  // Every column starts at the same display column on every line, after the double-width 小明 too.
  const starts = (line: string) => {
    const columns: number[] = []
    for (const match of line.matchAll(/(?:^|\s{2,})(\S)/g)) columns.push(displayWidth(line.slice(0, (match.index as number) + match[0].length - 1)))
    return columns
  }
  t.equal(starts(lines[0] as string).length, 7)
  for (const line of lines.slice(1)) t.same(starts(line), starts(lines[0] as string), `aligned: ${line}`)
})

t.test('users list --search: nickname, openid, phone, unionid; case-insensitive; LIKE wildcards taken literally', async (t) => {
  const app = await startTestApp(t)
  const subs = await people(app)
  const found = async (text: string) => (await list(app, '--search', text)).map((user) => user.sub)
  t.same(await found('小明'), [subs.ming], 'by a CJK nickname')
  t.same(await found('alice wong'), [subs.alice], 'by nickname, ignoring case')
  t.same(await found('OMING'), [subs.ming], 'by openid, ignoring case')
  t.same(await found('13800138000'), [subs.ming], 'by part of the phone number')
  t.same(await found('ualiceunion'), [subs.alice], 'by unionid')
  t.same(await found('o'), [subs.under, subs.percent, subs.alice, subs.ming], 'every openid has an o: all, newest first')
  t.same(await found('%'), [subs.percent], '% matches only a %')
  t.same(await found('_'), [subs.under], '_ matches only an _ (openid oUnder_score and nickname snake_case are one user)')
  t.same(await found('\\'), [], 'a backslash matches nothing here')
  t.same(await found('nobody'), [])
  const none = await cli(app, 'users', 'list', '--search', 'nobody')
  t.equal(none.code, 0)
  t.equal(none.stdout, 'no user matches "nobody"\n')
  t.same((await list(app, '--search=snake')).map((user) => user.sub), [subs.under], '--search=text')
})

t.test('users list: an empty database, and wrong usage', async (t) => {
  const app = await startTestApp(t)
  t.equal((await cli(app, 'users', 'list')).stdout, 'no users\n')
  for (const [argv, message] of [
    [['users', 'list', '--limit', '0'], /--limit needs a number from 1 to 10000/],
    [['users', 'list', '--limit', 'ten'], /--limit needs a number/],
    [['users', 'list', '--limit', '10001'], /--limit needs a number/],
    [['users', 'list', '--search'], /--search needs a text/],
    [['users', 'list', 'extra'], /unexpected arguments: extra/],
    [['users', 'show', 'x', '--search', 'y'], /--search and --limit go with users list/],
    [['keys', 'list', '--limit', '3'], /--limit with users list and audit/],
  ] as const) {
    const out = await cli(app, ...argv)
    t.equal(out.code, 2, `${argv.join(' ')}: exit 2`)
    t.match(out.stderr, message)
  }
})
