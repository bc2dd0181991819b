/**
 * Fleet activities: a page of instances from visibility (small, whatever the fleet's size) and the invariant check
 * asked of an instance's own entity, which decides on any repair with what it knows now, not what a listing said.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Client } from '@temporalio/client';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { checkUpdate } from '../contract/messages';
import { describeFailure } from '../contract/failures';
import { instanceFromWorkflowId, workflowIdFor } from '../lib/instance';
import { ENTITY_QUERY, STATE_KEY, STEP_KEY } from '../lib/search-attributes';
import type { CheckResult, Finding } from '../lib/types';

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

/**
 * One instance's outcome in a batched fleet check: a few dozen bytes, plus the problems of a drifted instance only
 * while the report still lists drifted instances one by one (`details`), so a chunk's result stays small.
 */
export type EntityCheckSummary =
  | { instance: string; outcome: 'healthy' }
  | { instance: string; outcome: 'drifted'; repairRequested: boolean; problems?: Finding[] }
  | { instance: string; outcome: 'busy' }
  | { instance: string; outcome: 'error'; error: string };

/** Input of `checkPageViaEntities`. */
export interface EntityChecksInput {
  instances: string[];
  enforce: boolean;
  /** The fleet run's id: update ids are `fleet-<runId>-<instance>`, so a retried activity never checks twice. */
  runId: string;
  /** Updates in flight at once. */
  concurrency: number;
  /** Drifted instances whose problems are returned (the report's remaining slots); the rest only count. */
  details: number;
}

/** Longest wait for one entity's check update (its check activity is bounded by the CHECK policy, 70 s). */
export const ENTITY_CHECK_DEADLINE_MS = 150_000;

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

/** Heartbeats (the SDK throttles what reaches the server), so a killed worker's chunk is retried soon. */
function beat(done: number): void {
  try {
    Context.current().heartbeat(done);
  } catch {
    // Outside an activity (unit tests): nothing to report to.
  }
}

/** Builds the fleet activities. */
export function createFleetActivities(deps: { temporal?: Client }) {
  function temporal(): Client {
    if (!deps.temporal) throw ApplicationFailure.nonRetryable('no Temporal client in the activity deps', 'ConfigError');
    return deps.temporal;
  }
  /** Sends one check update; the update id makes a second send (a retried activity) return the first result. */
  async function askEntity(instance: string, enforce: boolean, requestId: string): Promise<EntityCheckOutcome> {
    const client = temporal();
    const handle = client.workflow.getHandle(workflowIdFor(instance));
    try {
      // A deadline, so an entity whose worker never answers costs this instance an error, not the whole chunk.
      const result = await client.withDeadline(Date.now() + ENTITY_CHECK_DEADLINE_MS, () =>
        handle.executeUpdate(checkUpdate, { args: [{ requestId, enforce }], updateId: requestId }),
      );
      return { instance, outcome: 'checked', result };
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) {
        return { instance, outcome: 'busy', message: describeFailure(err).slice(0, 500) };
      }
      throw err;
    }
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
      return askEntity(input.instance, input.enforce, input.requestId);
    },

    /**
     * Asks each listed entity for its check (one activity for a chunk of a page instead of one per instance: each
     * activity is a billed action), `concurrency` at a time, heartbeating after each. Returns a compact outcome per
     * instance, in the order given; a failed update is that instance's error, never the chunk's.
     */
    async checkPageViaEntities(input: EntityChecksInput): Promise<EntityCheckSummary[]> {
      const out: EntityCheckSummary[] = new Array(input.instances.length);
      let details = Math.max(0, input.details);
      let next = 0;
      const worker = async () => {
        while (next < input.instances.length) {
          const k = next++;
          const instance = input.instances[k];
          try {
            const requestId = `fleet-${input.runId}-${instance}`;
            // One quick second try for a transport failure: the update id makes it safe, and it spares the chunk.
            const r = await askEntity(instance, input.enforce, requestId).catch(async () => {
              await new Promise((ok) => setTimeout(ok, 1000));
              return askEntity(instance, input.enforce, requestId);
            });
            if (r.outcome !== 'checked') out[k] = { instance, outcome: 'busy' };
            else {
              const problems = r.result.findings.filter((f) => !f.ok);
              const repairRequested = r.result.repairRequestId !== null;
              if (problems.length === 0) out[k] = { instance, outcome: 'healthy' };
              else if (details-- > 0) out[k] = { instance, outcome: 'drifted', repairRequested, problems };
              else out[k] = { instance, outcome: 'drifted', repairRequested };
            }
          } catch (err) {
            const error = (err instanceof Error ? err.message : String(err)).slice(0, 300);
            out[k] = { instance, outcome: 'error', error };
          }
          beat(k);
        }
      };
      const width = Math.max(1, Math.min(50, Math.floor(input.concurrency), input.instances.length));
      await Promise.all(Array.from({ length: width }, worker));
      return out;
    },
  };
}
