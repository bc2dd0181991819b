/**
 * Makes a retrying step visible: workflow code cannot see activity retries, so an activity of the instance workflow
 * tells its workflow itself, once, on its third attempt, with a `stuck` signal (activity name,
 * attempt, time; never the error, which may quote a vendor). The workflow sets ManagedSmtpStuck and says so in the
 * Web UI until the step moves on. Once, not periodically: a step stuck for months must add nothing to the history
 * while nothing changes (Pending Activities shows the current attempt). Best effort: a failed signal never fails
 * the activity.
 */
import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { STUCK_AFTER_ATTEMPTS } from '../lib/types';
import { stuckSignal } from '../contract/messages';

/** Whether this attempt should report. */
export function shouldReport(attempt: number): boolean {
  return attempt === STUCK_AFTER_ATTEMPTS;
}

function report(temporal: Client): void {
  let info;
  try {
    info = Context.current().info;
  } catch {
    return; // outside an activity
  }
  if (info.workflowType !== 'managedSmtpWorkflow' || !info.workflowExecution || !shouldReport(info.attempt)) return;
  temporal.workflow
    .getHandle(info.workflowExecution.workflowId)
    .signal(stuckSignal, { activity: info.activityType, attempt: info.attempt, at: new Date().toISOString() })
    .catch(() => undefined);
}

/** Wraps activities so that retried ones report to their workflow. Without a Temporal client, returns them as they are. */
export function reportingRetries<T extends Record<string, (...args: never[]) => Promise<unknown>>>(
  acts: T,
  temporal: Client | undefined,
): T {
  if (!temporal) return acts;
  const wrapped: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(acts)) {
    wrapped[name] = (...args: never[]) => {
      report(temporal);
      return fn(...args);
    };
  }
  return wrapped as T;
}
