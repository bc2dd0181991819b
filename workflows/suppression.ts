/**
 * The suppression-list audit trail of an instance (`smtpctl suppression remove`). The CLI records the request on the
 * instance's entity before it removes anything, and the outcome after, under the same request id; the record holds
 * who, why, when, the entry's source, and the address only masked and as a keyed hash. Pure bookkeeping on the
 * status: no vendor call, so the handler may apply it directly. Imported by workflow code.
 */
import type { InstanceStatus, SuppressionAuditRecord } from '../lib/types';

/** How many suppression audit records the status keeps. */
export const MAX_SUPPRESSION_AUDIT = 50;

const OUTCOMES: ReadonlyArray<SuppressionAuditRecord['outcome']> = ['requested', 'removed', 'refused', 'failed'];

/** Why a record is malformed, or null. An address in clear is refused, whatever field it hides in. */
export function suppressionAuditProblem(r: SuppressionAuditRecord): string | null {
  if (!r || typeof r !== 'object') return 'missing record';
  for (const k of ['requestId', 'at', 'actor', 'reason', 'recipientMasked', 'recipientHash'] as const) {
    if (typeof r[k] !== 'string') return `${k} must be a string`;
  }
  if (!OUTCOMES.includes(r.outcome)) return 'unknown outcome';
  const text = JSON.stringify(r);
  if (/[^\s"*@]+@[^\s"*@]+\.[a-z]{2,}/i.test(text.replace(/"recipientMasked":"[^"]*"/, ''))) {
    return 'a record must not hold an address in clear';
  }
  return null;
}

/** Applies a record to the status: a new request id appends, a known one is completed. Malformed ones are dropped. */
export function recordSuppressionAudit(status: InstanceStatus, record: SuppressionAuditRecord): void {
  if (suppressionAuditProblem(record) !== null) return;
  const audit = (status.suppressionAudit ??= []);
  const existing = audit.find((r) => r.requestId === record.requestId);
  if (existing) {
    if (existing.outcome === 'requested') Object.assign(existing, record, { at: existing.at });
    return;
  }
  audit.push(record);
  if (audit.length > MAX_SUPPRESSION_AUDIT) audit.shift();
}
