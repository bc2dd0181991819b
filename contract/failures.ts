/**
 * Failure types: one list, with whether Temporal may retry them. Activities throw these as ApplicationFailure types,
 * workflows branch on them, and clients show them. Pure.
 */
import { ApplicationFailure } from '@temporalio/common';

/** Every ApplicationFailure type managed-smtp raises, and whether it is worth a retry. */
export const FAILURE_TYPES = {
  /** The instance's email settings are the customer's: never overwritten without --force. */
  CustomerOwnedSettingsError: { retryable: false },
  /** The site configuration cannot be parsed or edited. */
  SiteConfigUnusableError: { retryable: false },
  /** The instance's test email failed (other replicas may not have the settings yet). */
  TestEmailFailed: { retryable: true },
  /** A target or secret the request named is not allowed (allow-list, another project, another instance). */
  TargetRefused: { retryable: false },
  /** The worker lacks something it needs (a Temporal client, a key). */
  ConfigError: { retryable: false },
} as const;

/** One of FAILURE_TYPES. */
export type FailureType = keyof typeof FAILURE_TYPES;

/** ApplicationFailure type of settings the customer owns. */
export const CUSTOMER_OWNED: FailureType = 'CustomerOwnedSettingsError';
/** ApplicationFailure type of a site configuration that cannot be parsed or edited. */
export const SITE_CONFIG_UNUSABLE: FailureType = 'SiteConfigUnusableError';
/** ApplicationFailure type of a failed test email. */
export const TEST_EMAIL_FAILED: FailureType = 'TestEmailFailed';

/** The innermost ApplicationFailure of an error chain (activity → application failure), if any. */
export function rootFailure(err: unknown): unknown {
  let e: unknown = err;
  for (let i = 0; i < 5 && e instanceof Error && e.cause instanceof Error; i++) e = e.cause;
  return e;
}

/** Whether an error chain ends in an ApplicationFailure of `type`. */
export function isFailureType(err: unknown, type: FailureType): boolean {
  const e = rootFailure(err);
  return e instanceof ApplicationFailure && e.type === type;
}

/** A readable one-line message from any failure, preferring the activity's own message. */
export function describeFailure(err: unknown): string {
  const e = rootFailure(err);
  if (e instanceof ApplicationFailure && e.type) return `${e.message} (${e.type})`;
  return e instanceof Error ? e.message : String(e);
}
