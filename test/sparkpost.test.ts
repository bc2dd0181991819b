/**
 * SparkPostClient against the SparkPost emulator over real HTTP: every client method, the emulator's quirks
 * (scoping header, pagination from the origin, validation error shapes, no DELETE, keys shown once), error
 * mapping and fault knobs, and that no error message ever carries an API key.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { SparkPostEmulator } from '../emulators/sparkpost';
import { isVendorError, VendorError, type VendorErrorKind } from '../lib/errors';
import { SparkPostClient } from '../vendors/sparkpost';

const OPERATOR_KEY = 'op-5f1e3c0ffee0ddba11a5ec7e7000000000000001';

let emu: SparkPostEmulator;
let client: SparkPostClient;
/** Every VendorError seen, to check at the end that none leaks a key. */
const seen: VendorError[] = [];
/** Keys minted during the tests (they must not show up in error messages either). */
const minted: string[] = [OPERATOR_KEY];

/** Awaits `p`, expecting a VendorError of `kind`; returns it. */
async function expectVendorError(p: Promise<unknown>, kind: VendorErrorKind): Promise<VendorError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof VendorError, `expected a VendorError, got ${String(e)}`);
    seen.push(e);
    assert.equal(e.kind, kind, `kind of: ${e.message}`);
    assert.equal(e.vendor, 'sparkpost');
    return e;
  }
  assert.fail(`expected a ${kind} VendorError`);
}

/** A raw call to the emulator, for quirks the client hides. */
async function raw(
  method: string,
  path: string,
  opts: { key?: string; sub?: string; body?: unknown } = {},
): Promise<{ status: number; body: unknown }> {
  const headers: Record<string, string> = { Authorization: opts.key ?? OPERATOR_KEY };
  if (opts.sub !== undefined) headers['X-MSYS-SUBACCOUNT'] = opts.sub;
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path.startsWith('/__') ? emu.origin + path : emu.url + path, {
    method,
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

before(async () => {
  emu = await SparkPostEmulator.start({ operatorKey: OPERATOR_KEY });
  client = new SparkPostClient({ baseUrl: emu.url, apiKey: OPERATOR_KEY, timeoutMs: 2000 });
});

after(async () => {
  await emu.close();
});

describe('subaccounts', () => {
  test('create, get, update; creation is not idempotent and names are not unique', async () => {
    const a = await client.createSubaccount('dup-name');
    const b = await client.createSubaccount('dup-name');
    assert.notEqual(a.id, b.id);
    const s = await client.getSubaccount(a.id);
    assert.deepEqual(s, { id: a.id, name: 'dup-name', status: 'active', complianceStatus: 'active' });
    // setup_api_key:false means no key was created with it.
    assert.equal(emu.state.apiKeys.filter((k) => k.subaccount_id === a.id).length, 0);

    await client.updateSubaccount(a.id, { status: 'suspended', name: 'renamed' });
    assert.deepEqual(await client.getSubaccount(a.id), {
      id: a.id,
      name: 'renamed',
      status: 'suspended',
      complianceStatus: 'active',
    });
    await client.updateSubaccount(a.id, { status: 'active' });
    assert.equal((await client.getSubaccount(a.id)).status, 'active');
  });

  test('a terminated subaccount is read-only', async () => {
    const { id } = await client.createSubaccount('to-terminate');
    await client.updateSubaccount(id, { status: 'terminated' });
    const e = await expectVendorError(client.updateSubaccount(id, { status: 'active' }), 'invalid');
    assert.equal(e.status, 400);
    assert.equal((await client.getSubaccount(id)).status, 'terminated');
    // Writes scoped to it are refused too.
    await expectVendorError(client.createApiKey(id, 'send_key', ['smtp/inject']), 'forbidden');
  });

  test('unknown subaccount is not-found', async () => {
    const e = await expectVendorError(client.getSubaccount(999999), 'not-found');
    assert.equal(e.status, 404);
    assert.equal(e.code, '1600');
  });

  test('pagination across pages filters out substring false positives', async () => {
    const names = ['pager', 'pager-two', 'xpager', 'pager', 'other', 'pagerpager', 'pager'];
    const ids: number[] = [];
    for (const n of names) ids.push((await client.createSubaccount(n)).id);

    // The raw API: links.next is a path from the origin, absent on the last page.
    const first = (await raw('GET', '/subaccounts?name=pager&per_page=2')).body as {
      results: unknown[];
      total_count: number;
      links: { next?: string };
    };
    assert.equal(first.results.length, 2);
    assert.equal(first.total_count, 6);
    assert.match(first.links.next ?? '', /^\/api\/v1\/subaccounts\?cursor=[^&]+&per_page=2$/);

    const listed = await client.listSubaccounts({ name: 'pager', perPage: 2 });
    assert.equal(listed.length, 6, 'all three pages followed');
    assert.ok(!listed.some((s) => s.name === 'other'));

    const exact = await new SparkPostClient({ baseUrl: `${emu.url}/`, apiKey: OPERATOR_KEY }).findSubaccountsByName(
      'pager',
    );
    assert.deepEqual(
      exact.map((s) => s.id).sort((x, y) => x - y),
      [ids[0], ids[3], ids[6]],
    );
    assert.ok(exact.every((s) => s.name === 'pager'));
  });

  test('status filter and the unpaginated list', async () => {
    const { id } = await client.createSubaccount('suspended-one');
    await client.updateSubaccount(id, { status: 'suspended' });
    const suspended = await client.listSubaccounts({ status: 'suspended' });
    assert.ok(suspended.some((s) => s.id === id));
    assert.ok(suspended.every((s) => s.status === 'suspended'));
    // Without any pagination parameter SparkPost answers a plain list.
    const plain = (await raw('GET', '/subaccounts')).body as Record<string, unknown>;
    assert.deepEqual(Object.keys(plain), ['results']);
    assert.ok((plain.results as unknown[]).length >= 1);
  });

  test('emulator quirks: validation shape, no DELETE, trailing slash, default key setup', async () => {
    const missing = await raw('POST', '/subaccounts', { body: { setup_api_key: false } });
    assert.equal(missing.status, 400);
    assert.deepEqual(missing.body, {
      errors: [{ message: '`name` is a required field', param: 'name', value: null }],
    });
    // setup_api_key defaults to true: key_label becomes required.
    const noLabel = await raw('POST', '/subaccounts', { body: { name: 'k' } });
    assert.equal(noLabel.status, 400);
    assert.equal((noLabel.body as { errors: Array<{ param: string }> }).errors[0].param, 'key_label');
    const withKey = await raw('POST', '/subaccounts/', {
      body: { name: 'with-key', key_label: 'k', key_grants: ['smtp/inject'], unknown_field: 1 },
    });
    assert.equal(withKey.status, 200);
    const r = (withKey.body as { results: { subaccount_id: number; key: string; short_key: string } }).results;
    minted.push(r.key);
    assert.equal(r.short_key, r.key.slice(0, 4));
    const del = await raw('DELETE', `/subaccounts/${r.subaccount_id}`);
    assert.equal(del.status, 405);
    const e = await expectVendorError(client.createSubaccount('x'.repeat(65)), 'invalid');
    assert.match(e.message, /^SparkPost POST \/subaccounts: 400 .*\(param name\)$/);
  });
});

describe('api keys', () => {
  let sub: number;
  before(async () => {
    sub = (await client.createSubaccount('keys')).id;
  });

  test('valid_ips: minted with the limit, listed, changed in place; the relay refuses AUTH from elsewhere', async () => {
    const k = await client.createApiKey(sub, 'send_key', ['smtp/inject'], ['203.0.113.7']);
    minted.push(k.key);
    assert.deepEqual((await client.listApiKeys(sub)).find((x) => x.id === k.id)?.validIps, ['203.0.113.7']);
    assert.equal(emu.authenticateSmtpKey(k.key, '127.0.0.1'), null);
    assert.ok(emu.authenticateSmtpKey(k.key, '203.0.113.7'));
    await client.updateApiKeyValidIps(sub, k.id, ['127.0.0.0/8']);
    assert.deepEqual((await client.listApiKeys(sub)).find((x) => x.id === k.id)?.validIps, ['127.0.0.0/8']);
    assert.ok(emu.authenticateSmtpKey(k.key, '::ffff:127.0.0.1'));
    await assert.rejects(client.updateApiKeyValidIps(sub, k.id, ['not-an-ip']), (err) => isVendorError(err, 'invalid'));
    await client.deleteApiKey(sub, k.id);
  });

  test('create returns the key once; list shows only the short key; delete revokes', async () => {
    const k = await client.createApiKey(sub, 'send_key', ['smtp/inject']);
    minted.push(k.key);
    assert.match(k.key, /^[0-9a-f]{40}$/);
    assert.equal(k.shortKey, k.key.slice(0, 4));
    assert.equal(k.label, 'send_key');
    assert.ok(emu.state.apiKeys.some((x) => x.id === k.id && x.subaccount_id === sub));

    const list = await client.listApiKeys(sub);
    assert.deepEqual(list, [
      { id: k.id, label: 'send_key', shortKey: k.shortKey, grants: ['smtp/inject'], subaccountId: sub, validIps: [] },
    ]);
    const rawList = await raw('GET', '/api-keys', { sub: String(sub) });
    assert.ok(!JSON.stringify(rawList.body).includes(k.key), 'the full key is never listed');

    await client.deleteApiKey(sub, k.id);
    assert.deepEqual(await client.listApiKeys(sub), []);
    const e = await expectVendorError(client.deleteApiKey(sub, k.id), 'not-found');
    assert.equal(e.code, '1600');
  });

  test('X-MSYS-SUBACCOUNT scoping of the key list and of deletes', async () => {
    const k = await client.createApiKey(sub, 'scoped', ['smtp/inject']);
    minted.push(k.key);
    const all = (await raw('GET', '/api-keys')).body as { results: Array<{ id: string }> };
    assert.ok(
      all.results.some((x) => x.id === k.id),
      'no header: primary and all subaccounts',
    );
    const primary = (await raw('GET', '/api-keys', { sub: '0' })).body as { results: Array<{ id: string }> };
    assert.ok(!primary.results.some((x) => x.id === k.id), '0: primary only');
    // Without the header, a delete only looks at the primary's keys.
    assert.equal((await raw('DELETE', `/api-keys/${k.id}`)).status, 404);
    assert.equal((await raw('DELETE', `/api-keys/${k.id}`, { sub: String(sub) })).status, 204);
  });

  test('grants are checked against the subaccount list', async () => {
    const e = await expectVendorError(client.createApiKey(sub, 'bad', ['metrics/view']), 'invalid');
    assert.equal(e.status, 400);
  });
});

describe('data privacy', () => {
  let sub: number;
  before(async () => {
    sub = (await client.createSubaccount('privacy')).id;
  });

  test('rtbf and opt-out requests are scoped to the subaccount', async () => {
    await client.createRtbfRequest(sub, ['a@example.com', 'b@example.com']);
    await client.createOptOutRequest(sub, ['c@example.com']);
    const rtbf = emu.state.rtbfRequests.at(-1);
    assert.deepEqual(rtbf?.recipients, ['a@example.com', 'b@example.com']);
    assert.equal(rtbf?.subaccount_id, sub);
    assert.equal(rtbf?.include_subaccounts, false);
    assert.equal(emu.state.optOutRequests.at(-1)?.subaccount_id, sub);
  });

  test('more than 1000 recipients is refused locally', async () => {
    const before = emu.state.rtbfRequests.length;
    const many = Array.from({ length: 1001 }, (_, i) => `r${i}@example.com`);
    await expectVendorError(client.createRtbfRequest(sub, many), 'invalid');
    assert.equal(emu.state.rtbfRequests.length, before, 'nothing sent');
    const tooMany = await raw('POST', '/data-privacy/rtbf-request', { sub: String(sub), body: { recipients: many } });
    assert.deepEqual(tooMany.body, { errors: [{ message: 'Exceeded maximum number of recipients (1000)' }] });
  });

  test('an invalid address is a 400 whose message does not repeat the recipient', async () => {
    const e = await expectVendorError(client.createOptOutRequest(sub, ['ok@example.com', 'not_an_email']), 'invalid');
    assert.equal(e.status, 400);
    assert.match(e.message, /invalid email address/);
    assert.ok(!e.message.includes('not_an_email'));
  });
});

describe('metrics and events', () => {
  let sub: number;
  let other: number;
  before(async () => {
    sub = (await client.createSubaccount('metrics')).id;
    other = (await client.createSubaccount('metrics-other')).id;
    emu.addEvents(sub, [
      { type: 'injection', rcpt_to: 'u1@example.com' },
      { type: 'delivery', rcpt_to: 'u1@example.com' },
      { type: 'injection', rcpt_to: 'u2@example.com' },
      { type: 'bounce', rcpt_to: 'u2@example.com' },
      { type: 'delivery', rcpt_to: 'u3@example.com' },
      { type: 'delivery', rcpt_to: 'u4@example.com' },
      { type: 'delivery', rcpt_to: 'u5@example.com' },
      { type: 'delivery', rcpt_to: 'old@example.com', timestamp: new Date(Date.now() - 20 * 86400e3).toISOString() },
    ]);
    emu.addEvents(other, [{ type: 'delivery', rcpt_to: 'someone-else@example.com' }]);
  });

  test('deliverability of one subaccount, from the recorded events', async () => {
    const from = new Date(Date.now() - 3600e3).toISOString();
    const m = await client.getDeliverability({
      subaccountId: sub,
      from,
      metrics: ['count_accepted', 'count_delivered', 'count_bounce', 'count_hard_bounce', 'count_targeted'],
    });
    assert.deepEqual(m, {
      count_accepted: 4,
      count_delivered: 4,
      count_bounce: 1,
      count_hard_bounce: 1,
      count_targeted: 2,
    });
    const older = await client.getDeliverability({
      subaccountId: sub,
      from: new Date(Date.now() - 30 * 86400e3).toISOString(),
      metrics: ['count_delivered'],
    });
    assert.equal(older.count_delivered, 5);
  });

  test('one row per subaccount', async () => {
    const rows = await client.getDeliverabilityBySubaccount({
      from: new Date(Date.now() - 3600e3).toISOString(),
      metrics: ['count_delivered'],
      limit: 100,
    });
    assert.equal(rows.find((r) => r.subaccount_id === sub)?.count_delivered, 4);
    assert.equal(rows.find((r) => r.subaccount_id === other)?.count_delivered, 1);
  });

  test('event recipients over several pages, unique, only that subaccount, within retention', async () => {
    const page = (await raw('GET', `/events/message?subaccounts=${sub}&per_page=2`)).body as {
      results: Array<Record<string, unknown>>;
      links: { next?: string };
    };
    assert.equal(typeof page.results[0].subaccount_id, 'string', 'event values are strings');
    assert.match(page.links.next ?? '', /^\/api\/v1\/events\/message\?cursor=/);

    const rcpts = await client.listMessageEventRecipients({ subaccountId: sub, perPage: 2 });
    assert.deepEqual(rcpts.sort(), [
      'u1@example.com',
      'u2@example.com',
      'u3@example.com',
      'u4@example.com',
      'u5@example.com',
    ]);
    await expectVendorError(
      client.listMessageEventRecipients({ subaccountId: sub, perPage: 2, maxPages: 2 }),
      'invalid',
    );
  });

  test('a missing from is a 400 of the API', async () => {
    const r = await raw('GET', '/metrics/deliverability?metrics=count_delivered');
    assert.equal(r.status, 400);
  });
});

describe('sending domains and ip pools', () => {
  let sub: number;
  let other: number;
  before(async () => {
    sub = (await client.createSubaccount('domains')).id;
    other = (await client.createSubaccount('domains-other')).id;
  });

  test('restricted domains are refused with 7000', async () => {
    const e = await expectVendorError(client.createSendingDomain(sub, 'gmail.com'), 'invalid');
    assert.equal(e.code, '7000');
    await expectVendorError(client.createSendingDomain(sub, 'bounces.sparkpostmail.com'), 'invalid');
  });

  test('create, get, verify (controlled by the test), delete', async () => {
    const created = await client.createSendingDomain(sub, 'mail.acme.example');
    assert.equal(created.domain, 'mail.acme.example');
    assert.ok(created.dkim?.selector && created.dkim.public && created.dkim.headers);
    assert.equal(emu.state.sendingDomains.find((d) => d.domain === 'mail.acme.example')?.subaccount_id, sub);

    const got = await client.getSendingDomain(sub, 'mail.acme.example');
    assert.equal(got.status.ownership_verified, false);
    assert.equal(emu.canSendFrom(sub, 'mail.acme.example'), false);

    assert.deepEqual(await client.verifySendingDomain(sub, 'mail.acme.example'), {
      ownership_verified: false,
      dkim_status: 'invalid',
    });
    emu.markDomainVerifiable('mail.acme.example');
    assert.deepEqual(await client.verifySendingDomain(sub, 'mail.acme.example'), {
      ownership_verified: true,
      dkim_status: 'valid',
    });
    assert.equal((await client.getSendingDomain(sub, 'mail.acme.example')).status.dkim_status, 'valid');
    assert.equal(emu.canSendFrom(sub, 'mail.acme.example'), true);
    assert.equal(emu.canSendFrom(other, 'mail.acme.example'), false);

    // Another subaccount cannot take it (7004), and cannot see it.
    const inUse = await expectVendorError(client.createSendingDomain(other, 'mail.acme.example'), 'invalid');
    assert.equal(inUse.code, '7004');
    await expectVendorError(client.getSendingDomain(other, 'mail.acme.example'), 'not-found');

    await client.deleteSendingDomain(sub, 'mail.acme.example');
    await expectVendorError(client.getSendingDomain(sub, 'mail.acme.example'), 'not-found');
    await expectVendorError(client.deleteSendingDomain(sub, 'mail.acme.example'), 'not-found');
  });

  test('shared domain of the primary can be used by every subaccount', () => {
    assert.equal(emu.canSendFrom(sub, 'cloud.sourcegraph.com'), true);
    assert.equal(emu.canSendFrom(sub, 'CLOUD.sourcegraph.com'), true);
    assert.equal(emu.canSendFrom(sub, 'elsewhere.example'), false);
  });

  test('ip pools: create, list, assign and unassign', async () => {
    const { id } = await client.createIpPool('Marketing IP Pool');
    assert.equal(id, 'marketing_ip_pool');
    const pools = await client.listIpPools();
    assert.deepEqual(
      pools.map((p) => p.id),
      ['default', 'marketing_ip_pool'],
    );
    assert.equal(pools[1].name, 'Marketing IP Pool');
    await expectVendorError(client.createIpPool('Marketing IP Pool'), 'conflict');
    await client.updateSubaccount(sub, { ipPool: id });
    assert.equal((await client.getSubaccount(sub)).ipPool, id);
    await client.updateSubaccount(sub, { ipPool: '' });
    assert.equal((await client.getSubaccount(sub)).ipPool, undefined);
    const e = await expectVendorError(client.updateSubaccount(sub, { ipPool: 'nope' }), 'invalid');
    assert.match(e.message, /param ip_pool/);
  });
});

describe('error mapping', () => {
  test('401 for a bad key, with a clean message', async () => {
    const bad = new SparkPostClient({ baseUrl: emu.url, apiKey: 'not-a-key-0123456789' });
    minted.push('not-a-key-0123456789');
    const e = await expectVendorError(bad.createSubaccount('x'), 'auth');
    assert.equal(e.status, 401);
    assert.equal(e.message, 'SparkPost POST /subaccounts: 401 Unauthorized.');
    assert.equal(e.retryable, false);
  });

  test('403 for a subaccount key outside its grants, and when its subaccount is suspended', async () => {
    const { id } = await client.createSubaccount('sub-key');
    const k = await client.createApiKey(id, 'send_key', ['smtp/inject']);
    minted.push(k.key);
    const subClient = new SparkPostClient({ baseUrl: emu.url, apiKey: k.key });
    const e = await expectVendorError(subClient.getSubaccount(id), 'forbidden');
    assert.equal(e.status, 403);
    await expectVendorError(subClient.listApiKeys(id), 'forbidden');

    const ev = await client.createApiKey(id, 'events', ['message_events/view']);
    minted.push(ev.key);
    const evClient = new SparkPostClient({ baseUrl: emu.url, apiKey: ev.key });
    assert.deepEqual(await evClient.listMessageEventRecipients({ subaccountId: id }), []);
    emu.setSubaccountStatus(id, 'suspended');
    await expectVendorError(evClient.listMessageEventRecipients({ subaccountId: id }), 'forbidden');
    emu.setSubaccountStatus(id, 'active');
  });

  test('429 from the rate-limit knob (no Retry-After, as documented) and with a Retry-After', async () => {
    emu.faults.set({ rateLimitRate: 1, match: '^GET /api/v1/ip-pools' });
    try {
      const e = await expectVendorError(client.listIpPools(), 'rate-limited');
      assert.equal(e.status, 429);
      assert.equal(e.retryAfterMs, undefined);
      assert.equal(e.retryable, true);
    } finally {
      emu.faults.reset();
    }
    emu.queueResponse({
      status: 429,
      headers: { 'Content-Type': 'application/json', 'Retry-After': '3' },
      body: JSON.stringify({ errors: [{ message: 'Too many requests' }] }),
    });
    const e = await expectVendorError(client.listIpPools(), 'rate-limited');
    assert.equal(e.retryAfterMs, 3000);
  });

  test('5xx from the error knob is unavailable and not applied', async () => {
    emu.faults.set({ errorRate: 1, match: '^POST /api/v1/subaccounts$' });
    const before = emu.state.subaccounts.length;
    try {
      const e = await expectVendorError(client.createSubaccount('not-created'), 'unavailable');
      assert.equal(e.status, 503);
      assert.match(e.message, /Unable to contact authorization service/);
    } finally {
      emu.faults.reset();
    }
    assert.equal(emu.state.subaccounts.length, before);
  });

  test('a dropped response is unavailable, but the create happened (look it up by name)', async () => {
    emu.faults.set({ dropResponseRate: 1, match: '^POST /api/v1/subaccounts$' });
    try {
      await expectVendorError(client.createSubaccount('dropped-create'), 'unavailable');
    } finally {
      emu.faults.reset();
    }
    const found = await client.findSubaccountsByName('dropped-create');
    assert.equal(found.length, 1);
  });

  test('a slow response times out as unavailable', async () => {
    const quick = new SparkPostClient({ baseUrl: emu.url, apiKey: OPERATOR_KEY, timeoutMs: 100 });
    emu.faults.set({ latencyMs: 400 });
    try {
      const e = await expectVendorError(quick.listIpPools(), 'unavailable');
      assert.match(e.message, /timed out/);
    } finally {
      emu.faults.reset();
    }
  });

  test('a connection refused is unavailable', async () => {
    const dead = await SparkPostEmulator.start({ operatorKey: OPERATOR_KEY });
    const url = dead.url;
    await dead.close();
    await expectVendorError(new SparkPostClient({ baseUrl: url, apiKey: OPERATOR_KEY }).listIpPools(), 'unavailable');
  });

  test('HTML error pages: 502/503 keep their kind, others are malformed; truncated JSON is malformed', async () => {
    const html = '<html><body><h1>502 Bad Gateway</h1></body></html>';
    emu.queueResponse({ status: 502, body: html });
    const e502 = await expectVendorError(client.listIpPools(), 'unavailable');
    assert.equal(e502.status, 502);
    assert.ok(!e502.message.includes('<html>'));

    emu.queueResponse({ status: 404, body: '<html>not here</html>' });
    await expectVendorError(client.listIpPools(), 'malformed');

    emu.queueResponse({ status: 200, body: '<html>login page</html>' });
    await expectVendorError(client.listIpPools(), 'malformed');

    emu.queueResponse({
      status: 200,
      headers: { 'Content-Type': 'application/json' },
      body: '{"results":[{"id":"default","na',
    });
    await expectVendorError(client.listIpPools(), 'malformed');

    emu.queueResponse({ status: 200, headers: { 'Content-Type': 'application/json' }, body: '{"results":{"id":7}}' });
    await expectVendorError(client.createIpPool('typed'), 'malformed');
  });

  test('links.next to another origin is refused (the key would leak)', async () => {
    emu.queueResponse({
      status: 200,
      headers: { 'Content-Type': 'application/json' },
      match: '^GET /api/v1/subaccounts$',
      body: JSON.stringify({
        results: [],
        total_count: 1,
        links: { next: 'http://evil.example/api/v1/subaccounts?c=1' },
      }),
    });
    const e = await expectVendorError(client.listSubaccounts(), 'malformed');
    assert.match(e.message, /another origin/);
  });

  test('error bodies in every documented shape parse', async () => {
    const cases: Array<[number, unknown, VendorErrorKind, string | undefined, RegExp]> = [
      [
        422,
        { errors: [{ message: 'semantic', description: 'bad thing', code: 1400 }] },
        'invalid',
        '1400',
        /422 semantic bad thing/,
      ],
      [409, { errors: [{ message: 'resource conflict', code: '1602' }] }, 'conflict', '1602', /409 resource conflict/],
      [403, { errors: [{ message: 'Forbidden.' }] }, 'forbidden', undefined, /403 Forbidden\.$/],
      [
        400,
        { errors: [{ message: 'invalid email address', recipient: 'x@y.example' }] },
        'invalid',
        undefined,
        /400 invalid email address$/,
      ],
      [413, {}, 'invalid', undefined, /413 /],
      [500, { errors: [] }, 'unavailable', undefined, /500 /],
    ];
    for (const [status, body, kind, code, re] of cases) {
      emu.queueResponse({ status, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      const e = await expectVendorError(client.listIpPools(), kind);
      assert.equal(e.status, status);
      assert.equal(e.code, code);
      assert.match(e.message, re);
      assert.ok(!e.message.includes('x@y.example'));
    }
  });

  test('errors are only VendorError and never contain a key', () => {
    assert.ok(seen.length > 20);
    for (const e of seen) {
      assert.ok(isVendorError(e, undefined, 'sparkpost'));
      const text = `${e.message}\n${e.stack ?? ''}\n${JSON.stringify(e)}`;
      for (const k of minted) assert.ok(!text.includes(k), `leaked a key in: ${e.message}`);
      assert.ok(!/authorization\s*:|x-msys-subaccount/i.test(e.message), `a header in: ${e.message}`);
    }
  });
});

describe('admin endpoints', () => {
  test('state is masked; faults and drift can be set over HTTP without being faulted', async () => {
    const { id } = await client.createSubaccount('admin');
    const k = await client.createApiKey(id, 'send_key', ['smtp/inject']);
    minted.push(k.key);
    const state = (await fetch(`${emu.origin}/__emulator/state`).then((r) => r.text())) as string;
    assert.ok(!state.includes(k.key), 'full key masked');
    assert.ok(!state.includes(OPERATOR_KEY));
    assert.ok(state.includes(k.key.slice(0, 4)));

    let r = await fetch(`${emu.origin}/__emulator/faults`, {
      method: 'PUT',
      body: JSON.stringify({ errorRate: 1 }),
    });
    assert.equal(r.status, 200);
    await expectVendorError(client.listIpPools(), 'unavailable');
    assert.equal((await fetch(`${emu.origin}/__emulator/state`)).status, 200, 'admin routes are never faulted');
    r = await fetch(`${emu.origin}/__emulator/faults`, { method: 'DELETE' });
    assert.equal(r.status, 200);
    assert.equal(emu.faults.current().errorRate, 0);

    r = await fetch(`${emu.origin}/__emulator/subaccounts/${id}`, {
      method: 'PUT',
      body: JSON.stringify({ status: 'suspended', compliance_status: 'suspended' }),
    });
    assert.equal(r.status, 200);
    const s = await client.getSubaccount(id);
    assert.equal(s.status, 'suspended');
    assert.equal(s.complianceStatus, 'suspended');
    assert.equal(emu.authenticateSmtpKey(k.key), null);
  });
});
