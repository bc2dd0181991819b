/**
 * The managed SMTP entity workflow: one long-lived execution per instance (`managed-smtp/<instance>`) that owns the
 * instance's state and serialises every request for it.
 *
 * - `enable` (signal, usually with start) provisions: inspect site config → ensure subaccount → mint and store the
 *   send key → patch site config → send a test email. A compensation is registered before each step, so a failure
 *   undoes exactly what was done and the instance ends `failed` with a readable error.
 * - `disable` (signal) runs the compensating steps: restore the config keys enable replaced, revoke the send key,
 *   delete the secret, suspend the subaccount. A disable that arrives while enable is stuck cancels it first.
 * - `status` (query) returns the state; search attributes and the Web UI's current details say the same in words.
 * - `sendingDomain` (update) adds a custom sending domain, verified by its own workflow (`workflows/domains.ts`) so
 *   that days of waiting never block this queue; once verified, the sender switch runs here, serialised with the
 *   rest. `ipPool` (update) assigns or unassigns the subaccount's dedicated IP pool. Both are recorded in the status,
 *   used by every later (re-)provisioning and covered by the invariant check.
 *
 * Workflow code is deterministic and does no I/O: everything that touches the world is an activity.
 */
import {
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  defineUpdate,
  getExternalWorkflowHandle,
  isCancellation,
  ParentClosePolicy,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
  type ActivityOptions,
} from '@temporalio/workflow';
import type { Activities, SiteRef } from '../activities';
import { instanceNameProblem } from '../lib/instance';
import { adminTokenSecretProblem, egressIpsProblem, parseUrlParts } from '../lib/allow-list';
import { BOUNCE_ALERT_KEY, INSTANCE_KEY, STATE_KEY, STEP_KEY, STUCK_KEY } from '../lib/search-attributes';
import { hasRedactedSecret, type EmailSettings } from '../lib/site-config';
import type {
  CheckResult,
  DeliverabilityAlert,
  DisableRequest,
  GdprAuditRecord,
  StuckReport,
  EnableRequest,
  EnableSpec,
  InstanceState,
  InstanceStatus,
  IpPoolRequest,
  RequestRecord,
  SendingDomainAccepted,
  SendingDomainRequest,
  Step,
} from '../lib/types';
import { IP_POOL_PATTERN, SENDING_DOMAIN_PATTERN } from '../lib/types';
import { COMPENSATION, PROVISIONING, TEST_EMAIL } from './policies';
import {
  domainWorkflowIdFor,
  managedSmtpDomainWorkflow,
  sendingDomainEventSignal,
  type SendingDomainEvent,
} from './domains';

/** Starts or re-runs provisioning. */
export const enableSignal = defineSignal<[EnableRequest]>('enable');
/** Undoes everything provisioning did. */
export const disableSignal = defineSignal<[DisableRequest]>('disable');
/** The instance's status. */
export const statusQuery = defineQuery<InstanceStatus>('status');
/** Runs the invariant check; with `enforce`, queues a repair when something repairable drifted. */
export const checkUpdate = defineUpdate<CheckResult, [{ requestId: string; enforce: boolean }]>('check');
/** Queues a send-key rotation; returns at once with the request id (wait on the status). */
export const rotateKeyUpdate = defineUpdate<{ requestId: string }, [{ requestId: string }]>('rotateKey');
/** Raises or clears the instance's bounce-rate alert (sent by the bounce alert workflow). */
export const deliverabilityAlertSignal = defineSignal<[DeliverabilityAlert]>('deliverabilityAlert');
/** Sent by an activity of this workflow that keeps failing (from its third attempt). */
export const stuckSignal = defineSignal<[StuckReport]>('stuck');
/** Appends a GDPR deletion to the instance's audit trail (sent by the GDPR deletion workflow). */
export const gdprAuditSignal = defineSignal<[GdprAuditRecord]>('gdprAudit');
/**
 * Adds a custom sending domain (starts `managed-smtp-domain/<instance>`, which waits for DNS verification) or
 * removes it (the sender goes back to the shared domain first; a domain still waiting is cancelled and deleted).
 */
export const sendingDomainUpdate = defineUpdate<SendingDomainAccepted, [SendingDomainRequest]>('sendingDomain');
/** Queues an IP pool assignment (or, with `pool: null`, unassignment); returns the request id at once. */
export const ipPoolUpdate = defineUpdate<{ requestId: string }, [IpPoolRequest]>('ipPool');

/** A request waiting to run. */
export type QueuedRequest =
  | { kind: 'enable'; request: EnableRequest }
  | { kind: 'disable'; request: DisableRequest }
  | { kind: 'rotate'; request: { requestId: string } }
  | { kind: 'sending-domain'; request: { requestId: string; action: 'switch' | 'remove' } }
  | { kind: 'ip-pool'; request: IpPoolRequest };

/** State carried across continue-as-new. */
export interface CarriedState {
  status: InstanceStatus;
  queue: QueuedRequest[];
}

/** The workflow's input. */
export interface ManagedSmtpInput {
  instance: string;
  /** Set by continue-as-new. */
  carried?: CarriedState;
}

/** How many requests the status keeps. */
const MAX_REQUEST_RECORDS = 20;
/** How many GDPR audit records the status keeps. */
const MAX_AUDIT_RECORDS = 50;
/** Continue as new before the history gets long, even if the server has not suggested it yet. */
const MAX_HISTORY_EVENTS = 5_000;

const NO_SETTINGS: EmailSettings = { address: null, smtp: null, senderName: null };

const STEP_TEXT: Record<Step, string> = {
  'inspect-site-config': 'reading the instance site configuration',
  'ensure-subaccount': 'creating or reactivating the SparkPost subaccount',
  'store-send-key': 'minting the send key and storing it in Secret Manager',
  'patch-site-config': 'writing email.address and email.smtp into the site configuration',
  'send-test-email': 'asking the instance to send a test email',
  'restore-site-config': 'restoring the email settings the instance had before',
  'revoke-send-key': 'revoking the SparkPost send key',
  'delete-secret': 'destroying and deleting the send-key secret',
  'release-subaccount': 'suspending the SparkPost subaccount',
  'mint-new-key': 'minting a new send key and storing it as a new secret version',
  'retire-old-key': 'revoking the old send key and destroying its secret version',
  'restore-old-key': 'rotation failed: putting the old key back in place',
  'switch-sender': 'switching email.address to the verified custom sending domain',
  'restore-sender': 'switching email.address back to the shared sending domain',
  'delete-sending-domain': 'deleting the custom sending domain at SparkPost',
  'assign-ip-pool': "setting the SparkPost subaccount's dedicated IP pool",
};
const ENABLE_STEPS: Step[] = [
  'inspect-site-config',
  'ensure-subaccount',
  'store-send-key',
  'patch-site-config',
  'send-test-email',
];

/**
 * Sending-domain and IP-pool changes retry transient errors for a few minutes, not forever: they run in the queue, and
 * a vendor outage must end in a clean rollback rather than hold up disable or rotate behind them.
 */
const DAY_TWO: ActivityOptions = { ...PROVISIONING, retry: { ...PROVISIONING.retry, maximumAttempts: 8 } };

const provisioning = proxyActivities<Activities>(PROVISIONING);
const dayTwo = proxyActivities<Activities>(DAY_TWO);
const testing = proxyActivities<Activities>(TEST_EMAIL);
const compensating = proxyActivities<Activities>(COMPENSATION);

/** A compensating (or disabling) step. */
interface UndoStep {
  step: Step;
  run: () => Promise<unknown>;
}

/** A readable one-line message from any failure, preferring the activity's own message. */
export function describeFailure(err: unknown): string {
  let e: unknown = err;
  // ActivityFailure → ApplicationFailure/TimeoutFailure: the innermost cause says what happened.
  for (let i = 0; i < 5 && e instanceof Error && e.cause instanceof Error; i++) e = e.cause;
  if (e instanceof ApplicationFailure && e.type) return `${e.message} (${e.type})`;
  return e instanceof Error ? e.message : String(e);
}

function emptyStatus(instance: string): InstanceStatus {
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
  };
}

function specProblem(spec: EnableSpec | undefined): string | null {
  if (!spec || typeof spec !== 'object') return 'missing spec';
  for (const field of ['sourcegraphUrl', 'gcpProject', 'adminTokenSecret'] as const) {
    if (typeof spec[field] !== 'string' || spec[field].length === 0) return `${field} must be a non-empty string`;
  }
  // Issue 10: the admin token only from the instance's own project; the URL's shape (the allow-list itself, which
  // needs the worker's MANAGED_SMTP_SOURCEGRAPH_URLS and DNS, is checked by the activity before any request).
  const url = parseUrlParts(spec.sourcegraphUrl);
  if (url.problem) return `sourcegraphUrl is refused: ${url.problem}`;
  return (
    adminTokenSecretProblem(spec.adminTokenSecret, spec.gcpProject) ??
    (spec.egressIps === undefined ? null : egressIpsProblem(spec.egressIps))
  );
}

/** The entity: state, the request queue, and the one method that changes state (with search attributes). */
class Instance {
  readonly status: InstanceStatus;
  readonly queue: QueuedRequest[];
  private enableScope: CancellationScope | null = null;
  /** What a day-two step belongs to, for the Web UI (enable steps show their position instead). */
  private operation: string | null = null;

  constructor(input: ManagedSmtpInput) {
    this.status = input.carried?.status ?? emptyStatus(input.instance);
    this.queue = input.carried?.queue ?? [];
  }

  /** Changes state and step, and upserts the search attributes and the UI's current details with them. */
  setState(state: InstanceState, step: Step | null): void {
    this.status.state = state;
    this.status.step = step;
    this.status.updatedAt = new Date().toISOString();
    // Moving on clears a stuck report, in the same upsert (an instance that never got stuck upserts as before).
    const wasStuck = !!this.status.retrying;
    this.status.retrying = null;
    upsertSearchAttributes([
      { key: INSTANCE_KEY, value: this.status.instance },
      { key: STATE_KEY, value: state },
      { key: STEP_KEY, value: step ?? 'none' },
      ...(wasStuck ? [{ key: STUCK_KEY, value: false }] : []),
    ]);
    setCurrentDetails(this.details());
  }

  /** An activity of the current step reported it keeps failing: make it visible until the step moves on. */
  onStuck(report: StuckReport): void {
    if (this.status.step === null) return; // a late report after the step finished
    this.status.retrying = report;
    upsertSearchAttributes([{ key: STUCK_KEY, value: true }]);
    setCurrentDetails(this.details());
  }

  /** Markdown for the Web UI: where the instance is, in words. */
  details(): string {
    const s = this.status;
    const lines = [`**${s.instance}**: ${s.state}`];
    if (s.step) {
      const n = ENABLE_STEPS.indexOf(s.step);
      const position = this.operation ?? (n >= 0 ? `step ${n + 1}/${ENABLE_STEPS.length}` : 'undoing');
      lines.push(`${position} \`${s.step}\`: ${STEP_TEXT[s.step]}`);
    }
    const d = s.sendingDomain;
    const facts = [
      s.subaccountId !== null ? `subaccount ${s.subaccountId}` : null,
      s.secretVersion ? `secret ${s.secretVersion}` : null,
      s.sender ? `sender ${s.sender}` : null,
      d ? `sending domain ${d.domain} (${d.state})` : null,
      s.ipPool ? `IP pool ${s.ipPool}` : null,
    ].filter(Boolean);
    if (facts.length) lines.push(facts.join(' · '));
    if (d?.state === 'pending-verification' && !d.verifiedAt) {
      const publish = d.dnsRecords.map((r) => `${r.type} \`${r.name}\``).join(', ');
      lines.push(
        `waiting for DNS verification of ${d.domain} in \`${d.workflowId ?? domainWorkflowIdFor(s.instance)}\`` +
          (publish ? `: publish ${publish}` : ''),
      );
    }
    if (s.lastTestEmail)
      lines.push(`last test email ${s.lastTestEmail.ok ? 'passed' : 'failed'} at ${s.lastTestEmail.at}`);
    if (s.retrying) {
      lines.push(
        `**stuck**: \`${s.retrying.activity}\` keeps failing and retrying (on attempt ${s.retrying.attempt} at ` +
          `${s.retrying.at}); Pending Activities shows the current attempt and the last error. ` +
          '`smtpctl disable` gives up and cleans up.',
      );
    }
    if (s.error) lines.push(`error: ${s.error}`);
    if (s.deliverabilityAlert) {
      const a = s.deliverabilityAlert;
      lines.push(`bounce alert: ${(a.bounceRate * 100).toFixed(1)}% of ${a.accepted} accepted since ${a.from}`);
    }
    for (const w of s.warnings) lines.push(`warning: ${w}`);
    return lines.join('\n\n');
  }

  private record(kind: RequestRecord['kind'], id: string, outcome?: string): RequestRecord {
    const rec: RequestRecord = { id, kind, receivedAt: new Date().toISOString() };
    if (outcome) {
      rec.outcome = outcome;
      rec.finishedAt = rec.receivedAt;
    }
    this.status.requests.push(rec);
    if (this.status.requests.length > MAX_REQUEST_RECORDS) this.status.requests.shift();
    return rec;
  }

  private finish(id: string): void {
    const rec = this.status.requests.find((r) => r.id === id);
    if (rec) {
      rec.finishedAt = new Date().toISOString();
      rec.outcome = this.status.state;
    }
  }

  onEnable(request: EnableRequest): void {
    const problem = specProblem(request?.spec) ?? instanceNameProblem(this.status.instance);
    if (problem) {
      this.record('enable', String(request?.requestId ?? 'unknown'), `rejected: ${problem}`);
      return;
    }
    this.record('enable', request.requestId);
    this.queue.push({ kind: 'enable', request });
  }

  onDisable(request: DisableRequest): void {
    this.record('disable', request.requestId);
    // Enables queued before this disable would only be undone again: drop them.
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const q = this.queue[i];
      if (q.kind === 'enable') {
        this.queue.splice(i, 1);
        const rec = this.status.requests.find((r) => r.id === q.request.requestId);
        if (rec) {
          rec.outcome = 'superseded by disable';
          rec.finishedAt = new Date().toISOString();
        }
      }
    }
    this.queue.push({ kind: 'disable', request });
    // A running enable (possibly stuck retrying) is cancelled: its compensations undo what it did.
    this.enableScope?.cancel();
  }

  onAlert(alert: DeliverabilityAlert): void {
    this.status.deliverabilityAlert = alert.active ? alert : null;
    upsertSearchAttributes([{ key: BOUNCE_ALERT_KEY, value: alert.active }]);
    setCurrentDetails(this.details());
  }

  onGdprAudit(record: GdprAuditRecord): void {
    const audit = (this.status.gdprAudit ??= []);
    if (audit.some((r) => r.requestId === record.requestId)) return; // a retried signal
    audit.push(record);
    if (audit.length > MAX_AUDIT_RECORDS) audit.shift();
  }

  private finishWith(id: string, outcome?: string): void {
    const rec = this.status.requests.find((r) => r.id === id);
    if (rec && !rec.finishedAt) {
      rec.finishedAt = new Date().toISOString();
      rec.outcome = outcome ?? this.status.state;
    }
  }

  /** Rejects a sending-domain request that cannot run now (the update validator). */
  validateSendingDomain(req: SendingDomainRequest): void {
    const s = this.status;
    const d = s.sendingDomain ?? null;
    if (!req || typeof req.requestId !== 'string' || req.requestId === '') throw new Error('missing requestId');
    if (req.action === 'add') {
      if (typeof req.domain !== 'string' || !SENDING_DOMAIN_PATTERN.test(req.domain)) {
        throw new Error(`invalid domain ${JSON.stringify(req.domain)}: must be a lowercase domain name`);
      }
      if (s.state !== 'active' || s.subaccountId === null || !s.spec || !s.secretVersion) {
        throw new Error(`${s.instance} is ${s.state}: a sending domain can only be added to an active instance`);
      }
      if (d) throw new Error(`${s.instance} already has sending domain ${d.domain} (${d.state}); remove it first`);
      return;
    }
    if (req.action !== 'remove') throw new Error('action must be add or remove');
    if (!d) throw new Error(`${s.instance} has no custom sending domain`);
    if (d.state === 'pending-verification' && !d.verifiedAt) return; // cancelling the wait is always possible
    if (s.state !== 'active' && s.state !== 'disabled') {
      throw new Error(`${s.instance} is ${s.state}: remove the sending domain once it is active or disabled`);
    }
    if (this.queue.some((q) => q.kind === 'sending-domain' && q.request.action === 'remove')) {
      throw new Error(`the removal of ${d.domain} is already queued`);
    }
  }

  /** Starts the verification workflow, cancels it, or queues a removal. */
  async onSendingDomain(req: SendingDomainRequest): Promise<SendingDomainAccepted> {
    const s = this.status;
    if (req.action === 'add') {
      const workflowId = domainWorkflowIdFor(s.instance);
      const subaccountId = s.subaccountId!;
      this.record('sending-domain', req.requestId);
      s.sendingDomain = {
        domain: req.domain,
        state: 'pending-verification',
        dnsRecords: [],
        requestedAt: new Date().toISOString(),
        requestId: req.requestId,
        workflowId,
      };
      setCurrentDetails(this.details());
      try {
        // An abandoned child: it outlives continue-as-new of this workflow and reports back by signal.
        await CancellationScope.nonCancellable(() =>
          startChild(managedSmtpDomainWorkflow, {
            workflowId,
            args: [
              {
                instance: s.instance,
                subaccountId,
                domain: req.domain,
                requestId: req.requestId,
                recheckSeconds: req.recheckSeconds,
                maxWaitSeconds: req.maxWaitSeconds,
              },
            ],
            parentClosePolicy: ParentClosePolicy.ABANDON,
            typedSearchAttributes: [
              { key: INSTANCE_KEY, value: s.instance },
              { key: STEP_KEY, value: 'create-sending-domain' },
            ],
            staticSummary: `Sending domain ${req.domain} for ${s.instance}`,
            staticDetails:
              `Creates ${req.domain} on SparkPost subaccount ${subaccountId} with a DKIM key, waits for its DNS ` +
              `verification, then managed-smtp/${s.instance} switches the sender to it`,
          }),
        );
      } catch (err) {
        const message = `could not start ${workflowId}: ${describeFailure(err)}`;
        s.sendingDomain = null;
        this.finishWith(req.requestId, `rejected: ${message}`);
        setCurrentDetails(this.details());
        throw ApplicationFailure.create({ message, nonRetryable: true });
      }
      return { requestId: req.requestId, workflowId, accepted: 'verification-started' };
    }
    const d = s.sendingDomain!;
    if (d.state === 'pending-verification' && !d.verifiedAt) {
      const workflowId = d.workflowId ?? domainWorkflowIdFor(s.instance);
      // The domain workflow deletes the unverified domain and reports back with a `failed` event.
      try {
        await getExternalWorkflowHandle(workflowId).cancel();
      } catch (err) {
        throw ApplicationFailure.create({
          message: `could not cancel ${workflowId}: ${describeFailure(err)}`,
          nonRetryable: true,
        });
      }
      return { requestId: d.requestId, workflowId, accepted: 'verification-cancelled' };
    }
    this.record('sending-domain', req.requestId);
    this.queue.push({ kind: 'sending-domain', request: { requestId: req.requestId, action: 'remove' } });
    return { requestId: req.requestId, accepted: 'removal-queued' };
  }

  /** Progress of the domain workflow: DNS records to show, verification (queues the switch), or its failure. */
  onDomainEvent(e: SendingDomainEvent): void {
    const s = this.status;
    const d = s.sendingDomain;
    if (!d || d.requestId !== e.requestId || d.domain !== e.domain) return; // stale: a request no longer tracked
    if (e.event === 'created') {
      d.dnsRecords = e.dnsRecords;
    } else if (e.event === 'verified') {
      if (d.verifiedAt) return; // a retried signal
      d.verifiedAt = e.at;
      delete d.workflowId;
      this.queue.push({ kind: 'sending-domain', request: { requestId: e.requestId, action: 'switch' } });
    } else {
      s.sendingDomain = null;
      s.lastSendingDomainChange = { requestId: e.requestId, at: e.at, ok: false, message: e.message };
      this.finishWith(e.requestId);
    }
    setCurrentDetails(this.details());
  }

  /** Rejects an IP pool request that cannot run (the update validator). */
  validateIpPool(req: IpPoolRequest): void {
    const s = this.status;
    if (!req || typeof req.requestId !== 'string' || req.requestId === '') throw new Error('missing requestId');
    if (req.pool !== null && (typeof req.pool !== 'string' || !IP_POOL_PATTERN.test(req.pool))) {
      throw new Error(`invalid pool ${JSON.stringify(req.pool)}: must be 1-20 of a-z, 0-9, _`);
    }
    if ((s.state !== 'active' && s.state !== 'disabled') || s.subaccountId === null) {
      throw new Error(`${s.instance} is ${s.state}: IP pools can be changed on an active or disabled instance`);
    }
  }

  /** Runs the check activity; a repair goes through the queue like any other request. */
  async onCheck(req: { requestId: string; enforce: boolean }): Promise<CheckResult> {
    const s = this.status;
    const findings = await provisioning.checkInstance({
      instance: s.instance,
      state: s.state,
      spec: s.spec!,
      subaccountId: s.subaccountId,
      keyId: s.keyId,
      sendingDomain: s.sendingDomain ? { domain: s.sendingDomain.domain, state: s.sendingDomain.state } : null,
      ...(s.ipPool !== undefined ? { ipPool: s.ipPool } : {}),
    });
    const problems = findings.filter((f) => !f.ok);
    let repairRequestId: string | null = null;
    if (req.enforce && problems.some((f) => f.repairable) && this.queue.length === 0) {
      repairRequestId = req.requestId;
      if (s.state === 'disabled') this.onDisable({ requestId: req.requestId, reason: 'check --enforce repair' });
      else this.onEnable({ requestId: req.requestId, spec: { ...s.spec!, force: false } });
    }
    s.lastCheck = { at: new Date().toISOString(), problems, repairRequestId };
    return { instance: s.instance, state: s.state, at: s.lastCheck.at, findings, repairRequestId };
  }

  async run(): Promise<void> {
    setHandler(statusQuery, () => this.status);
    setHandler(checkUpdate, (req) => this.onCheck(req), {
      validator: (_req) => {
        const s = this.status;
        if (!s.spec) throw new Error(`${s.instance} was never enabled: nothing to check`);
        if (s.state !== 'active' && s.state !== 'disabled') {
          throw new Error(`${s.instance} is ${s.state}: check an instance that is active or disabled`);
        }
      },
    });
    setHandler(
      rotateKeyUpdate,
      (req) => {
        this.record('rotate', req.requestId);
        this.queue.push({ kind: 'rotate', request: req });
        return { requestId: req.requestId };
      },
      {
        validator: (_req) => {
          const s = this.status;
          if (s.state !== 'active' || s.step !== null) {
            throw new Error(
              `${s.instance} is ${s.state}${s.step ? ` (${s.step})` : ''}: only an idle active instance's key can be rotated`,
            );
          }
          if (this.queue.length > 0) throw new Error(`${s.instance} has requests queued; rotate once they are done`);
        },
      },
    );
    setHandler(enableSignal, (req) => this.onEnable(req));
    setHandler(disableSignal, (req) => this.onDisable(req));
    setHandler(deliverabilityAlertSignal, (alert) => this.onAlert(alert));
    setHandler(gdprAuditSignal, (record) => this.onGdprAudit(record));
    setHandler(stuckSignal, (report) => this.onStuck(report));
    setHandler(sendingDomainUpdate, (req) => this.onSendingDomain(req), {
      validator: (req) => this.validateSendingDomain(req),
    });
    setHandler(
      ipPoolUpdate,
      (req) => {
        this.record('ip-pool', req.requestId);
        this.queue.push({
          kind: 'ip-pool',
          request: { requestId: req.requestId, pool: req.pool, create: !!req.create },
        });
        return { requestId: req.requestId };
      },
      { validator: (req) => this.validateIpPool(req) },
    );
    setHandler(sendingDomainEventSignal, (e) => this.onDomainEvent(e));
    if (this.status.requests.length === 0 && this.queue.length === 0) setCurrentDetails(this.details());

    for (;;) {
      await condition(() => this.queue.length > 0 || this.shouldContinueAsNew());
      const next = this.queue.shift();
      if (next?.kind === 'enable') await this.enable(next.request);
      else if (next?.kind === 'disable') await this.disable(next.request);
      else if (next?.kind === 'rotate') await this.rotate(next.request.requestId);
      else if (next?.kind === 'sending-domain' && next.request.action === 'switch') {
        await this.switchSender(next.request.requestId);
      } else if (next?.kind === 'sending-domain') await this.removeSendingDomain(next.request.requestId);
      else if (next?.kind === 'ip-pool') await this.setIpPool(next.request);
      if (next) this.finish(next.request.requestId);
      if (this.queue.length === 0 && this.shouldContinueAsNew()) {
        await condition(allHandlersFinished);
        await continueAsNew<typeof managedSmtpWorkflow>({
          instance: this.status.instance,
          carried: { status: this.status, queue: this.queue },
        });
      }
    }
  }

  private shouldContinueAsNew(): boolean {
    const info = workflowInfo();
    return info.continueAsNewSuggested || info.historyLength > MAX_HISTORY_EVENTS;
  }

  private site(): SiteRef {
    const spec = this.status.spec!;
    // gcpProject: the activity refuses an admin token outside the instance's own project (issue 10).
    return {
      sourcegraphUrl: spec.sourcegraphUrl,
      adminTokenSecret: spec.adminTokenSecret,
      gcpProject: spec.gcpProject,
    };
  }

  /** Runs undo steps in order; a step that fails does not stop the others. Returns what could not be undone. */
  private async undo(steps: UndoStep[], state: InstanceState): Promise<string[]> {
    const problems: string[] = [];
    for (const s of steps) {
      this.setState(state, s.step);
      try {
        await s.run();
      } catch (err) {
        problems.push(`${s.step}: ${describeFailure(err)}`);
      }
    }
    return problems;
  }

  private async enable(request: EnableRequest): Promise<void> {
    const spec = request.spec;
    const instance = this.status.instance;
    // A re-run on an active instance is a repair: it must not tear down a working instance if it fails.
    const wasActive = this.status.state === 'active';
    const firstEnable = this.status.subaccountId === null;
    this.status.spec = spec;
    this.status.error = null;
    this.status.warnings = [];
    const undo: UndoStep[] = [];
    let terminated = false;
    const scope = new CancellationScope();
    this.enableScope = scope;
    try {
      const outcome = await scope.run(async () => {
        const site = this.site();
        this.setState('provisioning', 'inspect-site-config');
        const custom = this.status.sendingDomain;
        // A sender on the instance's own custom domain is managed, not the customer's.
        const inspection = await provisioning.inspectSiteConfig(
          custom ? { ...site, customSenderDomain: custom.domain } : site,
        );
        if (inspection.ownership === 'customer' && !spec.force) {
          this.status.error =
            `the instance already has its own SMTP settings (host ${inspection.smtpHost ?? 'unset'}, sender ` +
            `${inspection.address ?? 'unset'}): they are the customer's, so managed SMTP left them alone; ` +
            'enable with --force to replace them';
          return 'customer-managed' as const;
        }
        if (inspection.ownership === 'customer') {
          this.status.warnings.push(
            `replaced the instance's own SMTP settings (host ${inspection.smtpHost ?? 'unset'}, sender ${inspection.address ?? 'unset'}); disable restores them`,
          );
        }
        this.status.previousSettings ??= inspection.previous;
        if (hasRedactedSecret(this.status.previousSettings.smtp)) {
          this.status.warnings.push(
            'the previous email.smtp password cannot be read back from Sourcegraph; disable restores the other settings without it',
          );
        }

        this.setState('provisioning', 'ensure-subaccount');
        const existing = firstEnable ? await provisioning.findSubaccount({ instance }) : null;
        const terminate = firstEnable && existing === null;
        if (!wasActive) {
          undo.unshift({
            step: 'release-subaccount',
            run: async () => {
              await compensating.releaseSubaccount({ instance, subaccountId: this.status.subaccountId, terminate });
              terminated = terminate;
            },
          });
        }
        const sub = await provisioning.ensureSubaccount({
          instance,
          knownId: this.status.subaccountId ?? existing?.id ?? null,
          ...(terminate ? { absentAtStart: true } : {}),
          // The recorded pool is restored (a repair of pool drift); absent on instances that never managed one.
          ...(this.status.ipPool !== undefined ? { ipPool: this.status.ipPool } : {}),
        });
        this.status.subaccountId = sub.id;
        if (sub.complianceStatus !== 'active') {
          this.status.warnings.push(
            `SparkPost reports compliance status "${sub.complianceStatus}" for subaccount ${sub.id}`,
          );
        }

        this.setState('provisioning', 'store-send-key');
        if (!wasActive) {
          undo.unshift(
            { step: 'revoke-send-key', run: () => compensating.revokeSendKeys({ subaccountId: sub.id }) },
            {
              step: 'delete-secret',
              run: () => compensating.deleteSendKeySecret({ gcpProject: spec.gcpProject, instance }),
            },
          );
        }
        const key = await provisioning.ensureSendKey({
          instance,
          gcpProject: spec.gcpProject,
          subaccountId: sub.id,
          ...(terminate ? { freshSubaccount: true } : {}),
          ...(spec.egressIps !== undefined ? { egressIps: spec.egressIps } : {}),
        });
        this.status.keyId = key.keyId;
        this.status.secretVersion = key.secretVersion;

        this.setState('provisioning', 'patch-site-config');
        if (!wasActive) {
          undo.unshift({
            step: 'restore-site-config',
            run: () =>
              compensating.restoreSiteConfig({ ...site, previous: this.status.previousSettings ?? NO_SETTINGS }),
          });
        }
        const { sender } = await provisioning.applyManagedSiteConfig({
          ...site,
          instance,
          secretVersion: key.secretVersion,
          senderName: spec.senderName,
          ...this.senderDomainArg(),
        });
        this.status.sender = sender;

        this.setState('provisioning', 'send-test-email');
        await this.testEmail(site);
        return 'active' as const;
      });
      this.setState(outcome, null);
    } catch (err) {
      const failedStep = this.status.step;
      const why = isCancellation(err) ? 'cancelled by a disable request' : describeFailure(err);
      const problems = await CancellationScope.nonCancellable(() => this.undo(undo, 'provisioning'));
      if (undo.length > 0 && problems.length === 0) this.forgetProvisioned(terminated);
      this.status.error =
        `enable failed at ${failedStep}: ${why}` +
        (problems.length
          ? `; could not undo ${problems.join('; ')}`
          : undo.length
            ? '; everything it did was undone'
            : '');
      this.setState('failed', null);
    } finally {
      this.enableScope = null;
    }
  }

  /** Clears what no longer exists after a successful undo. */
  private forgetProvisioned(subaccountTerminated: boolean): void {
    if (subaccountTerminated) this.status.subaccountId = null;
    this.status.keyId = null;
    this.status.secretVersion = null;
    this.status.sender = null;
    this.status.previousSettings = null;
  }

  /**
   * New key, new secret version, config patched, test email passes; only then the old key is revoked and its
   * version destroyed. A failure before that puts the old key back, so the instance keeps working.
   */
  private async rotate(requestId: string): Promise<void> {
    const s = this.status;
    if (s.state !== 'active' || !s.spec || s.subaccountId === null || !s.keyId || !s.secretVersion) {
      s.lastRotation = {
        requestId,
        at: new Date().toISOString(),
        ok: false,
        message: `not rotated: ${s.instance} is ${s.state}`,
      };
      return;
    }
    const spec = s.spec;
    const site = this.site();
    const subaccountId = s.subaccountId;
    const old = { keyId: s.keyId, secretVersion: s.secretVersion };
    const base = { instance: s.instance, gcpProject: spec.gcpProject, subaccountId };
    s.error = null;
    this.operation = 'key rotation';
    let fresh: { keyId: string; secretVersion: string } | null = null;
    try {
      this.setState('active', 'mint-new-key');
      fresh = await provisioning.mintSendKey({
        ...base,
        ...(spec.egressIps !== undefined ? { egressIps: spec.egressIps } : {}),
      });
      this.setState('active', 'patch-site-config');
      await provisioning.applyKeyToSiteConfig({
        ...site,
        instance: s.instance,
        secretVersion: fresh.secretVersion,
        senderName: spec.senderName,
        ...this.senderDomainArg(),
      });
      this.setState('active', 'send-test-email');
      await this.testEmail(site);
    } catch (err) {
      const failedStep = s.step;
      const why = describeFailure(err);
      const problems = await CancellationScope.nonCancellable(() =>
        this.undo(
          [
            {
              step: 'restore-old-key',
              run: async () => {
                const restored = await compensating.rollbackKeyRotation({
                  ...site,
                  ...base,
                  old,
                  senderName: spec.senderName,
                  ...this.senderDomainArg(),
                });
                s.keyId = restored.keyId;
                s.secretVersion = restored.secretVersion;
              },
            },
          ],
          'active',
        ),
      );
      const message =
        `key rotation failed at ${failedStep}: ${why}; ` +
        (problems.length
          ? `and could not put the old key back: ${problems.join('; ')}`
          : 'the old key is still in use');
      s.lastRotation = { requestId, at: new Date().toISOString(), ok: false, message };
      s.error = message;
      this.operation = null;
      this.setState(problems.length ? 'failed' : 'active', null);
      return;
    }
    s.keyId = fresh.keyId;
    s.secretVersion = fresh.secretVersion;
    this.setState('active', 'retire-old-key');
    try {
      await provisioning.retireSendKeys({ ...base, keepKeyId: fresh.keyId, keepVersion: fresh.secretVersion });
      s.lastRotation = { requestId, at: new Date().toISOString(), ok: true, message: `rotated to key ${fresh.keyId}` };
    } catch (err) {
      // The new key works; a leftover old key is drift that `check --enforce` repairs.
      const message = `rotated to key ${fresh.keyId}, but the old key could not be retired: ${describeFailure(err)}`;
      s.lastRotation = { requestId, at: new Date().toISOString(), ok: true, message };
      s.warnings.push(message);
    }
    this.operation = null;
    this.setState('active', null);
  }

  /** `{ senderDomain }` when the sender is on a verified custom domain, else nothing (the shared domain). */
  private senderDomainArg(): { senderDomain?: string } {
    const d = this.status.sendingDomain;
    return d && d.state === 'active' ? { senderDomain: d.domain } : {};
  }

  /** Sends the test email and records its outcome, passing a failure on. */
  private async testEmail(site: SiteRef): Promise<void> {
    try {
      this.status.lastTestEmail = await testing.sendTestEmail(site);
    } catch (err) {
      if (!isCancellation(err)) {
        this.status.lastTestEmail = { at: new Date().toISOString(), ok: false, message: describeFailure(err) };
      }
      throw err;
    }
  }

  private domainResult(requestId: string, ok: boolean, message: string): void {
    this.status.lastSendingDomainChange = { requestId, at: new Date().toISOString(), ok, message };
  }

  /**
   * The domain is verified: write the sender on it and prove it with a test email. A failure puts the shared sender
   * back and deletes the domain, so the instance is as it was before `sending-domain add`.
   */
  private async switchSender(requestId: string): Promise<void> {
    const s = this.status;
    const d = s.sendingDomain;
    if (!d || d.requestId !== requestId) return;
    if (s.state !== 'active' || !s.spec || !s.secretVersion || s.subaccountId === null) {
      // Nothing to switch now; every later enable writes the sender on the verified domain.
      d.state = 'active';
      this.domainResult(requestId, true, `${d.domain} verified; ${s.instance} is ${s.state}, its next enable uses it`);
      setCurrentDetails(this.details());
      return;
    }
    const site = this.site();
    const subaccountId = s.subaccountId;
    const base = { ...site, instance: s.instance, secretVersion: s.secretVersion, senderName: s.spec.senderName };
    s.error = null;
    this.operation = 'sending domain';
    try {
      this.setState('active', 'switch-sender');
      s.sender = (await dayTwo.applyManagedSiteConfig({ ...base, senderDomain: d.domain })).sender;
      this.setState('active', 'send-test-email');
      await this.testEmail(site);
    } catch (err) {
      const failedStep = s.step;
      const why = describeFailure(err);
      const problems = await CancellationScope.nonCancellable(async () => {
        const restore = await this.undo(
          [
            {
              step: 'restore-sender',
              run: async () => {
                s.sender = (await compensating.applyManagedSiteConfig(base)).sender;
              },
            },
          ],
          'active',
        );
        if (restore.length > 0) return restore; // the sender may still be on the domain: keep it
        d.state = 'removing';
        const del = await this.undo(
          [
            {
              step: 'delete-sending-domain',
              run: () => compensating.deleteSendingDomain({ subaccountId, domain: d.domain }),
            },
          ],
          'active',
        );
        if (del.length === 0) s.sendingDomain = null;
        return del;
      });
      const restoreFailed = problems.some((p) => p.startsWith('restore-sender'));
      if (restoreFailed) d.state = 'active';
      const message =
        `switching the sender to ${d.domain} failed at ${failedStep}: ${why}; ` +
        (problems.length
          ? `could not undo ${problems.join('; ')}`
          : 'the sender is back on the shared domain and the sending domain was deleted');
      this.domainResult(requestId, false, message);
      s.error = message;
      this.operation = null;
      this.setState(restoreFailed ? 'failed' : 'active', null);
      return;
    }
    d.state = 'active';
    this.domainResult(requestId, true, `${d.domain} verified; the sender is now ${s.sender}`);
    this.operation = null;
    this.setState('active', null);
  }

  /**
   * Puts the sender back on the shared domain (proved with a test email) and only then deletes the domain. If the
   * shared sender cannot be written or tested, the custom sender is put back and the domain kept.
   */
  private async removeSendingDomain(requestId: string): Promise<void> {
    const s = this.status;
    const d = s.sendingDomain;
    if (!d) {
      this.domainResult(requestId, true, 'no custom sending domain to remove');
      return;
    }
    const before = d.state;
    const subaccountId = s.subaccountId;
    this.operation = 'sending domain';
    d.state = 'removing';
    if (s.state === 'active' && s.spec && s.secretVersion) {
      const site = this.site();
      const base = { ...site, instance: s.instance, secretVersion: s.secretVersion, senderName: s.spec.senderName };
      s.error = null;
      try {
        this.setState('active', 'restore-sender');
        s.sender = (await dayTwo.applyManagedSiteConfig(base)).sender;
        this.setState('active', 'send-test-email');
        await this.testEmail(site);
      } catch (err) {
        const failedStep = s.step;
        const why = describeFailure(err);
        const problems =
          before === 'active'
            ? await CancellationScope.nonCancellable(() =>
                this.undo(
                  [
                    {
                      step: 'switch-sender',
                      run: async () => {
                        s.sender = (
                          await compensating.applyManagedSiteConfig({ ...base, senderDomain: d.domain })
                        ).sender;
                      },
                    },
                  ],
                  'active',
                ),
              )
            : [];
        d.state = problems.length ? 'removing' : before;
        const message =
          `removing ${d.domain} failed at ${failedStep}: ${why}; ` +
          (problems.length
            ? `could not put the sender back: ${problems.join('; ')}`
            : `the domain is kept and the sender is still ${s.sender}`);
        this.domainResult(requestId, false, message);
        s.error = message;
        this.operation = null;
        this.setState(problems.length ? 'failed' : 'active', null);
        return;
      }
    }
    if (subaccountId !== null) {
      this.setState(s.state, 'delete-sending-domain');
      try {
        await dayTwo.deleteSendingDomain({ subaccountId, domain: d.domain });
      } catch (err) {
        const message =
          `the sender no longer uses ${d.domain}, but deleting it at SparkPost failed: ${describeFailure(err)}; ` +
          'run sending-domain remove again';
        this.domainResult(requestId, false, message);
        this.operation = null;
        this.setState(s.state, null);
        return;
      }
    }
    s.sendingDomain = null;
    this.domainResult(
      requestId,
      true,
      `removed ${d.domain}; the sender is ${s.sender ?? 'not set (instance disabled)'}`,
    );
    this.operation = null;
    this.setState(s.state, null);
  }

  /** Assigns (or unassigns) the subaccount's IP pool and records it; a failure changes nothing. */
  private async setIpPool(req: IpPoolRequest): Promise<void> {
    const s = this.status;
    const subaccountId = s.subaccountId;
    const at = () => new Date().toISOString();
    if (subaccountId === null) {
      s.lastIpPoolChange = {
        requestId: req.requestId,
        at: at(),
        ok: false,
        message: `${s.instance} has no subaccount`,
      };
      return;
    }
    const state = s.state;
    const previous = s.ipPool ?? null;
    this.operation = 'IP pool';
    this.setState(state, 'assign-ip-pool');
    try {
      const r = await dayTwo.setIpPool({ subaccountId, pool: req.pool, create: req.create });
      s.ipPool = r.pool;
      const message = r.pool
        ? `subaccount ${subaccountId} now sends from IP pool ${r.pool}${r.created ? ' (created)' : ''}`
        : `subaccount ${subaccountId} no longer has a dedicated IP pool${previous ? ` (was ${previous})` : ''}`;
      s.lastIpPoolChange = { requestId: req.requestId, at: at(), ok: true, message };
    } catch (err) {
      const what = req.pool ? `assigning IP pool ${req.pool}` : 'unassigning the IP pool';
      const keeps = previous ? `IP pool ${previous}` : 'its previous pool';
      const message = `${what} failed: ${describeFailure(err)}; subaccount ${subaccountId} keeps ${keeps}`;
      s.lastIpPoolChange = { requestId: req.requestId, at: at(), ok: false, message };
    }
    this.operation = null;
    this.setState(state, null);
  }

  private async disable(request: DisableRequest): Promise<void> {
    const spec = this.status.spec;
    const steps: UndoStep[] = [];
    const subaccountId = this.status.subaccountId;
    const instance = this.status.instance;
    if (spec && this.status.previousSettings) {
      const site = this.site();
      const previous = this.status.previousSettings;
      steps.push({ step: 'restore-site-config', run: () => compensating.restoreSiteConfig({ ...site, previous }) });
    }
    if (subaccountId !== null) {
      steps.push({ step: 'revoke-send-key', run: () => compensating.revokeSendKeys({ subaccountId }) });
    }
    if (spec) {
      steps.push({
        step: 'delete-secret',
        run: () => compensating.deleteSendKeySecret({ gcpProject: spec.gcpProject, instance }),
      });
    }
    if (subaccountId !== null) {
      steps.push({
        step: 'release-subaccount',
        run: () => compensating.releaseSubaccount({ instance, subaccountId, terminate: false }),
      });
    }
    const problems = await this.undo(steps, 'disabling');
    if (problems.length > 0) {
      this.status.error = `disable incomplete: could not undo ${problems.join('; ')}`;
      this.setState('failed', null);
      return;
    }
    this.forgetProvisioned(false);
    this.status.error = null;
    this.status.warnings = request.reason ? [`disabled: ${request.reason}`] : [];
    this.setState('disabled', null);
  }
}

/** The entity workflow of one instance. Start it with signalWithStart(enableSignal) under `managed-smtp/<instance>`. */
export async function managedSmtpWorkflow(input: ManagedSmtpInput): Promise<void> {
  await new Instance(input).run();
}

export * from './fleet';
export * from './gdpr';
export * from './deliverability';
export * from './domains';
