/**
 * Fleet activities: a page of instances from visibility (small, whatever the fleet's size) and the invariant check
 * asked of an instance's own entity, which decides on any repair with what it knows now, not what a listing said.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { Client } from '@temporalio/client';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { checkUpdate } from '../contract/messages';
import { describeFailure } from '../contract/failures';
import { instanceFromWorkflowId, workflowIdFor } from '../lib/instance';
import { INSTANCE_KEY, STATE_KEY, STEP_KEY } from '../lib/search-attributes';
import type { CheckResult } from '../lib/types';

/** One instance as visibility lists it: enough to decide whether to ask its entity for a check. */
export interface ListedInstance {
  instance: string;
  state: string | null;
  step: string | null;
}

/** A page of the fleet listing. */
export interface InstancePage {
  instances: ListedInstance[];
  /** Base64 visibility page token; null on the last page. */
  nextPageToken: string | null;
}

/** What asking an entity for a check gave. */
export type EntityCheckOutcome =
  | { instance: string; outcome: 'checked'; result: CheckResult }
  | { instance: string; outcome: 'busy' | 'error'; message: string };

/** The visibility query of running instance entities. */
export const ENTITY_QUERY = `WorkflowType = 'managedSmtpWorkflow' AND ExecutionStatus = 'Running' AND ${INSTANCE_KEY.name} IS NOT NULL`;

function keyword(fields: Record<string, { data?: Uint8Array | null }> | null | undefined, name: string): string | null {
  const data = fields?.[name]?.data;
  if (!data) return null;
  try {
    const v: unknown = JSON.parse(Buffer.from(data).toString('utf8'));
    return typeof v === 'string' ? v : Array.isArray(v) && typeof v[0] === 'string' ? v[0] : null;
  } catch {
    return null;
  }
}

/** Builds the fleet activities. */
export function createFleetActivities(deps: { temporal?: Client }) {
  function temporal(): Client {
    if (!deps.temporal) throw ApplicationFailure.nonRetryable('no Temporal client in the activity deps', 'ConfigError');
    return deps.temporal;
  }
  return {
    /** One page of running instance entities from visibility (states from search attributes; no statuses). */
    async listInstancePage(input: { pageSize: number; pageToken: string | null }): Promise<InstancePage> {
      const client = temporal();
      const res = await client.workflowService.listWorkflowExecutions({
        namespace: client.options.namespace,
        query: ENTITY_QUERY,
        pageSize: Math.max(1, Math.min(1000, Math.floor(input.pageSize))),
        nextPageToken: input.pageToken ? Buffer.from(input.pageToken, 'base64') : undefined,
      });
      const instances: ListedInstance[] = [];
      for (const e of res.executions ?? []) {
        const instance = instanceFromWorkflowId(e.execution?.workflowId ?? '');
        if (!instance) continue;
        const fields = e.searchAttributes?.indexedFields as Record<string, { data?: Uint8Array | null }> | undefined;
        instances.push({ instance, state: keyword(fields, STATE_KEY.name), step: keyword(fields, STEP_KEY.name) });
      }
      const token =
        res.nextPageToken && res.nextPageToken.length ? Buffer.from(res.nextPageToken).toString('base64') : null;
      return { instances, nextPageToken: token };
    },

    /**
     * Asks the instance's entity to run its check (and, with `enforce`, a repair conditional on nothing having
     * happened since). An entity that is busy or was never enabled says so; that is an outcome, not a failure.
     */
    async checkViaEntity(input: {
      instance: string;
      enforce: boolean;
      requestId: string;
    }): Promise<EntityCheckOutcome> {
      const handle = temporal().workflow.getHandle(workflowIdFor(input.instance));
      try {
        const result = await handle.executeUpdate(checkUpdate, {
          args: [{ requestId: input.requestId, enforce: input.enforce }],
          updateId: input.requestId,
        });
        return { instance: input.instance, outcome: 'checked', result };
      } catch (err) {
        if (err instanceof WorkflowUpdateFailedError) {
          return { instance: input.instance, outcome: 'busy', message: describeFailure(err).slice(0, 500) };
        }
        throw err;
      }
    },
  };
}
