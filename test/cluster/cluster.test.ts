/**
 * `npm run test:cluster`: managed SMTP on the production topology, not the dev server. Temporal's own server built
 * from source (scripts/cluster.ts) on PostgreSQL with SQL visibility, worker processes started as `npm run worker`
 * starts them, on Worker Deployment versions, against the vendor emulators. Runs the operator's lifecycle through
 * `smtpctl`, then the three things a cluster does to a fleet in production while entities are busy: a worker dies
 * mid-activity, the Temporal server restarts, and a release rolls the workers to a new version. Afterwards every
 * instance is in the state it was asked for, the emulators hold exactly one set of resources per active instance,
 * and no workflow task anywhere failed (no non-determinism on replay across versions).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { ManagedSmtpClient, type RequestHandle } from '../../client';
import { EmulatorStack, specFor, type EmulatedInstance } from '../../emulators/stack';
import { AesGcmCodec, CODEC_KEYS_ENV, dataConverterFor, generateCodecKey, parseCodecKeys } from '../../lib/codec';
import { workflowIdFor } from '../../lib/instance';
import {
  setCurrentVersion,
  spawnWorker,
  startCluster,
  stopWorker,
  type Cluster,
  type WorkerProcess,
} from '../../scripts/cluster';
import { assertCliOutput } from '../helpers/json-schema';
import { quietRuntime, workflowBundle } from '../helpers/temporal';

const root = path.resolve(__dirname, '..', '..');
const TASK_QUEUE = 'managed-smtp';
const DEPLOYMENT = 'managed-smtp';
const STARTED = temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface SparkPostState {
  subaccounts: Array<{ id: number; name: string; status: string }>;
  apiKeys: Array<{ id: string; subaccount_id: number }>;
}

/** Polls `fn` until it returns a value (not undefined), bounded by `timeoutMs`. */
async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`${what}: not within ${timeoutMs / 1000}s${last ? ` (${String(last)})` : ''}`);
    await sleep(250);
  }
}

describe(
  'managed SMTP on a real Temporal cluster (PostgreSQL, temporal-server, worker processes)',
  { timeout: 20 * 60_000 },
  () => {
    let cluster: Cluster;
    let stack: EmulatorStack;
    let client: Client;
    let msc: ManagedSmtpClient;
    let tmp: string;
    let logDir: string;
    /** Set when a test failed: the server and worker logs are kept for reading then. */
    let failed = false;
    let bundlePath: string;
    /** Milliseconds to start the cluster (PostgreSQL, schemas, server, namespace, search attributes), then the workers. */
    let startMs = 0;
    let workersMs = 0;
    const codecKeys = generateCodecKey('cluster-1');
    /** Workers still meant to be running. */
    let workers: WorkerProcess[] = [];
    /** Every worker ever started, for the output scan at the end. */
    const allWorkers: WorkerProcess[] = [];
    /** What each instance was last asked to be. */
    const expected = new Map<string, 'active' | 'disabled'>();
    /** Requests not yet seen finished. */
    const pending = new Map<string, RequestHandle>();
    const instances = new Map<string, EmulatedInstance>();

    const workerEnv = (buildId: string): Record<string, string> => ({
      ...stack.workerEnv(TASK_QUEUE),
      TEMPORAL_ADDRESS: cluster.address,
      TEMPORAL_NAMESPACE: cluster.namespace,
      [CODEC_KEYS_ENV]: codecKeys,
      MANAGED_SMTP_SOURCEGRAPH_URLS: 'http://127.0.0.1:*',
      MANAGED_SMTP_WORKFLOW_BUNDLE: bundlePath,
      MANAGED_SMTP_WORKER_DEPLOYMENT: DEPLOYMENT,
      MANAGED_SMTP_WORKER_BUILD_ID: buildId,
      MANAGED_SMTP_SHUTDOWN_GRACE: '20s',
    });
    const startWorker = async (buildId: string, label: string) => {
      const w = await spawnWorker(workerEnv(buildId), { label, logFile: path.join(logDir, `worker-${label}.log`) });
      workers.push(w);
      allWorkers.push(w);
      return w;
    };
    const addInstance = (name: string) => {
      const i = stack.addInstance(name);
      instances.set(name, i);
      return i;
    };
    const enable = async (name: string) => {
      const h = await msc.enable(name, specFor(instances.get(name) ?? addInstance(name)));
      expected.set(name, 'active');
      pending.set(name, h);
      return h;
    };
    const disable = async (name: string) => {
      const h = await msc.disable(name, 'cluster test');
      expected.set(name, 'disabled');
      pending.set(name, h);
      return h;
    };
    /** Waits until every pending request has finished in the state it asked for. */
    const settle = async (timeoutMs: number) => {
      for (const [name, handle] of pending) {
        const s = await msc.waitFor(handle, { timeoutMs, pollMs: 250 });
        assert.equal(s.state, expected.get(name), `${name}: ${s.error ?? ''}`);
        pending.delete(name);
      }
    };
    /** Some instance has an activity running on a worker right now: its workflow id and the worker's identity. */
    const activityInFlight = (names: string[]) =>
      until('an activity in flight', 60_000, async () => {
        for (const name of names) {
          const d = await client.workflow.getHandle(workflowIdFor(name)).describe();
          const a = (d.raw.pendingActivities ?? []).find((p) => p.state === STARTED && p.lastWorkerIdentity);
          if (a) return { name, identity: a.lastWorkerIdentity!, activity: a.activityType?.name ?? '?' };
        }
        return undefined;
      });

    /**
     * Runs smtpctl as an operator would, in its own process. Asynchronously: the emulators it provisions against live
     * in this process, so a synchronous spawn would block their event loop and every activity would time out.
     */
    function smtpctl(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
      return new Promise((resolve, reject) => {
        execFile(
          process.execPath,
          [path.join(root, 'bin', 'smtpctl.js'), ...args],
          {
            cwd: root,
            encoding: 'utf8',
            timeout: 180_000,
            maxBuffer: 16 * 1024 * 1024,
            env: {
              ...process.env,
              TEMPORAL_ADDRESS: cluster.address,
              TEMPORAL_NAMESPACE: cluster.namespace,
              MANAGED_SMTP_TASK_QUEUE: TASK_QUEUE,
              [CODEC_KEYS_ENV]: codecKeys,
              MANAGED_SMTP_SOURCEGRAPH_URLS: 'http://127.0.0.1:*',
            },
          },
          (err, stdout, stderr) => {
            // A non-zero exit is an answer for the test to check; only a failure to run at all is an error.
            const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
            if (err && code === null && !err.killed) reject(err);
            else {
              try {
                // Every --json document is checked against its published schema (a mismatch fails the test).
                if (!err?.killed) assertCliOutput(args, code, stdout);
              } catch (mismatch) {
                reject(mismatch instanceof Error ? mismatch : new Error(String(mismatch)));
                return;
              }
              resolve({
                code,
                stdout,
                stderr: err?.killed ? `${stderr}\n(killed after 180 s: ${err.signal})` : stderr,
              });
            }
          },
        );
      });
    }
    const sparkpostState = () => stack.sparkpost.snapshot() as SparkPostState;

    before(async () => {
      failed = true; // until the whole setup worked
      quietRuntime();
      tmp = mkdtempSync(path.join(os.tmpdir(), 'managed-smtp-cluster-test-'));
      // One bundle for every worker, as one image would ship: v1 and v2 differ only in build id.
      bundlePath = path.join(tmp, 'workflow-bundle.js');
      writeFileSync(bundlePath, (await workflowBundle()).code);
      logDir = path.join(tmp, 'logs');
      mkdirSync(logDir);
      cluster = await startCluster({ ui: false, logDir, log: (l) => process.stderr.write(`[cluster] ${l}\n`) });
      startMs = cluster.startMs;
      stack = await EmulatorStack.start();
      const workersStarted = Date.now();
      await Promise.all([startWorker('v1', 'v1-a'), startWorker('v1', 'v1-b')]);
      await setCurrentVersion(cluster.connection, cluster.namespace, DEPLOYMENT, 'v1');
      workersMs = Date.now() - workersStarted;
      client = new Client({
        connection: await Connection.connect({ address: cluster.address }),
        namespace: cluster.namespace,
        dataConverter: dataConverterFor(new AesGcmCodec(parseCodecKeys(codecKeys, 'test'))),
      });
      msc = new ManagedSmtpClient(client, TASK_QUEUE);
      failed = false;
    });

    afterEach((t) => {
      // TestContext.passed (Node 20.12+) is missing from this @types/node.
      if ((t as { passed?: boolean }).passed === false) failed = true;
    });

    after(async () => {
      stack?.sparkpost.faults.reset();
      for (const w of allWorkers) w.child.kill('SIGKILL');
      await Promise.all(allWorkers.map((w) => w.exited));
      await client?.connection.close().catch(() => undefined);
      await stack?.close();
      await cluster?.stop();
      if (!tmp) return;
      if (failed) process.stderr.write(`cluster test: server and worker logs kept in ${logDir}\n`);
      else rmSync(tmp, { recursive: true, force: true });
    });

    test('the cluster runs temporal-server on PostgreSQL with SQL visibility and the search attributes', async (t) => {
      const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
      const phases = Object.entries(cluster.timings).map(([k, v]) => `${k} ${secs(v)}`);
      t.diagnostic(
        `cluster started in ${secs(startMs)} (${phases.join(', ')}); two v1 workers polling in ${secs(workersMs)}`,
      );
      const info = await cluster.connection.workflowService.getSystemInfo({});
      assert.match(info.serverVersion ?? '', /^1\.32\./);
      const sa = await cluster.connection.operatorService.listSearchAttributes({ namespace: cluster.namespace });
      assert.ok(sa.storageSchema, 'SQL visibility maps custom attributes to columns');
      for (const name of ['ManagedSmtpInstance', 'ManagedSmtpState']) assert.ok(sa.customAttributes?.[name], name);
      const deployment = await cluster.connection.workflowService.describeWorkerDeployment({
        namespace: cluster.namespace,
        deploymentName: DEPLOYMENT,
      });
      assert.equal(deployment.workerDeploymentInfo?.routingConfig?.currentDeploymentVersion?.buildId, 'v1');
    });

    test('operator lifecycle through smtpctl: enable --wait, status, disable --wait', async () => {
      const demo = addInstance('demo');
      const enabled = await smtpctl(
        '--json',
        'enable',
        'demo',
        '--sourcegraph-url',
        demo.sourcegraphUrl,
        '--gcp-project',
        demo.gcpProject,
        '--wait',
      );
      assert.equal(enabled.code, 0, enabled.stderr);
      assert.equal(JSON.parse(enabled.stdout).state, 'active');
      const status = await smtpctl('status', 'demo');
      assert.equal(status.code, 0, status.stderr);
      assert.match(status.stdout, /^state\s+active$/m);
      const sub = sparkpostState().subaccounts.find((s) => s.name === 'demo');
      assert.equal(sub?.status, 'active');
      // Visibility is written asynchronously after the state change: poll the search-attribute query briefly.
      const listed = await until('demo listed as active', 30_000, async () => {
        const r = await smtpctl('--json', 'list', '--state', 'active');
        assert.equal(r.code, 0, r.stderr);
        const names = (JSON.parse(r.stdout) as Array<{ instance: string }>).map((x) => x.instance);
        return names.length ? names : undefined;
      });
      assert.deepEqual(listed, ['demo'], 'SQL visibility answers the search-attribute query');

      const disabled = await smtpctl('disable', 'demo', '--reason', 'cluster test', '--wait');
      assert.equal(disabled.code, 0, disabled.stderr);
      assert.match(disabled.stdout, /^state\s+disabled$/m);
      expected.set('demo', 'disabled');
      const after = sparkpostState();
      assert.equal(after.subaccounts.find((s) => s.name === 'demo')?.status, 'suspended');
      assert.equal(after.apiKeys.filter((k) => k.subaccount_id === sub?.id).length, 0);
    });

    test('a worker killed mid-activity: the other worker finishes the work, nothing is provisioned twice', async (t) => {
      stack.sparkpost.faults.set({ latencyMs: 1500 });
      const names = ['kill-a', 'kill-b', 'kill-c'];
      for (const n of names) await enable(n);
      const inFlight = await activityInFlight(names);
      const victim = workers.find((w) => inFlight.identity.startsWith(`${w.child.pid}@`));
      assert.ok(victim, `the activity runs on one of our workers (${inFlight.identity})`);
      victim.child.kill('SIGKILL');
      assert.equal(await victim.exited, 'SIGKILL');
      workers = workers.filter((w) => w !== victim);
      t.diagnostic(`killed worker ${inFlight.identity} while ${inFlight.activity} ran for ${inFlight.name}`);
      stack.sparkpost.faults.reset();
      await settle(120_000);
      await startWorker('v1', 'v1-c'); // back to two, as a supervisor would
    });

    test('the Temporal server restarts while entities are busy: they all finish', async (t) => {
      stack.sparkpost.faults.set({ latencyMs: 1000 });
      const names = ['restart-a', 'restart-b', 'restart-c'];
      for (const n of names) await enable(n);
      await disable('kill-a');
      const inFlight = await activityInFlight(names);
      const stoppedAt = Date.now();
      await cluster.server.stop();
      await sleep(1000);
      await cluster.server.start();
      t.diagnostic(
        `server down and up in ${Date.now() - stoppedAt} ms while ${inFlight.activity} ran for ${inFlight.name}`,
      );
      stack.sparkpost.faults.reset();
      await settle(180_000);
    });

    test('rolling upgrade v1 → v2 with worker versioning while entities are busy', async (t) => {
      stack.sparkpost.faults.set({ latencyMs: 800 });
      const names = ['roll-a', 'roll-b', 'roll-c', 'roll-d'];
      for (const n of names) await enable(n);
      await disable('restart-a');
      await activityInFlight(names);

      // The release: new version's workers up, make it current, then drain the old ones one at a time.
      const old = [...workers];
      await Promise.all([startWorker('v2', 'v2-a'), startWorker('v2', 'v2-b')]);
      await setCurrentVersion(cluster.connection, cluster.namespace, DEPLOYMENT, 'v2');
      for (const w of old) {
        const code = await stopWorker(w, 45_000);
        assert.equal(code, 0, `v1 worker drained and exited 0:\n${w.output()}`);
        workers = workers.filter((x) => x !== w);
      }
      t.diagnostic('v2 current, both v1 workers drained');
      stack.sparkpost.faults.reset();
      await settle(180_000);

      // Instances idle since before the release are served by v2 alone (AUTO_UPGRADE): a request to one completes.
      await disable('kill-b');
      await settle(120_000);
      // Only a workflow that had a task after the switch records the new version (idle ones move at their next task).
      for (const n of ['kill-b']) {
        const d = await client.workflow.getHandle(workflowIdFor(n)).describe();
        const version = d.raw.workflowExecutionInfo?.versioningInfo?.deploymentVersion;
        assert.equal(version?.buildId, 'v2', `${n} moved to v2`);
        assert.equal(version?.deploymentName, DEPLOYMENT);
      }
    });

    test('nothing lost, nothing doubled, no workflow task failed in workflow code (no non-determinism)', async (t) => {
      const state = sparkpostState();
      for (const [name, want] of expected) {
        const s = await msc.status(name);
        assert.equal(s.state, want, name);
        const subs = state.subaccounts.filter((x) => x.name === name);
        assert.equal(subs.length, 1, `${name}: exactly one subaccount`);
        const keys = state.apiKeys.filter((k) => k.subaccount_id === subs[0].id);
        assert.equal(subs[0].status, want === 'active' ? 'active' : 'suspended', name);
        assert.equal(keys.length, want === 'active' ? 1 : 0, `${name}: send keys`);
        const secret = stack.secretManager.getSecret(
          `projects/${instances.get(name)!.gcpProject}/secrets/managed-smtp-send-key`,
        );
        assert.equal(Boolean(secret), want === 'active', `${name}: send-key secret`);
      }

      // A failed workflow task caused by our code (non-determinism on replay, an exception in workflow code) is a bug;
      // the server's own causes (a signal racing a completion, a reset sticky queue) are routine and only counted.
      const BUGS = new Set([
        temporal.api.enums.v1.WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR,
        temporal.api.enums.v1.WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE,
      ]);
      let workflows = 0;
      let routine = 0;
      for await (const wf of client.workflow.list({ query: `TaskQueue = '${TASK_QUEUE}'` })) {
        workflows++;
        const history = await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
        const failed = (history.events ?? []).flatMap((e) =>
          e.workflowTaskFailedEventAttributes ? [e.workflowTaskFailedEventAttributes] : [],
        );
        const bugs = failed.filter((f) => f.cause != null && BUGS.has(f.cause));
        routine += failed.length - bugs.length;
        assert.deepEqual(
          bugs.map((f) => [f.cause, f.failure?.message]),
          [],
          `${wf.workflowId}: no workflow task failed in our code`,
        );
      }
      t.diagnostic(`${workflows} workflow histories checked; ${routine} routine workflow task failures`);
      assert.ok(workflows >= expected.size, `${workflows} workflows listed`);
      for (const w of allWorkers) {
        assert.doesNotMatch(w.output(), /nondetermin|TMPRL1100/i, `worker v${w.buildId} output`);
      }
    });
  },
);
