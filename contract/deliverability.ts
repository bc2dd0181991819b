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
}

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
