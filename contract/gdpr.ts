/**
 * The GDPR contract: names, limits, the receipt and the messages that the GDPR workflow, its activities and the
 * client share. Pure: imported by workflow code.
 */
import { defineQuery } from '@temporalio/workflow';

/** SparkPost takes at most this many recipients per data-privacy request. */
export const GDPR_BATCH_SIZE = 1000;
/** Most recipients one listed request may carry. */
export const MAX_LISTED_RECIPIENTS = 10_000;
/** SparkPost completes data-privacy requests within 30 days: verification waits this long by default. */
export const DEFAULT_VERIFY_AFTER_SECONDS = 30 * 24 * 3600;
/** Longest address accepted (RFC 5321 path limit). */
export const MAX_ADDRESS_LENGTH = 254;
/** The same loose check SparkPost applies: something@domain.tld, no spaces. */
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
/** Request ids go into a secret id (`[A-Za-z0-9_-]`, at most 255 characters) and a workflow id. */
export const REQUEST_ID = /^[A-Za-z0-9-]{1,64}$/;
/** A GCP project id. */
export const GCP_PROJECT = /^[a-z][a-z0-9-]{4,28}[a-z0-9]$/;

/** Whether `value` looks like an address SparkPost accepts in a data-privacy request. */
export function isEmailAddress(value: string): boolean {
  return value.length <= MAX_ADDRESS_LENGTH && EMAIL.test(value);
}

/** The workflow id of one GDPR deletion request. */
export function gdprWorkflowId(instance: string, requestId: string): string {
  return `managed-smtp-gdpr/${instance}/${requestId}`;
}

/** The secret id of one request's recipient list (in the instance's own project). */
export function gdprSecretId(requestId: string): string {
  return `managed-smtp-gdpr-${requestId}`;
}

/** The full name of one request's secret. */
export function gdprSecretName(gcpProject: string, requestId: string): string {
  return `projects/${gcpProject}/secrets/${gdprSecretId(requestId)}`;
}

/** Labels of a request's secret: offboarding finds and deletes every secret with managed-by and instance. */
export function gdprSecretLabels(instance: string): Record<string, string> {
  return { 'managed-by': 'managed-smtp', instance, purpose: 'gdpr' };
}

/** What a request's secret payload is bound to: it is refused by any other instance or request. */
export function gdprSecretContext(instance: string, requestId: string): string {
  return `managed-smtp/gdpr-request/v1/${instance}/${requestId}`;
}

/** The workflow's input. Holds no address: the recipients are in the request's secret. */
export interface GdprDeletionInput {
  instance: string;
  /** The instance's SparkPost subaccount: every request is scoped to it. */
  subaccountId: number;
  requestId: string;
  /** The instance's own project, where the request's secret lives. */
  gcpProject: string;
  /** gdprSecretName(gcpProject, requestId): the only thing that points at the recipients. */
  recipientsSecret: string;
  /** `listed`: the addresses in the secret; `all-recipients`: every recipient the subaccount knows. */
  scope: 'listed' | 'all-recipients';
  /** How many addresses the secret lists (for the receipt if filing fails before counting). */
  recipientCount?: number;
  /** Also file opt-out requests for the same recipients. */
  optOut: boolean;
  /** Seconds between filing and verification (default DEFAULT_VERIFY_AFTER_SECONDS). */
  verifyAfterSeconds?: number;
  /** false: file and shred without verifying (offboarding, whose subaccount is terminated right after). */
  verify?: boolean;
}

/** One verification round. */
export interface GdprVerification {
  at: string;
  /** Distinct recipients of the request still found (events or removable suppression entries). */
  found: number;
  /** Events of those recipients from before filing still listed. */
  events: number;
  /** Suppression entries of those recipients the request should have removed. */
  suppressions: number;
  /** Suppression entries SparkPost keeps for compliance (not removable, not counted as found). */
  keptForCompliance: number;
  /** Recipients filed again in this round. */
  refiled: number;
}

/** The receipt of one GDPR request: counts and times, never an address. */
export interface GdprReceipt {
  requestId: string;
  instance: string;
  subaccountId: number;
  scope: 'listed' | 'all-recipients';
  optOut: boolean;
  state: 'filing' | 'waiting' | 'verifying' | 'shredding' | 'complete' | 'failed';
  recipients: number;
  batches: number;
  /** Batches a retried filing attempt did not need to file again. */
  resumedBatches: number;
  filedAt: string | null;
  /** When the addresses in the secret were replaced by keyed hashes. */
  listHashedAt: string | null;
  verifyDueAt: string | null;
  verifiedAt: string | null;
  verifications: GdprVerification[];
  /** Recipients still found at the last verification (null until verified). */
  found: number | null;
  /** When the secret's versions were destroyed and the secret deleted. */
  listDestroyedAt: string | null;
  destroyedVersions: number;
  error: string | null;
}

/** Reads a request's receipt (running or finished). */
export const gdprReceiptQuery = defineQuery<GdprReceipt>('gdprReceipt');

/** What the filing activity gets. */
export interface GdprFilingInput {
  instance: string;
  subaccountId: number;
  requestId: string;
  secretName: string;
  optOut: boolean;
  /** With all-recipients: recipients of events up to this time (fixed by the workflow, so retries list the same). */
  listedUntil: string;
}

/** What the filing activity reports: counts only. */
export interface GdprFilingResult {
  recipients: number;
  batches: number;
  requestsSent: number;
  resumedBatches: number;
  skippedInvalid: number;
  /** When the last batch was filed (the activity's clock). */
  filedAt: string;
  /** When the list in the secret was replaced by keyed hashes. */
  hashedAt: string;
}

/** Details of a failure of the filing activity: how far it got. */
export interface GdprFilingFailureDetails {
  batchesDone: number;
  batches: number;
  recipients: number;
}

/** What the verification activity gets. */
export interface GdprVerifyInput {
  instance: string;
  subaccountId: number;
  requestId: string;
  secretName: string;
  /** Only data from up to this time is data the request should have removed. */
  filedAt: string;
  /** File RTBF again for what is still found. */
  refile: boolean;
}

/** The activities this workflow calls (activities/gdpr.ts implements them). */
export interface GdprActivities {
  fileGdprDeletion(input: GdprFilingInput): Promise<GdprFilingResult>;
  verifyGdprDeletion(input: GdprVerifyInput): Promise<Omit<GdprVerification, 'at'> & { secretGone: boolean }>;
  shredGdprSecret(input: { secretName: string }): Promise<{ destroyedVersions: number; deleted: boolean }>;
}
