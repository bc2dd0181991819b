/**
 * Idempotency of each activity against the emulators: run twice, request applied while its response was lost, killed
 * between two calls. The world must still hold one subaccount, one live key and one matching secret.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { ApplicationFailure } from '@temporalio/common';
import { createActivities, type ActivityDeps } from '../activities';
import { EmulatorStack } from '../emulators/stack';
import { VendorError } from '../lib/errors';
import { sendKeySecretName } from '../lib/instance';
import { readEmailSettings } from '../lib/site-config';
import { vendorDeps } from '../worker/worker';
import { FaultSwitch, failing } from './helpers/faulty';

describe('activities are idempotent', { timeout: 60_000 }, () => {
  let stack: EmulatorStack;
  let deps: ActivityDeps;
  const mock = new MockActivityEnvironment();
  // MockActivityEnvironment.run does not infer the result type; this keeps the tests typed.
  const env = {
    run: <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> =>
      mock.run(fn, ...args) as Promise<R>,
  };

  before(async () => {
    stack = await EmulatorStack.start();
    deps = vendorDeps(stack.workerConfig());
  });
  after(async () => {
    await stack?.close();
  });

  const live = (name: string) =>
    stack.sparkpost.state.subaccounts.filter((s) => s.name === name && s.status !== 'terminated');
  const keysOf = (id: number) => stack.sparkpost.state.apiKeys.filter((k) => k.subaccount_id === id);
  const enabledVersions = (project: string) =>
    (stack.secretManager.getSecret(sendKeySecretName(project))?.versions ?? []).filter((v) => v.state === 'ENABLED');

  test('ensureSubaccount twice gives one subaccount', async () => {
    const acts = createActivities(deps);
    const a = await env.run(acts.ensureSubaccount, { instance: 'twice', knownId: null });
    const b = await env.run(acts.ensureSubaccount, { instance: 'twice', knownId: null });
    assert.equal(a.id, b.id);
    assert.equal(live('twice').length, 1);
  });

  test('a subaccount create applied but its response lost: the retry finds it instead of creating another', async () => {
    const acts = createActivities(deps);
    stack.sparkpost.faults.set({ dropResponseRate: 1, match: '^POST /api/v1/subaccounts' });
    try {
      await assert.rejects(env.run(acts.ensureSubaccount, { instance: 'lost', knownId: null }), (err: unknown) => {
        assert.ok(err instanceof ApplicationFailure);
        assert.equal(err.nonRetryable, false, 'a lost response is transient');
        return true;
      });
    } finally {
      stack.sparkpost.faults.reset();
    }
    assert.equal(live('lost').length, 1, 'the create was applied');
    const again = await env.run(acts.ensureSubaccount, { instance: 'lost', knownId: null });
    assert.equal(again.id, live('lost')[0].id);
    assert.equal(live('lost').length, 1, 'no second subaccount');
  });

  test('a substring match of the name is not mistaken for the instance', async () => {
    const acts = createActivities(deps);
    const other = await env.run(acts.ensureSubaccount, { instance: 'acme-eu', knownId: null });
    const mine = await env.run(acts.ensureSubaccount, { instance: 'acme', knownId: null });
    assert.notEqual(other.id, mine.id);
  });

  test('ensureSendKey twice keeps the first key and secret version', async () => {
    const acts = createActivities(deps);
    const sub = await env.run(acts.ensureSubaccount, { instance: 'keytwice', knownId: null });
    const a = await env.run(acts.ensureSendKey, {
      instance: 'keytwice',
      gcpProject: 'sg-keytwice',
      subaccountId: sub.id,
    });
    const b = await env.run(acts.ensureSendKey, {
      instance: 'keytwice',
      gcpProject: 'sg-keytwice',
      subaccountId: sub.id,
    });
    assert.equal(a.minted, true);
    assert.equal(b.minted, false);
    assert.equal(b.keyId, a.keyId);
    assert.equal(b.secretVersion, a.secretVersion);
    assert.equal(keysOf(sub.id).length, 1);
    assert.equal(enabledVersions('sg-keytwice').length, 1);
    assert.equal(enabledVersions('sg-keytwice')[0].data, keysOf(sub.id)[0].key);
  });

  test('killed between minting and storing: the retry revokes the orphan and stores a live key', async () => {
    // A killed worker runs no more code: its store never answers (a store that fails is revoked at once instead,
    // test/progress.test.ts).
    const crashing = createActivities({
      ...deps,
      secrets: new Proxy(deps.secrets, {
        get: (target, prop, receiver) =>
          prop === 'addVersion' ? () => new Promise<never>(() => undefined) : Reflect.get(target, prop, receiver),
      }),
    });
    const acts = createActivities(deps);
    const sub = await env.run(acts.ensureSubaccount, { instance: 'orphan', knownId: null });
    void env.run(crashing.ensureSendKey, { instance: 'orphan', gcpProject: 'sg-orphan', subaccountId: sub.id });
    for (let i = 0; i < 100 && keysOf(sub.id).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(keysOf(sub.id).length, 1, 'the orphan key exists, its value lost');
    const orphanId = keysOf(sub.id)[0].id;

    const r = await env.run(acts.ensureSendKey, { instance: 'orphan', gcpProject: 'sg-orphan', subaccountId: sub.id });
    assert.equal(r.revokedOrphans, 1);
    const keys = keysOf(sub.id);
    assert.equal(keys.length, 1, 'one live key');
    assert.notEqual(keys[0].id, orphanId);
    assert.equal(enabledVersions('sg-orphan').length, 1);
    assert.equal(enabledVersions('sg-orphan')[0].data, keys[0].key, 'secret matches the live key');
  });

  test('a secret version added but its response lost: the key is kept instead of minted again', async () => {
    const acts = createActivities(deps);
    const sub = await env.run(acts.ensureSubaccount, { instance: 'smdrop', knownId: null });
    stack.secretManager.faults.set({ dropResponseRate: 1, match: 'AddSecretVersion' });
    try {
      // The attempt reads the latest version back and finds its key there (before issue 15 it failed and the retry
      // found it).
      const first = await env.run(acts.ensureSendKey, {
        instance: 'smdrop',
        gcpProject: 'sg-smdrop',
        subaccountId: sub.id,
      });
      assert.equal(first.minted, true);
    } finally {
      stack.secretManager.faults.reset();
    }
    const minted = stack.sparkpost.mintedKeys.filter((k) => k.subaccountId === sub.id).length;
    const r = await env.run(acts.ensureSendKey, { instance: 'smdrop', gcpProject: 'sg-smdrop', subaccountId: sub.id });
    assert.equal(r.minted, false, 'the stored key was found live');
    assert.equal(stack.sparkpost.mintedKeys.filter((k) => k.subaccountId === sub.id).length, minted, 'no extra mint');
    assert.equal(keysOf(sub.id).length, 1);
    assert.equal(enabledVersions('sg-smdrop')[0].data, keysOf(sub.id)[0].key);
  });

  test('compensations run twice are no-ops the second time', async () => {
    const acts = createActivities(deps);
    const sub = await env.run(acts.ensureSubaccount, { instance: 'undo2', knownId: null });
    await env.run(acts.ensureSendKey, { instance: 'undo2', gcpProject: 'sg-undo2', subaccountId: sub.id });
    assert.deepEqual(await env.run(acts.revokeSendKeys, { subaccountId: sub.id }), { revoked: 1 });
    assert.deepEqual(await env.run(acts.revokeSendKeys, { subaccountId: sub.id }), { revoked: 0 });
    assert.deepEqual(await env.run(acts.deleteSendKeySecret, { gcpProject: 'sg-undo2', instance: 'undo2' }), {
      destroyedVersions: 1,
      deleted: true,
    });
    assert.deepEqual(await env.run(acts.deleteSendKeySecret, { gcpProject: 'sg-undo2', instance: 'undo2' }), {
      destroyedVersions: 0,
      deleted: false,
    });
    await env.run(acts.releaseSubaccount, { instance: 'undo2', subaccountId: sub.id, terminate: false });
    await env.run(acts.releaseSubaccount, { instance: 'undo2', subaccountId: sub.id, terminate: false });
    assert.equal(stack.sparkpost.state.subaccounts.find((s) => s.id === sub.id)?.status, 'suspended');
  });

  test('a rotation rollback retried after it destroyed the old version still puts the old key back', async () => {
    const i = stack.addInstance('rollback-retry');
    const site = {
      sourcegraphUrl: i.sourcegraphUrl,
      adminTokenSecret: i.adminTokenSecret,
      gcpProject: i.gcpProject,
      instance: i.name,
    };
    const acts = createActivities(deps);
    const sub = await env.run(acts.ensureSubaccount, { instance: i.name, knownId: null });
    const base = { instance: i.name, gcpProject: i.gcpProject, subaccountId: sub.id };
    const old = await env.run(acts.ensureSendKey, base);
    await env.run(acts.applyManagedSiteConfig, { ...site, secretVersion: old.secretVersion });
    // A rotation got as far as the new key in the site configuration, then failed (its test email, say).
    const fresh = await env.run(acts.mintSendKey, base);
    await env.run(acts.applyKeyToSiteConfig, { ...site, secretVersion: fresh.secretVersion });

    // The rollback's first attempt moves the old key to a new version and destroys the others (the old one too),
    // then SparkPost fails once, transiently, revoking the new key: Temporal retries the rollback.
    const fault = new FaultSwitch(1);
    const unavailable = () =>
      new VendorError({ vendor: 'sparkpost', kind: 'unavailable', message: 'injected: revoke' });
    const flaky = createActivities({ ...deps, sparkpost: failing(deps.sparkpost, 'deleteApiKey', unavailable, fault) });
    const input = { ...site, ...base, old: { keyId: old.keyId, secretVersion: old.secretVersion } };
    await assert.rejects(env.run(flaky.rollbackKeyRotation, input), /injected: revoke/);
    const restored = await env.run(flaky.rollbackKeyRotation, input);

    assert.equal(restored.keyId, old.keyId);
    const keys = keysOf(sub.id);
    assert.deepEqual(
      keys.map((k) => k.id),
      [old.keyId],
      'the new key is revoked, the old one live',
    );
    const enabled = enabledVersions(i.gcpProject);
    assert.equal(enabled.length, 1, 'one enabled version');
    assert.equal(restored.secretVersion, enabled[0].name, 'the version returned is the one that holds it');
    assert.equal(enabled[0].data, keys[0].key, 'it holds the old key');
    const config = readEmailSettings(stack.sourcegraph.site(i.name).config);
    assert.equal(config.smtp?.password, keys[0].key, 'the site uses the old key');
  });

  test('terminating by name finds a subaccount whose create response was lost', async () => {
    const acts = createActivities(deps);
    await env.run(acts.ensureSubaccount, { instance: 'byname', knownId: null });
    const r = await env.run(acts.releaseSubaccount, { instance: 'byname', subaccountId: null, terminate: true });
    assert.equal(r.released.length, 1);
    assert.equal(live('byname').length, 0);
  });

  test('permanent vendor errors leave as non-retryable typed failures, transient ones as retryable', async () => {
    const wrongKey = createActivities({ ...vendorDeps({ ...stack.workerConfig(), sparkpostApiKey: 'wrong' }) });
    await assert.rejects(env.run(wrongKey.findSubaccount, { instance: 'x1' }), (err: unknown) => {
      assert.ok(err instanceof ApplicationFailure);
      assert.equal(err.type, 'SparkPostAuthError');
      assert.equal(err.nonRetryable, true);
      assert.ok(!err.message.includes('wrong'), 'no key in the message');
      return true;
    });
    const acts = createActivities(deps);
    stack.sparkpost.faults.set({ rateLimitRate: 1, match: '^GET /api/v1/subaccounts' });
    try {
      await assert.rejects(env.run(acts.findSubaccount, { instance: 'x1' }), (err: unknown) => {
        assert.ok(err instanceof ApplicationFailure);
        assert.equal(err.type, 'SparkPostRateLimitedError');
        assert.equal(err.nonRetryable, false);
        assert.ok(err.nextRetryDelay !== undefined, 'a 429 sets the next retry delay');
        return true;
      });
    } finally {
      stack.sparkpost.faults.reset();
    }
  });
});
