/**
 * The sending-domain workflow: one execution per domain addition, id `managed-smtp-domain/<instance>`, started by the
 * instance's entity workflow (as an abandoned child, so the entity can continue as new while it runs).
 *
 * It creates the domain on the instance's subaccount (DKIM generated), tells the entity which DNS records to publish,
 * then waits for verification, durably and for days if need be: it re-checks every `recheckSeconds` (default 6 h) or
 * at once on the `verifySendingDomain` signal, for at most `maxWaitSeconds` (default 13 days: SparkPost removes
 * unverified domains after two weeks). The wait never blocks the entity: the entity only switches the sender, in its
 * own queue, once this workflow signals that the domain is verified.
 *
 * Failure, the deadline and cancellation all end the same way: the domain is deleted (nothing left behind) and the
 * entity is told, which forgets the domain; the instance's sender and state are untouched.
 */
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  ContinueAsNew,
  continueAsNew,
  defineQuery,
  defineSignal,
  getExternalWorkflowHandle,
  isCancellation,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { sendingDomainEventSignal } from '../contract/messages';
import { workflowIdFor } from '../lib/instance';
import { INSTANCE_KEY, STEP_KEY } from '../lib/search-attributes';
import type { DnsRecord, DomainStep } from '../lib/types';
import { COMPENSATION, PROVISIONING } from './policies';

/** Asks the waiting workflow to re-check verification now (after the DNS records were published). */
export const verifySendingDomainSignal = defineSignal('verifySendingDomain');

/** What the waiting workflow is doing. */
export const domainStatusQuery = defineQuery<DomainWorkflowStatus>('domainStatus');

/** The input of the domain workflow. */
export interface DomainWorkflowInput {
  instance: string;
  subaccountId: number;
  domain: string;
  /** The entity's `sending-domain add` request. */
  requestId: string;
  /** Seconds between verification checks (default 6 h; tests use a few seconds). */
  recheckSeconds?: number;
  /** Give up (and delete the domain) after this many seconds unverified (default 13 days). */
  maxWaitSeconds?: number;
  /** Set when a run continues as new: the domain exists and the wait goes on until `deadline`. */
  resume?: {
    deadline: string;
    dnsRecords: DnsRecord[];
    checks: number;
    lastCheck: { at: string; dkimStatus: string } | null;
  };
}

/** The domain workflow's query result. */
export interface DomainWorkflowStatus {
  instance: string;
  domain: string;
  step: DomainStep;
  /** Verification checks made so far. */
  checks: number;
  lastCheck: { at: string; dkimStatus: string } | null;
  nextCheckAt: string | null;
  /** When it gives up. */
  deadline: string | null;
}

/** Default seconds between verification checks. */
export const DEFAULT_RECHECK_SECONDS = 6 * 3600;
/** Default seconds to wait for verification: a day less than SparkPost keeps unverified domains. */
export const DEFAULT_MAX_WAIT_SECONDS = 13 * 24 * 3600;
/**
 * Upper bound on verification checks in one run (scheduled plus signalled), so the history stays small; a wait that
 * needs more continues as new.
 */
const MAX_CHECKS = 1000;

/** The workflow id of an instance's sending-domain workflow. */
export function domainWorkflowIdFor(instance: string): string {
  return `managed-smtp-domain/${instance}`;
}

const STEP_TEXT: Record<DomainStep, string> = {
  'create-sending-domain': 'creating the sending domain at SparkPost (DKIM key generated)',
  'wait-domain-verification': 'waiting for the DNS records to be published and verified',
  'delete-sending-domain': 'deleting the sending domain at SparkPost',
};

const acts = proxyActivities<Activities>(PROVISIONING);
const compensating = proxyActivities<Activities>(COMPENSATION);

function clamp(n: number | undefined, fallback: number, min: number, max: number): number {
  if (n === undefined || !Number.isFinite(n)) return fallback;
  return Math.min(max, Math.max(min, n));
}

function describe(err: unknown): string {
  let e: unknown = err;
  for (let i = 0; i < 5 && e instanceof Error && e.cause instanceof Error; i++) e = e.cause;
  if (e instanceof ApplicationFailure && e.type) return `${e.message} (${e.type})`;
  return e instanceof Error ? e.message : String(e);
}

function duration(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

/** Creates a custom sending domain, waits for its verification, and hands it to the entity. */
export async function managedSmtpDomainWorkflow(input: DomainWorkflowInput): Promise<{ verifiedAt: string }> {
  const recheckSeconds = clamp(input.recheckSeconds, DEFAULT_RECHECK_SECONDS, 1, 86400);
  const maxWaitSeconds = clamp(input.maxWaitSeconds, DEFAULT_MAX_WAIT_SECONDS, 1, 14 * 86400);
  const entity = getExternalWorkflowHandle(workflowIdFor(input.instance));
  const ref = { subaccountId: input.subaccountId, domain: input.domain };
  const status: DomainWorkflowStatus = {
    instance: input.instance,
    domain: input.domain,
    step: 'create-sending-domain',
    checks: 0,
    lastCheck: null,
    nextCheckAt: null,
    deadline: null,
  };
  let verifyRequested = false;
  let records: DnsRecord[] = [];
  setHandler(verifySendingDomainSignal, () => {
    verifyRequested = true;
  });
  setHandler(domainStatusQuery, () => status);

  const show = (step: DomainStep) => {
    status.step = step;
    upsertSearchAttributes([
      { key: INSTANCE_KEY, value: input.instance },
      { key: STEP_KEY, value: step },
    ]);
    const lines = [`**${input.domain}** for ${input.instance}: \`${step}\`: ${STEP_TEXT[step]}`];
    if (step === 'wait-domain-verification') {
      lines.push(
        `re-checked every ${duration(recheckSeconds)} until ${status.deadline}, or now with ` +
          `\`smtpctl sending-domain verify ${input.instance}\``,
      );
      for (const r of records) lines.push(`publish ${r.type} \`${r.name}\``);
    }
    if (status.lastCheck) lines.push(`last check ${status.lastCheck.at}: DKIM ${status.lastCheck.dkimStatus}`);
    setCurrentDetails(lines.join('\n\n'));
  };

  try {
    let verified = false;
    let deadline: number;
    if (input.resume) {
      records = input.resume.dnsRecords;
      deadline = Date.parse(input.resume.deadline);
      status.checks = input.resume.checks;
      status.lastCheck = input.resume.lastCheck;
    } else {
      show('create-sending-domain');
      const created = await acts.createSendingDomain(ref);
      records = created.dnsRecords;
      await entity.signal(sendingDomainEventSignal, {
        event: 'created',
        requestId: input.requestId,
        domain: input.domain,
        dnsRecords: records,
      });
      verified = created.verified;
      deadline = Date.now() + maxWaitSeconds * 1000;
    }
    status.deadline = new Date(deadline).toISOString();
    if (!verified) show('wait-domain-verification');
    for (let i = 0; !verified && i < MAX_CHECKS; i++) {
      // Reset before checking, so a verify signal that arrives during the check triggers another one.
      verifyRequested = false;
      const check = await acts.checkSendingDomain(ref);
      status.checks++;
      status.lastCheck = { at: new Date().toISOString(), dkimStatus: check.dkimStatus };
      if (check.gone) {
        throw ApplicationFailure.nonRetryable(
          `SparkPost no longer has ${input.domain} (unverified domains are removed after two weeks)`,
          'SendingDomainGone',
        );
      }
      verified = check.verified;
      const left = deadline - Date.now();
      if (verified || left <= 0) break;
      const wait = Math.min(recheckSeconds * 1000, left);
      status.nextCheckAt = new Date(Date.now() + wait).toISOString();
      show('wait-domain-verification');
      await condition(() => verifyRequested, wait);
      status.nextCheckAt = null;
    }
    if (!verified && Date.now() < deadline && patched('domain-wait-continues-as-new')) {
      // The check budget of this run is spent before the deadline (frequent re-checks or verify signals): the wait
      // goes on in a new run rather than giving up early.
      await continueAsNew<typeof managedSmtpDomainWorkflow>({
        ...input,
        resume: { deadline: status.deadline, dnsRecords: records, checks: status.checks, lastCheck: status.lastCheck },
      });
    }
    if (!verified) {
      throw ApplicationFailure.nonRetryable(
        `${input.domain} was not verified within ${duration(maxWaitSeconds)} (${status.checks} checks, DKIM ` +
          `${status.lastCheck?.dkimStatus ?? 'unchecked'}); publish the DNS records, then add it again`,
        'SendingDomainNotVerified',
      );
    }
    const at = new Date().toISOString();
    await entity.signal(sendingDomainEventSignal, {
      event: 'verified',
      requestId: input.requestId,
      domain: input.domain,
      at,
    });
    setCurrentDetails(`**${input.domain}** for ${input.instance}: verified at ${at}; the instance switches its sender`);
    return { verifiedAt: at };
  } catch (err) {
    if (err instanceof ContinueAsNew) throw err;
    const cancelled = isCancellation(err);
    const why = cancelled ? 'cancelled before it was verified' : describe(err);
    // Whatever happened, nothing is left behind: deleting tolerates a domain that was never created or is gone.
    await CancellationScope.nonCancellable(async () => {
      show('delete-sending-domain');
      let left = '';
      try {
        await compensating.deleteSendingDomain(ref);
      } catch (deleteErr) {
        left = `; could not delete it: ${describe(deleteErr)}`;
      }
      const message = `adding ${input.domain} failed: ${why}${left || '; nothing was left behind'}`;
      setCurrentDetails(`**${input.domain}** for ${input.instance}: ${message}`);
      await entity.signal(sendingDomainEventSignal, {
        event: 'failed',
        requestId: input.requestId,
        domain: input.domain,
        at: new Date().toISOString(),
        message,
        cancelled,
      });
    });
    throw err;
  }
}
