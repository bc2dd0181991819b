/**
 * Addresses are personal data: an address SparkPost accepts may hold any non-space character before its `@` (quotes,
 * parentheses, angle brackets), and a scrubber that stopped at one of them left the part before it in the error that
 * reaches history, logs and CLI output. Every vendor text is scrubbed by token, whole.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { replaceAddresses, scrubAddresses } from '../lib/recipients';
import { SparkPostClient } from '../vendors/sparkpost';

/** Local parts SparkPost's loose check (something@domain.tld, no spaces) accepts. */
const ODD = ['secret"name@example.org', "o'brien(x)@example.org", 'a<b>c;d:e,f@example.org', 'plain.name@example.org'];

test('an address is replaced whole, whatever its local part holds; a bracketed one keeps its brackets', () => {
  for (const a of ODD) {
    const out = replaceAddresses(`550 rejected ${a}: no such user`);
    assert.equal(out, '550 rejected [address] no such user', a);
    assert.ok(!out.includes(a.split('@')[0].slice(0, 4)), `nothing of ${a} is left`);
  }
  assert.equal(scrubAddresses('550 5.1.1 <john.doe@example.org>: unknown'), '550 5.1.1 <[address]>: unknown');
  assert.equal(replaceAddresses('no address here'), 'no address here');
});

test('a SparkPost error that quotes an odd address reaches the VendorError without any part of it', async () => {
  const server = http.createServer((_req, res) => {
    res.writeHead(422, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ errors: ODD.map((a) => ({ message: `invalid recipient ${a}`, code: '1300' })) }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const sp = new SparkPostClient({
      baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`,
      apiKey: 'operator-key-0123456789',
    });
    const err = await sp.getSubaccount(7).then(
      () => assert.fail('expected a failure'),
      (e: unknown) => e as Error,
    );
    for (const a of ODD) assert.ok(!err.message.includes(a.split('@')[0].slice(0, 4)), `${a} in: ${err.message}`);
    assert.match(err.message, /\[address\]/);
  } finally {
    server.close();
  }
});
