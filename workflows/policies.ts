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
