/**
 * Deliverability: SparkPost's figures for one instance or the whole fleet, and the bounce-rate alert.
 *
 * - `deliverabilityStatsWorkflow` reads the figures (the worker holds the SparkPost key, the CLI does not); `smtpctl
 *   stats` executes it and prints the result.
 * - `bounceAlertWorkflow` runs from the Temporal Schedule `managed-smtp-bounce-alerts` (or `smtpctl alerts run-once`):
 *   one fleet-wide metrics call, then for every instance whose bounce rate crosses the threshold with enough volume
 *   and that is not already flagged, it flags the instance's entity workflow (`deliverabilityAlert` signal, which
 *   sets the `ManagedSmtpBounceAlert` search attribute and the status) and posts one webhook message; flagged
 *   instances that no longer cross are cleared the same way. The entity's flag is the memory between runs, so an
 *   episode is announced once, however many runs see it.
 *
 * The activity types live here (not in activities/) because workflow code may only import types from its own side.
 */
import { ApplicationFailure, getExternalWorkflowHandle, proxyActivities } from '@temporalio/workflow';
import { workflowIdFor } from '../lib/instance';
import type { DeliverabilityAlert } from '../lib/types';
import { describeFailure } from '../contract/failures';
import { deliverabilityAlertSignal } from '../contract/messages';

/** Delivery figures of one subaccount (or the sum of several) over a window. */
export interface DeliverabilityFigures {
  /** Messages the receiving servers accepted (`count_accepted`). */
  accepted: number;
  /** `count_delivered`. */
  delivered: number;
  /** In-band and out-of-band bounces (`count_bounce`). */
  bounces: number;
  /** `count_hard_bounce`. */
  hardBounces: number;
  /** Messages injected or rejected (`count_targeted`). */
  targeted: number;
  /** bounces / max(targeted, accepted + bounces), 0..1, and 0 without traffic (see bounceRateOf). */
  bounceRate: number;
}

/** Input of instanceDeliverability. Times are ISO 8601 (SparkPost reads them to the minute, UTC). */
export interface InstanceDeliverabilityInput {
  subaccountId: number;
  from: string;
  /** Default: now. */
  to?: string;
}

/** Input of fleetDeliverability. */
export interface FleetDeliverabilityInput {
  from: string;
  to?: string;
  /** Also measure the plan's month-to-date usage (one more metrics call). Default true. */
  plan?: boolean;
}

/** One instance in the fleet figures: a non-terminated subaccount, named like the instance. */
export interface FleetRow extends DeliverabilityFigures {
  instance: string;
  subaccountId: number;
}

/** How much of the plan's monthly allowance of accepted messages the whole account has used this month. */
export interface PlanUsage {
  /** Accepted messages included per month (SparkPost plan). */
  included: number;
  /** Start of the measured period: the first of this month, 00:00 UTC. */
  from: string;
  /** Accepted by the whole account (primary and every subaccount) since `from`. */
  accepted: number;
  /** accepted / included (may exceed 1). */
  usedFraction: number;
}

/** The fleet's figures from one by-subaccount metrics call. */
export interface FleetDeliverability {
  /** One row per instance, sorted by name; instances without traffic have zeros. */
  rows: FleetRow[];
  /** Sum of the rows. */
  totals: DeliverabilityFigures;
  /** Null when not asked for. */
  plan: PlanUsage | null;
}

/**
 * A Slack-compatible webhook message. Give the URL itself, or (better: the URL is a credential) the Secret Manager
 * version that holds it, so it never enters a workflow history or a schedule's arguments.
 */
export interface AlertWebhookInput {
  url?: string;
  secret?: string;
  /** Plain text (Slack's fallback and notification text). */
  text: string;
  /** Slack Block Kit blocks. */
  blocks?: unknown[];
}

/** The deliverability activities (activities/deliverability.ts implements them). */
export interface DeliverabilityActivities {
  /** One subaccount's figures. */
  instanceDeliverability(input: InstanceDeliverabilityInput): Promise<DeliverabilityFigures>;
  /** Every instance's figures, from one by-subaccount metrics call and one subaccount listing. */
  fleetDeliverability(input: FleetDeliverabilityInput): Promise<FleetDeliverability>;
  /**
   * Instances whose running entity workflow has `ManagedSmtpBounceAlert = true`: the candidates visibility lists
   * plus `confirm`, each confirmed by describing the execution (visibility lags behind a signal just handled).
   */
  flaggedInstances(input?: { confirm?: string[] }): Promise<string[]>;
  /** Posts one message; a non-2xx answer is a retryable failure whose message never holds the URL. */
  postAlertWebhook(input: AlertWebhookInput): Promise<void>;
}

/** SparkPost reads (bounded: a caller is waiting or the next scheduled run will try again). */
const reads = proxyActivities<DeliverabilityActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5 },
});
/** The webhook: each attempt is bounded by the poster's own 10 s timeout. */
const webhook = proxyActivities<DeliverabilityActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: 5 },
});

/**
 * The bounce rate used everywhere. SparkPost's own is bounces / targeted, but a bounce arrives after its injection,
 * so near a window's start bounces can outnumber the injections counted: the denominator never drops below what the
 * window saw accepted or bounced.
 */
export function bounceRateOf(f: { bounces: number; accepted: number; targeted: number }): number {
  const denominator = Math.max(f.targeted, f.accepted + f.bounces);
  return denominator > 0 ? f.bounces / denominator : 0;
}

/** Input of deliverabilityStatsWorkflow: one instance (with its subaccount id) or, without one, the fleet. */
export interface DeliverabilityStatsInput {
  instance?: string;
  subaccountId?: number;
  /** ISO 8601 start of the window. */
  from: string;
  to?: string;
}

/** What deliverabilityStatsWorkflow returns. */
export type DeliverabilityStats =
  | ({
      scope: 'instance';
      instance: string | null;
      subaccountId: number;
      from: string;
      to: string | null;
    } & DeliverabilityFigures)
  | ({ scope: 'fleet'; from: string; to: string | null } & FleetDeliverability);

function invalidInput(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, 'InvalidInput');
}

function checkTime(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || Number.isNaN(Date.parse(value))) throw invalidInput(`${name} must be an ISO time`);
  return value;
}

/** SparkPost figures of one instance (when `subaccountId` is given) or of the whole fleet. */
export async function deliverabilityStatsWorkflow(input: DeliverabilityStatsInput): Promise<DeliverabilityStats> {
  const from = checkTime(input?.from, 'from');
  if (from === undefined) throw invalidInput('from is required');
  const to = checkTime(input.to, 'to');
  if (input.subaccountId !== undefined) {
    if (!Number.isSafeInteger(input.subaccountId) || input.subaccountId < 0) {
      throw invalidInput('subaccountId must be a non-negative integer');
    }
    const figures = await reads.instanceDeliverability({ subaccountId: input.subaccountId, from, to });
    return {
      scope: 'instance',
      instance: input.instance ?? null,
      subaccountId: input.subaccountId,
      from,
      to: to ?? null,
      ...figures,
    };
  }
  if (input.instance !== undefined) throw invalidInput('an instance needs its subaccountId');
  const fleet = await reads.fleetDeliverability({ from, to, plan: true });
  return { scope: 'fleet', from, to: to ?? null, ...fleet };
}

/** Input of bounceAlertWorkflow (also the Schedule's argument). */
export interface BounceAlertInput {
  /** Bounce rate (0..1] at or above which an instance alerts. */
  thresholdRate: number;
  /** Instances with fewer accepted messages in the window never alert: a few bounces of little mail say little. */
  minAccepted: number;
  /** The measured window: the last this many hours. */
  windowHours: number;
  /** Webhook URL (ends up in history and the schedule: prefer webhookSecret). */
  webhookUrl?: string;
  /** Secret Manager version holding the webhook URL. */
  webhookSecret?: string;
}

/** An instance the run could not flag or clear (no running entity workflow, most likely). */
export interface SkippedInstance {
  instance: string;
  reason: string;
}

/** What one run of bounceAlertWorkflow did. */
export interface BounceAlertSummary {
  /** Start of the measured window. */
  from: string;
  /** Instances measured. */
  checked: number;
  /** Instances over the threshold now (newly raised or still alerting). */
  crossing: string[];
  /** Alerts raised by this run (flagged, and announced when a webhook is set). */
  raised: string[];
  /** Alerts cleared by this run. */
  cleared: string[];
  /** Crossing instances that could not be flagged. */
  skipped: SkippedInstance[];
  /** Webhook failures (a raise whose webhook failed is withdrawn, so the next run announces it again). */
  errors: string[];
}

function percent(rate: number): string {
  return `${(rate * 100).toFixed(1)}%`;
}

function hours(h: number): string {
  return `${h} h`;
}

const ZERO: DeliverabilityFigures = {
  accepted: 0,
  delivered: 0,
  bounces: 0,
  hardBounces: 0,
  targeted: 0,
  bounceRate: 0,
};

/** The raise message. Names only the instance and counts: never a recipient. */
function raiseText(instance: string, f: DeliverabilityFigures, input: BounceAlertInput, from: string): string {
  return (
    `Managed SMTP bounce alert: ${instance} bounced ${percent(f.bounceRate)} of its email in the last ` +
    `${hours(input.windowHours)} (${f.bounces} bounces, ${f.hardBounces} hard; ${f.accepted} accepted, ` +
    `${f.targeted} targeted since ${from}); threshold ${percent(input.thresholdRate)} with at least ` +
    `${input.minAccepted} accepted.`
  );
}

function clearText(instance: string, f: DeliverabilityFigures, input: BounceAlertInput, from: string): string {
  return (
    `Managed SMTP bounce alert resolved: ${instance} is at ${percent(f.bounceRate)} over the last ` +
    `${hours(input.windowHours)} (${f.bounces} bounces; ${f.accepted} accepted since ${from}); threshold ` +
    `${percent(input.thresholdRate)} with at least ${input.minAccepted} accepted.`
  );
}

function checkAlertInput(input: BounceAlertInput): void {
  if (!input || typeof input !== 'object') throw invalidInput('missing input');
  const { thresholdRate, minAccepted, windowHours } = input;
  if (typeof thresholdRate !== 'number' || !(thresholdRate > 0 && thresholdRate <= 1)) {
    throw invalidInput('thresholdRate must be a number in (0, 1]');
  }
  if (!Number.isSafeInteger(minAccepted) || minAccepted < 0) {
    throw invalidInput('minAccepted must be a non-negative integer');
  }
  if (typeof windowHours !== 'number' || !(windowHours > 0 && windowHours <= 24 * 31)) {
    throw invalidInput('windowHours must be a number in (0, 744]');
  }
}

/**
 * One bounce-alert pass over the fleet. Raises an alert once per episode (flag first, then the webhook; a webhook
 * that fails withdraws the flag so the next run tries again) and clears flagged instances that no longer cross.
 * Instances that stay quiet get nothing; one that cannot be signalled is reported, never fails the run.
 */
export async function bounceAlertWorkflow(input: BounceAlertInput): Promise<BounceAlertSummary> {
  checkAlertInput(input);
  const now = Date.now();
  const at = new Date(now).toISOString();
  const from = new Date(now - input.windowHours * 3600_000).toISOString();
  const hasWebhook = Boolean(input.webhookUrl || input.webhookSecret);
  const target = { url: input.webhookUrl, secret: input.webhookSecret };

  const fleet = await reads.fleetDeliverability({ from, plan: false });
  const byInstance = new Map(fleet.rows.map((r) => [r.instance, r]));
  const crossing = fleet.rows
    .filter((r) => r.accepted >= input.minAccepted && r.bounceRate >= input.thresholdRate)
    .map((r) => r.instance);
  const flagged = new Set(await reads.flaggedInstances({ confirm: crossing }));

  const summary: BounceAlertSummary = {
    from,
    checked: fleet.rows.length,
    crossing,
    raised: [],
    cleared: [],
    skipped: [],
    errors: [],
  };
  const alertOf = (f: DeliverabilityFigures, active: boolean): DeliverabilityAlert => ({
    active,
    at,
    from,
    accepted: f.accepted,
    bounces: f.bounces,
    bounceRate: f.bounceRate,
    threshold: input.thresholdRate,
  });
  const signal = (instance: string, alert: DeliverabilityAlert) =>
    getExternalWorkflowHandle(workflowIdFor(instance)).signal(deliverabilityAlertSignal, alert);

  for (const instance of crossing) {
    if (flagged.has(instance)) continue;
    const f = byInstance.get(instance)!;
    try {
      await signal(instance, alertOf(f, true));
    } catch (err) {
      // No entity workflow (a subaccount managed-smtp does not run, or a terminated workflow): nobody to flag,
      // and without a flag every run would announce it again, so it is only reported.
      summary.skipped.push({ instance, reason: `could not flag its workflow: ${describeFailure(err)}` });
      continue;
    }
    if (hasWebhook) {
      try {
        await webhook.postAlertWebhook({ ...target, ...slackMessage(raiseText(instance, f, input, from)) });
      } catch (err) {
        summary.errors.push(
          `${instance}: alert webhook failed: ${describeFailure(err)}; alert withdrawn until the next run`,
        );
        try {
          await signal(instance, alertOf(f, false));
        } catch (e) {
          summary.errors.push(`${instance}: could not withdraw the alert: ${describeFailure(e)}`);
        }
        continue;
      }
    }
    summary.raised.push(instance);
  }

  const crossingSet = new Set(crossing);
  for (const instance of [...flagged].sort()) {
    if (crossingSet.has(instance)) continue;
    const f = byInstance.get(instance) ?? ZERO;
    try {
      await signal(instance, alertOf(f, false));
    } catch (err) {
      summary.skipped.push({ instance, reason: `could not clear its alert: ${describeFailure(err)}` });
      continue;
    }
    summary.cleared.push(instance);
    if (hasWebhook) {
      try {
        await webhook.postAlertWebhook({ ...target, ...slackMessage(clearText(instance, f, input, from)) });
      } catch (err) {
        summary.errors.push(`${instance}: resolved webhook failed: ${describeFailure(err)}`);
      }
    }
  }
  return summary;
}

/** A Slack message: the text, and the same as one mrkdwn section. */
function slackMessage(text: string): { text: string; blocks: unknown[] } {
  return { text, blocks: [{ type: 'section', text: { type: 'mrkdwn', text } }] };
}
