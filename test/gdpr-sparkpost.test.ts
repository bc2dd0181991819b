/**
 * The SparkPost client against the emulator for what GDPR erasure, `smtpctl why` and `smtpctl suppression` need:
 * suppression lists scoped to a subaccount (entries SparkPost adds by itself, compliance entries that may not be
 * removed), message events filtered by recipient with bounce details, and RTBF requests that erase both, later.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SparkPostEmulator } from '../emulators/sparkpost/api';
import { VendorError } from '../lib/errors';
import { BOUNCE_CLASSES, SparkPostClient } from '../vendors/sparkpost';

const KEY = 'operator-key-gdpr-sparkpost';

describe('SparkPost suppression list and events', () => {
  let emu: SparkPostEmulator;
  let sp: SparkPostClient;
  let a: number;
  let b: number;

  before(async () => {
    emu = await SparkPostEmulator.start({ operatorKey: KEY });
    sp = new SparkPostClient({ baseUrl: emu.url, apiKey: KEY });
    a = (await sp.createSubaccount('acme')).id;
    b = (await sp.createSubaccount('other')).id;
  });
  after(() => emu.close());

  test('entries are scoped to the subaccount; hard bounces and complaints add entries by themselves', async () => {
    emu.addEvents(a, [
      { type: 'bounce', rcpt_to: 'gone@example.org', bounce_class: '10', reason: '550 5.1.1 user unknown' },
      { type: 'bounce', rcpt_to: 'full@example.org', bounce_class: '22', reason: '452 mailbox full' },
      { type: 'spam_complaint', rcpt_to: 'angry@example.org' },
    ]);
    emu.addSuppressions(b, [{ recipient: 'gone@example.org', source: 'Manually Added' }]);
    const gone = await sp.getSuppression(a, 'GONE@example.org');
    assert.deepEqual(
      gone.map((e) => [e.source, e.type, e.subaccountId]),
      [['Bounce Rule', 'transactional', a]],
    );
    assert.deepEqual(await sp.getSuppression(a, 'full@example.org'), [], 'a soft bounce is not suppressed');
    const list = await sp.searchSuppressions({ subaccountId: a, perPage: 1 });
    assert.deepEqual(list.map((e) => e.recipient).sort(), ['angry@example.org', 'gone@example.org']);
    const complaints = await sp.searchSuppressions({ subaccountId: a, sources: ['Spam Complaint'] });
    assert.deepEqual(
      complaints.map((e) => e.recipient),
      ['angry@example.org'],
    );
    assert.equal((await sp.searchSuppressions({ subaccountId: b })).length, 1);
  });

  test('delete is scoped and idempotent; a compliance entry is refused with 403 and no address in the error', async () => {
    emu.addSuppressions(a, [{ recipient: 'kept@example.org', source: 'Compliance' }]);
    assert.equal(await sp.deleteSuppression(a, 'gone@example.org'), true);
    assert.equal(await sp.deleteSuppression(a, 'gone@example.org'), false);
    assert.equal((await sp.getSuppression(b, 'gone@example.org')).length, 1, 'the other subaccount keeps its own');
    await assert.rejects(sp.deleteSuppression(a, 'kept@example.org'), (err: unknown) => {
      assert.ok(err instanceof VendorError);
      assert.equal(err.kind, 'forbidden');
      assert.ok(!err.message.includes('kept@'), err.message);
      return true;
    });
  });

  test('events filter by recipient and carry bounce class and reason; retention is 10 days', async () => {
    emu.addEvents(a, [
      { type: 'delivery', rcpt_to: 'old@example.org', timestamp: new Date(Date.now() - 11 * 86400_000).toISOString() },
    ]);
    const events = await sp.searchMessageEvents({
      subaccountId: a,
      recipients: ['gone@example.org', 'old@example.org'],
    });
    assert.equal(events.length, 1);
    assert.equal(events[0].bounceClass, '10');
    assert.equal(events[0].reason, '550 5.1.1 user unknown');
    assert.equal(events[0].subaccountId, a);
    assert.equal(BOUNCE_CLASSES[events[0].bounceClass ?? '']?.category, 'hard');
    assert.equal((await sp.searchMessageEvents({ subaccountId: b })).length, 0);
  });

  test('RTBF erases events and removable entries of that subaccount only, after the processing delay', async () => {
    emu.addSuppressions(b, [{ recipient: 'angry@example.org' }]);
    emu.privacyProcessing.delayMs = 60_000;
    await sp.createRtbfRequest(a, ['angry@example.org', 'kept@example.org', 'full@example.org']);
    assert.equal((await sp.getSuppression(a, 'angry@example.org')).length, 1, 'not yet processed');
    emu.processPrivacyRequests(Date.now() + 61_000);
    assert.deepEqual(await sp.getSuppression(a, 'angry@example.org'), []);
    assert.equal((await sp.getSuppression(a, 'kept@example.org')).length, 1, 'compliance entries stay');
    assert.equal((await sp.getSuppression(b, 'angry@example.org')).length, 1, 'other subaccount untouched');
    assert.equal((await sp.searchMessageEvents({ subaccountId: a, recipients: ['full@example.org'] })).length, 0);
    emu.privacyProcessing.delayMs = 0;
  });

  test('a recipient told to resist survives one RTBF request and goes with the next', async () => {
    emu.addEvents(a, [{ type: 'delivery', rcpt_to: 'stuck@example.org' }]);
    emu.resistRtbf(a, 'stuck@example.org', 1);
    await sp.createRtbfRequest(a, ['stuck@example.org']);
    assert.equal((await sp.searchMessageEvents({ subaccountId: a, recipients: ['stuck@example.org'] })).length, 1);
    await sp.createRtbfRequest(a, ['stuck@example.org']);
    assert.equal((await sp.searchMessageEvents({ subaccountId: a, recipients: ['stuck@example.org'] })).length, 0);
  });
});
