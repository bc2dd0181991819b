/**
 * Retry policies and timeouts of every activity, in one place. Permanent vendor errors are thrown as non-retryable
 * ApplicationFailures by the activities, so they fail fast whatever the policy says; everything else is transient.
 *
 * - Provisioning steps retry transient errors without an attempt limit, backing off to one try a minute: an outage
 *   of SparkPost, Secret Manager or the instance leaves the instance visibly stuck on its step (search attributes,
 *   current details) rather than torn down; `smtpctl disable` cancels it and cleans up.
 * - The test email gets a short, bounded budget: other frontend replicas see new settings within ~5 s, so a test
 *   that still fails after about a minute means the settings do not work, and enable compensates.
 * - Compensations retry for a bounded time, so a failed enable always ends.
 * - Activities heartbeat before every vendor call (activities/heartbeat.ts); the 20 s heartbeat timeout (longer than
 *   the 15 s per-call vendor timeout) makes an activity whose worker was killed retry after 20 s, not after the whole
 *   start-to-close timeout.
 */
import type { ActivityOptions } from '@temporalio/workflow';

/** Steps that call SparkPost, Secret Manager or Sourcegraph. */
export const PROVISIONING: ActivityOptions = {
  startToCloseTimeout: '60s',
  heartbeatTimeout: '20s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '60s' },
};

/** The post-provisioning test email. */
export const TEST_EMAIL: ActivityOptions = {
  startToCloseTimeout: '45s',
  heartbeatTimeout: '20s',
  retry: { initialInterval: '2s', backoffCoefficient: 1.5, maximumInterval: '15s', maximumAttempts: 6 },
};

/** Compensating steps (also used by disable). */
export const COMPENSATION: ActivityOptions = {
  startToCloseTimeout: '60s',
  heartbeatTimeout: '20s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 12 },
};

/**
 * Day-two operations (rotation, sender switch, IP pool): transient errors retry for a few minutes, not forever. They
 * run in the queue, and an outage must end in a clean rollback rather than hold up the requests behind them.
 */
export const DAY_TWO: ActivityOptions = {
  ...PROVISIONING,
  scheduleToCloseTimeout: '5m',
  retry: { ...PROVISIONING.retry, maximumInterval: '30s', maximumAttempts: 8 },
};

/**
 * The invariant check: read-only, periodic and bounded, so a check against an unreachable instance returns quickly
 * ("could not run") and the next scheduled check tries again; one retry covers a blip. No heartbeat timeout: the
 * activity does not heartbeat (activities/progress.ts SILENT_ACTIVITIES), a heartbeat being a billed action on every
 * hourly check; a killed worker's check is retried after the 30 s start-to-close instead.
 */
export const CHECK: ActivityOptions = {
  startToCloseTimeout: '30s',
  scheduleToCloseTimeout: '70s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 2 },
};

/**
 * Disable's SparkPost steps (revoke the key, suspend the subaccount): short timeouts and quick retries, so disable
 * takes effect at SparkPost within 60 s of the request even while another step was stuck.
 */
export const DISABLE_SPARKPOST: ActivityOptions = {
  startToCloseTimeout: '15s',
  heartbeatTimeout: '10s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 20 },
};

/**
 * Restoring the site configuration on disable: bounded, because Sourcegraph may be down for days. Disable then ends
 * `disabled` with `restorePending` in the status, and the entity retries the restore on its own.
 */
export const RESTORE: ActivityOptions = {
  ...COMPENSATION,
  scheduleToCloseTimeout: '3m',
  retry: { ...COMPENSATION.retry, maximumAttempts: 6 },
};
