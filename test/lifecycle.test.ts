/**
 * The enable/disable lifecycle on a real Temporal dev server against the emulators: happy path, disable, re-enable,
 * customer-owned settings, compensation when each step fails, a wrong admin token, and no key in any history.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { temporal } from '@temporalio/proto';
import { VendorError } from '../lib/errors';
import { workflowIdFor } from '../lib/instance';
import { readEmailSettings } from '../lib/site-config';
import type { EnableSpec } from '../lib/types';
import type { EmulatedInstance } from '../emulators/stack';
import { FaultSwitch, failing } from './helpers/faulty';
import { World, type Lane, specFor } from './helpers/world';

const ORIGINAL_CONFIG = `{
  // The instance's own settings: every key and comment here must survive enable and disable.
  "externalURL": "https://acme.example.com",
  "auth.providers": [{ "type": "builtin", "allowSignup": false }],
  /* block comment kept too */
  "email.senderName": "Acme Code Search"
}
`;

const CUSTOMER_CONFIG = `{
  // customer-run SMTP
  "externalURL": "https://own.example.com",
  "email.address": "sourcegraph@own.example.com",
  "email.smtp": { "host": "smtp.own.example.com", "port": 587, "username": "sg", "password": "customer-password", "authentication": "PLAIN" }
}
`;

describe('enable/disable lifecycle', { timeout: 240_000 }, () => {
  let world: World;
  let lane: Lane;

  before(async () => {
    world = await World.start();
    lane = await world.lane();
  });
  after(async () => {
    await world?.close();
  });

  async function enable(l: Lane, i: EmulatedInstance, extra: Partial<EnableSpec> = {}) {
    const handle = await l.client.enable(i.name, specFor(i, extra));
    return l.client.waitFor(handle, { timeoutMs: 90_000, pollMs: 200 });
  }
  async function disable(l: Lane, name: string) {
    const handle = await l.client.disable(name, 'test');
    return l.client.waitFor(handle, { timeoutMs: 90_000, pollMs: 200 });
  }

  /** Asserts nothing of the instance exists any more (first enable that failed, or never provisioned). */
  function assertNothingLeft(i: EmulatedInstance) {
    assert.equal(world.liveSubaccounts(i.name).length, 0, 'no live subaccount');
    for (const s of world.allSubaccounts(i.name))
      assert.equal(world.keysOf(s.id).length, 0, 'no key on any subaccount');
    assert.equal(world.sendKeySecret(i.gcpProject), undefined, 'no send-key secret');
  }

  test('enable provisions one subaccount, one send key, a matching secret, the config and a test email', async () => {
    const i = world.stack.addInstance('acme', { config: ORIGINAL_CONFIG });
    const status = await enable(lane, i);
    assert.equal(status.state, 'active', status.error ?? '');
    assert.equal(status.error, null);

    const subs = world.liveSubaccounts('acme');
    assert.equal(subs.length, 1);
    assert.equal(subs[0].status, 'active');
    assert.equal(status.subaccountId, subs[0].id);

    const keys = world.keysOf(subs[0].id);
    assert.equal(keys.length, 1);
    assert.equal(keys[0].label, 'send_key');
    assert.deepEqual(keys[0].grants, ['smtp/inject']);
    assert.equal(status.keyId, keys[0].id);

    const secret = world.sendKeySecret(i.gcpProject);
    assert.ok(secret);
    assert.deepEqual(secret.labels, { 'managed-by': 'managed-smtp', instance: 'acme' });
    const enabled = secret.versions.filter((v) => v.state === 'ENABLED');
    assert.equal(enabled.length, 1);
    assert.equal(enabled[0].data, keys[0].key, 'latest version holds the live key');
    assert.equal(status.secretVersion, enabled[0].name);

    const site = world.stack.sourcegraph.site('acme');
    const settings = readEmailSettings(site.config);
    assert.equal(settings.address, 'noreply+acme@cloud.sourcegraph.com');
    assert.deepEqual(settings.smtp, {
      host: world.stack.relay.host,
      port: world.stack.relay.port,
      username: 'SMTP_Injection',
      password: keys[0].key,
      authentication: 'PLAIN',
    });
    assert.equal(settings.senderName, 'Acme Code Search', 'senderName untouched when not given');
    assert.match(site.config, /\/\/ The instance's own settings/);
    assert.match(site.config, /block comment kept too/);
    assert.match(site.config, /"auth\.providers"/);

    const sent = world.stack.relay.messages.filter((m) => m.subaccountId === subs[0].id);
    assert.equal(sent.length, 1);
    assert.equal(sent[0].keyId, keys[0].id, 'the relay accepted the test email with the send key');
    assert.deepEqual(sent[0].to, ['cloud-team+test_emails@sourcegraph.com']);
    assert.equal(sent[0].from, 'noreply+acme@cloud.sourcegraph.com');
    assert.ok(status.lastTestEmail?.ok);
    assert.equal(status.sender, 'noreply+acme@cloud.sourcegraph.com');
    assert.equal(world.stack.sourcegraph.invalidDocuments.length, 0, 'every GraphQL document was valid');
  });

  test('no minted key appears in the workflow history, raw or base64', async () => {
    const history = await world.env.client.workflow.getHandle(workflowIdFor('acme')).fetchHistory();
    const bytes = Buffer.from(temporal.api.history.v1.History.encode(history).finish());
    const keys = world.stack.sparkpost.state.apiKeys.map((k) => k.key);
    assert.ok(keys.length > 0);
    for (const key of keys) {
      assert.equal(bytes.includes(Buffer.from(key)), false, 'key in history');
      assert.equal(
        bytes.includes(Buffer.from(Buffer.from(key).toString('base64').slice(0, 24))),
        false,
        'base64 key in history',
      );
    }
    assert.equal(bytes.includes(Buffer.from(world.stack.operatorKey)), false, 'operator key in history');
  });

  test('disable restores the config, revokes the key, deletes the secret and suspends the subaccount', async () => {
    const id = world.liveSubaccounts('acme')[0].id;
    const status = await disable(lane, 'acme');
    assert.equal(status.state, 'disabled', status.error ?? '');
    assert.equal(world.keysOf(id).length, 0, 'send key revoked');
    assert.equal(world.sendKeySecret('sg-acme'), undefined, 'secret deleted');
    assert.equal(world.stack.sparkpost.state.subaccounts.find((s) => s.id === id)?.status, 'suspended');
    const site = world.stack.sourcegraph.site('acme');
    assert.deepEqual(readEmailSettings(site.config), { address: null, smtp: null, senderName: 'Acme Code Search' });
    assert.match(site.config, /\/\/ The instance's own settings/);
    assert.match(site.config, /block comment kept too/);
    assert.equal(status.keyId, null);
    assert.equal(status.secretVersion, null);
  });

  test('re-enable reactivates the same subaccount with a new key', async () => {
    const before = await lane.client.status('acme');
    const oldKey = world.stack.sparkpost.snapshot();
    const status = await enable(lane, world.stack.addInstanceRef('acme'));
    assert.equal(status.state, 'active', status.error ?? '');
    assert.equal(status.subaccountId, before.subaccountId, 'same subaccount');
    assert.equal(world.stack.sparkpost.state.subaccounts.find((s) => s.id === status.subaccountId!)?.status, 'active');
    const keys = world.keysOf(status.subaccountId!);
    assert.equal(keys.length, 1);
    assert.ok(!JSON.stringify(oldKey).includes(keys[0].id), 'a new key id');
    assert.equal(world.liveSubaccounts('acme').length, 1);
  });

  test('enable again on an active instance changes nothing that is right', async () => {
    const before = await lane.client.status('acme');
    const status = await enable(lane, world.stack.addInstanceRef('acme'));
    assert.equal(status.state, 'active');
    assert.equal(status.keyId, before.keyId, 'key kept');
    assert.equal(status.secretVersion, before.secretVersion, 'secret version kept');
    assert.equal(world.keysOf(status.subaccountId!).length, 1);
  });

  test('an instance with its own SMTP settings is left untouched unless --force', async () => {
    const i = world.stack.addInstance('ownsmtp', { config: CUSTOMER_CONFIG });
    const idBefore = world.stack.sourcegraph.site('ownsmtp').id;
    const status = await enable(lane, i);
    assert.equal(status.state, 'customer-managed');
    assert.match(status.error ?? '', /own SMTP settings.*customer's/);
    assertNothingLeft(i);
    assert.equal(world.stack.sourcegraph.site('ownsmtp').id, idBefore, 'config not written');
    assert.equal(world.stack.sourcegraph.site('ownsmtp').config, CUSTOMER_CONFIG);

    const forced = await enable(lane, i, { force: true });
    assert.equal(forced.state, 'active', forced.error ?? '');
    assert.ok(forced.warnings.some((w) => /replaced the instance's own SMTP settings/.test(w)));
    const disabled = await disable(lane, 'ownsmtp');
    assert.equal(disabled.state, 'disabled', disabled.error ?? '');
    const restored = readEmailSettings(world.stack.sourcegraph.site('ownsmtp').config);
    assert.equal(restored.address, 'sourcegraph@own.example.com');
    assert.equal(restored.smtp?.host, 'smtp.own.example.com');
    assert.match(world.stack.sourcegraph.site('ownsmtp').config, /customer-run SMTP/);
  });

  test('a wrong admin token fails the enable fast with nothing left behind', async () => {
    const i = world.stack.addInstance('badtoken');
    world.stack.secretManager.seed('projects/sg-badtoken/secrets/sourcegraph-admin-token', 'sgp_not-the-token');
    const started = Date.now();
    const status = await enable(lane, i);
    assert.equal(status.state, 'failed');
    assert.match(status.error ?? '', /inspect-site-config/);
    assert.match(status.error ?? '', /SourcegraphAuthError/);
    assert.ok(Date.now() - started < 30_000, 'bounded time');
    assertNothingLeft(i);
  });

  const permanent = (vendor: 'sparkpost' | 'secret-manager' | 'sourcegraph', what: string) => () =>
    new VendorError({ vendor, kind: 'forbidden', status: 403, message: `injected: ${what} forbidden` });

  type Wrap = (w: World, fault: FaultSwitch) => ReturnType<World['deps']>;
  const failureCases: Array<{ step: string; wrap: Wrap }> = [
    {
      step: 'ensure-subaccount',
      wrap: (w, f) => {
        const d = w.deps();
        return {
          ...d,
          sparkpost: failing(d.sparkpost, 'createSubaccount', permanent('sparkpost', 'create subaccount'), f),
        };
      },
    },
    {
      step: 'store-send-key',
      wrap: (w, f) => {
        const d = w.deps();
        return { ...d, secrets: failing(d.secrets, 'addVersion', permanent('secret-manager', 'add version'), f) };
      },
    },
    {
      step: 'patch-site-config',
      wrap: (w, f) => {
        const d = w.deps();
        return {
          ...d,
          sourcegraph: (o) => failing(d.sourcegraph(o), 'editSiteConfig', permanent('sourcegraph', 'edit config'), f),
        };
      },
    },
    {
      step: 'send-test-email',
      wrap: (w, f) => {
        const d = w.deps();
        return {
          ...d,
          sourcegraph: (o) => failing(d.sourcegraph(o), 'sendTestEmail', permanent('sourcegraph', 'test email'), f),
        };
      },
    },
  ];

  for (const c of failureCases) {
    test(`a failure at ${c.step} compensates everything and ends failed`, async () => {
      const name = `fail-${c.step}`;
      const i = world.stack.addInstance(name, { config: ORIGINAL_CONFIG });
      // A permanent error for the step itself, which then lifts so compensations (which may call the same method,
      // e.g. restoring the config) can run.
      const fault = new FaultSwitch(1);
      const faulty = await world.lane(c.wrap(world, fault));
      const handle = await faulty.client.enable(i.name, specFor(i));
      const status = await faulty.client.waitFor(handle, { timeoutMs: 90_000, pollMs: 200 });
      assert.equal(fault.tripped, 1, 'a permanent error is not retried');
      assert.equal(status.state, 'failed');
      assert.match(status.error ?? '', new RegExp(`enable failed at ${c.step}: injected`));
      assert.match(status.error ?? '', /everything it did was undone/);
      assertNothingLeft(i);
      for (const s of world.allSubaccounts(name)) {
        assert.equal(s.status, 'terminated', 'a subaccount the first enable created is terminated');
      }
      const site = world.stack.sourcegraph.site(name);
      assert.deepEqual(readEmailSettings(site.config), { address: null, smtp: null, senderName: 'Acme Code Search' });
      assert.match(site.config, /block comment kept too/);
      if (c.step === 'send-test-email') assert.equal(status.lastTestEmail?.ok, false);

      // The same instance then enables cleanly once the vendor recovers.
      const ok = await enable(faulty, i);
      assert.equal(ok.state, 'active', ok.error ?? '');
      assert.equal(world.liveSubaccounts(name).length, 1);
      assert.equal(world.keysOf(ok.subaccountId!).length, 1);
    });
  }

  test('disable cancels an enable that is stuck retrying and cleans up', async () => {
    const i = world.stack.addInstance('stuck');
    const d = world.deps();
    const fault = new FaultSwitch();
    const unavailable = () =>
      new VendorError({ vendor: 'sourcegraph', kind: 'unavailable', status: 503, message: 'injected: 503' });
    const faulty = await world.lane({
      ...d,
      sourcegraph: (o) => failing(d.sourcegraph(o), 'editSiteConfig', unavailable, fault),
    });
    await faulty.client.enable(i.name, specFor(i));
    // Transient errors keep the enable retrying on its step: visibly stuck, not failed.
    for (let n = 0; n < 200 && fault.tripped < 2; n++) await new Promise((r) => setTimeout(r, 50));
    const stuck = await faulty.client.status(i.name);
    assert.equal(stuck.state, 'provisioning');
    assert.equal(stuck.step, 'patch-site-config');
    assert.ok(fault.tripped >= 2, 'retried');
    fault.on = false; // the vendor recovers only for the clean-up
    const status = await disable(faulty, i.name);
    assert.equal(status.state, 'disabled', status.error ?? '');
    assertNothingLeft(i);
    const rec = status.requests.find((r) => r.kind === 'enable');
    assert.equal(rec?.outcome, 'superseded by disable');
  });

  test('status of an unknown instance is a clear error', async () => {
    await assert.rejects(lane.client.status('nobody-here'), /no managed SMTP workflow for instance nobody-here/);
  });
});
