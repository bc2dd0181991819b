/**
 * Progress that survives a failed call (issue 15): idempotent reads retried briefly inside the activity and writes
 * never; a key whose store failed or whose mint answer was lost revoked at once, in the same attempt; an earlier
 * attempt's unstored key revoked before another is minted; heartbeat details kept across bare heartbeats; a young
 * provisioning step retried within seconds, an old one left to the policy's backoff.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, type ActivityDeps } from '../activities';
import { heartbeating } from '../activities/heartbeat';
import {
  READ_TRIES,
  YOUNG_FOR_MS,
  YOUNG_MAX_DELAY_MS,
  recordProgress,
  retryingReads,
  youngRetryDelayMs,
} from '../activities/progress';
import { EmulatorStack } from '../emulators/stack';
import { TIMEOUT_CODE, VendorError } from '../lib/errors';
import { SourcegraphClient } from '../vendors/sourcegraph';
import { SEND_KEY_GRANTS, SEND_KEY_LABEL, sendKeySecretName } from '../lib/instance';
import { vendorDeps } from '../worker/worker';

const unavailable = (message = 'SparkPost GET: 503') =>
  new VendorError({ vendor: 'sparkpost', kind: 'unavailable', status: 503, message });

describe('retryingReads', () => {
  function fakeClient(failures: number, error: () => Error) {
    const calls = { read: 0, write: 0 };
    const client = {
      async read(): Promise<string> {
        calls.read++;
        if (calls.read <= failures) throw error();
        return 'ok';
      },
      async write(): Promise<string> {
        calls.write++;
        throw error();
      },
    };
    return { client: retryingReads(client, ['read']), calls };
  }

  test('a read that fails quickly twice succeeds on its third try', async () => {
    const { client, calls } = fakeClient(2, () => unavailable());
    assert.equal(await client.read(), 'ok');
    assert.equal(calls.read, 3);
  });

  test('the retry is bounded: a read that keeps failing is tried READ_TRIES times, then throws', async () => {
    const { client, calls } = fakeClient(100, () => unavailable());
    await assert.rejects(client.read(), VendorError);
    assert.equal(calls.read, READ_TRIES);
  });

  test('a write is never retried', async () => {
    const { client, calls } = fakeClient(100, () => unavailable());
    await assert.rejects(client.write(), VendorError);
    assert.equal(calls.write, 1);
  });

  test('a timeout and a permanent error are not retried', async () => {
    const timedOut = fakeClient(
      100,
      () => new VendorError({ vendor: 'sparkpost', kind: 'unavailable', message: 'GET: timed out after 15000 ms.' }),
    );
    await assert.rejects(timedOut.client.read());
    assert.equal(timedOut.calls.read, 1);
    const notFound = fakeClient(100, () => new VendorError({ vendor: 'sparkpost', kind: 'not-found', message: 'x' }));
    await assert.rejects(notFound.client.read());
    assert.equal(notFound.calls.read, 1);
  });

  test('a real client timing out is not retried: a Sourcegraph that never answers costs one timeout, not three', async () => {
    // The Sourcegraph client said "no response within N ms", which the old message match missed: a hanging site got
    // READ_TRIES timeouts of 15 s inside one check attempt, longer than the attempt's own 30 s limit.
    let requests = 0;
    const sockets = new Set<Socket>();
    const server = createServer(() => void requests++); // reads the request, never answers
    server.on('connection', (s) => sockets.add(s));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const client = new SourcegraphClient({
        url: `http://127.0.0.1:${port}`,
        token: 'sgp_0123456789abcdef',
        timeoutMs: 300,
      });
      const reading = retryingReads(client, ['getSiteConfig']);
      const err = await reading.getSiteConfig().then(
        () => assert.fail('a site that never answers cannot return its configuration'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof VendorError && err.kind === 'unavailable', String(err));
      assert.equal(err.code, TIMEOUT_CODE);
      assert.equal(requests, 1, 'tried once');
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('heartbeat details and the young backoff ceiling', () => {
  test('bare heartbeats before vendor calls repeat the recorded details instead of wiping them', async () => {
    // A 30 ms heartbeat timeout makes the liveness grace 10 ms: the second call comes after it.
    const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 30 });
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    const client = heartbeating({ call: async () => 'done' });
    await env.run(async () => {
      recordProgress({ mintedKeyId: 'k1' });
      await client.call();
      await new Promise((r) => setTimeout(r, 25));
      await client.call();
    });
    assert.equal(beats.length, 2, 'the recorded progress, then one liveness heartbeat past the grace');
    assert.deepEqual(beats.at(-1), { mintedKeyId: 'k1' });
  });

  test('a short attempt sends no liveness heartbeat (each one is a server write and a billed action)', async () => {
    const env = new MockActivityEnvironment({ activityType: 'ensureSubaccount', heartbeatTimeoutMs: 20_000 });
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    const client = heartbeating({ call: async () => 'done' });
    await env.run(async () => {
      for (let i = 0; i < 5; i++) await client.call();
    });
    assert.deepEqual(beats, []);
  });

  test('the hourly check activity never heartbeats (each heartbeat is a billed action)', async () => {
    const env = new MockActivityEnvironment({ activityType: 'checkInstance' });
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    const client = heartbeating({ call: async () => 'done' });
    await env.run(() => client.call());
    assert.deepEqual(beats, []);
  });

  const delayIn = (info: { activityType: string; attempt: number; ageMs: number }, err: VendorError) =>
    new MockActivityEnvironment({
      activityType: info.activityType,
      attempt: info.attempt,
      scheduledTimestampMs: Date.now() - info.ageMs,
    }).run(async () => youngRetryDelayMs(err, undefined)) as Promise<number | undefined>;

  test('a young provisioning step retries within YOUNG_MAX_DELAY_MS; an old one and the test email use the policy', async () => {
    const err = unavailable();
    assert.equal(await delayIn({ activityType: 'ensureSendKey', attempt: 1, ageMs: 1000 }, err), 1000);
    assert.equal(await delayIn({ activityType: 'ensureSendKey', attempt: 7, ageMs: 30_000 }, err), YOUNG_MAX_DELAY_MS);
    assert.equal(
      await delayIn({ activityType: 'ensureSendKey', attempt: 7, ageMs: YOUNG_FOR_MS + 1000 }, err),
      undefined,
    );
    assert.equal(await delayIn({ activityType: 'sendTestEmail', attempt: 3, ageMs: 1000 }, err), undefined);
    const told = new VendorError({ vendor: 'sparkpost', kind: 'rate-limited', message: '429', retryAfterMs: 9000 });
    assert.equal(
      await delayIn({ activityType: 'ensureSendKey', attempt: 2, ageMs: 1000 }, told),
      undefined,
      "the vendor's Retry-After wins",
    );
  });
});

describe('a minted key never waits for the next attempt to be revoked', { timeout: 60_000 }, () => {
  let stack: EmulatorStack;
  let deps: ActivityDeps;

  before(async () => {
    stack = await EmulatorStack.start();
    deps = vendorDeps(stack.workerConfig());
  });
  after(async () => {
    await stack?.close();
  });

  const run = <R>(fn: () => Promise<R>, info: ConstructorParameters<typeof MockActivityEnvironment>[0] = {}) =>
    new MockActivityEnvironment(info).run(fn) as Promise<R>;
  const liveKeys = (id: number) =>
    stack.sparkpost.state.apiKeys.filter((k) => k.subaccount_id === id && k.label === SEND_KEY_LABEL);
  const minted = (id: number) => stack.sparkpost.mintedKeys.filter((k) => k.subaccountId === id);

  async function subaccount(name: string): Promise<number> {
    const acts = createActivities(deps);
    return (await run(() => acts.ensureSubaccount({ instance: name, knownId: null }))).id;
  }

  async function convergesAfterwards(name: string, id: number): Promise<void> {
    const acts = createActivities(deps);
    await run(() => acts.ensureSendKey({ instance: name, gcpProject: `sg-${name}`, subaccountId: id }));
    const keys = liveKeys(id);
    assert.equal(keys.length, 1, 'one live key');
    const versions = stack.secretManager.getSecret(sendKeySecretName(`sg-${name}`))?.versions ?? [];
    const enabled = versions.filter((v) => v.state === 'ENABLED');
    assert.equal(enabled.length, 1);
    assert.equal(enabled[0].data, keys[0].key, 'the secret holds the live key');
  }

  test('a store that failed: the minted key is revoked in the same attempt', async () => {
    const id = await subaccount('storefail');
    const acts = createActivities(deps);
    stack.secretManager.faults.set({ errorRate: 1, match: 'AddSecretVersion' });
    try {
      await assert.rejects(
        run(() => acts.ensureSendKey({ instance: 'storefail', gcpProject: 'sg-storefail', subaccountId: id })),
      );
    } finally {
      stack.secretManager.faults.reset();
    }
    assert.equal(minted(id).length, 1, 'a key was minted');
    assert.equal(liveKeys(id).length, 0, 'and revoked before the attempt ended');
    await convergesAfterwards('storefail', id);
  });

  test('a store applied with its answer lost: the key is kept, not revoked nor minted again', async () => {
    const id = await subaccount('storedrop');
    const acts = createActivities(deps);
    stack.secretManager.faults.set({ dropResponseRate: 1, match: 'AddSecretVersion' });
    let r;
    try {
      r = await run(() => acts.ensureSendKey({ instance: 'storedrop', gcpProject: 'sg-storedrop', subaccountId: id }));
    } finally {
      stack.secretManager.faults.reset();
    }
    assert.equal(r.minted, true);
    assert.equal(minted(id).length, 1, 'one mint');
    assert.equal(liveKeys(id)[0]?.id, r.keyId);
    await convergesAfterwards('storedrop', id);
    assert.equal(minted(id).length, 1, 'no extra mint afterwards');
  });

  test('a mint whose answer was lost: the key nobody can use is found and revoked in the same attempt', async () => {
    const id = await subaccount('mintdrop');
    const acts = createActivities(deps);
    stack.sparkpost.faults.set({ dropResponseRate: 1, match: '^POST /api/v1/api-keys' });
    try {
      await assert.rejects(
        run(() => acts.ensureSendKey({ instance: 'mintdrop', gcpProject: 'sg-mintdrop', subaccountId: id })),
      );
    } finally {
      stack.sparkpost.faults.reset();
    }
    assert.equal(minted(id).length, 1, 'the mint was applied');
    assert.equal(liveKeys(id).length, 0, 'and its key revoked at once');
    await convergesAfterwards('mintdrop', id);
  });

  test('an earlier attempt that made sure of the secret (heartbeat details) spares the next one ensureSecret', async () => {
    const id = await subaccount('ready');
    await deps.secrets.ensureSecret('sg-ready', 'managed-smtp-send-key', {
      'managed-by': 'managed-smtp',
      instance: 'ready',
    });
    const acts = createActivities(deps);
    stack.secretManager.faults.set({ errorRate: 1, match: 'CreateSecret|GetSecret' });
    try {
      const r = await run(() => acts.ensureSendKey({ instance: 'ready', gcpProject: 'sg-ready', subaccountId: id }), {
        attempt: 2,
        heartbeatDetails: { secretReady: true },
      });
      assert.equal(r.minted, true);
    } finally {
      stack.secretManager.faults.reset();
    }
    await convergesAfterwards('ready', id);
  });

  test("an earlier attempt's unstored key (heartbeat details) is revoked before another is minted", async () => {
    const id = await subaccount('unstored');
    // What a worker killed between mint and store leaves: a live key, its id in the attempt's heartbeat details.
    const orphan = await deps.sparkpost.createApiKey(id, SEND_KEY_LABEL, [...SEND_KEY_GRANTS]);
    const acts = createActivities(deps);
    const r = await run(
      () => acts.ensureSendKey({ instance: 'unstored', gcpProject: 'sg-unstored', subaccountId: id }),
      { attempt: 2, heartbeatDetails: { mintedKeyId: orphan.id } },
    );
    assert.equal(r.revokedOrphans, 1);
    const [old, fresh] = minted(id);
    assert.equal(old.id, orphan.id);
    assert.ok(old.revokedAt !== null && old.revokedAt <= fresh.mintedAt, 'revoked before the new key was minted');
    await convergesAfterwards('unstored', id);
  });
});
