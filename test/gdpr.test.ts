/**
 * GDPR deletion on a real Temporal dev server against the emulators, driven through `smtpctl gdpr-delete`: listed
 * recipients are sealed and filed in batches of 1000 scoped to the subaccount, `--all-recipients` lists them from
 * paginated message events, opt-out requests when asked, a retried activity resumes after the batches it filed, a
 * failure leaves a failed audit record, bad input exits 2 — and no address appears in any workflow history or in the
 * CLI's output.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { MockActivityEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../activities';
import { GDPR_SEALING_FAILED, createGdprActivities, type GdprSparkPostApi } from '../activities/gdpr';
import { ManagedSmtpClient } from '../client';
import { runCli, type Io } from '../client/smtpctl';
import { CODEC_KEYS_ENV, generateCodecKey, parseCodecKeys } from '../lib/codec';
import { VendorError } from '../lib/errors';
import { workflowIdFor } from '../lib/instance';
import { UnsealError, seal, unseal } from '../lib/sealed';
import type { DataPrivacyRequestRecord } from '../emulators/sparkpost/api';
import type { GdprAuditRecord } from '../lib/types';
import { SparkPostClient } from '../vendors/sparkpost';
import { gdprSealContext, gdprWorkflowId } from '../workflows/gdpr';
import { uniqueTaskQueue } from './helpers/temporal';
import { World, specFor } from './helpers/world';

const INSTANCE = 'gdpr-acme';
const EVENTS_PER_PAGE = 500;

/** `n` distinct addresses with a random tag, so a match in a history cannot be a coincidence. */
function addresses(n: number, label: string): string[] {
  const tag = randomBytes(4).toString('hex');
  return Array.from({ length: n }, (_, i) => `${label}.${i}.${tag}@example${i % 7}.org`);
}

/** Substrings that every base64 encoding of `text` contains, whatever its byte offset in the encoded buffer. */
function base64Needles(text: string): string[] {
  const bytes = Buffer.from(text, 'utf8');
  const out: string[] = [];
  for (let shift = 0; shift < 3; shift++) {
    const b64 = Buffer.concat([Buffer.alloc(shift), bytes]).toString('base64');
    // Skip the first group when it mixes in the bytes before the text, and the last partial group.
    out.push(b64.slice(shift === 0 ? 0 : 4, Math.floor((shift + bytes.length) / 3) * 4));
  }
  return out.filter((n) => n.length >= 8);
}

/** Every form of an address a leak could take: raw, JSON-quoted, and the base64 of both. */
function needles(address: string): string[] {
  const quoted = JSON.stringify(address);
  return [address, quoted, ...base64Needles(address), ...base64Needles(quoted)];
}

describe('sealed recipient lists', () => {
  const current = parseCodecKeys(generateCodecKey('new'), 'test');
  const old = parseCodecKeys(generateCodecKey('old'), 'test');

  test('open with the same context, with any loaded key (rotation), and with nothing else', () => {
    const sealed = seal(old, '["a@example.org"]', 'ctx-1');
    assert.equal(sealed.keyId, 'old');
    assert.ok(!Buffer.from(sealed.data, 'base64').toString('latin1').includes('example.org'));
    assert.equal(unseal([...current, ...old], sealed, 'ctx-1'), '["a@example.org"]');
    assert.throws(() => unseal(old, sealed, 'ctx-2'), UnsealError, 'bound to its context');
    assert.throws(() => unseal(current, sealed, 'ctx-1'), /key id "old", which is not loaded \(loaded: new\)/);
    const flipped = Buffer.from(sealed.data, 'base64');
    flipped[0] ^= 1;
    const altered = { ...sealed, data: flipped.toString('base64') };
    assert.throws(() => unseal(old, altered, 'ctx-1'), /failed authentication/);
  });

  test('a worker without keys fails the listed request permanently, naming the variable', async () => {
    const acts = createGdprActivities({ sparkpost: {} as GdprSparkPostApi, sealingKeys: null });
    const input = {
      instance: 'acme',
      subaccountId: 1,
      requestId: 'r1',
      sealedRecipients: seal(current, '["a@example.org"]', gdprSealContext('acme', 'r1')),
      allRecipients: false,
      optOut: false,
      listedUntil: new Date().toISOString(),
    };
    await assert.rejects(new MockActivityEnvironment().run(acts.fileGdprDeletion, input), (err: unknown) => {
      assert.ok(err instanceof ApplicationFailure);
      assert.equal(err.type, GDPR_SEALING_FAILED);
      assert.equal(err.nonRetryable, true);
      assert.match(err.message, /MANAGED_SMTP_CODEC_KEYS/);
      return true;
    });
  });
});

describe('GDPR deletion', { timeout: 180_000 }, () => {
  let world: World;
  let worker: Worker;
  let running: Promise<void>;
  let client: ManagedSmtpClient;
  let subaccountId: number;
  const savedEnv = { keys: process.env[CODEC_KEYS_ENV], queue: process.env.MANAGED_SMTP_TASK_QUEUE };
  /** One-time fault: the createRtbfRequest call with this number (counted from 1) fails with a 503. */
  const tripwire = { calls: 0, failAt: 0, tripped: 0 };

  before(async () => {
    world = await World.start();
    const taskQueue = uniqueTaskQueue('gdpr');
    const keyText = generateCodecKey('gdpr-test');
    process.env[CODEC_KEYS_ENV] = keyText;
    process.env.MANAGED_SMTP_TASK_QUEUE = taskQueue;

    const real = new SparkPostClient({ baseUrl: world.stack.sparkpost.url, apiKey: world.stack.operatorKey });
    const wrapped: GdprSparkPostApi = {
      createRtbfRequest: async (id, recipients) => {
        tripwire.calls++;
        if (tripwire.calls === tripwire.failAt) {
          tripwire.tripped++;
          throw new VendorError({
            vendor: 'sparkpost',
            kind: 'unavailable',
            status: 503,
            message: 'SparkPost POST /data-privacy/rtbf-request: 503 injected by the test',
          });
        }
        return real.createRtbfRequest(id, recipients);
      },
      createOptOutRequest: (id, recipients) => real.createOptOutRequest(id, recipients),
      listMessageEventRecipients: (q) => real.listMessageEventRecipients(q),
    };
    worker = await Worker.create({
      connection: world.env.nativeConnection,
      namespace: 'default',
      taskQueue,
      workflowsPath: require.resolve('./fixtures/gdpr-workflows'),
      activities: {
        ...createActivities(world.deps()),
        ...createGdprActivities({
          sparkpost: wrapped,
          sealingKeys: parseCodecKeys(keyText, 'test'),
          eventsPerPage: EVENTS_PER_PAGE,
          heartbeatEveryMs: 1000,
        }),
      },
      shutdownGraceTime: '1s',
    });
    running = worker.run();

    client = new ManagedSmtpClient(world.env.client, taskQueue);
    const i = world.stack.addInstance(INSTANCE);
    const handle = await client.enable(INSTANCE, specFor(i));
    const status = await client.waitFor(handle, { timeoutMs: 60_000, pollMs: 200 });
    assert.equal(status.state, 'active', status.error ?? '');
    subaccountId = status.subaccountId!;
  });

  after(async () => {
    if (savedEnv.keys === undefined) delete process.env[CODEC_KEYS_ENV];
    else process.env[CODEC_KEYS_ENV] = savedEnv.keys;
    if (savedEnv.queue === undefined) delete process.env.MANAGED_SMTP_TASK_QUEUE;
    else process.env.MANAGED_SMTP_TASK_QUEUE = savedEnv.queue;
    worker?.shutdown();
    await running?.catch(() => undefined);
    await world?.close();
  });

  async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const io: Io = { out: (t) => void (out += t), err: (t) => void (err += t) };
    const code = await runCli(args, io, async () => world.env.client);
    return { code, out, err };
  }

  /** Raw bytes of a workflow's whole history, as the server stores and serves it. */
  async function historyBytes(workflowId: string): Promise<Buffer> {
    const history = await world.env.client.workflow.getHandle(workflowId).fetchHistory();
    return Buffer.from(temporal.api.history.v1.History.encode(history).finish());
  }

  /** Asserts that none of `list` appears, in any form, in the GDPR workflow's and the entity's histories or `text`. */
  async function assertNoAddressLeaked(list: string[], requestId: string, text: string): Promise<void> {
    const histories = {
      gdpr: await historyBytes(gdprWorkflowId(INSTANCE, requestId)),
      entity: await historyBytes(workflowIdFor(INSTANCE)),
    };
    const output = Buffer.from(text);
    for (const address of list) {
      for (const needle of needles(address)) {
        const n = Buffer.from(needle);
        for (const [name, bytes] of Object.entries(histories)) {
          assert.equal(bytes.includes(n), false, `an address (or its base64) is in the ${name} workflow history`);
        }
        assert.equal(output.includes(n), false, 'an address is in the CLI output');
      }
    }
  }

  /** The entity's audit record of a request (signals are applied asynchronously: poll briefly). */
  async function auditRecord(requestId: string): Promise<GdprAuditRecord | undefined> {
    for (let i = 0; i < 50; i++) {
      const rec = (await client.status(INSTANCE)).gdprAudit?.find((r) => r.requestId === requestId);
      if (rec) return rec;
      await new Promise((r) => setTimeout(r, 100));
    }
    return undefined;
  }

  const sizes = (reqs: DataPrivacyRequestRecord[]) => reqs.map((r) => r.recipients.length);

  /** Asserts every request is scoped to the instance's subaccount only. */
  function assertScoped(reqs: DataPrivacyRequestRecord[]) {
    for (const r of reqs) {
      assert.equal(r.subaccount_id, subaccountId, 'scoped to the subaccount (X-MSYS-SUBACCOUNT)');
      assert.equal(r.include_subaccounts, false);
    }
  }

  test('2,500 listed recipients: three scoped RTBF requests, sealed on the way, audit record on the entity', async () => {
    const list = addresses(2500, 'listed');
    const sp = world.stack.sparkpost.state;
    const rtbfBefore = sp.rtbfRequests.length;
    const optOutBefore = sp.optOutRequests.length;

    const args = ['gdpr-delete', INSTANCE, '--wait', '--json'];
    for (const a of list) args.push('--recipient', a);
    const r = await cli(...args);
    assert.equal(r.code, 0, r.err);
    const record = JSON.parse(r.out) as GdprAuditRecord & { workflowId: string };
    assert.equal(record.outcome, 'filed');
    assert.equal(record.scope, 'listed');
    assert.equal(record.recipients, 2500);
    assert.equal(record.batches, 3);
    assert.equal(record.optOut, false);

    const filed = sp.rtbfRequests.slice(rtbfBefore);
    assert.deepEqual(sizes(filed), [1000, 1000, 500]);
    assertScoped(filed);
    assert.deepEqual(
      filed.flatMap((f) => f.recipients),
      list,
      'every listed recipient, once, in order',
    );
    assert.equal(sp.optOutRequests.length, optOutBefore, 'no opt-out without --opt-out');

    const audit = await auditRecord(record.requestId);
    assert.ok(audit, 'the entity status shows the audit record');
    assert.deepEqual(
      { scope: audit.scope, recipients: audit.recipients, batches: audit.batches, outcome: audit.outcome },
      { scope: 'listed', recipients: 2500, batches: 3, outcome: 'filed' },
    );
    await assertNoAddressLeaked(list, record.requestId, r.out + r.err);
  });

  test('--all-recipients --opt-out lists the subaccount recipients over every events page and files both kinds', async () => {
    const mine = addresses(1150, 'evt');
    const others = addresses(40, 'other');
    const expired = addresses(5, 'old');
    const emu = world.stack.sparkpost;
    // Two events per recipient: the listing must de-duplicate across pages.
    emu.addEvents(
      subaccountId,
      mine.flatMap((a) => [
        { type: 'injection', rcpt_to: a },
        { type: 'delivery', rcpt_to: a },
      ]),
    );
    emu.addEvents(
      subaccountId + 1000,
      others.map((a) => ({ type: 'delivery', rcpt_to: a })),
    );
    const elevenDaysAgo = new Date(Date.now() - 11 * 24 * 3600 * 1000).toISOString();
    emu.addEvents(
      subaccountId,
      expired.map((a) => ({ type: 'delivery', rcpt_to: a, timestamp: elevenDaysAgo })),
    );
    const horizon = Date.now() - 10 * 24 * 3600 * 1000;
    const expected = [
      ...new Set(
        emu.state.events
          .filter((e) => e.subaccount_id === subaccountId && Date.parse(e.timestamp) >= horizon)
          .map((e) => e.rcpt_to),
      ),
    ].sort();
    const eventsOfSubaccount = emu.state.events.filter((e) => e.subaccount_id === subaccountId).length;
    assert.ok(eventsOfSubaccount > 4 * EVENTS_PER_PAGE, 'the listing needs several pages');
    assert.ok(expected.length > 1000 && expected.length <= 2000, 'two batches');

    const rtbfBefore = emu.state.rtbfRequests.length;
    const optOutBefore = emu.state.optOutRequests.length;
    const r = await cli('gdpr-delete', INSTANCE, '--all-recipients', '--opt-out', '--wait', '--json');
    assert.equal(r.code, 0, r.err);
    const record = JSON.parse(r.out) as GdprAuditRecord;
    assert.deepEqual(
      { scope: record.scope, recipients: record.recipients, batches: record.batches, optOut: record.optOut },
      { scope: 'all-recipients', recipients: expected.length, batches: 2, optOut: true },
    );
    assert.equal(record.outcome, 'filed');

    const rtbf = emu.state.rtbfRequests.slice(rtbfBefore);
    const optOut = emu.state.optOutRequests.slice(optOutBefore);
    assert.deepEqual(sizes(rtbf), [1000, expected.length - 1000]);
    assert.deepEqual(sizes(optOut), [1000, expected.length - 1000]);
    assertScoped([...rtbf, ...optOut]);
    assert.deepEqual(rtbf.flatMap((f) => f.recipients).sort(), expected, 'exactly the recipients of the last 10 days');
    assert.deepEqual(optOut.flatMap((f) => f.recipients).sort(), expected);
    for (const a of [...others, ...expired]) {
      assert.ok(!expected.includes(a));
    }

    const audit = await auditRecord(record.requestId);
    assert.equal(audit?.scope, 'all-recipients');
    assert.equal(audit?.recipients, expected.length);
    await assertNoAddressLeaked([...mine, ...expired], record.requestId, r.out + r.err);
  });

  test('an activity retried after a failure mid-batches does not refile the batches it had filed', async () => {
    const list = addresses(2500, 'retry');
    const sp = world.stack.sparkpost.state;
    const before = sp.rtbfRequests.length;
    // The third RTBF request of this deletion fails once, after batches 1 and 2 were filed.
    tripwire.failAt = tripwire.calls + 3;
    tripwire.tripped = 0;

    const args = ['gdpr-delete', INSTANCE, '--wait', '--json'];
    for (const a of list) args.push('--recipient', a);
    const r = await cli(...args);
    assert.equal(r.code, 0, r.err);
    const record = JSON.parse(r.out) as GdprAuditRecord;
    assert.equal(record.outcome, 'filed');
    assert.equal(tripwire.tripped, 1, 'the fault fired');

    const filed = sp.rtbfRequests.slice(before);
    assert.deepEqual(sizes(filed), [1000, 1000, 500], 'batches 1 and 2 were not filed again');
    assert.deepEqual(
      filed.flatMap((f) => f.recipients),
      list,
    );

    const history = await world.env.client.workflow
      .getHandle(gdprWorkflowId(INSTANCE, record.requestId))
      .fetchHistory();
    const started = history.events?.find((e) => e.activityTaskStartedEventAttributes);
    assert.equal(started?.activityTaskStartedEventAttributes?.attempt, 2, 'the activity ran twice');
    await assertNoAddressLeaked(list, record.requestId, r.out + r.err);
  });

  test('a permanent SparkPost error: exit 1, a failed audit record, no address in the error', async () => {
    const list = addresses(3, 'fail');
    // SparkPost's own 400 names the offending recipient: it must not travel further.
    world.stack.sparkpost.queueResponse({
      status: 400,
      body: JSON.stringify({ errors: [{ message: 'invalid email address', recipient: list[1] }] }),
      headers: { 'Content-Type': 'application/json' },
      match: '^POST /api/v1/data-privacy/rtbf-request$',
    });
    const args = ['gdpr-delete', INSTANCE, '--wait', '--json'];
    for (const a of list) args.push('--recipient', a);
    const r = await cli(...args);
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /GDPR deletion for gdpr-acme failed: .*invalid email address/);
    const printed = JSON.parse(r.out) as { error: string; status: GdprAuditRecord };
    assert.equal(printed.status.outcome, 'failed');

    const audit = await auditRecord(printed.status.requestId);
    assert.equal(audit?.outcome, 'failed');
    assert.equal(audit?.recipients, 3);
    assert.equal(audit?.batches, 0);
    assert.match(audit?.error ?? '', /invalid email address/);
    await assertNoAddressLeaked(list, printed.status.requestId, r.out + r.err + JSON.stringify(audit));
  });

  test('bad input exits 2 with one line naming the argument, never echoing a value', async () => {
    const secretish = 'not-an-address-q7z';
    const cases: Array<{ args: string[]; expect: RegExp }> = [
      { args: ['gdpr-delete', INSTANCE], expect: /invalid --recipient: give --recipient EMAIL/ },
      {
        args: ['gdpr-delete', INSTANCE, '--recipient', 'a@example.org', '--all-recipients'],
        expect: /not both/,
      },
      {
        args: ['gdpr-delete', INSTANCE, '--recipient', 'a@example.org', secretish, 'b@example.org', `${secretish}2`],
        expect: /^smtpctl: invalid --recipient #2: not an email address \(2 of 4 are invalid\)$/m,
      },
      { args: ['gdpr-delete', 'Not_An_Instance', '--all-recipients'], expect: /invalid instance/ },
      { args: ['gdpr-delete', INSTANCE, '--all-recipients', '--timeout', 'soon'], expect: /invalid --timeout/ },
    ];
    for (const c of cases) {
      const r = await cli(...c.args, '--json');
      assert.equal(r.code, 2, `${c.args.join(' ')}: ${r.err}`);
      assert.match(r.err, c.expect);
      assert.equal(r.err.trim().split('\n').length, 1, 'one line');
      assert.ok(!(r.out + r.err).includes(secretish), 'the invalid value is not echoed');
      assert.doesNotThrow(() => JSON.parse(r.out), '--json prints one JSON document');
    }

    const saved = process.env[CODEC_KEYS_ENV];
    delete process.env[CODEC_KEYS_ENV];
    try {
      const r = await cli('gdpr-delete', INSTANCE, '--recipient', 'a@example.org');
      assert.equal(r.code, 2);
      assert.equal(
        r.err,
        `smtpctl: ${CODEC_KEYS_ENV} is required for --recipient, so recipients never enter workflow history in plain text\n`,
      );
      assert.ok(!r.err.includes('a@example.org'));
    } finally {
      process.env[CODEC_KEYS_ENV] = saved;
    }

    const none = await cli('gdpr-delete', 'nosuch', '--all-recipients');
    assert.equal(none.code, 1);
    assert.equal(none.err, 'smtpctl: no managed SMTP workflow for instance nosuch\n');
  });
});
