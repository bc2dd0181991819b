/**
 * GDPR erasure on a real Temporal dev server against the emulators (SparkPost, Secret Manager), driven through
 * smtpctl with the INTERFACE.md environment only — no MANAGED_SMTP_CODEC_KEYS anywhere:
 *  - `gdpr-delete --recipient a --recipient b --wait` files exactly one scoped request with exactly those
 *    recipients, verifies after the (short) window, shreds the per-request secret, and no address appears, in any
 *    form, in any history or in the CLI's output;
 *  - `--recipients-file` (comments, blank lines, a bad line named by number);
 *  - the default 30-day wait, with a cancelled request still shredding its secret;
 *  - a recipient SparkPost keeps after the RTBF: re-filed once, then reported;
 *  - a failure on the 3rd of 5 batches resumes from the 3rd;
 *  - a worker killed between filing and shredding: another worker finishes, the secret is gone;
 *  - offboarding end to end, and the refused re-enable;
 *  - gdpr-status from visibility and by request id.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { temporal } from '@temporalio/proto';
import type { Worker } from '@temporalio/worker';
import { parseRecipientsFile } from '../client/commands/gdpr';
import type { DataPrivacyRequestRecord } from '../emulators/sparkpost/api';
import { CODEC_KEYS_ENV } from '../lib/codec';
import { VendorError } from '../lib/errors';
import { workflowIdFor } from '../lib/instance';
import { readGdprSecretVersions, recipientHash } from '../lib/sealed';
import type { InstanceStatus } from '../lib/types';
import { createManagedSmtpWorker } from '../worker/worker';
import { gdprSecretContext, gdprSecretId, gdprWorkflowId, type GdprReceipt } from '../workflows/gdpr';
import { offboardWorkflowId, type OffboardReceipt } from '../workflows/offboard';
import { uniqueTaskQueue, workflowBundle } from './helpers/temporal';
import { World, enableArgs, specFor, type CliRun } from './helpers/world';

const INSTANCE = 'gdpr-acme';
const LEAVER = 'gdpr-leaver';

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
    const core = b64.slice(shift === 0 ? 0 : 4, Math.floor((shift + bytes.length) / 3) * 4);
    out.push(core, core.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  return [...new Set(out.filter((n) => n.length >= 8))];
}

/** Every form of an address a leak could take: raw, JSON-quoted, and the base64 of both. */
function needles(address: string): string[] {
  const quoted = JSON.stringify(address);
  return [address, quoted, ...base64Needles(address), ...base64Needles(quoted)];
}

describe('recipients files', () => {
  test('one address a line, blank lines and # comments ignored, a bad line named by number only', () => {
    assert.deepEqual(parseRecipientsFile('# who asked\n\na@example.org\r\n  b@example.org  \n#c@example.org\n'), [
      'a@example.org',
      'b@example.org',
    ]);
    assert.throws(
      () => parseRecipientsFile('a@example.org\n\nnot-an-address-q7z\n'),
      (err: Error) => err.message === 'invalid --recipients-file: line 3 is not an email address',
    );
    assert.throws(() => parseRecipientsFile('# nothing\n\n'), /lists no recipient/);
  });
});

describe('GDPR erasure (no codec keys)', { timeout: 600_000 }, () => {
  let world: World;
  let taskQueue: string;
  let worker: Worker;
  let running: Promise<void>;
  let subaccountId: number;
  let leaverSubaccount: number;
  let leaverProject: string;
  const specs = new Map<string, ReturnType<typeof specFor>>();
  const saved = {
    keys: process.env[CODEC_KEYS_ENV],
    queue: process.env.MANAGED_SMTP_TASK_QUEUE,
    sm: process.env.SECRET_MANAGER_EMULATOR_HOST,
  };
  /** One-time fault: the createRtbfRequest call with this number (counted from 1) fails with a 503. */
  const tripwire = { calls: 0, failAt: 0, tripped: 0 };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gdpr-test-'));

  async function startWorker(): Promise<{ worker: Worker; running: Promise<void> }> {
    const deps = world.deps(taskQueue);
    const real = deps.sparkpost;
    deps.sparkpost = new Proxy(real, {
      get(obj, prop, receiver) {
        const value = Reflect.get(obj, prop, receiver) as unknown;
        if (typeof value !== 'function') return value;
        if (prop !== 'createRtbfRequest') return (value as (...a: unknown[]) => unknown).bind(obj);
        return async (id: number, recipients: string[]) => {
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
        };
      },
    });
    const w = await createManagedSmtpWorker({
      connection: world.env.nativeConnection,
      namespace: 'default',
      taskQueue,
      deps,
      workflowBundle: await workflowBundle(),
      shutdownGraceTime: '1s',
    });
    return { worker: w, running: w.run() };
  }

  before(async () => {
    world = await World.start();
    taskQueue = uniqueTaskQueue('gdpr');
    delete process.env[CODEC_KEYS_ENV];
    process.env.MANAGED_SMTP_TASK_QUEUE = taskQueue;
    process.env.SECRET_MANAGER_EMULATOR_HOST = world.stack.secretManager.address;
    ({ worker, running } = await startWorker());
    for (const name of [INSTANCE, LEAVER]) {
      const i = world.stack.addInstance(name);
      specs.set(name, specFor(i));
      const r = await world.cli(...enableArgs(name, specFor(i)), '--wait', '--json');
      assert.equal(r.code, 0, r.err);
      const s = JSON.parse(r.out) as InstanceStatus;
      if (name === INSTANCE) subaccountId = s.subaccountId!;
      else {
        leaverSubaccount = s.subaccountId!;
        leaverProject = i.gcpProject;
      }
    }
  });

  after(async () => {
    for (const [k, v] of [
      [CODEC_KEYS_ENV, saved.keys],
      ['MANAGED_SMTP_TASK_QUEUE', saved.queue],
      ['SECRET_MANAGER_EMULATOR_HOST', saved.sm],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    worker?.shutdown();
    await running?.catch(() => undefined);
    await world?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Raw bytes of a workflow's whole history, as the server stores and serves it. */
  async function historyBytes(workflowId: string): Promise<Buffer> {
    const history = await world.env.client.workflow.getHandle(workflowId).fetchHistory();
    return Buffer.from(temporal.api.history.v1.History.encode(history).finish());
  }

  /** Asserts that none of `list` appears, in any form, in the given histories or `text`. */
  async function assertNoAddressLeaked(list: string[], workflowIds: string[], text: string): Promise<void> {
    const histories: Array<[string, Buffer]> = [];
    for (const id of workflowIds) histories.push([id, await historyBytes(id)]);
    const output = Buffer.from(text);
    for (const address of list) {
      for (const needle of needles(address)) {
        const n = Buffer.from(needle);
        for (const [name, bytes] of histories) {
          assert.equal(bytes.includes(n), false, `an address (or its base64) is in the history of ${name}`);
        }
        assert.equal(output.includes(n), false, 'an address is in the CLI output');
      }
    }
  }

  function gdprSecretsOf(instance: string) {
    return world.stack.secretManager
      .listSecretNames()
      .map((n) => world.stack.secretManager.getSecret(n)!)
      .filter((s) => s.labels.purpose === 'gdpr' && s.labels.instance === instance);
  }

  /** Polls a request's receipt until `done` holds. */
  async function receiptWhen(
    instance: string,
    requestId: string,
    done: (r: GdprReceipt) => boolean,
    ms = 60_000,
  ): Promise<GdprReceipt> {
    const handle = world.env.client.workflow.getHandle(gdprWorkflowId(instance, requestId));
    const deadline = Date.now() + ms;
    for (;;) {
      const r = await handle.query<GdprReceipt>('gdprReceipt').catch(() => null);
      if (r && done(r)) return r;
      if (Date.now() > deadline) throw new Error(`receipt never got there: ${JSON.stringify(r)}`);
      await new Promise((res) => setTimeout(res, 200));
    }
  }

  const sizes = (reqs: DataPrivacyRequestRecord[]) => reqs.map((r) => r.recipients.length);

  function assertScoped(reqs: DataPrivacyRequestRecord[], sub: number) {
    for (const r of reqs) {
      assert.equal(r.subaccount_id, sub, 'scoped to the subaccount (X-MSYS-SUBACCOUNT)');
      assert.equal(r.include_subaccounts, false);
    }
  }

  function recipientsFile(list: string[]): string {
    const file = path.join(dir, `${randomBytes(4).toString('hex')}.txt`);
    writeFileSync(file, `# GDPR request\n\n${list.join('\n')}\n`);
    return file;
  }

  test('--recipient a --recipient b --wait: one scoped request with exactly a and b, verified, secret shredded, nothing leaked', async (t) => {
    const [a, b] = addresses(2, 'pair');
    const emu = world.stack.sparkpost;
    emu.addEvents(subaccountId, [
      { type: 'delivery', rcpt_to: a },
      { type: 'bounce', rcpt_to: b, bounce_class: '10', reason: '550 5.1.1 unknown' },
    ]);
    assert.equal((await world.cli('gdpr-status', INSTANCE, '--json')).code, 0);
    const before = emu.state.rtbfRequests.length;
    const r = await world.cli(
      'gdpr-delete',
      INSTANCE,
      '--recipient',
      a,
      '--recipient',
      b,
      '--verify-after',
      '2',
      '--wait',
      '--json',
    );
    assert.equal(r.code, 0, r.err);
    const receipt = JSON.parse(r.out) as GdprReceipt;
    const filed = emu.state.rtbfRequests.slice(before);
    assert.equal(filed.length, 1, 'exactly one request');
    assert.deepEqual(filed[0].recipients, [a, b]);
    assertScoped(filed, subaccountId);
    assert.equal(emu.state.optOutRequests.length, 0);

    assert.equal(receipt.state, 'complete');
    assert.equal(receipt.subaccountId, subaccountId);
    assert.equal(receipt.recipients, 2);
    assert.equal(receipt.batches, 1);
    assert.equal(receipt.found, 0);
    assert.equal(receipt.verifications.length, 1);
    assert.equal(receipt.verifications[0].refiled, 0);
    assert.ok(receipt.filedAt && receipt.verifiedAt && receipt.listDestroyedAt);
    assert.ok(Date.parse(receipt.verifiedAt) - Date.parse(receipt.filedAt) >= 2000, 'verified after the window');
    assert.ok(receipt.destroyedVersions >= 1);
    assert.deepEqual(gdprSecretsOf(INSTANCE), [], 'the per-request secret is gone');
    assert.equal(
      world.stack.secretManager.getSecret(`projects/x/secrets/${gdprSecretId(receipt.requestId)}`),
      undefined,
    );

    // The entity shows the latest receipt.
    const status = (await world.cli('status', INSTANCE, '--json')).out;
    const audit = (JSON.parse(status) as InstanceStatus).gdprAudit?.find((x) => x.requestId === receipt.requestId);
    assert.equal(audit?.listDestroyedAt, receipt.listDestroyedAt);
    assert.equal(audit?.found, 0);

    const shown = await world.cli('gdpr-status', INSTANCE, receipt.requestId);
    assert.equal(shown.code, 0, shown.err);
    assert.match(shown.out, /list destroyed at +\S+ \(\d+ versions\)/);
    t.diagnostic(`example receipt:\n${shown.out}`);
    await assertNoAddressLeaked(
      [a, b],
      [gdprWorkflowId(INSTANCE, receipt.requestId), workflowIdFor(INSTANCE)],
      r.out + r.err + shown.out + shown.err + status,
    );
  });

  test('the default window is 30 days; a request cancelled while waiting still shreds its secret', async () => {
    const list = addresses(3, 'long');
    const r = await world.cli('gdpr-delete', INSTANCE, '--recipients-file', recipientsFile(list), '--json');
    assert.equal(r.code, 0, r.err);
    const { requestId } = JSON.parse(r.out) as { requestId: string };
    const waiting = await receiptWhen(INSTANCE, requestId, (x) => x.state === 'waiting');
    const window = Date.parse(waiting.verifyDueAt!) - Date.parse(waiting.filedAt!);
    assert.ok(Math.abs(window - 30 * 86400_000) < 60_000, `verification due 30 days after filing (${window} ms)`);
    // While it waits, the secret holds keyed hashes only: the version with the addresses is destroyed.
    const [secret] = gdprSecretsOf(INSTANCE);
    assert.ok(secret, 'the secret exists while the request waits');
    assert.deepEqual(secret.labels, { 'managed-by': 'managed-smtp', instance: INSTANCE, purpose: 'gdpr' });
    const live = secret.versions.filter((v) => v.state === 'ENABLED');
    const payload = readGdprSecretVersions(
      live.map((v) => v.data!),
      gdprSecretContext(INSTANCE, requestId),
    );
    assert.equal(payload?.stage, 'hashes');
    if (payload?.stage !== 'hashes') return;
    assert.deepEqual(payload.hashes.sort(), list.map((a) => recipientHash(payload.hmacKey, a)).sort());
    for (const v of secret.versions) {
      if (v.state !== 'ENABLED') assert.equal(v.data, undefined, 'the version with the addresses is destroyed');
    }

    const handle = world.env.client.workflow.getHandle(gdprWorkflowId(INSTANCE, requestId));
    await handle.cancel();
    const final = await handle.result();
    assert.equal(final.state, 'failed');
    assert.ok(final.listDestroyedAt, 'the receipt says the list was destroyed');
    assert.deepEqual(gdprSecretsOf(INSTANCE), []);
  });

  test('a recipient still present after the window is re-filed once, then reported', async () => {
    const emu = world.stack.sparkpost;
    const [gone, stubborn, once] = addresses(3, 'stuck');
    emu.addEvents(subaccountId, [
      { type: 'delivery', rcpt_to: gone },
      { type: 'delivery', rcpt_to: stubborn },
      { type: 'delivery', rcpt_to: once },
    ]);
    emu.addSuppressions(subaccountId, [{ recipient: stubborn, source: 'Manually Added' }]);
    emu.resistRtbf(subaccountId, stubborn, 5); // never goes
    emu.resistRtbf(subaccountId, once, 1); // goes with the re-filing
    const before = emu.state.rtbfRequests.length;
    const r = await world.cli(
      'gdpr-delete',
      INSTANCE,
      '--recipients-file',
      recipientsFile([gone, stubborn, once]),
      '--verify-after',
      '2',
      '--wait',
      '--json',
    );
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /1 recipients were still found after re-filing once/);
    const receipt = (JSON.parse(r.out) as { status: GdprReceipt }).status;
    assert.equal(receipt.state, 'complete');
    assert.equal(receipt.verifications.length, 2);
    assert.deepEqual(
      receipt.verifications.map((v) => [v.found, v.refiled]),
      [
        [2, 2],
        [1, 0],
      ],
    );
    assert.equal(receipt.verifications[1].suppressions, 1);
    assert.equal(receipt.found, 1);
    const filed = emu.state.rtbfRequests.slice(before);
    assertScoped(filed, subaccountId);
    assert.deepEqual(
      filed.map((f) => [...f.recipients].sort()),
      [[gone, stubborn, once].sort(), [stubborn, once].sort()],
    );
    assert.deepEqual(gdprSecretsOf(INSTANCE), []);
    await assertNoAddressLeaked([gone, stubborn, once], [gdprWorkflowId(INSTANCE, receipt.requestId)], r.out + r.err);
  });

  test('a failure on the 3rd of 5 batches resumes from the 3rd', async () => {
    const list = addresses(4500, 'batch');
    const sp = world.stack.sparkpost.state;
    const before = sp.rtbfRequests.length;
    tripwire.failAt = tripwire.calls + 3;
    tripwire.tripped = 0;
    const r = await world.cli(
      'gdpr-delete',
      INSTANCE,
      '--recipients-file',
      recipientsFile(list),
      '--verify-after',
      '1',
      '--wait',
      '--json',
    );
    assert.equal(r.code, 0, r.err);
    const receipt = JSON.parse(r.out) as GdprReceipt;
    assert.equal(tripwire.tripped, 1, 'the fault fired on the 3rd batch');
    const filed = sp.rtbfRequests.slice(before);
    assert.deepEqual(sizes(filed), [1000, 1000, 1000, 1000, 500], 'batches 1 and 2 were not filed again');
    assert.deepEqual(
      filed.flatMap((f) => f.recipients),
      list,
    );
    assert.equal(receipt.batches, 5);
    assert.equal(receipt.resumedBatches, 2);
    const history = await world.env.client.workflow
      .getHandle(gdprWorkflowId(INSTANCE, receipt.requestId))
      .fetchHistory();
    const started = history.events?.find((e) => e.activityTaskStartedEventAttributes);
    assert.equal(started?.activityTaskStartedEventAttributes?.attempt, 2, 'the filing activity ran twice');
    await assertNoAddressLeaked(list.slice(0, 50), [gdprWorkflowId(INSTANCE, receipt.requestId)], r.out + r.err);
  });

  test('a worker killed between filing and shredding: another worker finishes and shreds', async () => {
    const list = addresses(2, 'killed');
    const r = await world.cli(
      'gdpr-delete',
      INSTANCE,
      '--recipients-file',
      recipientsFile(list),
      '--verify-after',
      '4',
      '--json',
    );
    assert.equal(r.code, 0, r.err);
    const { requestId } = JSON.parse(r.out) as { requestId: string };
    await receiptWhen(INSTANCE, requestId, (x) => x.filedAt !== null);
    worker.shutdown();
    await running;
    assert.equal(gdprSecretsOf(INSTANCE).length, 1, 'the secret (hashes only) waits for verification');
    ({ worker, running } = await startWorker());
    const final = await world.env.client.workflow
      .getHandle(gdprWorkflowId(INSTANCE, requestId))
      .result()
      .then((x) => x as GdprReceipt);
    assert.equal(final.state, 'complete');
    assert.equal(final.found, 0);
    assert.ok(final.listDestroyedAt);
    assert.deepEqual(gdprSecretsOf(INSTANCE), []);
  });

  test('gdpr-status lists the receipts of the instance from visibility, and bad input exits 2', async () => {
    let listed: { receipts: GdprReceipt[] } = { receipts: [] };
    for (let i = 0; i < 50 && listed.receipts.length < 5; i++) {
      const r = await world.cli('gdpr-status', INSTANCE, '--json');
      assert.equal(r.code, 0, r.err);
      listed = JSON.parse(r.out) as { receipts: GdprReceipt[] };
      await new Promise((res) => setTimeout(res, 200));
    }
    assert.ok(listed.receipts.length >= 5, 'every request of the instance');
    assert.ok(listed.receipts.every((x) => x.instance === INSTANCE));

    const secretish = 'not-an-address-q7z';
    const bad = recipientsFile(['a@example.org', secretish]);
    const cases: Array<{ args: string[]; expect: RegExp }> = [
      { args: ['gdpr-delete', INSTANCE], expect: /invalid --recipient: give --recipient EMAIL/ },
      { args: ['gdpr-delete', INSTANCE, '--recipients-file', bad], expect: /line 4 is not an email address/ },
      {
        args: ['gdpr-delete', INSTANCE, '--recipient', 'a@example.org', secretish],
        expect: /^smtpctl: invalid --recipient #2: not an email address$/m,
      },
      { args: ['gdpr-delete', INSTANCE, '--recipient', 'a@example.org', '--all-recipients'], expect: /not several/ },
      { args: ['gdpr-status', INSTANCE, 'no/such'], expect: /invalid <requestId>/ },
    ];
    for (const c of cases) {
      const r = await world.cli(...c.args, '--json');
      assert.equal(r.code, 2, `${c.args.join(' ')}: ${r.err}`);
      assert.match(r.err, c.expect);
      assert.equal(r.err.trim().split('\n').length, 1, 'one line');
      assert.ok(!(r.out + r.err).includes(secretish), 'the invalid value is not echoed');
    }
    const none = await world.cli('gdpr-delete', 'nosuch', '--all-recipients');
    assert.equal(none.code, 1);
    assert.equal(none.err, 'smtpctl: no managed SMTP workflow for instance nosuch\n');
  });

  test('offboarding: disabled, every known recipient erased, subaccount terminated, no key, no secret; enable refused', async () => {
    const emu = world.stack.sparkpost;
    const sent = addresses(1200, 'leaver');
    const suppressedOnly = addresses(30, 'supp');
    emu.addEvents(
      leaverSubaccount,
      sent.map((a) => ({ type: 'delivery', rcpt_to: a })),
    );
    emu.addSuppressions(
      leaverSubaccount,
      suppressedOnly.map((recipient) => ({
        recipient,
        source: 'List Unsubscribe',
        type: 'non_transactional' as const,
      })),
    );
    // A GDPR request still waiting for verification: offboarding deletes its secret too.
    const pending = await world.cli('gdpr-delete', LEAVER, '--recipient', sent[0], '--json');
    assert.equal(pending.code, 0, pending.err);
    const pendingId = (JSON.parse(pending.out) as { requestId: string }).requestId;
    await receiptWhen(LEAVER, pendingId, (x) => x.state === 'waiting');
    assert.equal(gdprSecretsOf(LEAVER).length, 1);

    // What the subaccount knows now: the pending request's recipient is already erased, the test email's is not.
    emu.processPrivacyRequests();
    const known = new Set([
      ...emu.state.events.filter((e) => e.subaccount_id === leaverSubaccount).map((e) => e.rcpt_to),
      ...emu.state.suppressions.filter((x) => x.subaccount_id === leaverSubaccount).map((x) => x.recipient),
    ]);
    assert.ok(known.size >= sent.length + suppressedOnly.length - 1);
    const before = emu.state.rtbfRequests.length;
    const r: CliRun = await world.cli('offboard', LEAVER, '--wait', '--json', '--timeout', '300');
    assert.equal(r.code, 0, r.err);
    const receipt = JSON.parse(r.out) as OffboardReceipt;
    assert.equal(receipt.state, 'complete');
    assert.ok(receipt.disabledAt && receipt.subaccountTerminatedAt && receipt.secretsDeletedAt);
    assert.equal(receipt.erasure?.state, 'complete');
    assert.equal(receipt.erasure?.recipients, known.size);
    assert.ok(receipt.erasure?.listDestroyedAt);
    assert.ok(receipt.secretsDeleted >= 1, 'the pending request secret');

    const filed = emu.state.rtbfRequests.slice(before);
    assertScoped(filed, leaverSubaccount);
    assert.equal(emu.state.events.filter((e) => e.subaccount_id === leaverSubaccount).length, 0, 'all erased');
    assert.deepEqual(
      new Set(filed.flatMap((f) => f.recipients)),
      known,
      'an RTBF request for every recipient the subaccount knew',
    );
    assert.equal(emu.state.subaccounts.find((s) => s.id === leaverSubaccount)?.status, 'terminated');
    assert.deepEqual(world.keysOf(leaverSubaccount), [], 'no live key');
    const left = world.stack.secretManager
      .listSecretNames()
      .map((n) => world.stack.secretManager.getSecret(n)!)
      .filter((s) => s.labels['managed-by'] === 'managed-smtp' && s.labels.instance === LEAVER);
    assert.deepEqual(left, [], 'no managed secret left in the project');
    assert.equal(world.sendKeySecret(leaverProject), undefined);

    const status = JSON.parse((await world.cli('status', LEAVER, '--json')).out) as InstanceStatus;
    assert.equal(status.state, 'disabled');
    assert.equal(status.offboarded?.requestId, receipt.requestId);

    const again = await world.cli(...enableArgs(LEAVER, specs.get(LEAVER)!), '--wait');
    assert.equal(again.code, 1, again.err);
    assert.match(again.err, /was offboarded at .* cannot be enabled again/);
    assert.equal(emu.state.subaccounts.filter((s) => s.name === LEAVER && s.status !== 'terminated').length, 0);
    await assertNoAddressLeaked(
      [...sent.slice(0, 20), ...suppressedOnly],
      [offboardWorkflowId(LEAVER), workflowIdFor(LEAVER), gdprWorkflowId(LEAVER, receipt.erasure!.requestId)],
      r.out + r.err,
    );
  });
});
