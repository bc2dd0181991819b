/**
 * Deliverability on a real Temporal dev server against the emulators: `stats` figures for one instance and the fleet
 * equal what the SparkPost emulator recorded; the fleet summary stays small at 5,000 instances and `stats --all`
 * pages through every row exactly once; the bounce alert fires once per episode (one webhook POST, the entity's
 * status and search attribute) across runs, never for quiet or low-volume instances, and clears; an instance
 * without a workflow is reported, not fatal; the webhook URL never leaks; the Schedule is created and updated.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { bundleWorkflowCode, DefaultLogger, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createActivities } from '../activities';
import { ALERT_WEBHOOK_FAILED, createDeliverabilityActivities } from '../activities/deliverability';
import { ManagedSmtpClient } from '../client';
import {
  BOUNCE_ALERT_SCHEDULE_ID,
  ensureBounceAlertSchedule,
  fleetStatsPages,
  runBounceAlertOnce,
} from '../client/commands/deliverability';
import { runCli, type Io } from '../client/smtpctl';
import { WebhookReceiver } from '../emulators/webhook-receiver';
import { workflowIdFor } from '../lib/instance';
import { BOUNCE_ALERT_KEY } from '../lib/search-attributes';
import { SparkPostClient } from '../vendors/sparkpost';
import {
  STATS_PAGE_ROWS,
  type BounceAlertInput,
  type BounceAlertSummary,
  type DeliverabilityStats,
  type FleetRow,
  type FleetStatsPage,
} from '../workflows/deliverability';
import type { DeliverabilitySparkPostApi } from '../activities/deliverability';
import { assertCliOutput } from './helpers/json-schema';
import { uniqueTaskQueue } from './helpers/temporal';
import { World, specFor } from './helpers/world';

const HOUR = 3600_000;
/** The secret part of the webhook URL: it must never show up in a history, an error or CLI output. */
const WEBHOOK_TOKEN = 'T0DELIV/B0DELIV/webhook-token-1f2e3d4c5b6a';
const WEBHOOK_SECRET = 'projects/sg-ops-alerts/secrets/bounce-alert-webhook/versions/latest';
const BROKEN_WEBHOOK_SECRET = 'projects/sg-ops-alerts/secrets/broken-alert-webhook/versions/latest';

/** What the emulator recorded for one subaccount, counted here by event type (not through its metrics code). */
function recorded(world: World, subaccountId: number, sinceMs: number) {
  const events = world.stack.sparkpost.state.events.filter(
    (e) => e.subaccount_id === subaccountId && Date.parse(e.timestamp) >= sinceMs,
  );
  const n = (pred: (e: (typeof events)[number]) => boolean) => events.filter(pred).length;
  const bounces = n((e) => e.type === 'bounce' || e.type === 'out_of_band');
  const accepted = n((e) => e.type === 'delivery');
  const targeted = n((e) => e.type === 'injection' || /rejection|generation_failure/.test(e.type));
  return {
    accepted,
    delivered: accepted,
    bounces,
    hardBounces: n(
      (e) => (e.type === 'bounce' || e.type === 'out_of_band') && ['10', '30', '90'].includes(e.bounce_class ?? '10'),
    ),
    targeted,
    bounceRate: bounces / Math.max(targeted, accepted + bounces),
  };
}

/** Bytes of a value as a JSON payload. */
const bytes = (x: unknown) => Buffer.byteLength(JSON.stringify(x));

/**
 * A fake SparkPost with `quiet` instances of steady traffic (200 accepted each; `noisy: true` gives each one hard
 * bounce) plus `extra` subaccounts and metric rows: the 5,000-instance fleet of the size tests.
 */
function bigFleet(
  quiet: number,
  extra: { subaccounts?: Array<{ id: number; name: string }>; rows?: Array<Record<string, number>> } = {},
  noisy = false,
): DeliverabilitySparkPostApi {
  const subs = Array.from({ length: quiet }, (_, i) => ({ id: 100 + i, name: `quiet-${String(i).padStart(4, '0')}` }));
  const live = (s: { id: number; name: string }) => ({ ...s, status: 'active' as const, complianceStatus: 'active' });
  return {
    listSubaccounts: async () => [...subs, ...(extra.subaccounts ?? [])].map(live),
    getDeliverabilityBySubaccount: async () => [
      ...subs.map((q) => ({
        subaccount_id: q.id,
        count_accepted: 200,
        count_delivered: 200,
        count_targeted: noisy ? 201 : 200,
        count_bounce: noisy ? 1 : 0,
        count_hard_bounce: noisy ? 1 : 0,
      })),
      ...((extra.rows ?? []) as Array<Record<string, number> & { subaccount_id: number }>),
    ],
    getDeliverability: async () => ({ count_accepted: 1_000_000 }),
  };
}

/** Byte-level JSON of a history with payload data decoded, so any plain-text value in it can be searched. */
async function historyText(world: World, workflowId: string): Promise<string> {
  const history = await world.env.client.workflow.getHandle(workflowId).fetchHistory();
  const bytes = Buffer.from(temporal.api.history.v1.History.encode(history).finish());
  return bytes.toString('latin1');
}

describe('deliverability: stats and bounce alerts', { timeout: 150_000 }, () => {
  let world: World;
  let receiver: WebhookReceiver;
  let worker: Worker;
  let running: Promise<void>;
  let bundle: WorkflowBundleWithSourceMap;
  let client: ManagedSmtpClient;
  let sparkpost: SparkPostClient;
  const taskQueue = uniqueTaskQueue('deliverability');
  const subaccounts: Record<string, number> = {};
  const savedQueue = process.env.MANAGED_SMTP_TASK_QUEUE;
  let since = 0;

  before(async () => {
    [world, receiver] = await Promise.all([World.start(), WebhookReceiver.start()]);
    // Runs inside runCli connect with the default task queue: point it at this test's worker.
    process.env.MANAGED_SMTP_TASK_QUEUE = taskQueue;
    const deps = world.deps(taskQueue);
    sparkpost = new SparkPostClient({ baseUrl: world.stack.sparkpost.url, apiKey: world.stack.operatorKey });
    bundle = await bundleWorkflowCode({
      workflowsPath: require.resolve('./fixtures/deliverability-workflows'),
      logger: new DefaultLogger('WARN'),
    });
    worker = await Worker.create({
      connection: world.env.nativeConnection,
      namespace: 'default',
      taskQueue,
      workflowBundle: bundle,
      activities: {
        ...createActivities(deps),
        ...createDeliverabilityActivities({ sparkpost, temporal: world.env.client, secrets: deps.secrets }),
      },
      shutdownGraceTime: '1s',
    });
    running = worker.run();
    client = new ManagedSmtpClient(world.env.client, taskQueue);

    world.stack.secretManager.seed(WEBHOOK_SECRET.replace(/\/versions\/latest$/, ''), receiver.url(WEBHOOK_TOKEN));
    world.stack.secretManager.seed(BROKEN_WEBHOOK_SECRET.replace(/\/versions\/latest$/, ''), 'not a url at all');

    since = Date.now() - 60_000;
    // Three instances through the real enable (each also sends its test email, one accepted message).
    await Promise.all(
      ['bouncy', 'quiet', 'trickle'].map(async (name) => {
        const i = world.stack.addInstance(name);
        const handle = await client.enable(name, specFor(i));
        const s = await client.waitFor(handle, { timeoutMs: 60_000, pollMs: 200 });
        assert.equal(s.state, 'active', s.error ?? '');
        subaccounts[name] = s.subaccountId!;
      }),
    );
    // An orphan subaccount that bounces but has no managed-smtp workflow, and a terminated one that is history.
    subaccounts.orphan = (await sparkpost.createSubaccount('orphan')).id;
    subaccounts.gone = (await sparkpost.createSubaccount('gone')).id;
    world.stack.sparkpost.setSubaccountStatus(subaccounts.gone, 'terminated');

    const sp = world.stack.sparkpost;
    const accept = (name: string, n: number) =>
      sp.recordAccepted({
        subaccountId: subaccounts[name],
        keyId: 'seed',
        from: `noreply+${name}@cloud.sourcegraph.com`,
        to: Array.from({ length: n }, (_, k) => `user${k}@${name}.example.com`),
        subject: 'seeded',
      });
    // A bounced message is an injection followed by its bounce, as SparkPost records it.
    const bounce = (name: string, n: number, bounceClass: string) =>
      sp.addEvents(
        subaccounts[name],
        Array.from({ length: n }, (_, k) => [
          { type: 'injection', rcpt_to: `gone${k}@${name}.example.com` },
          { type: 'bounce', rcpt_to: `gone${k}@${name}.example.com`, bounce_class: bounceClass },
        ]).flat(),
      );
    accept('bouncy', 150);
    bounce('bouncy', 30, '10');
    bounce('bouncy', 5, '21');
    accept('quiet', 200);
    accept('trickle', 5);
    bounce('trickle', 5, '10');
    accept('orphan', 120);
    bounce('orphan', 40, '10');
    accept('gone', 10);
    bounce('gone', 10, '10');
    // Older than the window: counted in the plan's month (if still this month), never in a 1 h window.
    sp.addEvents(subaccounts.quiet, [
      { type: 'bounce', rcpt_to: 'old@quiet.example.com', timestamp: new Date(Date.now() - 3 * HOUR).toISOString() },
    ]);
  });

  after(async () => {
    if (savedQueue === undefined) delete process.env.MANAGED_SMTP_TASK_QUEUE;
    else process.env.MANAGED_SMTP_TASK_QUEUE = savedQueue;
    worker?.shutdown();
    await running?.catch(() => undefined);
    await receiver?.close();
    await world?.close();
  });

  const ALERT: BounceAlertInput = {
    thresholdRate: 0.05,
    minAccepted: 100,
    windowHours: 1,
    webhookSecret: WEBHOOK_SECRET,
  };

  async function flagOf(name: string): Promise<boolean | undefined> {
    const d = await world.env.client.workflow.getHandle(workflowIdFor(name)).describe();
    return d.typedSearchAttributes.get(BOUNCE_ALERT_KEY);
  }

  /** Polls `read` (bounded, about 10 s) until `ok` holds; signals are accepted before the entity handles them. */
  async function eventually<T>(read: () => Promise<T>, ok: (v: T) => boolean, what: string): Promise<T> {
    let v = await read();
    for (let i = 0; i < 100 && !ok(v); i++) {
      await new Promise((r) => setTimeout(r, 100));
      v = await read();
    }
    assert.ok(ok(v), `${what}: got ${JSON.stringify(v)}`);
    return v;
  }

  /** Waits (bounded) until visibility lists exactly `names` as flagged. */
  async function visibleFlags(names: string[]): Promise<void> {
    const query = `WorkflowType = 'managedSmtpWorkflow' AND ${BOUNCE_ALERT_KEY.name} = true`;
    let seen: string[] = [];
    for (let i = 0; i < 100; i++) {
      seen = [];
      for await (const wf of world.env.client.workflow.list({ query })) seen.push(wf.workflowId);
      if (seen.sort().join() === names.map(workflowIdFor).sort().join()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(
      `visibility lists ${seen.join(', ') || 'nothing'} as flagged, expected ${names.join(', ') || 'nothing'}`,
    );
  }

  /** smtpctl in-process; its `--json` output is checked against the published schema (helpers/json-schema.ts). */
  async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const io: Io = { out: (t) => void (out += t), err: (t) => void (err += t) };
    const code = await runCli(argv, io, async () => world.env.client);
    assertCliOutput(argv, code, out);
    return { code, out, err };
  }

  test('stats of one instance and of the fleet equal what SparkPost recorded', async () => {
    const from = new Date(Date.now() - HOUR).toISOString();
    const one = await client.temporal.workflow.execute('deliverabilityStatsWorkflow', {
      taskQueue,
      workflowId: `stats-test-${Date.now()}`,
      args: [{ instance: 'bouncy', subaccountId: subaccounts.bouncy, from }],
    });
    const expected = recorded(world, subaccounts.bouncy, since);
    assert.equal(expected.accepted, 151, 'seeded 150 accepted plus the test email');
    assert.equal(expected.bounces, 35);
    assert.deepEqual(one, {
      scope: 'instance',
      instance: 'bouncy',
      subaccountId: subaccounts.bouncy,
      from,
      to: null,
      ...expected,
    });

    const fleet = (await client.temporal.workflow.execute('deliverabilityStatsWorkflow', {
      taskQueue,
      workflowId: `stats-test-fleet-${Date.now()}`,
      args: [{ from }],
    })) as Extract<DeliverabilityStats, { scope: 'fleet' }>;
    assert.equal(fleet.scope, 'fleet');
    assert.deepEqual(
      fleet.rows.map((r) => r.instance),
      ['bouncy', 'orphan', 'trickle'],
      'the summary keeps the rows needing attention: over the threshold (bouncy, orphan), hard bounces (trickle)',
    );
    assert.equal(fleet.listed, 4, 'every live subaccount is measured; the terminated one is left out');
    assert.equal(fleet.omitted, 0);

    // Every row, through the page workflow (two pages of two).
    const pages: FleetStatsPage[] = [];
    for await (const page of fleetStatsPages(client, { from, size: 2 })) pages.push(page);
    assert.deepEqual(
      pages.map((p) => [p.rows.map((r) => r.instance), p.next, p.listed]),
      [
        [['bouncy', 'orphan'], 'orphan', 4],
        [['quiet', 'trickle'], null, 4],
      ],
    );
    const rows = pages.flatMap((p) => p.rows);
    for (const row of rows) {
      assert.deepEqual(row, {
        instance: row.instance,
        subaccountId: subaccounts[row.instance],
        ...recorded(world, subaccounts[row.instance], since),
        complaints: 0,
      });
    }
    assert.deepEqual(
      fleet.rows,
      rows.filter((r) => r.instance !== 'quiet'),
      'summary rows are the rows themselves',
    );
    const quiet = rows.find((r) => r.instance === 'quiet')!;
    assert.equal(quiet.bounces, 0, 'the old bounce is outside the window');
    const sum = (k: keyof FleetRow) => rows.reduce((a, r) => a + (r[k] as number), 0);
    assert.equal(fleet.totals.accepted, sum('accepted'), 'the totals cover every row, shown or not');
    assert.equal(fleet.totals.bounces, sum('bounces'));

    const now = new Date();
    const monthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
    const monthAccepted = world.stack.sparkpost.state.events.filter(
      (e) => e.type === 'delivery' && Date.parse(e.timestamp) >= monthStart,
    ).length;
    assert.deepEqual(fleet.plan, {
      included: 250_000,
      from: new Date(monthStart).toISOString(),
      accepted: monthAccepted,
      usedFraction: monthAccepted / 250_000,
    });
  });

  test('smtpctl stats --json: one instance, the fleet, no workflow, bad --from', async () => {
    const one = await cli('stats', 'quiet', '--from', '1h', '--json');
    assert.equal(one.code, 0, one.err);
    const s = JSON.parse(one.out);
    assert.equal(s.scope, 'instance');
    const q = recorded(world, subaccounts.quiet, since);
    assert.deepEqual(
      { accepted: s.accepted, bounces: s.bounces, targeted: s.targeted, bounceRate: s.bounceRate },
      { accepted: q.accepted, bounces: 0, targeted: q.targeted, bounceRate: 0 },
    );
    assert.equal(one.out.trim().split('\n').length, 1, 'one JSON document');

    const fleet = await cli('stats', '--json', '--from', '1h');
    assert.equal(fleet.code, 0, fleet.err);
    const f = JSON.parse(fleet.out);
    assert.equal(f.scope, 'fleet');
    assert.equal(f.rows.find((r: FleetRow) => r.instance === 'bouncy').bounces, 35);
    assert.equal(f.plan.included, 250_000);

    assert.deepEqual([f.listed, f.omitted], [4, 0]);
    assert.equal(
      f.rows.find((r: FleetRow) => r.instance === 'quiet'),
      undefined,
      'a quiet instance is not listed',
    );
    // Over 24 h quiet's old hard bounce is in the window: it needs attention then.
    const day = JSON.parse((await cli('stats', '--json')).out);
    assert.equal(day.rows.find((r: FleetRow) => r.instance === 'quiet')?.hardBounces, 1);

    const human = await cli('stats', '--from', '2h');
    assert.equal(human.code, 0, human.err);
    assert.match(human.out, /^4 instances, since \S+; 3 need attention \(/m);
    assert.match(human.out, /^bouncy\s+\d+\s+151\s+151\s+35\s+30\s+0\s+18\.8%$/m);
    assert.match(human.out, /^plan: \d+ of 250000 accepted emails included this month/m);
    assert.doesNotMatch(human.out, /^quiet/m);

    const all = await cli('stats', '--all', '--json', '--from', '1h');
    assert.equal(all.code, 0, all.err);
    const a = JSON.parse(all.out);
    assert.deepEqual(
      a.rows.map((r: FleetRow) => r.instance),
      ['bouncy', 'orphan', 'quiet', 'trickle'],
    );
    assert.deepEqual([a.scope, a.listed, a.omitted, a.plan], ['fleet', 4, 0, null]);
    assert.equal(a.totals.accepted, f.totals.accepted, 'the same totals as the summary');
    const lines = await cli('stats', '--all', '--ndjson', '--from', '2h');
    assert.equal(lines.code, 0, lines.err);
    assert.deepEqual(
      lines.out
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).instance),
      ['bouncy', 'orphan', 'quiet', 'trickle'],
    );
    const allHuman = await cli('stats', '--all', '--from', '2h');
    assert.equal(allHuman.code, 0, allHuman.err);
    assert.match(allHuman.out, /^4 instances, since /);
    assert.match(allHuman.out, /^quiet\s+\d+\s+201\s+201\s+0\s+0\s+0\s+0\.0%$/m);

    const none = await cli('stats', 'nosuch', '--json');
    assert.equal(none.code, 1);
    assert.match(none.err, /no managed SMTP workflow for instance nosuch/);
    assert.deepEqual(JSON.parse(none.out), { schemaVersion: 1, error: 'no managed SMTP workflow for instance nosuch' });

    for (const [args, arg] of [
      [['stats', '--from', 'yesterday'], '--from'],
      [['stats', '--from', '2999-01-01T00:00Z'], '--from'],
      [['stats', 'Not_An_Instance'], 'instance'],
      [['stats', 'quiet', '--all'], '--all'],
      [['stats', '--ndjson'], '--ndjson'],
      [['stats', '--threshold', '0'], '--threshold'],
      [['alerts', 'run-once', '--threshold', '2'], '--threshold'],
      [['alerts', 'run-once', '--min-accepted', '-1'], '--min-accepted'],
      [['alerts', 'schedule', '--interval', '30s'], '--interval'],
      [['alerts', 'schedule', '--webhook', 'ftp://x'], '--webhook'],
    ] as Array<[string[], string]>) {
      const r = await cli(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
      assert.equal(r.err.trim().split('\n').length, 1, 'one line');
      assert.ok(r.err.includes(`invalid ${arg}:`), `${args.join(' ')} names ${arg}: ${r.err}`);
    }
  });

  test('fleet rows: one row per name (repeated names summed), terminated skipped, one metrics call', async () => {
    const calls: string[] = [];
    const acts = createDeliverabilityActivities({
      now: () => new Date('2026-03-17T12:00:00Z'),
      sparkpost: {
        async listSubaccounts() {
          calls.push('list');
          return [
            { id: 3, name: 'dup', status: 'active', complianceStatus: 'active' },
            { id: 5, name: 'dup', status: 'suspended', complianceStatus: 'active' },
            { id: 7, name: 'old', status: 'terminated', complianceStatus: 'active' },
            { id: 9, name: 'idle', status: 'active', complianceStatus: 'active' },
          ];
        },
        async getDeliverabilityBySubaccount() {
          calls.push('by-subaccount');
          const row = (id: number, accepted: number, bounce: number) => ({
            subaccount_id: id,
            count_accepted: accepted,
            count_delivered: accepted,
            count_bounce: bounce,
            count_hard_bounce: bounce,
            count_targeted: accepted + bounce,
          });
          return [row(0, 1000, 0), row(3, 90, 5), row(5, 10, 5), row(7, 50, 50)];
        },
        async getDeliverability(q) {
          calls.push(`total from ${q.from}`);
          return { count_accepted: 125_000 };
        },
      },
    });
    const fleet = await acts.fleetDeliverability({ from: '2026-03-17T00:00:00Z' });
    assert.deepEqual(calls.sort(), ['by-subaccount', 'list', 'total from 2026-03-01T00:00:00.000Z']);
    assert.deepEqual(fleet.rows, [
      {
        instance: 'dup',
        subaccountId: 3,
        accepted: 100,
        delivered: 100,
        bounces: 10,
        hardBounces: 10,
        targeted: 110,
        bounceRate: 10 / 110,
      },
      {
        instance: 'idle',
        subaccountId: 9,
        accepted: 0,
        delivered: 0,
        bounces: 0,
        hardBounces: 0,
        targeted: 0,
        bounceRate: 0,
      },
    ]);
    assert.equal(fleet.totals.accepted, 100, 'the primary account and terminated subaccounts are not instances');
    assert.deepEqual(fleet.plan, {
      included: 250_000,
      from: '2026-03-01T00:00:00.000Z',
      accepted: 125_000,
      usedFraction: 0.5,
    });
    const noPlan = await acts.fleetDeliverability({ from: '2026-03-17T00:00:00Z', plan: false });
    assert.equal(noPlan.plan, null);
  });

  test('the bounce alert reads only notable rows: 5,000 quiet instances do not grow its payload', async () => {
    const acts = createDeliverabilityActivities({
      now: () => new Date('2026-03-17T12:00:00Z'),
      sparkpost: bigFleet(5000, {
        subaccounts: [
          { id: 1, name: 'bouncy' },
          { id: 2, name: 'one-hard' },
          { id: 3, name: 'flagged' },
        ],
        rows: [
          { subaccount_id: 1, count_accepted: 150, count_bounce: 40, count_hard_bounce: 30, count_targeted: 190 },
          { subaccount_id: 2, count_accepted: 10, count_bounce: 1, count_hard_bounce: 1, count_targeted: 11 },
        ],
      }),
    });
    const from = '2026-03-17T11:00:00Z';
    const all = await acts.fleetDeliverability({ from, plan: false, complaints: true });
    const notable = await acts.fleetDeliverability({
      from,
      plan: false,
      complaints: true,
      notable: { minAccepted: 100, thresholdRate: 0.05, include: ['flagged'] },
    });
    assert.deepEqual(
      notable.rows.map((r) => r.instance),
      ['bouncy', 'flagged', 'one-hard'],
      'crossing, flagged and noisy instances; quiet ones left out',
    );
    assert.equal(notable.listed, 5003);
    assert.equal(notable.omitted, 0);
    assert.deepEqual(notable.totals, all.totals, 'the totals still cover the whole fleet');
    assert.ok(bytes(all) > 256 * 1024, `the whole fleet's rows are ${bytes(all)} bytes`);
    assert.ok(bytes(notable) < 2048, `the notable rows are ${bytes(notable)} bytes`);
  });

  test('fleet stats at 5,003 instances: the summary stays small, and --all pages through every row once', async () => {
    // A second worker on its own queue, reading a fake 5,003-instance SparkPost (the real visibility for flags).
    const bigQueue = uniqueTaskQueue('stats-5000');
    const big = await Worker.create({
      connection: world.env.nativeConnection,
      namespace: 'default',
      taskQueue: bigQueue,
      workflowBundle: bundle,
      activities: createDeliverabilityActivities({
        temporal: world.env.client,
        sparkpost: bigFleet(5000, {
          subaccounts: [
            { id: 1, name: 'big-bouncy' },
            { id: 2, name: 'big-one-hard' },
            { id: 3, name: 'big-complained' },
          ],
          rows: [
            { subaccount_id: 1, count_accepted: 150, count_bounce: 40, count_hard_bounce: 30, count_targeted: 190 },
            { subaccount_id: 2, count_accepted: 10, count_bounce: 1, count_hard_bounce: 1, count_targeted: 11 },
            { subaccount_id: 3, count_accepted: 300, count_targeted: 300, count_spam_complaint: 2 },
          ],
        }),
      }),
      shutdownGraceTime: '1s',
    });
    const bigRunning = big.run();
    const savedQueue = process.env.MANAGED_SMTP_TASK_QUEUE;
    try {
      const bigClient = new ManagedSmtpClient(world.env.client, bigQueue);
      const from = new Date(Date.now() - HOUR).toISOString();
      const summary = (await world.env.client.workflow.execute('deliverabilityStatsWorkflow', {
        taskQueue: bigQueue,
        workflowId: `stats-test-5000-${Date.now()}`,
        args: [{ from }],
      })) as Extract<DeliverabilityStats, { scope: 'fleet' }>;
      assert.deepEqual(
        summary.rows.map((r) => r.instance),
        ['big-bouncy', 'big-complained', 'big-one-hard'],
      );
      assert.deepEqual([summary.listed, summary.omitted], [5003, 0]);
      assert.equal(summary.totals.accepted, 5000 * 200 + 150 + 10 + 300, 'the totals cover the whole fleet');

      const pages: FleetStatsPage[] = [];
      for await (const page of fleetStatsPages(bigClient, { from })) pages.push(page);
      const rows = pages.flatMap((p) => p.rows);
      const largestPage = Math.max(...pages.map(bytes));
      process.stdout.write(
        `# stats at 5,003 instances: summary ${bytes(summary)} bytes; every row ${bytes(rows)} bytes in ` +
          `${pages.length} pages of at most ${largestPage} bytes\n`,
      );
      assert.equal(pages.length, Math.ceil(5003 / STATS_PAGE_ROWS));
      assert.ok(bytes(rows) > 256 * 1024, `every row is ${bytes(rows)} bytes`);
      assert.ok(bytes(summary) < 64 * 1024, `the summary is ${bytes(summary)} bytes`);
      assert.ok(largestPage < 96 * 1024, `the largest page is ${largestPage} bytes`);

      // The CLI: every row exactly once, in instance order, through pages.
      process.env.MANAGED_SMTP_TASK_QUEUE = bigQueue;
      const lines = await cli('stats', '--all', '--ndjson', '--from', '1h');
      assert.equal(lines.code, 0, lines.err);
      const names = lines.out
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as FleetRow).instance);
      const expected = [...rows.map((r) => r.instance)].sort();
      assert.equal(names.length, 5003);
      assert.equal(new Set(names).size, 5003, 'no row twice');
      assert.deepEqual(names, expected, 'every row, in order');
      const doc = await cli('stats', '--all', '--json', '--from', '1h');
      assert.equal(doc.code, 0, doc.err);
      const d = JSON.parse(doc.out);
      assert.deepEqual(
        d.rows.map((r: FleetRow) => r.instance),
        expected,
      );
      assert.deepEqual([d.listed, d.omitted, d.totals.accepted], [5003, 0, summary.totals.accepted]);
      const one = await cli('stats', '--json', '--from', '1h');
      assert.equal(one.code, 0, one.err);
      assert.ok(Buffer.byteLength(one.out) < 64 * 1024);
    } finally {
      if (savedQueue === undefined) delete process.env.MANAGED_SMTP_TASK_QUEUE;
      else process.env.MANAGED_SMTP_TASK_QUEUE = savedQueue;
      big.shutdown();
      await bigRunning;
    }
  });

  test('the fleet summary keeps at most a page of rows when every instance needs attention', async () => {
    const acts = createDeliverabilityActivities({ sparkpost: bigFleet(5000, {}, true) });
    const from = '2026-03-17T11:00:00Z';
    const notable = { minAccepted: 100, thresholdRate: 0.05, include: [], limit: STATS_PAGE_ROWS };
    const summary = await acts.fleetDeliverability({ from, plan: false, complaints: true, notable });
    assert.equal(summary.rows.length, STATS_PAGE_ROWS);
    assert.deepEqual([summary.listed, summary.omitted], [5000, 5000 - STATS_PAGE_ROWS]);
    const page = await acts.fleetDeliverability({
      from,
      plan: false,
      complaints: true,
      page: { after: null, size: 500 },
    });
    assert.ok(bytes(summary) <= bytes(page) + 256, `summary ${bytes(summary)} bytes, a page ${bytes(page)}`);
    assert.ok(bytes(summary) < 96 * 1024);
    // A page past the end is empty, a size beyond the bound is clamped.
    const past = await acts.fleetDeliverability({ from, plan: false, page: { after: 'zzz', size: 10 } });
    assert.deepEqual([past.rows, past.next], [[], null]);
    const clamped = await acts.fleetDeliverability({ from, plan: false, page: { after: null, size: 1e9 } });
    assert.equal(clamped.rows.length, STATS_PAGE_ROWS);
    assert.equal(clamped.next, clamped.rows[STATS_PAGE_ROWS - 1].instance);
  });

  test('the webhook: Slack JSON, non-2xx is retryable, and the URL never appears in an error', async () => {
    const acts = createDeliverabilityActivities({ sparkpost });
    receiver.reset();
    await acts.postAlertWebhook({ url: receiver.url(WEBHOOK_TOKEN), text: 'hello', blocks: [{ type: 'divider' }] });
    assert.deepEqual(receiver.received[0].body, { text: 'hello', blocks: [{ type: 'divider' }] });
    assert.equal(receiver.received[0].headers['content-type'], 'application/json');

    receiver.failNext(503);
    const failure = await acts.postAlertWebhook({ url: receiver.url(WEBHOOK_TOKEN), text: 'x' }).then(
      () => assert.fail('a 503 must fail'),
      (e: unknown) => e,
    );
    assert.ok(failure instanceof ApplicationFailure);
    assert.equal(failure.type, ALERT_WEBHOOK_FAILED);
    assert.equal(failure.nonRetryable, false);
    assert.match(failure.message, /HTTP 503/);
    assert.ok(!failure.message.includes('webhook-token'), failure.message);

    const dead = await WebhookReceiver.start();
    const deadUrl = dead.url(WEBHOOK_TOKEN);
    await dead.close();
    const refused = await acts.postAlertWebhook({ url: deadUrl, text: 'x' }).then(
      () => assert.fail('a closed port must fail'),
      (e: unknown) => e as ApplicationFailure,
    );
    assert.equal(refused.nonRetryable, false);
    assert.ok(!refused.message.includes('webhook-token') && !refused.message.includes('127.0.0.1'), refused.message);
  });

  test('a webhook that cannot be used withdraws the raise, so the next run announces it', async () => {
    const r = await cli(
      'alerts',
      'run-once',
      '--threshold',
      '5%',
      '--window-hours',
      '1',
      '--webhook-secret',
      BROKEN_WEBHOOK_SECRET,
      '--json',
    );
    assert.equal(r.code, 1, 'a failed webhook fails the run-once command');
    const { error, status: summary } = JSON.parse(r.out) as { error: string; status: BounceAlertSummary };
    assert.match(error, /^bounce alert run had 1 error\(s\): bouncy: alert webhook failed/);
    assert.deepEqual(summary.crossing, ['bouncy', 'orphan']);
    assert.deepEqual(summary.raised, []);
    assert.equal(summary.errors.length, 1);
    assert.match(summary.errors[0], /^bouncy: alert webhook failed: .*secret does not hold an http\(s\) URL/);
    assert.ok(!r.out.includes('not a url at all') && !r.err.includes('not a url at all'), 'the secret is not quoted');
    const status = await eventually(
      () => client.status('bouncy'),
      (s) => s.requests.length > 0 && s.deliverabilityAlert === null,
      'the alert is withdrawn',
    );
    assert.equal(status.deliverabilityAlert, null);
    await eventually(
      () => flagOf('bouncy'),
      (f) => f === false,
      'the flag is false',
    );
    await visibleFlags([]);
  });

  test('the alert fires once for a bouncing instance across runs, never for quiet or low-volume ones', async () => {
    receiver.reset();
    const first = await runBounceAlertOnce(client, ALERT);
    assert.equal(first.checked, 4);
    assert.deepEqual(first.crossing, ['bouncy', 'orphan']);
    assert.deepEqual(first.raised, ['bouncy']);
    assert.deepEqual(first.cleared, []);
    assert.deepEqual(first.errors, []);
    assert.deepEqual(
      first.skipped.map((s) => s.instance),
      ['orphan'],
      'a bouncing subaccount without a workflow is reported, not fatal',
    );

    // As soon as the entity has handled the signal (visibility may still lag), and again once visibility has it.
    await eventually(
      () => flagOf('bouncy'),
      (f) => f === true,
      'bouncy is flagged',
    );
    const second = await runBounceAlertOnce(client, ALERT);
    assert.deepEqual(second.raised, []);
    await visibleFlags(['bouncy']);
    const third = await runBounceAlertOnce(client, ALERT);
    assert.deepEqual(third.raised, []);
    assert.deepEqual(third.cleared, []);

    assert.equal(receiver.received.length, 1, 'exactly one webhook POST');
    const post = receiver.received[0];
    assert.equal(post.path, `/services/${WEBHOOK_TOKEN}`);
    const body = post.body as { text: string; blocks: unknown[] };
    const b = recorded(world, subaccounts.bouncy, since);
    assert.match(
      body.text,
      /bouncy bounced 18\.8% of its email in the last 1 h \(35 bounces, 30 hard; 151 accepted, 186 targeted/,
    );
    assert.ok(Array.isArray(body.blocks));
    for (const other of ['quiet', 'trickle', 'orphan']) assert.ok(!body.text.includes(other), `${other} is not named`);

    const status = await client.status('bouncy');
    assert.equal(status.deliverabilityAlert?.active, true);
    assert.equal(status.deliverabilityAlert?.bounces, b.bounces);
    assert.equal(status.deliverabilityAlert?.accepted, b.accepted);
    assert.equal(status.deliverabilityAlert?.threshold, 0.05);
    for (const quiet of ['quiet', 'trickle']) {
      assert.equal((await client.status(quiet)).deliverabilityAlert ?? null, null, `${quiet} has no alert`);
      assert.notEqual(await flagOf(quiet), true, `${quiet} is not flagged`);
    }

    // The URL came from Secret Manager: neither it nor its token is in any history.
    for (const id of [workflowIdFor('bouncy')]) {
      assert.ok(!(await historyText(world, id)).includes('webhook-token'), `no webhook URL in ${id}`);
    }
    const runs: string[] = [];
    for await (const wf of world.env.client.workflow.list({ query: `WorkflowType = 'bounceAlertWorkflow'` })) {
      runs.push(wf.workflowId);
    }
    assert.ok(runs.length >= 3);
    for (const id of runs) assert.ok(!(await historyText(world, id)).includes('webhook-token'), `no URL in ${id}`);
  });

  test('an instance whose bounces leave the window is cleared once, with a resolved message', async () => {
    receiver.reset();
    const old = new Date(Date.now() - 3 * HOUR).toISOString();
    for (const e of world.stack.sparkpost.state.events) {
      if (e.subaccount_id === subaccounts.bouncy && e.type === 'bounce') e.timestamp = old;
    }
    const run = await runBounceAlertOnce(client, ALERT);
    assert.deepEqual(run.raised, []);
    assert.deepEqual(run.cleared, ['bouncy']);
    assert.equal(receiver.received.length, 1);
    assert.match((receiver.received[0].body as { text: string }).text, /resolved: bouncy is at 0\.0%/);
    await eventually(
      () => client.status('bouncy'),
      (s) => s.deliverabilityAlert === null,
      'the alert is cleared',
    );
    await eventually(
      () => flagOf('bouncy'),
      (f) => f === false,
      'the flag is false',
    );
    await visibleFlags([]);

    const again = await runBounceAlertOnce(client, ALERT);
    assert.deepEqual([again.raised, again.cleared], [[], []]);
    assert.equal(receiver.received.length, 1, 'cleared once');
  });

  test('smtpctl alerts schedule creates, then updates, the Schedule; a triggered run completes', async () => {
    const created = await cli(
      'alerts',
      'schedule',
      '--threshold',
      '5%',
      '--window-hours',
      '1',
      '--interval',
      '1h',
      '--webhook-secret',
      WEBHOOK_SECRET,
      '--json',
    );
    assert.equal(created.code, 0, created.err);
    assert.equal(JSON.parse(created.out).created, true);

    const handle = world.env.client.schedule.getHandle(BOUNCE_ALERT_SCHEDULE_ID);
    let d = await handle.describe();
    assert.equal(d.policies.overlap, 'SKIP');
    assert.deepEqual(
      d.spec.intervals?.map((i) => i.every),
      [HOUR],
    );
    assert.deepEqual(d.action.args, [
      { thresholdRate: 0.05, minAccepted: 100, windowHours: 1, webhookSecret: WEBHOOK_SECRET },
    ]);
    assert.equal(d.action.taskQueue, taskQueue);

    const updated = await ensureBounceAlertSchedule(world.env.client, { ...ALERT, taskQueue, intervalMs: 2 * HOUR });
    assert.equal(updated.created, false);
    d = await handle.describe();
    assert.deepEqual(
      d.spec.intervals?.map((i) => i.every),
      [2 * HOUR],
    );

    receiver.reset();
    await handle.trigger();
    let runId: string | undefined;
    for (let i = 0; i < 100 && !runId; i++) {
      runId = (await handle.describe()).info.recentActions[0]?.action.workflow.workflowId;
      if (!runId) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(runId, 'the schedule started a run');
    const summary = await world.env.client.workflow.getHandle(runId).result();
    assert.deepEqual([summary.raised, summary.cleared], [[], []], 'nothing new since the last run');
    assert.equal(receiver.received.length, 0);
    await handle.delete();
  });
});
