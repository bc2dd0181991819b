/**
 * The entity's state and the one method that changes it and publishes it (search attributes and the Web UI's
 * current details together). Operations (one file each beside this one) read and write `status` and call `publish`.
 */
import { CancellationScope, setCurrentDetails, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { BOUNCE_ALERT_KEY, INSTANCE_KEY, STATE_KEY, STEP_KEY, STUCK_KEY } from '../../lib/search-attributes';
import type { CheckResult, InstanceState, InstanceStatus, RequestRecord, Step, StuckReport } from '../../lib/types';
import type { QueuedRequest, RejectedMessage, RequestOutcome } from '../../contract/types';
import { describeFailure } from '../../contract/failures';
import type { ProtectionHost } from '../protection';
import { detailsOf } from './details';

/** How many requests the status keeps. */
export const MAX_REQUEST_RECORDS = 20;
/** How many finished requests the `request` query remembers (so a waiter past 20 newer requests still sees its own). */
export const MAX_OUTCOMES = 200;
/** How many malformed messages the status keeps. */
export const MAX_REJECTED = 20;
/** How many GDPR audit records the status keeps. */
export const MAX_AUDIT_RECORDS = 50;
/** Continue as new before the history gets long, even if the server has not suggested it yet. */
export const MAX_HISTORY_EVENTS = 2_000;

/** State carried across continue-as-new. */
export interface CarriedState {
  status: InstanceStatus;
  queue: QueuedRequest[];
  /** Finished requests, newest last (bounded). */
  outcomes?: RequestOutcome[];
}

/** The workflow's input. */
export interface ManagedSmtpInput {
  /** The instance; the workflow id (`managed-smtp/<instance>`) decides, this is only checked against it. */
  instance: string;
  /** Set by continue-as-new. */
  carried?: CarriedState;
}

/** A fresh status. */
export function emptyStatus(instance: string): InstanceStatus {
  return {
    instance,
    state: 'disabled',
    step: null,
    subaccountId: null,
    keyId: null,
    secretVersion: null,
    sender: null,
    lastTestEmail: null,
    error: null,
    warnings: [],
    spec: null,
    previousSettings: null,
    updatedAt: new Date().toISOString(),
    requests: [],
    sendingDomain: null,
    ipPool: null,
    generation: 0,
    rejected: [],
  };
}

/** What the reputation protection runner (workflows/protection.ts) may touch. */
export function protectionHost(e: Entity): ProtectionHost {
  return { status: e.status, refresh: () => e.refreshDetails(), describe: describeFailure };
}

/** One instance's entity: its status, its queue and what is running now. */
export class Entity {
  readonly status: InstanceStatus;
  readonly queue: QueuedRequest[];
  readonly outcomes: RequestOutcome[];
  /** The scope of the running operation, which a disable cancels. */
  current: { kind: QueuedRequest['kind']; scope: CancellationScope } | null = null;
  /** What a day-two step belongs to, for the Web UI (enable steps show their position instead). */
  operation: string | null = null;
  /** Results of queued requests whose update waits for them (check, sending-domain add/cancel), taken once. */
  readonly results = new Map<string, unknown>();
  /** Set when an enable that created the subaccount was cancelled: the disable that follows terminates it. */
  terminateOnDisable = false;
  /** Requests the running operation leaves open (a sending domain waiting for verification finishes later). */
  readonly keepOpen = new Set<string>();

  constructor(instance: string, carried?: CarriedState) {
    this.status = carried?.status ?? emptyStatus(instance);
    this.status.generation ??= 0;
    this.status.rejected ??= [];
    this.queue = carried?.queue ?? [];
    this.outcomes = carried?.outcomes ?? [];
  }

  /** Changes state and step, and upserts the search attributes and the UI's current details with them. */
  publish(state: InstanceState, step: Step | null): void {
    const s = this.status;
    s.state = state;
    s.step = step;
    s.updatedAt = new Date().toISOString();
    // Moving on clears a stuck report, in the same upsert.
    const wasStuck = !!s.retrying;
    s.retrying = null;
    upsertSearchAttributes([
      { key: INSTANCE_KEY, value: s.instance },
      { key: STATE_KEY, value: state },
      { key: STEP_KEY, value: step ?? 'none' },
      ...(wasStuck ? [{ key: STUCK_KEY, value: false }] : []),
    ]);
    this.refreshDetails();
  }

  /** Re-renders the Web UI's current details (for changes that do not move state or step). */
  refreshDetails(): void {
    setCurrentDetails(detailsOf(this.status, this.operation));
  }

  /** An activity of the current step reported it keeps failing; a repeated report changes nothing. */
  onStuck(report: StuckReport): void {
    const s = this.status;
    if (s.step === null || s.retrying?.activity === report.activity) return;
    s.retrying = report;
    upsertSearchAttributes([{ key: STUCK_KEY, value: true }]);
    this.refreshDetails();
  }

  /** Raises or clears the bounce alert mark. */
  setAlert(active: boolean): void {
    upsertSearchAttributes([{ key: BOUNCE_ALERT_KEY, value: active }]);
    this.refreshDetails();
  }

  /** An operator request was accepted: anything a check saw before it is stale. */
  bumpGeneration(): number {
    this.status.generation = (this.status.generation ?? 0) + 1;
    return this.status.generation;
  }

  /** Records a received request; with an outcome it is finished at once (rejected, dropped). */
  record(kind: RequestRecord['kind'], id: string, outcome?: string): void {
    const rec: RequestRecord = { id, kind, receivedAt: new Date().toISOString() };
    this.status.requests.push(rec);
    if (this.status.requests.length > MAX_REQUEST_RECORDS) this.status.requests.shift();
    if (outcome) this.finish(id, outcome, kind);
  }

  /** Marks a request finished with `outcome` (default: the state it left). A finished request stays finished. */
  finish(id: string, outcome?: string, kind?: RequestRecord['kind']): void {
    const at = new Date().toISOString();
    const rec = this.status.requests.find((r) => r.id === id);
    const text = outcome ?? this.status.state;
    if (rec && !rec.finishedAt) {
      rec.finishedAt = at;
      rec.outcome = text;
    }
    if (this.outcomes.some((o) => o.id === id)) return;
    this.outcomes.push({ id, kind: kind ?? rec?.kind ?? 'enable', pending: false, outcome: text, finishedAt: at });
    if (this.outcomes.length > MAX_OUTCOMES) this.outcomes.shift();
  }

  /** What the `request` query answers. */
  outcomeOf(id: string): RequestOutcome | null {
    const done = this.outcomes.find((o) => o.id === id);
    if (done) return done;
    const queued = this.queue.find((q) => q.request.requestId === id);
    if (queued) return { id, kind: queued.kind, pending: true };
    const rec = this.status.requests.find((r) => r.id === id);
    return rec ? { id, kind: rec.kind, pending: !rec.finishedAt, outcome: rec.outcome } : null;
  }

  /** A message that did not parse: recorded (bounded) and otherwise ignored. */
  reject(message: string, payload: unknown, problem: string): void {
    const id =
      payload && typeof payload === 'object' && typeof (payload as { requestId?: unknown }).requestId === 'string'
        ? String((payload as { requestId: string }).requestId).slice(0, 100)
        : null;
    const entry: RejectedMessage = {
      at: new Date().toISOString(),
      message,
      requestId: id,
      problem: problem.slice(0, 300),
    };
    const list = (this.status.rejected ??= []);
    list.push(entry);
    if (list.length > MAX_REJECTED) list.shift();
    if (id && (message === 'enable' || message === 'disable')) this.record(message, id, `rejected: ${entry.problem}`);
  }

  /** Drops queued requests that `disable` makes moot, recording them as superseded. */
  supersedeForDisable(): void {
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const q = this.queue[i];
      // An operator's protection configure is not made moot by disable (it has no vendor effect): it still runs.
      const keep =
        q.kind === 'disable' ||
        (q.kind === 'sending-domain' && q.request.action === 'remove') ||
        (q.kind === 'protection' && q.request.input?.kind === 'configure');
      if (keep) continue;
      this.queue.splice(i, 1);
      if (q.kind === 'protection') continue; // a reading or a clear: disable resets the ladder anyway
      this.finish(q.request.requestId, 'superseded by disable', q.kind);
      if (q.kind === 'check') this.results.set(q.request.requestId, this.supersededCheck());
      else if (q.kind === 'sending-domain') this.results.set(q.request.requestId, new Error('superseded by disable'));
    }
  }

  private supersededCheck(): CheckResult {
    return {
      instance: this.status.instance,
      state: this.status.state,
      at: new Date().toISOString(),
      findings: [{ check: 'check', ok: false, message: 'superseded by disable before it ran', repairable: false }],
      repairRequestId: null,
    };
  }

  /** Whether the run should continue as new (between requests, or mid-request when the history grew long). */
  shouldContinueAsNew(): boolean {
    const info = workflowInfo();
    return info.continueAsNewSuggested || info.historyLength > MAX_HISTORY_EVENTS;
  }

  /** What continue-as-new carries. */
  carry(): CarriedState {
    return { status: this.status, queue: this.queue, outcomes: this.outcomes };
  }
}
