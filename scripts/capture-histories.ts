/**
 * Captures workflow histories from real runs (real Temporal dev server, emulators, real vendor clients) into
 * test/histories/, for the replay test that makes a workflow change which breaks running executions fail CI.
 * Run after an intentional, versioned workflow change: `npx tsx scripts/capture-histories.ts`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { temporal } from '@temporalio/proto';
import { workflowIdFor } from '../lib/instance';
import { SparkPostClient } from '../vendors/sparkpost';
import { World, specFor } from '../test/helpers/world';

const OUT = path.resolve(__dirname, '..', 'test', 'histories');

async function main(): Promise<void> {
  const world = await World.start();
  try {
    const lane = await world.lane();
    const wait = (h: Awaited<ReturnType<typeof lane.client.enable>>) => lane.client.waitFor(h, { timeoutMs: 60_000 });

    // enable → disable → enable again (reactivation)
    const a = world.stack.addInstance('replay-lifecycle');
    await wait(await lane.client.enable(a.name, specFor(a)));
    await wait(await lane.client.disable(a.name, 'capture'));
    await wait(await lane.client.enable(a.name, specFor(a)));

    // customer-owned settings refused
    const c = world.stack.addInstance('replay-customer', {
      config:
        '{"email.address":"it@own.example.com","email.smtp":{"host":"smtp.own.example.com","port":587,"authentication":"none"}}',
    });
    await wait(await lane.client.enable(c.name, specFor(c)));

    // a failed enable: the admin token is wrong
    const f = world.stack.addInstance('replay-failed');
    world.stack.secretManager.seed(`projects/${f.gcpProject}/secrets/sourcegraph-admin-token`, 'sgp_wrong');
    await wait(await lane.client.enable(f.name, specFor(f)));

    // day two: rotation, a check with --enforce, a malformed signal recorded and ignored, then disable
    const o = world.stack.addInstance('replay-operations');
    await wait(await lane.client.enable(o.name, specFor(o)));
    await wait(await lane.client.rotateKey(o.name));
    await lane.client.check(o.name, true);
    await world.env.client.workflow.getHandle(workflowIdFor(o.name)).signal('disable');
    await wait(await lane.client.disable(o.name, 'capture'));

    // fleet stats over three subaccounts (one with a hard bounce): replay-stats.json
    const sp = new SparkPostClient({ baseUrl: world.stack.sparkpost.url, apiKey: world.stack.operatorKey });
    for (const name of ['alpha', 'bravo', 'charlie']) {
      const id = (await sp.createSubaccount(name)).id;
      world.stack.sparkpost.recordAccepted({
        subaccountId: id,
        keyId: 'seed',
        from: `noreply@${name}.example.com`,
        to: ['a@x.example.com', 'b@x.example.com'],
        subject: 's',
      });
      if (name === 'bravo') {
        world.stack.sparkpost.addEvents(id, [
          { type: 'injection', rcpt_to: 'c@x.example.com' },
          { type: 'bounce', rcpt_to: 'c@x.example.com', bounce_class: '10' },
        ]);
      }
    }
    const statsId = 'managed-smtp-stats/fleet/replay';
    await world.env.client.workflow.execute('deliverabilityStatsWorkflow', {
      taskQueue: lane.taskQueue,
      workflowId: statsId,
      args: [{ from: new Date(Date.now() - 3600_000).toISOString() }],
    });

    mkdirSync(OUT, { recursive: true });
    const captured: Array<[string, string]> = [a.name, c.name, f.name, o.name].map((n) => [n, workflowIdFor(n)]);
    for (const [name, workflowId] of [...captured, ['replay-stats', statsId]]) {
      const history = await world.env.client.workflow.getHandle(workflowId).fetchHistory();
      const file = path.join(OUT, `${name}.json`);
      // Proto JSON through the generated codec (bytes as base64, 64-bit ints as strings), loadable with fromObject.
      const { History } = temporal.api.history.v1;
      const json = History.toObject(History.decode(History.encode(history).finish()), {
        longs: String,
        enums: String,
        bytes: String,
      });
      writeFileSync(file, JSON.stringify(json) + '\n');
      console.log(`captured ${file} (${history.events?.length ?? 0} events)`);
    }
  } finally {
    await world.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
