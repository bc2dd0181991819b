/**
 * GDPR deletion: one workflow per request (`managed-smtp-gdpr/<instance>/<requestId>`) that files SparkPost
 * data-privacy requests (right to be forgotten, optionally opt-out) scoped to the instance's subaccount, waits
 * durably past SparkPost's 30-day processing window, proves the erasure (no event and no removable suppression entry
 * of those recipients left, re-filing once what is still there), and shreds the request's secret. Its result and
 * its `gdprReceipt` query are the receipt; the instance's entity workflow gets a copy of it as an audit record.
 *
 * Addresses never enter this workflow's history, in any form: the CLI (or the offboarding workflow) puts the
 * recipients into a per-request secret in the instance's own project (`managed-smtp-gdpr-<requestId>`, lib/sealed.ts
 * describes its payload), and the workflow passes only that secret's name. Activities read it, replace the list
 * with keyed hashes once it is filed, and destroy every version and delete the secret at the end, whatever the
 * outcome (crypto-shredding). The workflow sees counts and times only.
 *
 * Also holds the pure pieces the client and the activities share (batch size, address check, names).
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  getExternalWorkflowHandle,
  log,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  type ActivityOptions,
} from '@temporalio/workflow';
import { instanceNameProblem, workflowIdFor } from '../lib/instance';
import type { GdprAuditRecord } from '../lib/types';
import { describeFailure } from '../contract/failures';
import { gdprAuditSignal } from '../contract/messages';

export * from '../contract/gdpr';
import {
  DEFAULT_VERIFY_AFTER_SECONDS,
  GCP_PROJECT,
  REQUEST_ID,
  gdprReceiptQuery,
  gdprSecretName,
  type GdprActivities,
  type GdprDeletionInput,
  type GdprFilingFailureDetails,
  type GdprFilingResult,
  type GdprReceipt,
} from '../contract/gdpr';

/**
 * Transient errors (5xx, 429, timeouts) retry with backoff for roughly ten minutes, resuming after the last batch
 * filed; permanent ones (bad key, bad input) fail fast. The heartbeat timeout notices a lost worker within a minute.
 */
export const GDPR_FILING: ActivityOptions = {
  startToCloseTimeout: '30m',
  heartbeatTimeout: '60s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '60s', maximumAttempts: 15 },
};

/** Shredding must happen: it retries (idempotently) until it does. */
const GDPR_SHREDDING: ActivityOptions = {
  startToCloseTimeout: '2m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '5m' },
};

const { fileGdprDeletion, verifyGdprDeletion } = proxyActivities<GdprActivities>(GDPR_FILING);
const { shredGdprSecret } = proxyActivities<GdprActivities>(GDPR_SHREDDING);

/** Why an input cannot be run, or null. */
export function gdprInputProblem(input: GdprDeletionInput): string | null {
  if (!input || typeof input !== 'object') return 'missing input';
  const name = instanceNameProblem(String(input.instance));
  if (name) return `instance ${name}`;
  if (!Number.isSafeInteger(input.subaccountId) || input.subaccountId <= 0) return 'subaccountId must be positive';
  if (typeof input.requestId !== 'string' || !REQUEST_ID.test(input.requestId)) {
    return 'requestId must be 1 to 64 of [A-Za-z0-9-]';
  }
  if (typeof input.gcpProject !== 'string' || !GCP_PROJECT.test(input.gcpProject)) return 'gcpProject is not valid';
  if (input.recipientsSecret !== gdprSecretName(input.gcpProject, input.requestId)) {
    return "recipientsSecret must be the request's own secret in the instance's project";
  }
  if (input.scope !== 'listed' && input.scope !== 'all-recipients') return 'scope must be listed or all-recipients';
  const after = input.verifyAfterSeconds;
  if (after !== undefined && (!Number.isFinite(after) || after < 0)) return 'verifyAfterSeconds must be >= 0';
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

/** The entity's copy of a receipt (the entity keeps the latest per request). */
export function auditRecordOf(r: GdprReceipt): GdprAuditRecord {
  return {
    requestId: r.requestId,
    at: r.filedAt ?? new Date().toISOString(),
    scope: r.scope,
    recipients: r.recipients,
    batches: r.batches,
    optOut: r.optOut,
    outcome: r.state === 'failed' ? 'failed' : 'filed',
    ...(r.error ? { error: r.error } : {}),
    ...(r.verifiedAt ? { verifiedAt: r.verifiedAt, found: r.found ?? 0 } : {}),
    ...(r.listDestroyedAt ? { listDestroyedAt: r.listDestroyedAt } : {}),
  };
}

/** Files one GDPR deletion, verifies it after the window, shreds its secret, and returns the receipt. */
export async function gdprDeletionWorkflow(input: GdprDeletionInput): Promise<GdprReceipt> {
  const receipt: GdprReceipt = {
    requestId: String(input?.requestId ?? 'unknown'),
    instance: String(input?.instance ?? 'unknown'),
    subaccountId: Number(input?.subaccountId) || 0,
    scope: input?.scope === 'all-recipients' ? 'all-recipients' : 'listed',
    optOut: input?.optOut === true,
    state: 'filing',
    recipients: input?.recipientCount ?? 0,
    batches: 0,
    resumedBatches: 0,
    filedAt: null,
    listHashedAt: null,
    verifyDueAt: null,
    verifiedAt: null,
    verifications: [],
    found: null,
    listDestroyedAt: null,
    destroyedVersions: 0,
    error: null,
  };
  setHandler(gdprReceiptQuery, () => receipt);
  const show = (what: string) => setCurrentDetails(`GDPR deletion for **${receipt.instance}**: ${what}`);
  const entityOk = instanceNameProblem(receipt.instance) === null;
  const tellEntity = async () => {
    if (!entityOk) return;
    try {
      await getExternalWorkflowHandle(workflowIdFor(receipt.instance)).signal(gdprAuditSignal, auditRecordOf(receipt));
    } catch (err) {
      // The entity may be gone (never enabled here, or terminated); the receipt is still this workflow's result.
      log.warn('could not append the GDPR audit record to the instance workflow', { error: describeFailure(err) });
    }
  };

  const problem = gdprInputProblem(input);
  if (problem) {
    receipt.state = 'failed';
    receipt.error = `invalid request: ${problem}`;
    show(receipt.error);
    // Nothing is shredded: a malformed input does not name a secret this workflow may touch.
    await tellEntity();
    return receipt;
  }

  try {
    show(
      `filing data-privacy requests for ${input.scope === 'listed' ? `${receipt.recipients} listed` : 'all'} recipients`,
    );
    let filed: GdprFilingResult;
    try {
      filed = await fileGdprDeletion({
        instance: input.instance,
        subaccountId: input.subaccountId,
        requestId: input.requestId,
        secretName: input.recipientsSecret,
        optOut: input.optOut,
        // Workflow time is deterministic: every attempt lists the same window.
        listedUntil: new Date().toISOString(),
      });
    } catch (err) {
      const progress = failureProgress(err);
      if (progress) {
        receipt.recipients = progress.recipients;
        receipt.batches = progress.batchesDone;
      }
      throw err;
    }
    receipt.recipients = filed.recipients;
    receipt.batches = filed.batches;
    receipt.resumedBatches = filed.resumedBatches;
    receipt.filedAt = filed.filedAt;
    receipt.listHashedAt = filed.hashedAt;
    if (filed.skippedInvalid > 0) {
      receipt.error = `${filed.skippedInvalid} known recipients were not valid addresses and were skipped`;
    }
    await tellEntity();

    if (input.verify !== false) {
      const waitMs = (input.verifyAfterSeconds ?? DEFAULT_VERIFY_AFTER_SECONDS) * 1000;
      // Two rounds at most: what the first finds is filed again once, and the second reports what is left.
      for (let round = 1; round <= 2; round++) {
        receipt.state = 'waiting';
        receipt.verifyDueAt = new Date(Date.now() + waitMs).toISOString();
        show(
          `filed ${receipt.recipients} recipients in ${receipt.batches} batches; verifying at ${receipt.verifyDueAt}`,
        );
        await sleep(waitMs);
        receipt.state = 'verifying';
        const v = await verifyGdprDeletion({
          instance: input.instance,
          subaccountId: input.subaccountId,
          requestId: input.requestId,
          secretName: input.recipientsSecret,
          filedAt: receipt.filedAt,
          refile: round === 1,
        });
        if (v.secretGone) {
          receipt.error = 'the request secret was deleted before verification (offboarding?): not verified';
          break;
        }
        const { secretGone: _gone, ...counts } = v;
        receipt.verifications.push({ at: new Date().toISOString(), ...counts });
        receipt.verifiedAt = new Date().toISOString();
        receipt.found = v.found;
        if (v.found === 0) break;
      }
    }
  } catch (err) {
    receipt.state = 'failed';
    // Activity errors hold counts and vendor messages with addresses stripped (vendors/sparkpost.ts clean()).
    receipt.error = describeFailure(err);
  } finally {
    const failed = receipt.state === 'failed';
    receipt.state = 'shredding';
    show('destroying the request secret');
    // Shredding happens even when the workflow is cancelled.
    await CancellationScope.nonCancellable(async () => {
      const shred = await shredGdprSecret({ secretName: input.recipientsSecret });
      receipt.destroyedVersions = shred.destroyedVersions;
      receipt.listDestroyedAt = new Date().toISOString();
    });
    receipt.state = failed ? 'failed' : 'complete';
  }
  // A cancelled request still leaves its receipt with the entity.
  await CancellationScope.nonCancellable(tellEntity);
  show(
    `${receipt.state}: ${receipt.recipients} recipients in ${receipt.batches} batches` +
      (receipt.found !== null ? `, ${receipt.found} still found at verification` : '') +
      `; list destroyed at ${receipt.listDestroyedAt}` +
      (receipt.error ? `\n\n${receipt.error}` : ''),
  );
  return receipt;
}
