/**
 * Issue 13 end to end on a real Temporal dev server and the emulators: `why` for a delivered, a hard-bounced, a
 * suppressed and an unknown address and never another subaccount's data; `suppression list|remove` with the audit
 * record and the --force rule for spam complaints; the webhook receiver installed through SparkPost's create handshake,
 * batches delivered twice counted once, a complaint burst reaching the entity within a minute; and the protection
 * ladder going warning → quarantine → recovered, cleared by an operator, and undone by disable.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runBounceAlertOnce } from '../client/commands/deliverability';
import { explainRecipient, verdictOf, type WhySource } from '../client/commands/why';
import { WebhookReceiver } from '../emulators/webhook-receiver';
import { workflowIdFor } from '../lib/instance';
import { PROTECTION_KEY } from '../lib/search-attributes';
import type { InstanceStatus } from '../lib/types';
import { SparkPostClient } from '../vendors/sparkpost';
import { SubaccountListResolver, WebhookService } from '../worker/webhook-service';
import { protectionSignal } from '../contract/messages';
import type { ProtectionRequest } from '../contract/types';
import { World, specFor, type Lane } from './helpers/world';

const WEBHOOK_USER = 'sparkpost';
const WEBHOOK_PASSWORD = 'webhook-password-7c1e9a';
/** Addresses used below; none may appear in any output. */
const ADDR = {
  delivered: 'dora.delivered@customer.example',
  bounced: 'bob.bounced@customer.example',
  suppressed: 'sue.suppressed@customer.example',
  unknown: 'nobody.known@customer.example',
  foreign: 'fred.foreign@customer.example',
  complainer: 'carla.complains@customer.example',
  compliance: 'cody.compliance@customer.example',
};

async function waitUntil<T>(what: string, get: () => Promise<T | null | undefined | false>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('why, suppression, webhooks and reputation protection', { timeout: 300_000 }, () => {
  let world: World;
  let lane: Lane;
  let acme: number;
  let other: number;
  const outputs: string[] = [];

  async function cli(...argv: string[]) {
    const r = await world.cli(...argv);
    outputs.push(r.out, r.err);
    return r;
  }

  async function status(instance: string): Promise<InstanceStatus> {
    return lane.client.status(instance);
  }

  before(async () => {
    ({ world, lane } = await World.startWithLane());
    process.env.SPARKPOST_API_KEY = world.stack.operatorKey;
    process.env.SPARKPOST_API_URL = world.stack.sparkpost.url;
    process.env.MANAGED_SMTP_WEBHOOKS_USER = WEBHOOK_USER;
    process.env.MANAGED_SMTP_WEBHOOKS_PASSWORD = WEBHOOK_PASSWORD;
    for (const name of ['acme', 'other']) {
      const i = world.stack.addInstance(name);
      const h = await lane.client.enable(name, specFor(i));
      const s = await lane.client.waitFor(h, { timeoutMs: 60_000 });
      assert.equal(s.state, 'active', s.error ?? '');
    }
    acme = (await status('acme')).subaccountId!;
    other = (await status('other')).subaccountId!;
    const sp = world.stack.sparkpost;
    const ago = (h: number) => new Date(Date.now() - h * 3600_000).toISOString();
    sp.addEvents(acme, [
      { type: 'injection', rcpt_to: ADDR.delivered, timestamp: ago(3) },
      { type: 'delivery', rcpt_to: ADDR.delivered, timestamp: ago(3) },
      { type: 'injection', rcpt_to: ADDR.bounced, timestamp: ago(30) },
      {
        type: 'bounce',
        rcpt_to: ADDR.bounced,
        timestamp: ago(30),
        bounce_class: '10',
        reason: `550 5.1.1 <${ADDR.bounced}>: Recipient address rejected: User unknown`,
        raw_reason: `550 5.1.1 <${ADDR.bounced}>: Recipient address rejected: User unknown`,
        error_code: '550',
      },
      { type: 'delivery', rcpt_to: ADDR.foreign, timestamp: ago(2) },
    ]);
    // The same people at another instance: never shown for acme.
    sp.addEvents(other, [
      {
        type: 'bounce',
        rcpt_to: ADDR.delivered,
        bounce_class: '10',
        reason: 'other instance bounce',
        timestamp: ago(1),
      },
      { type: 'spam_complaint', rcpt_to: ADDR.unknown, timestamp: ago(1) },
    ]);
    sp.addSuppressions(acme, [
      { recipient: ADDR.suppressed, source: 'Manually Added', description: 'added by the customer' },
      { recipient: ADDR.complainer, type: 'non_transactional', source: 'Spam Complaint' },
      { recipient: ADDR.compliance, source: 'Compliance', description: 'SparkPost compliance' },
    ]);
  });

  after(async () => {
    for (const k of ['SPARKPOST_API_KEY', 'SPARKPOST_API_URL', 'MANAGED_SMTP_WEBHOOKS_USER']) delete process.env[k];
    delete process.env.MANAGED_SMTP_WEBHOOKS_PASSWORD;
    await world?.close();
  });

  test('why: delivered, hard-bounced (and auto-suppressed), suppressed, unknown', async () => {
    const run = async (addr: string) => {
      const r = await cli('why', 'acme', addr, '--json');
      assert.equal(r.code, 0, r.err);
      return JSON.parse(r.out);
    };
    const delivered = await run(ADDR.delivered);
    assert.match(delivered.verdict, /^delivered on \d{4}-\d{2}-\d{2}: the receiving server accepted it/);
    assert.deepEqual(
      delivered.events.map((e: { type: string }) => e.type),
      ['delivery', 'injection'],
      'only acme events: the bounce at the other instance is not shown',
    );
    assert.equal(delivered.recipient, 'd***@c***.example');

    const bounced = await run(ADDR.bounced);
    assert.match(
      bounced.verdict,
      /^hard bounce on \d{4}-\d{2}-\d{2}: invalid recipient: the mailbox does not exist \(class 10\): 550 5\.1\.1 <\[address\]>.*; suppressed since \d{4}-\d{2}-\d{2} \(transactional, Bounce Rule/,
    );
    assert.equal(bounced.suppression[0].source, 'Bounce Rule');

    const suppressed = await run(ADDR.suppressed);
    assert.match(suppressed.verdict, /^no message events .*; suppressed since .*Manually Added: added by the customer/);

    const unknown = await run(ADDR.unknown);
    assert.equal(unknown.events.length, 0, 'its complaint at the other instance is not acme data');
    assert.deepEqual(unknown.suppression, [], "the other instance's complaint suppression is not shown either");
    assert.match(unknown.verdict, /^no message events for this address in the last 10 days/);

    const human = await cli('why', 'acme', ADDR.bounced);
    assert.equal(human.code, 0);
    assert.match(human.out, /^acme → b\*\*\*@c\*\*\*\.example: hard bounce/);
  });

  test('why never shows another subaccount, even if SparkPost returned it', async () => {
    const source: WhySource = {
      recipientEvents: async () => [
        { type: 'delivery', timestamp: '2026-11-20T10:00:00Z', subaccountId: 101 },
        { type: 'bounce', timestamp: '2026-11-21T10:00:00Z', subaccountId: 999, bounceClass: '10' },
      ],
      suppressionOf: async () => [{ type: 'transactional', source: 'Spam Complaint', subaccountId: 999 }],
    };
    const r = await explainRecipient(source, 'acme', 101, ADDR.delivered);
    assert.equal(r.droppedForeign, 1);
    assert.deepEqual(r.suppression, []);
    assert.match(r.verdict, /^delivered on 2026-11-20/);
    assert.equal(
      verdictOf([], []),
      'no message events for this address in the last 10 days (SparkPost keeps 10 days of events)',
    );
  });

  test('why: bad input exits 2 without echoing it; no operator key exits 2; unknown instance exits 1', async () => {
    const bad = await cli('why', 'acme', 'not-an-address', '--json');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /invalid email: not an email address/);
    const key = process.env.SPARKPOST_API_KEY;
    delete process.env.SPARKPOST_API_KEY;
    try {
      const nokey = await cli('why', 'acme', ADDR.delivered);
      assert.equal(nokey.code, 2);
      assert.match(nokey.err, /SPARKPOST_API_KEY/);
    } finally {
      process.env.SPARKPOST_API_KEY = key;
    }
    const none = await cli('why', 'nosuch', ADDR.delivered);
    assert.equal(none.code, 1);
    assert.match(none.err, /no managed SMTP workflow for instance nosuch/);
  });

  test('suppression list: counts by source, addresses masked', async () => {
    const r = await cli('suppression', 'list', 'acme', '--json');
    assert.equal(r.code, 0, r.err);
    const list = JSON.parse(r.out);
    assert.equal(list.subaccountId, acme);
    assert.deepEqual(list.bySource, { 'Bounce Rule': 1, 'Manually Added': 1, 'Spam Complaint': 1, Compliance: 1 });
    assert.equal(list.total, 4);
    assert.ok(list.entries.every((e: { recipient: string }) => /^\w\*\*\*@/.test(e.recipient)));
    assert.ok(list.entries.every((e: { recipientHash: string }) => /^hmac-sha256:/.test(e.recipientHash)));
    const page2 = JSON.parse(
      (await cli('suppression', 'list', 'acme', '--per-page', '3', '--page', '2', '--json')).out,
    );
    assert.equal(page2.entries.length, 1);
    assert.equal(page2.pages, 2);
  });

  test('suppression remove: audited, spam complaints only with --force, compliance entries refused', async () => {
    const noReason = await cli('suppression', 'remove', 'acme', ADDR.suppressed);
    assert.equal(noReason.code, 2, 'a removal says why');

    const removed = await cli(
      'suppression',
      'remove',
      'acme',
      ADDR.suppressed,
      '--reason',
      'ticket 4711',
      '--actor',
      'alice',
      '--json',
    );
    assert.equal(removed.code, 0, removed.err);
    assert.equal(JSON.parse(removed.out).outcome, 'removed');
    assert.ok(!world.stack.sparkpost.state.suppressions.some((x) => x.recipient === ADDR.suppressed));

    const refused = await cli('suppression', 'remove', 'acme', ADDR.complainer, '--reason', 'customer insists');
    assert.equal(refused.code, 1);
    assert.match(refused.err, /spam complaint.*--force/);
    assert.ok(
      world.stack.sparkpost.state.suppressions.some((x) => x.recipient === ADDR.complainer),
      'still listed',
    );
    const forced = await cli(
      'suppression',
      'remove',
      'acme',
      ADDR.complainer,
      '--reason',
      'confirmed opt-in',
      '--force',
    );
    assert.equal(forced.code, 0, forced.err);
    assert.ok(!world.stack.sparkpost.state.suppressions.some((x) => x.recipient === ADDR.complainer));

    const compliance = await cli('suppression', 'remove', 'acme', ADDR.compliance, '--reason', 'try');
    assert.equal(compliance.code, 1);
    assert.match(compliance.err, /compliance/);

    const notListed = await cli('suppression', 'remove', 'acme', ADDR.unknown, '--reason', 'x');
    assert.equal(notListed.code, 1, "the other instance's entry is not acme's to remove");
    assert.ok(
      world.stack.sparkpost.state.suppressions.some((x) => x.subaccount_id === other && x.recipient === ADDR.unknown),
    );

    const audit = (await status('acme')).suppressionAudit ?? [];
    assert.deepEqual(
      audit.map((a) => [a.actor === 'alice' ? 'alice' : 'os-user', a.outcome, a.forced, a.source]),
      [
        ['alice', 'removed', false, 'Manually Added'],
        ['os-user', 'refused', false, 'Spam Complaint'],
        ['os-user', 'removed', true, 'Spam Complaint'],
        ['os-user', 'refused', false, 'Compliance'],
      ],
    );
    assert.equal(audit[0].reason, 'ticket 4711');
    assert.equal(audit[0].recipientMasked, 's***@c***.example');
    assert.match(audit[0].recipientHash, /^hmac-sha256:\S+:[0-9a-f]{32}$/);
    assert.ok(audit[0].finishedAt);
    const text = JSON.stringify(await status('acme'));
    for (const a of Object.values(ADDR)) assert.ok(!text.includes(a), 'no address in the status');
  });

  describe('the webhook receiver', () => {
    let service: WebhookService;
    const signalled: string[] = [];

    before(async () => {
      const sparkpost = new SparkPostClient({ baseUrl: world.stack.sparkpost.url, apiKey: world.stack.operatorKey });
      service = await WebhookService.start({
        username: WEBHOOK_USER,
        password: WEBHOOK_PASSWORD,
        flushMs: 1000,
        resolver: new SubaccountListResolver(sparkpost),
        signal: async (instance, request) => {
          signalled.push(instance);
          await world.env.client.workflow.getHandle(workflowIdFor(instance)).signal(protectionSignal, request);
        },
        log: (l) => outputs.push(l),
      });
    });
    after(async () => service?.close());

    test('install: bad credentials fail the create handshake; a good install is idempotent', async () => {
      process.env.MANAGED_SMTP_WEBHOOKS_PASSWORD = 'wrong-password-123456';
      const wrong = await cli('webhooks', 'install', '--url', `${service.origin}/sparkpost`);
      process.env.MANAGED_SMTP_WEBHOOKS_PASSWORD = WEBHOOK_PASSWORD;
      assert.equal(wrong.code, 1);
      assert.match(wrong.err, /webhook not installed: .*test batch answered 401/);
      assert.equal(world.stack.sparkpost.webhooks.webhooks.length, 0);

      const ok = await cli('webhooks', 'install', '--url', `${service.origin}/sparkpost`, '--json');
      assert.equal(ok.code, 0, ok.err);
      assert.equal(JSON.parse(ok.out).created, true);
      assert.equal(service.batches.get('result="test"'), 1, 'the test batch reached the receiver');
      const again = await cli('webhooks', 'install', '--url', `${service.origin}/sparkpost`, '--json');
      assert.equal(JSON.parse(again.out).created, false);
      assert.equal(world.stack.sparkpost.webhooks.webhooks.length, 1);
      assert.ok(!ok.out.includes(WEBHOOK_PASSWORD) && !ok.err.includes(WEBHOOK_PASSWORD));
    });

    test('health, metrics, auth and body limits', async () => {
      assert.equal((await fetch(`${service.origin}/healthz`)).status, 200);
      assert.equal((await fetch(`${service.origin}/`, { method: 'POST', body: '[]' })).status, 401);
      const auth = `Basic ${Buffer.from(`${WEBHOOK_USER}:${WEBHOOK_PASSWORD}`).toString('base64')}`;
      const notArray = await fetch(`${service.origin}/`, {
        method: 'POST',
        body: '{}',
        headers: { Authorization: auth },
      });
      assert.equal(notArray.status, 400);
      const huge = await fetch(`${service.origin}/`, {
        method: 'POST',
        body: `[${'"x",'.repeat(3_000_000)}"x"]`,
        headers: { Authorization: auth },
      }).catch(() => ({ status: 413 }));
      assert.equal(huge.status, 413);
      assert.match(
        await (await fetch(`${service.origin}/metrics`)).text(),
        /managed_smtp_webhook_auth_failures_total 2/,
      );
    });

    test('batches delivered twice are counted once; a complaint burst reaches the entity within a minute', async () => {
      const started = Date.now();
      const sp = world.stack.sparkpost;
      sp.addEvents(acme, [
        ...Array.from({ length: 20 }, (_, n) => ({ type: 'delivery', rcpt_to: `user${n}@customer.example` })),
        ...Array.from({ length: 6 }, (_, n) => ({ type: 'spam_complaint', rcpt_to: `user${n}@customer.example` })),
      ]);
      const counted = () => service.events.get('instance="acme",type="spam_complaint"');
      const sent = sp.webhooks.deliveries.length;
      // The receiver counts before its 200 reaches the emulator: wait until the emulator has recorded the delivery
      // too, or there is no delivered batch yet to deliver again.
      await waitUntil(
        'the batch',
        async () => counted() === 6 && sp.webhooks.deliveries.slice(sent).some((d) => d.status === 200),
      );
      // SparkPost did not see our 200 in time: the same batch again, same batch id.
      const deliveries = sp.webhooks.deliveries.length;
      await sp.webhooks.redeliverLast();
      assert.equal(sp.webhooks.deliveries.length, deliveries + 1);
      assert.equal(service.batches.get('result="duplicate"'), 1);
      // And the same events in a new batch (a retry after a restart would have a new id): event ids dedupe them.
      const auth = `Basic ${Buffer.from(`${WEBHOOK_USER}:${WEBHOOK_PASSWORD}`).toString('base64')}`;
      const events = sp.state.events.filter((e) => e.subaccount_id === acme && e.type === 'spam_complaint');
      const body = JSON.stringify(
        events.map((e) => ({
          msys: { message_event: { type: e.type, event_id: e.event_id, subaccount_id: String(acme) } },
        })),
      );
      const again = await fetch(`${service.origin}/`, {
        method: 'POST',
        body,
        headers: { Authorization: auth, 'X-MessageSystems-Batch-ID': 'another-batch' },
      });
      assert.equal(again.status, 200);
      assert.equal(counted(), 6, 'counted once');
      assert.equal(service.events.get('instance="acme",type="delivery"'), 20);

      const s = await waitUntil('the warning', async () => {
        const st = await status('acme');
        return st.protection?.level === 'warning' ? st : null;
      });
      assert.ok(Date.now() - started < 60_000, 'within a minute');
      assert.equal(s.protection!.transitions.at(-1)!.by, 'events');
      assert.match(
        s.protection!.transitions.at(-1)!.reason,
        /complaint burst .*6 complaints, 0 hard bounces of 20 sent/,
      );
      const d = await world.env.client.workflow.getHandle(workflowIdFor('acme')).describe();
      assert.equal(d.typedSearchAttributes.get(PROTECTION_KEY), 'warning');
      assert.ok(!signalled.includes('other'), 'quiet instances are not signalled');
      const metrics = await (await fetch(`${service.origin}/metrics`)).text();
      assert.match(metrics, /managed_smtp_webhook_duplicate_events_total 6/);
      for (const a of Object.values(ADDR)) assert.ok(!metrics.includes(a));
    });
  });

  test('the bounce-alert poll feeds the ladder a metrics observation (counts only)', async () => {
    const summary = await runBounceAlertOnce(lane.client, { thresholdRate: 0.99, minAccepted: 1000, windowHours: 24 });
    assert.deepEqual(summary.skipped, []);
    const s = await waitUntil('the metrics observation', async () => {
      const st = await status('other');
      return st.protection?.last?.source === 'metrics' ? st : null;
    });
    // other: the enable test email (accepted) and, seeded, one hard bounce and one complaint.
    assert.deepEqual(
      {
        hard: s.protection!.last!.hardBounces,
        complaints: s.protection!.last!.complaints,
        severity: s.protection!.last!.severity,
      },
      { hard: 1, complaints: 1, severity: 'quiet' },
    );
    assert.equal(s.protection!.level, 'ok', 'two messages say little: no alarm');
  });

  test('ladder: warning → quarantine → recovered; clear; disable in the middle undoes a quarantine', async () => {
    const slack = await WebhookReceiver.start();
    try {
      const cfg = await cli('protection', 'configure', 'acme', '--quiet', '3s', '--min-volume', '100', '--json');
      assert.equal(cfg.code, 0, cfg.err);
      const handle = world.env.client.workflow.getHandle(workflowIdFor('acme'));
      let n = 0;
      const observe = async (complaints: number, sent = 1000, from = new Date(Date.now() - 3600_000)) => {
        const at = new Date().toISOString();
        const req: ProtectionRequest = {
          requestId: `test-${++n}`,
          input: {
            kind: 'observe',
            observation: { source: 'metrics', at, from: from.toISOString(), sent, hardBounces: 0, complaints },
          },
          alertWebhook: { url: slack.url() },
        };
        await handle.signal(protectionSignal, req);
        return waitUntil(`request ${req.requestId}`, async () => {
          const st = await status('acme');
          return st.protection?.lastRequest?.requestId === req.requestId ? st : null;
        });
      };
      const pool = () => world.stack.sparkpost.state.subaccounts.find((s) => s.id === acme)!.ip_pool ?? '';

      // Already at warning from the complaint burst; 0.8 % at volume is severe: quarantine.
      let s = await observe(8);
      assert.equal(s.protection!.level, 'quarantined');
      assert.equal(pool(), 'quarantine');
      assert.ok(
        world.stack.sparkpost.state.ipPools.some((p) => p.id === 'quarantine'),
        'the pool was created',
      );
      s = await observe(9);
      assert.equal(s.protection!.level, 'quarantined', 'still bad: no new transition');
      s = await observe(0);
      assert.equal(s.protection!.level, 'quarantined', 'quiet, but not for 3 s yet');
      await new Promise((r) => setTimeout(r, 3100));
      s = await observe(0);
      assert.equal(s.protection!.level, 'ok');
      assert.equal(pool(), '', 'back on the shared pool');
      assert.deepEqual(
        slack.received.map((r) =>
          /(\w+) → (\w+)/
            .exec((r.body as { text: string }).text)
            ?.slice(1)
            .join('->'),
        ),
        ['warning->quarantined', 'quarantined->recovered'],
        'each transition alerted once',
      );

      // An operator clear.
      s = await observe(8);
      assert.equal(s.protection!.level, 'quarantined');
      const cleared = await cli('protection', 'clear', 'acme', '--reason', 'list cleaned', '--actor', 'bob', '--json');
      assert.equal(cleared.code, 0, cleared.err);
      s = await status('acme');
      assert.equal(s.protection!.level, 'ok');
      assert.equal(s.protection!.transitions.at(-1)!.by, 'operator bob');
      assert.equal(pool(), '');

      // Disable in the middle of a quarantine undoes it.
      s = await observe(8, 1000, new Date(Date.now() + 1000));
      assert.equal(s.protection!.level, 'quarantined');
      assert.equal(pool(), 'quarantine');
      const disabled = await cli('disable', 'acme', '--reason', 'offboarding test', '--wait', '--json');
      assert.equal(disabled.code, 0, disabled.err);
      s = await status('acme');
      assert.equal(s.state, 'disabled');
      assert.equal(s.protection!.level, 'ok');
      assert.equal(s.protection!.transitions.at(-1)!.by, 'disable');
      assert.equal(pool(), '', 'the quarantine pool was undone');
      const d = await world.env.client.workflow.getHandle(workflowIdFor('acme')).describe();
      assert.equal(d.typedSearchAttributes.get(PROTECTION_KEY), 'ok');
      s = await observe(50);
      assert.equal(s.protection!.level, 'ok', 'a disabled instance is not acted upon');
      const st = await cli('protection', 'status', 'acme');
      assert.match(st.out, /transition .* quarantined → ok by disable/);
    } finally {
      await slack.close();
    }
  });

  test('no address in any output of these commands', () => {
    const all = outputs.join('\n');
    for (const a of Object.values(ADDR)) assert.ok(!all.includes(a), `an address leaked into the output`);
  });
});
