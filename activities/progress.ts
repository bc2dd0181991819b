/**
 * Progress that survives a failed vendor call (issue 15). Under heavy vendor faults an activity of five or six calls
 * rarely gets through all of them in one attempt, and every failed attempt used to cost a backoff of up to a minute.
 * Three techniques, each where it is safe (README, "Progress under faults"):
 *
 * - `retryingReads`: a short, bounded retry (three tries within a few hundred milliseconds, heartbeating) of
 *   idempotent reads inside the activity. Writes are never retried here: Temporal stays the only retry layer for them.
 * - `recordProgress` / `previousProgress`: heartbeat details saying what an attempt already did (ids, never a key), so
 *   the next attempt can act on them at once, e.g. revoke a key it minted but could not store.
 * - `youngRetryDelayMs`: while a provisioning step is young, its next retry comes after at most a few seconds instead
 *   of the policy's one minute ceiling, which stays in force for a step that keeps failing (an outage).
 */
import { Context } from '@temporalio/activity';
import { TIMEOUT_CODE, VendorError } from '../lib/errors';

/** Tries of one read, the first included. */
export const READ_TRIES = 3;
/** Pause before the 2nd and 3rd try of a read, in ms (plus up to 50 % jitter). */
export const READ_RETRY_PAUSES_MS: readonly number[] = [100, 250];

/** Read methods, by client, that `retryingReads` retries; every other method passes through untouched. */
export const IDEMPOTENT_READS = {
  sparkpost: [
    'getSubaccount',
    'findSubaccountsByName',
    'listApiKeys',
    'listSubaccounts',
    'getSendingDomain',
    'listIpPools',
  ],
  secrets: ['access', 'accessIfExists', 'listVersions'],
  sourcegraph: ['getSiteConfig'],
} as const;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Whether a failed read is worth trying again at once: a refusal that came back fast (5xx, 429, UNAVAILABLE, a reset
 * connection, a garbled body). A timeout is not: it already took the whole per-call timeout, and Temporal's backoff
 * suits a vendor that hangs better.
 */
export function quickTransient(err: unknown): boolean {
  if (!(err instanceof VendorError)) return false;
  if (err.kind !== 'unavailable' && err.kind !== 'rate-limited' && err.kind !== 'malformed') return false;
  // A call that timed out already took its whole timeout: trying again inside the attempt could outlast it.
  if (err.code === TIMEOUT_CODE || err.code === 'DEADLINE_EXCEEDED') return false;
  return !/timed out|deadline/i.test(err.message);
}

/**
 * Activities that never heartbeat: short reads bounded by their start-to-close timeout (policy CHECK has no heartbeat
 * timeout). Every heartbeat that reaches the server is a billed action, the SDK sends an activity's first one at
 * once, and the hourly fleet check runs `checkInstance` once per instance: its heartbeat cost as much as the update.
 */
export const SILENT_ACTIVITIES: ReadonlySet<string> = new Set(['checkInstance']);

/** Longest a liveness heartbeat waits after an attempt starts (never more than a third of its heartbeat timeout). */
export const LIVENESS_GRACE_MS = 5_000;
// When each running attempt was first seen here: liveness heartbeats start only once it has run a while.
const firstSeen = new WeakMap<object, number>();

/**
 * Heartbeats the running activity with `details` (liveness: "still here"), unless it is silent, there is no activity,
 * or the attempt is still young. Most attempts finish in well under a second, and the SDK sends an attempt's first
 * heartbeat at once: a server write and a billed action each, which cost about as much as the activity itself. The
 * server's heartbeat timeout runs from the attempt's start either way, so a worker killed early is still noticed
 * within that timeout. Progress (recordProgress) always goes out: the next attempt needs it.
 */
export function heartbeatUnlessSilent(details: unknown): void {
  try {
    const ctx = Context.current();
    if (SILENT_ACTIVITIES.has(ctx.info.activityType)) return;
    const now = Date.now();
    let since = firstSeen.get(ctx);
    if (since === undefined) firstSeen.set(ctx, (since = now));
    const grace = Math.min(LIVENESS_GRACE_MS, (ctx.info.heartbeatTimeoutMs ?? 3 * LIVENESS_GRACE_MS) / 3);
    if (now - since >= grace) ctx.heartbeat(details);
  } catch {
    // Outside an activity (unit tests, scripts): nothing to report to.
  }
}

/** A liveness heartbeat that repeats the details the attempt recorded, so it does not wipe them. */
export function beat(): void {
  heartbeatUnlessSilent(lastDetails());
}

/**
 * A proxy of `client` whose `reads` are tried up to READ_TRIES times when they fail quickly and transiently, with a
 * heartbeat before each try. Only for methods that change nothing. `pausesMs` replaces READ_RETRY_PAUSES_MS (the
 * simulated year shortens them: the time-skipping server cannot skip a wait inside an activity).
 */
export function retryingReads<T extends object>(
  client: T,
  reads: readonly string[],
  pausesMs: readonly number[] = READ_RETRY_PAUSES_MS,
): T {
  const retried = new Set(reads);
  return new Proxy(client, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function' || typeof prop !== 'string' || !retried.has(prop)) return value;
      return async (...args: unknown[]) => {
        for (let tryNo = 1; ; tryNo++) {
          try {
            return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          } catch (err) {
            if (tryNo >= READ_TRIES || !quickTransient(err)) throw err;
            const pause = pausesMs[tryNo - 1] ?? 250;
            await sleep(pause * (1 + Math.random() * 0.5));
            beat();
          }
        }
      };
    },
  });
}

// Details recorded by the running activity, so that the bare heartbeats before vendor calls repeat them rather than
// wipe them (a heartbeat replaces the previous details).
const recorded = new WeakMap<object, unknown>();

function currentContext(): Context | null {
  try {
    return Context.current();
  } catch {
    return null;
  }
}

/** The details this attempt recorded so far (undefined: none). */
export function lastDetails(): unknown {
  const ctx = currentContext();
  return ctx ? recorded.get(ctx) : undefined;
}

/**
 * Records what this attempt has done (ids only, never a secret), merged into what it recorded before, and heartbeats
 * it; the next attempt reads it back with previousProgress.
 */
export function recordProgress<T extends object>(details: T): void {
  const ctx = currentContext();
  if (!ctx) return;
  const merged = { ...(recorded.get(ctx) as object | undefined), ...details };
  recorded.set(ctx, merged);
  ctx.heartbeat(merged);
}

/** What the previous attempt recorded, if anything. */
export function previousProgress<T extends object>(): Partial<T> {
  const ctx = currentContext();
  const d: unknown = ctx?.info.heartbeatDetails;
  return d && typeof d === 'object' ? (d as Partial<T>) : {};
}

/** How long a provisioning step counts as young, from its first schedule. */
export const YOUNG_FOR_MS = 120_000;
/** The backoff ceiling of a young step, in ms (the policy's ceiling is a minute). */
export const YOUNG_MAX_DELAY_MS = 2_000;

/** Provisioning steps of enable that get the young ceiling; the test email keeps its own budget. */
export const YOUNG_BACKOFF_ACTIVITIES: ReadonlySet<string> = new Set([
  'inspectSiteConfig',
  'findSubaccount',
  'ensureSubaccount',
  'ensureSendKey',
  'applyManagedSiteConfig',
]);

/**
 * The next-retry delay of a young provisioning step after a transient failure (1, 2, 2, 2, ... s, or a shorter delay
 * the caller computed), or undefined when the policy's backoff applies: the step is not a provisioning step, is older
 * than YOUNG_FOR_MS, or the vendor said how long to wait.
 */
export function youngRetryDelayMs(err: VendorError, computed: number | undefined): number | undefined {
  const ctx = currentContext();
  if (!ctx) return computed;
  const { activityType, attempt, scheduledTimestampMs } = ctx.info;
  if (!YOUNG_BACKOFF_ACTIVITIES.has(activityType) || err.retryAfterMs !== undefined) return computed;
  if (Date.now() - scheduledTimestampMs > YOUNG_FOR_MS) return computed;
  const young = Math.min(1000 * 2 ** Math.max(0, attempt - 1), YOUNG_MAX_DELAY_MS);
  return computed === undefined ? young : Math.min(computed, young);
}
