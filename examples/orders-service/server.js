#!/usr/bin/env node
// npm run example:service: the orders service against a running minigate.
//   MINIGATE_ISSUER    minigate's issuer (default http://localhost:3000, what `npm start` runs)
//   MINIGATE_AUDIENCE  the aud of access tokens (default minigate-api)
//   ORDERS_SERVICE_ID / ORDERS_SERVICE_SECRET  this service's credentials in MINIGATE_SERVICES
//                      (default dev-service / dev-service-secret, which development mode registers)
//   ORDERS_PORT        port to listen on (default 4000)
import { startOrdersService } from './app.js'

const env = process.env
const issuer = env.MINIGATE_ISSUER ?? 'http://localhost:3000'
const service = await startOrdersService({
  issuer,
  audience: env.MINIGATE_AUDIENCE ?? 'minigate-api',
  introspection: { clientId: env.ORDERS_SERVICE_ID ?? 'dev-service', clientSecret: env.ORDERS_SERVICE_SECRET ?? 'dev-service-secret' },
  port: Number(env.ORDERS_PORT ?? 4000),
})
console.log(`orders service listening on ${service.url}, trusting access tokens of ${issuer}`)
console.log(`  curl -s ${service.url}/orders -H "Authorization: Bearer $ACCESS"`)

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    void service.close().then(() => process.exit(0))
  })
}
