import type { Db } from '../db/connection.js'
import { listIdentityKeysAfter, updateSessionKeySealed } from '../db/identities.js'
import { listSigningKeys, storePrivateKey } from '../db/signing-keys.js'
import type { SecretBox } from './data-key.js'
import { sealedKeyBinding } from './key-ring.js'

/** Identities re-sealed per transaction. */
const BATCH = 500

/**
 * Re-seals every secret stored under an older data key with the current one (the first configured):
 * the step of a data-key rotation between giving every instance the new key and removing the old one.
 * Safe to run while servers run, and to run again.
 */
export async function rewrapSecrets(db: Db, box: SecretBox): Promise<{ signingKeys: number; sessionKeys: number }> {
  let signingKeys = 0
  for (const row of await listSigningKeys(db)) {
    if (row.private_key === null || !box.isStale(row.private_key)) continue
    const binding = sealedKeyBinding(row.kid)
    await storePrivateKey(db, row.kid, box.seal(box.open(row.private_key, binding), binding))
    signingKeys += 1
  }
  let sessionKeys = 0
  for (let after = 0; ; ) {
    const batch = await listIdentityKeysAfter(db, after, BATCH)
    if (batch.length === 0) break
    await db.transaction().execute(async (trx) => {
      for (const identity of batch) {
        if (!box.isStale(identity.session_key_enc)) continue
        const binding = `${identity.appid}:${identity.openid}`
        // Only if unchanged: a login may have stored a newer session_key meanwhile.
        if (await updateSessionKeySealed(trx, identity.id, identity.session_key_enc, box.seal(box.open(identity.session_key_enc, binding), binding))) sessionKeys += 1
      }
    })
    after = (batch[batch.length - 1] as { id: number }).id
  }
  return { signingKeys, sessionKeys }
}
