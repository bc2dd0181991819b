/**
 * The restore a disable could not finish (its Sourcegraph was down) is retried by the entity on its own, backing off
 * from 10 minutes to 6 hours. Requests that arrive meanwhile (an hourly check, a protection reading) run in between
 * but must not push the retry back: the retry is due at a time, not "after this long without a request". On the
 * time-skipping test server, so the hours of backoff take seconds.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { WorkflowUpdateFailedError, WorkflowUpdateStage } from '@temporalio/client';
import { ManagedSmtpClient } from '../client';
import { checkUpdate } from '../contract/messages';
import { specFor } from '../emulators/stack';
import { workflowIdFor } from '../lib/instance';
import { readEmailSettings } from '../lib/site-config';
import { startSkippingWorld, type SkippingWorld } from './helpers/time-skipping';

const HOUR = 3_600_000;

let world: SkippingWorld;

before(async () => {
  world = await startSkippingWorld('restore-retry', ['editSiteConfig']);
});

after(() => world?.close());

test('hourly checks do not hold back the retried restore of a disabled instance', { timeout: 300_000 }, async () => {
  const { env, stack, outage } = world;
  const client = new ManagedSmtpClient(env.client, world.taskQueue);
  const i = stack.addInstance('restore-later');
  assert.equal((await client.waitFor(await client.enable(i.name, specFor(i)), { timeoutMs: 120_000 })).state, 'active');
  const handle = env.client.workflow.getHandle(workflowIdFor(i.name));

  /** A check (as the hourly fleet check sends), then `ms` of simulated time; a busy entity refuses it. */
  async function checkThenSleep(ms: number): Promise<void> {
    const args: [{ requestId: string; enforce: boolean }] = [{ requestId: randomUUID(), enforce: false }];
    const update = await handle.startUpdate(checkUpdate, { args, waitForStage: WorkflowUpdateStage.ACCEPTED });
    await Promise.all([
      update.result().catch((err: unknown) => {
        if (err instanceof WorkflowUpdateFailedError && /is busy/.test(String(err.cause?.message))) return;
        throw err;
      }),
      env.sleep(ms),
    ]);
  }

  // The site is down for the disable and three hours after it.
  outage.on = true;
  await client.disable(i.name, 'customer left');
  await env.sleep(5 * 60_000);
  const during = await client.status(i.name);
  assert.equal(during.state, 'disabled', during.error ?? '');
  assert.ok(during.restorePending, 'the restore is pending while the site is down');
  for (let h = 0; h < 12; h++) {
    outage.on = h < 3;
    await checkThenSleep(HOUR);
  }
  const s = await client.status(i.name);
  assert.equal(s.state, 'disabled');
  // Retries due at 10, 30, 70, 150 and 310 minutes: the last one comes after the outage and succeeds.
  assert.equal(s.restorePending ?? null, null, `still pending: ${JSON.stringify(s.restorePending)}`);
  assert.equal(readEmailSettings(stack.sourcegraph.site(i.name).config).smtp, null, 'the site config is restored');
});
