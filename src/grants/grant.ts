import type { AppDeps } from '../deps.js'
import type { Params } from '../http/body.js'
import type { Logger } from '../log.js'
import type { TokenResponse } from '../tokens/issue.js'

/** What a grant knows of the request beyond its parameters. */
export interface GrantRequest {
  /** Keyed hash of the client IP, for the audit log. */
  ipHash: string
  /** The request's logger: its lines carry the request id. */
  log: Logger
}

/** A grant type of the token endpoint: parameters in, an RFC 6749 §5.1 token response out. */
export type Grant = (params: Params, deps: AppDeps, request: GrantRequest) => Promise<TokenResponse>
