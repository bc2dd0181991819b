/**
 * Issue 10: the worker cannot be turned against its own secrets. A matrix of hostile enable requests, each sent
 * through smtpctl (exit 2, one line naming the argument) and as a signal straight to Temporal (the request ends
 * bounded, `failed` or rejected, naming the argument), with a recording listener that proves nothing was sent and a
 * look at the emulators that proves nothing was left behind. Then the shared send-key secret, subaccount id 0 and
 * the egress-IP limit of the send key.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { AddressInfo } from 'node:net';
import { MockActivityEnvironment } from '@temporalio/testing';
import { World, specFor, type Lane } from './helpers/world';
import { checkInvariants } from './helpers/invariants';
import { createActivities } from '../activities';
import { parseUrlPatterns } from '../lib/allow-list';
import { isVendorError } from '../lib/errors';
import { SEND_KEY_GRANTS, SEND_KEY_LABEL, workflowIdFor } from '../lib/instance';
import type { Resolver } from '../lib/target-guard';
import type { EnableSpec, InstanceStatus } from '../lib/types';
import { SparkPostClient } from '../vendors/sparkpost';

const PATTERNS = 'http://127.0.0.1:*,http://*.sourcegraph.test:*,https://*.sourcegraph.com';

/** DNS for the test: names of the wildcard pattern that resolve to internal addresses. */
const DNS: Record<string, string[]> = {
  'loop.sourcegraph.test': ['127.0.0.1'],
  'ten.sourcegraph.test': ['10.1.2.3'],
  'meta.sourcegraph.test': ['169.254.169.254'],
  'zero.sourcegraph.test': ['0.0.0.0'],
  'six.sourcegraph.test': ['::1'],
  'mixed.sourcegraph.test': ['93.184.216.34', '127.0.0.1'],
};
const resolver: Resolver = async (host) => {
  const found = DNS[host];
  if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return found.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
};

describe('hostile enable requests are refused before anything is sent', { timeout: 240_000 }, () => {
  let world: World;
  let lane: Lane;
  let listener: http.Server;
  let port = 0;
  /** Every request the listener got (it stands for any target a secret must not reach). */
  const received: string[] = [];

  before(async () => {
    world = await World.start();
    process.env.MANAGED_SMTP_SOURCEGRAPH_URLS = PATTERNS;
    lane = await world.lane({ ...world.deps(), sourcegraphUrls: parseUrlPatterns(PATTERNS), resolver });
    process.env.MANAGED_SMTP_TASK_QUEUE = lane.taskQueue;
    listener = http.createServer((req, res) => {
      received.push(`${req.method} ${req.url} auth=${req.headers.authorization ? 'yes' : 'no'}`);
      res.end('{}');
    });
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    port = (listener.address() as AddressInfo).port;
  });
  after(async () => {
    listener?.close();
    await world?.close();
  });

  /** A value worth stealing, in another project. */
  const STOLEN = 'projects/codec-keys-prj/secrets/managed-smtp-codec-keys/versions/latest';

  interface Case {
    name: string;
    url: () => string;
    adminTokenSecret?: (project: string) => string;
    /** What the refusal must say (names the argument and why). */
    says: RegExp;
  }
  const cases: Case[] = [
    {
      name: 'token in another project',
      url: () => `http://127.0.0.1:${port}/x`,
      adminTokenSecret: () => STOLEN,
      says: /(admin-token-secret|adminTokenSecret).*own project/,
    },
    {
      name: 'the send-key secret as admin token',
      url: () => `http://127.0.0.1:${port}/x`,
      adminTokenSecret: (p) => `projects/${p}/secrets/managed-smtp-send-key/versions/latest`,
      says: /(admin-token-secret|adminTokenSecret).*send-key secret/,
    },
    {
      // A GDPR request's secret holds recipients and their HMAC key: never a token to send to the instance.
      name: "one of managed-smtp's own secrets as admin token",
      url: () => `http://127.0.0.1:${port}/x`,
      adminTokenSecret: (p) => `projects/${p}/secrets/managed-smtp-gdpr-${randomUUID()}/versions/latest`,
      says: /(admin-token-secret|adminTokenSecret).*managed-smtp-\* secrets are managed-smtp's own/,
    },
    { name: 'public URL outside the list', url: () => 'https://example.org', says: /sourcegraph.*matches none/i },
    { name: 'loopback literal not named', url: () => `http://[::1]:${port}`, says: /sourcegraph.*matches none/i },
    {
      name: 'a name resolving to 127.0.0.1',
      url: () => `http://loop.sourcegraph.test:${port}`,
      says: /sourcegraph.*127\.0\.0\.1 \(loopback\)/i,
    },
    {
      name: 'a name resolving to ::1',
      url: () => `http://six.sourcegraph.test:${port}`,
      says: /sourcegraph.*::1 \(loopback\)/i,
    },
    { name: 'private', url: () => `http://ten.sourcegraph.test:${port}`, says: /sourcegraph.*\(private\)/i },
    {
      name: 'link-local (metadata server)',
      url: () => `http://meta.sourcegraph.test:${port}`,
      says: /sourcegraph.*\(link-local\)/i,
    },
    { name: 'unspecified', url: () => `http://zero.sourcegraph.test:${port}`, says: /sourcegraph.*\(unspecified\)/i },
    {
      name: 'one public and one loopback address',
      url: () => `http://mixed.sourcegraph.test:${port}`,
      says: /sourcegraph.*127\.0\.0\.1 \(loopback\)/i,
    },
    { name: 'plain http', url: () => 'http://acme.sourcegraph.com', says: /sourcegraph.*plain http/i },
  ];

  /** Nothing managed exists for the instance, and nothing reached the listener. */
  function assertNothingLeft(name: string, project: string): void {
    assert.deepEqual(received, [], 'nothing was sent to the target');
    assert.deepEqual(world.liveSubaccounts(name), [], 'no subaccount');
    assert.equal(world.sendKeySecret(project), undefined, 'no send-key secret');
  }

  cases.forEach((c, n) => {
    test(`smtpctl refuses: ${c.name} (exit 2)`, async () => {
      const name = `cli-case-${n}`;
      const project = `sg-cli-case-${n}`;
      const before = world.stack.secretManager.requestCount('AccessSecretVersion');
      const args = ['enable', name, '--sourcegraph-url', c.url(), '--gcp-project', project];
      if (c.adminTokenSecret) args.push('--admin-token-secret', c.adminTokenSecret(project));
      const r = await world.cliWith({ resolver }, ...args, '--wait');
      assert.equal(r.code, 2, r.err);
      assert.equal(r.out, '');
      assert.equal(r.err.trim().split('\n').length, 1, 'one line');
      assert.match(r.err, c.says);
      await assert.rejects(lane.client.status(name), /no managed SMTP workflow/);
      assert.equal(world.stack.secretManager.requestCount('AccessSecretVersion'), before, 'no secret was read');
      assertNothingLeft(name, project);
    });

    test(`a signal sent straight to Temporal ends bounded, naming the argument: ${c.name}`, async () => {
      const name = `sig-case-${n}`;
      const project = `sg-sig-case-${n}`;
      const spec: EnableSpec = {
        sourcegraphUrl: c.url(),
        gcpProject: project,
        adminTokenSecret:
          c.adminTokenSecret?.(project) ?? `projects/${project}/secrets/sourcegraph-admin-token/versions/latest`,
        force: false,
      };
      world.stack.secretManager.seed(`projects/${project}/secrets/sourcegraph-admin-token`, `sgp_${randomUUID()}`);
      const before = world.stack.secretManager.requestCount('AccessSecretVersion');
      const requestId = randomUUID();
      await world.env.client.workflow.signalWithStart('managedSmtpWorkflow', {
        workflowId: workflowIdFor(name),
        taskQueue: lane.taskQueue,
        args: [{ instance: name }],
        signal: 'enable',
        signalArgs: [{ requestId, spec }],
      });
      const status: InstanceStatus = await lane.client.waitFor(
        { instance: name, requestId, workflowId: workflowIdFor(name) },
        { timeoutMs: 60_000 },
      );
      const outcome = status.requests.find((r) => r.id === requestId)?.outcome ?? '';
      // Either the workflow's schema rejects it or the activity refuses it: both name the argument.
      const said = outcome.startsWith('rejected') ? outcome : (status.error ?? '');
      if (!outcome.startsWith('rejected')) assert.equal(status.state, 'failed');
      assert.match(said, c.says);
      assert.ok(said.length < 2500, `bounded (${said.length} characters)`);
      assert.equal(status.retrying ?? null, null, 'not retrying');
      assert.equal(world.stack.secretManager.requestCount('AccessSecretVersion'), before, 'no secret was read');
      assertNothingLeft(name, project);
    });
  });

  test('a send-key secret of another instance is never touched: enable fails naming both, disable leaves it', async () => {
    const a = world.stack.addInstance('share-a', { gcpProject: 'sg-shared' });
    const enabled = await world.cli(
      'enable',
      a.name,
      '--sourcegraph-url',
      a.sourcegraphUrl,
      '--gcp-project',
      a.gcpProject,
      '--wait',
    );
    assert.equal(enabled.code, 0, enabled.err);
    const secretBefore = JSON.stringify(world.sendKeySecret(a.gcpProject));

    // B lives in the same project, with its own admin token there.
    const tokenB = `sgp_${randomUUID()}`;
    const urlB = world.stack.sourcegraph.addSite('share-b', { adminToken: tokenB });
    world.stack.secretManager.seed('projects/sg-shared/secrets/share-b-admin-token', tokenB);
    const r = await world.cli(
      'enable',
      'share-b',
      '--sourcegraph-url',
      urlB,
      '--gcp-project',
      'sg-shared',
      '--admin-token-secret',
      'projects/sg-shared/secrets/share-b-admin-token/versions/latest',
      '--wait',
    );
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /belongs to instance share-a, not share-b/);
    assert.equal((await lane.client.status('share-b')).state, 'failed');
    // Disable B (its compensation deletes "its" secret): A's stays.
    const disabled = await world.cli('disable', 'share-b', '--wait');
    assert.equal(disabled.code, 0, disabled.err);
    assert.equal(JSON.stringify(world.sendKeySecret(a.gcpProject)), secretBefore, "A's secret is unchanged");
    assert.deepEqual(world.liveSubaccounts('share-b'), [], 'B left nothing behind');
    const inv = checkInvariants(world.stack, [{ name: a.name, gcpProject: a.gcpProject }]);
    assert.equal(inv.converged, 1, JSON.stringify(inv.findings.map((f) => f.problems)));
  });

  test("a spec naming another instance's project never sends that instance's token to a URL of its own", async () => {
    // The victim is enabled (its token was read a moment ago, so a worker may hold it in memory).
    const victim = world.stack.addInstance('victim-a', { gcpProject: 'sg-victim' });
    const enabled = await world.cli(
      'enable',
      victim.name,
      '--sourcegraph-url',
      victim.sourcegraphUrl,
      '--gcp-project',
      victim.gcpProject,
      '--wait',
    );
    assert.equal(enabled.code, 0, enabled.err);
    const reads = world.stack.secretManager.requestCount('AccessSecretVersion');
    // The thief names the victim's project and token, and a URL it controls (allow-listed: an instance of its own).
    const requestId = randomUUID();
    const spec: EnableSpec = {
      sourcegraphUrl: `http://127.0.0.1:${port}/thief`,
      gcpProject: victim.gcpProject,
      adminTokenSecret: victim.adminTokenSecret,
      force: false,
    };
    await world.env.client.workflow.signalWithStart('managedSmtpWorkflow', {
      workflowId: workflowIdFor('thief-b'),
      taskQueue: lane.taskQueue,
      args: [{ instance: 'thief-b' }],
      signal: 'enable',
      signalArgs: [{ requestId, spec }],
    });
    const status: InstanceStatus = await lane.client.waitFor(
      { instance: 'thief-b', requestId, workflowId: workflowIdFor('thief-b') },
      { timeoutMs: 60_000 },
    );
    assert.equal(status.state, 'failed');
    assert.match(status.error ?? '', /project sg-victim belongs to instance victim-a, not thief-b/);
    assert.equal(status.retrying ?? null, null, 'not retrying');
    assert.deepEqual(received, [], 'nothing reached the URL the thief named');
    assert.equal(world.stack.secretManager.requestCount('AccessSecretVersion'), reads, 'no secret was read');
    assert.deepEqual(world.liveSubaccounts('thief-b'), [], 'no subaccount');
    assert.equal((await lane.client.status(victim.name)).state, 'active', 'the victim is untouched');
  });

  test('subaccount id 0 (the primary account) is refused for subaccount-scoped calls, before any request', async () => {
    const sp = new SparkPostClient({ baseUrl: world.stack.sparkpost.url, apiKey: world.stack.operatorKey });
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['getSubaccount', () => sp.getSubaccount(0)],
      ['updateSubaccount', () => sp.updateSubaccount(0, { status: 'terminated' })],
      ['createApiKey', () => sp.createApiKey(0, SEND_KEY_LABEL, [...SEND_KEY_GRANTS])],
      ['listApiKeys', () => sp.listApiKeys(0)],
      ['deleteApiKey', () => sp.deleteApiKey(0, 'k')],
      ['updateApiKeyValidIps', () => sp.updateApiKeyValidIps(0, 'k', [])],
      ['createRtbfRequest', () => sp.createRtbfRequest(0, ['a@b.example'])],
    ];
    const keysBefore = world.stack.sparkpost.mintedKeys.length;
    for (const [name, call] of calls) {
      await assert.rejects(
        call(),
        (err) => isVendorError(err, 'invalid', 'sparkpost') && /primary account/.test(err.message),
        name,
      );
    }
    assert.equal(world.stack.sparkpost.mintedKeys.length, keysBefore);
    // Through the activities: a non-retryable failure, not a retry loop.
    const acts = createActivities(world.deps());
    const env = new MockActivityEnvironment();
    await assert.rejects(
      env.run(acts.revokeSendKeys, { subaccountId: 0 }),
      (err: Error & { nonRetryable?: boolean }) => {
        assert.equal(err.nonRetryable, true);
        assert.match(err.message, /subaccount id 0/);
        return true;
      },
    );
  });

  test('egress IPs: the key is minted with valid_ips, check verifies them, a change updates the same key', async () => {
    const i = world.stack.addInstance('egress-one');
    const base = ['enable', i.name, '--sourcegraph-url', i.sourcegraphUrl, '--gcp-project', i.gcpProject];
    // Bad addresses: exit 2 before anything is sent.
    const bad = await world.cli(...base, '--egress-ip', '10.0.0.300');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--egress-ip.*not an IPv4 address or CIDR block/);

    const r = await world.cli(...base, '--egress-ip', '127.0.0.1', '--wait');
    assert.equal(r.code, 0, r.err);
    const status = await lane.client.status(i.name);
    const keys = world.keysOf(status.subaccountId!);
    assert.equal(keys.length, 1);
    assert.deepEqual(keys[0].valid_ips, ['127.0.0.1']);
    const keyId = keys[0].id;
    // The relay enforces it: the same key from another address fails AUTH.
    assert.ok(world.stack.sparkpost.authenticateSmtpKey(keys[0].key, '127.0.0.1'));
    assert.equal(world.stack.sparkpost.authenticateSmtpKey(keys[0].key, '203.0.113.9'), null);

    const check = await world.cli('check', i.name, '--json');
    assert.equal(check.code, 0, check.out);
    const finding = (JSON.parse(check.out) as { findings: Array<{ check: string; ok: boolean }> }).findings.find(
      (f) => f.check === 'key-valid-ips',
    );
    assert.equal(finding?.ok, true);

    // Drift: someone widened the key. check reports it.
    keys[0].valid_ips = [];
    const drift = await world.cli('check', i.name, '--json');
    assert.equal(drift.code, 1);
    assert.match(drift.out, /key-valid-ips/);

    // A change of IPs re-runs enable, which updates the live key (no new key minted).
    const changed = await world.cli(...base, '--egress-ip', '127.0.0.0/8', '--egress-ip', '198.51.100.7', '--wait');
    assert.equal(changed.code, 0, changed.err);
    const after = world.keysOf(status.subaccountId!);
    assert.equal(after.length, 1);
    assert.equal(after[0].id, keyId, 'the same key');
    assert.deepEqual([...after[0].valid_ips].sort(), ['127.0.0.0/8', '198.51.100.7']);
    const spec = (await lane.client.status(i.name)).spec;
    assert.deepEqual(spec?.egressIps, ['127.0.0.0/8', '198.51.100.7']);
    assert.deepEqual(specFor(i).egressIps, undefined);
  });
});
