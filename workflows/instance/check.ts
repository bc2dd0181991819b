/**
 * The invariant check, run in the queue (so it never races a request), with a bounded policy (so an unreachable
 * instance cannot hold it forever). With `enforce`, a repair is queued that carries the generation the check saw:
 * it is dropped if any operator request arrived since, and it never turns a disable into an enable or back.
 */
import { isCancellation, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { describeFailure } from '../../contract/failures';
import type { QueuedRequest } from '../../contract/types';
import type { CheckResult, Finding } from '../../lib/types';
import { CHECK } from '../policies';
import type { Entity } from './entity';

const checking = proxyActivities<Activities>(CHECK);

/** Runs one check; the update waiting for it gets the result through `e.results`. */
export async function check(e: Entity, req: { requestId: string; enforce: boolean }): Promise<void> {
  const s = e.status;
  const observed = { generation: s.generation ?? 0, state: s.state };
  let findings: Finding[];
  try {
    if (!s.spec) throw new Error(`${s.instance} was never enabled: nothing to check`);
    // A failed instance is checked against what the operator asked last.
    const expected = s.state === 'failed' ? (s.intent === 'disable' ? 'disabled' : 'active') : s.state;
    findings = await checking.checkInstance({
      instance: s.instance,
      state: expected,
      spec: s.spec,
      subaccountId: s.subaccountId,
      keyId: s.keyId,
      sendingDomain: s.sendingDomain ? { domain: s.sendingDomain.domain, state: s.sendingDomain.state } : null,
      ...(s.ipPool !== undefined ? { ipPool: s.ipPool } : {}),
    });
  } catch (err) {
    const message = isCancellation(err) ? 'cancelled by a disable request' : describeFailure(err);
    findings = [{ check: 'check', ok: false, message: `the check could not run: ${message}`, repairable: false }];
  }
  if (observed.state === 'failed') {
    const why = (s.error ?? 'the last request failed').slice(0, 300);
    findings.push({ check: 'state', ok: false, message: `${s.instance} is failed: ${why}`, repairable: true });
  }
  const problems = findings.filter((f) => !f.ok);
  let repairRequestId: string | null = null;
  if (req.enforce && problems.some((f) => f.repairable)) {
    // What the operator asked last decides the repair: an active instance is re-enabled, a disabled one re-disabled,
    // a failed one goes back to the operator's last word (a failed rotation re-enables; a failed disable re-disables).
    const action =
      observed.state === 'active' ? 'enable' : observed.state === 'disabled' ? 'disable' : (s.intent ?? null);
    if (action) {
      repairRequestId = `${req.requestId}-repair`;
      const repair: QueuedRequest = {
        kind: 'repair',
        request: {
          requestId: repairRequestId,
          action,
          observedGeneration: observed.generation,
        },
      };
      e.record('repair', repairRequestId);
      e.queue.unshift(repair); // next, unless a disable preempts it
    }
  }
  s.lastCheck = { at: new Date().toISOString(), problems, repairRequestId };
  const result: CheckResult = { instance: s.instance, state: s.state, at: s.lastCheck.at, findings, repairRequestId };
  e.results.set(req.requestId, result);
}

/** Why a queued repair must not run now, or null when it may. */
export function repairDropReason(
  e: Entity,
  repair: { action: 'enable' | 'disable'; observedGeneration: number },
): string | null {
  const s = e.status;
  if ((s.generation ?? 0) !== repair.observedGeneration) {
    return 'dropped: an operator request arrived after the check looked';
  }
  // Never the other way round: an enable repair only on active/failed, a disable repair only on disabled/failed.
  const allowed = repair.action === 'enable' ? ['active', 'failed'] : ['disabled', 'failed'];
  if (!allowed.includes(s.state) || (s.state === 'failed' && s.intent !== repair.action)) {
    return `dropped: ${s.instance} is ${s.state} now`;
  }
  return null;
}
