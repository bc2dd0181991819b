/**
 * Writes a GDPR request's recipient list into its own secret in the instance's project; shared by smtpctl (which
 * files requests with the documented environment alone) and the offboarding activities.
 */
import { gdprSecretContext, gdprSecretId, gdprSecretLabels } from '../contract/gdpr';
import type { SecretStore } from '../vendors/secret-manager';
import { gdprSecretVersions, newHmacKey, type GdprSecretPayload } from './sealed';

type GdprSecretsApi = Pick<SecretStore, 'ensureSecret' | 'addVersion' | 'listVersions'>;

/** Writes a new request secret (labels managed-by, instance, purpose=gdpr) and returns its name. */
export async function writeGdprSecret(
  secrets: GdprSecretsApi,
  q: { gcpProject: string; instance: string; requestId: string; recipients: readonly string[] | null },
): Promise<string> {
  const { name } = await secrets.ensureSecret(q.gcpProject, gdprSecretId(q.requestId), gdprSecretLabels(q.instance));
  // A retry after a lost response finds the versions already there: one write per request.
  if ((await secrets.listVersions(name)).some((v) => v.state === 'ENABLED')) return name;
  const payload: GdprSecretPayload = {
    v: 1,
    stage: 'recipients',
    context: gdprSecretContext(q.instance, q.requestId),
    hmacKey: newHmacKey(),
    recipients: q.recipients === null ? null : [...q.recipients],
  };
  for (const part of gdprSecretVersions(payload)) await secrets.addVersion(name, part);
  return name;
}
