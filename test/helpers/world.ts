/**
 * A test world: a real Temporal dev server, the emulator stack, and workers running managed SMTP with real vendor
 * clients (or clients a test wrapped to fail). Assertions read the emulators' state directly.
 */
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { ManagedSmtpClient } from '../../client';
import type { ActivityDeps } from '../../activities';
import { EmulatorStack, STACK_SOURCEGRAPH_URLS } from '../../emulators/stack';
import { DEFAULT_SOURCEGRAPH_URLS } from '../../lib/allow-list';
import type { Resolver } from '../../lib/target-guard';
import { createManagedSmtpWorker, vendorDeps } from '../../worker/worker';
import { startTemporal, uniqueTaskQueue, workflowBundle } from './temporal';
import { sendKeySecretName } from '../../lib/instance';
import { runCli, type Io } from '../../client/smtpctl';
import { assertCliOutput } from './json-schema';
import type { ProtectionRequest } from '../../contract/types';

/** `smtpctl enable` arguments for an instance with this spec (flags after them are the caller's). */
export function enableArgs(
  name: string,
  spec: { sourcegraphUrl: string; gcpProject: string; adminTokenSecret: string },
) {
  return [
    'enable',
    name,
    '--sourcegraph-url',
    spec.sourcegraphUrl,
    '--gcp-project',
    spec.gcpProject,
    '--admin-token-secret',
    spec.adminTokenSecret,
  ];
}

/** A protection reading bad enough to quarantine at once: 8 complaints in 1,000 sent over the last hour. */
export function severeReading(requestId: string): ProtectionRequest {
  return {
    requestId,
    input: {
      kind: 'observe',
      observation: {
        source: 'metrics',
        at: new Date().toISOString(),
        from: new Date(Date.now() - 3600_000).toISOString(),
        sent: 1000,
        hardBounces: 0,
        complaints: 8,
      },
    },
  };
}

/** The enable spec of an emulated instance (kept here for the tests' imports). */
export { specFor } from '../../emulators/stack';

/** What one smtpctl run printed, and its exit code. */
export interface CliRun {
  code: number;
  out: string;
  err: string;
}

/** A running worker and the client that talks to its task queue. */
export interface Lane {
  taskQueue: string;
  worker: Worker;
  client: ManagedSmtpClient;
  running: Promise<void>;
}

/** Everything a lifecycle test needs. */
export class World {
  private lanes: Lane[] = [];
  private constructor(
    readonly env: TestWorkflowEnvironment,
    readonly stack: EmulatorStack,
  ) {}

  static async start(): Promise<World> {
    // smtpctl runs in-process: it checks --sourcegraph-url against the emulators' loopback pattern (and production's).
    process.env.MANAGED_SMTP_SOURCEGRAPH_URLS = `${STACK_SOURCEGRAPH_URLS},${DEFAULT_SOURCEGRAPH_URLS}`;
    const [env, stack] = await Promise.all([startTemporal(), EmulatorStack.start()]);
    return new World(env, stack);
  }

  /** A world with one lane, and smtpctl's task queue (MANAGED_SMTP_TASK_QUEUE) pointed at it for workflows it starts. */
  static async startWithLane(): Promise<{ world: World; lane: Lane }> {
    const world = await World.start();
    const lane = await world.lane();
    process.env.MANAGED_SMTP_TASK_QUEUE = lane.taskQueue;
    return { world, lane };
  }

  /** Real vendor clients pointed at the emulators. */
  deps(taskQueue = 'unused'): ActivityDeps {
    return { ...vendorDeps(this.stack.workerConfig(taskQueue)), temporal: this.env.client };
  }

  /** Starts a worker on a fresh task queue with the given (possibly wrapped) clients. */
  async lane(deps: ActivityDeps = this.deps()): Promise<Lane> {
    const taskQueue = uniqueTaskQueue('lane');
    const worker = await createManagedSmtpWorker({
      connection: this.env.nativeConnection,
      namespace: 'default',
      taskQueue,
      deps,
      workflowBundle: await workflowBundle(),
      shutdownGraceTime: '1s',
    });
    const lane: Lane = {
      taskQueue,
      worker,
      client: new ManagedSmtpClient(this.env.client, taskQueue),
      running: worker.run(),
    };
    this.lanes.push(lane);
    return lane;
  }

  /** Stops a lane's worker and starts a new one on the same task queue (a worker restart mid-flight). */
  async restart(lane: Lane, deps: ActivityDeps = this.deps()): Promise<void> {
    lane.worker.shutdown();
    await lane.running.catch(() => undefined);
    lane.worker = await createManagedSmtpWorker({
      connection: this.env.nativeConnection,
      namespace: 'default',
      taskQueue: lane.taskQueue,
      deps,
      workflowBundle: await workflowBundle(),
      shutdownGraceTime: '1s',
    });
    lane.running = lane.worker.run();
  }

  /**
   * Runs smtpctl in-process against this world's Temporal server (MANAGED_SMTP_TASK_QUEUE picks the lane); fails when
   * its --json output does not match the published schema.
   */
  async cli(...argv: string[]): Promise<CliRun> {
    return this.cliWith({}, ...argv);
  }

  /** Like cli, with a fake DNS for smtpctl's address check. */
  async cliWith(opts: { resolver?: Resolver }, ...argv: string[]): Promise<CliRun> {
    let out = '';
    let err = '';
    const io: Io = { out: (t) => void (out += t), err: (t) => void (err += t) };
    const code = await runCli(argv, io, async () => this.env.client, opts);
    // Every --json/--ndjson run of the suite is checked against its published schema here, so no test can forget.
    assertCliOutput(argv, code, out);
    return { code, out, err };
  }

  /** SparkPost subaccounts named `name` that are not terminated. */
  liveSubaccounts(name: string) {
    return this.stack.sparkpost.state.subaccounts.filter((s) => s.name === name && s.status !== 'terminated');
  }

  /** Every subaccount named `name`. */
  allSubaccounts(name: string) {
    return this.stack.sparkpost.state.subaccounts.filter((s) => s.name === name);
  }

  /** API keys of a subaccount (the emulator keeps only live keys). */
  keysOf(subaccountId: number) {
    return this.stack.sparkpost.state.apiKeys.filter((k) => k.subaccount_id === subaccountId);
  }

  /** The send-key secret of a project, if it exists. */
  sendKeySecret(gcpProject: string) {
    return this.stack.secretManager.getSecret(sendKeySecretName(gcpProject));
  }

  async close(): Promise<void> {
    for (const lane of this.lanes) lane.worker.shutdown();
    await Promise.allSettled(this.lanes.map((l) => l.running));
    await this.stack.close();
    await this.env.teardown();
  }
}
