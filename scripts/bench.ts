/**
 * `npm run bench`: measures managed SMTP on the local stack and prints numbers (it asserts nothing). Every part runs
 * in a process of its own: a Temporal dev server, the emulators (scripts/bench-emulators.ts, with vendor latency),
 * the worker (the package.json `worker` command, so whatever `npm run worker` runs is what is measured), the plain
 * script peer (scripts/bench-peer.ts) and the no-op baseline worker (scripts/bench-worker.ts).
 *
 *   npm run bench -- [--latency 20] [--compare 8,32] [--sizes 300,2000] [--concurrency 50] [--fleet 5000]
 *
 * Sections, in one run:
 * - worker: start-up time (spawn to polling) and idle RSS after start.
 * - peer: the same vendor calls of an enable from a plain script (no Temporal, the same clients, the same
 *   concurrency) against managed SMTP, closed loop at each `--compare` concurrency: throughput ratio, per-instance
 *   latency against the critical path (the plain script's time for one enable alone, i.e. the sum of its sequential
 *   vendor latencies), worker CPU seconds per enable and peak RSS; the no-op baseline as a second reference.
 * - sizes: N enables with `--concurrency` in flight: enables/s, p50/p95, worker peak RSS and peak V8 heap used.
 * - cost: history events and billable actions per enable, Temporal actions per instance per idle day with the default
 *   schedules, and the largest payload any workflow wrote (all counted from real histories).
 * - `--fleet N` instead runs the fleet check over N instances seeded directly into the emulators and the dev server.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { NativeConnection } from '@temporalio/worker';
import { ManagedSmtpClient } from '../client';
import { ensureBounceAlertSchedule, runBounceAlertOnce } from '../client/commands/deliverability';
import { specFor, type EmulatedInstance } from '../emulators/stack';
import { workflowIdFor } from '../lib/instance';
import { INSTANCE_KEY, STATE_KEY, STEP_KEY } from '../lib/search-attributes';
import type { InstanceStatus } from '../lib/types';
import { actionsOfUpdate, billableActions, eventType, scanPayloads } from '../test/helpers/actions';
import { startTemporal } from '../test/helpers/temporal';
import { startTimeSkipping } from '../test/helpers/time-skipping';
import { loadWorkerConfig } from '../worker/config';
import { createManagedSmtpWorker, vendorDeps } from '../worker/worker';
import { fleetCheckWorkflow, type FleetCheckInput, type FleetCheckReport } from '../workflows/fleet';
import { managedSmtpWorkflow } from '../workflows';
import { emptyStatus } from '../workflows/instance/entity';
import { benchBaselineWorkflow, goSignal } from './bench-workflows';
import type { EmulatorCounters, EmulatorRequest } from './bench-emulators';
import type { PeerRun } from './bench-peer';

const root = path.resolve(__dirname, '..');

const numberList = (max: number) =>
  z
    .string()
    .transform((s) => s.split(',').map(Number))
    .pipe(z.array(z.number().int().min(1).max(max)).min(1));
const argsSchema = z.object({
  latency: z.coerce.number().min(0).max(10_000).default(20),
  compare: numberList(500).default([8, 32]),
  /** Enables per peer comparison run: this many times the concurrency. */
  rounds: z.coerce.number().int().min(1).max(100).default(4),
  sizes: numberList(20_000).default([300]),
  concurrency: z.coerce.number().int().min(1).max(1000).default(50),
  fleet: z.coerce.number().int().min(1).max(50_000).optional(),
  /** direct: start entities with their state (fast); enable: seed through `enable` (slow, any workflow shape). */
  'fleet-seed': z.enum(['direct', 'enable']).default('direct'),
  'fleet-interval-hours': z.coerce.number().positive().default(1),
  'worker-heap-mb': z.coerce.number().int().min(0).default(0),
  'sparkpost-limit': z.coerce.number().int().min(0).default(0),
  'activity-rate': z.coerce.number().min(0).default(0),
  'skip-cost': z.boolean().default(false),
});
type Args = z.infer<typeof argsSchema>;

function parseArgs(argv: string[]): Args {
  const raw: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].replace(/^--/, '');
    if (name === argv[i]) throw new Error(`unexpected argument ${argv[i]}`);
    if (name === 'skip-cost') raw[name] = true;
    else raw[name === 'instances' ? 'sizes' : name] = argv[++i] ?? '';
  }
  const r = argsSchema.strict().safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new Error(`--${issue.path.join('.') || '?'}: ${issue.message}`);
  }
  return r.data;
}

let args: Args;
try {
  args = parseArgs(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
}

/** Event types that Temporal Cloud bills as actions (retries are added from activity attempts). */
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MiB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const eventMs = (e: HistoryEvent) => Number(e.eventTime?.seconds ?? 0) * 1000 + (e.eventTime?.nanos ?? 0) / 1e6;

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

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

// ---------------------------------------------------------------------------------------------------------------
// Child processes

/** A child process driven over IPC (`{ id, ... }` → `{ id, result | error }`). */
class IpcChild {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private output = '';

  private constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (c: Buffer) => (this.output = (this.output + c.toString()).slice(-4000)));
    child.stderr?.on('data', (c: Buffer) => (this.output = (this.output + c.toString()).slice(-4000)));
    child.on('message', (m: { id?: number; result?: unknown; error?: string }) => {
      const w = m.id === undefined ? undefined : this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id!);
      if (m.error !== undefined) w.reject(new Error(m.error));
      else w.resolve(m.result);
    });
    child.on('exit', () => {
      for (const w of this.waiting.values()) w.reject(new Error(`child exited:\n${this.output}`));
      this.waiting.clear();
    });
  }

  /** Starts `script` through tsx and waits for its `{ ready: true }`. */
  static async start(script: string, env: NodeJS.ProcessEnv = {}): Promise<IpcChild> {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'scripts', script)], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    const c = new IpcChild(child);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${script} did not start:\n${c.output}`)), 120_000);
      child.on('message', (m: { ready?: boolean }) => {
        if (m.ready) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${script} exited with ${code}:\n${c.output}`));
      });
    });
    return c;
  }

  call<R>(message: object): Promise<R> {
    const id = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ ...message, id });
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    this.child.disconnect();
    for (let i = 0; i < 50 && this.child.exitCode === null; i++) await sleep(100);
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

/** The emulator process. */
class Emulators {
  private constructor(private readonly c: IpcChild) {}
  static async start(): Promise<Emulators> {
    return new Emulators(await IpcChild.start('bench-emulators.ts'));
  }
  call<R>(req: EmulatorRequest): Promise<R> {
    return this.c.call<R>(req);
  }
  async add(prefix: string, n: number): Promise<EmulatedInstance[]> {
    const out: EmulatedInstance[] = [];
    for (let i = 0; i < n; i += 500) {
      const names = Array.from({ length: Math.min(500, n - i) }, (_, k) => `${prefix}-${i + k}`);
      out.push(...(await this.call<EmulatedInstance[]>({ op: 'add', names })));
    }
    return out;
  }
  counters(): Promise<EmulatorCounters> {
    return this.call({ op: 'counters' });
  }
  stop(): Promise<void> {
    return this.c.stop();
  }
}

/** Every process in the tree under `pid` (tsx runs the script in a child of its own). */
function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const todo = [pid];
  while (todo.length && out.length < 64) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/** Resident memory of the tree, in bytes. */
function treeRss(pids: number[]): number {
  let total = 0;
  for (const p of pids) {
    try {
      total += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0) * 1024;
    } catch {
      // exited
    }
  }
  return total;
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** User + system CPU seconds used so far by the processes of the tree. */
function treeCpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const p of pids) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
    } catch {
      // exited
    }
  }
  return ticks / CLOCK_TICKS;
}

/**
 * Loaded into the worker's node processes through NODE_OPTIONS (`--require`), in every thread: writes the thread's
 * V8 heap use to a file every 500 ms, so the benchmark reports heap used (all threads summed) without touching the
 * worker's code (one file per thread: the workflow thread has a heap of its own). Plain CommonJS, so it
 * loads whether the worker runs through tsx or as built JavaScript.
 */
const HEAP_PROBE = `
const fs = require('node:fs');
const path = require('node:path');
// One file per thread: --require runs this in the workflow thread too, which has a V8 heap of its own.
const file = path.join(process.env.BENCH_HEAP_DIR, process.pid + '-' + require('node:worker_threads').threadId + '.json');
const write = () => {
  const m = process.memoryUsage();
  try { fs.writeFileSync(file, JSON.stringify({ heapUsed: m.heapUsed })); } catch {}
};
setInterval(write, 500).unref();
write();
`;

/** A worker process, its memory and CPU sampled from /proc. */
interface RunningWorker {
  startupMs: number;
  /** RSS a few seconds after it started polling, before any work. */
  idleRss: number;
  /** Peak RSS and heap since the last resetPeaks(). */
  peak(): { rss: number; heapUsed: number };
  resetPeaks(): void;
  cpuSeconds(): number;
  stop(): Promise<void>;
}

/** The command of the package.json `worker` script (`npm run worker`), run the way npm runs it. */
function workerCommand(): string {
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: { worker: string } };
  return pkg.scripts.worker;
}

async function startWorkerProcess(
  label: string,
  command: string,
  env: NodeJS.ProcessEnv,
  ready: RegExp,
): Promise<RunningWorker> {
  const heapDir = mkdtempSync(path.join(os.tmpdir(), 'bench-heap-'));
  const probe = path.join(heapDir, 'probe.cjs');
  writeFileSync(probe, HEAP_PROBE);
  const nodeOptions = [
    process.env.NODE_OPTIONS ?? '',
    `--require ${probe}`,
    args['worker-heap-mb'] > 0 ? `--max-old-space-size=${args['worker-heap-mb']}` : '',
  ].join(' ');
  const started = performance.now();
  // `exec`: the shell becomes the command, so the process tree is the worker's alone.
  const child = spawn('sh', ['-c', `exec ${command}`], {
    cwd: root,
    env: {
      ...process.env,
      PATH: `${path.join(root, 'node_modules', '.bin')}${path.delimiter}${process.env.PATH ?? ''}`,
      ...env,
      NODE_OPTIONS: nodeOptions.trim(),
      BENCH_HEAP_DIR: heapDir,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (c: Buffer) => (output = (output + c.toString()).slice(-8000)));
  child.stderr?.on('data', (c: Buffer) => (output = (output + c.toString()).slice(-8000)));
  const deadline = Date.now() + 180_000;
  while (!ready.test(output)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${label} did not start:\n${output.slice(-2000)}`);
    }
    await sleep(20);
  }
  const startupMs = performance.now() - started;
  // A worker that dies mid-run (out of memory, a crash) would leave the run waiting on enables nobody works on.
  let stopping = false;
  child.on('exit', (code, signal) => {
    if (stopping) return;
    console.error(`\n${label} exited during the run (code ${code}, signal ${signal}):\n${output.slice(-3000)}`);
    // Stop the dev server and the other children too, or they outlive the benchmark.
    void tearDown().finally(() => process.exit(1));
  });
  let pids = processTree(child.pid!);
  await sleep(3000); // settle: what an idle, polling worker holds
  pids = processTree(child.pid!);
  const idleRss = treeRss(pids);
  const heapNow = () => {
    let used = 0;
    for (const f of readdirSync(heapDir).filter((f) => f.endsWith('.json'))) {
      try {
        const h = JSON.parse(readFileSync(path.join(heapDir, f), 'utf8')) as { heapUsed: number };
        // The process's heap is the sum of its threads' (the main thread and the workflow thread).
        used += h.heapUsed;
      } catch {
        // being written
      }
    }
    return { used };
  };
  let peakRss = 0;
  let peakHeap = 0;
  const sample = () => {
    peakRss = Math.max(peakRss, treeRss(pids));
    peakHeap = Math.max(peakHeap, heapNow().used);
  };
  let ticks = 0;
  const sampler = setInterval(() => {
    if (++ticks % 25 === 0) pids = processTree(child.pid!);
    sample();
  }, 200);
  return {
    startupMs,
    idleRss,
    peak: () => {
      sample();
      return { rss: peakRss, heapUsed: peakHeap };
    },
    resetPeaks: () => {
      peakRss = treeRss(pids);
      peakHeap = heapNow().used;
    },
    cpuSeconds: () => treeCpuSeconds(pids),
    stop: async () => {
      stopping = true;
      clearInterval(sampler);
      child.kill('SIGTERM');
      for (let i = 0; i < 150 && child.exitCode === null; i++) await sleep(100);
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(heapDir, { recursive: true, force: true });
    },
  };
}

async function startManagedWorker(emulators: Emulators, address: string, taskQueue: string) {
  const env = await emulators.call<Record<string, string>>({ op: 'worker-env', taskQueue });
  return startWorkerProcess(
    'worker',
    workerCommand(),
    {
      ...env,
      TEMPORAL_ADDRESS: address,
      ...(args['activity-rate'] > 0 ? { MANAGED_SMTP_MAX_ACTIVITIES_PER_SECOND: String(args['activity-rate']) } : {}),
    },
    /polling task queue/,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Waiting for enables without loading the worker being measured (a status query is a workflow task on it): one
// visibility query every WATCH_MS for all enables in flight finds the finished ones; each one's latency is read
// afterwards from its history (the server time of the upsert that set its final state).

const FINAL_STATES = ['active', 'failed', 'customer-managed'];
const WATCH_MS = 100;

function upsertedState(e: HistoryEvent): string | null {
  const p = e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields?.[STATE_KEY.name];
  if (!p?.data) return null;
  try {
    return JSON.parse(Buffer.from(p.data).toString('utf8')) as string;
  } catch {
    return null;
  }
}

/** Resolves a promise per workflow id once visibility shows its state final. */
class CompletionWatcher {
  private readonly waiting = new Map<string, (state: string) => void>();
  private timer: NodeJS.Timeout | null = null;
  private busy = false;

  constructor(private readonly client: Client) {}

  wait(workflowId: string, timeoutMs: number): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiting.delete(workflowId);
        reject(new Error(`${workflowId} did not finish its enable in ${timeoutMs / 1000}s`));
      }, timeoutMs);
      this.waiting.set(workflowId, (state) => {
        clearTimeout(t);
        resolve(state);
      });
      this.timer ??= setInterval(() => void this.tick(), WATCH_MS);
    });
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    if (this.waiting.size === 0) {
      clearInterval(this.timer!);
      this.timer = null;
      return;
    }
    this.busy = true;
    try {
      const ids = [...this.waiting.keys()].map((id) => `'${id}'`).join(', ');
      const states = FINAL_STATES.map((st) => `'${st}'`).join(', ');
      const query = `WorkflowId IN (${ids}) AND ${STATE_KEY.name} IN (${states})`;
      for await (const wf of this.client.workflow.list({ query })) {
        const done = this.waiting.get(wf.workflowId);
        this.waiting.delete(wf.workflowId);
        done?.(String(wf.typedSearchAttributes.get(STATE_KEY) ?? 'active'));
      }
    } catch {
      // a failed poll is retried at the next tick
    } finally {
      this.busy = false;
    }
  }
}

/** Server time (ms) of the upsert that set the first final state in the workflow's history. */
async function finishedAt(client: Client, workflowId: string): Promise<number> {
  for (const e of await historyOf(client, workflowId)) {
    const state = upsertedState(e);
    if (state && FINAL_STATES.includes(state)) return eventMs(e);
  }
  return NaN;
}

interface ClosedLoopResult {
  wallMs: number;
  latencies: number[];
  failed: number;
}

/** Enables every instance through managed SMTP with `concurrency` enables in flight (each waits for its end). */
async function managedClosedLoop(
  client: ManagedSmtpClient,
  instances: EmulatedInstance[],
  concurrency: number,
): Promise<ClosedLoopResult> {
  const watcher = new CompletionWatcher(client.temporal);
  const starts: Array<{ workflowId: string; t0: number }> = [];
  let failed = 0;
  const started = Date.now();
  await pool(instances, concurrency, async (i) => {
    const t0 = Date.now();
    const { workflowId } = await client.enable(i.name, specFor(i));
    starts.push({ workflowId, t0 });
    if ((await watcher.wait(workflowId, 600_000)) !== 'active') failed++;
  });
  const wallMs = Date.now() - started;
  const latencies: number[] = [];
  await pool(
    starts,
    10,
    async ({ workflowId, t0 }) => void latencies.push((await finishedAt(client.temporal, workflowId)) - t0),
  );
  return { wallMs, latencies, failed };
}

/** The no-op baseline, closed loop like managedClosedLoop. */
async function baselineClosedLoop(
  client: Client,
  taskQueue: string,
  n: number,
  concurrency: number,
): Promise<ClosedLoopResult> {
  const latencies: number[] = [];
  const started = Date.now();
  await pool(
    Array.from({ length: n }, (_, k) => k),
    concurrency,
    async (k) => {
      const t0 = Date.now();
      const handle = await client.workflow.signalWithStart(benchBaselineWorkflow, {
        workflowId: `bench-baseline-${randomUUID()}`,
        taskQueue,
        signal: goSignal,
        signalArgs: [{ requestId: String(k) }],
      });
      await handle.result();
      latencies.push(Date.now() - t0);
    },
  );
  return { wallMs: Date.now() - started, latencies, failed: 0 };
}

// ---------------------------------------------------------------------------------------------------------------
// Histories: events, actions, payloads

interface HistoryFigures {
  events: number;
  actions: number;
}

/** The largest set of payloads one history event carries (what Temporal's payload size limits apply to). */
interface PayloadRecord {
  bytes: number;
  workflow: string;
  event: string;
}
let largestPayload: PayloadRecord = { bytes: 0, workflow: '-', event: '-' };

function recordPayloads(workflow: string, events: HistoryEvent[]): void {
  for (const e of events) {
    scanPayloads(e, (bytes) => {
      if (bytes > largestPayload.bytes) largestPayload = { bytes, workflow, event: eventType(e) };
    });
  }
}

async function historyOf(client: Client, workflowId: string, runId?: string): Promise<HistoryEvent[]> {
  const h = await client.workflow.getHandle(workflowId, runId).fetchHistory();
  return h.events ?? [];
}

/** Events and actions per enable, from a sample of entity histories (each holds exactly one enable). */
async function enableHistories(client: Client, instances: EmulatedInstance[]): Promise<HistoryFigures> {
  const sample = instances.slice(0, 25);
  let events = 0;
  let actions = 0;
  for (const i of sample) {
    const h = await historyOf(client, workflowIdFor(i.name));
    recordPayloads('managedSmtpWorkflow', h);
    events += h.length;
    actions += billableActions(h);
  }
  return { events: events / sample.length, actions: actions / sample.length };
}

// ---------------------------------------------------------------------------------------------------------------
// Sections

function header(): void {
  console.log(
    `managed-smtp benchmark on ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ` +
      `node ${process.version}, load average ${os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(
          ' ',
        )} at start; vendor latency ${args.latency} ms ± ${args.latency / 2} (emulators in their own process); ` +
      `worker command: ${workerCommand()}` +
      (args['worker-heap-mb'] > 0 ? `; worker heap capped at ${args['worker-heap-mb']} MiB` : '') +
      (args['sparkpost-limit'] > 0 ? `; SparkPost limit ${args['sparkpost-limit']} req/s` : '') +
      (args['activity-rate'] > 0 ? `; activity ceiling ${args['activity-rate']}/s` : ''),
  );
}

interface Ctx {
  env: TestWorkflowEnvironment;
  emulators: Emulators;
  peer: IpcChild;
  results: Record<string, unknown>;
}

/** Every managed worker of a run polls this queue, so each entity has a worker whenever one runs (fleet check). */
const MANAGED_QUEUE = 'bench-managed-smtp';

let instanceSeq = 0;
const freshInstances = (ctx: Ctx, n: number) => ctx.emulators.add(`bench${instanceSeq++}`, n);

async function peerRun(ctx: Ctx, instances: EmulatedInstance[], concurrency: number): Promise<PeerRun> {
  const r = await ctx.peer.call<PeerRun>({ op: 'run', instances, concurrency });
  const failed = r.enables.filter((e) => e.error);
  // A peer that failed did less work: its rate would make any ratio meaningless, so the run stops here.
  if (failed.length) throw new Error(`the plain script failed ${failed.length} enables, e.g. ${failed[0].error}`);
  return r;
}

/** Peer comparison at each concurrency, low-load latency against the critical path, and the no-op baseline. */
async function compareSection(ctx: Ctx): Promise<void> {
  const taskQueue = MANAGED_QUEUE;
  const worker = await startManagedWorker(ctx.emulators, ctx.env.address, taskQueue);
  console.log(
    `\n== worker: start-up ${(worker.startupMs / 1000).toFixed(2)} s (spawn to polling), idle RSS ${MiB(worker.idleRss)}`,
  );
  ctx.results.worker = { startupMs: Math.round(worker.startupMs), idleRssMiB: worker.idleRss / 2 ** 20 };
  const baseQueue = `bench-baseline-${randomUUID().slice(0, 8)}`;
  const baseWorker = await startWorkerProcess(
    'baseline worker',
    `node --import tsx ${path.join('scripts', 'bench-worker.ts')}`,
    { TEMPORAL_ADDRESS: ctx.env.address, MANAGED_SMTP_TASK_QUEUE: baseQueue },
    /bench-worker: polling/,
  );
  const client = new ManagedSmtpClient(ctx.env.client, taskQueue);
  try {
    // Warm-up: the first enable of each side pays one-off costs (connections, workflow cache, JIT).
    await managedClosedLoop(client, await freshInstances(ctx, 3), 3);
    await peerRun(ctx, await freshInstances(ctx, 3), 3);
    await baselineClosedLoop(ctx.env.client, baseQueue, 3, 3);

    // Low load: one enable at a time.
    const lowN = 6;
    const peerLow = await peerRun(ctx, await freshInstances(ctx, lowN), 1);
    const criticalPath = percentile(
      peerLow.enables.map((e) => e.ms),
      50,
    );
    const c0 = await ctx.emulators.counters();
    const lowInstances = await freshInstances(ctx, lowN);
    const managedLow = await managedClosedLoop(client, lowInstances, 1);
    const c1 = await ctx.emulators.counters();
    const callsPerEnable =
      (c1.sparkpost + c1.secretManager + c1.sourcegraph - c0.sparkpost - c0.secretManager - c0.sourcegraph) / lowN;
    const managedP50 = percentile(managedLow.latencies, 50);
    console.log(
      `\n== low load (1 in flight, ${lowN} enables): critical path (plain script, p50) ${criticalPath.toFixed(0)} ms ` +
        `= ${callsPerEnable.toFixed(1)} sequential vendor calls (injected ${args.latency} ms each, plus the emulators' work); ` +
        `managed SMTP p50 ${managedP50.toFixed(0)} ms (critical path + ${(managedP50 - criticalPath).toFixed(0)} ms), ` +
        `max ${Math.max(...managedLow.latencies).toFixed(0)} ms`,
    );
    ctx.results.lowLoad = {
      criticalPathMs: criticalPath,
      managedP50Ms: managedP50,
      overheadMs: managedP50 - criticalPath,
      callsPerEnable,
    };

    console.log('\n== peer comparison (closed loop: each of C clients enables, waits for active, enables the next)');
    console.log(
      '| C | N | plain script /s | managed /s | ratio | plain p50 / p95 | managed p50 / p95 | worker CPU s / enable | plain CPU s / enable | worker peak RSS | plain peak RSS | no-op baseline /s |',
    );
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    const rows: unknown[] = [];
    for (const c of args.compare) {
      const n = c * args.rounds;
      const peer = await peerRun(ctx, await freshInstances(ctx, n), c);
      const instances = await freshInstances(ctx, n);
      worker.resetPeaks();
      const cpu0 = worker.cpuSeconds();
      const managed = await managedClosedLoop(client, instances, c);
      const cpu = (worker.cpuSeconds() - cpu0) / n;
      const peak = worker.peak();
      const base = await baselineClosedLoop(ctx.env.client, baseQueue, n, c);
      const peerRate = n / (peer.wallMs / 1000);
      const managedRate = n / (managed.wallMs / 1000);
      const row = {
        concurrency: c,
        n,
        plainPerSecond: peerRate,
        managedPerSecond: managedRate,
        ratio: managedRate / peerRate,
        plainP50Ms: percentile(
          peer.enables.map((e) => e.ms),
          50,
        ),
        plainP95Ms: percentile(
          peer.enables.map((e) => e.ms),
          95,
        ),
        managedP50Ms: percentile(managed.latencies, 50),
        managedP95Ms: percentile(managed.latencies, 95),
        workerCpuSecondsPerEnable: cpu,
        plainCpuSecondsPerEnable: peer.cpuSeconds / n,
        workerPeakRssMiB: peak.rss / 2 ** 20,
        plainPeakRssMiB: peer.peakRssBytes / 2 ** 20,
        baselinePerSecond: n / (base.wallMs / 1000),
        managedFailed: managed.failed,
      };
      rows.push(row);
      console.log(
        `| ${c} | ${n} | ${row.plainPerSecond.toFixed(1)} | ${row.managedPerSecond.toFixed(1)} | ${row.ratio.toFixed(2)} | ` +
          `${row.plainP50Ms.toFixed(0)} / ${row.plainP95Ms.toFixed(0)} ms | ${row.managedP50Ms.toFixed(0)} / ${row.managedP95Ms.toFixed(0)} ms | ` +
          `${cpu.toFixed(3)} | ${row.plainCpuSecondsPerEnable.toFixed(3)} | ${MiB(peak.rss)} | ${MiB(peer.peakRssBytes)} | ${row.baselinePerSecond.toFixed(1)} |` +
          (managed.failed ? ` (${managed.failed} managed enables failed)` : ''),
      );
    }
    ctx.results.compare = rows;
    if (!args['skip-cost']) {
      const h = await enableHistories(ctx.env.client, lowInstances);
      ctx.results.perEnable = h;
      console.log(`\n== history per enable: ${h.events.toFixed(1)} events, ${h.actions.toFixed(1)} billable actions`);
    }
  } finally {
    await baseWorker.stop();
    await worker.stop();
  }
}

/** N enables with --concurrency in flight, a fresh worker per size: throughput, latency, memory. */
async function sizesSection(ctx: Ctx): Promise<void> {
  console.log(`\n== sizes (${args.concurrency} enables in flight, a fresh worker each)`);
  console.log(
    '| N | enables/s | p50 / p95 | worker start-up | idle RSS | peak RSS | peak heap used | worker CPU s / enable | vendor calls / enable | SparkPost 429s |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  const rows: unknown[] = [];
  for (const n of args.sizes) {
    const taskQueue = MANAGED_QUEUE;
    const instances = await freshInstances(ctx, n);
    const worker = await startManagedWorker(ctx.emulators, ctx.env.address, taskQueue);
    try {
      if (args['sparkpost-limit'] > 0) {
        await ctx.emulators.call({ op: 'sparkpost-limit', maxPerSecond: args['sparkpost-limit'] });
      }
      // Warm-up, as in the comparison: the first enables of a fresh worker pay one-off costs.
      await managedClosedLoop(new ManagedSmtpClient(ctx.env.client, taskQueue), await freshInstances(ctx, 3), 3);
      const c0 = await ctx.emulators.counters();
      worker.resetPeaks();
      const cpu0 = worker.cpuSeconds();
      const r = await managedClosedLoop(new ManagedSmtpClient(ctx.env.client, taskQueue), instances, args.concurrency);
      const cpu = (worker.cpuSeconds() - cpu0) / n;
      const peak = worker.peak();
      const c1 = await ctx.emulators.counters();
      await ctx.emulators.call({ op: 'sparkpost-limit', maxPerSecond: 0 });
      const calls =
        (c1.sparkpost + c1.secretManager + c1.sourcegraph - c0.sparkpost - c0.secretManager - c0.sourcegraph) / n;
      const row = {
        n,
        enablesPerSecond: n / (r.wallMs / 1000),
        p50Ms: percentile(r.latencies, 50),
        p95Ms: percentile(r.latencies, 95),
        startupMs: worker.startupMs,
        idleRssMiB: worker.idleRss / 2 ** 20,
        peakRssMiB: peak.rss / 2 ** 20,
        peakHeapUsedMiB: peak.heapUsed / 2 ** 20,
        workerCpuSecondsPerEnable: cpu,
        vendorCallsPerEnable: calls,
        sparkpost429s: c1.sparkpost429s - c0.sparkpost429s,
        failed: r.failed,
      };
      rows.push(row);
      console.log(
        `| ${n} | ${row.enablesPerSecond.toFixed(1)} | ${(row.p50Ms / 1000).toFixed(2)} s / ${(row.p95Ms / 1000).toFixed(2)} s | ` +
          `${(row.startupMs / 1000).toFixed(2)} s | ${MiB(worker.idleRss)} | ${MiB(peak.rss)} | ${MiB(peak.heapUsed)} | ` +
          `${cpu.toFixed(3)} | ${calls.toFixed(1)} | ${row.sparkpost429s} |` +
          (r.failed ? ` (${r.failed} failed)` : ''),
      );
    } finally {
      await worker.stop();
    }
  }
  ctx.results.sizes = rows;
}

/** Actions of an idle entity over one day of workflow time, on the time-skipping test server (real workflows). */
async function idleEntityDay(ctx: Ctx): Promise<{ actions: number; events: number } | string> {
  let ts: TestWorkflowEnvironment | undefined;
  try {
    ts = await startTimeSkipping();
    const taskQueue = 'bench-idle-day';
    const env = await ctx.emulators.call<Record<string, string>>({ op: 'worker-env', taskQueue });
    const config = loadWorkerConfig({ ...env, TEMPORAL_ADDRESS: ts.address });
    const worker = await createManagedSmtpWorker({
      connection: ts.nativeConnection as NativeConnection,
      namespace: ts.namespace ?? 'default',
      taskQueue,
      deps: vendorDeps(config),
    });
    const [i] = await freshInstances(ctx, 1);
    const client = new ManagedSmtpClient(ts.client, taskQueue);
    return await worker.runUntil(async () => {
      await client.enable(i.name, specFor(i));
      const deadline = Date.now() + 120_000;
      let status: InstanceStatus | null = null;
      while (Date.now() < deadline && status?.state !== 'active') {
        await sleep(200);
        status = await client.status(i.name).catch(() => null);
      }
      if (status?.state !== 'active') throw new Error(`the idle-day instance is ${status?.state ?? 'unknown'}`);
      const before = await historyOf(ts!.client, workflowIdFor(i.name));
      await ts!.sleep('1 day');
      await client.status(i.name); // let the worker catch up with what fired during the day
      const after = await historyOf(ts!.client, workflowIdFor(i.name));
      recordPayloads('managedSmtpWorkflow (idle day)', after);
      const day = after.slice(before.length);
      return { actions: billableActions(day), events: day.length };
    });
  } catch (err) {
    return `not measured: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`;
  } finally {
    await ts?.teardown();
  }
}

/** A fleet check run, through the same start as `smtpctl check-fleet` (workflows/fleet's fleetCheckWorkflow). */
async function runFleetCheck(client: ManagedSmtpClient, input: FleetCheckInput) {
  const workflowId = `managed-smtp-fleet-check/bench-${randomUUID()}`;
  const started = Date.now();
  const report: FleetCheckReport = await client.temporal.workflow.execute(fleetCheckWorkflow, {
    workflowId,
    taskQueue: client.taskQueue,
    args: [input],
    workflowExecutionTimeout: '60m',
  });
  return { report, wallMs: Date.now() - started, workflowId };
}

/** Every run of a workflow and of its children, with their histories. */
async function historiesOfRun(
  client: Client,
  workflowId: string,
): Promise<Array<{ type: string; events: HistoryEvent[] }>> {
  const out: Array<{ type: string; events: HistoryEvent[] }> = [];
  const todo = [workflowId];
  while (todo.length && out.length < 500) {
    const id = todo.pop()!;
    for await (const wf of client.workflow.list({ query: `WorkflowId = '${id}'` })) {
      const events = await historyOf(client, wf.workflowId, wf.runId);
      out.push({ type: wf.type, events });
      for (const e of events) {
        const child = e.startChildWorkflowExecutionInitiatedEventAttributes?.workflowId;
        if (child) todo.push(child);
      }
    }
  }
  return out;
}

/** The SDK's heartbeat throttle for the chunk activity: min(0.8 × its 6 min heartbeat timeout, 60 s). */
const CHUNK_HEARTBEAT_THROTTLE_MS = 60_000;

/**
 * Heartbeats the fleet check's chunk activities sent (billed, never in a history), estimated from their run times:
 * the SDK sends an attempt's first heartbeat at once, then at most one per throttle interval.
 */
function chunkHeartbeats(events: HistoryEvent[]): number {
  const types = new Map<string, string>();
  const startedAt = new Map<string, number>();
  let beats = 0;
  for (const e of events) {
    const id = String(e.eventId ?? '');
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) types.set(id, scheduled.activityType?.name ?? '');
    const started = e.activityTaskStartedEventAttributes;
    if (started) startedAt.set(String(started.scheduledEventId ?? ''), eventMs(e));
    const closed =
      e.activityTaskCompletedEventAttributes ??
      e.activityTaskFailedEventAttributes ??
      e.activityTaskTimedOutEventAttributes;
    const sid = String(closed?.scheduledEventId ?? '');
    if (closed && types.get(sid) === 'checkPageViaEntities') {
      beats += 1 + Math.floor((eventMs(e) - (startedAt.get(sid) ?? eventMs(e))) / CHUNK_HEARTBEAT_THROTTLE_MS);
    }
  }
  return beats;
}

/**
 * Actions one fleet check causes in an entity (the check update, its check activity and retries, anything else the
 * entity did before answering), averaged over a sample of entity histories: the fleet check's update ids start with
 * `fleet-`, the last one after `since` is this run's.
 */
async function entityActionsPerCheck(
  client: Client,
  since: number,
): Promise<{ perCheck: number; sampled: number } | null> {
  let total = 0;
  let sampled = 0;
  for await (const wf of client.workflow.list({ query: `WorkflowType = 'managedSmtpWorkflow'`, pageSize: 50 })) {
    if (sampled >= 25) break;
    const events = await historyOf(client, wf.workflowId, wf.runId);
    const accepted = events.filter(
      (e) =>
        eventMs(e) >= since &&
        e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.meta?.updateId?.startsWith('fleet-'),
    );
    const updateId = accepted.at(-1)?.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.meta?.updateId;
    const n = updateId ? actionsOfUpdate(events, updateId) : null;
    if (n === null) continue;
    total += n;
    sampled++;
  }
  return sampled ? { perCheck: total / sampled, sampled } : null;
}

/** Default schedules: the bounce alert (its default interval) and the fleet check (the README's `--schedule 1h`). */
const DEFAULT_ALERT_INPUT = { thresholdRate: 0.05, minAccepted: 100, windowHours: 24 };
const DEFAULT_FLEET_INPUT: FleetCheckInput = { enforce: false, concurrency: 5, sparkpostBudget: 600 };

/** Temporal actions per instance per idle day, from real histories and the schedules' own specs. */
async function costSection(
  ctx: Ctx,
  fleet: { instances: number; client: ManagedSmtpClient; fleetActions: number },
): Promise<void> {
  const client = fleet.client;
  // The bounce alert's schedule as `smtpctl alerts schedule` creates it: its interval comes from the real schedule.
  await ensureBounceAlertSchedule(client.temporal, {
    ...DEFAULT_ALERT_INPUT,
    taskQueue: client.taskQueue,
    paused: true,
  });
  const desc = await client.temporal.schedule.getHandle('managed-smtp-bounce-alerts').describe();
  const everyMs = Number(desc.spec.intervals?.[0]?.every ?? 15 * 60_000);
  const alertRunsPerDay = 86_400_000 / everyMs;
  const alertId = (await runBounceAlertOnceWithId(client)).workflowId;
  let alertActions = 0;
  for (const h of await historiesOfRun(client.temporal, alertId)) {
    recordPayloads(h.type, h.events);
    alertActions += billableActions(h.events);
  }
  const fleetRunsPerDay = 24 / args['fleet-interval-hours'];
  const idle = await idleEntityDay(ctx);
  const entityDay = typeof idle === 'string' ? 0 : idle.actions;
  // Each scheduled run costs one action for the schedule's trigger plus the actions in its histories.
  const fleetPerDay = fleetRunsPerDay * (1 + fleet.fleetActions);
  const alertPerDay = alertRunsPerDay * (1 + alertActions);
  const perInstance = entityDay + (fleetPerDay + alertPerDay) / fleet.instances;
  console.log(
    `\n== Temporal actions per instance per idle day (N = ${fleet.instances}): ${perInstance.toFixed(1)} ` +
      `(target ≤ 60: ${perInstance <= 60 ? 'met' : 'NOT met'})\n` +
      `   entity workflow, idle for one day on the time-skipping test server: ${typeof idle === 'string' ? idle : `${idle.actions} actions (${idle.events} events)`}\n` +
      `   fleet check every ${args['fleet-interval-hours']} h: ${fleetRunsPerDay} runs × (1 trigger + ${fleet.fleetActions} actions: its histories, chunk heartbeats, the updates and checks it caused in entities) / ${fleet.instances} instances = ${(fleetPerDay / fleet.instances).toFixed(1)}\n` +
      `   bounce alert every ${everyMs / 60_000} min (its default schedule): ${alertRunsPerDay} runs × (1 trigger + ${alertActions} actions) / ${fleet.instances} instances = ${(alertPerDay / fleet.instances).toFixed(2)}`,
  );
  console.log(
    `== largest payload written: ${(largestPayload.bytes / 1024).toFixed(1)} KiB (${largestPayload.workflow}, ${largestPayload.event}); ` +
      `${(largestPayload.bytes / fleet.instances).toFixed(0)} bytes per instance of the fleet, if it grows with the fleet`,
  );
  ctx.results.cost = {
    instances: fleet.instances,
    actionsPerInstancePerIdleDay: perInstance,
    entityIdleDay: idle,
    fleetCheck: { runsPerDay: fleetRunsPerDay, actionsPerRun: fleet.fleetActions },
    bounceAlert: { runsPerDay: alertRunsPerDay, actionsPerRun: alertActions },
    largestPayload,
  };
}

async function runBounceAlertOnceWithId(client: ManagedSmtpClient): Promise<{ workflowId: string }> {
  const before = new Set<string>();
  for await (const wf of client.temporal.workflow.list({ query: `WorkflowType = 'bounceAlertWorkflow'` }))
    before.add(wf.workflowId);
  await runBounceAlertOnce(client, DEFAULT_ALERT_INPUT);
  for (let i = 0; i < 50; i++) {
    for await (const wf of client.temporal.workflow.list({ query: `WorkflowType = 'bounceAlertWorkflow'` })) {
      if (!before.has(wf.workflowId)) return { workflowId: wf.workflowId };
    }
    await sleep(200);
  }
  throw new Error('the bounce alert run is not visible');
}

/** Fleet check over the instances enabled so far (a normal run) or over a seeded fleet (`--fleet N`). */
async function fleetCheckAndCost(ctx: Ctx, taskQueue: string, instances: number, worker: RunningWorker): Promise<void> {
  const client = new ManagedSmtpClient(ctx.env.client, taskQueue);
  const c0 = await ctx.emulators.counters();
  worker.resetPeaks();
  const input: FleetCheckInput = { ...DEFAULT_FLEET_INPUT, sparkpostBudget: Math.max(600, instances * 10) };
  let run: Awaited<ReturnType<typeof runFleetCheck>>;
  try {
    run = await runFleetCheck(client, input);
  } catch (err) {
    const why =
      err instanceof Error
        ? `${err.message}${err.cause instanceof Error ? `: ${err.cause.message}` : ''}`
        : String(err);
    console.log(`\n== fleet check over ${instances} instances FAILED: ${why}`);
    ctx.results.fleetCheck = { instances, failed: why };
    return;
  }
  const { report, wallMs, workflowId } = run;
  const peak = worker.peak();
  const c1 = await ctx.emulators.counters();
  // The fleet check's own histories (start, listing, chunk activities, patch marker), the heartbeats of its chunk
  // activities, and what it caused in each entity it checked: all billed to this run.
  let ownActions = 0;
  let heartbeats = 0;
  for (const h of await historiesOfRun(client.temporal, workflowId)) {
    recordPayloads(h.type, h.events);
    ownActions += billableActions(h.events);
    heartbeats += chunkHeartbeats(h.events);
  }
  const entity = await entityActionsPerCheck(client.temporal, Date.now() - wallMs - 1000);
  const entityActions = Math.round(report.checked * (entity?.perCheck ?? 0));
  const fleetActions = ownActions + heartbeats + entityActions;
  const sparkpost = c1.sparkpost - c0.sparkpost;
  console.log(
    `\n== fleet check over ${instances} instances (concurrency ${input.concurrency}, budget ${input.sparkpostBudget}): ` +
      `${(wallMs / 1000).toFixed(1)} s wall, ${sparkpost} SparkPost requests (${(sparkpost / instances).toFixed(2)} per instance), ` +
      `worker peak RSS ${MiB(peak.rss)}, peak heap used ${MiB(peak.heapUsed)}; report: ${report.instances} listed, ` +
      `${report.checked} checked, ${report.healthy} healthy, ${report.drifted.length} drifted, ${report.deferred} deferred, ` +
      `${report.errors.length} errors; ${fleetActions} actions`,
  );
  const perEntity = entity
    ? `${entity.perCheck.toFixed(2)} in each entity (update + check activity attempts, from ${entity.sampled} entity histories)`
    : '? (no sampled entity history holds this run)';
  console.log(
    `   actions of this run: ${ownActions} in the fleet check's histories + ${heartbeats} chunk heartbeats (estimated) + ` +
      `${report.checked} checked × ${perEntity} = ${fleetActions}, ${(fleetActions / Math.max(1, instances)).toFixed(2)} per instance`,
  );
  ctx.results.fleetCheck = {
    instances,
    wallMs,
    sparkpostRequests: sparkpost,
    workerPeakRssMiB: peak.rss / 2 ** 20,
    workerPeakHeapUsedMiB: peak.heapUsed / 2 ** 20,
    actions: fleetActions,
    actionsBreakdown: { ownActions, heartbeats, entityActions, entityActionsPerCheck: entity?.perCheck ?? null },
    report: { ...report, drifted: report.drifted.length, errors: report.errors.length },
  };
  if (!args['skip-cost']) await costSection(ctx, { instances, client, fleetActions });
}

/**
 * The entity's state after an enable, as recorded by the plain script's enable of the same instance. This is the one
 * place that knows the entity workflow's input shape (a continue-as-new start with carried state): after a rewrite
 * of the entity, adapt it here, or seed with `--fleet-seed enable` (the public enable, any workflow shape).
 */
function seededEntityStart(i: EmulatedInstance, e: PeerRun['enables'][number]) {
  const status: InstanceStatus = {
    ...emptyStatus(i.name),
    state: 'active',
    subaccountId: e.subaccountId ?? null,
    keyId: e.keyId ?? null,
    secretVersion: e.secretVersion ?? null,
    sender: e.sender ?? null,
    lastTestEmail: e.lastTestEmail ?? null,
    spec: specFor(i),
    previousSettings: e.previous ?? null,
  };
  return { instance: i.name, carried: { status, queue: [] } };
}

/** `--fleet N`: seeds N active instances directly, then runs the fleet check and the cost figures over them. */
async function fleetSection(ctx: Ctx, n: number): Promise<void> {
  const taskQueue = MANAGED_QUEUE;
  const worker = await startManagedWorker(ctx.emulators, ctx.env.address, taskQueue);
  const client = new ManagedSmtpClient(ctx.env.client, taskQueue);
  try {
    await ctx.emulators.call({ op: 'latency', latencyMs: 0 }); // seeding is set-up, not measured
    const seedStart = Date.now();
    const instances = await freshInstances(ctx, n);
    if (args['fleet-seed'] === 'enable') {
      await managedClosedLoop(client, instances, 100);
    } else {
      // Vendor state through the plain script (the same calls as an enable), then each entity started in that state.
      const peer = await peerRun(ctx, instances, 32);
      // Every step is idempotent: enables that failed (e.g. a test email timing out under load) are simply re-run.
      for (let pass = 0; pass < 3; pass++) {
        const again = peer.enables.flatMap((e, k) => (e.error ? [k] : []));
        if (again.length === 0) break;
        const retry = await peerRun(
          ctx,
          again.map((k) => instances[k]),
          32,
        );
        retry.enables.forEach((e, j) => (peer.enables[again[j]] = e));
      }
      await pool(instances, 50, async (i, k) => {
        await ctx.env.client.workflow.start(managedSmtpWorkflow, {
          workflowId: workflowIdFor(i.name),
          taskQueue,
          args: [seededEntityStart(i, peer.enables[k])],
          typedSearchAttributes: [
            { key: INSTANCE_KEY, value: i.name },
            { key: STATE_KEY, value: 'active' },
            { key: STEP_KEY, value: 'none' },
          ],
        });
      });
      const probe = await client.status(instances[0].name);
      if (probe.state !== 'active') throw new Error(`seeded entity answers ${probe.state}: try --fleet-seed enable`);
    }
    const seededBy = Date.now() + 60_000 + n * 100;
    while (Date.now() < seededBy) {
      const { count } = await ctx.env.client.workflow.count(
        `WorkflowType = 'managedSmtpWorkflow' AND ${STATE_KEY.name} = 'active'`,
      );
      if (count >= n) break;
      await sleep(500);
    }
    console.log(
      `\n== fleet of ${n} seeded (${args['fleet-seed']}) in ${((Date.now() - seedStart) / 1000).toFixed(1)} s`,
    );
    await ctx.emulators.call({ op: 'latency', latencyMs: args.latency });
    await fleetCheckAndCost(ctx, taskQueue, n, worker);
  } finally {
    await worker.stop();
  }
}

/** A normal run's fleet check and cost figures, over every instance it enabled (all on MANAGED_QUEUE). */
async function costOverEnabled(ctx: Ctx): Promise<void> {
  const { count } = await ctx.env.client.workflow.count(`WorkflowType = 'managedSmtpWorkflow'`);
  const worker = await startManagedWorker(ctx.emulators, ctx.env.address, MANAGED_QUEUE);
  try {
    await fleetCheckAndCost(ctx, MANAGED_QUEUE, count, worker);
  } finally {
    await worker.stop();
  }
}

/** Stops what main() started; set by main(), called on its way out or when a worker dies mid-run. */
let tearDown: () => Promise<void> = async () => undefined;

async function main(): Promise<void> {
  header();
  const env = await startTemporal();
  const emulators = await Emulators.start();
  let peer: IpcChild | undefined;
  let tornDown = false;
  tearDown = async () => {
    if (tornDown) return;
    tornDown = true;
    await peer?.stop().catch(() => undefined);
    await emulators.stop().catch(() => undefined);
    await env.teardown().catch(() => undefined);
  };
  try {
    await emulators.call({ op: 'latency', latencyMs: args.latency });
    peer = await IpcChild.start('bench-peer.ts', await emulators.call({ op: 'worker-env', taskQueue: 'peer' }));
    const ctx: Ctx = { env, emulators, peer, results: {} };
    if (args.fleet !== undefined) {
      await fleetSection(ctx, args.fleet);
    } else {
      await compareSection(ctx);
      await sizesSection(ctx);
      if (!args['skip-cost']) await costOverEnabled(ctx);
    }
    console.log(`\n${JSON.stringify({ latencyMs: args.latency, ...ctx.results })}`);
  } finally {
    await tearDown();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
