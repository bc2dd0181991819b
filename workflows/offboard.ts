/**
 * Offboarding: one workflow per instance (`managed-smtp-offboard/<instance>`) for an instance that leaves for good.
 *
 *  1. disable: the entity's `disable` signal with `{requestId, reason: 'offboard', offboard: true}`, then wait until
 *     its status shows that request finished with the instance disabled (send key revoked, send-key secret deleted,
 *     site configuration restored, subaccount suspended). The entity remembers the offboarding and refuses a later
 *     enable with a sentence;
 *  2. erase: a GDPR deletion (child workflow) for every recipient the subaccount still knows (message events within
 *     retention and its suppression list), filed and shredded without waiting for verification (the subaccount is
 *     terminated right after, so nothing can be re-filed into it);
 *  3. terminate the subaccount (permanent);
 *  4. delete every secret managed-smtp made for the instance in its project (labels managed-by=managed-smtp and
 *     instance=<instance>), pending GDPR request secrets included.
 *
 * The result and the `offboardReceipt` query are the one receipt of the whole offboarding. Every step is idempotent,
 * so a re-run (same workflow id) finishes what an earlier run left.
 */
import {
  ApplicationFailure,
  ParentClosePolicy,
  defineQuery,
  executeChild,
  getExternalWorkflowHandle,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  workflowInfo,
  type ActivityOptions,
} from '@temporalio/workflow';
import type { DisableRequest } from '../lib/types';
import { instanceNameProblem, workflowIdFor } from '../lib/instance';
import { gdprDeletionWorkflow, gdprSecretName, gdprWorkflowId, type GdprReceipt } from './gdpr';
import { describeFailure } from '../contract/failures';
import { disableSignal } from '../contract/messages';

/** The workflow id of an instance's offboarding. */
export function offboardWorkflowId(instance: string): string {
  return `managed-smtp-offboard/${instance}`;
}

/** The offboarding's input (from `smtpctl offboard`, which read the entity's status first). */
export interface OffboardInput {
  instance: string;
  requestId: string;
  /** The subaccount to erase and terminate; null when the instance never had one. */
  subaccountId: number | null;
  gcpProject: string;
}

/** The one receipt of an offboarding: steps, times and counts, never an address. */
export interface OffboardReceipt {
  instance: string;
  requestId: string;
  subaccountId: number | null;
  gcpProject: string;
  state: 'disabling' | 'erasing' | 'terminating' | 'deleting-secrets' | 'complete' | 'failed';
  startedAt: string;
  disabledAt: string | null;
  /** The GDPR deletion of every known recipient (null when there was no subaccount). */
  erasure: GdprReceipt | null;
  subaccountTerminatedAt: string | null;
  secretsDeleted: number;
  secretsDeletedAt: string | null;
  finishedAt: string | null;
  error: string | null;
}

/** Reads an offboarding's receipt. */
export const offboardReceiptQuery = defineQuery<OffboardReceipt>('offboardReceipt');

/** What the offboarding's own activities look like (activities/offboard.ts, activities/gdpr.ts, activities/index.ts). */
export interface OffboardActivities {
  awaitInstanceDisabled(input: {
    instance: string;
    requestId: string;
  }): Promise<{ state: string; outcome: string | null }>;
  createGdprAllRecipientsSecret(input: {
    gcpProject: string;
    instance: string;
    requestId: string;
  }): Promise<{ secretName: string }>;
  releaseSubaccount(input: {
    instance: string;
    subaccountId: number | null;
    terminate: boolean;
  }): Promise<{ released: number[] }>;
  deleteManagedSecrets(input: {
    gcpProject: string;
    instance: string;
  }): Promise<{ secrets: number; destroyedVersions: number }>;
}

const STEP: ActivityOptions = {
  startToCloseTimeout: '2m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '60s', maximumAttempts: 20 },
};
/** Waiting for the entity: a long poll that heartbeats. */
const WAITING: ActivityOptions = {
  startToCloseTimeout: '2h',
  heartbeatTimeout: '60s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '60s', maximumAttempts: 10 },
};

const acts = proxyActivities<OffboardActivities>(STEP);
const waiting = proxyActivities<OffboardActivities>(WAITING);

/** Offboards an instance for good and returns the receipt. */
export async function offboardWorkflow(input: OffboardInput): Promise<OffboardReceipt> {
  const receipt: OffboardReceipt = {
    instance: String(input?.instance),
    requestId: String(input?.requestId),
    subaccountId: input?.subaccountId ?? null,
    gcpProject: String(input?.gcpProject),
    state: 'disabling',
    startedAt: new Date().toISOString(),
    disabledAt: null,
    erasure: null,
    subaccountTerminatedAt: null,
    secretsDeleted: 0,
    secretsDeletedAt: null,
    finishedAt: null,
    error: null,
  };
  setHandler(offboardReceiptQuery, () => receipt);
  const show = (what: string) => setCurrentDetails(`Offboarding **${receipt.instance}**: ${what}`);
  try {
    const problem = instanceNameProblem(receipt.instance);
    if (problem) throw ApplicationFailure.nonRetryable(`invalid instance: ${problem}`, 'OffboardInvalid');
    if (!/^[A-Za-z0-9-]{1,64}$/.test(receipt.requestId)) {
      throw ApplicationFailure.nonRetryable('invalid requestId', 'OffboardInvalid');
    }
    const { instance, requestId, gcpProject, subaccountId } = input;

    show('disabling (revoking the send key, restoring the site configuration, suspending the subaccount)');
    const request: DisableRequest = { requestId, reason: 'offboard', offboard: true };
    await getExternalWorkflowHandle(workflowIdFor(instance)).signal(disableSignal, request);
    const disabled = await waiting.awaitInstanceDisabled({ instance, requestId });
    if (disabled.state !== 'disabled') {
      throw ApplicationFailure.nonRetryable(
        `disable did not finish: the instance is ${disabled.state}${disabled.outcome ? ` (${disabled.outcome})` : ''}`,
        'OffboardDisableFailed',
      );
    }
    receipt.disabledAt = new Date().toISOString();

    if (subaccountId !== null) {
      receipt.state = 'erasing';
      show('erasing every recipient the subaccount knows (events within retention, suppression list)');
      const gdprRequestId = `offboard-${requestId}`.slice(0, 64);
      const { secretName } = await acts.createGdprAllRecipientsSecret({
        gcpProject,
        instance,
        requestId: gdprRequestId,
      });
      if (secretName !== gdprSecretName(gcpProject, gdprRequestId)) {
        throw ApplicationFailure.nonRetryable('the erasure secret was created under an unexpected name');
      }
      receipt.erasure = await executeChild(gdprDeletionWorkflow, {
        workflowId: gdprWorkflowId(instance, gdprRequestId),
        taskQueue: workflowInfo().taskQueue,
        parentClosePolicy: ParentClosePolicy.ABANDON,
        args: [
          {
            instance,
            subaccountId,
            requestId: gdprRequestId,
            gcpProject,
            recipientsSecret: secretName,
            scope: 'all-recipients',
            optOut: false,
            verify: false,
          },
        ],
      });
      if (receipt.erasure.state === 'failed') {
        throw ApplicationFailure.nonRetryable(`erasure failed: ${receipt.erasure.error ?? 'unknown error'}`);
      }

      receipt.state = 'terminating';
      show('terminating the SparkPost subaccount');
      await acts.releaseSubaccount({ instance, subaccountId, terminate: true });
      receipt.subaccountTerminatedAt = new Date().toISOString();
    }

    receipt.state = 'deleting-secrets';
    show('deleting every secret managed-smtp made in the project');
    const deleted = await acts.deleteManagedSecrets({ gcpProject, instance });
    receipt.secretsDeleted = deleted.secrets;
    receipt.secretsDeletedAt = new Date().toISOString();
    receipt.state = 'complete';
  } catch (err) {
    receipt.state = 'failed';
    receipt.error = describeFailure(err);
  }
  receipt.finishedAt = new Date().toISOString();
  show(receipt.state === 'complete' ? 'complete' : `failed: ${receipt.error}`);
  return receipt;
}
