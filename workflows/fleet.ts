/**
 * The fleet-wide invariant check, run by the `managed-smtp-fleet-check` Temporal Schedule (or once from smtpctl).
 * It lists every instance, checks the idle active and disabled ones with bounded concurrency and within a SparkPost
 * request budget, and with `enforce` asks each drifted instance's own workflow to repair itself (a re-run of
 * provisioning, or of disable), so repairs go through the same serialised queue as every other request.
 */
import { getExternalWorkflowHandle, proxyActivities, uuid4 } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { workflowIdFor } from '../lib/instance';
import type { Finding, InstanceStatus } from '../lib/types';
import { PROVISIONING } from './policies';
import { disableSignal, enableSignal } from './index';

/** SparkPost requests one instance check makes (get subaccount, list keys, sending domain), for the budget. */
export const SPARKPOST_REQUESTS_PER_CHECK = 3;

/** Options of a fleet check. */
export interface FleetCheckInput {
  enforce: boolean;
  /** Instances checked at once. */
  concurrency: number;
  /** SparkPost requests one run may make; instances beyond it wait for the next run. */
  sparkpostBudget: number;
}

/** What a fleet check found and did. */
export interface FleetCheckReport {
  at: string;
  instances: number;
  checked: number;
  healthy: number;
  /** Instances left for the next run because of the budget. */
  deferred: number;
  drifted: Array<{ instance: string; problems: Finding[]; repairRequested: boolean }>;
  /** Instances whose check itself failed (the vendor was unreachable, ...). */
  errors: Array<{ instance: string; error: string }>;
}

// Listing a large fleet queries every instance and does not heartbeat: a longer timeout and no heartbeat timeout.
const acts = proxyActivities<Activities>({
  startToCloseTimeout: '10m',
  retry: { ...PROVISIONING.retry, maximumAttempts: 5 },
});

/** Checks (and with `enforce`, repairs) every idle active or disabled instance. */
export async function fleetCheckWorkflow(input: FleetCheckInput): Promise<FleetCheckReport> {
  const concurrency = Math.max(1, Math.min(50, Math.floor(input.concurrency)));
  const statuses = await acts.listManagedInstances({ limit: 10_000 });
  const candidates = statuses.filter(
    (s): s is InstanceStatus & { spec: NonNullable<InstanceStatus['spec']> } =>
      (s.state === 'active' || s.state === 'disabled') && s.step === null && s.spec !== null,
  );
  const maxChecks = Math.max(0, Math.floor(input.sparkpostBudget / SPARKPOST_REQUESTS_PER_CHECK));
  const batch = candidates.slice(0, maxChecks);
  const report: FleetCheckReport = {
    at: new Date().toISOString(),
    instances: statuses.length,
    checked: 0,
    healthy: 0,
    deferred: candidates.length - batch.length,
    drifted: [],
    errors: [],
  };

  async function checkOne(s: (typeof batch)[number]): Promise<void> {
    let findings: Finding[];
    try {
      findings = await acts.checkInstance({
        instance: s.instance,
        state: s.state,
        spec: s.spec,
        subaccountId: s.subaccountId,
        keyId: s.keyId,
        sendingDomain: s.sendingDomain ? { domain: s.sendingDomain.domain, state: s.sendingDomain.state } : null,
        ...(s.ipPool !== undefined ? { ipPool: s.ipPool } : {}),
      });
    } catch (err) {
      report.errors.push({ instance: s.instance, error: err instanceof Error ? err.message : String(err) });
      return;
    }
    report.checked++;
    const problems = findings.filter((f) => !f.ok);
    if (problems.length === 0) {
      report.healthy++;
      return;
    }
    const repair = input.enforce && problems.some((f) => f.repairable);
    if (repair) {
      const handle = getExternalWorkflowHandle(workflowIdFor(s.instance));
      if (s.state === 'disabled')
        await handle.signal(disableSignal, { requestId: uuid4(), reason: 'fleet check repair' });
      else await handle.signal(enableSignal, { requestId: uuid4(), spec: { ...s.spec, force: false } });
    }
    report.drifted.push({ instance: s.instance, problems, repairRequested: repair });
  }

  for (let i = 0; i < batch.length; i += concurrency) {
    await Promise.all(batch.slice(i, i + concurrency).map(checkOne));
  }
  return report;
}
