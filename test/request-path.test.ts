/**
 * One request path per instance (issue 9): the eight interleavings that broke the entity before it was rebuilt, each
 * driven against a real Temporal dev server and the emulators. Each test fails on the old entity.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { applyEdits, modify } from 'jsonc-parser';
import { protectionRequestUpdate, protectionSignal } from '../contract/messages';
import type { ProtectionRequest } from '../contract/types';
import { VendorError } from '../lib/errors';
import { workflowIdFor } from '../lib/instance';
import { readEmailSettings } from '../lib/site-config';
import { RunEndedError } from '../client';
import type { ActivityDeps } from '../activities';
import { ManagedSmtpClient } from '../client';
import { createManagedSmtpWorker } from '../worker/worker';
import { FaultSwitch, failing } from './helpers/faulty';
import { uniqueTaskQueue, workflowBundle } from './helpers/temporal';
import { World, severeReading, specFor, type Lane } from './helpers/world';

/** A gate: calls of one method wait while it is closed (to hold an activity at a chosen point). */
class Gate {
  private open = true;
  private waiters: Array<() => void> = [];
  waiting = 0;
  close(): void {
    this.open = false;
  }
  release(): void {
    this.open = true;
    for (const w of this.waiters.splice(0)) w();
  }
  async pass(): Promise<void> {
    if (this.open) return;
    this.waiting++;
    await new Promise<void>((r) => this.waiters.push(r));
  }
}

function gated<T extends object>(target: T, method: keyof T, gate: Gate): T {
  return new Proxy(target, {
    get(obj, prop, receiver) {
      const value = Reflect.get(obj, prop, receiver);
      if (typeof value !== 'function') return value;
      if (prop !== method) return value.bind(obj);
      return async (...args: unknown[]) => {
        await gate.pass();
        return (value as (...a: unknown[]) => unknown).apply(obj, args);
      };
    },
  });
}

const CUSTOMER_SMTP = { host: 'smtp.customer.example.com', port: 587, username: 'me', password: 'theirs' };
/** A human switching the instance to their own SMTP settings through the site admin UI. */
function customerEdit(text: string): string {
  const t = applyEdits(text, modify(text, ['email.address'], 'it@customer.example.com', {}));
  return applyEdits(t, modify(t, ['email.smtp'], CUSTOMER_SMTP, {}));
}
const unavailable = () =>
  new VendorError({ vendor: 'sourcegraph', kind: 'unavailable', status: 503, message: 'injected: 503' });

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out waiting for ${what}`);
}

describe('one request path per instance', { timeout: 600_000 }, () => {
  let world: World;
  let lane: Lane;

  before(async () => ({ world, lane } = await World.startWithLane()));
  after(() => world?.close());

  async function enabled(name: string, l: Lane = lane) {
    const i = world.stack.addInstance(name);
    const s = await l.client.waitFor(await l.client.enable(name, specFor(i)), { timeoutMs: 60_000, pollMs: 100 });
    assert.equal(s.state, 'active', s.error ?? '');
    return { i, subaccountId: s.subaccountId! };
  }

  function customerOwnsConfig(name: string): boolean {
    const settings = readEmailSettings(world.stack.sourcegraph.site(name).config);
    return settings.smtp?.host === 'smtp.customer.example.com' && settings.smtp?.password === 'theirs';
  }

  /** A lane whose Sourcegraph site-config writes fail (503) while its switch is on (`on` sets where it starts). */
  async function unreachableSiteLane(on: boolean): Promise<{ l: Lane; fault: FaultSwitch }> {
    const d = world.deps();
    const fault = new FaultSwitch();
    fault.on = on;
    const l = await world.lane({
      ...d,
      sourcegraph: (o) => failing(d.sourcegraph(o), 'editSiteConfig', unavailable, fault),
    });
    return { l, fault };
  }

  /** A lane whose SparkPost listApiKeys waits at the gate (the check's first SparkPost read of keys). */
  async function gatedLane(gate: Gate): Promise<Lane> {
    const d: ActivityDeps = world.deps();
    return world.lane({ ...d, sparkpost: gated(d.sparkpost, 'listApiKeys', gate) });
  }

  test('1. check --enforce racing disable: the disable wins, the repair never re-enables', async () => {
    const gate = new Gate();
    const l = await gatedLane(gate);
    const { subaccountId } = await enabled('race-check', l);
    // Drift the check will see: the send key was deleted by hand.
    const st = world.stack.sparkpost.state;
    st.apiKeys.splice(0, st.apiKeys.length, ...st.apiKeys.filter((k) => k.subaccount_id !== subaccountId));
    gate.close();
    const checking = l.client.check('race-check', true).catch((err: unknown) => err);
    await until('the check to reach SparkPost', () => gate.waiting > 0);
    const disabled = l.client.waitFor(await l.client.disable('race-check', 'operator'), { timeoutMs: 60_000 });
    gate.release();
    await checking;
    const s = await disabled;
    assert.equal(s.state, 'disabled', s.error ?? '');
    await new Promise((r) => setTimeout(r, 1500)); // time for a wrongly queued repair to run
    const after = await l.client.status('race-check');
    assert.equal(after.state, 'disabled');
    assert.equal(world.liveSubaccounts('race-check')[0]?.status, 'suspended');
    assert.equal(world.keysOf(subaccountId).length, 0);
  });

  test('2. the fleet check asks each entity: an instance disabled during the check stays disabled', async () => {
    const gate = new Gate();
    const l = await gatedLane(gate);
    const { subaccountId } = await enabled('race-fleet', l);
    const st = world.stack.sparkpost.state;
    st.apiKeys.splice(0, st.apiKeys.length, ...st.apiKeys.filter((k) => k.subaccount_id !== subaccountId));
    gate.close();
    const fleet = l.client.checkFleet({ enforce: true, concurrency: 4, sparkpostBudget: 10_000 }).catch((e) => e);
    await until('the fleet check to reach the instance', () => gate.waiting > 0, 60_000);
    const disabled = l.client.waitFor(await l.client.disable('race-fleet', 'operator'), { timeoutMs: 60_000 });
    gate.release();
    const s = await disabled;
    await fleet;
    assert.equal(s.state, 'disabled', s.error ?? '');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await l.client.status('race-fleet')).state, 'disabled');
    assert.equal(world.keysOf(subaccountId).length, 0);
  });

  test("3a. a customer's settings written while enable retries its patch are left alone", async () => {
    const i = world.stack.addInstance('own-midway');
    const { l, fault } = await unreachableSiteLane(true);
    await l.client.enable(i.name, specFor(i));
    await until('the patch to retry', () => fault.tripped >= 2);
    world.stack.sourcegraph.humanEdit(i.name, customerEdit);
    fault.on = false;
    await until('the enable to end', async () => (await l.client.status(i.name)).step === null, 90_000);
    const s = await l.client.status(i.name);
    assert.equal(s.state, 'customer-managed', s.error ?? '');
    assert.match(s.error ?? '', /customer/);
    assert.ok(customerOwnsConfig(i.name), "the customer's settings are intact");
    const sub = world.allSubaccounts(i.name)[0];
    assert.equal(sub ? world.keysOf(sub.id).length : 0, 0, 'no live key left behind');
  });

  test('3b. rotation and disable leave a customer who took over alone', async () => {
    const { i } = await enabled('own-later');
    world.stack.sourcegraph.humanEdit(i.name, customerEdit);
    const rotated = await lane.client.waitFor(await lane.client.rotateKey(i.name), { timeoutMs: 90_000 });
    assert.equal(rotated.state, 'customer-managed', rotated.error ?? '');
    assert.ok(customerOwnsConfig(i.name), 'rotation left the settings alone');
    const disabled = await lane.client.waitFor(await lane.client.disable(i.name), { timeoutMs: 60_000 });
    assert.equal(disabled.state, 'disabled', disabled.error ?? '');
    assert.ok(customerOwnsConfig(i.name), 'disable did not restore over them');
  });

  test('4. malformed signals are recorded and ignored; the entity keeps answering and working', async () => {
    const { i } = await enabled('malformed');
    const h = world.env.client.workflow.getHandle(workflowIdFor(i.name));
    await h.signal('disable');
    await h.signal('enable', { requestId: 'x', spec: { sourcegraphUrl: 42 } });
    await h.signal('deliverabilityAlert');
    await h.signal('gdprAudit', null);
    await h.signal('sendingDomainEvent');
    const s = await lane.client.status(i.name);
    assert.equal(s.state, 'active');
    assert.ok((s.rejected?.length ?? 0) >= 5, JSON.stringify(s.rejected));
    assert.ok(s.rejected?.some((r) => r.message === 'enable' && /sourcegraphUrl/.test(r.problem)));
    await assert.rejects(h.executeUpdate('rotateKey', { args: [{}] }), (err: Error) =>
      /requestId/.test(String((err.cause as Error | undefined)?.message)),
    );
    const d = await lane.client.waitFor(await lane.client.disable(i.name), { timeoutMs: 60_000 });
    assert.equal(d.state, 'disabled');
  });

  test('4b. enable and disable signals sent by tooling without a requestId (INTERFACE: requestId?) are acted on', async () => {
    const { i, subaccountId } = await enabled('no-request-id');
    const h = world.env.client.workflow.getHandle(workflowIdFor(i.name));
    const settled = async (state: string) => {
      let s = await lane.client.status(i.name);
      for (const deadline = Date.now() + 60_000; Date.now() < deadline; s = await lane.client.status(i.name)) {
        if (s.state === state && s.step === null && !s.requests.some((r) => !r.finishedAt)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      return s;
    };
    await h.signal('disable', { reason: 'sent by other tooling' });
    const off = await settled('disabled');
    assert.equal(off.state, 'disabled', JSON.stringify(off.rejected));
    assert.equal(off.rejected?.length ?? 0, 0, JSON.stringify(off.rejected));
    assert.equal(world.allSubaccounts(i.name).find((a) => a.id === subaccountId)?.status, 'suspended');
    await h.signal('enable', { spec: specFor(i) });
    const on = await settled('active');
    assert.equal(on.state, 'active', JSON.stringify(on.rejected) + (on.error ?? ''));
    await h.signal('disable', {});
    assert.equal((await settled('disabled')).state, 'disabled');
    // Each request got an id of its own, so waiters and the request records tell them apart.
    const ids = (await lane.client.status(i.name)).requests.slice(-3).map((r) => r.id);
    assert.equal(new Set(ids).size, 3, JSON.stringify(ids));
  });

  test('5. against an unreachable instance, disable preempts a rotation and takes effect at SparkPost first', async () => {
    const { l, fault } = await unreachableSiteLane(false);
    const { i, subaccountId } = await enabled('unreachable', l);
    fault.on = true;
    await l.client.rotateKey(i.name);
    await until('the rotation to retry its patch', () => fault.tripped >= 2);
    const asked = Date.now();
    const handle = await l.client.disable(i.name, 'customer left');
    await until(
      'SparkPost to be disabled',
      () => world.keysOf(subaccountId).length === 0 && world.liveSubaccounts(i.name)[0]?.status === 'suspended',
      60_000,
    );
    assert.ok(Date.now() - asked < 60_000);
    const during = await l.client.status(i.name);
    assert.ok(['disabling', 'disabled'].includes(during.state), during.state);
    fault.on = false;
    const s = await l.client.waitFor(handle, { timeoutMs: 240_000 });
    assert.equal(s.state, 'disabled', s.error ?? '');
    // A check against an unreachable instance returns (bounded) instead of hanging.
    fault.on = true;
    const c = await l.client.check(i.name, false);
    assert.ok(c.findings.length > 0);
    fault.on = false;
  });

  test('6. changing the URL or project of a provisioned instance needs --move, which cleans up the old site', async () => {
    const { i } = await enabled('mover');
    const target = world.stack.addInstance('mover-new');
    const moved = { ...specFor(target) };
    const refused = await lane.client.waitForRequest(await lane.client.enable(i.name, moved), { timeoutMs: 30_000 });
    assert.match(refused.outcome?.outcome ?? '', /rejected: .*--move/);
    assert.equal(refused.status.state, 'active');
    const s = await lane.client.waitFor(await lane.client.enable(i.name, { ...moved, move: true }), {
      timeoutMs: 90_000,
    });
    assert.equal(s.state, 'active', s.error ?? '');
    assert.equal(s.spec?.sourcegraphUrl, target.sourcegraphUrl);
    assert.equal(readEmailSettings(world.stack.sourcegraph.site(i.name).config).smtp, null, 'old site restored');
    assert.equal(world.sendKeySecret(i.gcpProject), undefined, 'old secret deleted');
    assert.ok(world.sendKeySecret(target.gcpProject), 'new secret');
  });

  test('7. the workflow id decides the instance', async () => {
    const i = world.stack.addInstance('by-id');
    const h = await world.env.client.workflow.signalWithStart('managedSmtpWorkflow', {
      workflowId: workflowIdFor('by-id'),
      taskQueue: lane.taskQueue,
      args: [{ instance: 'someone-else' }],
      signal: 'enable',
      signalArgs: [{ requestId: 'r1', spec: specFor(i) }],
    });
    await until('active', async () => (await lane.client.status('by-id')).state === 'active', 60_000);
    const s = await lane.client.status('by-id');
    assert.equal(s.instance, 'by-id');
    assert.ok(s.rejected?.some((r) => /someone-else/.test(r.problem)));
    assert.equal(world.liveSubaccounts('someone-else').length, 0);
    void h;
  });

  test('8. waiters never hang: past 20 newer requests, and when the run ends', async () => {
    const { i } = await enabled('waiter');
    const first = await lane.client.enable(i.name, specFor(i));
    await lane.client.waitFor(first, { timeoutMs: 60_000 });
    for (let n = 0; n < 22; n++) await lane.client.check(i.name, false);
    const r = await lane.client.waitForRequest(first, { timeoutMs: 5_000 });
    assert.equal(r.outcome?.outcome, 'active');
    // A request still queued when the run is terminated ends the wait at once with a sentence.
    const { l, fault } = await unreachableSiteLane(true);
    const j = world.stack.addInstance('waiter-ended');
    const handle = await l.client.enable(j.name, specFor(j));
    await until('the enable to retry', () => fault.tripped >= 1);
    await world.env.client.workflow.getHandle(workflowIdFor(j.name)).terminate('test');
    const started = Date.now();
    await assert.rejects(l.client.waitForRequest(handle, { timeoutMs: 60_000, pollMs: 100 }), RunEndedError);
    assert.ok(Date.now() - started < 10_000);
  });

  test('9. requests sent before the entity first runs are handled in the order they were sent', async () => {
    // No worker polls this queue yet, so the three signals wait in the entity's first task together (as after a
    // worker restart). The SDK used to hand them out per handler as each registered: both enables went first and
    // the disable, sent in between, had the last word over the operator's final enable.
    const taskQueue = uniqueTaskQueue('buffered');
    const client = new ManagedSmtpClient(world.env.client, taskQueue);
    const i = world.stack.addInstance('buffered-order');
    const first = await client.enable(i.name, specFor(i));
    const off = await client.disable(i.name, 'buffered');
    const last = await client.enable(i.name, specFor(i));
    await world.env.client.workflow.getHandle(workflowIdFor(i.name)).signal('noSuchSignal', { requestId: 'n' });
    const worker = await createManagedSmtpWorker({
      connection: world.env.nativeConnection,
      namespace: 'default',
      taskQueue,
      deps: world.deps(),
      workflowBundle: await workflowBundle(),
      shutdownGraceTime: '1s',
    });
    await worker.runUntil(async () => {
      const s = await client.waitFor(last, { timeoutMs: 60_000, pollMs: 100 });
      assert.equal(s.state, 'active', s.error ?? '');
      const outcome = async (id: string) => (await client.request(i.name, id))?.outcome;
      assert.equal(await outcome(first.requestId), 'superseded by disable');
      assert.equal(await outcome(off.requestId), 'disabled');
      assert.ok(
        s.rejected?.some((r) => r.message === 'signal' && /noSuchSignal/.test(r.problem)),
        JSON.stringify(s.rejected),
      );
    });
  });

  test('10. a disable preempting a protection clear still undoes the quarantine', async () => {
    const d = world.deps();
    const fault = new FaultSwitch();
    fault.on = false;
    const sparkpostDown = () =>
      new VendorError({ vendor: 'sparkpost', kind: 'unavailable', status: 503, message: 'injected: 503' });
    const l = await world.lane({ ...d, sparkpost: failing(d.sparkpost, 'updateSubaccount', sparkpostDown, fault) });
    const { i, subaccountId } = await enabled('clear-race', l);
    const h = world.env.client.workflow.getHandle(workflowIdFor(i.name));
    const pool = () => world.stack.sparkpost.state.subaccounts.find((s) => s.id === subaccountId)?.ip_pool ?? '';
    const severe = severeReading('severe-1');
    await h.signal(protectionSignal, severe);
    await until('the quarantine', async () => {
      const p = (await l.client.status(i.name)).protection;
      return p?.level === 'quarantined' && p.lastRequest?.requestId === 'severe-1';
    });
    assert.equal(pool(), 'quarantine');
    // The clear's lift keeps failing at SparkPost (retrying) when the operator disables the instance.
    fault.on = true;
    const clear: ProtectionRequest = { requestId: 'clear-1', input: { kind: 'clear', actor: 'op' } };
    await h.executeUpdate(protectionRequestUpdate, { args: [clear] });
    await until('the lift to retry', () => fault.tripped >= 2);
    const handle = await l.client.disable(i.name, 'operator');
    await until('the disable to preempt the lift', async () => (await l.client.status(i.name)).state === 'disabling');
    fault.on = false;
    const s = await l.client.waitFor(handle, { timeoutMs: 120_000 });
    assert.equal(s.state, 'disabled', s.error ?? '');
    assert.equal(s.protection?.level, 'ok');
    assert.equal(pool(), '', 'disable undid the quarantine the clear could not lift');
  });

  test('11. a protection configure queued behind a step is not lost to a disable that preempts the step', async () => {
    const { l, fault } = await unreachableSiteLane(false);
    const { i } = await enabled('configure-race', l);
    fault.on = true;
    await l.client.rotateKey(i.name);
    await until('the rotation to retry its patch', () => fault.tripped >= 2);
    const h = world.env.client.workflow.getHandle(workflowIdFor(i.name));
    const configure: ProtectionRequest = {
      requestId: 'configure-1',
      input: { kind: 'configure', config: { quietSeconds: 60, action: 'suspend' }, actor: 'op' },
    };
    await h.executeUpdate(protectionRequestUpdate, { args: [configure] });
    const handle = await l.client.disable(i.name, 'operator');
    fault.on = false;
    const s = await l.client.waitFor(handle, { timeoutMs: 120_000 });
    assert.equal(s.state, 'disabled', s.error ?? '');
    await until('the configure to run', async () => {
      const p = (await l.client.status(i.name)).protection;
      return p?.lastRequest?.requestId === 'configure-1';
    });
    const p = (await l.client.status(i.name)).protection;
    assert.equal(p?.config.quietSeconds, 60);
    assert.equal(p?.config.action, 'suspend');
  });

  test('12. a quarantine whose pool read failed is not recorded, and a later lift keeps the dedicated pool', async () => {
    const d = world.deps();
    // A 403 fails the pool read at once; a 503 would fail the same way after COMPENSATION's ~3.5 minutes of retries.
    const fault = new FaultSwitch(1);
    fault.on = false;
    const denied = () =>
      new VendorError({ vendor: 'sparkpost', kind: 'forbidden', status: 403, message: 'injected: 403' });
    const l = await world.lane({ ...d, sparkpost: failing(d.sparkpost, 'getSubaccount', denied, fault) });
    const { i, subaccountId } = await enabled('pool-read', l);
    const assigned = await l.client.waitFor(await l.client.assignIpPool(i.name, 'acme_dedicated', true), {
      timeoutMs: 60_000,
    });
    assert.equal(assigned.ipPool, 'acme_dedicated', JSON.stringify(assigned.lastIpPoolChange));
    const h = world.env.client.workflow.getHandle(workflowIdFor(i.name));
    const pool = () => world.stack.sparkpost.state.subaccounts.find((s) => s.id === subaccountId)?.ip_pool ?? '';
    const step = async (req: ProtectionRequest) => {
      await h.signal(protectionSignal, req);
      let p: Awaited<ReturnType<typeof l.client.status>>['protection'];
      await until(req.requestId, async () => {
        p = (await l.client.status(i.name)).protection;
        return p?.lastRequest?.requestId === req.requestId;
      });
      return { level: p!.level, previousPool: p!.previousPool, outcome: p!.lastRequest!.outcome, pool: pool() };
    };
    // The quarantine's read of the pool to put back fails (once): nothing is applied.
    fault.on = true;
    const failed = await step(severeReading('severe-1'));
    assert.equal(fault.tripped, 1);
    // The next severe reading tries again, and this time the quarantine is applied.
    const applied = await step(severeReading('severe-2'));
    const lifted = await step({ requestId: 'clear-1', input: { kind: 'clear', actor: 'op' } });
    assert.equal(lifted.pool, 'acme_dedicated', `the lift kept the dedicated pool: ${JSON.stringify(lifted)}`);
    // The ladder's level matches what is in force at SparkPost at every step.
    assert.equal(failed.pool, 'acme_dedicated');
    assert.notEqual(failed.level, 'quarantined', `not applied, not recorded: ${JSON.stringify(failed)}`);
    assert.match(failed.outcome, /injected: 403/);
    assert.equal(applied.pool, 'quarantine');
    assert.equal(applied.level, 'quarantined');
    assert.equal(applied.previousPool, 'acme_dedicated');
    assert.equal(lifted.level, 'ok');
  });
});
