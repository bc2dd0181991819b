/**
 * A real Temporal dev server for tests, started through @temporalio/testing with the binary that
 * scripts/temporal-cli.ts found or installed (never the SDK's download, which needs internet).
 */
import { randomUUID } from 'node:crypto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Runtime, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { findTemporalCli } from '../../scripts/temporal-cli';
import { ALL_SEARCH_ATTRIBUTE_KEYS } from '../../lib/search-attributes';
import { workflowBundleOptions } from '../../worker/bundle';

let runtimeInstalled = false;

/** Keeps the SDK's own logging to warnings, so test output stays readable. */
export function quietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  try {
    Runtime.install({ logger: new DefaultLogger('WARN') });
  } catch {
    // already installed by another helper in this process
  }
}

/** Starts a local dev server with managed SMTP's search attributes (`extraArgs`: more `temporal server` flags). */
export async function startTemporal(extraArgs: string[] = []): Promise<TestWorkflowEnvironment> {
  quietRuntime();
  const path = findTemporalCli({ quiet: false });
  if (!path) throw new Error('no temporal CLI binary: see the messages above (scripts/temporal-cli.ts)');
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path },
      ip: '127.0.0.1',
      searchAttributes: ALL_SEARCH_ATTRIBUTE_KEYS,
      extraArgs: ['--log-level', 'error', ...extraArgs],
    },
  });
}

let bundle: Promise<WorkflowBundleWithSourceMap> | null = null;

/** The workflow bundle, built once per test process. */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  quietRuntime();
  bundle ??= bundleWorkflowCode(workflowBundleOptions());
  return bundle;
}

/** A task queue no other test uses. */
export function uniqueTaskQueue(prefix = 'test'): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}
