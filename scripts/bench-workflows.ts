/**
 * The benchmark's baseline: a workflow with the same shape as an enable (signal-with-start, five activities, a
 * search-attribute upsert per step) whose activities do nothing. Its throughput is what Temporal and this machine
 * allow; managed SMTP's enable throughput is reported as a ratio to it.
 */
import { condition, defineSignal, proxyActivities, setHandler, upsertSearchAttributes } from '@temporalio/workflow';
import { STATE_KEY, STEP_KEY } from '../lib/search-attributes';

/** No-op activities, one per enable step. */
export interface BaselineActivities {
  noop(step: string): Promise<string>;
}

const { noop } = proxyActivities<BaselineActivities>({ startToCloseTimeout: '30s' });

/** Starts the baseline run (sent with start, like enable). */
export const goSignal = defineSignal<[{ requestId: string }]>('go');

/** Five no-op steps, each announced with an upsert, like managed SMTP's enable. */
export async function benchBaselineWorkflow(): Promise<void> {
  let go = false;
  setHandler(goSignal, () => void (go = true));
  await condition(() => go);
  for (const step of ['inspect', 'subaccount', 'key', 'config', 'test']) {
    upsertSearchAttributes([{ key: STEP_KEY, value: step }]);
    await noop(step);
  }
  upsertSearchAttributes([
    { key: STATE_KEY, value: 'active' },
    { key: STEP_KEY, value: 'none' },
  ]);
}
