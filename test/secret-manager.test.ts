/**
 * Secret Manager: the real SecretManagerServiceClient (through SecretStore) against the local emulator over real
 * gRPC, the error mapping, the fault knobs, and proof that google-gax does not retry behind Temporal's back.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { crc32c } from '../lib/crc32c';
import { VendorError, type VendorErrorKind } from '../lib/errors';
import { SecretManagerEmulator } from '../emulators/secret-manager';
import {
  SecretStore,
  createSecretManagerClient,
  secretManagerError,
  secretManagerErrorKind,
} from '../vendors/secret-manager';

const PROJECT = 'acme-project';
const SECRET = `projects/${PROJECT}/secrets/managed-smtp-send-key`;
const PAYLOAD = 'sp-send-key-0123456789abcdef-TOP-SECRET';

/** Runs `fn`, expects a VendorError of `kind`, returns it. */
async function expectVendorError(fn: () => Promise<unknown>, kind: VendorErrorKind): Promise<VendorError> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof VendorError, `expected a VendorError, got ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    assert.equal(err.vendor, 'secret-manager');
    return err;
  }
  assert.fail(`expected a ${kind} VendorError`);
}

/** Runs a raw client call and returns the gRPC code it failed with. */
async function grpcCode(fn: () => Promise<unknown>): Promise<number> {
  try {
    await fn();
  } catch (err) {
    return (err as { code: number }).code;
  }
  assert.fail('expected the call to fail');
}

describe('crc32c', () => {
  test('is Castagnoli, not the IEEE CRC-32 of zlib', () => {
    const bytes = Buffer.from('123456789');
    assert.equal(crc32c(bytes), 0xe3069283);
    assert.equal(crc32c(new Uint8Array(0)), 0);
    assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
    assert.notEqual(crc32c(bytes), zlib.crc32(bytes));
  });
});

describe('error mapping', () => {
  test('gRPC codes, HTTP statuses and status names map to the same kinds', () => {
    const table: [number | string | undefined, VendorErrorKind][] = [
      [5, 'not-found'],
      [6, 'conflict'],
      [7, 'forbidden'],
      [16, 'auth'],
      [3, 'invalid'],
      [9, 'failed-precondition'],
      [8, 'rate-limited'],
      [14, 'unavailable'],
      [4, 'unavailable'],
      [13, 'unavailable'],
      [10, 'unavailable'],
      [12, 'invalid'],
      [404, 'not-found'],
      [409, 'conflict'],
      [403, 'forbidden'],
      [401, 'auth'],
      [400, 'invalid'],
      [429, 'rate-limited'],
      [500, 'unavailable'],
      [502, 'unavailable'],
      [503, 'unavailable'],
      [504, 'unavailable'],
      [408, 'unavailable'],
      ['FAILED_PRECONDITION', 'failed-precondition'],
      ['NOT_FOUND', 'not-found'],
      ['ALREADY_EXISTS', 'conflict'],
      ['PERMISSION_DENIED', 'forbidden'],
      ['UNAVAILABLE', 'unavailable'],
      ['404', 'not-found'],
      [undefined, 'unavailable'],
    ];
    for (const [code, kind] of table) assert.equal(secretManagerErrorKind(code), kind, `code ${String(code)}`);
  });

  test('a REST error with an HTTP status and a canonical status name uses the name', () => {
    const err = secretManagerError(
      { code: 400, status: 'FAILED_PRECONDITION', message: 'Secret Version [x/versions/3] is in DISABLED state.' },
      'AccessSecretVersion',
      'projects/p/secrets/s/versions/latest',
    );
    assert.equal(err.kind, 'failed-precondition');
    assert.equal(err.status, 9);
  });

  test('messages name method, resource and code, and never carry the payload', () => {
    const err = secretManagerError(
      { code: 3, details: `payload ${PAYLOAD} rejected`, message: `3 INVALID_ARGUMENT: payload ${PAYLOAD} rejected` },
      'AddSecretVersion',
      SECRET,
      [PAYLOAD],
    );
    assert.equal(err.kind, 'invalid');
    assert.equal(err.code, 'INVALID_ARGUMENT');
    assert.equal(
      err.message,
      `Secret Manager AddSecretVersion ${SECRET}: INVALID_ARGUMENT: payload [redacted] rejected`,
    );
    const http404 = secretManagerError({ code: 404, message: 'Not Found' }, 'GetSecret', SECRET);
    assert.equal(http404.message, `Secret Manager GetSecret ${SECRET}: HTTP 404: Not Found`);
    assert.equal(http404.kind, 'not-found');
    assert.equal(secretManagerError(new Error('socket hang up'), 'GetSecret', SECRET).kind, 'unavailable');
  });
});

describe('SecretStore against the emulator', () => {
  let emu: SecretManagerEmulator;
  let store: SecretStore;
  const errors: VendorError[] = [];

  /** expectVendorError that also keeps the error for the no-payload check at the end. */
  async function expectError(fn: () => Promise<unknown>, kind: VendorErrorKind): Promise<VendorError> {
    const err = await expectVendorError(fn, kind);
    errors.push(err);
    return err;
  }

  before(async () => {
    emu = await SecretManagerEmulator.start({ deniedProjects: ['locked-project'] });
    store = new SecretStore({ emulatorHost: emu.address, timeoutMs: 5000 });
  });
  after(async () => {
    await store.close();
    await emu.close();
  });
  beforeEach(() => {
    emu.faults.reset();
    emu.resetCounts();
  });

  test('address is loopback with a real port', () => {
    assert.match(emu.address, /^127\.0\.0\.1:\d+$/);
    assert.notEqual(emu.address, '127.0.0.1:0');
  });

  test('ensureSecret creates once, then gets (ALREADY_EXISTS is not an error)', async () => {
    const labels = { 'managed-by': 'managed-smtp', instance: 'acme' };
    assert.deepEqual(await store.ensureSecret(PROJECT, 'managed-smtp-send-key', labels), {
      name: SECRET,
      created: true,
    });
    assert.deepEqual(await store.ensureSecret(PROJECT, 'managed-smtp-send-key', labels), {
      name: SECRET,
      created: false,
    });
    assert.equal(emu.requestCount('CreateSecret'), 2);
    assert.equal(emu.requestCount('GetSecret'), 1);
    assert.deepEqual(emu.listSecretNames(), [SECRET]);
    assert.deepEqual(emu.getSecret(SECRET)?.labels, labels);
  });

  test('addVersion sends a CRC32C the service accepts; access latest returns the newest payload', async () => {
    const v1 = await store.addVersion(SECRET, 'first');
    const v2 = await store.addVersion(SECRET, PAYLOAD);
    assert.equal(v1, `${SECRET}/versions/1`);
    assert.equal(v2, `${SECRET}/versions/2`);
    assert.deepEqual(await store.access(`${SECRET}/versions/latest`), { name: v2, data: PAYLOAD });
    assert.deepEqual(await store.access(v1), { name: v1, data: 'first' });
    // The service recorded that the client sent a checksum (and verified it).
    const client = createSecretManagerClient({ emulatorHost: emu.address });
    try {
      const [meta] = await client.getSecretVersion({ name: v2 });
      assert.equal(meta.clientSpecifiedPayloadChecksum, true);
      // A wrong checksum is refused, so a zlib crc32 would have failed above.
      const code = await grpcCode(() =>
        client.addSecretVersion({ parent: SECRET, payload: { data: Buffer.from('x'), dataCrc32c: zlib.crc32('x') } }),
      );
      assert.equal(code, 3);
    } finally {
      await client.close();
    }
    assert.equal(emu.getSecret(SECRET)?.versions.length, 2);
  });

  test('a corrupted checksum on access is malformed', async () => {
    emu.corruptChecksums = true;
    try {
      const err = await expectError(() => store.access(`${SECRET}/versions/latest`), 'malformed');
      assert.ok(!err.message.includes(PAYLOAD));
    } finally {
      emu.corruptChecksums = false;
    }
  });

  test('a disabled latest version fails with failed-precondition even when an older one is enabled', async () => {
    const name = `projects/${PROJECT}/secrets/disabled-latest`;
    await store.ensureSecret(PROJECT, 'disabled-latest', {});
    const v1 = await store.addVersion(name, 'old-value');
    const v2 = await store.addVersion(name, 'new-value');
    await store.disableVersion(v2);
    await store.disableVersion(v2); // disabling twice is a no-op
    const err = await expectError(() => store.access(`${name}/versions/latest`), 'failed-precondition');
    assert.match(
      err.message,
      /AccessSecretVersion .*\/versions\/latest: FAILED_PRECONDITION: .*versions\/2\] is in DISABLED state/,
    );
    assert.equal(await store.accessIfExists(`${name}/versions/latest`), null);
    assert.deepEqual(await store.accessIfExists(v1), { name: v1, data: 'old-value' });

    const all = await store.listVersions(name);
    assert.deepEqual(
      all.map((v) => [v.name, v.state]),
      [
        [v2, 'DISABLED'],
        [v1, 'ENABLED'],
      ],
    );
    assert.ok(all.every((v) => typeof v.createTime === 'string' && !Number.isNaN(Date.parse(v.createTime))));
    assert.deepEqual(
      (await store.listVersions(name, { enabledOnly: true })).map((v) => v.name),
      [v1],
    );
  });

  test('destroy and delete are idempotent; missing things read as absent', async () => {
    const name = `projects/${PROJECT}/secrets/to-delete`;
    await store.ensureSecret(PROJECT, 'to-delete', {});
    const v1 = await store.addVersion(name, 'doomed-value');
    await store.destroyVersion(v1);
    await store.destroyVersion(v1); // the service answers FAILED_PRECONDITION; the store checks and accepts
    await store.destroyVersion(`${name}/versions/9`); // never existed
    const rec = emu.getSecret(name);
    assert.equal(rec?.versions[0].state, 'DESTROYED');
    assert.equal(rec?.versions[0].data, undefined);
    await expectError(() => store.access(v1), 'failed-precondition');
    assert.equal(await store.accessIfExists(v1), null);

    assert.equal(await store.deleteSecret(name), true);
    assert.equal(await store.deleteSecret(name), false);
    assert.equal(emu.getSecret(name), undefined);
    await store.destroyVersion(v1); // the whole secret is gone: still fine
    assert.deepEqual(await store.listVersions(name), []);
    assert.equal(await store.accessIfExists(`${name}/versions/latest`), null);
    await expectError(() => store.access(`${name}/versions/latest`), 'not-found');
    await expectError(() => store.disableVersion(v1), 'not-found');
  });

  test('a project without a grant is forbidden, for reads too', async () => {
    const locked = 'projects/locked-project/secrets/s/versions/latest';
    const err = await expectError(() => store.access(locked), 'forbidden');
    assert.match(
      err.message,
      /PERMISSION_DENIED: Permission 'secretmanager\.versions\.access' denied for resource 'projects\/locked-project\/secrets\/s\/versions\/latest' \(or it may not exist\)\./,
    );
    await expectError(() => store.accessIfExists(locked), 'forbidden');
    await expectError(() => store.ensureSecret('locked-project', 's', {}), 'forbidden');
    assert.deepEqual(
      emu.listSecretNames().filter((n) => n.includes('locked')),
      [],
    );
  });

  test('UNAVAILABLE is unavailable after exactly one server-side request (gax retries are off)', async () => {
    emu.faults.set({ errorRate: 1 });
    // AccessSecretVersion is the method google-gax retries on UNAVAILABLE and RESOURCE_EXHAUSTED by default.
    await expectError(() => store.access(`${SECRET}/versions/latest`), 'unavailable');
    assert.equal(emu.requestCount('AccessSecretVersion'), 1);
    await expectError(() => store.addVersion(SECRET, PAYLOAD), 'unavailable');
    assert.equal(emu.requestCount('AddSecretVersion'), 1);
    emu.faults.set({ errorRate: 0, rateLimitRate: 1 });
    await expectError(() => store.access(`${SECRET}/versions/latest`), 'rate-limited');
    assert.equal(emu.requestCount('AccessSecretVersion'), 2);
    assert.equal(emu.faults.injected.error, 2);
    assert.equal(emu.faults.injected['rate-limit'], 1);
    assert.equal(emu.getSecret(SECRET)?.versions.length, 2, 'a faulted AddSecretVersion must not be applied');
  });

  test('control: without retry:null the same client does retry, so the test above can fail', async () => {
    emu.faults.set({ errorRate: 1 });
    const client = createSecretManagerClient({ emulatorHost: emu.address });
    try {
      // Keep the method's default retry codes (UNAVAILABLE, RESOURCE_EXHAUSTED), only with short waits.
      const fast = {
        initialRetryDelayMillis: 10,
        retryDelayMultiplier: 1,
        maxRetryDelayMillis: 10,
        initialRpcTimeoutMillis: 1000,
        rpcTimeoutMultiplier: 1,
        maxRpcTimeoutMillis: 1000,
        totalTimeoutMillis: 400,
      };
      await grpcCode(() =>
        client.accessSecretVersion({ name: `${SECRET}/versions/latest` }, { retry: { backoffSettings: fast } }),
      );
      assert.ok(emu.requestCount('AccessSecretVersion') >= 2, `got ${emu.requestCount('AccessSecretVersion')}`);
    } finally {
      await client.close();
    }
  });

  test('a dropped response is applied: the caller sees unavailable, a re-read shows the change', async () => {
    emu.faults.set({ dropResponseRate: 1, match: '^(CreateSecret|AddSecretVersion)$' });
    const name = `projects/${PROJECT}/secrets/dropped`;
    await expectError(() => store.ensureSecret(PROJECT, 'dropped', { instance: 'acme' }), 'unavailable');
    assert.ok(emu.getSecret(name), 'the create was applied');
    await expectError(() => store.addVersion(name, PAYLOAD), 'unavailable');
    assert.equal(emu.requestCount('AddSecretVersion'), 1);
    emu.faults.reset();
    // Temporal's retry of the activity then finds the work done.
    assert.deepEqual(await store.ensureSecret(PROJECT, 'dropped', { instance: 'acme' }), { name, created: false });
    assert.deepEqual(
      (await store.listVersions(name)).map((v) => v.name),
      [`${name}/versions/1`],
    );
    assert.deepEqual(await store.access(`${name}/versions/latest`), { name: `${name}/versions/1`, data: PAYLOAD });
  });

  test('a slow service hits the deadline: unavailable, one request', async () => {
    const quick = new SecretStore({ emulatorHost: emu.address, timeoutMs: 200 });
    try {
      emu.faults.set({ latencyMs: 800 });
      const err = await expectError(() => quick.access(`${SECRET}/versions/latest`), 'unavailable');
      assert.match(err.message, /DEADLINE_EXCEEDED/);
      assert.equal(emu.requestCount('AccessSecretVersion'), 1);
    } finally {
      await quick.close();
    }
  });

  test('payloads the service rejects never show up in the error', async () => {
    const big = `${PAYLOAD}-${'x'.repeat(70 * 1024)}`;
    const err = await expectError(() => store.addVersion(SECRET, big), 'invalid');
    assert.match(
      err.message,
      /^Secret Manager AddSecretVersion projects\/acme-project\/secrets\/managed-smtp-send-key: INVALID_ARGUMENT: /,
    );
    for (const e of errors) {
      assert.ok(!e.message.includes(PAYLOAD), e.message);
      assert.ok(!e.message.includes('old-value') && !e.message.includes('doomed-value'), e.message);
    }
    assert.ok(errors.length >= 10);
  });

  test('snapshot is JSON and masks payloads', () => {
    const snap = JSON.stringify(emu.snapshot());
    assert.ok(!snap.includes(PAYLOAD));
    assert.ok(!snap.includes('old-value'));
    assert.match(snap, /sha256:[0-9a-f]{12}/);
    assert.match(snap, /"state":"DISABLED"/);
    // The in-process helper does show it.
    assert.equal(emu.getSecret(SECRET)?.versions[1].data, PAYLOAD);
  });
});

describe('the emulator itself, through the raw client', () => {
  let emu: SecretManagerEmulator;
  let client: ReturnType<typeof createSecretManagerClient>;
  before(async () => {
    emu = await SecretManagerEmulator.start({ projectNumbers: { 'numbered-project': '123456789012' } });
    client = createSecretManagerClient({ emulatorHost: emu.address });
  });
  after(async () => {
    await client.close();
    await emu.close();
  });

  test('create validates id and replication, refuses duplicates', async () => {
    const parent = 'projects/p1';
    assert.equal(
      await grpcCode(() =>
        client.createSecret({ parent, secretId: 'bad id!', secret: { replication: { automatic: {} } } }),
      ),
      3,
    );
    assert.equal(await grpcCode(() => client.createSecret({ parent, secretId: 'no-replication', secret: {} })), 3);
    assert.equal(
      await grpcCode(() =>
        client.createSecret({
          parent,
          secretId: 'bad-labels',
          secret: { replication: { automatic: {} }, labels: { Upper: 'x' } },
        }),
      ),
      3,
    );
    await client.createSecret({ parent, secretId: 'ok', secret: { replication: { automatic: {} } } });
    assert.equal(
      await grpcCode(() => client.createSecret({ parent, secretId: 'ok', secret: { replication: { automatic: {} } } })),
      6,
    );
    assert.equal(await grpcCode(() => client.getSecret({ name: 'projects/p1/secrets/missing' })), 5);
    assert.equal(
      await grpcCode(() => client.accessSecretVersion({ name: 'projects/p1/secrets/ok/versions/latest' })),
      5,
    );
  });

  test('update labels with a mask, list with filters and pages, delete with an etag', async () => {
    const name = 'projects/p2/secrets/labelled';
    await client.createSecret({
      parent: 'projects/p2',
      secretId: 'labelled',
      secret: { replication: { automatic: {} } },
    });
    await client.createSecret({ parent: 'projects/p2', secretId: 'other', secret: { replication: { automatic: {} } } });
    const [updated] = await client.updateSecret({
      secret: { name, labels: { instance: 'acme' }, annotations: { note: 'ignored' } },
      updateMask: { paths: ['labels'] },
    });
    assert.deepEqual(updated.labels, { instance: 'acme' });
    assert.deepEqual(updated.annotations, {});
    assert.equal(await grpcCode(() => client.updateSecret({ secret: { name }, updateMask: { paths: [] } })), 3);
    assert.equal(
      await grpcCode(() => client.updateSecret({ secret: { name }, updateMask: { paths: ['rotation'] } })),
      12,
    );

    const [byLabel] = await client.listSecrets({ parent: 'projects/p2', filter: 'labels.instance=acme' });
    assert.deepEqual(
      byLabel.map((s) => s.name),
      [name],
    );
    const [page1, next] = await client.listSecrets({ parent: 'projects/p2', pageSize: 1 }, { autoPaginate: false });
    assert.equal(page1.length, 1);
    assert.ok(next?.pageToken);

    for (let i = 0; i < 3; i++) {
      await client.addSecretVersion({ parent: name, payload: { data: Buffer.from(`v${i}`) } });
    }
    await client.disableSecretVersion({ name: `${name}/versions/2` });
    const [enabled] = await client.listSecretVersions({ parent: name, filter: 'state:ENABLED' });
    assert.deepEqual(
      enabled.map((v) => v.name),
      [`${name}/versions/3`, `${name}/versions/1`],
    );
    const [some] = await client.listSecretVersions({ parent: name, filter: 'state:(DISABLED OR DESTROYED)' });
    assert.deepEqual(
      some.map((v) => v.name),
      [`${name}/versions/2`],
    );
    assert.equal(await grpcCode(() => client.listSecretVersions({ parent: name, filter: 'state:BOGUS' })), 3);
    await client.enableSecretVersion({ name: `${name}/versions/2` });
    await client.destroySecretVersion({ name: `${name}/versions/2` });
    assert.equal(await grpcCode(() => client.enableSecretVersion({ name: `${name}/versions/2` })), 9);

    assert.equal(await grpcCode(() => client.deleteSecret({ name, etag: '"stale"' })), 9);
    await client.deleteSecret({ name, etag: updated.etag ?? '' });
    assert.equal(await grpcCode(() => client.deleteSecret({ name })), 5);
  });

  test('unimplemented methods answer UNIMPLEMENTED', async () => {
    assert.equal(await grpcCode(() => client.getIamPolicy({ resource: 'projects/p1/secrets/ok' })), 12);
  });

  test('projects listed with a number answer with the number, as the real service does', async () => {
    const [secret] = await client.createSecret({
      parent: 'projects/numbered-project',
      secretId: 's',
      secret: { replication: { automatic: {} } },
    });
    assert.equal(secret.name, 'projects/123456789012/secrets/s');
    const [version] = await client.addSecretVersion({
      parent: 'projects/numbered-project/secrets/s',
      payload: { data: Buffer.from('v') },
    });
    assert.equal(version.name, 'projects/123456789012/secrets/s/versions/1');
    const [res] = await client.accessSecretVersion({ name: 'projects/numbered-project/secrets/s/versions/latest' });
    assert.equal(res.name, 'projects/123456789012/secrets/s/versions/1');
    assert.ok(emu.getSecret('projects/numbered-project/secrets/s'));
  });
});

describe('client wiring', () => {
  test('the emulator path asks neither ADC nor the metadata server', async () => {
    let metadataHits = 0;
    const metadata = http.createServer((_req, res) => {
      metadataHits++;
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => metadata.listen(0, '127.0.0.1', r));
    // Everything ADC would look at points somewhere harmless: no key file, an empty HOME, and a "metadata
    // server" that counts its visitors. Without the stub auth client, GoogleAuth would end up pinging it.
    const vars = ['GCE_METADATA_HOST', 'GOOGLE_APPLICATION_CREDENTIALS', 'HOME', 'METADATA_SERVER_DETECTION'];
    const saved = Object.fromEntries(vars.map((k) => [k, process.env[k]]));
    const home = mkdtempSync(path.join(os.tmpdir(), 'sm-home-'));
    process.env.GCE_METADATA_HOST = `127.0.0.1:${(metadata.address() as AddressInfo).port}`;
    process.env.HOME = home;
    process.env.METADATA_SERVER_DETECTION = 'ping-only';
    delete process.env.GOOGLE_APPLICATION_CREDENTIALS;
    const emu = await SecretManagerEmulator.start();
    const store = SecretStore.fromEnvironment({ SECRET_MANAGER_EMULATOR_HOST: emu.address });
    try {
      emu.seed('projects/wired/secrets/token', 'token-value');
      assert.deepEqual(await store.access('projects/wired/secrets/token/versions/latest'), {
        name: 'projects/wired/secrets/token/versions/1',
        data: 'token-value',
      });
      assert.equal(metadataHits, 0);
    } finally {
      await store.close();
      await emu.close();
      metadata.close();
      rmSync(home, { recursive: true, force: true });
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  test('nobody listening is unavailable', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const store = new SecretStore({ emulatorHost: `127.0.0.1:${port}`, timeoutMs: 2000 });
    try {
      await expectVendorError(() => store.access('projects/p/secrets/s/versions/latest'), 'unavailable');
    } finally {
      await store.close();
    }
  });

  test('a malformed SECRET_MANAGER_EMULATOR_HOST is an invalid VendorError naming the variable', () => {
    assert.throws(
      () => SecretStore.fromEnvironment({ SECRET_MANAGER_EMULATOR_HOST: 'localhost' }),
      (err: unknown) =>
        err instanceof VendorError && err.kind === 'invalid' && /SECRET_MANAGER_EMULATOR_HOST/.test(err.message),
    );
  });
});
