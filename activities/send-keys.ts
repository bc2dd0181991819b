/**
 * Housekeeping of send keys and their secret versions, shared by provisioning, disable, rotation and rollback:
 * revoking keys (one already gone is fine) and destroying secret versions, each but the one to keep.
 */
import { isVendorError } from '../lib/errors';
import { SEND_KEY_LABEL } from '../lib/instance';
import type { ApiKeySummary } from '../vendors/sparkpost';
import type { SecretsApi, SparkPostApi } from './index';

/** Builds the housekeeping helpers from the activities' clients. */
export function createKeyHousekeeping(
  sparkpost: Pick<SparkPostApi, 'listApiKeys' | 'deleteApiKey'>,
  secrets: Pick<SecretsApi, 'listVersions' | 'destroyVersion'>,
) {
  /** Revokes one key; false when an earlier attempt already did. */
  async function deleteKeyIfPresent(subaccountId: number, keyId: string): Promise<boolean> {
    try {
      await sparkpost.deleteApiKey(subaccountId, keyId);
      return true;
    } catch (err) {
      if (isVendorError(err, 'not-found')) return false;
      throw err;
    }
  }

  return {
    deleteKeyIfPresent,

    /** Revokes the subaccount's send keys but `except`; pass `keys` when they were just listed. Returns how many. */
    async revokeSendKeys(
      subaccountId: number,
      opts: { except?: string; keys?: ApiKeySummary[] } = {},
    ): Promise<number> {
      const keys = opts.keys ?? (await sparkpost.listApiKeys(subaccountId));
      let revoked = 0;
      for (const k of keys) {
        if (k.label !== SEND_KEY_LABEL || k.id === opts.except) continue;
        if (await deleteKeyIfPresent(subaccountId, k.id)) revoked++;
      }
      return revoked;
    },

    /** Destroys the secret's enabled versions but `except`. Returns how many. */
    async destroyEnabledVersions(secretName: string, except?: string): Promise<number> {
      let destroyed = 0;
      for (const v of await secrets.listVersions(secretName, { enabledOnly: true })) {
        if (v.name === except) continue;
        await secrets.destroyVersion(v.name);
        destroyed++;
      }
      return destroyed;
    },
  };
}
