import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { TransactionRunner } from './deps.js'

/** Latency buckets in seconds: from a cached JWKS answer (sub-millisecond) to a WeChat timeout. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/**
 * minigate's Prometheus metrics, in a registry of its own (never prom-client's global one), so that
 * every app a process builds (the tests build many) counts for itself.
 */
export interface Metrics {
  registry: Registry
  /** One observation per HTTP request, labelled by the matched route pattern (never the raw path). */
  httpRequests: Histogram<'method' | 'route' | 'status'>
  logins: Counter<'new_user'>
  refreshes: Counter<'kind'>
  refreshTokenReuses: Counter
  revocations: Counter<'token_type'>
  logouts: Counter
  wechatCalls: Counter<'api' | 'outcome' | 'errcode'>
  wechatCallDuration: Histogram<'api'>
  rateLimited: Counter<'limiter'>
  transactionDuration: Histogram<'outcome'>
  /** Times a `TransactionRunner`: every transaction minigate runs goes through the one `deps.transaction`. */
  timeTransactions(run: TransactionRunner): TransactionRunner
}

export interface MetricsOptions {
  /** Seconds until the next scheduled change of the signing keys, read at each scrape. */
  secondsUntilKeyChange?: () => number
  /** Also collect Node's process metrics (CPU, memory, event-loop lag, GC): only when metrics are served. */
  processMetrics?: boolean
}

/**
 * Creates the metrics of one app.
 *
 * @example const metrics = createMetrics({ secondsUntilKeyChange: () => keys.secondsUntilChange(), processMetrics: true })
 */
export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry()
  const registers = [registry]
  if (options.processMetrics) collectDefaultMetrics({ register: registry, prefix: 'minigate_' })
  const secondsUntilKeyChange = options.secondsUntilKeyChange
  if (secondsUntilKeyChange) {
    new Gauge({
      name: 'minigate_signing_key_next_change_seconds',
      help: 'Seconds until the next scheduled change of the signing keys (a key activating, retiring or leaving the JWKS); +Inf when none is scheduled',
      registers,
      collect() {
        this.set(secondsUntilKeyChange())
      },
    })
  }
  const transactionDuration = new Histogram({
    name: 'minigate_db_transaction_duration_seconds',
    help: 'Time of database transactions, from begin to commit or rollback',
    labelNames: ['outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  })
  return {
    registry,
    httpRequests: new Histogram({
      name: 'minigate_http_request_duration_seconds',
      help: 'HTTP requests by method, matched route pattern and status, with their latency',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    logins: new Counter({ name: 'minigate_logins_total', help: 'Successful wechat-code logins; new_user="true" for a first login', labelNames: ['new_user'] as const, registers }),
    refreshes: new Counter({
      name: 'minigate_refreshes_total',
      help: 'Successful refreshes: kind="rotation", or "grace_replay" for a just-spent token replayed within the grace window',
      labelNames: ['kind'] as const,
      registers,
    }),
    refreshTokenReuses: new Counter({ name: 'minigate_refresh_token_reuse_total', help: 'Spent refresh tokens presented again (each ended its login)', registers }),
    revocations: new Counter({ name: 'minigate_revocations_total', help: 'Revocations at /revoke that ended something live, by token type', labelNames: ['token_type'] as const, registers }),
    logouts: new Counter({ name: 'minigate_logouts_total', help: 'Logins ended at /logout', registers }),
    wechatCalls: new Counter({
      name: 'minigate_wechat_calls_total',
      help: 'WeChat API calls by api and outcome (ok, errcode, timeout, connection_refused, dns, tls, reset, network, http_error, bad_response) and errcode ("0" on success, "" when WeChat gave none)',
      labelNames: ['api', 'outcome', 'errcode'] as const,
      registers,
    }),
    wechatCallDuration: new Histogram({
      name: 'minigate_wechat_call_duration_seconds',
      help: 'Latency of WeChat API calls, whatever their outcome',
      labelNames: ['api'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    rateLimited: new Counter({ name: 'minigate_rate_limited_total', help: 'Requests refused by a rate limit (429), by limiter: ip, client, user, wechat', labelNames: ['limiter'] as const, registers }),
    transactionDuration,
    timeTransactions(run) {
      return async (work) => {
        const started = performance.now()
        try {
          const result = await run(work)
          transactionDuration.observe({ outcome: 'commit' }, (performance.now() - started) / 1000)
          return result
        } catch (error) {
          transactionDuration.observe({ outcome: 'rollback' }, (performance.now() - started) / 1000)
          throw error
        }
      }
    },
  }
}
