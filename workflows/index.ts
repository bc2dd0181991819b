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
  isCancellation,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities, SiteRef } from '../activities';
import { instanceNameProblem } from '../lib/instance';
import { BOUNCE_ALERT_KEY, INSTANCE_KEY, STATE_KEY, STEP_KEY } from '../lib/search-attributes';
import { hasRedactedSecret, type EmailSettings } from '../lib/site-config';
import type {
  CheckResult,
  DeliverabilityAlert,
  DisableRequest,
  GdprAuditRecord,
  EnableRequest,
  EnableSpec,
  InstanceState,
  InstanceStatus,
  RequestRecord,
  Step,
} from '../lib/types';
import { COMPENSATION, PROVISIONING, TEST_EMAIL } from './policies';

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
/** Appends a GDPR deletion to the instance's audit trail (sent by the GDPR deletion workflow). */
export const gdprAuditSignal = defineSignal<[GdprAuditRecord]>('gdprAudit');

/** A request waiting to run. */
export type QueuedRequest =
  | { kind: 'enable'; request: EnableRequest }
  | { kind: 'disable'; request: DisableRequest }
  | { kind: 'rotate'; request: { requestId: string } };

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
};
const ENABLE_STEPS: Step[] = [
  'inspect-site-config',
  'ensure-subaccount',
  'store-send-key',
  'patch-site-config',
  'send-test-email',
];

const provisioning = proxyActivities<Activities>(PROVISIONING);
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
  };
}

function specProblem(spec: EnableSpec | undefined): string | null {
  if (!spec || typeof spec !== 'object') return 'missing spec';
  for (const field of ['sourcegraphUrl', 'gcpProject', 'adminTokenSecret'] as const) {
    if (typeof spec[field] !== 'string' || spec[field].length === 0) return `${field} must be a non-empty string`;
  }
  return null;
}

/** The entity: state, the request queue, and the one method that changes state (with search attributes). */
class Instance {
  readonly status: InstanceStatus;
  readonly queue: QueuedRequest[];
  private enableScope: CancellationScope | null = null;

  constructor(input: ManagedSmtpInput) {
    this.status = input.carried?.status ?? emptyStatus(input.instance);
    this.queue = input.carried?.queue ?? [];
  }

  /** Changes state and step, and upserts the search attributes and the UI's current details with them. */
  setState(state: InstanceState, step: Step | null): void {
    this.status.state = state;
    this.status.step = step;
    this.status.updatedAt = new Date().toISOString();
    upsertSearchAttributes([
      { key: INSTANCE_KEY, value: this.status.instance },
      { key: STATE_KEY, value: state },
      { key: STEP_KEY, value: step ?? 'none' },
    ]);
    setCurrentDetails(this.details());
  }

  /** Markdown for the Web UI: where the instance is, in words. */
  details(): string {
    const s = this.status;
    const lines = [`**${s.instance}**: ${s.state}`];
    if (s.step) {
      const n = ENABLE_STEPS.indexOf(s.step);
      const position = n >= 0 ? `step ${n + 1}/${ENABLE_STEPS.length}` : 'undoing';
      lines.push(`${position} \`${s.step}\`: ${STEP_TEXT[s.step]}`);
    }
    const facts = [
      s.subaccountId !== null ? `subaccount ${s.subaccountId}` : null,
      s.secretVersion ? `secret ${s.secretVersion}` : null,
      s.sender ? `sender ${s.sender}` : null,
    ].filter(Boolean);
    if (facts.length) lines.push(facts.join(' · '));
    if (s.lastTestEmail)
      lines.push(`last test email ${s.lastTestEmail.ok ? 'passed' : 'failed'} at ${s.lastTestEmail.at}`);
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

  /** Runs the check activity; a repair goes through the queue like any other request. */
  async onCheck(req: { requestId: string; enforce: boolean }): Promise<CheckResult> {
    const s = this.status;
    const findings = await provisioning.checkInstance({
      instance: s.instance,
      state: s.state,
      spec: s.spec!,
      subaccountId: s.subaccountId,
      keyId: s.keyId,
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
    if (this.status.requests.length === 0 && this.queue.length === 0) setCurrentDetails(this.details());

    for (;;) {
      await condition(() => this.queue.length > 0 || this.shouldContinueAsNew());
      const next = this.queue.shift();
      if (next?.kind === 'enable') await this.enable(next.request);
      else if (next?.kind === 'disable') await this.disable(next.request);
      else if (next?.kind === 'rotate') await this.rotate(next.request.requestId);
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
    return { sourcegraphUrl: spec.sourcegraphUrl, adminTokenSecret: spec.adminTokenSecret };
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
        const inspection = await provisioning.inspectSiteConfig(site);
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
            { step: 'delete-secret', run: () => compensating.deleteSendKeySecret({ gcpProject: spec.gcpProject }) },
          );
        }
        const key = await provisioning.ensureSendKey({ instance, gcpProject: spec.gcpProject, subaccountId: sub.id });
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
        });
        this.status.sender = sender;

        this.setState('provisioning', 'send-test-email');
        try {
          this.status.lastTestEmail = await testing.sendTestEmail(site);
        } catch (err) {
          if (!isCancellation(err)) {
            this.status.lastTestEmail = { at: new Date().toISOString(), ok: false, message: describeFailure(err) };
          }
          throw err;
        }
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
    let fresh: { keyId: string; secretVersion: string } | null = null;
    try {
      this.setState('active', 'mint-new-key');
      fresh = await provisioning.mintSendKey(base);
      this.setState('active', 'patch-site-config');
      await provisioning.applyKeyToSiteConfig({
        ...site,
        instance: s.instance,
        secretVersion: fresh.secretVersion,
        senderName: spec.senderName,
      });
      this.setState('active', 'send-test-email');
      try {
        s.lastTestEmail = await testing.sendTestEmail(site);
      } catch (err) {
        s.lastTestEmail = { at: new Date().toISOString(), ok: false, message: describeFailure(err) };
        throw err;
      }
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
    this.setState('active', null);
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
        run: () => compensating.deleteSendKeySecret({ gcpProject: spec.gcpProject }),
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
