/**
 * The GDPR activities: file SparkPost data-privacy requests (right to be forgotten, optionally opt-out) for the
 * recipients of a request's secret, scoped to the instance's subaccount (X-MSYS-SUBACCOUNT), at most 1000 per
 * request; verify the erasure after SparkPost's window by keyed hashes; shred the secret. Plus the offboarding's
 * pieces that touch the same data (creating an all-recipients request secret, deleting every managed secret).
 *
 * Addresses live only inside these activities and in the request's secret: errors, logs, heartbeats and results
 * carry counts, never addresses. Once filed, the list in the secret is replaced by keyed hashes (HMAC-SHA256 with
 * a key that lives in the same secret), so verification matches SparkPost's data against the request without the
 * list being readable any more, and the hashes die with the secret.
 *
 * Retries resume: after each batch the filing heartbeats `{ batchesDone, batches, fingerprint }` (the fingerprint a
 * keyed hash of the whole set), and a retried attempt that finds the same recipients skips the batches already
 * filed. A batch whose response was lost is filed again, which SparkPost tolerates.
 */
import { CancelledFailure, Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { createHmac } from 'node:crypto';
import { VendorError } from '../lib/errors';
import {
  gdprSecretVersions,
  readGdprSecretVersions,
  recipientHash,
  UnsealError,
  type GdprSecretPayload,
} from '../lib/sealed';
import { writeGdprSecret } from '../lib/gdpr-secret';
import type { SecretStore } from '../vendors/secret-manager';
import { MESSAGE_EVENTS_RETENTION_MS, type SparkPostClient } from '../vendors/sparkpost';
import {
  GDPR_BATCH_SIZE,
  MAX_LISTED_RECIPIENTS,
  gdprSecretContext,
  isEmailAddress,
  type GdprActivities,
  type GdprFilingFailureDetails,
  type GdprFilingInput,
  type GdprFilingResult,
  type GdprVerifyInput,
} from '../contract/gdpr';
import { toFailure } from './failures';
import { replaceAddresses } from '../lib/recipients';

/** The SparkPost calls the GDPR activities make. */
export type GdprSparkPostApi = Pick<
  SparkPostClient,
  | 'createRtbfRequest'
  | 'createOptOutRequest'
  | 'listMessageEventRecipients'
  | 'searchMessageEvents'
  | 'searchSuppressions'
>;

/** The Secret Manager calls the GDPR activities make. */
export type GdprSecretsApi = Pick<
  SecretStore,
  'ensureSecret' | 'addVersion' | 'access' | 'listVersions' | 'destroyVersion' | 'deleteSecret' | 'listSecrets'
>;

/** Everything the GDPR activities need. */
export interface GdprActivityDeps {
  sparkpost: GdprSparkPostApi;
  secrets: GdprSecretsApi;
  /** Events per page when listing recipients (SparkPost allows up to 10 000; tests use small pages). */
  eventsPerPage?: number;
  /** Bound on event and suppression pages: more fails the request rather than silently skipping people. */
  maxEventPages?: number;
  /** How often a liveness heartbeat goes out while a long SparkPost call runs. */
  heartbeatEveryMs?: number;
}

/** ApplicationFailure type of a request that cannot be filed as given (bad addresses, too many, nothing listed). */
export const GDPR_INVALID_REQUEST = 'GdprInvalidRequestError';
/** ApplicationFailure type of a request secret that is missing, malformed or belongs to another request. */
export const GDPR_SECRET_UNUSABLE = 'GdprSecretError';

const DEFAULT_EVENTS_PER_PAGE = 10_000;
const DEFAULT_MAX_EVENT_PAGES = 100;
const DEFAULT_HEARTBEAT_EVERY_MS = 10_000;
/** Progress as heartbeated. `fingerprint` identifies the recipient set without revealing it. */
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

/** A keyed digest of the whole recipient set: a retry resumes only when it would file exactly the same batches. */
function fingerprintOf(recipients: readonly string[], hmacKey: string): string {
  const h = createHmac('sha256', Buffer.from(hmacKey, 'base64'));
  for (const r of [...recipients].sort()) h.update(r).update('\n');
  return h.digest('hex').slice(0, 32);
}

function invalidRequest(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, GDPR_INVALID_REQUEST);
}

function secretUnusable(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, GDPR_SECRET_UNUSABLE);
}

/** The failure to throw: the mapped error with how far filing got, addresses scrubbed from its message. */
function withProgress(err: unknown, progress: GdprFilingFailureDetails): unknown {
  if (err instanceof CancelledFailure) return err;
  const mapped = toFailure(err);
  const message = replaceAddresses(mapped instanceof Error ? mapped.message : String(mapped));
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

/** Addresses scrubbed from any error an activity lets out. */
function scrubbed(err: unknown): unknown {
  if (err instanceof CancelledFailure) return err;
  const mapped = toFailure(err);
  if (mapped instanceof ApplicationFailure) {
    return ApplicationFailure.create({
      message: replaceAddresses(mapped.message),
      type: mapped.type ?? undefined,
      nonRetryable: mapped.nonRetryable === true,
      nextRetryDelay: mapped.nextRetryDelay,
    });
  }
  return mapped;
}

/** The project id of a secret name `projects/<p>/secrets/<id>`. */
function projectOf(secretName: string): string {
  const m = /^projects\/([^/]+)\/secrets\/[^/]+$/.exec(secretName);
  if (!m) throw invalidRequest('the request secret name is not projects/<project>/secrets/<id>');
  return m[1];
}

/** Builds the GDPR activities from injected clients. */
export function createGdprActivities(deps: GdprActivityDeps) {
  const { sparkpost, secrets } = deps;
  const perPage = () => deps.eventsPerPage ?? DEFAULT_EVENTS_PER_PAGE;
  const maxPages = () => deps.maxEventPages ?? DEFAULT_MAX_EVENT_PAGES;

  /** The request's secret, parsed from its enabled versions; null when it no longer exists or has none. */
  async function readSecret(secretName: string, context: string): Promise<GdprSecretPayload | null> {
    const versions = (await secrets.listVersions(secretName)).filter((v) => v.state === 'ENABLED');
    if (versions.length === 0) return null;
    const texts: string[] = [];
    // listVersions is newest first; parts are joined oldest first.
    for (const v of [...versions].reverse()) {
      try {
        texts.push((await secrets.access(v.name)).data);
      } catch (err) {
        if (err instanceof VendorError && (err.kind === 'not-found' || err.kind === 'failed-precondition')) continue;
        throw err;
      }
    }
    try {
      const payload = readGdprSecretVersions(texts, context);
      if (!payload) throw new UnsealError('the GDPR request secret holds no complete payload');
      return payload;
    } catch (err) {
      throw secretUnusable(err instanceof UnsealError ? err.message : 'the GDPR request secret cannot be read');
    }
  }

  /** Writes `hashed` into the secret and destroys every other version (idempotent: a retry writes it again). */
  async function keepOnly(secretName: string, hashed: GdprSecretPayload): Promise<void> {
    const kept = new Set<string>();
    for (const part of gdprSecretVersions(hashed)) kept.add(await secrets.addVersion(secretName, part));
    for (const v of await secrets.listVersions(secretName)) {
      if (!kept.has(v.name) && v.state !== 'DESTROYED') await secrets.destroyVersion(v.name);
    }
  }

  /** The addresses of a listed request: checked, de-duplicated (first spelling kept, order kept). */
  function listedRecipients(list: readonly string[]): string[] {
    const all = list.map((r) => r.trim());
    if (all.length === 0) throw invalidRequest('the recipient list is empty');
    if (all.length > MAX_LISTED_RECIPIENTS) {
      throw invalidRequest(`at most ${MAX_LISTED_RECIPIENTS} recipients per request, got ${all.length}`);
    }
    const invalid = all.filter((r) => !isEmailAddress(r)).length;
    if (invalid > 0) throw invalidRequest(`${invalid} of ${all.length} recipients are not valid email addresses`);
    const seen = new Set<string>();
    return all.filter((r) => {
      const k = r.toLowerCase();
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
  }

  /** Every recipient the subaccount knows up to `listedUntil`: events within retention and its suppression list. */
  async function knownRecipients(
    subaccountId: number,
    listedUntil: string,
  ): Promise<{ recipients: string[]; skippedInvalid: number }> {
    const until = Date.parse(listedUntil);
    if (Number.isNaN(until)) throw invalidRequest('listedUntil is not a time');
    // SparkPost takes whole seconds: round up so events of the request's own second are included.
    const to = new Date(Math.ceil(until / 1000) * 1000).toISOString();
    const fromEvents = await sparkpost.listMessageEventRecipients({
      subaccountId,
      to,
      perPage: perPage(),
      maxPages: maxPages(),
    });
    const suppressed = await sparkpost.searchSuppressions({ subaccountId, perPage: perPage(), maxPages: maxPages() });
    const valid = new Map<string, string>();
    let skippedInvalid = 0;
    for (const r of [...fromEvents, ...suppressed.map((s) => s.recipient)]) {
      const t = r.trim();
      if (!isEmailAddress(t)) skippedInvalid++;
      else if (!valid.has(t.toLowerCase())) valid.set(t.toLowerCase(), t);
    }
    return { recipients: [...valid.values()].sort(), skippedInvalid };
  }

  /** Files RTBF (and opt-out) for `recipients` in batches, resuming after `resume` batches. */
  async function fileBatches(
    subaccountId: number,
    batches: string[][],
    resume: number,
    optOut: boolean,
    onBatch: (done: number) => void,
  ): Promise<number> {
    const ctx = Context.current();
    let sent = 0;
    for (let i = resume; i < batches.length; i++) {
      if (ctx.cancellationSignal.aborted) throw new CancelledFailure('GDPR deletion cancelled');
      await sparkpost.createRtbfRequest(subaccountId, batches[i]);
      sent++;
      if (optOut) {
        await sparkpost.createOptOutRequest(subaccountId, batches[i]);
        sent++;
      }
      onBatch(i + 1);
    }
    return sent;
  }

  const activities = {
    /**
     * Files RTBF (and with `optOut`, opt-out) requests for the request's recipients, 1000 per request, scoped to the
     * subaccount, resuming after the batches an earlier attempt filed; then replaces the list in the secret with
     * keyed hashes and destroys the version that held the addresses. Returns counts only.
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
        projectOf(input.secretName);
        const context = gdprSecretContext(input.instance, input.requestId);
        const payload = await readSecret(input.secretName, context);
        if (!payload) throw secretUnusable('the GDPR request secret does not exist (or has no readable version)');
        if (payload.stage === 'hashes') {
          // An earlier attempt filed everything and hashed the list; its response was lost, or it stopped before it
          // destroyed the version with the addresses: that one goes now.
          await keepOnly(input.secretName, payload);
          const done = previous?.batches ?? Math.ceil(payload.hashes.length / GDPR_BATCH_SIZE);
          return {
            recipients: payload.hashes.length,
            batches: done,
            requestsSent: 0,
            resumedBatches: done,
            skippedInvalid: 0,
            filedAt: new Date().toISOString(),
            hashedAt: new Date().toISOString(),
          };
        }
        let recipients: string[];
        let skippedInvalid = 0;
        if (payload.recipients === null) {
          ({ recipients, skippedInvalid } = await knownRecipients(input.subaccountId, input.listedUntil));
        } else recipients = listedRecipients(payload.recipients);

        const batches: string[][] = [];
        for (let i = 0; i < recipients.length; i += GDPR_BATCH_SIZE) {
          batches.push(recipients.slice(i, i + GDPR_BATCH_SIZE));
        }
        const fingerprint = fingerprintOf(recipients, payload.hmacKey);
        const resume =
          previous && previous.fingerprint === fingerprint && previous.batches === batches.length
            ? Math.min(previous.batchesDone, batches.length)
            : 0;
        failure = { batchesDone: resume, batches: batches.length, recipients: recipients.length };
        if (resume > 0) ctx.log.info(`GDPR ${input.requestId}: resuming after ${resume} of ${batches.length} batches`);

        const requestsSent = await fileBatches(input.subaccountId, batches, resume, input.optOut, (done) => {
          const progress: Progress = { batchesDone: done, batches: batches.length, fingerprint };
          current = progress;
          failure = { ...failure, batchesDone: done };
          ctx.heartbeat(progress);
          ctx.log.info(
            `GDPR ${input.requestId}: filed batch ${done}/${batches.length} (${batches[done - 1].length} recipients` +
              `${input.optOut ? ', with opt-out' : ''}) for subaccount ${input.subaccountId}`,
          );
        });

        const filedAt = new Date().toISOString();
        // Filed: from now on the secret holds keyed hashes only, and the version with the addresses is destroyed.
        const hashed: GdprSecretPayload = {
          v: 1,
          stage: 'hashes',
          context,
          hmacKey: payload.hmacKey,
          hashes: [...new Set(recipients.map((r) => recipientHash(payload.hmacKey, r)))],
        };
        await keepOnly(input.secretName, hashed);
        return {
          recipients: recipients.length,
          batches: batches.length,
          requestsSent,
          resumedBatches: resume,
          skippedInvalid,
          filedAt,
          hashedAt: new Date().toISOString(),
        };
      } catch (err) {
        throw withProgress(err, failure);
      } finally {
        clearInterval(liveness);
      }
    },

    /**
     * Looks for the request's recipients in what the subaccount still holds from before filing: message events
     * within retention and suppression entries, matched by keyed hash. With `refile`, files RTBF again for every
     * address still found (taken from SparkPost's own data: the request's list is gone by now).
     */
    async verifyGdprDeletion(input: GdprVerifyInput) {
      try {
        const payload = await readSecret(input.secretName, gdprSecretContext(input.instance, input.requestId));
        const none = { found: 0, events: 0, suppressions: 0, keptForCompliance: 0, refiled: 0 };
        if (!payload) return { ...none, secretGone: true };
        if (payload.stage !== 'hashes') throw secretUnusable('the GDPR request secret was never hashed: not filed');
        const wanted = new Set(payload.hashes);
        const filedAt = Date.parse(input.filedAt);
        const horizon = Date.now() - MESSAGE_EVENTS_RETENTION_MS;
        // An address is matched once per hash computation: cache, the lists repeat addresses a lot.
        const hashes = new Map<string, string>();
        const hashOf = (a: string) => {
          const k = a.trim().toLowerCase();
          let h = hashes.get(k);
          if (h === undefined) hashes.set(k, (h = recipientHash(payload.hmacKey, k)));
          return h;
        };
        const found = new Map<string, string>(); // hash -> an address SparkPost still holds
        let events = 0;
        let suppressions = 0;
        let keptForCompliance = 0;
        // Events from before filing are what the request covers; once they are past retention they are gone anyway.
        const listed =
          filedAt < horizon
            ? []
            : await sparkpost.searchMessageEvents({
                subaccountId: input.subaccountId,
                from: new Date(horizon).toISOString(),
                to: new Date(Math.ceil(filedAt / 1000) * 1000).toISOString(),
                perPage: perPage(),
                maxPages: maxPages(),
              });
        for (const e of listed) {
          const h = hashOf(e.recipient);
          if (!wanted.has(h)) continue;
          events++;
          found.set(h, e.recipient);
        }
        for (const s of await sparkpost.searchSuppressions({
          subaccountId: input.subaccountId,
          perPage: perPage(),
          maxPages: maxPages(),
        })) {
          const h = hashOf(s.recipient);
          if (!wanted.has(h)) continue;
          if (s.created && Date.parse(s.created) > filedAt) continue; // new since filing: not the request's data
          if (s.source === 'Compliance') {
            keptForCompliance++;
            continue;
          }
          suppressions++;
          found.set(h, s.recipient);
        }
        let refiled = 0;
        if (input.refile && found.size > 0) {
          const again = [...found.values()];
          for (let i = 0; i < again.length; i += GDPR_BATCH_SIZE) {
            await sparkpost.createRtbfRequest(input.subaccountId, again.slice(i, i + GDPR_BATCH_SIZE));
          }
          refiled = again.length;
        }
        Context.current().log.info(
          `GDPR ${input.requestId}: verification found ${found.size} recipients (${events} events, ${suppressions} ` +
            `suppression entries, ${keptForCompliance} kept for compliance), refiled ${refiled}`,
        );
        return { found: found.size, events, suppressions, keptForCompliance, refiled, secretGone: false };
      } catch (err) {
        throw scrubbed(err);
      }
    },

    /** Destroys every version of the request's secret and deletes it. Missing is fine (idempotent). */
    async shredGdprSecret(input: { secretName: string }): Promise<{ destroyedVersions: number; deleted: boolean }> {
      projectOf(input.secretName);
      let destroyedVersions = 0;
      for (const v of await secrets.listVersions(input.secretName)) {
        if (v.state === 'DESTROYED') continue;
        await secrets.destroyVersion(v.name);
        destroyedVersions++;
      }
      const deleted = await secrets.deleteSecret(input.secretName);
      return { destroyedVersions, deleted };
    },

    /** Creates an all-recipients request secret (offboarding: the workflow, not a person, asks). Idempotent. */
    async createGdprAllRecipientsSecret(input: {
      gcpProject: string;
      instance: string;
      requestId: string;
    }): Promise<{ secretName: string }> {
      return { secretName: await writeGdprSecret(secrets, { ...input, recipients: null }) };
    },

    /**
     * Destroys and deletes every secret of the project labelled managed-by=managed-smtp and instance=<instance>
     * (send key, GDPR requests, anything later features add). Idempotent.
     */
    async deleteManagedSecrets(input: {
      gcpProject: string;
      instance: string;
    }): Promise<{ secrets: number; destroyedVersions: number }> {
      const names = await secrets.listSecrets(input.gcpProject, {
        'managed-by': 'managed-smtp',
        instance: input.instance,
      });
      let destroyedVersions = 0;
      for (const name of names)
        destroyedVersions += (await activities.shredGdprSecret({ secretName: name })).destroyedVersions;
      return { secrets: names.length, destroyedVersions };
    },
  } satisfies GdprActivities & Record<string, (input: never) => Promise<unknown>>;
  return activities;
}

/** The GDPR activity functions, as a worker registers them. */
export type GdprActivityFunctions = ReturnType<typeof createGdprActivities>;
