/**
 * The SparkPost emulator's webhooks, as SparkPost behaves: the create posts a test batch and fails unless the target
 * answers 200; events are posted in JSON-array batches with X-MessageSystems-Batch-ID and basic auth, and a batch
 * that is not answered 2xx is retried with the same batch id; subaccount webhooks see only their own events.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SparkPostEmulator } from '../emulators/sparkpost';
import { WebhookReceiver } from '../emulators/webhook-receiver';
import { SparkPostClient } from '../vendors/sparkpost';

describe('emulated SparkPost webhooks', () => {
  let sp: SparkPostEmulator;
  let receiver: WebhookReceiver;
  let client: SparkPostClient;

  before(async () => {
    sp = await SparkPostEmulator.start({
      operatorKey: 'op-key-webhooks',
      webhooks: { batchMs: 20, retryDelaysMs: [50, 50] },
    });
    receiver = await WebhookReceiver.start();
    client = new SparkPostClient({ baseUrl: sp.url, apiKey: 'op-key-webhooks' });
  });
  after(async () => {
    await sp.close();
    await receiver.close();
  });

  const until = async (ok: () => boolean) => {
    for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(ok());
  };

  test('a create whose test batch is refused fails and stores nothing', async () => {
    receiver.failNext(503);
    await assert.rejects(
      client.createWebhook({ name: 'x', target: receiver.url(), events: [] }),
      /400 invalid data format\/type Error while validating the target URL: test batch answered 503/,
    );
    assert.equal(sp.webhooks.webhooks.length, 0);
    assert.deepEqual(receiver.received[0].body, [{ msys: {} }]);
  });

  test('batches carry the batch id and basic auth, and are retried with the same id until 200', async () => {
    receiver.reset();
    const { id } = await client.createWebhook({
      name: 'events',
      target: receiver.url(),
      events: ['bounce', 'spam_complaint'],
      basicAuth: { username: 'u', password: 'p-secret' },
    });
    assert.deepEqual(
      (await client.listWebhooks()).map((w) => w.id),
      [id],
    );
    const sub = (await client.createSubaccount('acme')).id;
    receiver.failNext(500, 500);
    sp.addEvents(sub, [
      { type: 'delivery', rcpt_to: 'a@x.example' },
      { type: 'bounce', rcpt_to: 'b@x.example', bounce_class: '10', reason: 'user unknown' },
      { type: 'spam_complaint', rcpt_to: 'c@x.example' },
    ]);
    await until(() => sp.webhooks.deliveries.length >= 5 && sp.webhooks.deliveries.at(-1)!.status === 200);
    const batches = receiver.received.slice(1);
    const ids = batches.map((r) => r.headers['x-messagesystems-batch-id']);
    assert.equal(new Set(ids).size, 1, 'the same batch id on every attempt');
    assert.equal(batches[0].headers.authorization, `Basic ${Buffer.from('u:p-secret').toString('base64')}`);
    const body = batches[2].body as Array<{ msys: { message_event: Record<string, string> } }>;
    assert.deepEqual(
      body.map((b) => [
        b.msys.message_event.type,
        b.msys.message_event.bounce_class,
        b.msys.message_event.subaccount_id,
      ]),
      [
        ['bounce', '10', String(sub)],
        ['spam_complaint', undefined, String(sub)],
      ],
      'only the subscribed types, SparkPost-shaped with string ids',
    );
    assert.deepEqual(
      sp.webhooks.deliveries.slice(-3).map((d) => [d.attempt, d.status]),
      [
        [1, 500],
        [2, 500],
        [3, 200],
      ],
    );
    await client.deleteWebhook(id);
    assert.deepEqual(await client.listWebhooks(), []);
  });
});
