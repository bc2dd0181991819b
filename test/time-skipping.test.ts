/**
 * The time-skipping test server (test/helpers/time-skipping.ts) works offline from the cache and really skips time:
 * a workflow that sleeps 30 days of workflow time completes, with its activity still run by a real worker.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { INSTANCE_KEY } from '../lib/search-attributes';
import { startTimeSkipping } from './helpers/time-skipping';
import { uniqueTaskQueue } from './helpers/temporal';
import { sleepDays } from './fixtures/time-skipping-workflows';

const DAY_MS = 86_400_000;
let env: TestWorkflowEnvironment;

before(async () => {
  env = await startTimeSkipping();
});

after(async () => {
  await env?.teardown();
});

test('a workflow sleeping 30 days completes: workflow time advances 30 days, the wall clock does not', async () => {
  const taskQueue = uniqueTaskQueue('time-skipping');
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowsPath: require.resolve('./fixtures/time-skipping-workflows'),
    activities: { wallClock: async () => Date.now() },
  });
  const wallStart = Date.now();
  const r = await worker.runUntil(
    env.client.workflow.execute(sleepDays, {
      taskQueue,
      workflowId: `sleep-${taskQueue}`,
      args: [30],
      // managed SMTP's search attributes are registered by the helper (the test server rejects unknown ones)
      typedSearchAttributes: [{ key: INSTANCE_KEY, value: 'time-skipping' }],
    }),
  );
  assert.ok(r.wokeAt - r.startedAt >= 30 * DAY_MS, `workflow time moved ${(r.wokeAt - r.startedAt) / DAY_MS} days`);
  // The activity ran on the real clock: far less than a day passed for it, so the 30 days were skipped, not waited.
  assert.ok(r.activityAt - wallStart < DAY_MS, 'the activity ran in real time');
  // The server's own clock moved too.
  assert.ok((await env.currentTimeMs()) - wallStart >= 30 * DAY_MS, 'the test server clock moved a month ahead');
});
