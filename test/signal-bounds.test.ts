/**
 * Signals that tooling may send straight to an instance's entity are data to check, not to trust: the suppression
 * audit record (smtpctl suppression remove) is bounded and free of control characters before it enters the status,
 * so a hostile or broken sender can neither bloat the status nor put terminal escapes into it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { World, specFor, type Lane } from './helpers/world';
import { suppressionAuditSignal } from '../contract/messages';
import { workflowIdFor } from '../lib/instance';
import type { SuppressionAuditRecord } from '../lib/types';

describe('suppression audit signals sent straight to Temporal', { timeout: 180_000 }, () => {
  let world: World;
  let lane: Lane;
  before(async () => {
    ({ world, lane } = await World.startWithLane());
  });
  after(async () => {
    await world?.close();
  });

  const record = (requestId: string, reason: string): SuppressionAuditRecord => ({
    requestId,
    at: new Date().toISOString(),
    actor: 'ops',
    reason,
    recipientMasked: 'j***@e***.com',
    recipientHash: 'hmac-sha256:operator:0123456789abcdef0123456789abcdef',
    source: 'Bounce Rule',
    type: 'transactional',
    forced: false,
    outcome: 'requested',
  });

  test('oversized records are refused, control characters removed; the status keeps answering, small and clean', async () => {
    const i = world.stack.addInstance('audit-bounds');
    const started = await lane.client.waitFor(await lane.client.enable(i.name, specFor(i)), { timeoutMs: 60_000 });
    assert.equal(started.state, 'active', started.error ?? '');
    const handle = world.env.client.workflow.getHandle(workflowIdFor(i.name));

    for (let n = 0; n < 3; n++) {
      await handle.signal(suppressionAuditSignal, record(`huge-${n}`, randomBytes(600_000).toString('hex')));
    }
    await handle.signal(suppressionAuditSignal, record('escapes', '\x1b]0;owned\x07\x1b[2J\u202egnp.exe'));
    await handle.signal(suppressionAuditSignal, record('fine', 'the customer asked'));

    // The last signal was applied (signals are handled in order): the status answers, small and without escapes.
    let status = await lane.client.status(i.name);
    for (let t = 0; t < 50 && !status.suppressionAudit?.some((r) => r.requestId === 'fine'); t++) {
      await new Promise((r) => setTimeout(r, 100));
      status = await lane.client.status(i.name);
    }
    const text = JSON.stringify(status);
    assert.ok(text.length < 100_000, `status is ${text.length} characters`);
    assert.ok(!text.includes('\\u001b') && !text.includes('\u202e'), 'no control character in the status');
    assert.deepEqual(
      (status.suppressionAudit ?? []).map((r) => r.requestId),
      ['escapes', 'fine'],
      'the oversized records are refused, the others kept',
    );
    assert.match(
      status.suppressionAudit?.[0].reason ?? '',
      /^\]0;owned\[2Jgnp\.exe$/,
      'kept without control characters',
    );
    const refused = (status.rejected ?? []).filter((r) => r.message === 'suppressionAudit');
    assert.deepEqual(
      refused.map((r) => r.requestId),
      ['huge-0', 'huge-1', 'huge-2'],
      'the refusals are recorded',
    );
  });
});
