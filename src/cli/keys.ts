import { epochSeconds } from '../clock.js'
import { activateKey, addKey, KeyOperationRefused, listKeys, retireKey, rotateKeys } from '../keys/rotation.js'
import { rewrapSecrets } from '../keys/rewrap.js'
import { CliError, UsageError, when, type CliContext } from './context.js'
import { table } from './table.js'

export const keysHelp = `minigate keys <command>

  list                      every key: kid, state, created, activation, retirement, safe to drop
  add                       generate a new RSA-2048 key as next (published, not signing)
  activate <kid> [--force]  make a next key the signing key; the current one retires
                            (refused until the key has been published for the JWKS cache time)
  retire <kid> [--force]    withdraw a key from the JWKS for good (refused while tokens it
                            signed may be unexpired; --force for a compromised key)
  rotate                    add a key, activate it once verifiers' caches have it, retire the old one
  rewrap                    re-seal the stored signing keys and session_keys with the first data key
                            (a data-key rotation: see README "Keys and secrets")

Options: --json (machine-readable output), --help. A running server picks changes up within seconds.`

async function refusedAsCliError<T>(work: Promise<T>): Promise<T> {
  try {
    return await work
  } catch (error) {
    if (error instanceof KeyOperationRefused) throw new CliError(error.message)
    throw error
  }
}

export async function keysCommand(ctx: CliContext, args: string[], force: boolean): Promise<void> {
  const [command, kid, ...extra] = args
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`)
  const needKid = (): string => {
    if (!kid) throw new UsageError(`keys ${command} needs a kid (see minigate keys list)`)
    return kid
  }
  switch (command) {
    case 'list': {
      const keys = await listKeys(ctx.admin())
      const rows = keys.map((key) => [key.kid, key.state, when(key.created_at), when(key.activates_at), when(key.retires_at), when(key.safe_to_drop_at)])
      ctx.print(keys, keys.length ? table([['KID', 'STATE', 'CREATED', 'ACTIVATES', 'RETIRES', 'SAFE TO DROP'], ...rows]).join('\n') : 'no keys')
      return
    }
    case 'add': {
      const key = await addKey(ctx.admin())
      ctx.print(key, `added ${key.kid} (next: published now, not signing; activate after ${when(key.created_at + ctx.admin().timing.publishDelay)})`)
      return
    }
    case 'activate': {
      const key = await refusedAsCliError(activateKey(ctx.admin(), needKid(), { force }))
      ctx.print(key, `${key.kid} now signs new tokens`)
      return
    }
    case 'retire': {
      const key = await refusedAsCliError(retireKey(ctx.admin(), needKid(), { force }))
      ctx.print(key, `${key.kid} withdrawn from the JWKS`)
      return
    }
    case 'rotate': {
      if (kid) throw new UsageError('keys rotate takes no kid')
      const rotation = await refusedAsCliError(rotateKeys(ctx.admin()))
      const now = epochSeconds(ctx.io.clock)
      ctx.print(
        rotation,
        `added ${rotation.added.kid}; it signs from ${when(rotation.activatesAt)} (in ${rotation.activatesAt - now} s)` +
          (rotation.retiring.length ? `; then ${rotation.retiring.join(', ')} retires and stays published until its tokens have expired` : ''),
      )
      return
    }
    case 'rewrap': {
      if (kid) throw new UsageError('keys rewrap takes no kid')
      const admin = ctx.admin()
      const counts = await rewrapSecrets(admin.db, admin.secretBox)
      ctx.print(counts, `re-sealed ${counts.signingKeys} signing key(s) and ${counts.sessionKeys} session_key(s) with the current data key`)
      return
    }
    default:
      throw new UsageError(command ? `unknown keys command: ${command}` : 'keys needs a command')
  }
}
