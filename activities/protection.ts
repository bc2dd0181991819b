/**
 * The vendor side of reputation protection (lib/protection.ts decides, the entity workflow runs these). Every
 * activity is idempotent: applying a quarantine twice leaves the subaccount in the quarantine pool, lifting it twice
 * leaves it in the pool it had before; reading the pool first (a separate activity) keeps what to restore even when
 * an apply's response was lost.
 */
import { ApplicationFailure } from '@temporalio/common';
import { isVendorError } from '../lib/errors';
import type { SparkPostClient } from '../vendors/sparkpost';
import type { ApplyProtectionInput, LiftProtectionInput, ProtectionActivities } from '../workflows/protection';
import { withFailureMapping } from './failures';

/** The SparkPost calls these activities make. */
export type ProtectionSparkPostApi = Pick<
  SparkPostClient,
  'getSubaccount' | 'updateSubaccount' | 'listIpPools' | 'createIpPool'
>;

/** Builds the protection activities from the SparkPost client. */
export function createProtectionActivities(deps: { sparkpost: ProtectionSparkPostApi }) {
  const { sparkpost } = deps;
  const activities = {
    async subaccountPool(input: { subaccountId: number }): Promise<string> {
      return (await sparkpost.getSubaccount(input.subaccountId)).ipPool ?? '';
    },

    async applyProtection(input: ApplyProtectionInput): Promise<{ message: string }> {
      const sub = await sparkpost.getSubaccount(input.subaccountId);
      if (sub.status === 'terminated') {
        throw ApplicationFailure.nonRetryable(`subaccount ${sub.id} is terminated`, 'ProtectionNotApplicable');
      }
      if (input.action === 'suspend') {
        if (sub.status !== 'suspended') await sparkpost.updateSubaccount(sub.id, { status: 'suspended' });
        return { message: `subaccount ${sub.id} suspended: it cannot send until cleared` };
      }
      if (sub.ipPool !== input.pool) {
        const pools = await sparkpost.listIpPools();
        if (!pools.some((p) => p.id === input.pool)) {
          try {
            await sparkpost.createIpPool(input.pool);
          } catch (err) {
            // Created by an earlier attempt whose answer was lost: fine; anything else is a failure.
            if (!(isVendorError(err) && err.kind === 'conflict')) throw err;
          }
        }
        await sparkpost.updateSubaccount(sub.id, { ipPool: input.pool });
      }
      return { message: `subaccount ${sub.id} moved to IP pool ${input.pool}` };
    },

    async liftProtection(input: LiftProtectionInput): Promise<{ message: string }> {
      const sub = await sparkpost.getSubaccount(input.subaccountId);
      if (sub.status === 'terminated') return { message: `subaccount ${sub.id} is terminated: nothing to lift` };
      if (input.action === 'suspend') {
        if (input.reactivate && sub.status === 'suspended') {
          await sparkpost.updateSubaccount(sub.id, { status: 'active' });
          return { message: `subaccount ${sub.id} reactivated` };
        }
        return { message: `subaccount ${sub.id} left ${sub.status}` };
      }
      const back = input.previousPool ?? '';
      if ((sub.ipPool ?? '') !== back) await sparkpost.updateSubaccount(sub.id, { ipPool: back });
      return { message: `subaccount ${sub.id} back ${back ? `in IP pool ${back}` : 'on the shared pool'}` };
    },
  } satisfies ProtectionActivities;
  return withFailureMapping(activities);
}
