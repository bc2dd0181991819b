/**
 * A simulated year of one instance on the time-skipping test server (issue 12): checks with --enforce every 3 hours
 * (every 24 while its site is down), a key rotation every month, bounce alerts raised and cleared, a GDPR audit record
 * a month, and a 90-day outage of its Sourcegraph in the middle: 2,290 checks. Every run of the entity's history stays
 * under 10,000 events, no run is terminated by the server, what the status records survives continue-as-new, the
 * outage's checks see the site down, and a check after it finds the instance healthy again.
 *
 * Measured 2026-11-29 on the shared 2-core machine (load 2 to 8): the year takes 114-145 s every 3 hours (13 runs),
 * 250 s every 2 hours, 386-528 s hourly (MANAGED_SMTP_YEAR_CHECK_HOURS=1: 6,690 checks, 38 runs of at most 2,029
 * events); before, 227 s every 6 hours and 1,369 s hourly. Each check is an update the entity runs in turn (a
 * workflow task to accept it, the check activity against the emulators, a workflow task to answer): 45-80 ms of wall
 * time, about 55 ms of CPU (worker 40, test server 12 growing to 25 over the year), one after another. Hourly thus
 * needs over 5 minutes whatever drives it; a driver workflow calling the fleet's checkViaEntity was slower (an extra
 * activity and two workflow tasks a check), and awaiting its result let the server skip to the entity's 10-year run
 * timeout. The simulated hours add no wall time of their own: the sleep runs while the check does.
 *
 * A failed outage check cost 1.5 s of wall time: two attempts of three quick re-reads each, paused 100-375 ms inside
 * the activity (a wait the server cannot skip), and a 500 ms retry backoff waited in wall time because simulated time
 * stood still while the client awaited the update. Now the worker gets no re-read pauses (readRetryPausesMs) and the
 * sleep overlaps the check, so an outage day costs about 0.1 s.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { WorkflowUpdateFailedError, WorkflowUpdateStage } from '@temporalio/client';
import { ManagedSmtpClient } from '../client';
import { checkUpdate } from '../contract/messages';
import { specFor } from '../emulators/stack';
import { workflowIdFor } from '../lib/instance';
import { startSkippingWorld, type SkippingWorld } from './helpers/time-skipping';

const HOUR = 3_600_000;
/** Hours between checks; MANAGED_SMTP_YEAR_CHECK_HOURS=1 runs the hourly year (6 to 9 minutes). */
const CHECK_EVERY_HOURS = Number(process.env.MANAGED_SMTP_YEAR_CHECK_HOURS ?? 3);
if (!Number.isInteger(CHECK_EVERY_HOURS) || CHECK_EVERY_HOURS < 1 || 24 % CHECK_EVERY_HOURS !== 0) {
  throw new Error(`MANAGED_SMTP_YEAR_CHECK_HOURS must divide 24, not ${process.env.MANAGED_SMTP_YEAR_CHECK_HOURS}`);
}
const OUTAGE = { fromDay: 120, toDay: 210 };

let world: SkippingWorld;

before(async () => {
  world = await startSkippingWorld('year', ['getSiteConfig', 'editSiteConfig']);
  process.env.MANAGED_SMTP_TASK_QUEUE = world.taskQueue;
});

after(() => world?.close());

test(
  'a year of checks, rotations, alerts, GDPR records and a 90-day outage keeps every history bounded',
  { timeout: 1_500_000 },
  async () => {
    const { env, stack, outage } = world;
    const client = new ManagedSmtpClient(env.client, world.taskQueue);
    const i = stack.addInstance('yearly');
    const first = await client.enable(i.name, specFor(i));
    assert.equal((await client.waitFor(first, { timeoutMs: 120_000 })).state, 'active');
    const handle = env.client.workflow.getHandle(workflowIdFor(i.name));
    const firstRunId = (await handle.describe()).runId;
    const start = Date.now();
    const rotations: string[] = [];
    let gdpr = 0;
    let checks = 0;
    let refused = 0;
    let recoveredOnDay: number | null = null;

    /**
     * One check with --enforce, then `ms` of simulated time. The sleep starts once the entity has accepted the check,
     * so the check's activity holds simulated time until it answers, and the retry backoff of a failed attempt is
     * skipped rather than waited for (the test server skips time only while a client sleeps or awaits a result).
     * A busy entity refuses the check: skipped, as the fleet check would.
     */
    async function checkThenSleep(ms: number): Promise<void> {
      checks++;
      const args: [{ requestId: string; enforce: boolean }] = [{ requestId: randomUUID(), enforce: true }];
      const update = await handle.startUpdate(checkUpdate, { args, waitForStage: WorkflowUpdateStage.ACCEPTED });
      const [answered] = await Promise.all([
        update.result().then(
          () => true,
          (err: unknown) => {
            // Refused by the validator because a request runs; a check the entity accepted must answer.
            if (err instanceof WorkflowUpdateFailedError && /is busy/.test(String(err.cause?.message))) return false;
            throw err;
          },
        ),
        env.sleep(ms),
      ]);
      if (!answered) refused++;
    }

    for (let day = 0; day < 365; day++) {
      outage.on = day >= OUTAGE.fromDay && day < OUTAGE.toDay;
      // Monthly rotation; an operator does not rotate the key of an instance whose site is down.
      if (day % 30 === 15 && !outage.on) {
        const r = await client.rotateKey(i.name).catch(() => null); // refused while failed: nothing to rotate
        // Not waited for: the entity runs it while simulated time goes on (retry backoff then costs no wall time).
        if (r) rotations.push(r.requestId);
      }
      if (day % 30 === 20) {
        gdpr++;
        await handle.signal('gdprAudit', {
          requestId: `gdpr-${day}`,
          at: new Date().toISOString(),
          scope: 'listed',
          recipients: 3,
          batches: 1,
          optOut: false,
          outcome: 'filed',
        });
      }
      if (day % 14 === 3 || day % 14 === 5) {
        const active = day % 14 === 3;
        await handle.signal('deliverabilityAlert', {
          active,
          at: new Date().toISOString(),
          from: new Date().toISOString(),
          accepted: 1000,
          bounces: active ? 80 : 1,
          bounceRate: active ? 0.08 : 0.001,
          threshold: 0.05,
        });
      }
      // While the site is down, one check a day is enough to see it come back (a failed check costs two attempts).
      const every = outage.on ? 24 : CHECK_EVERY_HOURS;
      for (let h = 0; h < 24; h += every) await checkThenSleep(every * HOUR);
      if (day % 60 === 0)
        process.stderr.write(
          `year test: day ${day}, ${checks} checks, ${((Date.now() - start) / 1000).toFixed(0)} s\n`,
        );
      if (day === OUTAGE.toDay - 1) {
        // The checks did see the outage (and, unable to run, queued no repair).
        const s = await client.status(i.name);
        assert.match(s.lastCheck?.problems[0]?.message ?? '', /could not run/, 'the last outage check saw it');
      }
      if (day >= OUTAGE.toDay && recoveredOnDay === null) {
        // Recovered: active, and a check after the outage found nothing wrong.
        const s = await client.status(i.name);
        if (s.state === 'active' && s.lastCheck?.problems.length === 0) recoveredOnDay = day;
      }
    }

    const status = await client.status(i.name);
    assert.equal(status.state, 'active', status.error ?? '');
    assert.ok(recoveredOnDay !== null && recoveredOnDay <= OUTAGE.toDay + 1, `recovered on day ${recoveredOnDay}`);
    assert.equal(status.lastRotation?.requestId, rotations.at(-1), 'the last rotation is recorded');
    assert.equal(status.gdprAudit?.length, Math.min(gdpr, 50), 'GDPR audit records carried over');
    assert.equal(status.deliverabilityAlert ?? null, null, 'the last alert was cleared');

    // Follow the chain of runs: each one under 10,000 events, each closed by continue-as-new (none terminated).
    let runId: string | undefined = firstRunId;
    const sizes: number[] = [];
    for (let n = 0; runId && n < 1000; n++) {
      const history: Awaited<ReturnType<typeof handle.fetchHistory>> = await env.client.workflow
        .getHandle(workflowIdFor(i.name), runId)
        .fetchHistory();
      const events = history.events ?? [];
      sizes.push(events.length);
      assert.ok(events.length < 10_000, `run ${n} has ${events.length} events`);
      const last = events.at(-1);
      const next: string | undefined =
        last?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
      if (!next) assert.equal((await handle.describe()).runId, runId, 'the chain ends at the running run');
      runId = next;
    }
    const keys = stack.sparkpost.state.apiKeys.filter((k) => k.subaccount_id === status.subaccountId);
    assert.equal(keys.length, 1, 'one live key after a year');
    // Only checks sent while a rotation ran are refused.
    assert.ok(refused <= rotations.length, `${refused} checks refused`);
    console.log(
      `simulated year: ${checks} checks every ${CHECK_EVERY_HOURS} h (${refused} refused as busy), ` +
        `${rotations.length} rotations, ${sizes.length} runs, largest history ${Math.max(...sizes)} events, ` +
        `recovered on day ${recoveredOnDay}, ${((Date.now() - start) / 1000).toFixed(0)} s wall`,
    );
  },
);
