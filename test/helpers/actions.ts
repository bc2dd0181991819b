/**
 * Temporal Cloud actions and payload sizes as histories show them, counted the same way by the bench
 * (scripts/bench.ts) and the tests. Heartbeats are billed too but never appear in a history: count them apart.
 */
import { temporal } from '@temporalio/proto';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** History events that are one billed action each (activity retries add one per extra attempt). */
export const BILLABLE_EVENTS: ReadonlySet<string> = new Set([
  'EVENT_TYPE_WORKFLOW_EXECUTION_STARTED',
  'EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED',
  'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED',
  'EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES',
  'EVENT_TYPE_TIMER_STARTED',
  'EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED',
  'EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED',
  'EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED',
  'EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW',
  'EVENT_TYPE_MARKER_RECORDED',
]);

/** The name of an event's type, e.g. EVENT_TYPE_TIMER_STARTED. */
export const eventType = (e: HistoryEvent): string => temporal.api.enums.v1.EventType[e.eventType ?? 0];

/** Billed actions recorded in these events. */
export function billableActions(events: HistoryEvent[]): number {
  let actions = 0;
  for (const e of events) {
    if (BILLABLE_EVENTS.has(eventType(e))) actions++;
    const attempt = e.activityTaskStartedEventAttributes?.attempt ?? 1;
    if (attempt > 1) actions += attempt - 1;
  }
  return actions;
}

/**
 * The billed actions an entity history records for one update, from its acceptance to its completion: the update
 * itself, the activities (and retries) it ran, and whatever else the entity did meanwhile. Null if not in `events`.
 */
export function actionsOfUpdate(events: HistoryEvent[], updateId: string): number | null {
  const from = events.findIndex(
    (e) => e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.meta?.updateId === updateId,
  );
  if (from < 0) return null;
  const to = events.findIndex(
    (e, k) => k > from && e.workflowExecutionUpdateCompletedEventAttributes?.meta?.updateId === updateId,
  );
  return billableActions(events.slice(from, to < 0 ? undefined : to + 1));
}

function payloadBytes(p: temporal.api.common.v1.IPayload): number {
  let n = p.data?.length ?? 0;
  for (const [k, v] of Object.entries(p.metadata ?? {})) n += k.length + (v?.length ?? 0);
  return n;
}

/** Calls `visit` with the bytes of every set of payloads in `value` (what Temporal's payload limits apply to). */
export function scanPayloads(value: unknown, visit: (bytes: number) => void, depth = 0): void {
  if (!value || typeof value !== 'object' || depth > 12 || value instanceof Uint8Array) return;
  for (const [k, v] of Object.entries(value)) {
    if (k === 'payloads' && Array.isArray(v)) {
      visit((v as temporal.api.common.v1.IPayload[]).reduce((s, p) => s + payloadBytes(p), 0));
    } else scanPayloads(v, visit, depth + 1);
  }
}

/** The largest set of payloads one event of these carries, and that event's type. */
export function largestPayload(events: HistoryEvent[]): { bytes: number; event: string } {
  let largest = { bytes: 0, event: '-' };
  for (const e of events) {
    scanPayloads(e, (bytes) => {
      if (bytes > largest.bytes) largest = { bytes, event: eventType(e) };
    });
  }
  return largest;
}
