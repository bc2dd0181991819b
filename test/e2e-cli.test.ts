/**
 * End to end as an operator does it: `npm run dev` (the real dev stack in its own process), then `smtpctl` as real
 * processes (the built bin/smtpctl.js). Checks the emulators' state after enable and after disable, the exit codes,
 * bad input, and that every `--json` output validates against its published schema.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { STACK_SOURCEGRAPH_URLS } from '../emulators/stack';
import { ensureBuilt } from './helpers/built';
import { assertCliOutput, parseJsonDocument, parseNdjson } from './helpers/json-schema';

const root = path.resolve(__dirname, '..');
const OFFSET = 21_000;
const TEMPORAL = `127.0.0.1:${7233 + OFFSET}`;
const STATE_URL = `http://127.0.0.1:${4000 + OFFSET}/`;
const SOURCEGRAPH = `http://127.0.0.1:${3080 + OFFSET}/demo`;
/** `enable` of the dev stack's demo instance, before any extra arguments. */
const ENABLE_DEMO = ['enable', 'demo', '--sourcegraph-url', SOURCEGRAPH, '--gcp-project', 'sg-demo-project'];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The codec key the dev stack printed (`export MANAGED_SMTP_CODEC_KEYS=...`). */
let codecKeys = '';

function smtpctl(...args: string[]): Run {
  const r = spawnSync(process.execPath, [path.join(root, 'bin', 'smtpctl.js'), ...args], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: TEMPORAL,
      MANAGED_SMTP_TASK_QUEUE: 'managed-smtp',
      MANAGED_SMTP_CODEC_KEYS: codecKeys,
      // What the dev stack prints next to the codec key: the emulators are on loopback.
      MANAGED_SMTP_SOURCEGRAPH_URLS: STACK_SOURCEGRAPH_URLS,
    },
  });
  assertCliOutput(args, r.status, r.stdout);
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function emulatorState(): Promise<{
  sparkpost: {
    subaccounts: Array<{ id: number; name: string; status: string }>;
    apiKeys: Array<{ id: string; label: string; grants: string[]; subaccount_id: number }>;
    messages: Array<{ keyId: string; subaccountId: number; from: string }>;
  };
  secretManager: { secrets: Array<{ name: string; versions: Array<{ state: string; payload?: string }> }> };
  sourcegraph: unknown;
}> {
  const res = await fetch(STATE_URL);
  return (await res.json()) as never;
}

describe('smtpctl against npm run dev', { timeout: 240_000 }, () => {
  let dev: ChildProcess;
  let devOutput = '';

  before(async () => {
    ensureBuilt();
    dev = spawn('npm', ['run', 'dev', '--', '--port-offset', String(OFFSET)], {
      cwd: root,
      detached: true, // its own process group, so the server and worker it starts stop with it
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    dev.stdout?.on('data', (c: Buffer) => (devOutput += c.toString()));
    dev.stderr?.on('data', (c: Buffer) => (devOutput += c.toString()));
    const deadline = Date.now() + 120_000;
    while (!devOutput.includes('dev stack is ready') && Date.now() < deadline) {
      if (dev.exitCode !== null) throw new Error(`npm run dev exited early:\n${devOutput}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(devOutput.includes('dev stack is ready'), `dev stack not ready:\n${devOutput}`);
    codecKeys = /export MANAGED_SMTP_CODEC_KEYS=(\S+)/.exec(devOutput)?.[1] ?? '';
  });

  after(async () => {
    if (dev?.pid) {
      try {
        process.kill(-dev.pid, 'SIGTERM');
      } catch {
        // already gone
      }
      await new Promise((r) => setTimeout(r, 1000));
      try {
        process.kill(-dev.pid, 'SIGKILL');
      } catch {
        // stopped cleanly
      }
    }
  });

  test('the dev stack prints the UI address, the codec key and a ready smtpctl line', () => {
    assert.match(codecKeys, /^dev-1:[A-Za-z0-9+/=]{44}$/);
    assert.match(devOutput, new RegExp(`--ui-codec-endpoint|Codec server\\s+http://127\\.0\\.0\\.1:${8888 + OFFSET}`));
    assert.match(devOutput, new RegExp(`http://127\\.0\\.0\\.1:${8233 + OFFSET}/namespaces/default/workflows`));
    assert.match(devOutput, /npx smtpctl enable demo --sourcegraph-url \S+\/demo --gcp-project sg-demo-project --wait/);
  });

  test('bad input exits 2 with one line naming the argument, and creates nothing', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['enable', 'Demo_1', '--sourcegraph-url', SOURCEGRAPH, '--gcp-project', 'sg-demo-project'], /invalid instance/],
      [
        ['enable', 'demo', '--sourcegraph-url', 'ftp://x', '--gcp-project', 'sg-demo-project'],
        /invalid --sourcegraph-url/,
      ],
      [['enable', 'demo', '--sourcegraph-url', SOURCEGRAPH, '--gcp-project', 'X'], /invalid --gcp-project/],
      [['enable', 'demo', '--gcp-project', 'sg-demo-project'], /--sourcegraph-url/],
      [[...ENABLE_DEMO, '--admin-token-secret', 'x'], /invalid --admin-token-secret/],
      [['status', 'x'], /invalid instance/],
      [['disable', 'demo', '--timeout', '-1'], /invalid --timeout/],
      [['list', '--state', 'bogus'], /invalid --state/],
      [['frobnicate'], /unknown command/],
    ];
    for (const [args, pattern] of cases) {
      const r = smtpctl(...args);
      assert.equal(r.code, 2, `${args.join(' ')} → ${r.code}: ${r.stderr}`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `one line for ${args.join(' ')}: ${r.stderr}`);
      assert.match(lines[0], pattern);
    }
    const json = smtpctl(
      '--json',
      'enable',
      'NOPE',
      '--sourcegraph-url',
      SOURCEGRAPH,
      '--gcp-project',
      'sg-demo-project',
    );
    assert.equal(json.code, 2);
    assert.match(parseJsonDocument<{ error: string }>('error', json.stdout).error, /invalid instance/);
    const state = await emulatorState();
    assert.equal(state.sparkpost.subaccounts.length, 0, 'nothing created');
  });

  test('status of an instance with no workflow exits 1 with the INTERFACE sentence', () => {
    const r = smtpctl('status', 'nothing-here');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no managed SMTP workflow for instance nothing-here/);
    const json = smtpctl('--json', 'status', 'nothing-here');
    assert.equal(json.code, 1);
    assert.match(parseJsonDocument<{ error: string }>('error', json.stdout).error, /no managed SMTP workflow/);
  });

  test('enable --wait reaches active and the emulators hold exactly what it provisioned', async () => {
    const r = smtpctl('--json', ...ENABLE_DEMO, '--wait');
    assert.equal(r.code, 0, r.stderr);
    const status = parseJsonDocument<{
      state: string;
      sender: string;
      secretVersion: string;
      lastTestEmail: { ok: boolean };
    }>('status', r.stdout);
    assert.equal(status.state, 'active');
    assert.equal(status.sender, 'noreply+demo@cloud.sourcegraph.com');
    assert.match(status.secretVersion, /^projects\/sg-demo-project\/secrets\/managed-smtp-send-key\/versions\/\d+$/);
    assert.equal(status.lastTestEmail.ok, true);

    const state = await emulatorState();
    const subs = state.sparkpost.subaccounts.filter((s) => s.name === 'demo');
    assert.equal(subs.length, 1);
    assert.equal(subs[0].status, 'active');
    const keys = state.sparkpost.apiKeys.filter((k) => k.subaccount_id === subs[0].id);
    assert.equal(keys.length, 1);
    assert.equal(keys[0].label, 'send_key');
    assert.deepEqual(keys[0].grants, ['smtp/inject']);
    const secret = state.secretManager.secrets.find((s) => s.name.endsWith('/managed-smtp-send-key'));
    assert.ok(secret);
    assert.equal(secret.versions.filter((v) => v.state === 'ENABLED').length, 1);
    const sent = state.sparkpost.messages.filter((m) => m.subaccountId === subs[0].id);
    assert.equal(sent.length, 1);
    assert.equal(sent[0].keyId, keys[0].id, 'the relay accepted the test email with the send key');

    const human = smtpctl('status', 'demo');
    assert.equal(human.code, 0);
    assert.match(human.stdout, /^state\s+active$/m);
    assert.match(human.stdout, /^sender\s+noreply\+demo@cloud\.sourcegraph\.com$/m);

    const listed = smtpctl('--json', 'list', '--state', 'active');
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(
      parseJsonDocument<Array<{ instance: string }>>('list', listed.stdout).map((s) => s.instance),
      ['demo'],
    );
    const statusJson = smtpctl('--json', 'status', 'demo');
    assert.equal(parseJsonDocument<{ state: string }>('status', statusJson.stdout).state, 'active');
    const ndjson = smtpctl('list', '--ndjson', '--limit', '10');
    assert.equal(ndjson.code, 0, ndjson.stderr);
    assert.deepEqual(
      parseNdjson<{ instance: string }>('list-ndjson-line', ndjson.stdout).map((s) => s.instance),
      ['demo'],
    );
    const checked = smtpctl('--json', 'check', 'demo');
    assert.equal(checked.code, 0, checked.stderr);
    assert.ok(
      parseJsonDocument<{ findings: Array<{ ok: boolean }> }>('check', checked.stdout).findings.every((f) => f.ok),
    );
  });

  test('without the codec key, smtpctl says the payloads are encrypted', () => {
    const saved = codecKeys;
    codecKeys = '';
    try {
      const r = smtpctl('status', 'demo');
      assert.equal(r.code, 1);
      assert.match(r.stderr, /payloads are encrypted: set MANAGED_SMTP_CODEC_KEYS/);
    } finally {
      codecKeys = saved;
    }
  });

  test('disable without --wait prints the request; --wait undoes all of it', async () => {
    const requested = smtpctl('--json', 'disable', 'demo', '--reason', 'e2e');
    assert.equal(requested.code, 0, requested.stderr);
    assert.equal(parseJsonDocument<{ requested: string }>('request', requested.stdout).requested, 'disable');
    const r = smtpctl('disable', 'demo', '--reason', 'e2e', '--wait');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^state\s+disabled$/m);
    const state = await emulatorState();
    const subs = state.sparkpost.subaccounts.filter((s) => s.name === 'demo');
    assert.equal(subs.length, 1);
    assert.equal(subs[0].status, 'suspended');
    assert.equal(state.sparkpost.apiKeys.filter((k) => k.subaccount_id === subs[0].id).length, 0);
    assert.equal(
      state.secretManager.secrets.some((s) => s.name.endsWith('/managed-smtp-send-key')),
      false,
      'secret deleted',
    );
  });

  test('a wrong admin token: enable --wait exits 1 with the reason, nothing left behind', async () => {
    const r = smtpctl(
      ...ENABLE_DEMO,
      '--admin-token-secret',
      'projects/sg-demo-project/secrets/no-such-token/versions/latest',
      '--wait',
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, /enable failed at inspect-site-config/);
    const state = await emulatorState();
    assert.equal(state.sparkpost.apiKeys.length, 0);
    assert.equal(state.sparkpost.subaccounts.filter((s) => s.status === 'active').length, 0);
  });
});
