/**
 * Types shared by the workflow, the activities and the client. Pure types and constants: imported by workflow code.
 */
import type { EmailSettings } from './site-config';

/** The lifecycle state of an instance's managed SMTP (INTERFACE.md). */
export type InstanceState = 'provisioning' | 'active' | 'disabling' | 'disabled' | 'failed' | 'customer-managed';

/** Every state, for validation and listings. */
export const INSTANCE_STATES: readonly InstanceState[] = [
  'provisioning',
  'active',
  'disabling',
  'disabled',
  'failed',
  'customer-managed',
];

/** The step an instance is in while provisioning or disabling. */
export type Step =
  | 'inspect-site-config'
  | 'ensure-subaccount'
  | 'store-send-key'
  | 'patch-site-config'
  | 'send-test-email'
  | 'restore-site-config'
  | 'revoke-send-key'
  | 'delete-secret'
  | 'release-subaccount';

/** What an operator asked enable to provision. Holds no secret: only where secrets live. */
export interface EnableSpec {
  /** Base URL of the Sourcegraph instance. */
  sourcegraphUrl: string;
  /** GCP project that holds the instance's secrets. */
  gcpProject: string;
  /** Secret Manager version holding a site-admin access token for the instance. */
  adminTokenSecret: string;
  /** `email.senderName` to set, when given. */
  senderName?: string;
  /** Replace the instance's own SMTP settings. */
  force: boolean;
}

/** The enable signal's payload. */
export interface EnableRequest {
  /** Unique per request, so `--wait` can tell when this request (not an earlier one) finished. */
  requestId: string;
  spec: EnableSpec;
}

/** The disable signal's payload. */
export interface DisableRequest {
  requestId: string;
  reason?: string;
}

/** The outcome of the last test email. */
export interface TestEmailRecord {
  at: string;
  ok: boolean;
  message: string;
}

/** One request the workflow received, newest last. */
export interface RequestRecord {
  id: string;
  kind: 'enable' | 'disable';
  receivedAt: string;
  /** Unset while queued or running. */
  finishedAt?: string;
  /** The state the request left the instance in, or why it was rejected. */
  outcome?: string;
}

/** What `status` returns (a superset of INTERFACE.md's `status --json`). */
export interface InstanceStatus {
  instance: string;
  state: InstanceState;
  step: Step | null;
  subaccountId: number | null;
  /** SparkPost id of the live send key (not secret: only the key itself is). */
  keyId: string | null;
  secretVersion: string | null;
  sender: string | null;
  lastTestEmail: TestEmailRecord | null;
  error: string | null;
  /** Things an operator should know that are not errors. */
  warnings: string[];
  spec: EnableSpec | null;
  /** The email settings enable replaced and disable restores (redacted, as Sourcegraph returns them). */
  previousSettings: EmailSettings | null;
  updatedAt: string;
  /** The last requests, oldest first (bounded). */
  requests: RequestRecord[];
}
