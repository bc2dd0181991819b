/**
 * Deliverability shapes and arithmetic shared by the stats and bounce-alert workflows, their activities and the client.
 * Pure.
 */

/**
 * The bounce rate used everywhere. SparkPost's own is bounces / targeted, but a bounce arrives after its injection,
 * so near a window's start bounces can outnumber the injections counted: the denominator never drops below what the
 * window saw accepted or bounced.
 */
export function bounceRateOf(f: { bounces: number; accepted: number; targeted: number }): number {
  const denominator = Math.max(f.targeted, f.accepted + f.bounces);
  return denominator > 0 ? f.bounces / denominator : 0;
}

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

/** The sum of several figures, with the bounce rate of the sum (not a mean of rates). */
export function sumFigures(rows: readonly DeliverabilityFigures[]): DeliverabilityFigures {
  const f = { accepted: 0, delivered: 0, bounces: 0, hardBounces: 0, targeted: 0 };
  for (const r of rows) {
    f.accepted += r.accepted;
    f.delivered += r.delivered;
    f.bounces += r.bounces;
    f.hardBounces += r.hardBounces;
    f.targeted += r.targeted;
  }
  return { ...f, bounceRate: bounceRateOf(f) };
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
  /** Also read spam complaints (rows get `complaints`), for reputation protection. Default false. */
  complaints?: boolean;
  /**
   * Return only the rows a bounce alert run acts on (issue 12: the result must not grow with the fleet): instances
   * crossing the threshold, those with hard bounces or complaints, and those named in `include` (flagged or on a
   * protection rung), at most MAX_NOTABLE_ROWS, crossing and included ones first. `listed` still counts them all.
   */
  notable?: {
    minAccepted: number;
    thresholdRate: number;
    include: string[];
    /** Fewer rows than MAX_NOTABLE_ROWS (the stats summary keeps no more than a page). */
    limit?: number;
  };
  /**
   * Return one page of every row instead (not with `notable`): the rows whose instance sorts after `after` (null:
   * from the first), at most `size` (1..STATS_PAGE_ROWS). A name, not an offset, so a fleet that changes between
   * pages never repeats a row. `next` says where the following page starts.
   */
  page?: { after: string | null; size: number };
}

/** Most rows a `notable` fleet read returns (about 150 bytes each: well under Temporal's payload limits). */
export const MAX_NOTABLE_ROWS = 1000;

/**
 * Most rows in one page of `smtpctl stats --all`, and in the fleet summary of `smtpctl stats` (issue 12: no fleet
 * payload larger than a page; 500 rows are about 75 KiB).
 */
export const STATS_PAGE_ROWS = 500;

/** Bounce rate at which an instance alerts (or is a problem row of `stats`) unless told otherwise. */
export const DEFAULT_THRESHOLD_RATE = 0.05;

/** Fewest accepted messages in the window for an instance to alert (or cross in `stats`) unless told otherwise. */
export const DEFAULT_MIN_ACCEPTED = 100;

/** One instance in the fleet figures: a non-terminated subaccount, named like the instance. */
export interface FleetRow extends DeliverabilityFigures {
  instance: string;
  subaccountId: number;
  /** Spam complaints (`count_spam_complaint`), when asked for. */
  complaints?: number;
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
  /** One row per instance, sorted by name; instances without traffic have zeros. With `notable`, only those. */
  rows: FleetRow[];
  /** Instances measured (with `notable`, also those whose rows were left out). */
  listed?: number;
  /** With `notable`: notable rows beyond the limit (MAX_NOTABLE_ROWS unless lower), left out. */
  omitted?: number;
  /** With `page`: the last instance of this page when more rows follow (the next page's `after`), else null. */
  next?: string | null;
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
   * `listed` replaces the visibility listing (names the run already has; `[]` confirms only `confirm`).
   */
  flaggedInstances(input?: { confirm?: string[]; listed?: string[] }): Promise<string[]>;
  /** Posts one message; a non-2xx answer is a retryable failure whose message never holds the URL. */
  postAlertWebhook(input: AlertWebhookInput): Promise<void>;
  /** Instances whose running entity is on a protection rung above ok (visibility; lib/protection.ts). */
  protectedInstances(): Promise<string[]>;
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

/** Figures of an instance without traffic in the window. */
export const ZERO_FIGURES: DeliverabilityFigures = {
  accepted: 0,
  delivered: 0,
  bounces: 0,
  hardBounces: 0,
  targeted: 0,
  bounceRate: 0,
};

/** The raise message. Names only the instance and counts: never a recipient. */
export function alertRaiseText(
  instance: string,
  f: DeliverabilityFigures,
  input: BounceAlertInput,
  from: string,
): string {
  return (
    `Managed SMTP bounce alert: ${instance} bounced ${percent(f.bounceRate)} of its email in the last ` +
    `${hours(input.windowHours)} (${f.bounces} bounces, ${f.hardBounces} hard; ${f.accepted} accepted, ` +
    `${f.targeted} targeted since ${from}); threshold ${percent(input.thresholdRate)} with at least ` +
    `${input.minAccepted} accepted.`
  );
}

/** The resolved message. Names only the instance and counts. */
export function alertClearText(
  instance: string,
  f: DeliverabilityFigures,
  input: BounceAlertInput,
  from: string,
): string {
  return (
    `Managed SMTP bounce alert resolved: ${instance} is at ${percent(f.bounceRate)} over the last ` +
    `${hours(input.windowHours)} (${f.bounces} bounces; ${f.accepted} accepted since ${from}); threshold ` +
    `${percent(input.thresholdRate)} with at least ${input.minAccepted} accepted.`
  );
}

/** A Slack message: the text, and the same as one mrkdwn section. */
export function slackMessage(text: string): { text: string; blocks: unknown[] } {
  return { text, blocks: [{ type: 'section', text: { type: 'mrkdwn', text } }] };
}
