/**
 * The GDPR deletion activity: files SparkPost data-privacy requests (right to be forgotten, optionally opt-out) for an
 * instance's recipients, scoped to its subaccount (X-MSYS-SUBACCOUNT), at most 1000 recipients per request.
 *
 * Addresses live only inside this activity: with `allRecipients` it lists them from the subaccount's message events
 * and files them in the same call; a listed request arrives sealed (lib/sealed.ts) and is unsealed here. Errors,
 * logs, heartbeats and the result carry counts, never addresses.
 *
 * Retries resume: after each batch the activity heartbeats `{ batchesDone, batches, fingerprint }`, and a retried
 * attempt that finds the same recipients skips the batches already filed. A batch whose response was lost is filed
 * again, which SparkPost tolerates (a duplicate deletion request is harmless).
 */
import { createHash, createHmac } from 'node:crypto';
import { CancelledFailure, Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { CodecKey } from '../lib/codec';
import { unseal } from '../lib/sealed';
import type { SparkPostClient } from '../vendors/sparkpost';
import {
  GDPR_BATCH_SIZE,
  MAX_LISTED_RECIPIENTS,
  gdprSealContext,
  isEmailAddress,
  type GdprActivities,
  type GdprFilingFailureDetails,
  type GdprFilingInput,
  type GdprFilingResult,
} from '../workflows/gdpr';
import { toFailure } from './failures';

/** The SparkPost calls the GDPR activity makes. */
export type GdprSparkPostApi = Pick<
  SparkPostClient,
  'createRtbfRequest' | 'createOptOutRequest' | 'listMessageEventRecipients'
>;

/** Everything the GDPR activity needs. */
export interface GdprActivityDeps {
  sparkpost: GdprSparkPostApi;
  /** Keys that open sealed recipient lists (MANAGED_SMTP_CODEC_KEYS); null when the worker has none. */
  sealingKeys: readonly CodecKey[] | null;
  /** Events per page when listing recipients (SparkPost allows up to 10 000; tests use small pages). */
  eventsPerPage?: number;
  /** Bound on event pages: more fails the request rather than silently skipping people. */
  maxEventPages?: number;
  /** How often a liveness heartbeat goes out while a long SparkPost call runs. */
  heartbeatEveryMs?: number;
}

/** ApplicationFailure type of a request that cannot be filed as given (bad addresses, too many, nothing sealed). */
export const GDPR_INVALID_REQUEST = 'GdprInvalidRequestError';
/** ApplicationFailure type of a sealed list the worker cannot open (no keys, unknown key, altered data). */
export const GDPR_SEALING_FAILED = 'GdprSealingError';

const DEFAULT_EVENTS_PER_PAGE = 10_000;
const DEFAULT_MAX_EVENT_PAGES = 100;
const DEFAULT_HEARTBEAT_EVERY_MS = 10_000;
/** Anything address-shaped in a message we did not write ourselves (same pattern as the SparkPost client). */
const ADDRESS_LIKE = /[^\s<>"'(),;:@]+@[^\s<>"'(),;:@]+/g;

/** Progress as heartbeated. `fingerprint` identifies the recipient set without revealing it ('' = none taken). */
interface Progress {
  batchesDone: number;
  batches: number;
  fingerprint: string;
}

function readProgress(details: unknown): Progress | null {
  if (details === null || typeof details !== 'object') return null;
  const d = details as Record<string, unknown>;
  if (!Number.isSafeInteger(d.batchesDone) || !Number.isSafeInteger(d.batches) || typeof d.fingerprint !== 'string') {
    return null;
  }
  return { batchesDone: d.batchesDone as number, batches: d.batches as number, fingerprint: d.fingerprint };
}

/**
 * A digest of the whole recipient set, so a retry resumes only when it would file exactly the same batches. Only
 * taken for sets of more than one batch (over 1000 addresses), whose digest cannot be reversed by guessing; keyed
 * with the sealing key when the worker has one, so even a guess cannot be confirmed from the history.
 */
function fingerprintOf(recipients: readonly string[], key: CodecKey | undefined): string {
  const h = key ? createHmac('sha256', key.key) : createHash('sha256');
  for (const r of [...recipients].sort()) h.update(r).update('\n');
  return h.digest('hex').slice(0, 32);
}

function invalidRequest(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, GDPR_INVALID_REQUEST);
}

function sealingFailed(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, GDPR_SEALING_FAILED);
}

/** The failure to throw: the mapped error with how far filing got, addresses scrubbed from its message. */
function withProgress(err: unknown, progress: GdprFilingFailureDetails): unknown {
  if (err instanceof CancelledFailure) return err;
  const mapped = toFailure(err);
  const message = (mapped instanceof Error ? mapped.message : String(mapped)).replace(ADDRESS_LIKE, '[address]');
  const where = progress.batches > 0 ? ` (after ${progress.batchesDone} of ${progress.batches} batches)` : '';
  if (mapped instanceof ApplicationFailure) {
    return ApplicationFailure.create({
      message: message + where,
      type: mapped.type ?? undefined,
      nonRetryable: mapped.nonRetryable === true,
      nextRetryDelay: mapped.nextRetryDelay,
      details: [progress],
    });
  }
  // Not a vendor error: a bug. Retryable, so a fixed worker can finish the request.
  return ApplicationFailure.create({ message: message + where, type: 'GdprFilingError', details: [progress] });
}

/** Builds the GDPR activity from injected clients and keys. */
export function createGdprActivities(deps: GdprActivityDeps) {
  const { sparkpost } = deps;

  /** The addresses of a listed request: unsealed, checked, de-duplicated (first spelling kept, order kept). */
  function listedRecipients(input: GdprFilingInput): string[] {
    if (!input.sealedRecipients) throw invalidRequest('no recipients: neither a sealed list nor allRecipients');
    if (!deps.sealingKeys || deps.sealingKeys.length === 0) {
      throw sealingFailed('this worker has no MANAGED_SMTP_CODEC_KEYS, so it cannot open the sealed recipient list');
    }
    let text: string;
    try {
      text = unseal(deps.sealingKeys, input.sealedRecipients, gdprSealContext(input.instance, input.requestId));
    } catch (err) {
      throw sealingFailed(`cannot open the sealed recipient list: ${err instanceof Error ? err.message : String(err)}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      // Never pass JSON.parse's message on: it quotes the text.
      parsed = null;
    }
    if (!Array.isArray(parsed) || parsed.some((r) => typeof r !== 'string')) {
      throw invalidRequest('the sealed recipient list is not a JSON array of strings');
    }
    const all = (parsed as string[]).map((r) => r.trim());
    if (all.length === 0) throw invalidRequest('the sealed recipient list is empty');
    if (all.length > MAX_LISTED_RECIPIENTS) {
      throw invalidRequest(`at most ${MAX_LISTED_RECIPIENTS} recipients per request, got ${all.length}`);
    }
    const invalid = all.filter((r) => !isEmailAddress(r)).length;
    if (invalid > 0) throw invalidRequest(`${invalid} of ${all.length} recipients are not valid email addresses`);
    return [...new Set(all)];
  }

  /** The subaccount's event recipients up to `listedUntil` (sorted, so every attempt batches them the same way). */
  async function eventRecipients(input: GdprFilingInput): Promise<{ recipients: string[]; skippedInvalid: number }> {
    const until = Date.parse(input.listedUntil);
    if (Number.isNaN(until)) throw invalidRequest('listedUntil is not a time');
    // SparkPost takes whole seconds: round up so events of the request's own second are included.
    const to = new Date(Math.ceil(until / 1000) * 1000).toISOString();
    const listed = await sparkpost.listMessageEventRecipients({
      subaccountId: input.subaccountId,
      to,
      perPage: deps.eventsPerPage ?? DEFAULT_EVENTS_PER_PAGE,
      maxPages: deps.maxEventPages ?? DEFAULT_MAX_EVENT_PAGES,
    });
    const valid = new Set<string>();
    let skippedInvalid = 0;
    for (const r of listed) {
      const t = r.trim();
      if (isEmailAddress(t)) valid.add(t);
      else skippedInvalid++;
    }
    return { recipients: [...valid].sort(), skippedInvalid };
  }

  const activities = {
    /**
     * Files RTBF (and with `optOut`, opt-out) requests for the request's recipients, 1000 per request, scoped to the
     * subaccount. Resumes after the batches an earlier attempt filed. Returns counts only.
     */
    async fileGdprDeletion(input: GdprFilingInput): Promise<GdprFilingResult> {
      const ctx = Context.current();
      const previous = readProgress(ctx.info.heartbeatDetails);
      // Until this attempt knows its batches, liveness heartbeats repeat the earlier attempt's progress, so a retry of
      // this attempt can still resume from it.
      let current: unknown = ctx.info.heartbeatDetails;
      const liveness = setInterval(() => ctx.heartbeat(current), deps.heartbeatEveryMs ?? DEFAULT_HEARTBEAT_EVERY_MS);
      let failure: GdprFilingFailureDetails = { batchesDone: 0, batches: 0, recipients: 0 };
      try {
        let recipients: string[];
        let skippedInvalid = 0;
        if (input.allRecipients) ({ recipients, skippedInvalid } = await eventRecipients(input));
        else recipients = listedRecipients(input);

        const batches: string[][] = [];
        for (let i = 0; i < recipients.length; i += GDPR_BATCH_SIZE) {
          batches.push(recipients.slice(i, i + GDPR_BATCH_SIZE));
        }
        const fingerprint = batches.length > 1 ? fingerprintOf(recipients, deps.sealingKeys?.[0]) : '';
        const resume =
          previous && fingerprint && previous.fingerprint === fingerprint && previous.batches === batches.length
            ? Math.min(previous.batchesDone, batches.length)
            : 0;
        failure = { batchesDone: resume, batches: batches.length, recipients: recipients.length };
        if (resume > 0) {
          ctx.log.info(`GDPR ${input.requestId}: resuming after ${resume} of ${batches.length} batches`);
        }

        let requestsSent = 0;
        for (let i = resume; i < batches.length; i++) {
          if (ctx.cancellationSignal.aborted) throw new CancelledFailure('GDPR deletion cancelled');
          await sparkpost.createRtbfRequest(input.subaccountId, batches[i]);
          requestsSent++;
          if (input.optOut) {
            await sparkpost.createOptOutRequest(input.subaccountId, batches[i]);
            requestsSent++;
          }
          const progress: Progress = { batchesDone: i + 1, batches: batches.length, fingerprint };
          current = progress;
          failure = { ...failure, batchesDone: i + 1 };
          ctx.heartbeat(progress);
          ctx.log.info(
            `GDPR ${input.requestId}: filed batch ${i + 1}/${batches.length} (${batches[i].length} recipients` +
              `${input.optOut ? ', with opt-out' : ''}) for subaccount ${input.subaccountId}`,
          );
        }
        return {
          recipients: recipients.length,
          batches: batches.length,
          requestsSent,
          resumedBatches: resume,
          skippedInvalid,
        };
      } catch (err) {
        throw withProgress(err, failure);
      } finally {
        clearInterval(liveness);
      }
    },
  } satisfies GdprActivities;
  return activities;
}

/** The GDPR activity functions, as a worker registers them. */
export type GdprActivityFunctions = ReturnType<typeof createGdprActivities>;
