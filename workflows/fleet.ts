/**
 * The fleet-wide invariant check, run by the `managed-smtp-fleet-check` Temporal Schedule (or once from smtpctl).
 * It pages through visibility (no payload larger than a page, whatever the fleet's size) and asks each idle active or
 * disabled instance's own entity to check itself, with bounded concurrency and within a SparkPost request budget:
 * one activity per chunk of a page sends the check updates (one activity per instance cost an action each).
 * With `enforce` the entity repairs what drifted, conditional on nothing having happened since its check looked:
 * the fleet check never acts on a listing. The report is a summary plus the problems (bounded).
 */
import { continueAsNew, patched, proxyActivities, uuid4, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { Finding } from '../lib/types';
import { CHECK } from './policies';

/** SparkPost requests one instance check makes (get subaccount, list keys, sending domain), for the budget. */
export const SPARKPOST_REQUESTS_PER_CHECK = 3;
/** Instances listed per visibility page. */
export const FLEET_PAGE_SIZE = 200;
/** Problems the report lists one by one; beyond this only the counts grow. */
export const MAX_REPORTED_PROBLEMS = 100;
/**
 * Instances one `checkPageViaEntities` activity asks (half a page): each activity is a billed action, so one per
 * instance cost as much as the check itself; a chunk keeps a retry's scope and its result small.
 */
export const FLEET_CHUNK_SIZE = 100;
/** Runs that started before chunked checks keep asking one instance per activity (their histories say so). */
const CHUNKED_PATCH = 'fleet-check-chunked';

/** Options of a fleet check. */
export interface FleetCheckInput {
  enforce: boolean;
  /** Instances checked at once. */
  concurrency: number;
  /** SparkPost requests one run may make; instances beyond it wait for the next run. */
  sparkpostBudget: number;
  /**
   * Set by continue-as-new: where the listing goes on, the report so far, and the SparkPost requests left (every
   * instance asked was charged, failed and busy ones too; runs from before `budgetLeft` recompute it from `checked`).
   */
  resume?: { pageToken: string; report: FleetCheckReport; budgetLeft?: number };
}

/** What a fleet check found and did. */
export interface FleetCheckReport {
  at: string;
  /** Instances listed. */
  instances: number;
  checked: number;
  healthy: number;
  /** Instances left for the next run because of the budget. */
  deferred: number;
  /** Instances that were busy (a request running or queued) or not checkable: their entity said no. */
  skipped: number;
  /** Drifted instances (at most MAX_REPORTED_PROBLEMS listed; `driftedCount` counts them all). */
  drifted: Array<{ instance: string; problems: Finding[]; repairRequested: boolean }>;
  driftedCount: number;
  /** Instances whose check itself failed (the vendor was unreachable, ...), bounded like `drifted`. */
  errors: Array<{ instance: string; error: string }>;
  errorCount: number;
}

const listing = proxyActivities<Activities>({
  startToCloseTimeout: '60s',
  retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 5 },
});
// The entity's own check is bounded (CHECK); this waits for the update that runs it.
const asking = proxyActivities<Activities>({
  startToCloseTimeout: '3m',
  retry: { ...CHECK.retry, maximumAttempts: 3 },
});
// A chunk heartbeats after each instance; each update has its own deadline inside (ENTITY_CHECK_DEADLINE_MS, tried
// at most twice), so the heartbeat timeout outlasts two deadlines even at concurrency 1.
const askingChunk = proxyActivities<Activities>({
  startToCloseTimeout: '60m',
  heartbeatTimeout: '6m',
  retry: { ...CHECK.retry, maximumAttempts: 3 },
});

function emptyReport(): FleetCheckReport {
  return {
    at: new Date().toISOString(),
    instances: 0,
    checked: 0,
    healthy: 0,
    deferred: 0,
    skipped: 0,
    drifted: [],
    driftedCount: 0,
    errors: [],
    errorCount: 0,
  };
}

/** Checks (and with `enforce`, has each entity repair) every idle active or disabled instance. */
export async function fleetCheckWorkflow(input: FleetCheckInput): Promise<FleetCheckReport> {
  const concurrency = Math.max(1, Math.min(50, Math.floor(input.concurrency)));
  const report = input.resume?.report ?? emptyReport();
  let budget =
    input.resume?.budgetLeft ??
    Math.max(0, Math.floor(input.sparkpostBudget)) - report.checked * SPARKPOST_REQUESTS_PER_CHECK;
  let pageToken: string | null = input.resume?.pageToken ?? null;
  const runId = uuid4().slice(0, 8);

  function healthy(): void {
    report.checked++;
    report.healthy++;
  }
  function drifted(instance: string, problems: Finding[], repairRequested: boolean): void {
    report.checked++;
    report.driftedCount++;
    if (report.drifted.length < MAX_REPORTED_PROBLEMS) report.drifted.push({ instance, problems, repairRequested });
  }
  function failed(instance: string, error: string): void {
    report.errorCount++;
    if (report.errors.length < MAX_REPORTED_PROBLEMS) report.errors.push({ instance, error: error.slice(0, 300) });
  }

  /** Before CHUNKED_PATCH: one activity per instance. */
  async function checkOne(instance: string): Promise<void> {
    try {
      const r = await asking.checkViaEntity({
        instance,
        enforce: input.enforce,
        requestId: `fleet-${runId}-${instance}`,
      });
      if (r.outcome !== 'checked') report.skipped++;
      else {
        const problems = r.result.findings.filter((f) => !f.ok);
        if (problems.length) drifted(instance, problems, r.result.repairRequestId !== null);
        else healthy();
      }
    } catch (err) {
      failed(instance, err instanceof Error ? err.message : String(err));
    }
  }

  async function checkChunk(instances: string[]): Promise<void> {
    try {
      const outcomes = await askingChunk.checkPageViaEntities({
        instances,
        enforce: input.enforce,
        runId,
        concurrency,
        details: MAX_REPORTED_PROBLEMS - report.drifted.length,
      });
      for (const o of outcomes) {
        if (o.outcome === 'busy') report.skipped++;
        else if (o.outcome === 'healthy') healthy();
        else if (o.outcome === 'drifted') drifted(o.instance, o.problems ?? [], o.repairRequested);
        else failed(o.instance, o.error);
      }
    } catch (err) {
      // The chunk's activity itself gave up (its retries spent): each of its instances is an error of this run.
      const why = err instanceof Error ? err.message : String(err);
      for (const instance of instances) failed(instance, why);
    }
  }

  for (let pages = 0; pages < 1_000_000; pages++) {
    const page = await listing.listInstancePage({ pageSize: FLEET_PAGE_SIZE, pageToken });
    report.instances += page.instances.length;
    const idle = page.instances.filter((i) => (i.state === 'active' || i.state === 'disabled') && i.step === 'none');
    report.skipped += page.instances.length - idle.length;
    const affordable = Math.max(0, Math.floor(budget / SPARKPOST_REQUESTS_PER_CHECK));
    const batch = idle.slice(0, affordable);
    report.deferred += idle.length - batch.length;
    budget -= batch.length * SPARKPOST_REQUESTS_PER_CHECK;
    if (patched(CHUNKED_PATCH)) {
      for (let i = 0; i < batch.length; i += FLEET_CHUNK_SIZE) {
        await checkChunk(batch.slice(i, i + FLEET_CHUNK_SIZE).map((x) => x.instance));
      }
    } else {
      for (let i = 0; i < batch.length; i += concurrency) {
        await Promise.all(batch.slice(i, i + concurrency).map((x) => checkOne(x.instance)));
      }
    }
    pageToken = page.nextPageToken;
    if (!pageToken) break;
    if (workflowInfo().continueAsNewSuggested) {
      await continueAsNew<typeof fleetCheckWorkflow>({ ...input, resume: { pageToken, report, budgetLeft: budget } });
    }
  }
  return report;
}
