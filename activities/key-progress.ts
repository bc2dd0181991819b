/**
 * Minting and storing a send key so that a failed call leaves no spare live key behind for long (issue 15). The full
 * key exists only in this attempt's memory between SparkPost's answer and Secret Manager's write, so a key whose store
 * failed cannot be reused later: it is revoked at once, in the same attempt, unless a read shows the store did land.
 * A mint whose answer was lost leaves a key nobody can use: it is found by listing and revoked at once too. Neither
 * cleanup retries a write; a cleanup that fails is left to the next attempt, which the heartbeat details point at.
 */
import { isVendorError, VendorError } from '../lib/errors';
import { SEND_KEY_LABEL } from '../lib/instance';
import type { ApiKeySummary } from '../vendors/sparkpost';
import type { SecretsApi, SparkPostApi } from './index';
import { previousProgress, recordProgress } from './progress';

/** Heartbeat details of ensureSendKey: ids of what the attempt did, never the key. */
export interface SendKeyProgress {
  /** The send-key secret exists (an attempt created or found it): later attempts need not ensure it again. */
  secretReady?: boolean;
  /** A key this attempt minted. */
  mintedKeyId?: string;
  /** The secret version that holds it, once stored. */
  storedVersion?: string;
  /** The minted key was revoked again because its store failed. */
  revoked?: boolean;
}

/** A freshly minted key, as SparkPost returns it once. */
export interface MintedKey {
  id: string;
  key: string;
}

/** Whether a failed write may still have been applied (its answer lost): not a refusal that came with a status. */
function mayHaveApplied(err: unknown): boolean {
  if (!(err instanceof VendorError)) return true;
  return (err.kind === 'unavailable' && err.status === undefined) || err.kind === 'malformed';
}

/** Builds the helpers from the activities' clients (already heartbeating, with retried reads). */
export function createKeyProgress(
  sparkpost: Pick<SparkPostApi, 'listApiKeys' | 'deleteApiKey'>,
  secrets: Pick<SecretsApi, 'addVersion' | 'accessIfExists'>,
) {
  async function revokeQuietly(subaccountId: number, keyId: string): Promise<boolean> {
    try {
      await sparkpost.deleteApiKey(subaccountId, keyId);
      return true;
    } catch (err) {
      return isVendorError(err, 'not-found');
    }
  }

  return {
    /**
     * Whether an earlier attempt already made sure the secret exists (then this attempt skips ensureSecret, two calls
     * of which either may fail). Passes the fact on to the next attempt.
     */
    secretReadyEarlier(): boolean {
      const ready = previousProgress<SendKeyProgress>().secretReady === true;
      if (ready) recordProgress<SendKeyProgress>({ secretReady: true });
      return ready;
    },

    /** Records that the secret exists. */
    secretReady(): void {
      recordProgress<SendKeyProgress>({ secretReady: true });
    },

    /**
     * The send key an earlier attempt minted but did not store, if it is still among `keys`: revoke it before minting
     * another (the caller found no live key matching the secret, so nothing can be using it).
     */
    unstoredKeyOfEarlierAttempt(keys: readonly ApiKeySummary[]): string | null {
      const prev = previousProgress<SendKeyProgress>();
      if (!prev.mintedKeyId || prev.storedVersion || prev.revoked) return null;
      return keys.some((k) => k.id === prev.mintedKeyId) ? prev.mintedKeyId : null;
    },

    /** Revokes a key, reporting whether it is gone; a failure is left to a later attempt. */
    revokeQuietly,

    /**
     * Mints a key with `mint` and stores it as a new version of `secretName`. `before` are the send keys listed
     * before minting. On failure the minted key is revoked at once (best effort) and the error thrown.
     */
    async mintAndStore(input: {
      subaccountId: number;
      secretName: string;
      before: readonly ApiKeySummary[];
      mint: () => Promise<MintedKey>;
    }): Promise<{ keyId: string; secretVersion: string }> {
      let minted: MintedKey;
      try {
        minted = await input.mint();
      } catch (err) {
        if (mayHaveApplied(err)) {
          // The key may exist with its only copy lost: a send key that was not there before is that key.
          const known = new Set(input.before.map((k) => k.id));
          try {
            for (const k of await sparkpost.listApiKeys(input.subaccountId)) {
              if (k.label === SEND_KEY_LABEL && !known.has(k.id)) await revokeQuietly(input.subaccountId, k.id);
            }
          } catch {
            // The next attempt lists the keys again and revokes what does not match the secret.
          }
        }
        throw err;
      }
      recordProgress<SendKeyProgress>({ mintedKeyId: minted.id });
      let secretVersion: string;
      try {
        secretVersion = await secrets.addVersion(input.secretName, minted.key);
      } catch (err) {
        // A store whose answer was lost may have landed: the latest version then holds the key.
        const latest = await secrets.accessIfExists(`${input.secretName}/versions/latest`).catch(() => null);
        if (!latest || latest.data !== minted.key) {
          const revoked = await revokeQuietly(input.subaccountId, minted.id);
          recordProgress<SendKeyProgress>({ mintedKeyId: minted.id, revoked });
          throw err;
        }
        secretVersion = latest.name;
      }
      recordProgress<SendKeyProgress>({ mintedKeyId: minted.id, storedVersion: secretVersion });
      return { keyId: minted.id, secretVersion };
    },
  };
}
