/**
 * The Sourcegraph client against the Sourcegraph emulator over real HTTP, and the emulator's test emails against
 * real (local) SMTP servers. A small stub HTTP server covers answers the emulator never gives (HTML with 200,
 * truncated JSON, wrong types, hanging).
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';

import axios from 'axios';
import { applyEdits, modify, parse as parseJsonc } from 'jsonc-parser';
import { SMTPServer } from 'smtp-server';

import { SourcegraphEmulator, type SiteOptions } from '../emulators/sourcegraph';
import { VendorError, type VendorErrorKind } from '../lib/errors';
import { SourcegraphClient } from '../vendors/sourcegraph';

const ADMIN = 'sgp_admin_0123456789abcdef0123456789abcdef';
const USER = 'sgp_user_fedcba9876543210fedcba9876543210';
const PASSWORD = 'sp-send-key-5f3a9c0e1b2d4c6a8e7f9a0b1c2d3e4f';
/** Everything that must never show up in an error message. */
const SECRETS = [ADMIN, USER, PASSWORD, 'wrong-token-0123456789'];

interface Received {
  from: string;
  to: string[];
  user?: string;
  pass?: string;
  secure: boolean;
  data: string;
}

function setKey(text: string, path: (string | number)[], value: unknown): string {
  return applyEdits(text, modify(text, path, value, { formattingOptions: { tabSize: 2, insertSpaces: true } }));
}

/** A config text with managed-looking email settings pointing at a local SMTP port. */
function withEmail(text: string, port: number, extra: Record<string, unknown> = {}): string {
  let t = setKey(text, ['email.address'], 'noreply+acme@cloud.sourcegraph.com');
  t = setKey(t, ['email.senderName'], 'Acme Sourcegraph');
  return setKey(t, ['email.smtp'], {
    host: '127.0.0.1',
    port,
    username: 'SMTP_Injection',
    password: PASSWORD,
    authentication: 'PLAIN',
    ...extra,
  });
}

async function expectVendorError(p: Promise<unknown>, kind: VendorErrorKind): Promise<VendorError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof VendorError, `expected VendorError, got ${String(err)}`);
    assert.equal(err.kind, kind, `kind of: ${err.message}`);
    assert.equal(err.vendor, 'sourcegraph');
    assert.match(err.message, /^Sourcegraph [A-Za-z]+: /);
    for (const s of SECRETS) assert.ok(!err.message.includes(s), `secret leaked in: ${err.message}`);
    return err;
  }
  assert.fail(`expected a VendorError of kind ${kind}`);
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)),
  );
}

async function closedPort(): Promise<number> {
  const s = net.createServer();
  const port = await listen(s);
  await new Promise((r) => s.close(r));
  return port;
}

function smtpServer(acceptAuth: boolean, received: Received[]): SMTPServer {
  return new SMTPServer({
    authOptional: true,
    hideSTARTTLS: false,
    logger: false,
    onAuth(auth, _session, cb) {
      if (!acceptAuth) return cb(new Error('5.7.8 Authentication credentials invalid'));
      cb(null, { user: `${auth.username}\u0000${auth.password}` });
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const [user, pass] = typeof session.user === 'string' ? session.user.split('\u0000') : [];
        received.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          user,
          pass,
          secure: session.secure,
          data: Buffer.concat(chunks).toString('utf8'),
        });
        cb();
      });
    },
  });
}

let emulator: SourcegraphEmulator;
let strictEmulator: SourcegraphEmulator;
let goodSmtp: SMTPServer;
let badSmtp: SMTPServer;
let goodPort: number;
let badPort: number;
let deadPort: number;
const received: Received[] = [];
let stub: http.Server;
let stubUrl: string;
let stubHandler: http.RequestListener = (_req, res) => res.end();
let siteCounter = 0;

/** A fresh site (isolated state) and an admin client for it. */
function newSite(
  opts: Partial<SiteOptions> = {},
  on = emulator,
): { name: string; url: string; client: SourcegraphClient } {
  const name = `site-${++siteCounter}`;
  const url = on.addSite(name, { adminToken: ADMIN, nonAdminTokens: [USER], ...opts });
  return { name, url, client: new SourcegraphClient({ url, token: ADMIN, timeoutMs: 5000 }) };
}

before(async () => {
  goodSmtp = smtpServer(true, received);
  badSmtp = smtpServer(false, []);
  goodPort = await listen(goodSmtp.server);
  badPort = await listen(badSmtp.server);
  deadPort = await closedPort();
  emulator = await SourcegraphEmulator.start();
  strictEmulator = await SourcegraphEmulator.start({ insecureRelayTls: false });
  stub = http.createServer((req, res) => stubHandler(req, res));
  stubUrl = `http://127.0.0.1:${await listen(stub)}`;
});

after(async () => {
  await emulator.close();
  await strictEmulator.close();
  stub.closeAllConnections();
  await new Promise((r) => stub.close(r));
  await new Promise<void>((r) => goodSmtp.close(() => r()));
  await new Promise<void>((r) => badSmtp.close(() => r()));
});

describe('site configuration', () => {
  test('reads id, contents with comments and validation messages, whatever the base URL looks like', async () => {
    const { url } = newSite();
    for (const base of [url, `${url}/`, `${url}//`]) {
      const cfg = await new SourcegraphClient({ url: base, token: ADMIN }).getSiteConfig();
      assert.equal(cfg.id, 1);
      assert.match(cfg.contents, /\/\/ The externally accessible URL/);
      assert.deepEqual(cfg.validationMessages, []);
    }
  });

  test('writes bump the id, keep comments, and a stale lastID is a conflict', async () => {
    const { name, client } = newSite();
    const first = await client.getSiteConfig();
    const next = setKey(first.contents, ['email.address'], 'noreply+acme@cloud.sourcegraph.com');
    await client.updateSiteConfig(first.id, next);
    const second = await client.getSiteConfig();
    assert.equal(second.id, first.id + 1);
    assert.match(second.contents, /\/\/ Builtin username\/password sign-in only/);
    assert.equal(
      (parseJsonc(second.contents) as Record<string, unknown>)['email.address'],
      'noreply+acme@cloud.sourcegraph.com',
    );
    const err = await expectVendorError(client.updateSiteConfig(first.id, next), 'conflict');
    assert.match(err.message, /modified by another request/);
    assert.equal(emulator.site(name).writes, 1);
  });

  test('editSiteConfig re-reads and re-applies on a stale id, and the human edit survives', async () => {
    const { name, client } = newSite();
    let calls = 0;
    emulator.raceNextWrites(name, 2, (t) => setKey(t, ['human.note'], `edited ${++calls}`));
    const result = await client.editSiteConfig((t) =>
      setKey(t, ['email.address'], 'noreply+acme@cloud.sourcegraph.com'),
    );
    assert.deepEqual(result, { id: 4, changed: true });
    const stored = emulator.site(name);
    assert.equal(stored.writes, 1);
    assert.equal(stored.id, 4);
    const value = parseJsonc(stored.config) as Record<string, unknown>;
    assert.equal(value['human.note'], 'edited 2');
    assert.equal(value['email.address'], 'noreply+acme@cloud.sourcegraph.com');
    assert.match(stored.config, /\/\/ The externally accessible URL/);
  });

  test('editSiteConfig gives up with conflict after maxAttempts, and skips the write when nothing changes', async () => {
    const { name, client } = newSite();
    emulator.raceNextWrites(name, 10, (t) => setKey(t, ['human.counter'], Math.random()));
    await expectVendorError(
      client.editSiteConfig((t) => setKey(t, ['x'], 1), 3),
      'conflict',
    );
    assert.equal(emulator.site(name).writes, 0);
    assert.equal(emulator.site(name).id, 4); // three races, three human edits
    emulator.raceNextWrites(name, 0, (t) => t);
    const before = emulator.site(name).id;
    assert.deepEqual(await client.editSiteConfig(() => null), { id: before, changed: false });
    assert.deepEqual(await client.editSiteConfig((t) => t), { id: before, changed: false });
    assert.equal(emulator.site(name).writes, 0);
  });

  test('a human edit between read and write is detected', async () => {
    const { name, client } = newSite();
    const cfg = await client.getSiteConfig();
    emulator.humanEdit(name, (t) => setKey(t, ['by.human'], true));
    await expectVendorError(client.updateSiteConfig(cfg.id, setKey(cfg.contents, ['by.robot'], true)), 'conflict');
    const r = await client.editSiteConfig((t) => setKey(t, ['by.robot'], true));
    assert.equal(r.changed, true);
    const value = parseJsonc(emulator.site(name).config) as Record<string, unknown>;
    assert.equal(value['by.human'], true);
    assert.equal(value['by.robot'], true);
  });

  test('the password reads as REDACTED, and writing REDACTED back keeps the stored password', async () => {
    const { name, client } = newSite({ config: withEmail('{\n  // keep me\n  "a": 1\n}', 2525) });
    const cfg = await client.getSiteConfig();
    assert.ok(!cfg.contents.includes(PASSWORD));
    const smtp = (parseJsonc(cfg.contents) as Record<string, Record<string, unknown>>)['email.smtp'];
    assert.equal(smtp.password, 'REDACTED');
    assert.equal(smtp.username, 'SMTP_Injection');

    await client.editSiteConfig((t) => setKey(t, ['email.smtp', 'port'], 587));
    const stored = parseJsonc(emulator.site(name).config) as Record<string, Record<string, unknown>>;
    assert.equal(stored['email.smtp'].password, PASSWORD);
    assert.equal(stored['email.smtp'].port, 587);
    assert.match(emulator.site(name).config, /\/\/ keep me/);

    // A new password replaces the stored one.
    await client.editSiteConfig((t) => setKey(t, ['email.smtp', 'password'], 'rotated-key'));
    const rotated = parseJsonc(emulator.site(name).config) as Record<string, Record<string, unknown>>;
    assert.equal(rotated['email.smtp'].password, 'rotated-key');
  });

  test('newer versions redact the username too, and it survives a write-back', async () => {
    const { name, client } = newSite({ config: withEmail('{}', 2525), redactUsername: true });
    const cfg = await client.getSiteConfig();
    assert.equal(
      (parseJsonc(cfg.contents) as Record<string, Record<string, unknown>>)['email.smtp'].username,
      'REDACTED',
    );
    await client.editSiteConfig((t) => setKey(t, ['email.senderName'], 'Renamed'));
    const stored = parseJsonc(emulator.site(name).config) as Record<string, Record<string, unknown>>;
    assert.equal(stored['email.smtp'].username, 'SMTP_Injection');
    assert.equal(stored['email.smtp'].password, PASSWORD);
  });

  test('invalid configurations are refused as invalid', async () => {
    const { name, client } = newSite({ config: withEmail('{}', 2525) });
    const cases: [string, (t: string) => string, RegExp][] = [
      ['port as string', (t) => setKey(t, ['email.smtp', 'port'], '587'), /email\.smtp\.port: Invalid type/],
      ['unknown smtp key', (t) => setKey(t, ['email.smtp', 'tls'], true), /Additional property tls/],
      ['bad auth enum', (t) => setKey(t, ['email.smtp', 'authentication'], 'LOGIN'), /authentication must be one of/],
      ['missing host', (t) => setKey(t, ['email.smtp', 'host'], undefined), /host is required/],
      ['address without @', (t) => setKey(t, ['email.address'], 'noreply'), /email\.address/],
      ['smtp null', (t) => setKey(t, ['email.smtp'], null), /email\.smtp: Invalid type/],
      ['unparseable', (t) => `${t} }`, /failed to parse JSON/],
      ['blank', () => '   ', /blank site configuration is invalid/],
    ];
    for (const [label, edit, re] of cases) {
      const err = await expectVendorError(client.editSiteConfig(edit), 'invalid');
      assert.match(err.message, re, label);
    }
    assert.equal(emulator.site(name).writes, 0);

    const managed = newSite({ siteConfigFile: true });
    const err = await expectVendorError(
      managed.client.editSiteConfig((t) => setKey(t, ['a'], 1)),
      'invalid',
    );
    assert.match(err.message, /SITE_CONFIG_FILE/);
  });
});

describe('auth and transport errors', () => {
  test('unknown token → auth (401 plain text), non-admin → forbidden, no token in messages', async () => {
    const { url } = newSite();
    const bad = await expectVendorError(
      new SourcegraphClient({ url, token: 'wrong-token-0123456789' }).getSiteConfig(),
      'auth',
    );
    assert.equal(bad.status, 401);
    assert.match(bad.message, /Invalid access token\./);
    const user = await expectVendorError(
      new SourcegraphClient({ url, token: USER }).sendTestEmail('a@b.c'),
      'forbidden',
    );
    assert.match(user.message, /must be site admin/);
    await expectVendorError(new SourcegraphClient({ url, token: USER }).updateSiteConfig(1, '{}'), 'forbidden');
  });

  test('the emulator answers malformed headers, anonymous requests and unknown sites like Sourcegraph', async () => {
    const { url } = newSite();
    const post = (headers: Record<string, string>, target = `${url}/.api/graphql`) =>
      axios.post(target, { query: '{ site { configuration { id } } }' }, { headers, validateStatus: () => true });
    const malformed = await post({ Authorization: 'token' });
    assert.equal(malformed.status, 401);
    assert.equal(malformed.data, 'Invalid Authorization header.\n');
    const anonymous = await post({ Authorization: 'Basic Zm9vOmJhcg==' });
    assert.equal(anonymous.status, 200);
    assert.equal(anonymous.data.data, null);
    assert.equal(anonymous.data.errors[0].message, 'not authenticated');
    assert.deepEqual(anonymous.data.errors[0].path, ['site', 'configuration']);
    const sudo = await post({ Authorization: `token-sudo user="alice",token="${ADMIN}"` });
    assert.equal(sudo.data.data.site.configuration.id, 1);
    const quoted = await post({ Authorization: `token token="${ADMIN}"` });
    assert.equal(quoted.data.data.site.configuration.id, 1);
    const missing = await post({ Authorization: `token ${ADMIN}` }, `${emulator.origin}/nope/.api/graphql`);
    assert.equal(missing.status, 404);
    await expectVendorError(
      new SourcegraphClient({ url: `${emulator.origin}/nope`, token: ADMIN }).getSiteConfig(),
      'not-found',
    );
  });

  test('not authenticated from the resolver maps to auth', async () => {
    stubHandler = (_req, res) => {
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ errors: [{ message: 'not authenticated', path: ['site'] }], data: null }));
    };
    await expectVendorError(new SourcegraphClient({ url: stubUrl, token: ADMIN }).getSiteConfig(), 'auth');
  });

  test('429 with Retry-After → rate-limited with retryAfterMs; 5xx → unavailable; drop → unavailable but applied', async () => {
    const { name, client } = newSite();
    emulator.faults.set({ rateLimitRate: 1, match: `/${name}/` });
    try {
      const err = await expectVendorError(client.getSiteConfig(), 'rate-limited');
      assert.equal(err.status, 429);
      assert.equal(err.retryAfterMs, 1000);
    } finally {
      emulator.faults.reset();
    }
    // Also through the admin endpoint, as the chaos suite drives it.
    await axios.put(`${emulator.origin}/__emulator/faults`, { errorRate: 1, match: `/${name}/` });
    try {
      const err = await expectVendorError(client.getSiteConfig(), 'unavailable');
      assert.equal(err.status, 502);
    } finally {
      await axios.delete(`${emulator.origin}/__emulator/faults`);
    }
    const cfg = await client.getSiteConfig();
    emulator.faults.set({ dropResponseRate: 1, match: `/${name}/` });
    try {
      await expectVendorError(client.updateSiteConfig(cfg.id, setKey(cfg.contents, ['a'], 1)), 'unavailable');
    } finally {
      emulator.faults.reset();
    }
    assert.equal(emulator.site(name).writes, 1);
    assert.equal(emulator.faults.injected.drop, 0); // reset zeroes the counters
  });

  test('HTML, truncated JSON and wrong types on a 200 are malformed; a hang is unavailable', async () => {
    const client = new SourcegraphClient({ url: stubUrl, token: ADMIN, timeoutMs: 300 });
    const bodies: [string, string][] = [
      ['text/html', '<!DOCTYPE html><html><body>Sign in to Sourcegraph</body></html>'],
      ['application/json', '{"data":{"site":{"configuration":{"id":1,"effectiveCon'],
      [
        'application/json',
        '{"data":{"site":{"configuration":{"id":"1","effectiveContents":"{}","validationMessages":[]}}}}',
      ],
      [
        'application/json',
        '{"data":{"site":{"configuration":{"id":1,"effectiveContents":{},"validationMessages":[]}}}}',
      ],
      ['application/json', '"just a string"'],
      ['application/json', '{}'],
    ];
    for (const [type, body] of bodies) {
      stubHandler = (_req, res) => {
        res.setHeader('Content-Type', type);
        res.end(body);
      };
      const err = await expectVendorError(client.getSiteConfig(), 'malformed');
      assert.ok(!err.message.includes('Sign in'), 'HTML is not quoted');
    }
    stubHandler = (_req, res) => {
      res.setHeader('Content-Type', 'application/json');
      res.end('{"data":{"updateSiteConfiguration":"false"}}');
    };
    await expectVendorError(client.updateSiteConfig(1, '{}'), 'malformed');
    stubHandler = () => undefined; // never answers
    await expectVendorError(client.getSiteConfig(), 'unavailable');
    stub.closeAllConnections();
  });

  test('requests go to <base path>/.api/graphql with the token header and a named operation', async () => {
    const seen: { url?: string; auth?: string; body?: Record<string, unknown> }[] = [];
    stubHandler = (req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString()));
      req.on('end', () => {
        seen.push({ url: req.url, auth: req.headers.authorization, body: JSON.parse(raw) as Record<string, unknown> });
        res.setHeader('Content-Type', 'application/json');
        res.end(
          '{"data":{"sendTestEmail":"Sent test email to \\"a@b.c\\" successfully! Please check it was received."}}',
        );
      });
    };
    for (const base of [`${stubUrl}/prefix`, `${stubUrl}/prefix/`]) {
      const r = await new SourcegraphClient({ url: base, token: ADMIN }).sendTestEmail('a@b.c');
      assert.deepEqual(r, {
        ok: true,
        message: 'Sent test email to "a@b.c" successfully! Please check it was received.',
      });
    }
    assert.deepEqual(
      seen.map((s) => s.url),
      ['/prefix/.api/graphql', '/prefix/.api/graphql'],
    );
    assert.equal(seen[0].auth, `token ${ADMIN}`);
    assert.equal(seen[0].body?.operationName, 'SendTestEmail');
    assert.deepEqual(seen[0].body?.variables, { to: 'a@b.c' });
  });

  test('an instance that echoes the admin token in its sendTestEmail answer: the token is cut out', async () => {
    const client = new SourcegraphClient({ url: stubUrl, token: ADMIN });
    const answers = [
      `Sent test email to "a@b.c" successfully! (authorized as token ${ADMIN}) look for test ID: abcde`,
      `Failed to send test email: auth: 535 token ${ADMIN} rejected, look for test ID: abcde`,
    ];
    for (const answer of answers) {
      stubHandler = (_req, res) => {
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ data: { sendTestEmail: answer } }));
      };
      const r = await client.sendTestEmail('a@b.c');
      assert.ok(!r.message.includes(ADMIN), `token leaked in: ${r.message}`);
      assert.match(r.message, /\[REDACTED\]/);
    }
  });

  test('bad client options are invalid without echoing them', async () => {
    await expectVendorError(
      Promise.reject(catchSync(() => new SourcegraphClient({ url: 'not a url', token: ADMIN }))),
      'invalid',
    );
    await expectVendorError(
      Promise.reject(catchSync(() => new SourcegraphClient({ url: stubUrl, token: '' }))),
      'invalid',
    );
    await expectVendorError(
      Promise.reject(catchSync(() => new SourcegraphClient({ url: stubUrl, token: `${ADMIN}\nX-Evil: 1` }))),
      'invalid',
    );
  });
});

function catchSync(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return new Error('did not throw');
}

describe('sendTestEmail', () => {
  for (const behaviour of ['3.38', '5.x', 'newest'] as const) {
    test(`${behaviour}: success really goes through SMTP with the configured settings`, async () => {
      const { name, client } = newSite({ config: withEmail('{}', goodPort), testEmailBehaviour: behaviour });
      const before = received.length;
      const r = await client.sendTestEmail('cloud-team+test_emails@sourcegraph.com');
      assert.equal(r.ok, true, r.message);
      assert.match(r.message, /^Sent test email to "cloud-team\+test_emails@sourcegraph\.com" successfully!/);
      const sent = emulator.site(name).sentTestEmails;
      assert.equal(sent.length, 1);
      assert.equal(sent[0].ok, true);
      if (behaviour === '3.38') assert.equal(r.testId, undefined);
      else assert.equal(r.testId, sent[0].testId);
      assert.equal(received.length, before + 1);
      const mail = received[received.length - 1];
      assert.equal(mail.from, 'noreply+acme@cloud.sourcegraph.com');
      assert.deepEqual(mail.to, ['cloud-team+test_emails@sourcegraph.com']);
      assert.equal(mail.user, 'SMTP_Injection');
      assert.equal(mail.pass, PASSWORD);
      assert.equal(mail.secure, true, 'STARTTLS was used when offered');
      assert.match(
        mail.data,
        new RegExp(`Subject: TEST: email sent from Sourcegraph \\(test ID: ${sent[0].testId}\\)`),
      );
      assert.match(mail.data, /From: "?Acme Sourcegraph"? <noreply\+acme@cloud\.sourcegraph\.com>/);
    });

    test(`${behaviour}: failure is ok:false with the SMTP error`, async () => {
      const port = behaviour === '5.x' ? badPort : deadPort;
      const { name, client } = newSite({ config: withEmail('{}', port), testEmailBehaviour: behaviour });
      const r = await client.sendTestEmail('a@example.com');
      assert.equal(r.ok, false);
      assert.match(r.message, /^Failed to send test email: mail: /);
      if (behaviour === '5.x') assert.match(r.message, /auth: 535 /);
      else assert.match(r.message, /new SMTP client: dial tcp 127\.0\.0\.1:\d+: connect: connection refused/);
      const sent = emulator.site(name).sentTestEmails;
      assert.equal(sent[0].ok, false);
      if (behaviour === '3.38') assert.equal(r.testId, undefined);
      else assert.equal(r.testId, sent[0].testId);
      assert.ok(!r.message.includes(PASSWORD));
    });
  }

  test('missing settings are reported by the instance', async () => {
    const noAddress = newSite({ testEmailBehaviour: 'newest' });
    const r1 = await noAddress.client.sendTestEmail('a@example.com');
    assert.equal(r1.ok, false);
    assert.match(r1.message, /no "From" email address configured \(in email\.address\)/);
    const noSmtp = newSite({ config: '{"email.address": "noreply@example.com"}' });
    const r2 = await noSmtp.client.sendTestEmail('a@example.com');
    assert.equal(r2.ok, false);
    assert.match(r2.message, /no SMTP server configured \(in email\.smtp\)/);
  });

  test('a lagging replica sends with the old settings until the write propagates', async () => {
    const { client } = newSite({ configPropagationMs: 400 });
    await client.editSiteConfig((t) => withEmail(t, goodPort));
    const early = await client.sendTestEmail('a@example.com');
    assert.equal(early.ok, false);
    assert.match(early.message, /no "From" email address configured/);
    await new Promise((r) => setTimeout(r, 450));
    const late = await client.sendTestEmail('a@example.com');
    assert.equal(late.ok, true, late.message);
  });

  test('the relay certificate is verified unless noVerifyTLS (or the emulator is told to trust it)', async () => {
    const strict = newSite({ config: withEmail('{}', goodPort) }, strictEmulator);
    const r = await strict.client.sendTestEmail('a@example.com');
    assert.equal(r.ok, false);
    assert.match(r.message, /send STARTTLS: /);
    const lax = newSite({ config: withEmail('{}', goodPort, { noVerifyTLS: true }) }, strictEmulator);
    const ok = await lax.client.sendTestEmail('a@example.com');
    assert.equal(ok.ok, true, ok.message);
  });
});

describe('emulator state', () => {
  test('snapshot and the site endpoint hide passwords and tokens', async () => {
    const { name } = newSite({ config: withEmail('{}', 2525) });
    const snapshotText = JSON.stringify(emulator.snapshot());
    const site = await axios.get(`${emulator.origin}/__emulator/sites/${name}`);
    const state = await axios.get(`${emulator.origin}/__emulator/state`);
    for (const text of [snapshotText, JSON.stringify(site.data), JSON.stringify(state.data)]) {
      for (const s of [ADMIN, USER, PASSWORD]) assert.ok(!text.includes(s));
    }
    assert.equal(site.data.id, 1);
    assert.match(site.data.config, /"password": "REDACTED"/);
    assert.match(site.data.email.smtp.passwordSha256, /^[0-9a-f]{64}$/);
    assert.equal(
      (await axios.get(`${emulator.origin}/__emulator/sites/nope`, { validateStatus: () => true })).status,
      404,
    );
  });

  test('documents that do not validate against the schema are refused and recorded', async () => {
    const { url, name } = newSite();
    const res = await axios.post(
      `${url}/.api/graphql`,
      { query: 'query { site { configuration { id password } } }' },
      { headers: { Authorization: `token ${ADMIN}` } },
    );
    assert.equal(res.status, 200);
    assert.match(res.data.errors[0].message, /Cannot query field "password"/);
    const recorded = emulator.invalidDocuments.filter((d) => d.site === name);
    assert.equal(recorded.length, 1);
    const typed = await axios.post(
      `${url}/.api/graphql`,
      {
        query: 'mutation($id: Int!, $input: String!) { updateSiteConfiguration(lastID: $id, input: $input) }',
        variables: { id: '1', input: '{}' },
      },
      { headers: { Authorization: `token ${ADMIN}` } },
    );
    assert.match(typed.data.errors[0].message, /Int cannot represent/);
    assert.equal(emulator.invalidDocuments.filter((d) => d.site === name).length, 2);
  });

  test('the client never sent a document the schema refuses', () => {
    const fromClient = [...emulator.invalidDocuments, ...strictEmulator.invalidDocuments].filter(
      (d) => d.operationName !== undefined,
    );
    assert.deepEqual(fromClient, []);
  });
});
