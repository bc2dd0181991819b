/**
 * Custom sending domains, run in the queue like every other change: `add` starts the verification workflow
 * (`managed-smtp-domain/<instance>`, which may wait days without blocking the queue), `cancel` stops a verification
 * that is still waiting, `switch` (queued when the domain verified) moves the sender onto it, `remove` moves it back
 * and deletes the domain. Every site write is checked against ownership inside the write.
 */
import {
  ApplicationFailure,
  CancellationScope,
  getExternalWorkflowHandle,
  isCancellation,
  ParentClosePolicy,
  proxyActivities,
  startChild,
} from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { CUSTOMER_OWNED, describeFailure, isFailureType } from '../../contract/failures';
import type { QueuedRequest } from '../../contract/types';
import { INSTANCE_KEY, STEP_KEY } from '../../lib/search-attributes';
import type { SendingDomainAccepted } from '../../lib/types';
import { domainWorkflowIdFor, managedSmtpDomainWorkflow } from '../domains';
import { COMPENSATION, DAY_TWO } from '../policies';
import type { Entity } from './entity';
import { runUndo, siteOf, testEmail } from './shared';

const dayTwo = proxyActivities<Activities>(DAY_TWO);
const compensating = proxyActivities<Activities>(COMPENSATION);

type DomainRequest = Extract<QueuedRequest, { kind: 'sending-domain' }>['request'];

function result(e: Entity, requestId: string, ok: boolean, message: string): void {
  e.status.lastSendingDomainChange = { requestId, at: new Date().toISOString(), ok, message };
}

/** Starts the verification workflow; the update that queued this gets what happened. */
async function add(e: Entity, req: Extract<DomainRequest, { action: 'add' }>): Promise<void> {
  const s = e.status;
  const workflowId = domainWorkflowIdFor(s.instance);
  if (s.state !== 'active' || s.subaccountId === null || s.sendingDomain) {
    const message = `${s.instance} is ${s.state}${s.sendingDomain ? ` with ${s.sendingDomain.domain}` : ''}: not added`;
    e.results.set(req.requestId, new Error(message));
    e.finish(req.requestId, `rejected: ${message}`);
    return;
  }
  const subaccountId = s.subaccountId;
  s.sendingDomain = {
    domain: req.domain,
    state: 'pending-verification',
    dnsRecords: [],
    requestedAt: new Date().toISOString(),
    requestId: req.requestId,
    workflowId,
  };
  e.refreshDetails();
  try {
    // An abandoned child: it outlives continue-as-new of this workflow and reports back by signal.
    await CancellationScope.nonCancellable(() =>
      startChild(managedSmtpDomainWorkflow, {
        workflowId,
        args: [
          {
            instance: s.instance,
            subaccountId,
            domain: req.domain,
            requestId: req.requestId,
            recheckSeconds: req.recheckSeconds,
            maxWaitSeconds: req.maxWaitSeconds,
          },
        ],
        parentClosePolicy: ParentClosePolicy.ABANDON,
        typedSearchAttributes: [
          { key: INSTANCE_KEY, value: s.instance },
          { key: STEP_KEY, value: 'create-sending-domain' },
        ],
        staticSummary: `Sending domain ${req.domain} for ${s.instance}`,
        staticDetails:
          `Creates ${req.domain} on SparkPost subaccount ${subaccountId} with a DKIM key, waits for its DNS ` +
          `verification, then managed-smtp/${s.instance} switches the sender to it`,
      }),
    );
  } catch (err) {
    const message = `could not start ${workflowId}: ${describeFailure(err)}`;
    s.sendingDomain = null;
    e.results.set(req.requestId, new Error(message));
    e.finish(req.requestId, `rejected: ${message}`);
    e.refreshDetails();
    return;
  }
  const accepted: SendingDomainAccepted = { requestId: req.requestId, workflowId, accepted: 'verification-started' };
  e.results.set(req.requestId, accepted);
  // The request stays open until the domain workflow reports (verified → switch, or failed).
  e.keepOpen.add(req.requestId);
}

/** Cancels a verification that is still waiting; the domain workflow deletes the domain and reports `failed`. */
async function cancel(e: Entity, requestId: string): Promise<void> {
  const d = e.status.sendingDomain;
  if (!d || d.state !== 'pending-verification' || d.verifiedAt) {
    e.results.set(requestId, new Error(`${e.status.instance} has no sending domain waiting for verification`));
    return;
  }
  const workflowId = d.workflowId ?? domainWorkflowIdFor(e.status.instance);
  try {
    await getExternalWorkflowHandle(workflowId).cancel();
    e.results.set(requestId, { requestId: d.requestId, workflowId, accepted: 'verification-cancelled' });
  } catch (err) {
    e.results.set(requestId, new Error(`could not cancel ${workflowId}: ${describeFailure(err)}`));
  }
}

/** The domain verified: write the sender on it and prove it; a failure puts the shared sender back and deletes it. */
async function switchSender(e: Entity, requestId: string): Promise<void> {
  const s = e.status;
  const d = s.sendingDomain;
  if (!d || d.requestId !== requestId) return;
  if (s.state !== 'active' || !s.spec || !s.secretVersion || s.subaccountId === null) {
    d.state = 'active'; // nothing to switch now; every later enable writes the sender on the verified domain
    result(e, requestId, true, `${d.domain} verified; ${s.instance} is ${s.state}, its next enable uses it`);
    e.refreshDetails();
    return;
  }
  const site = siteOf(s.spec, s.instance);
  const subaccountId = s.subaccountId;
  const base = { ...site, instance: s.instance, secretVersion: s.secretVersion, senderName: s.spec.senderName };
  s.error = null;
  e.operation = 'sending domain';
  try {
    e.publish('active', 'switch-sender');
    s.sender = (await dayTwo.applyManagedSiteConfig({ ...base, senderDomain: d.domain, guard: 'managed' })).sender;
    e.publish('active', 'send-test-email');
    await testEmail(s, site);
  } catch (err) {
    if (isCancellation(err)) throw err;
    const failedStep = s.step;
    const customer = isFailureType(err, CUSTOMER_OWNED);
    const problems = await CancellationScope.nonCancellable(async () => {
      const back = customer
        ? []
        : await runUndo(
            e,
            [
              {
                step: 'restore-sender',
                run: async () => {
                  const r = await compensating.applyManagedSiteConfig({
                    ...base,
                    guard: 'managed',
                    customSenderDomain: d.domain,
                  });
                  s.sender = r.sender;
                },
              },
            ],
            'active',
          );
      if (back.length > 0) return back; // the sender may still be on the domain: keep it
      d.state = 'removing';
      const del = await runUndo(
        e,
        [
          {
            step: 'delete-sending-domain',
            run: () => compensating.deleteSendingDomain({ subaccountId, domain: d.domain }),
          },
        ],
        'active',
      );
      if (del.length === 0) s.sendingDomain = null;
      return del;
    });
    const restoreFailed = problems.some((p) => p.startsWith('restore-sender'));
    if (restoreFailed) d.state = 'active';
    const message =
      `switching the sender to ${d.domain} failed at ${failedStep}: ${describeFailure(err)}; ` +
      (problems.length
        ? `could not undo ${problems.join('; ')}`
        : 'the sender is back on the shared domain and the sending domain was deleted');
    result(e, requestId, false, message);
    s.error = message;
    e.publish(customer ? 'customer-managed' : restoreFailed ? 'failed' : 'active', null);
    return;
  }
  d.state = 'active';
  result(e, requestId, true, `${d.domain} verified; the sender is now ${s.sender}`);
  e.publish('active', null);
}

/** Puts the sender back on the shared domain (proved with a test email), then deletes the domain. */
async function remove(e: Entity, requestId: string): Promise<void> {
  const s = e.status;
  const d = s.sendingDomain;
  if (!d) {
    result(e, requestId, true, 'no custom sending domain to remove');
    return;
  }
  const before = d.state;
  const subaccountId = s.subaccountId;
  e.operation = 'sending domain';
  d.state = 'removing';
  if (s.state === 'active' && s.spec && s.secretVersion) {
    const site = siteOf(s.spec, s.instance);
    const base = { ...site, instance: s.instance, secretVersion: s.secretVersion, senderName: s.spec.senderName };
    s.error = null;
    try {
      e.publish('active', 'restore-sender');
      const r = await dayTwo.applyManagedSiteConfig({ ...base, guard: 'managed', customSenderDomain: d.domain });
      s.sender = r.sender;
      e.publish('active', 'send-test-email');
      await testEmail(s, site);
    } catch (err) {
      if (isCancellation(err)) throw err;
      const failedStep = s.step;
      const problems =
        before === 'active' && !isFailureType(err, CUSTOMER_OWNED)
          ? await CancellationScope.nonCancellable(() =>
              runUndo(
                e,
                [
                  {
                    step: 'switch-sender',
                    run: async () => {
                      const r = await compensating.applyManagedSiteConfig({
                        ...base,
                        senderDomain: d.domain,
                        guard: 'managed',
                      });
                      s.sender = r.sender;
                    },
                  },
                ],
                'active',
              ),
            )
          : [];
      d.state = problems.length ? 'removing' : before;
      const message =
        `removing ${d.domain} failed at ${failedStep}: ${describeFailure(err)}; ` +
        (problems.length
          ? `could not put the sender back: ${problems.join('; ')}`
          : `the domain is kept and the sender is still ${s.sender}`);
      result(e, requestId, false, message);
      s.error = message;
      e.publish(isFailureType(err, CUSTOMER_OWNED) ? 'customer-managed' : problems.length ? 'failed' : 'active', null);
      return;
    }
  }
  if (subaccountId !== null) {
    e.publish(s.state, 'delete-sending-domain');
    try {
      await dayTwo.deleteSendingDomain({ subaccountId, domain: d.domain });
    } catch (err) {
      if (isCancellation(err)) throw err;
      const message =
        `the sender no longer uses ${d.domain}, but deleting it at SparkPost failed: ${describeFailure(err)}; ` +
        'run sending-domain remove again';
      result(e, requestId, false, message);
      e.publish(s.state, null);
      return;
    }
  }
  s.sendingDomain = null;
  result(e, requestId, true, `removed ${d.domain}; the sender is ${s.sender ?? 'not set (instance disabled)'}`);
  e.publish(s.state, null);
}

/** Runs one sending-domain request. */
export async function sendingDomain(e: Entity, req: DomainRequest): Promise<void> {
  if (req.action === 'add') return add(e, req);
  if (req.action === 'cancel') return cancel(e, req.requestId);
  if (req.action === 'switch') return switchSender(e, req.requestId);
  return remove(e, req.requestId);
}

/** Fails an update with a readable, non-retryable failure. */
export function updateFailure(err: Error): ApplicationFailure {
  return ApplicationFailure.create({ message: err.message, nonRetryable: true });
}
