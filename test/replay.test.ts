/**
 * Determinism: histories captured from real runs (scripts/capture-histories.ts) must replay against the current
 * workflow code. A change that would break running executions fails here, before it is deployed.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { quietRuntime, workflowBundle } from './helpers/temporal';
import { workflowIdFor } from '../lib/instance';

const DIR = path.join(__dirname, 'histories');

test('captured histories replay without non-determinism', { timeout: 120_000 }, async () => {
  quietRuntime();
  const files = readdirSync(DIR).filter((f) => f.endsWith('.json'));
  assert.ok(files.length >= 3, 'histories are checked in');
  const histories = files.map((f) => ({
    // The entity takes its instance from the workflow id: replay under the id it ran with.
    workflowId: workflowIdFor(path.basename(f, '.json')),
    history: temporal.api.history.v1.History.fromObject(JSON.parse(readFileSync(path.join(DIR, f), 'utf8'))),
  }));
  const results = Worker.runReplayHistories({ workflowBundle: await workflowBundle() }, histories);
  let replayed = 0;
  for await (const r of results) {
    assert.equal(r.error, undefined, `${r.workflowId}: ${r.error?.message}`);
    replayed++;
  }
  assert.equal(replayed, files.length);
});
