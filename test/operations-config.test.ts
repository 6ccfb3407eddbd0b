// The settings of issue 14 (metrics, log format) and the start-up of the metrics listener.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import t from 'tap'
import { ConfigError, hashServiceSecret, loadConfig } from '../src/config.js'
import { createLogger } from '../src/log.js'
import { start, startupFailure } from '../src/main.js'
import { seedKeysDir } from './helpers/keys.js'

t.test('metrics and log settings: defaults, values, refusals', async (t) => {
  const base = loadConfig({})
  t.equal(base.logFormat, 'auto')
  t.equal(base.metricsPort, null, 'no metrics listener unless asked')
  t.equal(base.metricsTokenHash, null, 'no /metrics on the main port unless asked')
  t.equal(base.metricsHost, '127.0.0.1', 'the metrics listener binds HOST by default')
  t.equal(loadConfig({ HOST: '10.0.0.5' }).metricsHost, '10.0.0.5')
  t.equal(loadConfig({ HOST: '0.0.0.0', MINIGATE_METRICS_HOST: '127.0.0.1' }).metricsHost, '127.0.0.1')
  t.equal(loadConfig({ MINIGATE_METRICS_PORT: '9464' }).metricsPort, 9464)
  t.equal(loadConfig({ MINIGATE_METRICS_PORT: '0' }).metricsPort, 0, '0: a free port')
  t.equal(loadConfig({ MINIGATE_LOG_FORMAT: 'JSON' }).logFormat, 'json')
  t.equal(loadConfig({ MINIGATE_LOG_FORMAT: 'pretty' }).logFormat, 'pretty')
  const token = 'a-long-enough-metrics-token'
  t.equal(loadConfig({ MINIGATE_METRICS_TOKEN: token }).metricsTokenHash, hashServiceSecret(token), 'only a hash of the token is kept')
  t.notMatch(JSON.stringify(loadConfig({ MINIGATE_METRICS_TOKEN: token })), token)

  const refused: Array<[Record<string, string>, RegExp]> = [
    [{ MINIGATE_LOG_FORMAT: 'xml' }, /^MINIGATE_LOG_FORMAT must be json, pretty or auto, got "xml"$/],
    [{ MINIGATE_METRICS_PORT: 'abc' }, /^MINIGATE_METRICS_PORT must be a whole number/],
    [{ MINIGATE_METRICS_PORT: '70000' }, /^MINIGATE_METRICS_PORT must be a whole number/],
    [{ PORT: '8080', MINIGATE_METRICS_PORT: '8080' }, /^MINIGATE_METRICS_PORT must differ from PORT \(8080\)$/],
    [{ MINIGATE_METRICS_TOKEN: 'short' }, /^MINIGATE_METRICS_TOKEN must be at least 16 printable characters without spaces$/],
    [{ MINIGATE_METRICS_TOKEN: 'sixteen chars or more with spaces' }, /without spaces/],
  ]
  for (const [env, message] of refused) t.throws(() => loadConfig(env), { name: 'ConfigError', message }, JSON.stringify(env))
})

t.test('a metrics port in use stops the start with one line naming MINIGATE_METRICS_PORT', async (t) => {
  const busy = createServer()
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => busy.close(() => resolve())))
  const port = (busy.address() as AddressInfo).port
  const dir = t.testdir()
  seedKeysDir(join(dir, 'keys'))
  const log = createLogger({ level: 'silent', destination: new Writable({ write: (_chunk, _encoding, callback) => callback() }) })
  const env = { PORT: '0', HOST: '127.0.0.1', MINIGATE_DB: join(dir, 'db', 'minigate.sqlite'), MINIGATE_KEYS_DIR: join(dir, 'keys'), MINIGATE_METRICS_PORT: String(port) }
  const error = await start(env, log).then(
    () => undefined,
    (caught: unknown) => caught,
  )
  t.type(error, ConfigError)
  t.equal(startupFailure(error, env), `port ${port} is in use (MINIGATE_METRICS_PORT)`)
})
