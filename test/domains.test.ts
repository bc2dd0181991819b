/**
 * Custom sending domains and dedicated IP pools, end to end through smtpctl on a real Temporal dev server and the
 * emulators: add → verify → switch → remove; a domain that never verifies waits visibly and is cancelled cleanly (or
 * given up on); SparkPost's 7000/7004 refusals leave nothing behind; pools are assigned, created, refused and
 * unassigned; drift of the recorded domain or pool is found by `check` and repaired by `check --enforce`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { readEmailSettings } from '../lib/site-config';
import { STEP_KEY } from '../lib/search-attributes';
import type { InstanceStatus } from '../lib/types';
import type { EmulatedInstance } from '../emulators/stack';
import { STACK_SENDER_DOMAIN } from '../emulators/stack';
import { domainWorkflowIdFor, verifySendingDomainSignal } from '../workflows/domains';
import { protectionRequestUpdate, protectionSignal } from '../contract/messages';
import type { ProtectionRequest } from '../contract/types';
import { VendorError } from '../lib/errors';
import { workflowIdFor } from '../lib/instance';
import { FaultSwitch, failing } from './helpers/faulty';
import { Worker } from '@temporalio/worker';
import { workflowBundle } from './helpers/temporal';
import { World, severeReading, type Lane, specFor } from './helpers/world';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('sending domains and IP pools', { timeout: 600_000 }, () => {
  let world: World;
  let lane: Lane;

  before(async () => ({ world, lane } = await World.startWithLane()));
  after(() => world?.close());

  const cli = (...argv: string[]) => world.cli(...argv);

  async function activeInstance(name: string): Promise<{ i: EmulatedInstance; subaccountId: number }> {
    const i = world.stack.addInstance(name);
    const s = await lane.client.waitFor(await lane.client.enable(name, specFor(i)), { timeoutMs: 60_000, pollMs: 100 });
    assert.equal(s.state, 'active', s.error ?? '');
    return { i, subaccountId: s.subaccountId! };
  }

  const address = (name: string) => readEmailSettings(world.stack.sourcegraph.site(name).config).address;
  const domainsOf = (subaccountId: number) =>
    world.stack.sparkpost.state.sendingDomains.filter((d) => d.subaccount_id === subaccountId);
  const subaccount = (id: number) => world.stack.sparkpost.state.subaccounts.find((s) => s.id === id)!;
  const lastMessage = (subaccountId: number) =>
    world.stack.relay.messages.filter((m) => m.subaccountId === subaccountId).pop();

  async function until<T>(what: string, probe: () => Promise<T | null | undefined | false>, ms = 30_000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await probe();
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(100);
    }
  }

  async function domainWorkflow(name: string) {
    return world.env.client.workflow.getHandle(domainWorkflowIdFor(name)).describe();
  }

  /** Adds `domain` already verifiable, so the first check verifies it and the sender switches. */
  async function addVerified(name: string, domain: string): Promise<InstanceStatus> {
    world.stack.sparkpost.markDomainVerifiable(domain);
    const r = await cli('--json', 'sending-domain', 'add', name, domain, '--wait', '--timeout', '60');
    assert.equal(r.code, 0, r.err);
    const s = JSON.parse(r.out) as InstanceStatus;
    assert.equal(s.sendingDomain?.state, 'active');
    return s;
  }

  test('add → DNS records → verify → sender switched and proved → rotate keeps it → remove', async () => {
    const name = 'dom-happy';
    const domain = 'mail.happy-example.com';
    const { subaccountId } = await activeInstance(name);

    const added = await cli('sending-domain', 'add', name, 'Mail.Happy-Example.com');
    assert.equal(added.code, 0, added.err);
    const [created] = domainsOf(subaccountId);
    assert.equal(created?.domain, domain, 'created on the instance subaccount, lowercased');
    assert.equal(created.ownership_verified, false);
    const record = `${created.dkim!.selector}._domainkey.${domain}`;
    assert.ok(added.out.includes(record), added.out);
    assert.ok(added.out.includes(`v=DKIM1; k=rsa; h=sha256; p=${created.dkim!.public}`), 'the DKIM public key');
    assert.match(added.out, /re-checks every 6h for up to 13d/);
    assert.match(added.out, new RegExp(`smtpctl sending-domain verify ${name}`));

    let s = await lane.client.status(name);
    assert.equal(s.sendingDomain?.state, 'pending-verification');
    assert.equal(s.sendingDomain?.dnsRecords[0].name, record);
    assert.equal(s.state, 'active');
    assert.equal(s.step, null, 'the entity is not blocked by the wait');
    assert.equal(address(name), `noreply+${name}@${STACK_SENDER_DOMAIN}`, 'sender unchanged until verified');
    const show = await cli('sending-domain', 'show', name);
    assert.equal(show.code, 0, show.err);
    assert.match(show.out, /sending domain\s+mail\.happy-example\.com \(pending-verification\)/);
    assert.match(show.out, /verification\s+wait-domain-verification in managed-smtp-domain\/dom-happy; 1 checks/);
    assert.ok(show.out.includes(record));

    // Not published yet: the check says so and exits 1.
    const early = await cli('sending-domain', 'verify', name);
    assert.equal(early.code, 1);
    assert.match(early.err, /mail\.happy-example\.com is not verified yet \(DKIM invalid\)/);

    world.stack.sparkpost.markDomainVerifiable(domain); // the customer published the record
    const verified = await cli('sending-domain', 'verify', name, '--wait', '--timeout', '60');
    assert.equal(verified.code, 0, verified.err);
    const sender = `noreply+${name}@${domain}`;
    assert.match(verified.out, new RegExp(`mail\\.happy-example\\.com verified; the sender is now noreply\\+${name}@`));
    assert.equal(address(name), sender);
    assert.equal(lastMessage(subaccountId)?.from, sender, 'the test email went out from the new domain');
    s = await lane.client.status(name);
    assert.equal(s.sender, sender);
    assert.equal(s.sendingDomain?.state, 'active');
    assert.ok(s.sendingDomain?.verifiedAt);
    assert.equal((await domainWorkflow(name)).status.name, 'COMPLETED');

    const checked = await cli('--json', 'check', name);
    assert.equal(checked.code, 0, checked.out);
    const findings = JSON.parse(checked.out).findings as Array<{ check: string; ok: boolean; message: string }>;
    assert.ok(findings.some((f) => f.check === 'sending-domain' && f.ok && /verified/.test(f.message)));

    const rotated = await cli('rotate-key', name, '--wait');
    assert.equal(rotated.code, 0, rotated.err);
    assert.equal(address(name), sender, 'a key rotation keeps the custom sender');

    const removed = await cli('sending-domain', 'remove', name);
    assert.equal(removed.code, 0, removed.err);
    assert.match(
      removed.out,
      /removed mail\.happy-example\.com; the sender is noreply\+dom-happy@cloud\.sourcegraph\.com/,
    );
    const shared = `noreply+${name}@${STACK_SENDER_DOMAIN}`;
    assert.equal(address(name), shared);
    assert.equal(lastMessage(subaccountId)?.from, shared, 'the shared sender was proved before deleting');
    assert.equal(domainsOf(subaccountId).length, 0, 'the domain is deleted');
    s = await lane.client.status(name);
    assert.equal(s.sendingDomain, null);
    assert.equal(s.state, 'active');
    assert.equal((await cli('sending-domain', 'remove', name)).code, 1, 'nothing left to remove');
  });

  test('a domain that never verifies waits visibly, does not block the instance, and cancels cleanly', async () => {
    const name = 'dom-never';
    const domain = 'never.example.org';
    const { subaccountId } = await activeInstance(name);
    const added = await cli('sending-domain', 'add', name, domain, '--recheck', '1s');
    assert.equal(added.code, 0, added.err);
    assert.match(added.out, /re-checks every 1s/);

    const waiting = await until('the wait step', async () => {
      const d = await domainWorkflow(name);
      return d.typedSearchAttributes.get(STEP_KEY) === 'wait-domain-verification' ? d : null;
    });
    assert.equal(waiting.status.name, 'RUNNING');
    const list = world.env.client.workflow.list({
      query: `ManagedSmtpStep = 'wait-domain-verification' AND ExecutionStatus = 'Running'`,
    });
    const listed = await until('the waiting workflow in visibility', async () => {
      for await (const w of list) if (w.workflowId === domainWorkflowIdFor(name)) return true;
      return false;
    });
    assert.ok(listed);
    // It re-checks periodically (every second here).
    await until('three checks', async () => ((await lane.client.domainWorkflowStatus(name))?.checks ?? 0) >= 3);
    // The Web UI shows the wait on the instance too.
    const meta = (await world.env.client.workflow
      .getHandle(`managed-smtp/${name}`)
      .query('__temporal_workflow_metadata')) as { currentDetails?: string };
    assert.match(meta.currentDetails ?? '', /waiting for DNS verification of never\.example\.org/);

    // The instance stays usable meanwhile.
    const rotated = await cli('rotate-key', name, '--wait');
    assert.equal(rotated.code, 0, rotated.err);

    const again = await cli('sending-domain', 'add', name, 'other.example.org');
    assert.equal(again.code, 1);
    assert.match(again.err, /already has sending domain never\.example\.org \(pending-verification\); remove it first/);

    const cancelled = await cli('sending-domain', 'cancel', name);
    assert.equal(cancelled.code, 0, cancelled.err);
    assert.match(
      cancelled.out,
      /adding never\.example\.org failed: cancelled before it was verified; nothing was left/,
    );
    assert.equal(domainsOf(subaccountId).length, 0, 'the unverified domain is deleted');
    assert.equal((await domainWorkflow(name)).status.name, 'CANCELLED');
    const s = await lane.client.status(name);
    assert.equal(s.state, 'active');
    assert.equal(s.sendingDomain, null);
    assert.equal(s.sender, `noreply+${name}@${STACK_SENDER_DOMAIN}`);
    assert.equal(s.error, null);
  });

  test('a domain still unverified at the deadline is deleted and the add fails', async () => {
    const name = 'dom-late';
    const { subaccountId } = await activeInstance(name);
    const r = await cli(
      'sending-domain',
      'add',
      name,
      'late.example.net',
      '--recheck',
      '1s',
      '--give-up-after',
      '3s',
      '--wait',
    );
    assert.equal(r.code, 1);
    assert.match(
      r.err,
      /late\.example\.net was not verified within 3s \(\d+ checks, DKIM invalid\).*nothing was left behind/,
    );
    assert.equal(domainsOf(subaccountId).length, 0);
    assert.equal((await domainWorkflow(name)).status.name, 'FAILED');
    const s = await lane.client.status(name);
    assert.equal(s.sendingDomain, null);
    assert.equal(s.state, 'active');
  });

  test('SparkPost refusals (7000 restricted, 7004 in use) fail clearly and leave nothing behind', async () => {
    const name = 'dom-refused';
    const { subaccountId } = await activeInstance(name);
    const before = world.stack.sparkpost.state.sendingDomains.length;

    const restricted = await cli('sending-domain', 'add', name, 'mail.gmail.com');
    assert.equal(restricted.code, 1);
    assert.match(
      restricted.err,
      /SparkPost refuses mail\.gmail\.com as a sending domain: it is a restricted domain \(error 7000\)/,
    );

    const inUse = await cli('sending-domain', 'add', name, STACK_SENDER_DOMAIN, '--wait');
    assert.equal(inUse.code, 1);
    assert.match(
      inUse.err,
      /cloud\.sourcegraph\.com is already a sending domain of another SparkPost account .*\(error 7004\)/,
    );

    assert.equal(world.stack.sparkpost.state.sendingDomains.length, before, 'nothing created');
    assert.equal(domainsOf(subaccountId).length, 0);
    const s = await lane.client.status(name);
    assert.equal(s.sendingDomain, null);
    assert.equal(s.state, 'active');
    assert.equal(s.lastSendingDomainChange?.ok, false);
    assert.equal(address(name), `noreply+${name}@${STACK_SENDER_DOMAIN}`);

    assert.equal((await cli('sending-domain', 'add', name, 'not a domain')).code, 2);
    assert.equal((await cli('sending-domain', 'add', name, 'ok.example.com', '--recheck', 'soon')).code, 2);
    assert.equal((await cli('sending-domain', 'add', 'no-such-instance', 'ok.example.com')).code, 1);
  });

  test('ip-pool assign (unknown pool refused, --create), unassign', async () => {
    const name = 'pool-one';
    const { subaccountId } = await activeInstance(name);

    const unknown = await cli('ip-pool', 'assign', name, 'acme_dedicated');
    assert.equal(unknown.code, 1);
    assert.match(unknown.err, /IP pool "acme_dedicated" does not exist \(pools: default\); pass --create to create it/);
    assert.equal(subaccount(subaccountId).ip_pool, undefined, 'nothing changed');
    assert.ok(!world.stack.sparkpost.state.ipPools.some((p) => p.id === 'acme_dedicated'));

    assert.equal((await cli('ip-pool', 'assign', name, 'Not-A-Pool')).code, 2);

    const created = await cli('ip-pool', 'assign', name, 'acme_dedicated', '--create');
    assert.equal(created.code, 0, created.err);
    assert.match(created.out, /now sends from IP pool acme_dedicated \(created\)/);
    assert.match(created.out, /warm-up/);
    assert.ok(world.stack.sparkpost.state.ipPools.some((p) => p.id === 'acme_dedicated'));
    assert.equal(subaccount(subaccountId).ip_pool, 'acme_dedicated');
    assert.equal((await lane.client.status(name)).ipPool, 'acme_dedicated');

    const check = await cli('--json', 'check', name);
    assert.equal(check.code, 0, check.out);
    assert.ok(
      JSON.parse(check.out).findings.some((f: { check: string; ok: boolean }) => f.check === 'ip-pool' && f.ok),
    );

    const existing = await cli('--json', 'ip-pool', 'assign', name, 'default');
    assert.equal(existing.code, 0, existing.err);
    assert.equal(JSON.parse(existing.out).ipPool, 'default');

    const un = await cli('ip-pool', 'unassign', name);
    assert.equal(un.code, 0, un.err);
    assert.match(un.out, /no longer has a dedicated IP pool \(was default\)/);
    assert.equal(subaccount(subaccountId).ip_pool, undefined);
    assert.equal((await lane.client.status(name)).ipPool, null);
  });

  test('drift of the recorded domain and pool is found by check and repaired by check --enforce', async () => {
    const name = 'dom-drift';
    const domain = 'mail.drift-example.com';
    const { subaccountId } = await activeInstance(name);
    assert.equal((await cli('ip-pool', 'assign', name, 'drift_pool', '--create')).code, 0);
    await addVerified(name, domain);
    const sender = `noreply+${name}@${domain}`;
    assert.equal(address(name), sender);

    // Someone puts the shared sender back and SparkPost loses the pool assignment.
    world.stack.sourcegraph.humanEdit(name, (t) =>
      t.replace(sender, `noreply+${name}@${STACK_SENDER_DOMAIN}`).replace('{', '{\n  // edited by hand\n'),
    );
    delete subaccount(subaccountId).ip_pool;

    const found = await cli('check', name);
    assert.equal(found.code, 1);
    assert.match(found.out, /DRIFT ip-pool\s+subaccount uses no dedicated IP pool, expected IP pool "drift_pool"/);
    assert.match(found.out, /DRIFT site-config\s+email\.address is "noreply\+dom-drift@cloud\.sourcegraph\.com"/);
    assert.match(found.out, /ok {4}sending-domain\s+sending domain mail\.drift-example\.com is verified/);

    const fixed = await cli('check', name, '--enforce');
    assert.equal(fixed.code, 0, fixed.out + fixed.err);
    assert.match(fixed.out, /repair: active/);
    assert.equal(address(name), sender, 'the repair uses the recorded custom domain');
    assert.match(world.stack.sourcegraph.site(name).config, /edited by hand/);
    assert.equal(subaccount(subaccountId).ip_pool, 'drift_pool', 'the repair restores the recorded pool');
    assert.equal(lastMessage(subaccountId)?.from, sender);
    assert.equal((await cli('check', name)).code, 0);

    // A domain SparkPost no longer has cannot be repaired by re-provisioning: an alert, exit 1.
    const d = world.stack.sparkpost.state.sendingDomains.findIndex((x) => x.domain === domain);
    const [gone] = world.stack.sparkpost.state.sendingDomains.splice(d, 1);
    const alert = await cli('check', name, '--enforce');
    assert.equal(alert.code, 1);
    assert.match(
      alert.out,
      /ALERT sending-domain\s+sending domain mail\.drift-example\.com no longer exists at SparkPost/,
    );
    world.stack.sparkpost.state.sendingDomains.push(gone);

    // The fleet check does not pass the recorded domain: a verified domain of the instance's own subaccount is
    // accepted as managed, so it raises no false alert.
    const fleet = await cli('--json', 'check-fleet');
    assert.equal(fleet.code, 0, fleet.err);
    const drifted = (JSON.parse(fleet.out) as { drifted: Array<{ instance: string }> }).drifted;
    assert.ok(!drifted.some((x) => x.instance === name), JSON.stringify(drifted));

    // Disable restores the settings from before; the domain and pool stay recorded, and re-enable uses them.
    const off = await lane.client.waitFor(await lane.client.disable(name), { timeoutMs: 60_000 });
    assert.equal(off.state, 'disabled', off.error ?? '');
    assert.equal(address(name), null);
    assert.equal(off.sendingDomain?.state, 'active');
    delete subaccount(subaccountId).ip_pool;
    const on = await lane.client.waitFor(await lane.client.enable(name, specFor(world.stack.addInstanceRef(name))), {
      timeoutMs: 60_000,
    });
    assert.equal(on.state, 'active', on.error ?? '');
    assert.equal(address(name), sender);
    assert.equal(subaccount(subaccountId).ip_pool, 'drift_pool');
    // A re-run on the custom sender is a repair, not somebody else's settings.
    const rerun = await lane.client.waitFor(await lane.client.enable(name, on.spec!), { timeoutMs: 60_000 });
    assert.equal(rerun.state, 'active', rerun.error ?? '');
  });

  test('an IP pool change neither ends a quarantine nor assigns the quarantine pool', async () => {
    const name = 'pool-quarantined';
    const { subaccountId } = await activeInstance(name);
    const h = world.env.client.workflow.getHandle(workflowIdFor(name));
    const severe = severeReading('severe-1');
    await h.signal(protectionSignal, severe);
    await until('the quarantine', async () => {
      const p = (await lane.client.status(name)).protection;
      return p?.level === 'quarantined' && p.lastRequest?.requestId === 'severe-1';
    });
    assert.equal(subaccount(subaccountId).ip_pool, 'quarantine');

    const moved = await cli('ip-pool', 'assign', name, 'acme_dedicated', '--create');
    assert.equal(moved.code, 1, moved.out);
    assert.match(moved.err, /quarantined by reputation protection/);
    assert.equal(subaccount(subaccountId).ip_pool, 'quarantine', 'the quarantine stays in force');
    const un = await cli('ip-pool', 'unassign', name);
    assert.equal(un.code, 1, un.out);
    assert.equal(subaccount(subaccountId).ip_pool, 'quarantine', 'the quarantine stays in force');

    const clear: ProtectionRequest = { requestId: 'clear-1', input: { kind: 'clear', actor: 'op' } };
    await h.executeUpdate(protectionRequestUpdate, { args: [clear] });
    await until('the lift', async () => {
      const p = (await lane.client.status(name)).protection;
      return p?.level === 'ok' && p.lastRequest?.requestId === 'clear-1';
    });
    assert.equal(subaccount(subaccountId).ip_pool, undefined);
    const quarantine = await cli('ip-pool', 'assign', name, 'quarantine');
    assert.equal(quarantine.code, 1, quarantine.out);
    assert.match(quarantine.err, /IP pool quarantine is the quarantine pool of reputation protection/);
    assert.equal(subaccount(subaccountId).ip_pool, undefined);
    assert.equal((await cli('ip-pool', 'assign', name, 'acme_dedicated', '--create')).code, 0);
    assert.equal(subaccount(subaccountId).ip_pool, 'acme_dedicated');
  });

  test('a disable that cuts the switch short keeps the verified domain for the next enable', async () => {
    const d = world.deps();
    const fault = new FaultSwitch();
    fault.on = false;
    const unavailable = () =>
      new VendorError({ vendor: 'sourcegraph', kind: 'unavailable', status: 503, message: 'injected: 503' });
    const l = await world.lane({
      ...d,
      sourcegraph: (o) => failing(d.sourcegraph(o), 'editSiteConfig', unavailable, fault),
    });
    const name = 'dom-disabled';
    const domain = 'mail.disabled-example.com';
    const i = world.stack.addInstance(name);
    const on = await l.client.waitFor(await l.client.enable(name, specFor(i)), { timeoutMs: 60_000, pollMs: 100 });
    assert.equal(on.state, 'active', on.error ?? '');
    world.stack.sparkpost.markDomainVerifiable(domain);
    fault.on = true; // the switch's site write keeps failing (retrying)
    const added = await cli('sending-domain', 'add', name, domain);
    assert.equal(added.code, 0, added.err);
    await until('the switch to retry its site write', async () => fault.tripped >= 2);
    const handle = await l.client.disable(name, 'operator');
    await until('the disable to cut the switch short', async () => (await l.client.status(name)).state === 'disabling');
    fault.on = false;
    const off = await l.client.waitFor(handle, { timeoutMs: 120_000 });
    assert.equal(off.state, 'disabled', off.error ?? '');
    assert.equal(off.sendingDomain?.state, 'active', JSON.stringify(off.sendingDomain));
    const again = await l.client.waitFor(await l.client.enable(name, specFor(i)), { timeoutMs: 60_000, pollMs: 100 });
    assert.equal(again.state, 'active', again.error ?? '');
    assert.equal(address(name), `noreply+${name}@${domain}`, 'the next enable uses the verified domain');
  });

  test('a wait that needs more checks than one run holds goes on in a new run, not given up early', async () => {
    const name = 'dom-many';
    const domain = 'many.example.org';
    const { subaccountId } = await activeInstance(name);
    const added = await cli('sending-domain', 'add', name, domain); // default: every 6h for 13d
    assert.equal(added.code, 0, added.err);
    const h = world.env.client.workflow.getHandle(domainWorkflowIdFor(name));
    // Verify requests (each one a check, paced) spend the 1000 checks of a run long before the 13-day deadline.
    const checksNow = async () => (await lane.client.domainWorkflowStatus(name))?.checks ?? 0;
    let checks = await checksNow();
    while (checks <= 1010) {
      await h.signal(verifySendingDomainSignal);
      const before = checks;
      const deadline = Date.now() + 60_000; // the run that continues as new replays a long history
      while ((checks = await checksNow()) <= before) {
        assert.ok(Date.now() < deadline, `timed out waiting for check ${before + 1}`);
        await sleep(5);
      }
    }
    assert.ok(checks > 1010, `${checks} checks`);
    assert.equal((await domainWorkflow(name)).status.name, 'RUNNING');
    const s = await lane.client.status(name);
    assert.equal(s.sendingDomain?.state, 'pending-verification', JSON.stringify(s.lastSendingDomainChange));
    assert.equal(domainsOf(subaccountId).length, 1, 'the domain is kept');
    const cancelled = await cli('sending-domain', 'cancel', name);
    assert.equal(cancelled.code, 0, cancelled.err);
    assert.equal(domainsOf(subaccountId).length, 0);
  });

  test('an enable that fails on the custom sender puts the site configuration back', async () => {
    const name = 'dom-undo';
    const domain = 'mail.undo-example.com';
    const { subaccountId } = await activeInstance(name);
    await addVerified(name, domain);
    const off = await lane.client.waitFor(await lane.client.disable(name), { timeoutMs: 60_000 });
    assert.equal(off.state, 'disabled', off.error ?? '');
    const restored = readEmailSettings(world.stack.sourcegraph.site(name).config);
    // SparkPost lost the domain meanwhile: the enable's test email from it is refused (550), and the enable undoes.
    const st = world.stack.sparkpost.state.sendingDomains;
    st.splice(
      st.findIndex((d) => d.domain === domain && d.subaccount_id === subaccountId),
      1,
    );
    const on = await lane.client.waitFor(await lane.client.enable(name, off.spec!), { timeoutMs: 90_000 });
    assert.notEqual(on.state, 'active', 'the test email cannot pass');
    assert.deepEqual(
      readEmailSettings(world.stack.sourcegraph.site(name).config),
      restored,
      `the managed settings on ${domain} are taken back (${on.error}; ${on.warnings.join('; ')})`,
    );
  });

  test('histories of the new paths replay deterministically', async () => {
    const names = ['dom-happy', 'dom-never', 'dom-late', 'dom-refused', 'pool-one', 'dom-drift'];
    names.push('pool-quarantined', 'dom-disabled', 'dom-many', 'dom-undo');
    const ids = [...names.map((n) => `managed-smtp/${n}`), ...names.slice(0, 3).map(domainWorkflowIdFor)];
    const histories = await Promise.all(
      ids.map(async (workflowId) => ({
        workflowId,
        history: await world.env.client.workflow.getHandle(workflowId).fetchHistory(),
      })),
    );
    let replayed = 0;
    for await (const r of Worker.runReplayHistories({ workflowBundle: await workflowBundle() }, histories)) {
      assert.equal(r.error, undefined, `${r.workflowId}: ${r.error?.message}`);
      replayed++;
    }
    assert.equal(replayed, ids.length);
  });
});
