/**
 * The webhook receiver's metrics are labelled by instance and event type. The type comes from whoever posts a batch
 * (with the basic-auth credentials), so only SparkPost's known event types become labels: any other type is counted
 * as `other`, and the number of series stays fixed however many distinct types arrive. No server but the receiver.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WebhookService } from '../worker/webhook-service';

describe('webhook receiver metrics', () => {
  let service: WebhookService;
  before(async () => {
    service = await WebhookService.start({
      username: 'u',
      password: 'p-secret-123456',
      flushMs: 60_000,
      resolver: { instanceOf: async (id: number) => (id === 7 ? 'acme' : null) },
      signal: async () => {},
    });
  });
  after(async () => service?.close());

  test('unknown event types are counted under one fixed label', async () => {
    const event = (type: string, n: number) => ({
      msys: { message_event: { type, event_id: `e-${n}`, subaccount_id: '7', timestamp: '1700000000' } },
    });
    const batch = [
      event('delivery', 0),
      event('bounce', 1),
      ...Array.from({ length: 2000 }, (_, n) => event(`made-up-${n}-\x1b[2J${'t'.repeat(500)}`, n + 2)),
    ];
    const res = await fetch(`${service.origin}/`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        Authorization: `Basic ${Buffer.from('u:p-secret-123456').toString('base64')}`,
      },
      body: JSON.stringify(batch),
    });
    assert.equal(res.status, 200);
    const text = service.metricsText();
    const series = text.split('\n').filter((l) => l.startsWith('managed_smtp_webhook_events_total{'));
    assert.deepEqual(series.sort(), [
      'managed_smtp_webhook_events_total{instance="acme",type="bounce"} 1',
      'managed_smtp_webhook_events_total{instance="acme",type="delivery"} 1',
      'managed_smtp_webhook_events_total{instance="acme",type="other"} 2000',
    ]);
    assert.ok(!text.includes('\x1b'), 'no control character in the metrics');
  });
});
