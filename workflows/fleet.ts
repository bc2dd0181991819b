/**
 * The fleet-wide invariant check, run by the `managed-smtp-fleet-check` Temporal Schedule (or once from smtpctl).
 * It pages through visibility (no payload larger than a page, whatever the fleet's size) and asks each idle active or
 * disabled instance's own entity to check itself, with bounded concurrency and within a SparkPost request budget.
 * With `enforce` the entity repairs what drifted, conditional on nothing having happened since its check looked:
 * the fleet check never acts on a listing. The report is a summary plus the problems (bounded).
 */
import { continueAsNew, proxyActivities, uuid4, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { Finding } from '../lib/types';
import { CHECK } from './policies';

/** SparkPost requests one instance check makes (get subaccount, list keys, sending domain), for the budget. */
export const SPARKPOST_REQUESTS_PER_CHECK = 3;
/** Instances listed per visibility page. */
export const FLEET_PAGE_SIZE = 200;
/** Problems the report lists one by one; beyond this only the counts grow. */
export const MAX_REPORTED_PROBLEMS = 100;

/** Options of a fleet check. */
export interface FleetCheckInput {
  enforce: boolean;
  /** Instances checked at once. */
  concurrency: number;
  /** SparkPost requests one run may make; instances beyond it wait for the next run. */
  sparkpostBudget: number;
  /** Set by continue-as-new: where the listing goes on, and the report so far. */
  resume?: { pageToken: string; report: FleetCheckReport };
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
  let budget = Math.max(0, Math.floor(input.sparkpostBudget)) - report.checked * SPARKPOST_REQUESTS_PER_CHECK;
  let pageToken: string | null = input.resume?.pageToken ?? null;
  const runId = uuid4().slice(0, 8);

  async function checkOne(instance: string): Promise<void> {
    try {
      const r = await asking.checkViaEntity({
        instance,
        enforce: input.enforce,
        requestId: `fleet-${runId}-${instance}`,
      });
      if (r.outcome !== 'checked') {
        report.skipped++;
        return;
      }
      report.checked++;
      const problems = r.result.findings.filter((f) => !f.ok);
      if (problems.length === 0) {
        report.healthy++;
        return;
      }
      report.driftedCount++;
      if (report.drifted.length < MAX_REPORTED_PROBLEMS) {
        report.drifted.push({ instance, problems, repairRequested: r.result.repairRequestId !== null });
      }
    } catch (err) {
      report.errorCount++;
      if (report.errors.length < MAX_REPORTED_PROBLEMS) {
        report.errors.push({ instance, error: (err instanceof Error ? err.message : String(err)).slice(0, 300) });
      }
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
    for (let i = 0; i < batch.length; i += concurrency) {
      await Promise.all(batch.slice(i, i + concurrency).map((x) => checkOne(x.instance)));
    }
    pageToken = page.nextPageToken;
    if (!pageToken) break;
    if (workflowInfo().continueAsNewSuggested) {
      await continueAsNew<typeof fleetCheckWorkflow>({ ...input, resume: { pageToken, report } });
    }
  }
  return report;
}
