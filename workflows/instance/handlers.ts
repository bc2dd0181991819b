/**
 * Message handlers of the entity: each parses its payload with the contract's schema, then records and enqueues.
 * No handler does I/O or changes the instance; signal handlers never throw (a malformed payload is recorded and
 * ignored), and update validators refuse with one sentence.
 */
import { ApplicationFailure, condition, patched, uuid4 } from '@temporalio/workflow';
import { parseRequest, requestSchemas } from '../../contract/requests';
import type {
  CheckResult,
  DeliverabilityAlert,
  EnableSpec,
  GdprAuditRecord,
  InstanceStatus,
  IpPoolRequest,
  SendingDomainAccepted,
  SendingDomainRequest,
  StuckReport,
  SuppressionAuditRecord,
} from '../../lib/types';
import type { ProtectionRequest, SendingDomainEvent } from '../../contract/types';
import { protectionRequestProblem } from '../protection';
import { recordSuppressionAudit, suppressionAuditProblem } from '../suppression';
import { specChangeProblem } from './enable';
import { MAX_AUDIT_RECORDS, type Entity } from './entity';
import { ipPoolProblem } from './ip-pool';

/** Why an offboarded instance refuses enable, or null. */
export function offboardedProblem(s: InstanceStatus): string | null {
  const o = s.offboarded;
  if (!o) return null;
  return `${s.instance} was offboarded at ${o.at} (request ${o.requestId}): its subaccount is terminated and its data erased, so it cannot be enabled again`;
}

/** Marks histories in which an enable or disable signal without a requestId was given one (before: rejected). */
export const SIGNAL_REQUEST_ID_PATCH = 'signal-request-id-optional';

/**
 * INTERFACE.md: tooling may send `enable` (`{requestId?, spec}`) and `disable` (`{requestId?, reason?}`) directly, so
 * a payload object without a requestId is a valid request: the entity names it (deterministically, with the
 * workflow's own random source). Anything else is left for the schema to judge.
 */
function withRequestId(payload: unknown): unknown {
  if (!payload || typeof payload !== 'object' || Array.isArray(payload)) return payload;
  if ((payload as { requestId?: unknown }).requestId !== undefined) return payload;
  // Histories from before this rule rejected such a signal; they replay as they ran.
  if (!patched(SIGNAL_REQUEST_ID_PATCH)) return payload;
  return { ...payload, requestId: uuid4() };
}

/** The entity's handlers. `refusal` is set when this execution is not a proper entity (bad workflow id). */
export class Handlers {
  constructor(
    private readonly e: Entity,
    private readonly refusal: string | null,
  ) {}

  /** Runs a signal handler; anything it throws is recorded instead of failing the workflow task. */
  safely(message: string, payload: unknown, run: () => void): void {
    try {
      run();
    } catch (err) {
      this.e.reject(message, payload, err instanceof Error ? err.message : String(err));
    }
  }

  private parse<T>(message: string, schema: Parameters<typeof parseRequest<T>>[0], payload: unknown): T | null {
    const r = parseRequest(schema, payload);
    if (r.ok) return r.data;
    this.e.reject(message, payload, r.problem);
    return null;
  }

  /** Throws (refusing an update) when the payload does not parse. */
  private require<T>(schema: Parameters<typeof parseRequest<T>>[0], payload: unknown): T {
    if (this.refusal) throw new Error(this.refusal);
    const r = parseRequest(schema, payload);
    if (!r.ok) throw new Error(`invalid request: ${r.problem}`);
    return r.data;
  }

  onEnable(payload: unknown): void {
    const e = this.e;
    const req = this.parse('enable', requestSchemas().enableRequest, withRequestId(payload));
    if (!req) return;
    const spec = req.spec as EnableSpec;
    const refused = this.refusal ?? offboardedProblem(e.status) ?? specChangeProblem(e.status, spec);
    if (refused) return e.record('enable', req.requestId, `rejected: ${refused}`);
    e.bumpGeneration();
    e.status.intent = 'enable';
    e.record('enable', req.requestId);
    // The last word wins: an enable still waiting is replaced by this one.
    for (let i = e.queue.length - 1; i >= 0; i--) {
      const q = e.queue[i];
      if (q.kind === 'enable') {
        e.queue.splice(i, 1);
        e.finish(q.request.requestId, 'superseded by a later enable', 'enable');
      }
    }
    e.queue.push({ kind: 'enable', request: { requestId: req.requestId, spec } });
  }

  onDisable(payload: unknown): void {
    const e = this.e;
    const req = this.parse('disable', requestSchemas().disableRequest, withRequestId(payload));
    if (!req) return;
    e.bumpGeneration();
    e.status.intent = 'disable';
    e.record('disable', req.requestId);
    e.supersedeForDisable();
    e.queue.push({ kind: 'disable', request: req });
    // Whatever runs (an enable stuck retrying, a rotation, a check) is cancelled: disable goes next.
    if (e.current && e.current.kind !== 'disable') e.current.scope.cancel();
  }

  onAlert(payload: unknown): void {
    const alert = this.parse(
      'deliverabilityAlert',
      requestSchemas().deliverabilityAlert,
      payload,
    ) as DeliverabilityAlert | null;
    if (!alert) return;
    this.e.status.deliverabilityAlert = alert.active ? alert : null;
    this.e.setAlert(alert.active);
  }

  onGdprAudit(payload: unknown): void {
    const record = this.parse('gdprAudit', requestSchemas().gdprAudit, payload) as GdprAuditRecord | null;
    if (!record) return;
    const audit = (this.e.status.gdprAudit ??= []);
    // A request reports when filed and again when verified and shredded: the later record replaces the earlier.
    const i = audit.findIndex((r) => r.requestId === record.requestId);
    if (i >= 0) {
      audit[i] = record;
      return;
    }
    audit.push(record);
    if (audit.length > MAX_AUDIT_RECORDS) audit.shift();
  }

  onStuck(payload: unknown): void {
    const report = this.parse('stuck', requestSchemas().stuckReport, payload) as StuckReport | null;
    if (report) this.e.onStuck(report);
  }

  /** Progress of the domain workflow: DNS records to show, verification (queues the switch), or its failure. */
  onDomainEvent(payload: unknown): void {
    // Parsed like every other message: bounded, control characters removed, unknown fields dropped.
    const ev = this.parse(
      'sendingDomainEvent',
      requestSchemas().sendingDomainEvent,
      payload,
    ) as SendingDomainEvent | null;
    if (!ev) return;
    const e = this.e;
    const d = e.status.sendingDomain;
    if (!d || d.requestId !== ev.requestId || d.domain !== ev.domain) return; // stale: a request no longer tracked
    if (ev.event === 'created') {
      d.dnsRecords = ev.dnsRecords;
    } else if (ev.event === 'verified') {
      if (d.verifiedAt) return; // a retried signal
      d.verifiedAt = ev.at;
      delete d.workflowId;
      e.bumpGeneration();
      e.queue.push({ kind: 'sending-domain', request: { requestId: ev.requestId, action: 'switch' } });
    } else if (ev.event === 'failed') {
      e.status.sendingDomain = null;
      const message = ev.message || 'failed';
      e.status.lastSendingDomainChange = { requestId: ev.requestId, at: ev.at, ok: false, message };
      e.finish(ev.requestId);
    }
    e.refreshDetails();
  }

  /** A protection reading or clear (from the bounce-alert poll or the webhook receiver): queued, the loop decides. */
  onProtection(payload: unknown): void {
    const req = payload as ProtectionRequest;
    const problem = payload && typeof payload === 'object' ? protectionRequestProblem(req) : 'missing payload';
    if (problem) return this.e.reject('protection', payload, problem);
    this.e.queue.push({ kind: 'protection', request: req });
  }

  validateProtection(payload: unknown): void {
    if (this.refusal) throw new Error(this.refusal);
    const problem =
      payload && typeof payload === 'object'
        ? protectionRequestProblem(payload as ProtectionRequest)
        : 'missing payload';
    if (problem) throw new Error(problem);
  }

  onProtectionUpdate(payload: ProtectionRequest): { requestId: string } {
    this.e.queue.push({ kind: 'protection', request: payload });
    return { requestId: payload.requestId };
  }

  /** A suppression-list removal's audit record (counts and hashes, never an address). */
  onSuppressionAudit(payload: unknown): void {
    // Parsed like every other message: bounded, control characters removed, unknown fields dropped.
    const r = this.parse(
      'suppressionAudit',
      requestSchemas().suppressionAudit,
      payload,
    ) as SuppressionAuditRecord | null;
    if (!r) return;
    const problem = suppressionAuditProblem(r);
    if (problem) return this.e.reject('suppressionAudit', payload, problem);
    recordSuppressionAudit(this.e.status, r);
  }

  validateRotate(payload: unknown): void {
    this.require(requestSchemas().rotateRequest, payload);
    const s = this.e.status;
    if (s.state !== 'active' || s.step !== null) {
      throw new Error(
        `${s.instance} is ${s.state}${s.step ? ` (${s.step})` : ''}: only an idle active instance's key can be rotated`,
      );
    }
    if (this.e.queue.length > 0) throw new Error(`${s.instance} has requests queued; rotate once they are done`);
  }

  onRotate(payload: { requestId: string }): { requestId: string } {
    this.e.bumpGeneration();
    this.e.record('rotate', payload.requestId);
    this.e.queue.push({ kind: 'rotate', request: { requestId: payload.requestId } });
    return { requestId: payload.requestId };
  }

  validateIpPool(payload: unknown): void {
    const req = this.require(requestSchemas().ipPoolRequest, payload);
    const s = this.e.status;
    if ((s.state !== 'active' && s.state !== 'disabled') || s.subaccountId === null) {
      throw new Error(`${s.instance} is ${s.state}: IP pools can be changed on an active or disabled instance`);
    }
    const problem = ipPoolProblem(s, req.pool);
    if (problem) throw new Error(problem);
  }

  onIpPool(payload: IpPoolRequest): { requestId: string } {
    const req = this.require(requestSchemas().ipPoolRequest, payload);
    this.e.bumpGeneration();
    this.e.record('ip-pool', req.requestId);
    this.e.queue.push({ kind: 'ip-pool', request: { requestId: req.requestId, pool: req.pool, create: !!req.create } });
    return { requestId: req.requestId };
  }

  validateCheck(payload: unknown): void {
    this.require(requestSchemas().checkRequest, payload);
    const e = this.e;
    const s = e.status;
    if (!s.spec) throw new Error(`${s.instance} was never enabled: nothing to check`);
    if (s.state !== 'active' && s.state !== 'disabled' && !(s.state === 'failed' && s.intent)) {
      throw new Error(`${s.instance} is ${s.state}: check an instance that is active, disabled or failed`);
    }
    if (s.step !== null || e.current || e.queue.length > 0) {
      throw new Error(`${s.instance} is busy (${s.step ?? e.current?.kind ?? 'requests queued'}): check it when idle`);
    }
  }

  async onCheck(payload: { requestId: string; enforce: boolean }): Promise<CheckResult> {
    const req = this.require(requestSchemas().checkRequest, payload);
    this.e.record('check', req.requestId);
    this.e.queue.push({ kind: 'check', request: req });
    return this.waitFor<CheckResult>(req.requestId);
  }

  validateSendingDomain(payload: unknown): void {
    const req = this.require(requestSchemas().sendingDomainRequest, payload);
    const s = this.e.status;
    const d = s.sendingDomain ?? null;
    if (req.action === 'add') {
      if (s.state !== 'active' || s.subaccountId === null || !s.spec || !s.secretVersion) {
        throw new Error(`${s.instance} is ${s.state}: a sending domain can only be added to an active instance`);
      }
      if (d) throw new Error(`${s.instance} already has sending domain ${d.domain} (${d.state}); remove it first`);
      if (this.e.queue.some((q) => q.kind === 'sending-domain')) throw new Error('a sending-domain request is queued');
      return;
    }
    if (!d) throw new Error(`${s.instance} has no custom sending domain`);
    if (d.state === 'pending-verification' && !d.verifiedAt) return; // cancelling the wait is always possible
    if (s.state !== 'active' && s.state !== 'disabled') {
      throw new Error(`${s.instance} is ${s.state}: remove the sending domain once it is active or disabled`);
    }
    if (this.e.queue.some((q) => q.kind === 'sending-domain' && q.request.action === 'remove')) {
      throw new Error(`the removal of ${d.domain} is already queued`);
    }
  }

  async onSendingDomain(payload: SendingDomainRequest): Promise<SendingDomainAccepted> {
    const req = this.require(requestSchemas().sendingDomainRequest, payload);
    const e = this.e;
    const d = e.status.sendingDomain;
    if (req.action === 'add') {
      e.bumpGeneration();
      e.record('sending-domain', req.requestId);
      e.queue.push({ kind: 'sending-domain', request: req });
      return this.waitFor<SendingDomainAccepted>(req.requestId);
    }
    if (d && d.state === 'pending-verification' && !d.verifiedAt) {
      e.queue.push({ kind: 'sending-domain', request: { requestId: req.requestId, action: 'cancel' } });
      return this.waitFor<SendingDomainAccepted>(req.requestId);
    }
    e.bumpGeneration();
    e.record('sending-domain', req.requestId);
    e.queue.push({ kind: 'sending-domain', request: { requestId: req.requestId, action: 'remove' } });
    return { requestId: req.requestId, accepted: 'removal-queued' };
  }

  /** Waits for the loop to run a queued request whose update returns its result. */
  private async waitFor<T>(requestId: string): Promise<T> {
    await condition(() => this.e.results.has(requestId));
    const r = this.e.results.get(requestId);
    this.e.results.delete(requestId);
    if (r instanceof Error) throw ApplicationFailure.create({ message: r.message, nonRetryable: true });
    return r as T;
  }
}
