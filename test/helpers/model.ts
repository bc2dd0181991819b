/**
 * Model-based concurrency check of the instance entity (fast-check): random interleavings of operator requests
 * (enable, disable, rotate, check --enforce, fleet check --enforce, IP pool), customer edits of the site
 * configuration, transient vendor faults and worker restarts, fired without waiting for each other against a real
 * Temporal dev server and the emulators. After quiescence the model must hold: the final state is the operator's
 * last word, the vendors match it, the customer's settings are intact, and no key is orphaned. fast-check shrinks a
 * failure to a minimal sequence. Used by test/model.test.ts (fixed seed) and scripts/model-check.ts (long runs).
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { applyEdits, modify } from 'jsonc-parser';
import type { ActivityDeps } from '../../activities';
import { VendorError } from '../../lib/errors';
import { readEmailSettings } from '../../lib/site-config';
import { FaultSwitch, failing } from './faulty';
import { World, specFor, type Lane } from './world';

/** One step of a generated sequence. */
export type Action =
  | { a: 'enable' }
  | { a: 'disable' }
  | { a: 'rotate' }
  | { a: 'check' }
  | { a: 'fleet-check' }
  | { a: 'ip-pool' }
  | { a: 'customer-edit' }
  | { a: 'fault'; calls: number }
  | { a: 'restart' }
  | { a: 'pause'; ms: number };

/** The generator of sequences: they start with an enable, as every instance's life does. */
export const sequences = fc
  .array(
    fc.oneof(
      { weight: 4, arbitrary: fc.constant<Action>({ a: 'enable' }) },
      { weight: 4, arbitrary: fc.constant<Action>({ a: 'disable' }) },
      { weight: 2, arbitrary: fc.constant<Action>({ a: 'rotate' }) },
      { weight: 2, arbitrary: fc.constant<Action>({ a: 'check' }) },
      { weight: 1, arbitrary: fc.constant<Action>({ a: 'fleet-check' }) },
      { weight: 1, arbitrary: fc.constant<Action>({ a: 'ip-pool' }) },
      { weight: 1, arbitrary: fc.constant<Action>({ a: 'customer-edit' }) },
      { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }).map<Action>((calls) => ({ a: 'fault', calls })) },
      { weight: 1, arbitrary: fc.constant<Action>({ a: 'restart' }) },
      { weight: 3, arbitrary: fc.integer({ min: 50, max: 1500 }).map<Action>((ms) => ({ a: 'pause', ms })) },
    ),
    { minLength: 1, maxLength: 7 },
  )
  .map((rest) => [{ a: 'enable' } as Action, ...rest]);

const CUSTOMER_SMTP = { host: 'smtp.customer.example.com', port: 2525, username: 'own', password: 'own-pass' };

/** Runs model-based sequences against one world; each sequence gets a fresh instance. */
export class ModelRunner {
  private n = 0;
  private readonly fault = new FaultSwitch(0);
  private lane!: Lane;

  constructor(private readonly world: World) {
    this.fault.on = false;
  }

  /** The lane: SparkPost's createApiKey and updateSubaccount fail while a fault is armed (transient 503s). */
  private deps(): ActivityDeps {
    const d = this.world.deps();
    const unavailable = () =>
      new VendorError({ vendor: 'sparkpost', kind: 'unavailable', status: 503, message: 'injected: 503' });
    return { ...d, sparkpost: failing(d.sparkpost, 'createApiKey', unavailable, this.fault) };
  }

  async start(): Promise<void> {
    this.lane = await this.world.lane(this.deps());
  }

  /** Runs one sequence and checks the model; throws (an assertion) on a violation. */
  async run(actions: Action[]): Promise<void> {
    const world = this.world;
    const name = `model-${process.pid % 1000}-${++this.n}`;
    const inst = world.stack.addInstance(name);
    const c = this.lane.client;
    let last: 'enable' | 'disable' = 'enable';
    let customerEdited = false;
    const inflight: Promise<unknown>[] = [];
    const requests: string[] = [];
    for (const act of actions) {
      switch (act.a) {
        case 'enable':
          last = 'enable';
          requests.push((await c.enable(name, specFor(inst))).requestId);
          break;
        case 'disable':
          last = 'disable';
          requests.push((await c.disable(name, 'model')).requestId);
          break;
        case 'rotate':
          inflight.push(
            c.rotateKey(name).then(
              (h) => requests.push(h.requestId),
              () => undefined,
            ),
          );
          break;
        case 'check':
          inflight.push(c.check(name, true).catch(() => undefined));
          break;
        case 'fleet-check':
          inflight.push(c.checkFleet({ enforce: true, concurrency: 8, sparkpostBudget: 100_000 }).catch(() => null));
          break;
        case 'ip-pool':
          inflight.push(
            c.unassignIpPool(name).then(
              (h) => requests.push(h.requestId),
              () => undefined,
            ),
          );
          break;
        case 'customer-edit':
          customerEdited = true;
          world.stack.sourcegraph.humanEdit(name, (t) => {
            const x = applyEdits(t, modify(t, ['email.address'], 'ops@own.example.com', {}));
            return applyEdits(x, modify(x, ['email.smtp'], CUSTOMER_SMTP, {}));
          });
          break;
        case 'fault':
          this.fault.tripped = 0;
          this.fault.limit = act.calls;
          this.fault.on = true;
          break;
        case 'restart':
          await world.restart(this.lane, this.deps());
          break;
        case 'pause':
          await new Promise((r) => setTimeout(r, act.ms));
          break;
      }
    }
    await Promise.allSettled(inflight);
    const status = await this.quiesce(name, requests);
    this.fault.on = false;
    this.check(name, inst.gcpProject, status, last, customerEdited);
  }

  /** Waits until every request sent has finished and the entity is idle. */
  private async quiesce(name: string, requests: string[]) {
    const c = this.lane.client;
    const deadline = Date.now() + 180_000;
    for (let polls = 0; Date.now() < deadline; polls++) {
      const s = await c.status(name).catch(() => null);
      if (s && s.step === null) {
        const outcomes = await Promise.all(requests.map((id) => c.request(name, id))).catch(() => null);
        if (outcomes && outcomes.every((o) => o && !o.pending)) {
          const again = await c.status(name);
          if (again.step === null) return again;
        }
      }
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.fail(`${name} did not quiesce within 180 s`);
  }

  private check(
    name: string,
    gcpProject: string,
    s: Awaited<ReturnType<Lane['client']['status']>>,
    last: 'enable' | 'disable',
    customerEdited: boolean,
  ): void {
    const world = this.world;
    const settings = readEmailSettings(world.stack.sourcegraph.site(name).config);
    const subs = world.allSubaccounts(name);
    const live = subs.filter((x) => x.status !== 'terminated');
    assert.ok(live.length <= 1, `one subaccount at most, found ${live.length}`);
    const keys = live.flatMap((x) => world.keysOf(x.id));
    assert.ok(keys.length <= 1, `no orphan key: ${keys.length} live keys`);
    // What the entity did, in order: the first thing a failing counterexample needs.
    const trail = (s.requests ?? [])
      .slice(-8)
      .map((r) => `${r.kind}:${r.outcome ?? 'pending'}`)
      .join(', ');
    const customerIntact =
      settings.smtp?.host === CUSTOMER_SMTP.host && settings.smtp?.password === CUSTOMER_SMTP.password;
    if (customerEdited) {
      // Never overwritten without --force (the model never forces), whatever happened after the edit.
      assert.ok(
        customerIntact,
        `the customer's settings are intact (state ${s.state}, host ${String(settings.smtp?.host)})`,
      );
    }
    if (last === 'disable') {
      assert.equal(s.state, 'disabled', `the last word was disable: ${s.error ?? ''} [${trail}]`);
      assert.equal(keys.length, 0, 'a disabled instance has no live key');
      assert.ok(
        live.every((x) => x.status === 'suspended'),
        'subaccount suspended',
      );
      assert.equal(world.sendKeySecret(gcpProject), undefined, 'secret deleted');
      if (!customerEdited) assert.equal(settings.smtp, null, 'site configuration restored');
      return;
    }
    if (customerEdited) {
      assert.ok(['active', 'customer-managed'].includes(s.state), `enable with a customer edit: ${s.state} ${s.error}`);
      return;
    }
    assert.equal(s.state, 'active', `the last word was enable: ${s.error ?? ''} [${trail}]`);
    assert.equal(keys.length, 1, 'exactly one live send key');
    const secret = world.sendKeySecret(gcpProject);
    assert.ok(secret, 'the send-key secret exists');
    assert.equal(settings.smtp?.password, keys[0]?.key, 'the site configuration holds the live key');
  }
}
