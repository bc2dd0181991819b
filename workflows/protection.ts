/**
 * Reputation protection, the entity side. The ladder itself is the pure state machine in lib/protection.ts; this
 * module holds the one function the entity's request loop calls for a queued protection request:
 * it runs the decision, carries out its effects through activities (quarantine pool or suspension, and their undoing),
 * upserts the `ManagedSmtpProtection` search attribute and posts one alert per transition.
 *
 * The entity (workflows/instance/handlers.ts) only validates and enqueues: the `protection`
 * signal (from the webhook service and the bounce-alert poller, malformed ones ignored) and the `protectionRequest`
 * update (from smtpctl, malformed ones rejected) both push `{ kind: 'protection', request }` onto the same queue as
 * every other request. `disable` calls resetProtectionForDisable first, so it undoes a quarantine too.
 */
import { isCancellation, patched, proxyActivities, upsertSearchAttributes } from '@temporalio/workflow';
import type { ProtectionRequest } from '../contract/types';
import {
  actionAt,
  decide,
  initialProtection,
  inputProblem,
  type ProtectionStatus,
  type ProtectionTransition,
} from '../lib/protection';
import { PROTECTION_KEY } from '../lib/search-attributes';
import type { InstanceStatus } from '../lib/types';
import type { DeliverabilityActivities } from './deliverability';
import { COMPENSATION } from './policies';

/** Input of applyProtection. */
export interface ApplyProtectionInput {
  subaccountId: number;
  action: 'quarantine' | 'suspend';
  /** The quarantine pool (created when missing). */
  pool: string;
}

/** Input of liftProtection. */
export interface LiftProtectionInput {
  subaccountId: number;
  action: 'quarantine' | 'suspend';
  /** Pool to put back ('' or null = none). */
  previousPool: string | null;
  /** Reactivate a suspended subaccount (false when the instance is not active: disable keeps it suspended). */
  reactivate: boolean;
}

/** The protection activities. */
export interface ProtectionActivities {
  /** The subaccount's current IP pool ('' = none). */
  subaccountPool(input: { subaccountId: number }): Promise<string>;
  /** Moves the subaccount into the quarantine pool, or suspends it. */
  applyProtection(input: ApplyProtectionInput): Promise<{ message: string }>;
  /** Undoes applyProtection. */
  liftProtection(input: LiftProtectionInput): Promise<{ message: string }>;
}

/** Why a request must not be queued, or null. */
export function protectionRequestProblem(req: ProtectionRequest): string | null {
  if (!req || typeof req !== 'object') return 'missing request';
  if (typeof req.requestId !== 'string' || req.requestId === '' || req.requestId.length > 200) {
    return 'requestId must be a non-empty string';
  }
  if (req.alertWebhook) {
    const { url, secret } = req.alertWebhook;
    if ((url !== undefined && typeof url !== 'string') || (secret !== undefined && typeof secret !== 'string')) {
      return 'alertWebhook must hold a url or secret string';
    }
  }
  return inputProblem(req.input);
}

const vendor = proxyActivities<ProtectionActivities>(COMPENSATION);
const webhook = proxyActivities<DeliverabilityActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: 5 },
});

/** What the entity lends the runner. */
export interface ProtectionHost {
  status: InstanceStatus & { protection?: ProtectionStatus | null };
  /** Refreshes the Web UI's current details. */
  refresh(): void;
  /** A readable one-line message of a failure. */
  describe(err: unknown): string;
}

function alertText(instance: string, t: ProtectionTransition): string {
  const verb =
    t.to === 'ok'
      ? 'recovered'
      : t.to === 'warning'
        ? 'warning'
        : t.to === 'quarantined'
          ? 'quarantined (moved to the quarantine IP pool)'
          : t.to === 'suspended'
            ? 'suspended (sending stopped)'
            : 'severe (alert only)';
  return (
    `Managed SMTP reputation protection: ${instance} ${t.from} → ${verb}, by ${t.by}: ${t.reason}` +
    (t.outcome ? ` [${t.outcome}]` : '')
  );
}

/**
 * The `ipPool` argument of checkInstance and ensureSubaccount: the quarantine pool while quarantined (so neither a
 * check nor a re-run of enable "repairs" the quarantine away), else the recorded pool, else nothing.
 */
export function protectedIpPool(s: InstanceStatus): { ipPool?: string | null } {
  if (s.protection?.level === 'quarantined') return { ipPool: s.protection.config.quarantinePool };
  return s.ipPool !== undefined ? { ipPool: s.ipPool } : {};
}

/** Whether the ladder suspended the subaccount (a check must not reactivate it). */
export function suspendedByProtection(s: InstanceStatus): boolean {
  return s.protection?.level === 'suspended';
}

/** Runs one queued protection request on the entity's state. */
export async function runProtectionRequest(host: ProtectionHost, req: ProtectionRequest): Promise<void> {
  const s = host.status;
  const before: ProtectionStatus = s.protection ?? initialProtection();
  const now = new Date().toISOString();
  if (req.alertWebhook !== undefined) before.alertWebhook = req.alertWebhook;
  // Only an active instance is protected: a disabled one does not send, and a late observation must not act on it.
  if (req.input.kind === 'observe' && s.state !== 'active') {
    s.protection = { ...before, lastRequest: { requestId: req.requestId, at: now, outcome: `ignored: ${s.state}` } };
    return;
  }
  const { state, effects } = decide(before, req.input, now);
  const next: ProtectionStatus = { ...before, ...state };
  s.protection = next;
  const outcomes: string[] = [];
  for (const e of effects) {
    if (e.type === 'alert') {
      if (outcomes.length) e.transition.outcome = outcomes.join('; ');
      upsertSearchAttributes([{ key: PROTECTION_KEY, value: e.transition.to }]);
      host.refresh();
      const target = next.alertWebhook;
      if (target && (target.url || target.secret)) {
        const text = alertText(s.instance, e.transition);
        try {
          await webhook.postAlertWebhook({
            ...target,
            text,
            blocks: [{ type: 'section', text: { type: 'mrkdwn', text } }],
          });
        } catch (err) {
          e.transition.outcome = [e.transition.outcome, `alert webhook failed: ${host.describe(err)}`]
            .filter(Boolean)
            .join('; ');
        }
      }
      continue;
    }
    if (s.subaccountId === null) {
      outcomes.push(`no subaccount to ${e.type === 'apply' ? e.action : `lift ${e.action} on`}`);
      continue;
    }
    const subaccountId = s.subaccountId;
    let applying = false;
    try {
      if (e.type === 'apply') {
        if (e.action === 'quarantine') next.previousPool = await vendor.subaccountPool({ subaccountId });
        applying = true;
        outcomes.push((await vendor.applyProtection({ subaccountId, action: e.action, pool: e.pool })).message);
      } else {
        const r = await vendor.liftProtection({
          subaccountId,
          action: e.action,
          previousPool: e.previousPool,
          reactivate: s.state === 'active' && req.input.kind !== 'reset',
        });
        outcomes.push(r.message);
        next.previousPool = null;
      }
    } catch (err) {
      if (isCancellation(err) && patched('protection-preempted-keeps-level')) {
        // A disable preempted the vendor step. Unless the apply itself may have run, the ladder stays where it was:
        // a lift cut short leaves the action in force, and the disable's reset must see it to lift it.
        if (e.type === 'lift' || !applying) s.protection = before;
        s.protection.lastRequest = { requestId: req.requestId, at: now, outcome: 'superseded by disable' };
        throw err;
      }
      if (e.type === 'apply' && !applying && patched('protection-pool-read-keeps-level')) {
        // The pool to put back could not be read, so the quarantine was not applied: the ladder stays where it was
        // (no transition, no alert; the observation is kept) and the next severe reading tries again. Recording
        // `quarantined` here would claim a quarantine that is not in force, and its lift would drop the subaccount's
        // dedicated pool for want of the one to put back.
        s.protection = { ...before, last: next.last, lastBadAt: next.lastBadAt };
        s.protection.lastRequest = {
          requestId: req.requestId,
          at: now,
          outcome: [
            ...outcomes,
            `${e.action} not applied: reading the subaccount's IP pool failed: ${host.describe(err)}; stays ${before.level}`,
          ].join('; '),
        };
        host.refresh();
        return;
      }
      outcomes.push(`${e.type === 'apply' ? e.action : `lifting ${e.action}`} failed: ${host.describe(err)}`);
    }
  }
  next.lastRequest = {
    requestId: req.requestId,
    at: now,
    outcome: outcomes.join('; ') || (effects.length ? `now ${next.level}` : `unchanged: ${next.level}`),
  };
  host.refresh();
}

/**
 * Called by disable before anything else: lifts a quarantine (the pool the subaccount had goes back, so a later
 * enable starts clean; a suspension stays, disable suspends anyway) and resets the ladder, with one alert.
 */
export async function resetProtectionForDisable(host: ProtectionHost, reason: string): Promise<void> {
  const p = host.status.protection;
  if (!p || p.level === 'ok') return;
  const acting = actionAt(p.level);
  await runProtectionRequest(host, {
    requestId: `disable-${new Date().toISOString()}`,
    input: { kind: 'reset', reason: `reset by disable${reason ? `: ${reason}` : ''}` },
  });
  if (acting === 'suspend') host.status.protection!.previousPool = null;
}
