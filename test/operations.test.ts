/**
 * Day two: `check` finds each kind of drift and `--enforce` repairs it; key rotation succeeds, and when interrupted
 * at each step leaves the old key working; `list --stuck` shows an instance that keeps retrying; a fleet check over
 * 500 instances (more than 2 MiB of the old all-statuses listing) lists them all with every payload small.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { VendorError } from '../lib/errors';
import { readEmailSettings } from '../lib/site-config';
import type { EmulatedInstance } from '../emulators/stack';
import { sendKeySecretName, workflowIdFor } from '../lib/instance';
import { ENTITY_QUERY, INSTANCE_KEY, STATE_KEY, STEP_KEY } from '../lib/search-attributes';
import type { InstanceStatus } from '../lib/types';
import { managedSmtpWorkflow } from '../workflows';
import { emptyStatus } from '../workflows/instance/entity';
import { fleetCheckWorkflow, MAX_REPORTED_PROBLEMS, SPARKPOST_REQUESTS_PER_CHECK } from '../workflows/fleet';
import { actionsOfUpdate, billableActions, largestPayload } from './helpers/actions';
import { FaultSwitch, failing } from './helpers/faulty';
import { World, type Lane, specFor } from './helpers/world';

describe('check, enforce, rotate, stuck', { timeout: 300_000 }, () => {
  let world: World;
  let lane: Lane;

  before(async () => ({ world, lane } = await World.startWithLane()));
  after(() => world?.close());

  async function activeInstance(name: string, l: Lane = lane): Promise<EmulatedInstance> {
    const i = world.stack.addInstance(name);
    const s = await l.client.waitFor(await l.client.enable(name, specFor(i)), { timeoutMs: 60_000, pollMs: 100 });
    assert.equal(s.state, 'active', s.error ?? '');
    return i;
  }

  /** The live send key of an instance, its secret's latest enabled data, and the password the site config holds. */
  function keyState(i: EmulatedInstance, subaccountId: number) {
    const keys = world.keysOf(subaccountId);
    const versions = world.stack.secretManager.getSecret(sendKeySecretName(i.gcpProject))?.versions ?? [];
    const enabled = versions.filter((v) => v.state === 'ENABLED');
    const config = readEmailSettings(world.stack.sourcegraph.site(i.name).config);
    return { keys, enabled, latest: versions[versions.length - 1], password: config.smtp?.password };
  }

  function assertHealthy(i: EmulatedInstance, subaccountId: number) {
    const k = keyState(i, subaccountId);
    assert.equal(k.keys.length, 1, 'one live key');
    assert.equal(k.enabled.length, 1, 'one enabled version');
    assert.equal(k.latest.state, 'ENABLED', 'latest is enabled');
    assert.equal(k.latest.data, k.keys[0].key, 'latest holds the live key');
    assert.equal(k.password, k.keys[0].key, 'the site config uses the live key');
    return k.keys[0];
  }

  const cli = (...argv: string[]) => world.cli(...argv);

  const drifts: Array<{ name: string; check: string; drift: (w: World, i: EmulatedInstance, id: number) => void }> = [
    {
      name: 'suspended subaccount',
      check: 'subaccount',
      drift: (w, _i, id) => w.stack.sparkpost.setSubaccountStatus(id, 'suspended'),
    },
    {
      name: 'deleted send key',
      check: 'send-key',
      drift: (w, _i, id) => {
        const idx = w.stack.sparkpost.state.apiKeys.findIndex((k) => k.subaccount_id === id);
        w.stack.sparkpost.state.apiKeys.splice(idx, 1);
      },
    },
    {
      name: 'extra send key with more grants',
      check: 'key-grants',
      drift: (w, _i, id) => {
        const k = w.stack.sparkpost.state.apiKeys.find((x) => x.subaccount_id === id)!;
        w.stack.sparkpost.state.apiKeys.push({
          ...k,
          id: `${k.id}x`,
          key: `${k.key}x`,
          grants: ['smtp/inject', 'webhooks/modify'],
        });
      },
    },
    {
      name: 'site config edited by hand',
      check: 'site-config',
      drift: (w, i) =>
        w.stack.sourcegraph.humanEdit(i.name, (t) =>
          t.replace(/"noreply\+[^"]+"/, '"someone@cloud.sourcegraph.com"').replace('{', '{\n  // a human was here\n'),
        ),
    },
    {
      name: 'secret overwritten with something else',
      check: 'secret-matches-key',
      drift: (w, i) => void w.stack.secretManager.seed(sendKeySecretName(i.gcpProject), 'not-a-key'),
    },
  ];

  for (const d of drifts) {
    test(`check finds a ${d.name} and --enforce repairs it`, async () => {
      const name = `drift-${d.check}`;
      const i = await activeInstance(name);
      const id = (await lane.client.status(name)).subaccountId!;
      assertHealthy(i, id);
      const clean = await cli('--json', 'check', name);
      assert.equal(clean.code, 0, clean.err);
      assert.ok(JSON.parse(clean.out).findings.every((f: { ok: boolean }) => f.ok));

      d.drift(world, i, id);
      const found = await cli('--json', 'check', name);
      assert.equal(found.code, 1, 'drift found → exit 1');
      const findings = JSON.parse(found.out).findings as Array<{ check: string; ok: boolean; repairable: boolean }>;
      assert.ok(
        findings.some((f) => f.check === d.check && !f.ok && f.repairable),
        JSON.stringify(findings),
      );

      const fixed = await cli('check', name, '--enforce');
      assert.equal(fixed.code, 0, fixed.out + fixed.err);
      assert.match(fixed.out, /repair: active/);
      assertHealthy(i, id);
      assert.equal(world.stack.sparkpost.state.subaccounts.find((s) => s.id === id)?.status, 'active');
      const after = await cli('--json', 'check', name);
      assert.equal(after.code, 0, after.out);
      if (d.check === 'site-config') assert.match(world.stack.sourcegraph.site(name).config, /a human was here/);
    });
  }

  test('compliance suspended by SparkPost is reported, not "repaired"', async () => {
    const i = await activeInstance('compliance');
    const id = (await lane.client.status(i.name)).subaccountId!;
    world.stack.sparkpost.setSubaccountStatus(id, 'active', 'suspended');
    const r = await cli('check', i.name, '--enforce');
    assert.equal(r.code, 1);
    assert.match(r.out, /ALERT compliance\s+SparkPost compliance status is suspended/);
    world.stack.sparkpost.setSubaccountStatus(id, 'active', 'active');
  });

  test('a disabled instance is checked for leftovers', async () => {
    const i = await activeInstance('gone');
    await lane.client.waitFor(await lane.client.disable(i.name), { timeoutMs: 60_000 });
    const r = await cli('--json', 'check', i.name);
    assert.equal(r.code, 0, r.out);
  });

  test('rotate-key: new key in use, old key revoked, old version destroyed', async () => {
    const i = await activeInstance('rotate');
    const id = (await lane.client.status(i.name)).subaccountId!;
    const old = assertHealthy(i, id);
    const r = await cli('rotate-key', i.name, '--wait');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /rotated to key/);
    const now = assertHealthy(i, id);
    assert.notEqual(now.id, old.id);
    const last = world.stack.relay.messages.filter((m) => m.subaccountId === id).pop();
    assert.equal(last?.keyId, now.id, 'the test email went out with the new key');
    const status = await lane.client.status(i.name);
    assert.equal(status.keyId, now.id);
    assert.equal(status.lastRotation?.ok, true);
  });

  const interruptions: Array<{ step: string; wrap: (w: World, f: FaultSwitch) => ReturnType<World['deps']> }> = [
    {
      step: 'mint-new-key',
      wrap: (w, f) => {
        const d = w.deps();
        const forbid = () => new VendorError({ vendor: 'sparkpost', kind: 'forbidden', message: 'injected: mint' });
        return { ...d, sparkpost: failing(d.sparkpost, 'createApiKey', forbid, f) };
      },
    },
    {
      step: 'patch-site-config',
      wrap: (w, f) => {
        const d = w.deps();
        const forbid = () => new VendorError({ vendor: 'sourcegraph', kind: 'forbidden', message: 'injected: edit' });
        return { ...d, sourcegraph: (o) => failing(d.sourcegraph(o), 'editSiteConfig', forbid, f) };
      },
    },
    {
      step: 'send-test-email',
      wrap: (w, f) => {
        const d = w.deps();
        const forbid = () => new VendorError({ vendor: 'sourcegraph', kind: 'forbidden', message: 'injected: test' });
        return { ...d, sourcegraph: (o) => failing(d.sourcegraph(o), 'sendTestEmail', forbid, f) };
      },
    },
  ];

  for (const c of interruptions) {
    test(`rotation interrupted at ${c.step} leaves the old key working`, async () => {
      const fault = new FaultSwitch(1); // fails once: the rollback itself may call the same method
      fault.on = false;
      const faulty = await world.lane(c.wrap(world, fault));
      const i = await activeInstance(`rot-${c.step}`, faulty);
      const id = (await faulty.client.status(i.name)).subaccountId!;
      const old = assertHealthy(i, id);
      fault.on = true;
      const handle = await faulty.client.rotateKey(i.name);
      const status = await faulty.client.waitFor(handle, { timeoutMs: 60_000 });
      assert.equal(status.state, 'active');
      assert.equal(status.lastRotation?.ok, false);
      assert.match(status.lastRotation?.message ?? '', new RegExp(`failed at ${c.step}.*the old key is still in use`));
      const now = assertHealthy(i, id);
      assert.equal(now.id, old.id, 'the old key is the live key');
      assert.equal(status.keyId, old.id);
      // And it still sends.
      const again = await faulty.client.waitFor(await faulty.client.enable(i.name, specFor(i)), { timeoutMs: 60_000 });
      assert.equal(again.state, 'active', again.error ?? '');
      assert.equal(world.stack.relay.messages.filter((m) => m.subaccountId === id).pop()?.keyId, old.id);
    });
  }

  test('rotate-key on an instance that is not active is refused with the reason', async () => {
    const i = world.stack.addInstance('notactive', {
      config:
        '{"email.address":"a@own.example.com","email.smtp":{"host":"smtp.own.example.com","port":25,"authentication":"none"}}',
    });
    await lane.client.waitFor(await lane.client.enable(i.name, specFor(i)), { timeoutMs: 60_000 });
    const r = await cli('rotate-key', i.name, '--wait');
    assert.equal(r.code, 1);
    assert.match(r.err, /customer-managed: only an idle active instance's key can be rotated/);
  });

  test('check-fleet finds drift across the fleet, repairs it, and respects the SparkPost budget', async () => {
    const a = await activeInstance('fleet-a');
    const b = await activeInstance('fleet-b');
    const idA = (await lane.client.status(a.name)).subaccountId!;
    world.stack.sparkpost.setSubaccountStatus(idA, 'suspended');
    world.stack.sourcegraph.humanEdit(b.name, (t) => t.replace(/"noreply\+[^"]+"/, '"x@cloud.sourcegraph.com"'));

    const budgeted = await cli('--json', 'check-fleet', '--budget', '3');
    assert.equal(budgeted.code, 0, budgeted.err);
    const small = JSON.parse(budgeted.out);
    assert.equal(small.checked + small.errors.length, 1, 'a budget of 3 requests allows one check');
    assert.ok(small.deferred >= 2);

    const r = await cli('--json', 'check-fleet', '--enforce', '--concurrency', '3');
    assert.equal(r.code, 0, r.err);
    const report = JSON.parse(r.out);
    const drifted = new Map<string, { repairRequested: boolean }>(
      report.drifted.map((d: { instance: string; repairRequested: boolean }) => [d.instance, d]),
    );
    assert.equal(drifted.get('fleet-a')?.repairRequested, true);
    assert.equal(drifted.get('fleet-b')?.repairRequested, true);
    assert.ok(report.healthy >= 1, 'healthy instances are counted');
    for (let n = 0; n < 100; n++) {
      const sa = await lane.client.status('fleet-a');
      const sb = await lane.client.status('fleet-b');
      const done = [sa, sb].every(
        (s) => s.state === 'active' && s.step === null && s.requests.every((q) => q.finishedAt),
      );
      if (done) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(world.stack.sparkpost.state.subaccounts.find((s) => s.id === idA)?.status, 'active');
    assert.equal(
      readEmailSettings(world.stack.sourcegraph.site(b.name).config).address,
      'noreply+fleet-b@cloud.sourcegraph.com',
    );

    const sched = await cli('--json', 'check-fleet', '--enforce', '--schedule', '1h');
    assert.equal(JSON.parse(sched.out).result, 'created');
    const again = await cli('--json', 'check-fleet', '--schedule', '2h');
    assert.equal(JSON.parse(again.out).result, 'updated');
    const desc = await world.env.client.schedule.getHandle('managed-smtp-fleet-check').describe();
    assert.equal(desc.spec.intervals?.[0]?.every, 2 * 3600 * 1000);
    await world.env.client.schedule.getHandle('managed-smtp-fleet-check').delete();
    assert.equal((await cli('check-fleet', '--schedule', 'soon')).code, 2);
  });

  test('list --stuck shows an instance that keeps retrying, with the failure', async () => {
    const d = world.deps();
    const fault = new FaultSwitch();
    const unavailable = () =>
      new VendorError({ vendor: 'sparkpost', kind: 'unavailable', status: 503, message: 'injected: 503' });
    const faulty = await world.lane({ ...d, sparkpost: failing(d.sparkpost, 'createApiKey', unavailable, fault) });
    const i = world.stack.addInstance('stuckone');
    await faulty.client.enable(i.name, specFor(i));
    for (let n = 0; n < 300 && fault.tripped < 3; n++) await new Promise((r) => setTimeout(r, 50));
    let listed: Array<{ instance: string; stuck?: { attempts: number; lastFailure: string } }> = [];
    for (let n = 0; n < 50; n++) {
      const r = await cli('--json', 'list', '--stuck');
      assert.equal(r.code, 0, r.err);
      listed = JSON.parse(r.out);
      if (listed.some((s) => s.instance === 'stuckone')) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const mine = listed.find((s) => s.instance === 'stuckone');
    assert.ok(mine?.stuck, JSON.stringify(listed));
    assert.ok(mine.stuck.attempts >= 3);
    assert.match(mine.stuck.lastFailure, /injected: 503/);
    assert.ok(!listed.some((s) => s.instance === 'rotate'), 'healthy instances are not stuck');
    // The activity told its workflow: the status, the search attribute and the UI's details say so.
    const stuckStatus = await faulty.client.status('stuckone');
    assert.equal(stuckStatus.retrying?.activity, 'ensureSendKey');
    assert.ok((stuckStatus.retrying?.attempt ?? 0) >= 3);
    const query = `WorkflowId = 'managed-smtp/stuckone' AND ManagedSmtpStuck = true`;
    let flagged = 0;
    for (let n = 0; n < 50 && flagged === 0; n++) {
      flagged = (await world.env.client.workflow.count(query)).count;
      if (!flagged) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(flagged, 1, 'ManagedSmtpStuck = true finds it');
    const desc = await world.env.client.workflow.getHandle('managed-smtp/stuckone').describe();
    assert.match((await desc.staticSummary()) ?? '', /stuckone/);
    fault.on = false;
    const s = await faulty.client.waitFor(
      { instance: 'stuckone', requestId: (await faulty.client.status('stuckone')).requests[0].id, workflowId: '' },
      { timeoutMs: 120_000 },
    );
    assert.equal(s.state, 'active', 'it recovers by itself once the vendor does');
    assert.equal(s.retrying, null, 'the stuck report is cleared when the step moves on');
  });
});

describe('fleet check over more instances than 2 MiB of statuses held', { timeout: 600_000 }, () => {
  // At about 4.3 KB a status, the old fleet check's one listing of every status passed 2 MiB near 480 instances.
  const FLEET = 500;
  let world: World;
  let lane: Lane;

  before(async () => ({ world, lane } = await World.startWithLane()));
  after(() => world?.close());

  /** An active entity started directly in its carried state, with no vendor state: every check finds drift. */
  function seededStart(i: EmulatedInstance) {
    const status: InstanceStatus = { ...emptyStatus(i.name), state: 'active', spec: specFor(i) };
    return { instance: i.name, carried: { status, queue: [] } };
  }

  test(`a fleet check over ${FLEET} drifted instances lists them all, no payload over 256 KiB`, async () => {
    const instances = Array.from({ length: FLEET }, (_, k) => world.stack.addInstance(`many-${k}`));
    const client = world.env.client;
    for (let k = 0; k < instances.length; k += 50) {
      await Promise.all(
        instances.slice(k, k + 50).map((i) =>
          client.workflow.start(managedSmtpWorkflow, {
            workflowId: workflowIdFor(i.name),
            taskQueue: lane.taskQueue,
            args: [seededStart(i)],
            typedSearchAttributes: [
              { key: INSTANCE_KEY, value: i.name },
              { key: STATE_KEY, value: 'active' },
              { key: STEP_KEY, value: 'none' },
            ],
          }),
        ),
      );
    }
    for (let n = 0; n < 600; n++) {
      if ((await client.workflow.count(ENTITY_QUERY)).count >= FLEET) break;
      await new Promise((res) => setTimeout(res, 100));
    }

    const workflowId = `managed-smtp-fleet-check/test-${FLEET}`;
    const started = Date.now();
    const report = await client.workflow.execute(fleetCheckWorkflow, {
      workflowId,
      taskQueue: lane.taskQueue,
      args: [{ enforce: false, concurrency: 20, sparkpostBudget: FLEET * SPARKPOST_REQUESTS_PER_CHECK }],
      workflowExecutionTimeout: '10m',
    });
    const wallMs = Date.now() - started;
    assert.equal(report.instances, FLEET, 'every instance listed');
    assert.equal(report.checked, FLEET, `checked all (errors: ${JSON.stringify(report.errors.slice(0, 3))})`);
    assert.equal(report.driftedCount, FLEET, 'each one drifted (no vendor state)');
    assert.equal(report.drifted.length, MAX_REPORTED_PROBLEMS, 'the report lists a bounded number');
    assert.ok(
      report.drifted.every((d) => d.problems.length > 0),
      'listed ones carry their problems',
    );
    assert.equal(report.deferred + report.skipped + report.errorCount, 0);

    // Every run of the fleet check (continue-as-new included): no payload near the 256 KiB limit.
    let own = 0;
    let largest = { bytes: 0, event: '-' };
    for await (const run of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) {
      const events = (await client.workflow.getHandle(workflowId, run.runId).fetchHistory()).events ?? [];
      own += billableActions(events);
      const l = largestPayload(events);
      if (l.bytes > largest.bytes) largest = l;
    }
    assert.ok(largest.bytes < 256 * 1024, `largest payload ${largest.bytes} bytes (${largest.event})`);

    // What the run caused in the entities: each history holds exactly this run's check update.
    let inEntities = 0;
    const sample = instances.slice(0, 20);
    for (const i of sample) {
      const events = (await client.workflow.getHandle(workflowIdFor(i.name)).fetchHistory()).events ?? [];
      const accepted = events.find((e) => e.workflowExecutionUpdateAcceptedEventAttributes);
      const updateId = accepted?.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.meta?.updateId ?? '';
      const n = actionsOfUpdate(events, updateId);
      assert.ok(n !== null && updateId.startsWith('fleet-'), `${i.name}: the fleet check's update is in its history`);
      inEntities += n;
    }
    const perEntity = inEntities / sample.length;
    const perInstance = own / FLEET + perEntity;
    console.log(
      `fleet check over ${FLEET}: ${(wallMs / 1000).toFixed(1)} s; largest payload ${(largest.bytes / 1024).toFixed(1)} KiB ` +
        `(${largest.event}); actions ${own} in its histories (${(own / FLEET).toFixed(3)} per instance) + ` +
        `${perEntity.toFixed(2)} per checked entity = ${perInstance.toFixed(2)} per instance per run (plus a few chunk heartbeats)`,
    );
    // One update and one check activity per instance; the fleet check's own share is a few hundredths.
    assert.equal(perEntity, 2, 'an entity check costs its update and its check activity');
    assert.ok(own / FLEET < 0.1, `the fleet check's own actions per instance: ${own / FLEET}`);
  });
});
