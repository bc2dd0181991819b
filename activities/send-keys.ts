/**
 * Housekeeping of send keys and their secret versions, shared by provisioning, disable, rotation and rollback:
 * revoking keys (one already gone is fine) and destroying secret versions, each but the one to keep.
 */
import { ApplicationFailure } from '@temporalio/common';
import { isVendorError } from '../lib/errors';
import { SEND_KEY_LABEL, sendKeySecretName } from '../lib/instance';
import { sanitizeText } from '../lib/sanitize';
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

/** ApplicationFailure type of a send-key secret that belongs to another instance (never touched). */
export const FOREIGN_SEND_KEY_SECRET = 'ForeignSendKeySecretError';

/**
 * Whose the project's send-key secret is: 'absent', 'own' (labelled `instance=<instance>`), or the other owner's name
 * (another instance's label, or `(unlabelled)` for a secret managed-smtp did not make).
 */
export async function sendKeySecretOwner(
  secrets: Pick<SecretsApi, 'getSecretLabels'>,
  instance: string,
  gcpProject: string,
): Promise<'absent' | 'own' | { owner: string }> {
  const labels = await secrets.getSecretLabels(sendKeySecretName(gcpProject));
  if (labels === null) return 'absent';
  if (labels.instance === instance) return 'own';
  return { owner: labels.instance ? sanitizeText(labels.instance, 63) : '(unlabelled)' };
}

/**
 * Refuses (non-retryably, naming both instances) to use a send-key secret that another instance of the same project
 * owns: enabling would destroy its live versions. Called at the start of ensureSendKey.
 */
export async function refuseForeignSendKeySecret(
  secrets: Pick<SecretsApi, 'getSecretLabels'>,
  instance: string,
  gcpProject: string,
): Promise<void> {
  const owner = await sendKeySecretOwner(secrets, instance, gcpProject);
  if (typeof owner === 'object') {
    throw ApplicationFailure.nonRetryable(
      `the send-key secret ${sendKeySecretName(gcpProject)} belongs to instance ${owner.owner}, not ${instance}: ` +
        `managed-smtp leaves it alone; give ${instance} a GCP project of its own (--gcp-project)`,
      FOREIGN_SEND_KEY_SECRET,
    );
  }
}
