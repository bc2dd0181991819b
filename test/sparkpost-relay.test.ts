/**
 * The SMTP relay emulator driven by nodemailer (and a raw socket where nodemailer would hide the protocol):
 * STARTTLS before AUTH, SparkPost's reply texts for bad credentials and unconfigured sending domains, and
 * accepted messages showing up in the SparkPost emulator's metrics.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';

import nodemailer from 'nodemailer';

import { SmtpRelayEmulator, SparkPostEmulator, subjectOf } from '../emulators/sparkpost';
import { SparkPostClient } from '../vendors/sparkpost';

const OPERATOR_KEY = 'op-relay-test-key-00000000000000000000000001';

let emu: SparkPostEmulator;
let relay: SmtpRelayEmulator;
let client: SparkPostClient;
let subId: number;
let sendKey: string;

function transport(pass: string, user = 'SMTP_Injection', extra: Record<string, unknown> = {}) {
  return nodemailer.createTransport({
    host: relay.host,
    port: relay.port,
    secure: false,
    requireTLS: true,
    tls: { rejectUnauthorized: false },
    auth: { user, pass },
    connectionTimeout: 3000,
    greetingTimeout: 3000,
    socketTimeout: 3000,
    ...extra,
  });
}

/** Sends one message and returns the SMTP error (with responseCode/response), or null on success. */
async function trySend(
  pass: string,
  from = 'noreply+acme@cloud.sourcegraph.com',
  user?: string,
): Promise<(Error & { responseCode?: number; response?: string }) | null> {
  const t = transport(pass, user);
  try {
    await t.sendMail({ from, to: 'someone@example.com', subject: 'hello', text: 'body' });
    return null;
  } catch (e) {
    return e as Error & { responseCode?: number; response?: string };
  } finally {
    t.close();
  }
}

/** A tiny line-based SMTP conversation over a plain socket. */
class RawSmtp {
  private buf = '';
  private waiters: Array<() => void> = [];
  private constructor(private readonly sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async connect(port: number): Promise<RawSmtp> {
    const sock = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
    const c = new RawSmtp(sock);
    await c.reply();
    return c;
  }

  /** The next complete reply (last line has a space after the code). */
  async reply(): Promise<string> {
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      const m = /^(?:\d{3}-.*\r\n)*\d{3} .*\r\n/.exec(this.buf);
      if (m) {
        this.buf = this.buf.slice(m[0].length);
        return m[0];
      }
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    throw new Error('no SMTP reply');
  }

  async cmd(line: string): Promise<string> {
    this.sock.write(`${line}\r\n`);
    return this.reply();
  }

  close(): void {
    this.sock.destroy();
  }
}

before(async () => {
  emu = await SparkPostEmulator.start({ operatorKey: OPERATOR_KEY });
  relay = await SmtpRelayEmulator.start({ sparkpost: emu });
  client = new SparkPostClient({ baseUrl: emu.url, apiKey: OPERATOR_KEY });
  subId = (await client.createSubaccount('acme')).id;
  sendKey = (await client.createApiKey(subId, 'send_key', ['smtp/inject'])).key;
});

after(async () => {
  await relay.close();
  await emu.close();
});

describe('SMTP relay', () => {
  test('a message sent with the send key is accepted and counted', async () => {
    const t = transport(sendKey);
    const subject = 'Test email from Sourcegraph — ✓';
    const info = await t.sendMail({
      from: '"Acme" <noreply+acme@cloud.sourcegraph.com>',
      to: ['admin@example.com', 'ops@example.com'],
      subject,
      text: 'hello',
    });
    t.close();
    assert.match(info.response, /^250 /);
    const m = relay.messages.at(-1);
    assert.ok(m);
    assert.equal(m.subaccountId, subId);
    assert.equal(m.from, 'noreply+acme@cloud.sourcegraph.com');
    assert.deepEqual(m.to, ['admin@example.com', 'ops@example.com']);
    assert.equal(m.subject, subject);
    assert.equal(emu.state.messages.at(-1)?.subject, subject);
    assert.equal(emu.state.messages.at(-1)?.keyId, emu.state.apiKeys.find((k) => k.key === sendKey)?.id);

    const metrics = await client.getDeliverability({
      subaccountId: subId,
      from: new Date(Date.now() - 3600e3).toISOString(),
      metrics: ['count_accepted', 'count_delivered'],
    });
    assert.deepEqual(metrics, { count_accepted: 2, count_delivered: 2 });
    assert.deepEqual((await client.listMessageEventRecipients({ subaccountId: subId })).sort(), [
      'admin@example.com',
      'ops@example.com',
    ]);
  });

  test('a wrong key or username is refused with SparkPost reply', async () => {
    for (const [pass, user] of [
      ['0000000000000000000000000000000000000000', 'SMTP_Injection'],
      [sendKey, 'someone'],
    ]) {
      const e = await trySend(pass, undefined, user);
      assert.ok(e, 'must fail');
      assert.equal(e.responseCode, 535);
      assert.match(e.response ?? '', /^535 5\.7\.8 Error: authentication failed: No authentication type succeeded/);
    }
  });

  test('a key of a suspended subaccount, or suspended by SparkPost, cannot authenticate', async () => {
    await client.updateSubaccount(subId, { status: 'suspended' });
    try {
      assert.equal((await trySend(sendKey))?.responseCode, 535);
    } finally {
      await client.updateSubaccount(subId, { status: 'active' });
    }
    emu.setSubaccountStatus(subId, 'active', 'suspended');
    try {
      assert.equal((await trySend(sendKey))?.responseCode, 535);
    } finally {
      emu.setSubaccountStatus(subId, 'active', 'active');
    }
    assert.equal(await trySend(sendKey), null, 'works again once active');
  });

  test('a key without smtp/inject cannot authenticate; a revoked key neither', async () => {
    const k = await client.createApiKey(subId, 'viewer', ['message_events/view']);
    assert.equal((await trySend(k.key))?.responseCode, 535);
    const other = await client.createApiKey(subId, 'send_key', ['smtp/inject']);
    assert.equal(await trySend(other.key), null);
    await client.deleteApiKey(subId, other.id);
    assert.equal((await trySend(other.key))?.responseCode, 535);
  });

  test('AUTH is neither offered nor accepted before STARTTLS', async () => {
    const c = await RawSmtp.connect(relay.port);
    try {
      const ehlo = await c.cmd('EHLO client.example');
      assert.match(ehlo, /STARTTLS/);
      assert.doesNotMatch(ehlo, /AUTH/);
      const plain = Buffer.from(`\0SMTP_Injection\0${sendKey}`).toString('base64');
      const auth = await c.cmd(`AUTH PLAIN ${plain}`);
      assert.match(auth, /^5\d\d /);
      const mail = await c.cmd('MAIL FROM:<noreply+acme@cloud.sourcegraph.com>');
      assert.match(mail, /^530 /);
    } finally {
      c.close();
    }
    // nodemailer without TLS fails as well.
    const t = transport(sendKey, 'SMTP_Injection', { requireTLS: false, ignoreTLS: true });
    const before = relay.messages.length;
    await assert.rejects(t.sendMail({ from: 'noreply@cloud.sourcegraph.com', to: 'a@example.com', text: 'x' }));
    t.close();
    assert.equal(relay.messages.length, before);
  });

  test('a From domain that is not a sending domain of the subaccount is refused', async () => {
    const e = await trySend(sendKey, 'noreply@evil.example');
    assert.equal(e?.responseCode, 550);
    assert.match(e?.response ?? '', /^550 5\.7\.1 Unconfigured Sending Domain <evil\.example>/);

    // Its own verified domain works; another subaccount's domain does not.
    await client.createSendingDomain(subId, 'mail.acme.example');
    assert.equal((await trySend(sendKey, 'x@mail.acme.example'))?.responseCode, 550, 'unverified yet');
    emu.markDomainVerifiable('mail.acme.example');
    await client.verifySendingDomain(subId, 'mail.acme.example');
    assert.equal(await trySend(sendKey, 'x@mail.acme.example'), null);

    const other = (await client.createSubaccount('other')).id;
    const otherKey = (await client.createApiKey(other, 'send_key', ['smtp/inject'])).key;
    assert.equal((await trySend(otherKey, 'x@mail.acme.example'))?.responseCode, 550);
    assert.equal(await trySend(otherKey), null, 'the shared domain works for every subaccount');
  });

  test('fault knobs: a transient failure is a 4xx and records nothing', async () => {
    relay.faults.set({ errorRate: 1 });
    const before = relay.messages.length;
    try {
      const e = await trySend(sendKey);
      assert.equal(e?.responseCode, 451);
    } finally {
      relay.faults.reset();
    }
    assert.equal(relay.messages.length, before);
  });

  test('fault knobs: a dropped reply after DATA fails the client, but the message was accepted', async () => {
    relay.faults.set({ dropResponseRate: 1 });
    const before = relay.messages.length;
    try {
      const e = await trySend(sendKey);
      assert.ok(e, 'the client saw no 250');
    } finally {
      relay.faults.reset();
    }
    assert.equal(relay.messages.length, before + 1);
  });

  test('oversized messages are refused', async () => {
    const small = await SmtpRelayEmulator.start({ sparkpost: emu, maxMessageBytes: 2048 });
    const t = nodemailer.createTransport({
      host: small.host,
      port: small.port,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'SMTP_Injection', pass: sendKey },
    });
    try {
      await assert.rejects(
        t.sendMail({
          from: 'noreply@cloud.sourcegraph.com',
          to: 'a@example.com',
          subject: 'big',
          text: 'x'.repeat(8192),
        }),
        (e: Error & { responseCode?: number }) => e.responseCode === 552,
      );
      assert.equal(small.messages.length, 0);
      await t.sendMail({ from: 'noreply@cloud.sourcegraph.com', to: 'a@example.com', subject: 'small', text: 'x' });
      assert.equal(small.messages.length, 1);
    } finally {
      t.close();
      await small.close();
    }
  });
});

describe('subject parsing', () => {
  test('folded and encoded subjects', () => {
    assert.equal(subjectOf('From: a@b.c\r\nSubject: Hello\r\n world\r\nTo: x@y.z'), 'Hello world');
    assert.equal(subjectOf('Subject: =?UTF-8?B?w6nDqQ==?= =?UTF-8?Q?_ok?='), 'éé ok');
    assert.equal(subjectOf('From: a@b.c'), '');
  });
});
