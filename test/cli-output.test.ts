/**
 * smtpctl's output as tooling uses it: multi-megabyte `--json` and `--ndjson` through a slow pipe arrive whole (the
 * process drains stdout instead of exiting early), `list` pages with the visibility API's tokens, every document
 * validates against its published schema (schemas/), and `--help` loads neither Temporal, zod nor a command module.
 * 600 instances are stand-in entity workflows (test/fixtures/list-workflows.ts) on a real dev server.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Help } from 'commander';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { workflowIdFor } from '../lib/instance';
import { INSTANCE_KEY } from '../lib/search-attributes';
import { OUTPUT_SCHEMAS, type OutputSchemaName } from '../client/output-schemas';
import { buildProgram, COMMAND_MODULES } from '../client/smtpctl';
import { schemaFileText, SCHEMAS_DIR } from '../scripts/build-schemas';
import {
  assertCliOutput,
  assertMatchesSchema,
  cliSchemaOf,
  parseJsonDocument,
  parseNdjson,
  schemaProblem,
} from './helpers/json-schema';
import { startTemporal, uniqueTaskQueue } from './helpers/temporal';
import type { FakeInstanceInput } from './fixtures/list-workflows';

const root = path.resolve(__dirname, '..');
const FLEET = 600;
/** Characters of padding per listed instance: 600 × ~5.6 KB ≈ 3.4 MB of `list --json`. */
const PADDING = 5000;
const BIG = 'big-status';
/** The one instance whose status alone is 1.5 MB. */
const BIG_PADDING = 1_500_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs smtpctl (its TypeScript entry, the same main() as bin/smtpctl.js) with stdout read slowly: one chunk, then a
 * pause, so the pipe is full most of the time, as when a script reads and processes as it goes.
 */
function smtpctlSlow(env: NodeJS.ProcessEnv, ...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'client', 'smtpctl.ts'), ...args], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
    child.stdout.on('data', (c: Buffer) => {
      out.push(c);
      child.stdout.pause();
      setTimeout(() => child.stdout.resume(), 15);
    });
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      try {
        assertCliOutput(args, code, stdout);
      } catch (e) {
        reject(e);
        return;
      }
      resolve({ code, stdout, stderr: err });
    });
  });
}

describe('smtpctl output for tooling', { timeout: 900_000 }, () => {
  test('schemas/ holds exactly what client/output-schemas.ts generates', () => {
    for (const name of Object.keys(OUTPUT_SCHEMAS) as OutputSchemaName[]) {
      const file = path.join(SCHEMAS_DIR, `${name}.schema.json`);
      assert.equal(
        readFileSync(file, 'utf8'),
        schemaFileText(name),
        `${file} is stale: run npx tsx scripts/build-schemas.ts`,
      );
    }
  });

  test('schemas/ publishes no schema that client/output-schemas.ts no longer defines', () => {
    const files = readdirSync(SCHEMAS_DIR).filter((f) => f.endsWith('.schema.json'));
    assert.deepEqual(
      files.sort(),
      Object.keys(OUTPUT_SCHEMAS)
        .map((n) => `${n}.schema.json`)
        .sort(),
    );
  });

  test('the validator rejects a document that lacks a required field, naming the schema and the JSON path', () => {
    const stats = {
      schemaVersion: 1,
      scope: 'instance',
      instance: 'acme',
      subaccountId: 7,
      from: '2026-11-28T00:00:00.000Z',
      to: null,
      accepted: 10,
      delivered: 9,
      bounces: 1,
      hardBounces: 0,
      targeted: 10,
      bounceRate: 0.1,
    };
    // The valid document passes, so what follows fails for the missing field and nothing else.
    assert.equal(schemaProblem('stats', stats), null);
    const { accepted: _dropped, ...withoutAccepted } = stats;
    const oneLine = /^output does not match schemas\/stats\.schema\.json: \$\.accepted: [^\n]+$/;
    assert.throws(() => assertMatchesSchema('stats', withoutAccepted), { message: oneLine });
    // The same check guards every CLI run of the suite (World.cli and the runners call it).
    assert.throws(
      () => assertCliOutput(['stats', 'acme', '--json'], 0, JSON.stringify(withoutAccepted) + '\n'),
      /schemas\/stats\.schema\.json: \$\.accepted:/,
    );
    // Nested: the fleet's rows are checked too.
    const fleet = {
      schemaVersion: 1,
      scope: 'fleet',
      from: stats.from,
      to: null,
      rows: [
        {
          instance: 'acme',
          subaccountId: 7,
          delivered: 9,
          bounces: 1,
          hardBounces: 0,
          targeted: 10,
          bounceRate: '10%',
        },
      ],
      listed: 1,
      omitted: 0,
      totals: { accepted: 10, delivered: 9, bounces: 1, hardBounces: 0, targeted: 10, bounceRate: 0.1 },
      plan: null,
    };
    assert.throws(() => assertMatchesSchema('stats', fleet), /\$\.rows\[0\]\.(accepted|bounceRate):/);
    // A schemaVersion-only document no longer passes for a command's output.
    assert.throws(() => assertCliOutput(['--json', 'check-fleet', '--schedule', '1h'], 0, '{"schemaVersion":1}\n'));
  });

  test('every published schema but list-entry is what some smtpctl invocation prints', () => {
    const invocations = [
      ['status', 'a'],
      ['enable', 'a'],
      ['enable', 'a', '--wait'],
      ['list'],
      ['list', '--limit', '5'],
      ['list', '--ndjson'],
      ['check', 'a'],
      ['check-fleet'],
      ['check-fleet', '--schedule', '1h'],
      ['enable-fleet', 'f.yaml'],
      ['enable-fleet', 'f.yaml', '--dry-run'],
      ['gdpr-delete', 'a', '--all-recipients'],
      ['gdpr-delete', 'a', '--all-recipients', '--wait'],
      ['gdpr-status', 'a'],
      ['offboard', 'a'],
      ['offboard', 'a', '--wait'],
      ['stats'],
      ['stats', '--all', '--ndjson'],
      ['alerts', 'schedule'],
      ['alerts', 'run-once'],
      ['sending-domain', 'add', 'a', 'mail.acme.com'],
      ['sending-domain', 'verify', 'a'],
      ['sending-domain', 'show', 'a'],
      ['ip-pool', 'assign', 'a', 'p'],
      ['why', 'a', 'x@y.z'],
      ['suppression', 'list', 'a'],
      ['suppression', 'remove', 'a', 'x@y.z'],
      ['webhooks', 'install'],
      ['protection', 'status', 'a'],
      ['no-such-command'],
    ];
    const printed = new Set(invocations.map((argv) => cliSchemaOf([...argv, '--json'])));
    const published = Object.keys(OUTPUT_SCHEMAS).filter((n) => n !== 'list-entry');
    assert.deepEqual(
      [...published].filter((n) => !printed.has(n)),
      [],
    );
    assert.equal(cliSchemaOf(['status', 'a']), null, 'human output has no schema');
  });

  test("the top-level help's summaries are what each command module registers", async () => {
    const silent = { out: () => {}, err: () => {} };
    const help = new Help();
    const core = new Set(buildProgram(silent).program.commands.map((c) => c.name()));
    for (const m of COMMAND_MODULES) for (const c of m.commands) core.delete(c.name);
    for (const m of COMMAND_MODULES) {
      // Only this module loaded: its commands are real, the other modules' are summaries.
      const { program } = buildProgram(silent, undefined, new Map([[m, await m.load()]]));
      const others = new Set(COMMAND_MODULES.filter((o) => o !== m).flatMap((o) => o.commands.map((c) => c.name)));
      const registered = program.commands.map((c) => c.name()).filter((n) => !core.has(n) && !others.has(n));
      assert.deepEqual(
        registered,
        m.commands.map((c) => c.name),
        'each command the module registers has a summary',
      );
      for (const s of m.commands) {
        const real = program.commands.find((c) => c.name() === s.name)!;
        assert.equal(s.term, help.subcommandTerm(real), `term of ${s.name}`);
        assert.equal(s.description, real.description(), `description of ${s.name}`);
      }
    }
  });

  test('--help loads neither the Temporal client, zod, yaml nor a command module', () => {
    const script = `
      const { runCli } = require(${JSON.stringify(path.join(root, 'client', 'smtpctl.ts'))});
      runCli(['--help'], { out: () => {}, err: () => {} }).then((code) => {
        const heavy = Object.keys(require.cache).filter((k) =>
          /node_modules[\\\\/](@temporalio|zod|yaml|@grpc|@google-cloud)[\\\\/]|client[\\\\/](index|connection|validation|commands[\\\\/])/.test(k));
        process.stdout.write(JSON.stringify({ code, heavy }));
      });`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { cwd: root, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { code: 0, heavy: [] });
  });

  test('bad paging input exits 2 with one line naming the argument and a schema-valid error document', async () => {
    const env = { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:1' };
    for (const [args, pattern] of [
      [['list', '--limit', '0'], /invalid --limit/],
      [['list', '--limit', '1001'], /invalid --limit/],
      [['list', '--page-token', 'abc'], /invalid --page-token: needs --limit/],
      [['list', '--limit', '5', '--page-token', 'not a token!'], /invalid --page-token/],
    ] as Array<[string[], RegExp]>) {
      const r = await smtpctlSlow(env, '--json', ...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, pattern);
      assert.match(parseJsonDocument<{ error: string }>('error', r.stdout).error, pattern);
    }
  });

  describe('against a dev server with 600 instances', () => {
    let env: TestWorkflowEnvironment;
    let worker: Worker;
    let running: Promise<void>;
    let cliEnv: NodeJS.ProcessEnv;

    before(async () => {
      env = await startTemporal();
      const taskQueue = uniqueTaskQueue('cli-output');
      worker = await Worker.create({
        connection: env.nativeConnection,
        taskQueue,
        workflowsPath: require.resolve('./fixtures/list-workflows'),
        maxCachedWorkflows: FLEET + 10,
      });
      running = worker.run();
      const start = (instance: string, padding: number) =>
        env.client.workflow.start('managedSmtpWorkflow', {
          workflowId: workflowIdFor(instance),
          taskQueue,
          args: [{ instance, padding } satisfies FakeInstanceInput],
          typedSearchAttributes: [{ key: INSTANCE_KEY, value: instance }],
        });
      const names = Array.from({ length: FLEET }, (_, i) => `inst-${String(i).padStart(3, '0')}`);
      for (let i = 0; i < names.length; i += 25) {
        await Promise.all(names.slice(i, i + 25).map((n) => start(n, PADDING)));
      }
      await start(BIG, BIG_PADDING);
      const query = `WorkflowType = 'managedSmtpWorkflow' AND ExecutionStatus = 'Running'`;
      for (let i = 0; i < 300; i++) {
        if ((await env.client.workflow.count(query)).count === FLEET + 1) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      // Every stand-in has run its first workflow task (answers queries) before the listings start.
      const all = [...names, BIG];
      for (let i = 0; i < all.length; i += 20) {
        await Promise.all(
          all.slice(i, i + 20).map(async (n) => {
            for (let attempt = 0; ; attempt++) {
              try {
                return await env.client.workflow.getHandle(workflowIdFor(n)).query('status');
              } catch (err) {
                if (attempt >= 20) throw err;
                await new Promise((r) => setTimeout(r, 500));
              }
            }
          }),
        );
      }
      cliEnv = {
        ...process.env,
        TEMPORAL_ADDRESS: env.address,
        TEMPORAL_NAMESPACE: 'default',
        MANAGED_SMTP_CODEC_KEYS: '',
        MANAGED_SMTP_CODEC_KEY_SECRET: '',
      };
    });

    after(async () => {
      worker?.shutdown();
      await running;
      await env?.teardown();
    });

    test('list --json: every instance, whole, through a slow pipe, valid against the schema', async () => {
      const r = await smtpctlSlow(cliEnv, '--json', 'list');
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.length > 3 * 2 ** 20, `multi-megabyte output (${r.stdout.length} bytes)`);
      const list = parseJsonDocument<Array<{ instance: string; warnings: string[] }>>('list', r.stdout);
      assert.equal(list.length, FLEET + 1);
      assert.equal(new Set(list.map((s) => s.instance)).size, FLEET + 1);
      const big = list.find((s) => s.instance === BIG);
      assert.equal(big?.warnings.join('').length, BIG_PADDING);
    });

    test('list --ndjson: one valid status a line, all of them', async () => {
      const r = await smtpctlSlow(cliEnv, 'list', '--ndjson');
      assert.equal(r.code, 0, r.stderr);
      const lines = parseNdjson<{ instance: string }>('list-ndjson-line', r.stdout);
      assert.equal(lines.length, FLEET + 1);
      for (const l of lines) assertMatchesSchema('list-entry', l);
      assert.equal(new Set(lines.map((s) => s.instance)).size, FLEET + 1);
    });

    test('list --limit pages through the fleet with the printed tokens, no instance twice', async () => {
      const seen: string[] = [];
      let token: string | null = null;
      let pages = 0;
      do {
        const r = await smtpctlSlow(
          cliEnv,
          '--json',
          'list',
          '--limit',
          '250',
          ...(token ? ['--page-token', token] : []),
        );
        assert.equal(r.code, 0, r.stderr);
        const page = parseJsonDocument<{ instances: Array<{ instance: string }>; nextPageToken: string | null }>(
          'list-page',
          r.stdout,
        );
        assert.ok(page.instances.length <= 250);
        seen.push(...page.instances.map((s) => s.instance));
        token = page.nextPageToken;
        pages++;
      } while (token && pages < 10);
      assert.equal(pages, 3);
      assert.equal(seen.length, FLEET + 1);
      assert.equal(new Set(seen).size, FLEET + 1);

      // NDJSON pages end with a token line while there is more.
      const first = await smtpctlSlow(cliEnv, 'list', '--ndjson', '--limit', '100');
      const lines = parseNdjson<{ instance?: string; nextPageToken?: string }>('list-ndjson-line', first.stdout);
      assert.equal(lines.length, 101);
      assert.ok(lines.at(-1)?.nextPageToken);
      const human = await smtpctlSlow(cliEnv, 'list', '--limit', '100');
      assert.equal(human.stdout.trim().split('\n').length, 100);
      assert.match(human.stderr, /^next page: smtpctl list --limit 100 --page-token \S+$/m);
    });

    test('status --json of a 1.5 MB status arrives whole through a slow pipe', async () => {
      const r = await smtpctlSlow(cliEnv, '--json', 'status', BIG);
      assert.equal(r.code, 0, r.stderr);
      const status = parseJsonDocument<{ instance: string; warnings: string[] }>('status', r.stdout);
      assert.equal(status.instance, BIG);
      assert.equal(status.warnings.join('').length, BIG_PADDING);
    });

    test('a missing instance: exit 1, the INTERFACE sentence, a schema-valid error document', async () => {
      const r = await smtpctlSlow(cliEnv, '--json', 'status', 'nobody');
      assert.equal(r.code, 1);
      assert.match(parseJsonDocument<{ error: string }>('error', r.stdout).error, /no managed SMTP workflow/);
    });
  });
});
