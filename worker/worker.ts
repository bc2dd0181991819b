/**
 * Builds the managed SMTP worker from injected activities, so tests, the dev stack and production share one wiring.
 */
import { Client } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../activities';

import { WORKFLOWS_PATH, workflowBundlerOptions } from './bundle';

export { vendorDeps } from './vendors';

/** Options for createManagedSmtpWorker. */
export interface ManagedSmtpWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  deps: ActivityDeps;
  /** A prebuilt workflow bundle (tests and the production image reuse one instead of bundling at start). */
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** How long in-flight activities get to finish on shutdown. */
  shutdownGraceTime?: WorkerOptions['shutdownGraceTime'];
  /** Payload encryption (lib/codec.ts), the same as the clients'. */
  dataConverter?: DataConverter;
  /** Task-queue-wide ceiling on activity starts per second (WorkerConfig.maxActivitiesPerSecond). */
  maxTaskQueueActivitiesPerSecond?: number;
  /** Bound on the workflow cache (WorkerConfig.maxCachedWorkflows); the SDK's default otherwise. */
  maxCachedWorkflows?: number;
  /** Activities this worker runs at once (MANAGED_SMTP_MAX_CONCURRENT_ACTIVITIES); the SDK's 100 otherwise. */
  maxConcurrentActivityTaskExecutions?: number;
  /** Workflow tasks this worker holds at once (MANAGED_SMTP_MAX_CONCURRENT_WORKFLOW_TASKS); the SDK's 40 otherwise. */
  maxConcurrentWorkflowTaskExecutions?: number;
  /** Worker Deployment version (worker/versioning.ts); unversioned unless given. */
  workerDeploymentOptions?: WorkerOptions['workerDeploymentOptions'];
}

/** Creates (does not run) a worker for managed SMTP's workflows and activities. */
export async function createManagedSmtpWorker(opts: ManagedSmtpWorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue,
    ...(opts.workflowBundle
      ? { workflowBundle: opts.workflowBundle }
      : { workflowsPath: WORKFLOWS_PATH, bundlerOptions: workflowBundlerOptions() }),
    // Fleet-wide activities list instances through a client on the worker's own connection.
    activities: createActivities({
      temporal: new Client({
        connection: opts.connection,
        namespace: opts.namespace,
        dataConverter: opts.dataConverter,
      }),
      ...opts.deps,
    }),
    shutdownGraceTime: opts.shutdownGraceTime ?? '10s',
    dataConverter: opts.dataConverter,
    maxTaskQueueActivitiesPerSecond: opts.maxTaskQueueActivitiesPerSecond,
    maxCachedWorkflows: opts.maxCachedWorkflows,
    maxConcurrentActivityTaskExecutions: opts.maxConcurrentActivityTaskExecutions,
    maxConcurrentWorkflowTaskExecutions: opts.maxConcurrentWorkflowTaskExecutions,
    workerDeploymentOptions: opts.workerDeploymentOptions,
  });
}
