/**
 * Payload encryption: the AES-256-GCM codec (round trip, tampering, rotation, pass-through), key configuration from
 * the environment and from Secret Manager (emulator), the codec server over real HTTP, and a real Temporal dev
 * server whose stored history holds only ciphertext while the workflow still gets the right answer.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';
import { inspect } from 'node:util';
import { Client } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import {
  AesGcmCodec,
  CodecConfigError,
  ENCODING_ENCRYPTED,
  METADATA_KEY_ID,
  codecFromEnvironment,
  codecKeysFromEnvironment,
  dataConverterFor,
  FAILURE_CONVERTER_PATH,
  generateCodecKey,
  parseCodecKeys,
} from '../lib/codec';
import { SecretManagerEmulator } from '../emulators/secret-manager';
import { startCodecServer, codecServerSettings, type CodecServer } from '../worker/codec-server';
import { startTemporal, uniqueTaskQueue } from './helpers/temporal';
import { codecEcho } from './fixtures/codec-workflow';

const utf8 = (s: string) => Buffer.from(s, 'utf8');
const b64 = (b: Uint8Array | string) => Buffer.from(b).toString('base64');

/** A `json/plain` payload as the SDK's default converter makes it. */
function jsonPayload(value: unknown): Payload {
  return { metadata: { encoding: utf8('json/plain') }, data: utf8(JSON.stringify(value)) };
}

/** Key text `id:base64` with fresh random keys; also returns the base64 strings to check they never leak. */
function keyring(...ids: string[]): { text: string; secrets: string[] } {
  const entries = ids.map((id) => generateCodecKey(id));
  return { text: entries.join(','), secrets: entries.map((e) => e.slice(e.indexOf(':') + 1)) };
}

function codecOf(text: string): AesGcmCodec {
  return new AesGcmCodec(parseCodecKeys(text, 'test'));
}

/** Runs `fn`, expects it to throw (sync or async), returns the error message. */
async function failure(fn: () => unknown, type: new (...args: never[]) => Error = Error): Promise<string> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof type, `expected ${type.name}, got ${String(err)}`);
    return err.message;
  }
  assert.fail('expected a failure');
}

function assertNoSecrets(text: string, secrets: string[]): void {
  for (const s of secrets) {
    assert.ok(!text.includes(s), 'key material leaked');
    assert.ok(!text.includes(s.slice(0, 16)), 'key material leaked');
  }
}

describe('AesGcmCodec', () => {
  const ring = keyring('k1');
  const codec = codecOf(ring.text);

  test('round trip: metadata names the encoding and key, data is IV + ciphertext + tag, plaintext gone', async () => {
    const original = jsonPayload({ marker: 'PLAINTEXT-MARKER-1' });
    const [encrypted] = await codec.encode([original]);
    assert.equal(Buffer.from(encrypted.metadata!.encoding!).toString(), ENCODING_ENCRYPTED);
    assert.equal(Buffer.from(encrypted.metadata![METADATA_KEY_ID]!).toString(), 'k1');
    const serialised = temporal.api.common.v1.Payload.encode(original).finish();
    assert.equal(encrypted.data!.length, 12 + serialised.length + 16);
    assert.ok(!Buffer.from(encrypted.data!).includes('PLAINTEXT-MARKER-1'));
    assert.ok(!Buffer.from(encrypted.data!).includes('json/plain'), 'the inner metadata is encrypted too');

    const [decoded] = await codec.decode([encrypted]);
    assert.deepEqual(Buffer.from(decoded.data!), Buffer.from(original.data!));
    assert.deepEqual(Object.keys(decoded.metadata!), ['encoding']);
    assert.equal(Buffer.from(decoded.metadata!.encoding!).toString(), 'json/plain');

    const [again] = await codec.encode([original]);
    assert.notDeepEqual(Buffer.from(again.data!), Buffer.from(encrypted.data!), 'a fresh IV every time');
    assert.deepEqual(await codec.encode([]), []);
    assert.deepEqual(await codec.decode([]), []);
  });

  test('empty and metadata-only payloads survive', async () => {
    const empty: Payload = { metadata: { encoding: utf8('binary/null') } };
    const [decoded] = await codec.decode(await codec.encode([empty]));
    assert.equal(Buffer.from(decoded.metadata!.encoding!).toString(), 'binary/null');
    assert.equal(decoded.data?.length ?? 0, 0);
  });

  test('tampered IV, ciphertext, tag, or a truncated payload fail to decode', async () => {
    const [encrypted] = await codec.encode([jsonPayload('secret stuff')]);
    const n = encrypted.data!.length;
    for (const index of [0, 11, 12, Math.floor(n / 2), n - 17, n - 1]) {
      const data = Buffer.from(encrypted.data!);
      data[index] ^= 0x01;
      const message = await failure(() => codec.decode([{ ...encrypted, data }]));
      assert.match(message, /key id "k1".*failed authentication/);
      assertNoSecrets(message, ring.secrets);
    }
    const short = await failure(() => codec.decode([{ ...encrypted, data: encrypted.data!.subarray(0, 20) }]));
    assert.match(short, /too short/);
    const noId = await failure(() =>
      codec.decode([{ metadata: { encoding: utf8(ENCODING_ENCRYPTED) }, data: encrypted.data }]),
    );
    assert.match(noId, /without encryption-key-id/);
  });

  test('a different key under the same id fails authentication', async () => {
    const [encrypted] = await codec.encode([jsonPayload('x')]);
    const impostor = codecOf(keyring('k1').text);
    assert.match(await failure(() => impostor.decode([encrypted])), /failed authentication/);
  });

  test('key rotation: new payloads use the new key, the old key id still decodes, unknown ids fail clearly', async () => {
    const oldRing = keyring('2024-01');
    const newKey = generateCodecKey('2025-06');
    const before = codecOf(oldRing.text);
    const afterRotation = codecOf(`${newKey},${oldRing.text}`);
    assert.equal(afterRotation.currentKeyId, '2025-06');
    assert.deepEqual(afterRotation.keyIds, ['2025-06', '2024-01']);

    const [old] = await before.encode([jsonPayload('from before')]);
    const [decodedOld] = await afterRotation.decode([old]);
    assert.equal(Buffer.from(decodedOld.data!).toString(), '"from before"');

    const [fresh] = await afterRotation.encode([jsonPayload('after')]);
    assert.equal(Buffer.from(fresh.metadata![METADATA_KEY_ID]!).toString(), '2025-06');
    const message = await failure(() => before.decode([fresh]));
    assert.equal(message, 'encrypted payload uses unknown key id "2025-06" (loaded: 2024-01)');
    assertNoSecrets(message, [...oldRing.secrets, newKey.slice(newKey.indexOf(':') + 1)]);
  });

  test('payloads without the encrypted encoding pass through unchanged', async () => {
    const plain = jsonPayload({ hello: 'world' });
    const raw: Payload = { data: utf8('no metadata at all') };
    const other: Payload = { metadata: { encoding: utf8('binary/zlib') }, data: utf8('zzz') };
    const [a, b, c] = await codec.decode([plain, raw, other]);
    assert.equal(a, plain);
    assert.equal(b, raw);
    assert.equal(c, other);
  });

  test('constructor refuses bad key sets; keys never show in inspect output', () => {
    assert.throws(() => new AesGcmCodec([]), CodecConfigError);
    const [k] = parseCodecKeys(ring.text, 'test');
    assert.throws(() => new AesGcmCodec([k, k]), /duplicate key id "k1"/);
    assertNoSecrets(inspect(parseCodecKeys(ring.text, 'test'), { depth: 10 }), ring.secrets);
    assertNoSecrets(inspect(codec, { depth: 10 }), ring.secrets);
    assertNoSecrets(JSON.stringify(parseCodecKeys(ring.text, 'test')), ring.secrets);
  });

  test('dataConverterFor', () => {
    assert.equal(dataConverterFor(null), undefined);
    assert.deepEqual(dataConverterFor(codec), { payloadCodecs: [codec], failureConverterPath: FAILURE_CONVERTER_PATH });
  });
});

describe('codec keys from the environment', () => {
  const VAR = 'MANAGED_SMTP_CODEC_KEYS';

  test('id:base64 list, first is current; unset or empty means no encryption', async () => {
    const ring = keyring('b', 'a');
    const keys = await codecKeysFromEnvironment({ [VAR]: ` ${ring.text.replace(',', ' , ')}\n` });
    assert.deepEqual(
      keys?.map((k) => k.id),
      ['b', 'a'],
    );
    assert.equal((await codecFromEnvironment({ [VAR]: ring.text }))?.currentKeyId, 'b');
    assert.equal(await codecKeysFromEnvironment({}), null);
    assert.equal(await codecFromEnvironment({ [VAR]: '  ', MANAGED_SMTP_CODEC_KEY_SECRET: '' }), null);
  });

  test('bad values give one-line errors naming the variable and never the key', async () => {
    const good = keyring('ok');
    const short = b64(randomBytes(16));
    const long = b64(randomBytes(33));
    const cases: Array<[string, RegExp, string[]]> = [
      [`k1:${good.secrets[0].slice(0, -2)}!=`, /^MANAGED_SMTP_CODEC_KEYS: key "k1" is not valid base64$/, good.secrets],
      [`k1:${short}`, /^MANAGED_SMTP_CODEC_KEYS: key "k1" must be 32 bytes, got 16$/, [short]],
      [`k1:${long}`, /key "k1" must be 32 bytes, got 33/, [long]],
      [`${good.text},ok:${good.secrets[0]}`, /^MANAGED_SMTP_CODEC_KEYS: duplicate key id "ok"$/, good.secrets],
      [good.secrets[0], /^MANAGED_SMTP_CODEC_KEYS: entry 1 must be id:base64key$/, good.secrets],
      [`${good.text},,`, /entry 2 must be id:base64key/, good.secrets],
      [`bad id:${good.secrets[0]}`, /entry 1: key id must be/, good.secrets],
    ];
    for (const [value, expected, secrets] of cases) {
      const message = await failure(() => codecKeysFromEnvironment({ [VAR]: value }), CodecConfigError);
      assert.match(message, expected);
      assert.ok(!message.includes('\n'));
      assertNoSecrets(message, secrets);
    }
    assert.match(
      await failure(
        () =>
          codecKeysFromEnvironment({
            [VAR]: good.text,
            MANAGED_SMTP_CODEC_KEY_SECRET: 'projects/p/secrets/s/versions/1',
          }),
        CodecConfigError,
      ),
      /set only one of MANAGED_SMTP_CODEC_KEYS and MANAGED_SMTP_CODEC_KEY_SECRET/,
    );
    assert.match(
      await failure(() => codecKeysFromEnvironment({ MANAGED_SMTP_CODEC_KEY_SECRET: 'my-secret' }), CodecConfigError),
      /^MANAGED_SMTP_CODEC_KEY_SECRET must be projects\/P\/secrets\/S\/versions\/V$/,
    );
  });

  describe('from Secret Manager (emulator)', () => {
    let emu: SecretManagerEmulator;
    before(async () => {
      emu = await SecretManagerEmulator.start();
    });
    after(async () => {
      await emu.close();
    });

    test('reads the version once and uses its keys', async () => {
      const ring = keyring('sm-2', 'sm-1');
      const version = emu.seed('projects/codec-project/secrets/temporal-codec-keys', `${ring.text}\n`);
      const env = { MANAGED_SMTP_CODEC_KEY_SECRET: version, SECRET_MANAGER_EMULATOR_HOST: emu.address };
      emu.resetCounts();
      const codec = await codecFromEnvironment(env);
      assert.equal(emu.requestCount('AccessSecretVersion'), 1);
      assert.deepEqual(codec?.keyIds, ['sm-2', 'sm-1']);
      // Same keys as the text: what one side encrypts the other decrypts.
      const [enc] = await codec!.encode([jsonPayload('via secret manager')]);
      const [dec] = await codecOf(ring.text).decode([enc]);
      assert.equal(Buffer.from(dec.data!).toString(), '"via secret manager"');
      const latest = await codecFromEnvironment({
        ...env,
        MANAGED_SMTP_CODEC_KEY_SECRET: 'projects/codec-project/secrets/temporal-codec-keys/versions/latest',
      });
      assert.equal(latest?.currentKeyId, 'sm-2');
    });

    test('a missing secret or bad content fails naming the variable, without the content', async () => {
      const env = { SECRET_MANAGER_EMULATOR_HOST: emu.address };
      const missing = await failure(
        () =>
          codecKeysFromEnvironment({
            ...env,
            MANAGED_SMTP_CODEC_KEY_SECRET: 'projects/codec-project/secrets/nope/versions/1',
          }),
        CodecConfigError,
      );
      assert.match(missing, /^MANAGED_SMTP_CODEC_KEY_SECRET: .*NOT_FOUND/);
      const shortKey = b64(randomBytes(24));
      const version = emu.seed('projects/codec-project/secrets/bad-keys', `k9:${shortKey}`);
      const bad = await failure(
        () => codecKeysFromEnvironment({ ...env, MANAGED_SMTP_CODEC_KEY_SECRET: version }),
        CodecConfigError,
      );
      assert.equal(bad, `MANAGED_SMTP_CODEC_KEY_SECRET (${version}): key "k9" must be 32 bytes, got 24`);
    });
  });
});

/** A raw HTTP request (node:http, so Origin and other forbidden-in-fetch headers can be set). */
function request(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer },
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'POST', headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

describe('codec server', () => {
  const ring = keyring('srv-1');
  const codec = codecOf(ring.text);
  const TOKEN = 'test-token-0123456789abcdef';
  const UI = 'http://localhost:8233';
  let server: CodecServer;
  let auth: Record<string, string>;

  before(async () => {
    server = await startCodecServer({ codec, authToken: TOKEN, corsOrigins: [UI, 'http://127.0.0.1:8233'] });
    auth = { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' };
  });
  after(async () => {
    await server.close();
  });

  test('encode and decode round trip in the proto3-JSON shape the Web UI sends', async () => {
    const plain = { metadata: { encoding: b64('json/plain') }, data: b64('"HTTP-MARKER"') };
    const enc = await request(`${server.url}/encode`, { headers: auth, body: JSON.stringify({ payloads: [plain] }) });
    assert.equal(enc.status, 200, enc.body);
    assert.match(String(enc.headers['content-type']), /^application\/json/);
    assert.equal(enc.headers['cache-control'], 'no-store');
    const encrypted = JSON.parse(enc.body) as { payloads: Array<{ metadata: Record<string, string>; data: string }> };
    assert.equal(encrypted.payloads.length, 1);
    assert.equal(Buffer.from(encrypted.payloads[0].metadata.encoding, 'base64').toString(), ENCODING_ENCRYPTED);
    assert.equal(Buffer.from(encrypted.payloads[0].metadata[METADATA_KEY_ID], 'base64').toString(), 'srv-1');
    assert.ok(!enc.body.includes(b64('"HTTP-MARKER"')));

    // The UI calls `<endpoint>/decode` with X-Namespace; a namespace path prefix (CLI templating) works as well.
    const dec = await request(`${server.url}/default/decode`, {
      headers: { ...auth, Origin: UI, 'X-Namespace': 'default' },
      body: enc.body,
    });
    assert.equal(dec.status, 200, dec.body);
    assert.equal(dec.headers['access-control-allow-origin'], UI);
    assert.equal(dec.headers['access-control-allow-credentials'], 'true');
    assert.deepEqual(JSON.parse(dec.body), { payloads: [plain] });

    // Unencrypted payloads are refused (issue 10) unless the server is asked to pass them; `{}` is zero payloads.
    const refused = await request(`${server.url}/decode`, {
      headers: auth,
      body: JSON.stringify({ payloads: [plain] }),
    });
    assert.equal(refused.status, 400);
    assert.match(refused.body, /decode refused: payloads\[0\] is not encrypted/);
    assert.ok(!refused.body.includes(b64('"HTTP-MARKER"')));
    const passing = await startCodecServer({ codec, authToken: TOKEN, corsOrigins: [UI], passPlaintext: true });
    try {
      const passthrough = await request(`${passing.url}/decode`, {
        headers: auth,
        body: JSON.stringify({ payloads: [plain] }),
      });
      assert.deepEqual(JSON.parse(passthrough.body), { payloads: [plain] });
    } finally {
      await passing.close();
    }
    const none = await request(`${server.url}/decode`, { headers: auth, body: '{}' });
    assert.deepEqual(JSON.parse(none.body), { payloads: [] });
  });

  test('401 without or with a wrong bearer token', async () => {
    const body = JSON.stringify({ payloads: [] });
    const cases: Array<Record<string, string>> = [
      { 'Content-Type': 'application/json' },
      { 'Content-Type': 'application/json', Authorization: `Bearer ${TOKEN}x` },
      { 'Content-Type': 'application/json', Authorization: TOKEN },
    ];
    for (const headers of cases) {
      const res = await request(`${server.url}/decode`, { headers, body });
      assert.equal(res.status, 401);
      assert.equal(res.headers['www-authenticate'], 'Bearer');
      assert.ok(!res.body.includes(TOKEN));
    }
  });

  test('CORS preflight: allowed origins get the headers, others 403', async () => {
    const preflight = (origin: string) =>
      request(`${server.url}/decode`, {
        method: 'OPTIONS',
        headers: {
          Origin: origin,
          'Access-Control-Request-Method': 'POST',
          'Access-Control-Request-Headers': 'content-type,x-namespace,authorization',
        },
      });
    const ok = await preflight('http://127.0.0.1:8233');
    assert.equal(ok.status, 204);
    assert.equal(ok.headers['access-control-allow-origin'], 'http://127.0.0.1:8233');
    assert.equal(ok.headers['access-control-allow-headers'], 'Content-Type, Authorization, X-Namespace');
    assert.equal(ok.headers['access-control-allow-methods'], 'POST, OPTIONS');
    assert.equal(ok.headers['access-control-allow-credentials'], 'true');

    for (const origin of ['http://evil.example', 'http://localhost:8234', 'null']) {
      const denied = await preflight(origin);
      assert.equal(denied.status, 403, origin);
      assert.equal(denied.headers['access-control-allow-origin'], undefined);
    }
    const post = await request(`${server.url}/decode`, {
      headers: { ...auth, Origin: 'http://evil.example' },
      body: '{}',
    });
    assert.equal(post.status, 403);
    assert.equal(post.headers['access-control-allow-origin'], undefined);
  });

  test('413 above 4 MiB (declared or streamed), 400 on bad JSON or undecodable payloads, 404/405/415', async () => {
    const big = JSON.stringify({ payloads: [{ data: 'A'.repeat(4 * 1024 * 1024 + 4) }] });
    const declared = await request(`${server.url}/decode`, { headers: auth, body: big });
    assert.equal(declared.status, 413);

    const streamed = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${server.url}/decode`, { method: 'POST', headers: auth }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      const chunk = Buffer.alloc(256 * 1024, 0x41);
      let sent = 0;
      const pump = () => {
        while (sent < 24) {
          sent++;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
    assert.equal(streamed, 413);

    const badJson = await request(`${server.url}/decode`, { headers: auth, body: '{"payloads": [' });
    assert.equal(badJson.status, 400);
    assert.match(badJson.body, /not valid JSON/);
    const badBase64 = await request(`${server.url}/decode`, {
      headers: auth,
      body: JSON.stringify({ payloads: [{ metadata: { encoding: 'json plain!' }, data: 'eA==' }] }),
    });
    assert.equal(badBase64.status, 400);
    assert.match(badBase64.body, /payloads\[0\]\.metadata\.encoding must be a base64 string/);
    const notArray = await request(`${server.url}/decode`, { headers: auth, body: '{"payloads": 5}' });
    assert.equal(notArray.status, 400);

    const [enc] = await codec.encode([jsonPayload('x')]);
    const tampered = Buffer.from(enc.data!);
    tampered[20] ^= 1;
    const undecodable = await request(`${server.url}/decode`, {
      headers: auth,
      body: JSON.stringify({
        payloads: [
          { metadata: { encoding: b64(ENCODING_ENCRYPTED), [METADATA_KEY_ID]: b64('srv-1') }, data: b64(tampered) },
        ],
      }),
    });
    assert.equal(undecodable.status, 400);
    // Generic: neither the loaded key ids nor why the payload did not open.
    assert.deepEqual(JSON.parse(undecodable.body), { error: 'decode failed' });
    assertNoSecrets(undecodable.body, ring.secrets);
    const unknownKey = await request(`${server.url}/decode`, {
      headers: auth,
      body: JSON.stringify({
        payloads: [
          { metadata: { encoding: b64(ENCODING_ENCRYPTED), [METADATA_KEY_ID]: b64('nope') }, data: b64(tampered) },
        ],
      }),
    });
    assert.equal(unknownKey.status, 400);
    assert.ok(!unknownKey.body.includes('srv-1'), unknownKey.body);

    assert.equal((await request(`${server.url}/other`, { headers: auth, body: '{}' })).status, 404);
    assert.equal((await request(`${server.url}/decode`, { method: 'GET', headers: auth })).status, 405);
    const textPlain = await request(`${server.url}/decode`, {
      headers: { Authorization: auth.Authorization, 'Content-Type': 'text/plain' },
      body: '{}',
    });
    assert.equal(textPlain.status, 415);
    // The server is still healthy after all that.
    assert.equal((await request(`${server.url}/decode`, { headers: auth, body: '{}' })).status, 200);
  });

  test('settings from the environment', () => {
    // The token is required (issue 10): only the dev stack runs without one, in-process.
    assert.throws(() => codecServerSettings({}), /^CodecConfigError: MANAGED_SMTP_CODEC_AUTH_TOKEN is required/);
    assert.deepEqual(codecServerSettings({ MANAGED_SMTP_CODEC_AUTH_TOKEN: TOKEN }), {
      port: 8888,
      host: '127.0.0.1',
      authToken: TOKEN,
      corsOrigins: ['http://localhost:8233', 'http://127.0.0.1:8233'],
      passPlaintext: false,
    });
    assert.equal(
      codecServerSettings({ MANAGED_SMTP_CODEC_AUTH_TOKEN: TOKEN, MANAGED_SMTP_CODEC_PASS_PLAINTEXT: '1' })
        .passPlaintext,
      true,
    );
    assert.deepEqual(
      codecServerSettings({
        MANAGED_SMTP_CODEC_PORT: '9999',
        MANAGED_SMTP_CODEC_AUTH_TOKEN: TOKEN,
        MANAGED_SMTP_CODEC_CORS_ORIGINS: 'https://cloud.temporal.io, http://localhost:8080',
      }),
      {
        port: 9999,
        host: '127.0.0.1',
        authToken: TOKEN,
        corsOrigins: ['https://cloud.temporal.io', 'http://localhost:8080'],
        passPlaintext: false,
      },
    );
    assert.throws(
      () => codecServerSettings({ MANAGED_SMTP_CODEC_PORT: '70000' }),
      /^CodecConfigError: MANAGED_SMTP_CODEC_PORT/,
    );
    assert.throws(
      () =>
        codecServerSettings({
          MANAGED_SMTP_CODEC_AUTH_TOKEN: TOKEN,
          MANAGED_SMTP_CODEC_CORS_ORIGINS: 'localhost:8233',
        }),
      /MANAGED_SMTP_CODEC_CORS_ORIGINS: invalid CORS origin/,
    );
    assert.throws(
      () =>
        codecServerSettings({
          MANAGED_SMTP_CODEC_AUTH_TOKEN: TOKEN,
          MANAGED_SMTP_CODEC_CORS_ORIGINS: 'http://localhost:8233/ui',
        }),
      /MANAGED_SMTP_CODEC_CORS_ORIGINS: invalid CORS origin/,
    );
    assert.throws(
      () => codecServerSettings({ MANAGED_SMTP_CODEC_AUTH_TOKEN: 'short' }),
      /MANAGED_SMTP_CODEC_AUTH_TOKEN/,
    );
  });
});

describe('end to end on a Temporal dev server', { timeout: 60_000 }, () => {
  const MARKER = `PLAINTEXT-MARKER-${randomUUID()}`;
  const ring = keyring('e2e-1');
  const codec = codecOf(ring.text);
  let env: TestWorkflowEnvironment;
  let bundle: WorkflowBundleWithSourceMap;

  before(async () => {
    [env, bundle] = await Promise.all([
      startTemporal(),
      bundleWorkflowCode({
        workflowsPath: require.resolve('./fixtures/codec-workflow'),
        logger: new DefaultLogger('WARN'),
      }),
    ]);
  });
  after(async () => {
    await env?.teardown();
  });

  /** Runs the echo workflow with (or without) the codec on both sides; returns its result and raw history bytes. */
  async function run(withCodec: boolean): Promise<{ result: string; history: Buffer; handle: { workflowId: string } }> {
    const dataConverter = dataConverterFor(withCodec ? codec : null);
    const taskQueue = uniqueTaskQueue('codec');
    const client = new Client({ connection: env.connection, namespace: env.namespace ?? 'default', dataConverter });
    const worker = await Worker.create({
      connection: env.nativeConnection,
      namespace: env.namespace ?? 'default',
      taskQueue,
      workflowBundle: bundle,
      activities: { echo: async (text: string) => `echo:${text}` },
      dataConverter,
    });
    const handle = await client.workflow.start(codecEcho, {
      args: [MARKER],
      taskQueue,
      workflowId: `codec-e2e-${randomUUID()}`,
      workflowExecutionTimeout: '30s',
    });
    // Bounded: a codec bug makes workflow tasks fail and retry forever, which must fail the test, not hang it.
    const result = await worker.runUntil(
      Promise.race([
        handle.result(),
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error('workflow did not finish within 20 s')), 20_000).unref(),
        ),
      ]),
    );
    const history = Buffer.from(temporal.api.history.v1.History.encode(await handle.fetchHistory()).finish());
    return { result, history, handle };
  }

  test('history holds only ciphertext, the result is right, and the codec server decodes what the UI sees', async () => {
    const encrypted = await run(true);
    assert.equal(encrypted.result, `echo:${MARKER}!`);
    assert.ok(encrypted.history.length > 0);
    assert.ok(!encrypted.history.includes(MARKER), 'plaintext marker found in the encrypted history');
    assert.ok(!encrypted.history.includes(b64(MARKER).slice(0, 24)));
    assert.ok(encrypted.history.includes(ENCODING_ENCRYPTED));

    // Control: the same run without the codec does store the marker, so the check above can fail.
    const plain = await run(false);
    assert.equal(plain.result, `echo:${MARKER}!`);
    assert.ok(plain.history.includes(MARKER));

    // What the Web UI does: take a payload from the stored history and POST it to the codec server.
    const plainClient = new Client({ connection: env.connection, namespace: env.namespace ?? 'default' });
    const history = await plainClient.workflow.getHandle(encrypted.handle.workflowId).fetchHistory();
    const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
    const stored = started?.input?.payloads?.[0];
    assert.ok(stored);
    assert.equal(Buffer.from(stored.metadata!.encoding!).toString(), ENCODING_ENCRYPTED);
    const server = await startCodecServer({ codec, corsOrigins: ['http://localhost:8233'], insecureNoAuth: true });
    try {
      const json = temporal.api.common.v1.Payload.toObject(temporal.api.common.v1.Payload.fromObject(stored), {
        bytes: String,
      });
      const res = await request(`${server.url}/decode`, {
        headers: { 'Content-Type': 'application/json', 'X-Namespace': 'default', Origin: 'http://localhost:8233' },
        body: JSON.stringify({ payloads: [json] }),
      });
      assert.equal(res.status, 200, res.body);
      const [decoded] = (JSON.parse(res.body) as { payloads: Array<{ data: string }> }).payloads;
      assert.equal(Buffer.from(decoded.data, 'base64').toString(), JSON.stringify(MARKER));
    } finally {
      await server.close();
    }
  });
});
