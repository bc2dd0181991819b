/** IP pool assignment, run in the queue: a bounded day-two step whose failure changes nothing. */
import { isCancellation, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { describeFailure } from '../../contract/failures';
import type { IpPoolRequest } from '../../lib/types';
import { DAY_TWO } from '../policies';
import type { Entity } from './entity';

const dayTwo = proxyActivities<Activities>(DAY_TWO);

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
