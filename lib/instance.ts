/**
 * Names derived from an instance slug. Everything managed-smtp creates for an instance is named here, so the
 * workflow, the activities, the CLI and the invariant checks can never disagree (see shared INTERFACE.md).
 * Pure functions only: this module is imported by workflow code.
 */

/** An instance slug, as INTERFACE.md defines it. */
export const INSTANCE_NAME_PATTERN = /^[a-z][a-z0-9-]{1,62}$/;

/** A GCP project id: 6 to 30 lowercase letters, digits or hyphens, starting with a letter, not ending in a hyphen. */
export const GCP_PROJECT_PATTERN = /^[a-z][a-z0-9-]{4,28}[a-z0-9]$/;

/** A Secret Manager version name such as `projects/p/secrets/s/versions/latest`. */
export const SECRET_VERSION_PATTERN = /^projects\/[^/]+\/secrets\/[A-Za-z0-9_-]{1,255}\/versions\/(latest|[0-9]+)$/;

/** Label of the per-instance SparkPost API key. */
export const SEND_KEY_LABEL = 'send_key';

/** The only grant the per-instance key carries. */
export const SEND_KEY_GRANTS: readonly string[] = ['smtp/inject'];

/** Whether a key's grants are exactly the send key's (order does not matter). */
export function hasSendKeyGrants(grants: readonly string[]): boolean {
  return (
    grants.length === SEND_KEY_GRANTS.length && [...grants].sort().join(',') === [...SEND_KEY_GRANTS].sort().join(',')
  );
}

/** The username SparkPost's SMTP relay expects; the password is the API key. */
export const SMTP_USERNAME = 'SMTP_Injection';

/** Secret id (inside the instance's project) that holds the send key. */
export const SEND_KEY_SECRET_ID = 'managed-smtp-send-key';

/** Labels put on the send-key secret. */
export function sendKeySecretLabels(instance: string): Record<string, string> {
  return { 'managed-by': 'managed-smtp', instance };
}

/** Returns why `name` is not a valid instance slug, or null when it is. */
export function instanceNameProblem(name: string): string | null {
  if (INSTANCE_NAME_PATTERN.test(name)) return null;
  return `must match ${INSTANCE_NAME_PATTERN.source} (lowercase letter first, then 1-62 lowercase letters, digits or hyphens)`;
}

/** Returns why `project` is not a valid GCP project id, or null when it is. */
export function gcpProjectProblem(project: string): string | null {
  if (GCP_PROJECT_PATTERN.test(project)) return null;
  return 'must be a GCP project id: 6-30 lowercase letters, digits or hyphens, starting with a letter';
}

/** The Temporal workflow id of an instance's entity workflow. */
export function workflowIdFor(instance: string): string {
  return `managed-smtp/${instance}`;
}

/** The instance slug from a workflow id, or null for ids this service does not own. */
export function instanceFromWorkflowId(workflowId: string): string | null {
  const m = /^managed-smtp\/(.+)$/.exec(workflowId);
  return m ? m[1] : null;
}

/** Full resource name of the send-key secret in the instance's project. */
export function sendKeySecretName(gcpProject: string): string {
  return `projects/${gcpProject}/secrets/${SEND_KEY_SECRET_ID}`;
}

/** Default Secret Manager version that holds the instance's Sourcegraph admin token. */
export function defaultAdminTokenSecret(gcpProject: string): string {
  return `projects/${gcpProject}/secrets/sourcegraph-admin-token/versions/latest`;
}

/** The managed sender address of an instance. */
export function senderAddress(instance: string, senderDomain: string): string {
  return `noreply+${instance}@${senderDomain}`;
}
