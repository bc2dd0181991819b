/**
 * The fleet check's SparkPost budget holds across continue-as-new: a run that continues as new (its history grew)
 * carries on with what is left of the budget, including what its failed checks spent, not a fresh one.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { EntityChecksInput, EntityCheckSummary, InstancePage } from '../activities/fleet';
import { FLEET_PAGE_SIZE, fleetCheckWorkflow, SPARKPOST_REQUESTS_PER_CHECK } from '../workflows/fleet';
import { startTemporal, uniqueTaskQueue, workflowBundle } from './helpers/temporal';

let env: TestWorkflowEnvironment;

before(async () => {
  // Suggest continue-as-new after every page, as a large fleet's long history would.
  env = await startTemporal(['--dynamic-config-value', 'limit.historyCount.suggestContinueAsNew=5']);
});
after(() => env?.teardown());

test('a fleet check that continues as new stays within its SparkPost budget, failed checks included', async () => {
  const PAGES = 3;
  const asked: string[] = [];
  let firstChunk = true;
  const taskQueue = uniqueTaskQueue('fleet-budget');
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: {
      async listInstancePage(input: { pageSize: number; pageToken: string | null }): Promise<InstancePage> {
        const page = input.pageToken === null ? 0 : Number(Buffer.from(input.pageToken, 'base64').toString());
        const instances = Array.from({ length: FLEET_PAGE_SIZE }, (_, k) => ({
          instance: `inst-${page}-${k}`,
          state: 'active',
          step: 'none',
        }));
        const next = page + 1 < PAGES ? Buffer.from(String(page + 1)).toString('base64') : null;
        return { instances, nextPageToken: next };
      },
      // The first chunk's checks all fail after reaching SparkPost (it answered 503): they spent the budget too.
      async checkPageViaEntities(input: EntityChecksInput): Promise<EntityCheckSummary[]> {
        asked.push(...input.instances);
        const fail = firstChunk;
        firstChunk = false;
        return input.instances.map((instance) =>
          fail ? { instance, outcome: 'error', error: 'SparkPost 503' } : { instance, outcome: 'healthy' },
        );
      },
    },
  });
  const budgetChecks = 150;
  const report = await worker.runUntil(
    env.client.workflow.execute(fleetCheckWorkflow, {
      workflowId: `fleet-budget-${taskQueue}`,
      taskQueue,
      args: [{ enforce: false, concurrency: 5, sparkpostBudget: budgetChecks * SPARKPOST_REQUESTS_PER_CHECK }],
      workflowExecutionTimeout: '2m',
    }),
  );
  const runs = await env.client.workflow.count(`WorkflowId = 'fleet-budget-${taskQueue}'`);
  assert.ok(runs.count > 1, 'the run continued as new');
  assert.equal(report.instances, PAGES * FLEET_PAGE_SIZE);
  assert.ok(asked.length <= budgetChecks, `asked ${asked.length} instances with a budget of ${budgetChecks} checks`);
  assert.equal(report.deferred, PAGES * FLEET_PAGE_SIZE - budgetChecks);
});
