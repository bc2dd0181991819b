/**
 * An enable that reaches the entity while an offboarding's disable is still queued or running: it must not run
 * after the disable has made the instance offboarded (it would re-create a live key for an instance that left).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { disableSignal, enableSignal } from '../contract/messages';
import { workflowIdFor } from '../lib/instance';
import type { InstanceStatus } from '../lib/types';
import { World, enableArgs, specFor, type Lane } from './helpers/world';

describe('offboarding and a concurrent enable', { timeout: 180_000 }, () => {
  let world: World;
  let lane: Lane;

  before(async () => {
    ({ world, lane } = await World.startWithLane());
  });
  after(async () => {
    await world?.close();
  });

  test('an enable sent right after the offboarding disable is refused, not run after it', async () => {
    const name = 'offboard-race';
    const i = world.stack.addInstance(name);
    const spec = specFor(i);
    const r = await world.cli(...enableArgs(name, spec), '--wait', '--json');
    assert.equal(r.code, 0, r.err);
    const subaccountId = (JSON.parse(r.out) as InstanceStatus).subaccountId!;

    const handle = world.env.client.workflow.getHandle(workflowIdFor(name));
    await handle.signal(disableSignal, { requestId: 'offboard-1', reason: 'offboard', offboard: true });
    await handle.signal(enableSignal, { requestId: 'late-enable', spec });

    const deadline = Date.now() + 90_000;
    let s: InstanceStatus;
    for (;;) {
      s = await lane.client.status(name);
      const done = (id: string) => s.requests.find((x) => x.id === id)?.finishedAt;
      if (done('offboard-1') && done('late-enable') && !['enabling', 'provisioning'].includes(s.state)) break;
      assert.ok(Date.now() < deadline, `never settled: ${JSON.stringify(s.requests)}`);
      await new Promise((res) => setTimeout(res, 200));
    }
    assert.equal(s.offboarded?.requestId, 'offboard-1');
    assert.equal(s.state, 'disabled', 'the offboarded instance stays disabled');
    assert.match(s.requests.find((x) => x.id === 'late-enable')?.outcome ?? '', /offboarded/);
    assert.deepEqual(world.keysOf(subaccountId), [], 'no live key');
    assert.equal(world.sendKeySecret(spec.gcpProject), undefined, 'no send-key secret');
    assert.equal(world.liveSubaccounts(name).filter((x) => x.status === 'active').length, 0);
  });
});
