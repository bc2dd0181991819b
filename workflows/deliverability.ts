/**
 * Deliverability: SparkPost's figures for one instance or the whole fleet, and the bounce-rate alert.
 *
 * - `deliverabilityStatsWorkflow` reads the figures (the worker holds the SparkPost key, the CLI does not); `smtpctl
 *   stats` executes it and prints the result. For the fleet that is a summary: totals, plan usage and the problem
 *   rows only (as the bounce alert picks them), so the result does not grow with the fleet (issue 12).
 * - `fleetStatsPageWorkflow` reads one page of every instance's row; `smtpctl stats --all` runs it page by page.
 * - `bounceAlertWorkflow` runs from the Temporal Schedule `managed-smtp-bounce-alerts` (or `smtpctl alerts run-once`):
 *   one fleet-wide metrics call, then for every instance whose bounce rate crosses the threshold with enough volume
 *   and that is not already flagged, it flags the instance's entity workflow (`deliverabilityAlert` signal, which
 *   sets the `ManagedSmtpBounceAlert` search attribute and the status) and posts one webhook message; flagged
 *   instances that no longer cross are cleared the same way. The entity's flag is the memory between runs, so an
 *   episode is announced once, however many runs see it.
 *
 * The activity types live here (not in activities/) because workflow code may only import types from its own side.
 */
import { ApplicationFailure, getExternalWorkflowHandle, patched, proxyActivities } from '@temporalio/workflow';
import { workflowIdFor } from '../lib/instance';
import type { DeliverabilityAlert } from '../lib/types';
import { describeFailure } from '../contract/failures';
import { bounceRateOf } from '../contract/deliverability';
import { deliverabilityAlertSignal } from '../contract/messages';
import { protectionSignal } from '../contract/messages';
import type { ProtectionRequest } from '../contract/types';

export * from '../contract/deliverability';
import {
  alertClearText,
  alertRaiseText,
  DEFAULT_MIN_ACCEPTED,
  DEFAULT_THRESHOLD_RATE,
  slackMessage,
  STATS_PAGE_ROWS,
  ZERO_FIGURES,
} from '../contract/deliverability';
import type {
  BounceAlertInput,
  BounceAlertSummary,
  DeliverabilityActivities,
  DeliverabilityFigures,
  FleetDeliverability,
  FleetRow,
} from '../contract/deliverability';

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

export { bounceRateOf };

/** Input of deliverabilityStatsWorkflow: one instance (with its subaccount id) or, without one, the fleet. */
export interface DeliverabilityStatsInput {
  instance?: string;
  subaccountId?: number;
  /** ISO 8601 start of the window. */
  from: string;
  to?: string;
  /** Fleet: the bounce rate (0, 1] at which a row is a problem, with minAccepted. Default DEFAULT_THRESHOLD_RATE. */
  thresholdRate?: number;
  /** Fleet: fewest accepted messages for a row to cross thresholdRate. Default DEFAULT_MIN_ACCEPTED. */
  minAccepted?: number;
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

/** Input of fleetStatsPageWorkflow. */
export interface FleetStatsPageInput {
  /** ISO 8601 start of the window. */
  from: string;
  to?: string;
  /** The `next` of the previous page; null for the first. */
  after: string | null;
  /** Rows in the page, 1..STATS_PAGE_ROWS. Default STATS_PAGE_ROWS. */
  size?: number;
}

/** One page of every instance's row (with complaints), sorted by instance. */
export interface FleetStatsPage {
  from: string;
  to: string | null;
  rows: FleetRow[];
  /** Instances in the fleet when this page was read. */
  listed: number;
  /** The `after` of the next page, or null when this is the last. */
  next: string | null;
}

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
  if (patched('stats-notable-rows')) {
    // The whole fleet's rows were 700 KiB at 5,000 instances: the summary keeps the rows the bounce alert would
    // act on, at most a page of them; `smtpctl stats --all` pages through the rest (fleetStatsPageWorkflow).
    const thresholdRate = input.thresholdRate ?? DEFAULT_THRESHOLD_RATE;
    const minAccepted = input.minAccepted ?? DEFAULT_MIN_ACCEPTED;
    checkNotable(thresholdRate, minAccepted);
    const { flagged, onRung } = await watchedInstances();
    const notable = { minAccepted, thresholdRate, include: [...flagged, ...onRung], limit: STATS_PAGE_ROWS };
    const fleet = await reads.fleetDeliverability({ from, to, plan: true, complaints: true, notable });
    return { scope: 'fleet', from, to: to ?? null, ...fleet };
  }
  const fleet = await reads.fleetDeliverability({ from, to, plan: true });
  return { scope: 'fleet', from, to: to ?? null, ...fleet };
}

/**
 * One page of every instance's SparkPost figures: the rows after `after`, at most `size`. A workflow per page keeps
 * every payload (activity result and workflow result) to one page however large the fleet.
 */
export async function fleetStatsPageWorkflow(input: FleetStatsPageInput): Promise<FleetStatsPage> {
  const from = checkTime(input?.from, 'from');
  if (from === undefined) throw invalidInput('from is required');
  const to = checkTime(input.to, 'to');
  const after = input.after ?? null;
  // A subaccount name (SparkPost allows up to 1,024 characters), as the previous page's `next` gave it.
  if (after !== null && (typeof after !== 'string' || after === '' || after.length > 1024)) {
    throw invalidInput('after must be an instance name or null');
  }
  const size = input.size ?? STATS_PAGE_ROWS;
  if (!Number.isSafeInteger(size) || size < 1 || size > STATS_PAGE_ROWS) {
    throw invalidInput(`size must be a whole number from 1 to ${STATS_PAGE_ROWS}`);
  }
  const page = await reads.fleetDeliverability({ from, to, plan: false, complaints: true, page: { after, size } });
  return { from, to: to ?? null, rows: page.rows, listed: page.listed ?? page.rows.length, next: page.next ?? null };
}

function checkNotable(thresholdRate: unknown, minAccepted: unknown): void {
  if (typeof thresholdRate !== 'number' || !(thresholdRate > 0 && thresholdRate <= 1)) {
    throw invalidInput('thresholdRate must be a number in (0, 1]');
  }
  if (typeof minAccepted !== 'number' || !Number.isSafeInteger(minAccepted) || minAccepted < 0) {
    throw invalidInput('minAccepted must be a non-negative integer');
  }
}

/** Instances flagged by the bounce alert and those on a protection rung: notable whatever their figures. */
async function watchedInstances(): Promise<{ flagged: string[]; onRung: string[] }> {
  const [flagged, onRung] = await Promise.all([reads.flaggedInstances({}), reads.protectedInstances()]);
  return { flagged, onRung };
}

function checkAlertInput(input: BounceAlertInput): void {
  if (!input || typeof input !== 'object') throw invalidInput('missing input');
  const { thresholdRate, minAccepted, windowHours } = input;
  checkNotable(thresholdRate, minAccepted);
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

  // Only the rows this run acts on cross the activity boundary (the whole fleet's rows grew past 700 KiB at 5,000
  // instances): crossing ones, noisy ones, and those already flagged or on a protection rung.
  let onRung: string[] | undefined;
  let flaggedAtStart: string[] | undefined;
  let fleet: FleetDeliverability;
  if (patched('bounce-alert-notable-rows')) {
    const watched = await watchedInstances();
    onRung = watched.onRung;
    flaggedAtStart = watched.flagged;
    const notable = {
      minAccepted: input.minAccepted,
      thresholdRate: input.thresholdRate,
      include: [...watched.flagged, ...watched.onRung],
    };
    fleet = await reads.fleetDeliverability({ from, plan: false, complaints: true, notable });
  } else {
    fleet = await reads.fleetDeliverability({ from, plan: false, complaints: true });
  }
  const byInstance = new Map(fleet.rows.map((r) => [r.instance, r]));
  const crossing = fleet.rows
    .filter((r) => r.accepted >= input.minAccepted && r.bounceRate >= input.thresholdRate)
    .map((r) => r.instance);
  const flagged = new Set(await confirmFlagged(crossing, flaggedAtStart));

  const summary: BounceAlertSummary = {
    from,
    checked: fleet.listed ?? fleet.rows.length,
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
        await webhook.postAlertWebhook({ ...target, ...slackMessage(alertRaiseText(instance, f, input, from)) });
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
    const f = byInstance.get(instance) ?? ZERO_FIGURES;
    try {
      await signal(instance, alertOf(f, false));
    } catch (err) {
      summary.skipped.push({ instance, reason: `could not clear its alert: ${describeFailure(err)}` });
      continue;
    }
    summary.cleared.push(instance);
    if (hasWebhook) {
      try {
        await webhook.postAlertWebhook({ ...target, ...slackMessage(alertClearText(instance, f, input, from)) });
      } catch (err) {
        summary.errors.push(`${instance}: resolved webhook failed: ${describeFailure(err)}`);
      }
    }
  }
  if (fleet.omitted) {
    summary.errors.push(`${fleet.omitted} instances with bounces or complaints were left for the next run (row limit)`);
  }
  await observeForProtection(fleet.rows, input, at, from, summary, onRung);
  return summary;
}

/**
 * The flagged instances among those known flagged at the start of the run and the crossing ones. Without a start
 * listing (runs from before the notable rows) one activity lists and confirms them all; with one, only crossing
 * instances not already known are confirmed, so neither the listing nor its describes are repeated.
 */
async function confirmFlagged(crossing: string[], atStart: string[] | undefined): Promise<string[]> {
  if (!atStart) return reads.flaggedInstances({ confirm: crossing });
  const known = new Set(atStart);
  const fresh = crossing.filter((name) => !known.has(name));
  return fresh.length ? [...atStart, ...(await reads.flaggedInstances({ listed: [], confirm: fresh }))] : atStart;
}

/**
 * Reputation protection (issue 13): the polled figures feed each instance's ladder as a `metrics` observation
 * (counts only). Sent to instances with hard bounces or complaints in the window, and to those already on a rung,
 * whose quiet figures let them recover; quiet instances on no rung get nothing.
 */
async function observeForProtection(
  rows: FleetRow[],
  input: BounceAlertInput,
  at: string,
  from: string,
  summary: BounceAlertSummary,
  rung?: string[],
): Promise<void> {
  const onRung = new Set(rung ?? (await reads.protectedInstances()));
  const target = input.webhookSecret
    ? { secret: input.webhookSecret }
    : input.webhookUrl
      ? { url: input.webhookUrl }
      : null;
  for (const r of rows) {
    const complaints = r.complaints ?? 0;
    if (!onRung.has(r.instance) && r.hardBounces === 0 && complaints === 0) continue;
    // Already reported as having no workflow to signal: once is enough.
    if (summary.skipped.some((x) => x.instance === r.instance)) continue;
    const request: ProtectionRequest = {
      requestId: `metrics-${r.instance}-${at}`,
      input: {
        kind: 'observe',
        observation: {
          source: 'metrics',
          at,
          from,
          sent: Math.max(r.targeted, r.accepted + r.bounces),
          hardBounces: r.hardBounces,
          complaints,
        },
      },
      ...(target ? { alertWebhook: target } : {}),
    };
    try {
      await getExternalWorkflowHandle(workflowIdFor(r.instance)).signal(protectionSignal, request);
    } catch (err) {
      summary.skipped.push({
        instance: r.instance,
        reason: `could not send its protection figures: ${describeFailure(err)}`,
      });
    }
  }
}
