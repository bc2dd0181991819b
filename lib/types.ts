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
  | 'release-subaccount'
  | 'mint-new-key'
  | 'retire-old-key'
  | 'restore-old-key'
  | 'switch-sender'
  | 'restore-sender'
  | 'delete-sending-domain'
  | 'assign-ip-pool';

/** Steps of the sending-domain workflow (`managed-smtp-domain/<instance>`), shown in its ManagedSmtpStep. */
export type DomainStep = 'create-sending-domain' | 'wait-domain-verification' | 'delete-sending-domain';

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
  /** Move a provisioned instance to another URL or project (restores the old site, deletes the old secret). */
  move?: boolean;
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
  kind: 'enable' | 'disable' | 'rotate' | 'sending-domain' | 'ip-pool' | 'check' | 'repair';
  receivedAt: string;
  /** Unset while queued or running. */
  finishedAt?: string;
  /** The state the request left the instance in, or why it was rejected. */
  outcome?: string;
}

/** Attempts after which a retrying step counts as stuck. */
export const STUCK_AFTER_ATTEMPTS = 3;

/** An activity telling its workflow it is retrying: what and how often, never why in detail (no secrets). */
export interface StuckReport {
  activity: string;
  attempt: number;
  /** When the report was sent (the step has been failing since before then). */
  at: string;
}

/** One result of the invariant check. */
export interface Finding {
  /** What was checked: subaccount, compliance, send-key, key-grants, secret, secret-matches-key, site-config. */
  check: string;
  ok: boolean;
  message: string;
  /** Whether re-running provisioning (or disable) repairs it; false for what only a human or SparkPost can fix. */
  repairable: boolean;
}

/** The result of the `check` update. */
export interface CheckResult {
  instance: string;
  state: InstanceState;
  at: string;
  findings: Finding[];
  /** Set when --enforce queued a repair: wait for this request. */
  repairRequestId: string | null;
}

/** The outcome of the last key rotation. */
export interface RotationRecord {
  requestId: string;
  at: string;
  ok: boolean;
  message: string;
}

/** The outcome of the last sending-domain or IP-pool change (same shape as a rotation record). */
export type OperationRecord = RotationRecord;

/** A DNS record the customer must publish for a sending domain to verify. Public data, no secret. */
export interface DnsRecord {
  type: 'TXT' | 'CNAME';
  /** Fully qualified name, e.g. `scph0125._domainkey.mail.acme.com`. */
  name: string;
  value: string;
  /** What the record is for. */
  purpose: string;
}

/**
 * Where a custom sending domain is: `pending-verification` (created at SparkPost, DNS records not verified yet, the
 * sender is still on the shared domain), `active` (verified; the sender is `noreply+<instance>@<domain>` whenever
 * the instance is provisioned), `removing` (the sender went back, or is going back, to the shared domain).
 */
export type SendingDomainState = 'pending-verification' | 'active' | 'removing';

/** The instance's custom sending domain. */
export interface SendingDomainInfo {
  domain: string;
  state: SendingDomainState;
  dnsRecords: DnsRecord[];
  requestedAt: string;
  verifiedAt?: string;
  /** The request that added it (the `sending-domain add` request id). */
  requestId: string;
  /** The workflow that waits for verification, while one does. */
  workflowId?: string;
}

/** The `sendingDomain` update's payload: add a domain (starts the verification workflow) or remove it. */
export type SendingDomainRequest =
  | {
      requestId: string;
      action: 'add';
      domain: string;
      /** Seconds between verification checks (default 6 h). */
      recheckSeconds?: number;
      /** Give up after this many seconds unverified (default 13 days). */
      maxWaitSeconds?: number;
    }
  | { requestId: string; action: 'remove' };

/** What the `sendingDomain` update returns: the request to wait for, and the verification workflow if one runs. */
export interface SendingDomainAccepted {
  requestId: string;
  workflowId?: string;
  /** What the update did: started verification, queued a removal, or cancelled a pending verification. */
  accepted: 'verification-started' | 'removal-queued' | 'verification-cancelled';
}

/** The `ipPool` update's payload: assign `pool` (creating it when `create`), or unassign with `pool: null`. */
export interface IpPoolRequest {
  requestId: string;
  pool: string | null;
  create: boolean;
}

/** Lowercase hostname of at least two labels, as SparkPost accepts for sending domains. */
export const SENDING_DOMAIN_PATTERN = /^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;

/** An IP pool id as SparkPost derives it from a name: at most 20 of `[a-z0-9_]`. */
export const IP_POOL_PATTERN = /^[a-z0-9_]{1,20}$/;

/** A bounce-rate alert raised (or cleared) by the bounce alert workflow. */
export interface DeliverabilityAlert {
  active: boolean;
  /** When the alert workflow measured it. */
  at: string;
  /** Start of the measured window. */
  from: string;
  accepted: number;
  bounces: number;
  /** bounces / (accepted or targeted), 0..1. */
  bounceRate: number;
  threshold: number;
}

/** One GDPR deletion in an instance's audit trail: counts and outcome only, never addresses. */
export interface GdprAuditRecord {
  requestId: string;
  at: string;
  /** How the recipients were chosen. */
  scope: 'listed' | 'all-recipients';
  recipients: number;
  /** Data-privacy requests filed (at most 1000 recipients each). */
  batches: number;
  optOut: boolean;
  outcome: 'filed' | 'failed';
  error?: string;
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
  /** The last invariant check (findings that were not ok). */
  lastCheck?: { at: string; problems: Finding[]; repairRequestId: string | null } | null;
  /** The last key rotation. */
  lastRotation?: RotationRecord | null;
  /** Set while the current step's activity keeps retrying (reported by the activity from its third attempt). */
  retrying?: StuckReport | null;
  /** The bounce-rate alert in force, if any. */
  deliverabilityAlert?: DeliverabilityAlert | null;
  /** GDPR deletions filed for this instance, oldest first (bounded). */
  gdprAudit?: GdprAuditRecord[];
  /** The custom sending domain, if one was added (absent on instances from before sending domains existed). */
  sendingDomain?: SendingDomainInfo | null;
  /**
   * The dedicated IP pool assigned to the subaccount: a pool id, null when explicitly none (check enforces that the
   * subaccount has none), absent when managed-smtp never managed it (check leaves the subaccount's pool alone).
   */
  ipPool?: string | null;
  /** The last sending-domain change (add, verification, switch, removal, cancellation). */
  lastSendingDomainChange?: OperationRecord | null;
  /** The last IP pool assignment or unassignment. */
  lastIpPoolChange?: OperationRecord | null;
  /** The operator's last word (enable or disable): what a repair of a `failed` instance goes back to. */
  intent?: 'enable' | 'disable';
  /** Bumped by every operator request; a repair carries the generation its check saw and is dropped if it moved. */
  generation?: number;
  /** Messages that did not parse, newest last (bounded): recorded and ignored. */
  rejected?: Array<{ at: string; message: string; requestId: string | null; problem: string }>;
  /** Set while disable could not restore the site configuration (Sourcegraph unreachable); retried by the entity. */
  restorePending?: { since: string; lastError: string } | null;
}
