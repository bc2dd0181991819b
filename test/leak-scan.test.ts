/**
 * Leak scan: the whole lifecycle through the real CLI (`node bin/smtpctl.js`, JSON and human output) against a real
 * worker process — enable, status, list, disable, re-enable, and failed enables with a wrong admin token — then every
 * workflow history (raw bytes of History.encode), every worker log line and every byte the CLI printed is searched
 * for every send key SparkPost ever minted, the operator key, every admin token and the test recipient's address:
 * raw, JSON-quoted, and base64 (standard and URL-safe, at each of the three byte alignments, of the raw and of the
 * JSON-quoted form). Zero allowed.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { EmulatorStack, type EmulatedInstance } from '../emulators/stack';
import { ENCODING_ENCRYPTED, generateCodecKey } from '../lib/codec';
import { findTemporalCli } from '../scripts/temporal-cli';
import { DevServer, REPO_ROOT, WorkerProcess, type WorkerLogLine } from './helpers/chaos';
import { checkInvariants } from './helpers/invariants';
import { assertCliOutput } from './helpers/json-schema';

// issue 13: why, suppression and the webhook receiver handle recipient addresses
import { SparkPostClient } from '../vendors/sparkpost';
import { workflowIdFor } from '../lib/instance';
import { SubaccountListResolver, WebhookService } from '../worker/webhook-service';
import { protectionSignal } from '../contract/messages';

/** Recipients of the leaky instance: they go through why, suppression and the webhooks, and must appear nowhere. */
const RECIPIENTS = {
  delivered: `dana.${randomBytes(4).toString('hex')}@customer.example`,
  bounced: `boris.${randomBytes(4).toString('hex')}@customer.example`,
  complained: `cleo.${randomBytes(4).toString('hex')}@customer.example`,
};
const WEBHOOK_PASSWORD = `webhook-${randomBytes(12).toString('hex')}`;

/** A secret and where it came from (the label is printed, never the value). */
interface Secret {
  label: string;
  value: string;
}

/** A place a secret must not be. */
interface Haystack {
  label: string;
  bytes: Buffer;
}

/**
 * The base64 text that every encoding of `bytes` contains, whatever precedes it: for each alignment, the
 * characters that depend only on `bytes` (the first and last partial groups dropped).
 */
function base64Cores(bytes: Buffer): string[] {
  const out: string[] = [];
  for (let pad = 0; pad < 3; pad++) {
    const all = Buffer.concat([Buffer.alloc(pad), bytes]);
    let b64 = all.toString('base64').replace(/=+$/, '');
    // Chars of the last group also encode whatever follows the secret: drop the partial group.
    const tailBytes = all.length % 3;
    if (tailBytes) b64 = b64.slice(0, b64.length - (tailBytes + 1));
    const core = pad ? b64.slice(4) : b64;
    if (core.length >= 16) out.push(core, core.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  return [...new Set(out)];
}

/** Every form of a secret to look for. */
function needles(value: string): Array<{ form: string; text: Buffer }> {
  const raw = Buffer.from(value, 'utf8');
  const quoted = Buffer.from(JSON.stringify(value), 'utf8');
  return [
    { form: 'raw', text: raw },
    { form: 'json', text: quoted },
    ...base64Cores(raw).map((t) => ({ form: 'base64', text: Buffer.from(t) })),
    ...base64Cores(quoted).map((t) => ({ form: 'base64(json)', text: Buffer.from(t) })),
  ];
}

/** Where each secret was found: "<secret label> as <form> in <haystack label>". Empty means clean. */
function scan(secrets: Secret[], haystacks: Haystack[]): string[] {
  const hits: string[] = [];
  for (const s of secrets) {
    for (const n of needles(s.value)) {
      for (const h of haystacks) if (h.bytes.includes(n.text)) hits.push(`${s.label} as ${n.form} in ${h.label}`);
    }
  }
  return hits;
}

interface CliRun {
  args: string[];
  code: number;
  stdout: string;
  stderr: string;
}

describe('the scanner', () => {
  test('finds a secret planted raw, JSON-quoted and base64 at any offset, and nothing in clean text', () => {
    const secret = randomBytes(20).toString('hex');
    const payload = (prefix: string) => Buffer.from(JSON.stringify({ p: prefix, smtp: { password: secret } }));
    const hay: Haystack[] = [
      { label: 'raw', bytes: Buffer.from(`log line ${secret} end`) },
      ...['', 'a', 'ab', 'abc'].map((p) => ({
        label: `b64-${p.length}`,
        bytes: Buffer.from(payload(p).toString('base64')),
      })),
      { label: 'b64url', bytes: Buffer.from(payload('x').toString('base64url')) },
      { label: 'clean', bytes: Buffer.from(`nothing here ${randomBytes(20).toString('hex')}`) },
    ];
    const hits = scan([{ label: 's', value: secret }], hay);
    for (const h of hay.filter((x) => x.label !== 'clean')) {
      assert.ok(
        hits.some((x) => x.endsWith(` in ${h.label}`)),
        `found in ${h.label}`,
      );
    }
    assert.ok(!hits.some((x) => x.endsWith(' in clean')));
  });
});

describe('leak scan of the whole lifecycle through the CLI and a worker process', { timeout: 600_000 }, () => {
  let stack: EmulatorStack;
  let server: DevServer;
  let worker: WorkerProcess;
  let dir: string;
  const workerLogs: WorkerLogLine[] = [];
  const cliRuns: CliRun[] = [];
  const adminTokens: Secret[] = [];
  const taskQueue = `leak-${randomBytes(4).toString('hex')}`;
  // Payloads and failures encrypted, as in production: the scan proves failure messages are ciphertext too.
  const codecKeys = generateCodecKey('leak-1');
  let good: EmulatedInstance;
  let bad: EmulatedInstance;

  /** Runs smtpctl as a process; `stdin` (GDPR: `--recipients-file -`) is written to it when given. */
  function smtpctl(...args: string[]): Promise<CliRun> {
    return smtpctlWithInput(undefined, ...args);
  }

  function smtpctlWithInput(stdin: string | undefined, ...args: string[]): Promise<CliRun> {
    return new Promise((resolve, reject) => {
      const child = execFile(
        process.execPath,
        [path.join(REPO_ROOT, 'bin', 'smtpctl.js'), ...args],
        {
          cwd: REPO_ROOT,
          timeout: 120_000,
          env: {
            ...process.env,
            TEMPORAL_ADDRESS: server.address,
            MANAGED_SMTP_TASK_QUEUE: taskQueue,
            // issue 11: gdpr-delete writes the per-request secret itself (test/gdpr.test.ts runs it without codec keys).
            SECRET_MANAGER_EMULATOR_HOST: stack.secretManager.address,
            // why, suppression and webhooks install read SparkPost directly (issue 13).
            SPARKPOST_API_KEY: stack.operatorKey,
            SPARKPOST_API_URL: stack.sparkpost.url,
            MANAGED_SMTP_WEBHOOKS_USER: 'sparkpost',
            MANAGED_SMTP_WEBHOOKS_PASSWORD: WEBHOOK_PASSWORD,
            MANAGED_SMTP_SOURCEGRAPH_URLS: stack.workerEnv().MANAGED_SMTP_SOURCEGRAPH_URLS,
            MANAGED_SMTP_CODEC_KEYS: codecKeys,
          },
        },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
          const run = { args, code, stdout: String(stdout), stderr: String(stderr) };
          cliRuns.push(run);
          try {
            assertCliOutput(args, code, run.stdout);
          } catch (e) {
            reject(e);
            return;
          }
          resolve(run);
        },
      );
      if (stdin !== undefined) child.stdin?.end(stdin);
      else child.stdin?.end();
    });
  }

  function enableArgs(i: EmulatedInstance, ...extra: string[]): string[] {
    return ['enable', i.name, '--sourcegraph-url', i.sourcegraphUrl, '--gcp-project', i.gcpProject, ...extra];
  }

  before(async () => {
    const cli = findTemporalCli({ quiet: false });
    if (!cli) throw new Error('no temporal CLI binary (scripts/temporal-cli.ts)');
    dir = mkdtempSync(path.join(os.tmpdir(), 'managed-smtp-leak-'));
    stack = await EmulatorStack.start();
    server = await DevServer.start({ cli, dbFile: path.join(dir, 'leak.db') });
    worker = await WorkerProcess.start({
      name: 'worker',
      env: {
        ...stack.workerEnv(taskQueue),
        TEMPORAL_ADDRESS: server.address,
        TEMPORAL_NAMESPACE: 'default',
        // Debug logs say the most about what the workflows and activities handle.
        MANAGED_SMTP_LOG_LEVEL: 'DEBUG',
        MANAGED_SMTP_CODEC_KEYS: codecKeys,
      },
      sink: workerLogs,
    });
    const goodToken = `sgp_${randomBytes(20).toString('hex')}`;
    good = stack.addInstance('leaky', { adminToken: goodToken });
    adminTokens.push({ label: 'admin token of leaky', value: goodToken });
    const badToken = `sgp_${randomBytes(20).toString('hex')}`;
    bad = stack.addInstance('wrongtoken', { adminToken: badToken });
    adminTokens.push({ label: 'admin token of wrongtoken', value: badToken });
    // The token in Secret Manager is not the instance's: every call is refused with 401.
    const wrong = `sgp_${randomBytes(20).toString('hex')}`;
    stack.secretManager.seed('projects/sg-wrongtoken/secrets/sourcegraph-admin-token', wrong);
    adminTokens.push({ label: 'wrong admin token', value: wrong });
  });

  after(async () => {
    await worker?.stop('SIGTERM');
    await server?.stop('SIGTERM');
    await stack?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('enable, status, list, disable, re-enable and failed enables all behave', async () => {
    const enabled = await smtpctl(...enableArgs(good, '--wait', '--json'));
    assert.equal(enabled.code, 0, enabled.stderr);
    assert.equal(JSON.parse(enabled.stdout).state, 'active');

    for (const args of [['status', good.name, '--json'], ['status', good.name], ['list', '--json'], ['list']]) {
      const r = await smtpctl(...args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    }
    const disabled = await smtpctl('disable', good.name, '--reason', 'leak scan', '--wait');
    assert.equal(disabled.code, 0, disabled.stderr);
    assert.match(disabled.stdout, /disabled/);

    const again = await smtpctl(...enableArgs(good, '--sender-name', 'Leak Scan', '--wait'));
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /active/);
    const status = await smtpctl('status', good.name);
    assert.equal(status.code, 0, status.stderr);

    const failedJson = await smtpctl(...enableArgs(bad, '--wait', '--json'));
    assert.equal(failedJson.code, 1);
    assert.match(JSON.parse(failedJson.stdout).error, /SourcegraphAuthError/);
    const failedHuman = await smtpctl(...enableArgs(bad, '--wait'));
    assert.equal(failedHuman.code, 1);
    assert.match(failedHuman.stderr, /inspect-site-config/);
    const badStatus = await smtpctl('status', bad.name, '--json');
    assert.equal(JSON.parse(badStatus.stdout).state, 'failed');

    const inv = checkInvariants(stack, [
      { name: good.name, gcpProject: good.gcpProject },
      { name: bad.name, gcpProject: bad.gcpProject, expect: 'absent' },
    ]);
    assert.equal(inv.converged, 2, JSON.stringify(inv.findings.map((f) => f.problems)));
  });

  const serviceLogs: string[] = [];

  test('why, suppression and the webhook receiver handle recipients (issue 13)', async () => {
    const status = JSON.parse((await smtpctl('status', good.name, '--json')).stdout);
    const sub = status.subaccountId as number;
    const connection = await Connection.connect({ address: server.address });
    const client = new Client({ connection, namespace: 'default' });
    const sparkpost = new SparkPostClient({ baseUrl: stack.sparkpost.url, apiKey: stack.operatorKey });
    const service = await WebhookService.start({
      username: 'sparkpost',
      password: WEBHOOK_PASSWORD,
      flushMs: 500,
      resolver: new SubaccountListResolver(sparkpost),
      signal: (instance, request) =>
        client.workflow.getHandle(workflowIdFor(instance)).signal(protectionSignal, request),
      log: (l) => serviceLogs.push(l),
    });
    try {
      const installed = await smtpctl('webhooks', 'install', '--url', `${service.origin}/events`);
      assert.equal(installed.code, 0, installed.stderr);
      stack.sparkpost.addEvents(sub, [
        { type: 'delivery', rcpt_to: RECIPIENTS.delivered },
        {
          type: 'bounce',
          rcpt_to: RECIPIENTS.bounced,
          bounce_class: '10',
          reason: `550 5.1.1 <${RECIPIENTS.bounced}>: user unknown`,
          raw_reason: `550 5.1.1 <${RECIPIENTS.bounced}>: user unknown`,
        },
        ...Array.from({ length: 5 }, () => ({ type: 'spam_complaint', rcpt_to: RECIPIENTS.complained })),
      ]);
      for (let i = 0; i < 100 && service.signals.get('result="sent"') === 0; i++) {
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.ok(service.signals.get('result="sent"') > 0, 'the burst was signalled');
      for (const r of Object.values(RECIPIENTS)) {
        for (const json of [[], ['--json']]) {
          const why = await smtpctl('why', good.name, r, ...json);
          assert.equal(why.code, 0, why.stderr);
        }
      }
      for (const json of [[], ['--json']])
        assert.equal((await smtpctl('suppression', 'list', good.name, ...json)).code, 0);
      const removed = await smtpctl('suppression', 'remove', good.name, RECIPIENTS.bounced, '--reason', 'leak scan');
      assert.equal(removed.code, 0, removed.stderr);
      const refused = await smtpctl(
        'suppression',
        'remove',
        good.name,
        RECIPIENTS.complained,
        '--reason',
        'x',
        '--json',
      );
      assert.equal(refused.code, 1);
      const forced = await smtpctl(
        'suppression',
        'remove',
        good.name,
        RECIPIENTS.complained,
        '--reason',
        'x',
        '--force',
      );
      assert.equal(forced.code, 0, forced.stderr);
      const notListed = await smtpctl('suppression', 'remove', good.name, RECIPIENTS.delivered, '--reason', 'x');
      assert.equal(notListed.code, 1);
      for (const json of [[], ['--json']])
        assert.equal((await smtpctl('protection', 'status', good.name, ...json)).code, 0);
      const after = JSON.parse((await smtpctl('status', good.name, '--json')).stdout);
      assert.equal(after.suppressionAudit.length, 3, 'removed, refused, removed with --force');
      assert.equal(after.protection.level, 'warning');
      serviceLogs.push(await (await fetch(`${service.origin}/metrics`)).text());
    } finally {
      await service.close();
      await connection.close();
    }
  });

  /** issue 11: addresses that went through GDPR requests and offboarding; none may show up anywhere either. */
  const gdprAddresses: string[] = [];
  /** The live send key and the site configuration that held it, before offboarding revoked and restored them. */
  const beforeOffboard = { liveKey: undefined as string | undefined, siteConfig: Buffer.alloc(0) };

  test('GDPR paths: gdpr-delete (flags, file on stdin, a stubborn recipient), gdpr-status, offboard', async () => {
    const tag = randomBytes(4).toString('hex');
    const addr = (label: string) => {
      const a = `${label}.${tag}@leak-${randomBytes(3).toString('hex')}.example.org`;
      gdprAddresses.push(a);
      return a;
    };
    const [a, b, c, d, stubborn] = ['flag-a', 'flag-b', 'stdin-c', 'stdin-d', 'stubborn'].map(addr);
    const known = Array.from({ length: 30 }, (_, i) => addr(`known${i}`));
    const subaccountId = stack.sparkpost.state.subaccounts.find(
      (x) => x.name === good.name && x.status === 'active',
    )!.id;
    // Hostile vendor data: bounce reasons that quote the address.
    stack.sparkpost.addEvents(subaccountId, [
      ...[a, b, c, d, stubborn].map((rcpt) => ({
        type: 'bounce',
        rcpt_to: rcpt,
        bounce_class: '10',
        reason: `550 5.1.1 <${rcpt}>: Recipient address rejected`,
        raw_reason: `550 5.1.1 <${rcpt}>: Recipient address rejected`,
      })),
      ...known.map((rcpt) => ({ type: 'delivery', rcpt_to: rcpt })),
    ]);
    stack.sparkpost.resistRtbf(subaccountId, stubborn, 5);

    const flags = await smtpctl(
      'gdpr-delete',
      good.name,
      '--recipient',
      a,
      '--recipient',
      b,
      '--verify-after',
      '1',
      '--wait',
      '--json',
    );
    assert.equal(flags.code, 0, flags.stderr);
    assert.equal(JSON.parse(flags.stdout).found, 0);
    const fromStdin = await smtpctlWithInput(
      `# request 7\n${c}\n\n${d}\n`,
      'gdpr-delete',
      good.name,
      '--recipients-file',
      '-',
      '--verify-after',
      '1',
      '--wait',
    );
    assert.equal(fromStdin.code, 0, fromStdin.stderr);
    assert.match(fromStdin.stdout, /list destroyed at/);
    const stuck = await smtpctl('gdpr-delete', good.name, '--recipient', stubborn, '--verify-after', '1', '--wait');
    assert.equal(stuck.code, 1);
    assert.match(stuck.stderr, /1 recipients were still found after re-filing once/);
    const badLine = await smtpctlWithInput(
      `${a}\nnot an address\n`,
      'gdpr-delete',
      good.name,
      '--recipients-file',
      '-',
    );
    assert.equal(badLine.code, 2);
    assert.match(badLine.stderr, /line 2 is not an email address/);
    for (const args of [
      ['gdpr-status', good.name, '--json'],
      ['gdpr-status', good.name],
    ]) {
      const r = await smtpctl(...args);
      assert.equal(r.code, 0, r.stderr);
    }

    beforeOffboard.liveKey = stack.sparkpost.state.apiKeys.find((k) => k.label === 'send_key')?.key;
    beforeOffboard.siteConfig = Buffer.from(stack.sourcegraph.site(good.name).config);
    const off = await smtpctl('offboard', good.name, '--wait', '--json');
    assert.equal(off.code, 0, off.stderr);
    assert.equal(JSON.parse(off.stdout).state, 'complete');
    const refused = await smtpctl(...enableArgs(good, '--wait'));
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /offboarded/);
    assert.equal(stack.sparkpost.state.subaccounts.find((x) => x.id === subaccountId)?.status, 'terminated');
    const managed = stack.secretManager
      .listSecretNames()
      .map((n) => stack.secretManager.getSecret(n)!.labels)
      .filter((l) => l['managed-by'] === 'managed-smtp' && l.instance === good.name);
    assert.deepEqual(managed, [], 'no secret managed-smtp made for the instance is left');
  });

  test('no secret in any workflow history, worker log line or CLI output', async (t) => {
    const minted = stack.sparkpost.mintedKeys;
    assert.ok(minted.length >= 2, 'enable and re-enable each minted a key');
    // Offboarding (the GDPR test) revoked it: the key and site configuration of before are kept for the control.
    const liveKey = beforeOffboard.liveKey;
    assert.ok(liveKey && minted.some((m) => m.key === liveKey), 'the log holds the keys SparkPost handed out');
    const secrets: Secret[] = [
      ...minted.map((m, n) => ({ label: `send key #${n + 1} (id ${m.id})`, value: m.key })),
      { label: 'operator key', value: stack.operatorKey },
      ...adminTokens,
      { label: 'payload codec key', value: codecKeys.slice(codecKeys.indexOf(':') + 1) },
      // Not a secret, but recipient addresses stay out of histories, logs and output too.
      { label: 'test recipient address', value: stack.workerConfig().testRecipient },
      ...Object.entries(RECIPIENTS).map(([k, v]) => ({ label: `${k} recipient address`, value: v })),
      { label: 'webhook basic-auth password', value: WEBHOOK_PASSWORD },
      ...gdprAddresses.map((value, n) => ({ label: `GDPR recipient #${n + 1}`, value })),
    ];

    const haystacks: Haystack[] = [];
    const connection = await Connection.connect({ address: server.address });
    try {
      const client = new Client({ connection, namespace: 'default' });
      let executions = 0;
      for await (const wf of client.workflow.list()) {
        if (++executions > 1000) break;
        const history = await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
        const bytes = Buffer.from(temporal.api.history.v1.History.encode(history).finish());
        haystacks.push({ label: `history of ${wf.workflowId} run ${wf.runId}`, bytes });
      }
      assert.ok(executions >= 2, `histories of both instances (found ${executions})`);
    } finally {
      await connection.close();
    }
    assert.ok(workerLogs.length > 0, 'the worker logged');
    workerLogs.forEach((l, n) =>
      haystacks.push({ label: `worker ${l.stream} line ${n + 1}`, bytes: Buffer.from(l.line) }),
    );
    for (const r of cliRuns) {
      haystacks.push({ label: `stdout of smtpctl ${r.args.slice(0, 2).join(' ')}`, bytes: Buffer.from(r.stdout) });
      haystacks.push({ label: `stderr of smtpctl ${r.args.slice(0, 2).join(' ')}`, bytes: Buffer.from(r.stderr) });
    }
    assert.ok(cliRuns.length >= 10, 'the lifecycle ran through the CLI');
    serviceLogs.forEach((l, n) => haystacks.push({ label: `webhook service output ${n + 1}`, bytes: Buffer.from(l) }));

    // Positive control: the live key is where it belongs, in the raw site configuration, and the scan sees it.
    const siteConfig = { label: 'raw site config', bytes: beforeOffboard.siteConfig };
    assert.equal(scan([{ label: 'live key', value: liveKey }], [siteConfig]).length, 2, 'raw and JSON-quoted');

    const hits = scan(secrets, haystacks);
    const bytes = haystacks.reduce((n, h) => n + h.bytes.length, 0);
    t.diagnostic(
      `scanned ${haystacks.length} haystacks (${bytes} bytes: histories, ${workerLogs.length} worker log lines, ` +
        `${cliRuns.length} CLI runs) for ${secrets.length} secrets (${minted.length} minted keys) in ${secrets.reduce((n, s) => n + needles(s.value).length, 0)} forms`,
    );
    assert.deepEqual(hits, [], `secrets leaked:\n${hits.join('\n')}`);
  });

  test('failure messages and stack traces are ciphertext in history (encodeCommonAttributes)', async (t) => {
    const connection = await Connection.connect({ address: server.address });
    let failures = 0;
    const plaintext: string[] = [];
    try {
      const client = new Client({ connection, namespace: 'default' });
      let executions = 0;
      for await (const wf of client.workflow.list()) {
        if (++executions > 1000) break;
        const history = await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
        for (const e of history.events ?? []) {
          // Every failure in the event, its causes included (an activity failure wraps the application failure).
          let f = e.activityTaskFailedEventAttributes?.failure ?? e.workflowExecutionFailedEventAttributes?.failure;
          for (let depth = 0; f && depth < 10; depth++, f = f.cause) {
            failures++;
            const encoding = Buffer.from(f.encodedAttributes?.metadata?.encoding ?? []).toString();
            if (f.message !== 'Encoded failure' || f.stackTrace || encoding !== ENCODING_ENCRYPTED) {
              plaintext.push(`${wf.workflowId} event ${String(e.eventId)}: ${JSON.stringify(f.message)} (${encoding})`);
            }
          }
        }
        // The failing enable's own words (HTTP 401 from the instance) appear nowhere in the raw history.
        const bytes = Buffer.from(temporal.api.history.v1.History.encode(history).finish());
        for (const needle of ['HTTP 401', 'SiteConfiguration:']) {
          if (bytes.includes(needle)) plaintext.push(`${wf.workflowId}: "${needle}" in the raw history`);
        }
      }
    } finally {
      await connection.close();
    }
    t.diagnostic(`${failures} failures in history, all encrypted`);
    // Control: the wrong-token enables failed their activity at least twice, so there were failures to look at.
    assert.ok(failures >= 2, `failures found: ${failures}`);
    assert.deepEqual(plaintext, []);
  });
});
