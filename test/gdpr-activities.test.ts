/**
 * The GDPR filing activity against in-memory Secret Manager and SparkPost fakes: what a retried attempt leaves in
 * the request secret when an earlier attempt was stopped halfway through replacing the list with keyed hashes.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createGdprActivities, type GdprSecretsApi, type GdprSparkPostApi } from '../activities/gdpr';
import { VendorError } from '../lib/errors';
import { writeGdprSecret } from '../lib/gdpr-secret';
import { readGdprSecretVersions } from '../lib/sealed';
import { gdprSecretContext, type GdprFilingResult } from '../contract/gdpr';
import type { SecretVersionInfo } from '../vendors/secret-manager';

const INSTANCE = 'gdpr-unit';
const PROJECT = 'gdpr-unit-project';

/** Secret Manager in memory; `failDestroys` makes that many destroyVersion calls fail with a 503 first. */
function fakeSecrets() {
  const secrets = new Map<string, Array<{ name: string; state: SecretVersionInfo['state']; data?: string }>>();
  const faults = { failDestroys: 0 };
  const api: GdprSecretsApi = {
    async ensureSecret(project, id) {
      const name = `projects/${project}/secrets/${id}`;
      const created = !secrets.has(name);
      if (created) secrets.set(name, []);
      return { name, created };
    },
    async addVersion(secretName, data) {
      const versions = secrets.get(secretName);
      if (!versions) throw new VendorError({ vendor: 'secret-manager', kind: 'not-found', message: 'no secret' });
      const name = `${secretName}/versions/${versions.length + 1}`;
      versions.push({ name, state: 'ENABLED', data });
      return name;
    },
    async access(versionName) {
      const v = [...secrets.values()].flat().find((x) => x.name === versionName);
      if (!v || v.state !== 'ENABLED') {
        throw new VendorError({ vendor: 'secret-manager', kind: 'not-found', message: 'no version' });
      }
      return { name: v.name, data: v.data! };
    },
    async listVersions(secretName) {
      return [...(secrets.get(secretName) ?? [])].reverse().map(({ name, state }) => ({ name, state }));
    },
    async destroyVersion(versionName) {
      if (faults.failDestroys > 0) {
        faults.failDestroys--;
        throw new VendorError({ vendor: 'secret-manager', kind: 'unavailable', status: 503, message: '503' });
      }
      const v = [...secrets.values()].flat().find((x) => x.name === versionName);
      if (v) {
        v.state = 'DESTROYED';
        delete v.data;
      }
    },
    async deleteSecret(secretName) {
      return secrets.delete(secretName);
    },
    async listSecrets() {
      return [...secrets.keys()];
    },
  };
  return { api, secrets, faults };
}

function fakeSparkPost(filed: string[][]): GdprSparkPostApi {
  return {
    async createRtbfRequest(_id, recipients) {
      filed.push([...recipients]);
    },
    async createOptOutRequest() {},
    async listMessageEventRecipients() {
      return [];
    },
    async searchMessageEvents() {
      return [];
    },
    async searchSuppressions() {
      return [];
    },
  };
}

describe('GDPR filing activity', () => {
  test('a retry after an attempt that failed while destroying the listed version still destroys it', async () => {
    const { api, secrets, faults } = fakeSecrets();
    const filed: string[][] = [];
    const acts = createGdprActivities({ sparkpost: fakeSparkPost(filed), secrets: api });
    const requestId = 'req-hash-retry';
    const list = ['first.q7z@example.org', 'second.q7z@example.org'];
    const secretName = await writeGdprSecret(api, {
      gcpProject: PROJECT,
      instance: INSTANCE,
      requestId,
      recipients: list,
    });
    const input = {
      instance: INSTANCE,
      subaccountId: 7,
      requestId,
      secretName,
      optOut: false,
      listedUntil: new Date().toISOString(),
    };

    // Attempt 1: filed, the hashes written, then Secret Manager fails the destroy of the version with the addresses.
    faults.failDestroys = 1;
    const first = new MockActivityEnvironment({ attempt: 1 });
    let details: unknown;
    first.on('heartbeat', (d: unknown) => (details = d));
    await assert.rejects(first.run(acts.fileGdprDeletion, input));
    assert.equal(filed.length, 1);

    // Attempt 2 (Temporal hands it the last heartbeat).
    const second = new MockActivityEnvironment({ attempt: 2, heartbeatDetails: details });
    const result = (await second.run(acts.fileGdprDeletion, input)) as GdprFilingResult;
    assert.equal(result.recipients, 2);
    assert.equal(result.batches, 1);

    // The list is hashed now: no enabled version of the secret may still hold the addresses.
    const live = secrets.get(secretName)!.filter((v) => v.state === 'ENABLED');
    for (const v of live) {
      const payload = readGdprSecretVersions([v.data!], gdprSecretContext(INSTANCE, requestId));
      assert.notEqual(payload?.stage, 'recipients', 'a version with the addresses is still enabled');
    }
    const payload = readGdprSecretVersions(
      live.map((v) => v.data!),
      gdprSecretContext(INSTANCE, requestId),
    );
    assert.equal(payload?.stage, 'hashes');
  });
});
