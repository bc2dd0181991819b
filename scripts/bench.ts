/**
 * `npm run bench`: enables N instances on the local stack (a real Temporal dev server, the emulators with vendor
 * latency, a worker process started like `npm run worker`) and, in the same run, N baseline workflows of the same
 * shape whose activities do nothing. Prints instances/s and the ratio to the baseline, p50/p95 time per instance,
 * history events and billable Temporal actions per enable, vendor calls per enable, and the worker's peak memory.
 *
 *   npm run bench -- [--sizes 100,500,2000] [--latency 20] [--concurrency 50]
 *
 * This is a measurement, not a test: it prints numbers and asserts nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { ManagedSmtpClient } from '../client';
import { EmulatorStack, specFor } from '../emulators/stack';
import { workflowIdFor } from '../lib/instance';
import { startTemporal } from '../test/helpers/temporal';
import { benchBaselineWorkflow, goSignal } from './bench-workflows';

const root = path.resolve(__dirname, '..');
const argv = process.argv.slice(2);
const arg = (name: string, dflt: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const sizes = arg('sizes', arg('instances', '500'))
  .split(',')
  .map((n) => Number(n));
const latencyMs = Number(arg('latency', '20'));
const concurrency = Number(arg('concurrency', '50'));
/** Optional V8 heap cap for the worker process: finishing under it shows the live heap stays bounded as N grows. */
const workerHeapMb = Number(arg('worker-heap-mb', '0'));
/** SparkPost's (dynamic, undocumented) rate limit, emulated: requests per second beyond it get 429s. */
const sparkpostLimit = Number(arg('sparkpost-limit', '0'));
/** The worker's activity rate ceiling (MANAGED_SMTP_MAX_ACTIVITIES_PER_SECOND), to show it avoids a 429 storm. */
const activityRate = Number(arg('activity-rate', '0'));
if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 20_000) || !(latencyMs >= 0) || !(concurrency >= 1)) {
  process.stderr.write('bench: --sizes takes whole numbers from 1 to 20000; --latency ms >= 0; --concurrency >= 1\n');
  process.exit(2);
}

/** Event types that Temporal Cloud bills as actions (retries are added from activity attempts). */
const BILLABLE = new Set([
  'EVENT_TYPE_WORKFLOW_EXECUTION_STARTED',
  'EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED',
  'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED',
  'EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES',
  'EVENT_TYPE_TIMER_STARTED',
  'EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED',
  'EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED',
  'EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED',
  'EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW',
]);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function pool<T>(items: T[], limit: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const n = next++;
        await work(items[n], n);
      }
    }),
  );
}

/** Starts a worker process and samples its resident memory until stopped. */
async function startWorkerProcess(script: string, env: NodeJS.ProcessEnv, ready: RegExp) {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  const deadline = Date.now() + 60_000;
  while (!ready.test(output)) {
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`worker did not start:\n${output.slice(-2000)}`);
    await sleep(100);
  }
  let peakRss = 0;
  const rss = () => {
    try {
      const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1];
      return kb ? Number(kb) * 1024 : 0;
    } catch {
      return 0;
    }
  };
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rss())), 200);
  return {
    peak: () => Math.max(peakRss, rss()),
    stop: async () => {
      clearInterval(sampler);
      child.kill('SIGTERM');
      for (let i = 0; i < 100 && child.exitCode === null; i++) await sleep(100);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

async function waitForCount(env: TestWorkflowEnvironment, query: string, n: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { count } = await env.client.workflow.count(query);
    if (count >= n) return;
    if (Date.now() > deadline) throw new Error(`only ${count} of ${n} reached "${query}" in ${timeoutMs / 1000}s`);
    await sleep(250);
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

interface Result {
  n: number;
  instancesPerSecond: number;
  baselinePerSecond: number;
  ratio: number;
  p50Ms: number;
  p95Ms: number;
  eventsPerEnable: number;
  actionsPerEnable: number;
  vendorCallsPerEnable: { sparkpost: number; secretManager: number; sourcegraph: number; total: number };
  workerPeakMiB: number;
  /** 429s SparkPost answered during the managed run. */
  sparkpost429s: number;
}

async function runOnce(n: number): Promise<Result> {
  const env = await startTemporal();
  const stack = await EmulatorStack.start();
  try {
    for (const f of [stack.sparkpost.faults, stack.secretManager.faults, stack.sourcegraph.faults]) {
      f.set({ latencyMs, latencyJitterMs: latencyMs / 2 });
    }
    if (sparkpostLimit > 0) stack.sparkpost.faults.set({ maxPerSecond: sparkpostLimit });
    const instances = Array.from({ length: n }, (_, i) => stack.addInstance(`bench-${i}`));

    // Managed SMTP, through a worker process configured only by its environment.
    const taskQueue = 'bench-managed-smtp';
    const worker = await startWorkerProcess(
      path.join(root, 'worker', 'main.ts'),
      {
        ...stack.workerEnv(taskQueue),
        TEMPORAL_ADDRESS: env.address,
        ...(workerHeapMb > 0 ? { NODE_OPTIONS: `--max-old-space-size=${workerHeapMb}` } : {}),
        ...(activityRate > 0 ? { MANAGED_SMTP_MAX_ACTIVITIES_PER_SECOND: String(activityRate) } : {}),
      },
      /polling task queue/,
    );
    const client = new ManagedSmtpClient(env.client, taskQueue);
    const started = Date.now();
    await pool(instances, concurrency, async (i) => {
      await client.enable(i.name, specFor(i));
    });
    await waitForCount(
      env,
      `WorkflowType = 'managedSmtpWorkflow' AND ManagedSmtpState = 'active'`,
      n,
      60_000 + n * 500,
    );
    const managedSeconds = (Date.now() - started) / 1000;
    const workerPeak = worker.peak();

    // Per-instance time from the workflow's own clock: request received → active.
    const durations: number[] = [];
    await pool(instances, 20, async (i) => {
      const s = await client.status(i.name);
      durations.push(Date.parse(s.updatedAt) - Date.parse(s.requests[0].receivedAt));
    });
    durations.sort((a, b) => a - b);
    await worker.stop();

    let events = 0;
    let actions = 0;
    const sample = instances.slice(0, Math.min(25, n));
    for (const i of sample) {
      const history = await env.client.workflow.getHandle(workflowIdFor(i.name)).fetchHistory();
      for (const e of history.events ?? []) {
        events++;
        const type = temporal.api.enums.v1.EventType[e.eventType ?? 0];
        if (BILLABLE.has(type)) actions++;
        const attempt = e.activityTaskStartedEventAttributes?.attempt ?? 1;
        if (attempt > 1) actions += attempt - 1;
      }
    }
    const calls = {
      sparkpost: stack.sparkpost.faults.requests / n,
      secretManager: stack.secretManager.faults.requests / n,
      sourcegraph: stack.sourcegraph.faults.requests / n,
      total: 0,
    };
    calls.total = calls.sparkpost + calls.secretManager + calls.sourcegraph;
    const sparkpost429s = stack.sparkpost.faults.injected['rate-limit'];

    // Baseline: the same shape with no-op activities, in its own worker process.
    const baseQueue = 'bench-baseline';
    const baseWorker = await startWorkerProcess(
      path.join(root, 'scripts', 'bench-worker.ts'),
      { TEMPORAL_ADDRESS: env.address, MANAGED_SMTP_TASK_QUEUE: baseQueue },
      /bench-worker: polling/,
    );
    const baseStarted = Date.now();
    await pool(instances, concurrency, async (_i, k) => {
      await env.client.workflow.signalWithStart(benchBaselineWorkflow, {
        workflowId: `bench-baseline-${k}`,
        taskQueue: baseQueue,
        signal: goSignal,
        signalArgs: [{ requestId: String(k) }],
      });
    });
    await waitForCount(
      env,
      `WorkflowType = 'benchBaselineWorkflow' AND ExecutionStatus = 'Completed'`,
      n,
      60_000 + n * 500,
    );
    const baselineSeconds = (Date.now() - baseStarted) / 1000;
    await baseWorker.stop();

    return {
      n,
      instancesPerSecond: n / managedSeconds,
      baselinePerSecond: n / baselineSeconds,
      ratio: baselineSeconds / managedSeconds,
      p50Ms: percentile(durations, 50),
      p95Ms: percentile(durations, 95),
      eventsPerEnable: events / sample.length,
      actionsPerEnable: actions / sample.length,
      vendorCallsPerEnable: calls,
      workerPeakMiB: workerPeak / 1024 / 1024,
      sparkpost429s,
    };
  } finally {
    await stack.close();
    await env.teardown();
  }
}

async function main(): Promise<void> {
  console.log(
    `managed-smtp benchmark on ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ` +
      `node ${process.version}; vendor latency ${latencyMs} ms ± ${latencyMs / 2}; ${concurrency} requests in flight` +
      (workerHeapMb > 0 ? `; worker heap capped at ${workerHeapMb} MiB` : '') +
      (sparkpostLimit > 0 ? `; SparkPost limit ${sparkpostLimit} req/s` : '') +
      (activityRate > 0 ? `; activity ceiling ${activityRate}/s` : ''),
  );
  const results: Result[] = [];
  for (const n of sizes) {
    const r = await runOnce(n);
    results.push(r);
    console.log(
      [
        `N=${r.n}`,
        `${r.instancesPerSecond.toFixed(1)} enables/s`,
        `baseline ${r.baselinePerSecond.toFixed(1)}/s`,
        `ratio ${r.ratio.toFixed(2)}`,
        `p50 ${r.p50Ms} ms`,
        `p95 ${r.p95Ms} ms`,
        `${r.eventsPerEnable.toFixed(1)} events/enable`,
        `${r.actionsPerEnable.toFixed(1)} actions/enable`,
        `vendor calls/enable ${r.vendorCallsPerEnable.total.toFixed(1)} (SparkPost ${r.vendorCallsPerEnable.sparkpost.toFixed(1)}, ` +
          `Secret Manager ${r.vendorCallsPerEnable.secretManager.toFixed(1)}, Sourcegraph ${r.vendorCallsPerEnable.sourcegraph.toFixed(1)})`,
        `worker peak ${r.workerPeakMiB.toFixed(0)} MiB`,
        `SparkPost 429s ${r.sparkpost429s}`,
      ].join(' | '),
    );
  }
  console.log(JSON.stringify({ latencyMs, concurrency, results }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
