import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import t from 'tap'
import { startKitApp } from '../helpers/kit.js'

// `npm run example:service` is `node examples/orders-service/server.js`: run it the same way.
const SERVER = join(dirname(createRequire(import.meta.url).resolve('@minigate/example-orders-service/package.json')), 'server.js')

t.test('npm run example:service: the orders service protected by @minigate/verify', async (t) => {
  const app = await startKitApp(t)
  const child = spawn(process.execPath, [SERVER], {
    env: { PATH: process.env.PATH ?? '', MINIGATE_ISSUER: app.url, ORDERS_PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  const firstLine = await new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once('line', resolve))
  const url = /listening on (http:\/\/\S+),/.exec(firstLine)?.[1] as string
  t.match(firstLine, `trusting access tokens of ${app.url}`)

  const none = await fetch(`${url}/orders`)
  t.equal(none.status, 401)
  t.equal(none.headers.get('www-authenticate'), 'Bearer')

  const phone = await app.login({ openid: 'oOrdersService', scope: 'profile phone' })
  const bearer = { authorization: `Bearer ${phone.access_token}`, 'content-type': 'application/json' }
  t.same(await (await fetch(`${url}/orders`, { headers: bearer })).json(), [])
  const bad = await fetch(`${url}/orders`, { method: 'POST', headers: bearer, body: JSON.stringify({ item: '' }) })
  t.equal(bad.status, 400)
  const placed = await fetch(`${url}/orders`, { method: 'POST', headers: bearer, body: JSON.stringify({ item: 'oolong' }) })
  t.equal(placed.status, 201)
  t.same(await placed.json(), { id: 1, item: 'oolong', status: 'placed' })
  const missing = await fetch(`${url}/orders/99/pay`, { method: 'POST', headers: bearer })
  t.equal(missing.status, 404)
  const paid = await fetch(`${url}/orders/1/pay`, { method: 'POST', headers: bearer })
  t.same(await paid.json(), { id: 1, item: 'oolong', status: 'paid' })

  const guest = await app.login({ openid: 'oOrdersGuest' })
  const refused = await fetch(`${url}/orders`, { method: 'POST', headers: { ...bearer, authorization: `Bearer ${guest.access_token}` }, body: '{"item":"x"}' })
  t.equal(refused.status, 403, 'POST /orders needs scope phone')

  child.kill('SIGTERM')
  t.equal(await exited, 0, 'SIGTERM stops it cleanly')
})
