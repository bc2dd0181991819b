/**
 * `npm run webhooks` reads its listening port from the environment: an empty variable means the default (as every
 * other setting treats it), and a value that is not a fixed port is a start-up problem naming the variable, never a
 * silently random port SparkPost cannot reach.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { webhookSettings } from '../worker/webhooks';

const base = {
  MANAGED_SMTP_WEBHOOKS_USER: 'sparkpost',
  MANAGED_SMTP_WEBHOOKS_PASSWORD: 'a-long-enough-password',
  SPARKPOST_API_KEY: 'operator-key',
};

test('MANAGED_SMTP_WEBHOOKS_PORT: empty is the default, and only a fixed port is accepted', () => {
  assert.equal(webhookSettings(base).settings?.port, 8090);
  assert.equal(webhookSettings({ ...base, MANAGED_SMTP_WEBHOOKS_PORT: '' }).settings?.port, 8090);
  assert.equal(webhookSettings({ ...base, MANAGED_SMTP_WEBHOOKS_PORT: ' 9000 ' }).settings?.port, 9000);
  for (const bad of ['0', ' ', '1e3', '0x1f90', '65536', '-1', '80.0', 'http']) {
    const r = webhookSettings({ ...base, MANAGED_SMTP_WEBHOOKS_PORT: bad });
    if (bad.trim() === '') {
      assert.equal(r.settings?.port, 8090, JSON.stringify(bad));
      continue;
    }
    assert.equal(r.settings, undefined, `${JSON.stringify(bad)} accepted as port ${r.settings?.port}`);
    assert.deepEqual(r.problems, ['MANAGED_SMTP_WEBHOOKS_PORT: a port number'], JSON.stringify(bad));
  }
});
