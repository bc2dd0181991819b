/**
 * The offboarding activity that waits on the entity workflow: a workflow cannot query another workflow, so this
 * activity polls the entity's `status` query (heartbeating) until the offboarding's disable request has finished.
 */
import { CancelledFailure, Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { workflowIdFor } from '../lib/instance';
import type { InstanceStatus } from '../lib/types';

/** What the offboarding activities need. */
export interface OffboardActivityDeps {
  /** Temporal client (the worker's own connection). */
  temporal?: Client;
  /** Between two status queries (default 1 s). */
  pollEveryMs?: number;
}

/** Builds the offboarding activities. */
export function createOffboardActivities(deps: OffboardActivityDeps) {
  return {
    /**
     * Waits until the entity's request `requestId` has finished; returns the state it left and its outcome. Bounded
     * by the activity's start-to-close timeout; a lost worker is noticed by the heartbeat timeout.
     */
    async awaitInstanceDisabled(input: {
      instance: string;
      requestId: string;
    }): Promise<{ state: string; outcome: string | null }> {
      const temporal = deps.temporal;
      if (!temporal) throw ApplicationFailure.nonRetryable('this worker has no Temporal client for offboarding');
      const ctx = Context.current();
      const handle = temporal.workflow.getHandle(workflowIdFor(input.instance));
      for (;;) {
        if (ctx.cancellationSignal.aborted) throw new CancelledFailure('offboarding cancelled');
        const s = await handle.query<InstanceStatus>('status');
        const rec = s.requests.find((r) => r.id === input.requestId);
        if (rec?.finishedAt) return { state: s.state, outcome: rec.outcome ?? null };
        // The request can fall off the bounded request list only after it finished: then the state says it.
        if (!rec && s.offboarded?.requestId === input.requestId) return { state: s.state, outcome: s.state };
        ctx.heartbeat({ state: s.state, step: s.step });
        await ctx.sleep(deps.pollEveryMs ?? 1000);
      }
    },
  };
}
