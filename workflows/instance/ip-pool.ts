/** IP pool assignment, run in the queue: a bounded day-two step whose failure changes nothing. */
import { isCancellation, patched, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { describeFailure } from '../../contract/failures';
import { DEFAULT_PROTECTION_CONFIG } from '../../lib/protection';
import type { InstanceStatus, IpPoolRequest } from '../../lib/types';
import { DAY_TWO } from '../policies';
import type { Entity } from './entity';

const dayTwo = proxyActivities<Activities>(DAY_TWO);

/**
 * Why an operator's pool change is refused, or null: while reputation protection holds the subaccount in its
 * quarantine pool, a change would end the quarantine behind the ladder's back (and the lift would later undo the
 * change); and the quarantine pool itself is the ladder's, not a pool to assign.
 */
export function ipPoolProblem(s: InstanceStatus, pool: string | null): string | null {
  const quarantinePool = s.protection?.config.quarantinePool ?? DEFAULT_PROTECTION_CONFIG.quarantinePool;
  if (s.protection?.level === 'quarantined') {
    return (
      `${s.instance} is quarantined by reputation protection (IP pool ${quarantinePool}): ` +
      'change its IP pool after smtpctl protection clear'
    );
  }
  if (pool === quarantinePool) {
    return `IP pool ${pool} is the quarantine pool of reputation protection: it cannot be assigned`;
  }
  return null;
}

/** Assigns (or unassigns) the subaccount's IP pool and records it. */
export async function setIpPool(e: Entity, req: IpPoolRequest): Promise<void> {
  const s = e.status;
  const subaccountId = s.subaccountId;
  const at = () => new Date().toISOString();
  if (subaccountId === null || (s.state !== 'active' && s.state !== 'disabled')) {
    const message = subaccountId === null ? `${s.instance} has no subaccount` : `${s.instance} is ${s.state}`;
    s.lastIpPoolChange = { requestId: req.requestId, at: at(), ok: false, message };
    return;
  }
  const state = s.state;
  const previous = s.ipPool ?? null;
  const problem = ipPoolProblem(s, req.pool);
  if (problem && patched('ip-pool-quarantine-guard')) {
    s.lastIpPoolChange = { requestId: req.requestId, at: at(), ok: false, message: `${problem}; nothing changed` };
    e.refreshDetails();
    return;
  }
  e.operation = 'IP pool';
  e.publish(state, 'assign-ip-pool');
  try {
    const r = await dayTwo.setIpPool({ subaccountId, pool: req.pool, create: req.create });
    s.ipPool = r.pool;
    const message = r.pool
      ? `subaccount ${subaccountId} now sends from IP pool ${r.pool}${r.created ? ' (created)' : ''}`
      : `subaccount ${subaccountId} no longer has a dedicated IP pool${previous ? ` (was ${previous})` : ''}`;
    s.lastIpPoolChange = { requestId: req.requestId, at: at(), ok: true, message };
  } catch (err) {
    if (isCancellation(err)) throw err;
    const what = req.pool ? `assigning IP pool ${req.pool}` : 'unassigning the IP pool';
    const keeps = previous ? `IP pool ${previous}` : 'its previous pool';
    const message = `${what} failed: ${describeFailure(err)}; subaccount ${subaccountId} keeps ${keeps}`;
    s.lastIpPoolChange = { requestId: req.requestId, at: at(), ok: false, message };
  }
  e.publish(state, null);
}
