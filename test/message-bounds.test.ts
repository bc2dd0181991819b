/**
 * Signals the entity stores in its status are data to check, not to trust: the GDPR audit record and the
 * sending-domain events keep only the fields the entity knows, bounded and free of control characters, whoever sent
 * them. The handlers run against a minimal entity (no workflow, no server).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Handlers } from '../workflows/instance/handlers';
import type { Entity } from '../workflows/instance/entity';
import type { GdprAuditRecord, InstanceStatus } from '../lib/types';

const ESCAPES = '\x1b]0;owned\x07\x1b[2J\u202e';

function entity(status: Partial<InstanceStatus>): { e: Entity; rejected: string[] } {
  const rejected: string[] = [];
  const e = {
    status: status as InstanceStatus,
    queue: [],
    reject: (message: string, _payload: unknown, problem: string) => rejected.push(`${message}: ${problem}`),
    refreshDetails: () => {},
    bumpGeneration: () => {},
    finish: () => {},
  } as unknown as Entity;
  return { e, rejected };
}

function assertClean(text: string, limit: number): void {
  assert.ok(text.length < limit, `${text.length} characters`);
  assert.ok(!/[\u0000-\u001f\u007f-\u009f\u202e]/.test(text), 'no control character'); // eslint-disable-line no-control-regex
}

describe('gdprAudit signal', () => {
  test('unknown fields are dropped, the known ones kept', () => {
    const { e, rejected } = entity({});
    const record: GdprAuditRecord = {
      requestId: 'gdpr-1',
      at: '2026-11-29T21:00:00.000Z',
      scope: 'listed',
      recipients: 3,
      batches: 1,
      optOut: true,
      outcome: 'filed',
      verifiedAt: '2026-12-29T21:00:00.000Z',
      found: 0,
      listDestroyedAt: '2026-12-29T21:00:01.000Z',
    };
    new Handlers(e, null).onGdprAudit({ ...record, junk: 'x'.repeat(1_000_000), more: { deep: ESCAPES } });
    assert.deepEqual(rejected, []);
    assert.deepEqual(e.status.gdprAudit, [record]);
    assertClean(JSON.stringify(e.status), 2_000);
  });

  test('an error is kept as one clean line', () => {
    const { e } = entity({});
    new Handlers(e, null).onGdprAudit({
      requestId: 'gdpr-2',
      at: '2026-11-29T21:00:00.000Z',
      scope: 'all-recipients',
      recipients: 0,
      batches: 0,
      optOut: false,
      outcome: 'failed',
      error: `${ESCAPES}SparkPost said\nno`,
    });
    assert.equal(e.status.gdprAudit?.[0].error, ']0;owned[2JSparkPost said no');
  });
});

describe('sendingDomainEvent signal', () => {
  const pending = () => ({
    sendingDomain: {
      domain: 'mail.acme.com',
      state: 'pending-verification' as const,
      dnsRecords: [],
      requestedAt: '2026-11-29T21:00:00.000Z',
      requestId: 'dom-1',
      workflowId: 'wf',
    },
  });

  test('DNS records are bounded, cleaned and stripped of unknown fields', () => {
    const { e, rejected } = entity(pending());
    const record = {
      type: 'TXT',
      name: 'scph0125._domainkey.mail.acme.com',
      value: 'v=DKIM1; k=rsa; h=sha256; p=MIIB',
      purpose: 'DKIM signing key',
    };
    new Handlers(e, null).onDomainEvent({
      event: 'created',
      requestId: 'dom-1',
      domain: 'mail.acme.com',
      dnsRecords: [record, { ...record, name: `${ESCAPES}x.mail.acme.com`, junk: 'y'.repeat(100_000) }],
    });
    assert.deepEqual(rejected, []);
    assert.deepEqual(e.status.sendingDomain?.dnsRecords, [record, { ...record, name: ']0;owned[2Jx.mail.acme.com' }]);
    assertClean(JSON.stringify(e.status), 20_000);
  });

  test('an oversized DNS record is refused, not stored', () => {
    const { e, rejected } = entity(pending());
    new Handlers(e, null).onDomainEvent({
      event: 'created',
      requestId: 'dom-1',
      domain: 'mail.acme.com',
      dnsRecords: [{ type: 'TXT', name: 'x.mail.acme.com', value: 'v'.repeat(1_000_000), purpose: 'DKIM' }],
    });
    assert.deepEqual(e.status.sendingDomain?.dnsRecords, []);
    assert.equal(rejected.length, 1, rejected.join('\n'));
    assertClean(JSON.stringify(e.status), 2_000);
  });

  test('a huge verification time is refused, not stored', () => {
    const { e, rejected } = entity(pending());
    new Handlers(e, null).onDomainEvent({
      event: 'verified',
      requestId: 'dom-1',
      domain: 'mail.acme.com',
      at: `${ESCAPES}${'t'.repeat(1_000_000)}`,
    });
    assert.equal(e.status.sendingDomain?.verifiedAt, undefined);
    assert.equal(rejected.length, 1, rejected.join('\n'));
    assertClean(JSON.stringify(e.status), 2_000);
  });

  test('a failure keeps one clean bounded line', () => {
    const { e } = entity(pending());
    new Handlers(e, null).onDomainEvent({
      event: 'failed',
      requestId: 'dom-1',
      domain: 'mail.acme.com',
      at: `${ESCAPES}2026-11-29T21:00:00.000Z`,
      message: `${ESCAPES}not verified\n${'m'.repeat(5_000)}`,
      cancelled: false,
    });
    assert.equal(e.status.sendingDomain, null);
    assert.equal(e.status.lastSendingDomainChange?.at, ']0;owned[2J2026-11-29T21:00:00.000Z');
    assertClean(JSON.stringify(e.status), 4_000);
  });
});
