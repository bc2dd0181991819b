/**
 * What an instance's site configuration says is data from the instance: the customer's SMTP host and sender address
 * that inspectSiteConfig reports (and that enable quotes in the status when it leaves customer settings alone) are
 * bounded and free of control characters, like every other string from an instance. Fakes only: no server needed.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, type ActivityDeps, type SiteInspection } from '../activities';
import { parseUrlPatterns } from '../lib/allow-list';
import { MAX_INSTANCE_TEXT } from '../lib/sanitize';
import { ApplicationFailure } from '@temporalio/common';
import { readEmailSettings, restoreSettings } from '../lib/site-config';
import { assertWritable } from '../activities/site-access';
import type { CheckInput } from '../activities/operations';
import type { Finding } from '../lib/types';

const ESCAPES = '\x1b[2J\x1b]0;owned\x07\u202e';

function depsWith(config: string): ActivityDeps {
  return {
    sparkpost: {} as ActivityDeps['sparkpost'],
    secrets: {
      access: async (name: string) => ({ name, data: 'sgp_0123456789abcdef' }),
      accessIfExists: async () => null,
      getSecretLabels: async () => null,
    } as unknown as ActivityDeps['secrets'],
    sourcegraph: () => ({
      getSiteConfig: async () => ({ id: 1, contents: config, validationMessages: [] }),
      editSiteConfig: async () => ({ id: 1, changed: false }),
      sendTestEmail: async () => ({ ok: true, message: 'Sent test email' }),
    }),
    settings: {
      relayHost: 'smtp.eu.sparkpostmail.com',
      relayPort: 587,
      senderDomain: 'cloud.sourcegraph.com',
      testRecipient: 'test@example.com',
    },
    sourcegraphUrls: parseUrlPatterns('http://127.0.0.1:*'),
  };
}

describe('inspectSiteConfig', () => {
  test("the customer's SMTP host and sender come back bounded and without control characters", async () => {
    const config = JSON.stringify({
      'email.address': `${ESCAPES}${'a'.repeat(20_000)}@example.com`,
      'email.smtp': { host: `${ESCAPES}${'h'.repeat(30_000)}`, port: 25, authentication: 'none' },
    });
    const acts = createActivities(depsWith(config));
    const site = {
      sourcegraphUrl: 'http://127.0.0.1:1/acme',
      gcpProject: 'acme-project',
      adminTokenSecret: 'projects/acme-project/secrets/sourcegraph-admin-token/versions/latest',
    };
    const r = (await new MockActivityEnvironment().run(acts.inspectSiteConfig, site)) as SiteInspection;
    assert.equal(r.ownership, 'customer');
    // The refusal to replace them (rotation over settings the customer took over) quotes them the same way.
    let refusal = '';
    try {
      assertWritable(readEmailSettings(config), depsWith(config).settings, 'managed');
    } catch (err) {
      refusal = (err as Error).message;
    }
    assert.match(refusal, /customer's own SMTP settings/);
    for (const text of [r.smtpHost ?? '', r.address ?? '', refusal]) {
      assert.ok(text.length <= MAX_INSTANCE_TEXT, `${text.length} characters`);
      assert.ok(!/[\u0000-\u001f\u007f-\u009f\u202e]/.test(text), 'no control character'); // eslint-disable-line no-control-regex
    }
  });
});

describe('checkInstance', () => {
  test('the drifted values it quotes from the site configuration are bounded and without control characters', async () => {
    const config = JSON.stringify({
      'email.address': `${ESCAPES}${'a'.repeat(100_000)}@cloud.sourcegraph.com`,
      'email.smtp': {
        host: 'smtp.eu.sparkpostmail.com',
        port: `${ESCAPES}${'p'.repeat(1_000_000)}`,
        username: 'SMTP_Injection',
        password: 'REDACTED',
        authentication: { huge: `${ESCAPES}${'x'.repeat(1_000_000)}` },
      },
    });
    const acts = createActivities(depsWith(config));
    const input: CheckInput = {
      instance: 'acme',
      state: 'active',
      spec: {
        sourcegraphUrl: 'http://127.0.0.1:1/acme',
        gcpProject: 'acme-project',
        adminTokenSecret: 'projects/acme-project/secrets/sourcegraph-admin-token/versions/latest',
        force: false,
      },
      subaccountId: null,
      keyId: null,
    };
    const findings = (await new MockActivityEnvironment().run(acts.checkInstance, input)) as Finding[];
    const site = findings.find((f) => f.check === 'site-config');
    assert.ok(site && !site.ok, JSON.stringify(findings).slice(0, 500));
    assert.match(site.message, /email\.address is .*; port is .*; authentication is /);
    assert.ok(site.message.length <= 2_000, `${site.message.length} characters`);
    assert.ok(!/[\u0000-\u001f\u007f-\u009f\u202e]/.test(site.message), 'no control character'); // eslint-disable-line no-control-regex
  });
});

describe('previous email settings', () => {
  const site = {
    sourcegraphUrl: 'http://127.0.0.1:1/acme',
    gcpProject: 'acme-project',
    adminTokenSecret: 'projects/acme-project/secrets/sourcegraph-admin-token/versions/latest',
  };
  const configWith = (filler: number) =>
    JSON.stringify({
      'email.address': 'ops@acme.com',
      'email.senderName': 'Acme \u00e9\u202e',
      'email.smtp': { host: 'smtp.acme.com', port: 25, authentication: 'none', note: `\x1b${'n'.repeat(filler)}` },
      'other.key': true,
    });

  test('larger than 64 KiB are refused as unusable, non-retryably, with one clear line', async () => {
    const acts = createActivities(depsWith(configWith(3_000_000)));
    await assert.rejects(new MockActivityEnvironment().run(acts.inspectSiteConfig, site), (err: unknown) => {
      assert.ok(err instanceof ApplicationFailure, String(err));
      assert.equal(err.type, 'SiteConfigUnusableError');
      assert.equal(err.nonRetryable, true);
      assert.match(err.message, /email settings .* bytes .* 65536/);
      assert.ok(err.message.length < 400 && !err.message.includes('\n'), err.message);
      return true;
    });
  });

  test('within the bound are kept and restored exactly', async () => {
    const config = configWith(60_000);
    const acts = createActivities(depsWith(config));
    const r = (await new MockActivityEnvironment().run(acts.inspectSiteConfig, site)) as SiteInspection;
    assert.equal(r.ownership, 'customer');
    assert.deepEqual(r.previous, readEmailSettings(config));
    assert.deepEqual(JSON.parse(restoreSettings(config, r.previous)), JSON.parse(config));
  });
});
