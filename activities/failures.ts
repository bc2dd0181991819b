/**
 * Turns VendorErrors into Temporal ApplicationFailures: permanent kinds become non-retryable (the workflow fails
 * fast and compensates), transient kinds stay retryable and Temporal's retry policy backs off. A 429 gets an explicit
 * next-retry delay: the vendor's Retry-After, or SparkPost's advice of 1 to 5 s growing with the attempt.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { VendorError } from '../lib/errors';

/** ApplicationFailure type of a failed test email (retryable: replicas pick up new settings within ~5 s). */
export const TEST_EMAIL_FAILED = 'TestEmailFailed';
/** ApplicationFailure type of a site configuration that cannot be parsed or edited. */
export const SITE_CONFIG_UNUSABLE = 'SiteConfigUnusableError';
/** ApplicationFailure type of settings the customer owns (never overwritten without --force). */
export const CUSTOMER_OWNED = 'CustomerOwnedSettingsError';

/** Settings that are the customer's: a permanent failure, so the workflow never retries over them. */
export function customerOwned(message: string): never {
  throw ApplicationFailure.nonRetryable(message, CUSTOMER_OWNED);
}

/** A site configuration that cannot be parsed or edited: a permanent failure, naming the problem, never the text. */
export function siteConfigUnusable(err: unknown): never {
  const why = err instanceof Error ? err.message : String(err);
  throw ApplicationFailure.nonRetryable(`cannot edit the site configuration: ${why}`, SITE_CONFIG_UNUSABLE);
}

function currentAttempt(): number {
  try {
    return Context.current().info.attempt;
  } catch {
    return 1; // outside an activity (unit tests)
  }
}

/** The delay before retrying a rate-limited call. */
export function rateLimitDelayMs(err: VendorError, attempt: number): number {
  if (err.retryAfterMs !== undefined) return Math.min(Math.max(err.retryAfterMs, 500), 60_000);
  return Math.min(1000 * 2 ** Math.max(0, attempt - 1), 30_000);
}

/** Maps an error thrown inside an activity to what the activity should throw. */
export function toFailure(err: unknown): unknown {
  if (!(err instanceof VendorError)) return err;
  if (!err.retryable) return ApplicationFailure.nonRetryable(err.message, err.type);
  return ApplicationFailure.create({
    message: err.message,
    type: err.type,
    nextRetryDelay: err.kind === 'rate-limited' ? rateLimitDelayMs(err, currentAttempt()) : undefined,
  });
}

/** Wraps every function of an activity object so vendor errors leave as typed ApplicationFailures. */
export function withFailureMapping<T extends Record<string, (...args: never[]) => Promise<unknown>>>(acts: T): T {
  const wrapped: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(acts)) {
    wrapped[name] = async (...args: never[]) => {
      try {
        return await fn(...args);
      } catch (err) {
        throw toFailure(err);
      }
    };
  }
  return wrapped as T;
}
