/**
 * GDPR deletion: one short workflow per request (`managed-smtp-gdpr/<instance>/<requestId>`) that files SparkPost
 * data-privacy requests (right to be forgotten, optionally opt-out) scoped to the instance's subaccount, then appends
 * an audit record (when, how many, outcome: never addresses) to the instance's entity workflow.
 *
 * Recipient addresses never enter this workflow's history: with `allRecipients` the activity lists them from
 * SparkPost itself and files them in the same call; listed recipients arrive sealed (lib/sealed.ts) and only the
 * activity unseals them. The workflow sees counts only.
 *
 * Also holds the pure pieces the client and the activity share (batch size, address check, ids).
 */
import {
  ActivityFailure,
  ApplicationFailure,
  getExternalWorkflowHandle,
  log,
  proxyActivities,
  setCurrentDetails,
  type ActivityOptions,
} from '@temporalio/workflow';
import { instanceNameProblem, workflowIdFor } from '../lib/instance';
import type { Sealed } from '../lib/sealed';
import type { GdprAuditRecord } from '../lib/types';
import { describeFailure } from '../contract/failures';
import { gdprAuditSignal } from '../contract/messages';

/** SparkPost takes at most this many recipients per data-privacy request. */
export const GDPR_BATCH_SIZE = 1000;
/** Most recipients one listed request may carry (the sealed list must stay far below Temporal's payload limit). */
export const MAX_LISTED_RECIPIENTS = 10_000;
/** Longest address accepted (RFC 5321 path limit). */
const MAX_ADDRESS_LENGTH = 254;
/** The same loose check SparkPost applies: something@domain.tld, no spaces. */
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** Whether `value` looks like an address SparkPost accepts in a data-privacy request. */
export function isEmailAddress(value: string): boolean {
  return value.length <= MAX_ADDRESS_LENGTH && EMAIL.test(value);
}

/** The workflow id of one GDPR deletion request. */
export function gdprWorkflowId(instance: string, requestId: string): string {
  return `managed-smtp-gdpr/${instance}/${requestId}`;
}

/** Additional authenticated data of a sealed recipient list: it opens only for this instance and request. */
export function gdprSealContext(instance: string, requestId: string): string {
  return `managed-smtp/gdpr-recipients/v1/${instance}/${requestId}`;
}

/** The workflow's input. Holds no address: listed recipients are sealed. */
export interface GdprDeletionInput {
  instance: string;
  /** The instance's SparkPost subaccount: every request is scoped to it. */
  subaccountId: number;
  requestId: string;
  /** JSON array of addresses, sealed with gdprSealContext(instance, requestId). */
  sealedRecipients?: Sealed;
  /** How many addresses are sealed (for the audit record if filing fails before counting). */
  recipientCount?: number;
  /** List the recipients of the subaccount's message events (10-day retention) instead. */
  allRecipients: boolean;
  /** Also file opt-out requests for the same recipients. */
  optOut: boolean;
}

/** What the filing activity gets. */
export interface GdprFilingInput {
  instance: string;
  subaccountId: number;
  requestId: string;
  sealedRecipients?: Sealed;
  allRecipients: boolean;
  optOut: boolean;
  /** With allRecipients: recipients of events up to this time (fixed by the workflow, so retries list the same). */
  listedUntil: string;
}

/** What the filing activity reports: counts only. */
export interface GdprFilingResult {
  /** Distinct valid recipients covered. */
  recipients: number;
  /** Batches of at most GDPR_BATCH_SIZE recipients, each filed as one RTBF (and one opt-out) request. */
  batches: number;
  /** Requests sent by the attempt that succeeded (fewer than all when it resumed). */
  requestsSent: number;
  /** Batches an earlier attempt had already filed (from heartbeat details). */
  resumedBatches: number;
  /** Event recipients skipped because SparkPost would reject them as addresses (allRecipients only). */
  skippedInvalid: number;
}

/** Details of a failure of the filing activity: how far it got. */
export interface GdprFilingFailureDetails {
  batchesDone: number;
  batches: number;
  recipients: number;
}

/** The activities this workflow calls (activities/gdpr.ts implements them). */
export interface GdprActivities {
  fileGdprDeletion(input: GdprFilingInput): Promise<GdprFilingResult>;
}

/**
 * Transient errors (5xx, 429, timeouts) retry with backoff for roughly ten minutes, resuming after the last batch
 * filed; permanent ones (bad key, bad input) fail fast. The heartbeat timeout notices a lost worker within a minute.
 */
export const GDPR_FILING: ActivityOptions = {
  startToCloseTimeout: '30m',
  heartbeatTimeout: '60s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '60s', maximumAttempts: 15 },
};

const { fileGdprDeletion } = proxyActivities<GdprActivities>(GDPR_FILING);

function inputProblem(input: GdprDeletionInput): string | null {
  if (!input || typeof input !== 'object') return 'missing input';
  const name = instanceNameProblem(String(input.instance));
  if (name) return `instance ${name}`;
  if (!Number.isSafeInteger(input.subaccountId) || input.subaccountId <= 0) return 'subaccountId must be positive';
  if (typeof input.requestId !== 'string' || input.requestId === '') return 'requestId must be a non-empty string';
  if (input.allRecipients === Boolean(input.sealedRecipients)) {
    return 'exactly one of sealedRecipients and allRecipients must be given';
  }
  return null;
}

/** The progress details an activity failure carries, when it carries them. */
function failureProgress(err: unknown): GdprFilingFailureDetails | null {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (!(cause instanceof ApplicationFailure)) return null;
  const d = cause.details?.[0] as Partial<GdprFilingFailureDetails> | undefined;
  return d && typeof d.batchesDone === 'number' && typeof d.recipients === 'number'
    ? { batchesDone: d.batchesDone, batches: Number(d.batches) || 0, recipients: d.recipients }
    : null;
}

/** Files one GDPR deletion, records it on the instance's entity workflow, and returns the audit record. */
export async function gdprDeletionWorkflow(input: GdprDeletionInput): Promise<GdprAuditRecord> {
  const scope: GdprAuditRecord['scope'] = input?.allRecipients ? 'all-recipients' : 'listed';
  const base = {
    requestId: String(input?.requestId ?? 'unknown'),
    scope,
    optOut: input?.optOut === true,
  };
  const what = scope === 'listed' ? `${input?.recipientCount ?? 'sealed'} listed recipients` : 'all recipients';
  setCurrentDetails(`GDPR deletion for **${input?.instance}**: filing data-privacy requests for ${what}`);

  let record: GdprAuditRecord;
  const problem = inputProblem(input);
  if (problem) {
    record = {
      ...base,
      at: new Date().toISOString(),
      recipients: 0,
      batches: 0,
      outcome: 'failed',
      error: `invalid request: ${problem}`,
    };
  } else {
    try {
      const r = await fileGdprDeletion({
        instance: input.instance,
        subaccountId: input.subaccountId,
        requestId: input.requestId,
        ...(input.sealedRecipients ? { sealedRecipients: input.sealedRecipients } : {}),
        allRecipients: input.allRecipients,
        optOut: input.optOut,
        // Workflow time is deterministic: every attempt lists the same window.
        listedUntil: new Date().toISOString(),
      });
      record = {
        ...base,
        at: new Date().toISOString(),
        recipients: r.recipients,
        batches: r.batches,
        outcome: 'filed',
        ...(r.skippedInvalid > 0
          ? { error: `${r.skippedInvalid} event recipients were not valid addresses and were skipped` }
          : {}),
      };
    } catch (err) {
      const progress = failureProgress(err);
      // Activity errors hold counts and vendor messages with addresses stripped (vendors/sparkpost.ts clean()).
      record = {
        ...base,
        at: new Date().toISOString(),
        recipients: progress?.recipients ?? input.recipientCount ?? 0,
        batches: progress?.batchesDone ?? 0,
        outcome: 'failed',
        error: describeFailure(err),
      };
    }
  }

  if (instanceNameProblem(String(input?.instance)) === null) {
    try {
      await getExternalWorkflowHandle(workflowIdFor(input.instance)).signal(gdprAuditSignal, record);
    } catch (err) {
      // The entity may be gone (never enabled here, or terminated); the record is still this workflow's result.
      log.warn('could not append the GDPR audit record to the instance workflow', { error: describeFailure(err) });
    }
  }
  setCurrentDetails(
    `GDPR deletion for **${input?.instance}**: ${record.outcome}, ${record.recipients} recipients in ${record.batches} batches` +
      (record.error ? `\n\n${record.error}` : ''),
  );
  return record;
}
