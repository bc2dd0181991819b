/**
 * The managed SMTP entity workflow: one long-lived execution per instance (`managed-smtp/<instance>`) that owns the
 * instance's state and serialises every change to it. Handlers only validate (one zod schema per message, from
 * contract/) and enqueue; the loop below runs one request at a time; a disable preempts whatever runs. A malformed
 * message is recorded in the status and ignored, so no payload can wedge the entity.
 */
import {
  allHandlersFinished,
  CancellationScope,
  condition,
  continueAsNew,
  isCancellation,
  patched,
  setDefaultSignalHandler,
  setHandler,
  workflowInfo,
  defineSignal,
} from '@temporalio/workflow';
import { describeFailure } from '../../contract/failures';
import {
  checkUpdate,
  deliverabilityAlertSignal,
  disableSignal,
  enableSignal,
  gdprAuditSignal,
  ipPoolUpdate,
  protectionRequestUpdate,
  protectionSignal,
  requestQuery,
  rotateKeyUpdate,
  sendingDomainEventSignal,
  sendingDomainUpdate,
  statusQuery,
  stuckSignal,
  suppressionAuditSignal,
} from '../../contract/messages';
import type { QueuedRequest } from '../../contract/types';
import { instanceFromWorkflowId } from '../../lib/instance';
import { runProtectionRequest } from '../protection';
import { check, repairDropReason } from './check';
import { disable, restoreSite } from './disable';
import { enable } from './enable';
import { Entity, protectionHost, type ManagedSmtpInput } from './entity';
import { Handlers, offboardedProblem } from './handlers';
import { setIpPool } from './ip-pool';
import { rotate } from './rotate';
import { sendingDomain } from './sender';

export type { CarriedState, ManagedSmtpInput } from './entity';

/** Runs one queued request in its own cancellation scope, so a disable can preempt it. */
async function dispatch(e: Entity, next: QueuedRequest): Promise<void> {
  switch (next.kind) {
    case 'enable':
      return enable(e, next.request);
    case 'disable':
      return disable(e, next.request);
    case 'rotate':
      return rotate(e, next.request.requestId);
    case 'sending-domain':
      return sendingDomain(e, next.request);
    case 'ip-pool':
      return setIpPool(e, next.request);
    case 'check':
      return check(e, next.request);
    case 'protection':
      return runProtectionRequest(protectionHost(e), next.request);
    case 'repair': {
      const spec = e.status.spec;
      const { requestId, action } = next.request;
      if (action === 'disable' || !spec) return disable(e, { requestId, reason: 'check --enforce repair' });
      return enable(e, { requestId, spec: { ...spec, force: false } });
    }
  }
}

/** Marks histories in which an enable queued behind an offboarding's disable is refused when its turn comes. */
export const OFFBOARD_QUEUED_ENABLE_PATCH = 'offboard-refuses-queued-enable';

async function runOne(e: Entity, next: QueuedRequest): Promise<void> {
  const id = next.request.requestId;
  // An enable (or an enabling repair) that arrived while the offboarding's disable was queued or running passed the
  // handler's check; it must not re-provision the instance that disable has just offboarded.
  const enables = next.kind === 'enable' || (next.kind === 'repair' && next.request.action !== 'disable');
  const offboarded = enables ? offboardedProblem(e.status) : null;
  if (offboarded && patched(OFFBOARD_QUEUED_ENABLE_PATCH)) {
    e.status.intent = 'disable';
    return e.finish(id, `rejected: ${offboarded}`, next.kind === 'repair' ? 'repair' : 'enable');
  }
  if (next.kind === 'repair') {
    const dropped = repairDropReason(e, next.request);
    if (dropped) return e.finish(id, dropped, 'repair');
  }
  const scope = new CancellationScope();
  e.current = next.kind === 'disable' ? null : { kind: next.kind, scope };
  let outcome: string | undefined;
  try {
    await scope.run(() => dispatch(e, next));
  } catch (err) {
    if (isCancellation(err)) outcome = 'superseded by disable';
    else {
      // A bug must not stop the entity: record it, leave the state readable, go on with the queue.
      e.status.error = `${next.kind} stopped unexpectedly: ${describeFailure(err)}`;
      e.publish(e.status.state === 'provisioning' ? 'failed' : e.status.state, null);
    }
  } finally {
    e.current = null;
    e.operation = null;
  }
  if (next.kind === 'check' && !e.results.has(id)) {
    e.results.set(id, new Error(outcome ?? 'the check did not run'));
  }
  // Protection readings arrive every few seconds: they would crowd out the request records (the ladder keeps its own).
  if (e.keepOpen.delete(id) || next.kind === 'protection') return;
  e.finish(id, outcome, next.kind);
}

/** The entity workflow of one instance. Start it with signalWithStart(enableSignal) under `managed-smtp/<instance>`. */
export async function managedSmtpWorkflow(input: ManagedSmtpInput): Promise<void> {
  // The workflow id decides which instance this is: a start naming another instance changes nothing.
  const fromId = instanceFromWorkflowId(workflowInfo().workflowId);
  const e = new Entity(fromId ?? String(input?.instance ?? 'unknown'), input?.carried);
  const h = new Handlers(
    e,
    fromId === null ? `workflow id ${workflowInfo().workflowId} is not managed-smtp/<instance>` : null,
  );
  if (fromId !== null && input?.instance !== undefined && input.instance !== fromId && !input.carried) {
    e.reject(
      'start',
      input,
      `input names instance ${String(input.instance).slice(0, 80)}; the workflow id says ${fromId}`,
    );
  }

  setHandler(statusQuery, () => e.status);
  setHandler(requestQuery, (id) => e.outcomeOf(String(id)));
  // Every payload is parsed by its handler (zod), so each signal is registered as taking `unknown`.
  const signals: Array<[{ name: string }, (p: unknown) => void]> = [
    [enableSignal, (p) => h.onEnable(p)],
    [disableSignal, (p) => h.onDisable(p)],
    [deliverabilityAlertSignal, (p) => h.onAlert(p)],
    [gdprAuditSignal, (p) => h.onGdprAudit(p)],
    [stuckSignal, (p) => h.onStuck(p)],
    [sendingDomainEventSignal, (p) => h.onDomainEvent(p)],
    [protectionSignal, (p) => h.onProtection(p)],
    [suppressionAuditSignal, (p) => h.onSuppressionAudit(p)],
  ];
  const bySignalName = new Map(signals.map(([def, on]) => [def.name, on]));
  // Signals that arrived before the handlers existed (a start's first task, one after a worker restart) must be
  // handled in the order they were sent. The SDK hands buffered signals to each handler as it registers, which let
  // an enable sent after a disable overtake it; a default handler registered first takes them all, in order.
  if (patched('signals-in-order')) {
    setDefaultSignalHandler((name, p) => {
      const on = bySignalName.get(name);
      if (on) h.safely(name, p, () => on(p));
      else e.reject('signal', { name }, `unknown signal ${name.slice(0, 80)}`);
    });
  }
  for (const [{ name }, on] of signals)
    setHandler(defineSignal<[unknown]>(name), (p) => h.safely(name, p, () => on(p)));
  setHandler(protectionRequestUpdate, (p) => h.onProtectionUpdate(p), { validator: (p) => h.validateProtection(p) });
  setHandler(rotateKeyUpdate, (p) => h.onRotate(p), { validator: (p) => h.validateRotate(p) });
  setHandler(ipPoolUpdate, (p) => h.onIpPool(p), { validator: (p) => h.validateIpPool(p) });
  setHandler(checkUpdate, (p) => h.onCheck(p), { validator: (p) => h.validateCheck(p) });
  setHandler(sendingDomainUpdate, (p) => h.onSendingDomain(p), { validator: (p) => h.validateSendingDomain(p) });
  if (e.status.requests.length === 0 && e.queue.length === 0) e.refreshDetails();

  let restoreWait = 0;
  // When the next restore is due: requests that run meanwhile (an hourly check) must not push it back.
  let restoreAt: number | null = null;
  for (;;) {
    const pending = !!e.status.restorePending && e.status.state === 'disabled';
    if (pending) {
      // Back off from 10 minutes to 6 hours: a site down for months costs a few events a day.
      const minutes = Math.min(360, 10 * 2 ** restoreWait);
      let wait = minutes * 60_000;
      if (restoreAt !== null && patched('restore-due-at')) wait = restoreAt - Date.now();
      else restoreAt = Date.now() + wait;
      const woke = wait > 0 && (await condition(() => e.queue.length > 0 || e.shouldContinueAsNew(), wait));
      if (!woke) {
        restoreAt = null;
        restoreWait = (await restoreSite(e)) ? 0 : restoreWait + 1;
        if (!e.status.restorePending) e.status.error = null;
        e.refreshDetails();
        continue;
      }
    } else {
      restoreWait = 0;
      restoreAt = null;
      await condition(() => e.queue.length > 0 || e.shouldContinueAsNew());
    }
    const next = e.queue.shift();
    if (next) await runOne(e, next);
    if (e.queue.length === 0 && e.shouldContinueAsNew()) {
      await condition(allHandlersFinished);
      await continueAsNew<typeof managedSmtpWorkflow>({ instance: e.status.instance, carried: e.carry() });
    }
  }
}
