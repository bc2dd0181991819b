/** The Web UI's current details of an instance: where it is, in words. Pure. */
import type { InstanceStatus, Step } from '../../lib/types';
import { domainWorkflowIdFor } from '../domains';

/** Each step in words. */
export const STEP_TEXT: Record<Step, string> = {
  'inspect-site-config': 'reading the instance site configuration',
  'ensure-subaccount': 'creating or reactivating the SparkPost subaccount',
  'store-send-key': 'minting the send key and storing it in Secret Manager',
  'patch-site-config': 'writing email.address and email.smtp into the site configuration',
  'send-test-email': 'asking the instance to send a test email',
  'restore-site-config': 'restoring the email settings the instance had before',
  'revoke-send-key': 'revoking the SparkPost send key',
  'delete-secret': 'destroying and deleting the send-key secret',
  'release-subaccount': 'suspending the SparkPost subaccount',
  'mint-new-key': 'minting a new send key and storing it as a new secret version',
  'retire-old-key': 'revoking the old send key and destroying its secret version',
  'restore-old-key': 'rotation failed: putting the old key back in place',
  'switch-sender': 'switching email.address to the verified custom sending domain',
  'restore-sender': 'switching email.address back to the shared sending domain',
  'delete-sending-domain': 'deleting the custom sending domain at SparkPost',
  'assign-ip-pool': "setting the SparkPost subaccount's dedicated IP pool",
};

/** The enable steps, in order. */
export const ENABLE_STEPS: Step[] = [
  'inspect-site-config',
  'ensure-subaccount',
  'store-send-key',
  'patch-site-config',
  'send-test-email',
];

/** Markdown for the Web UI. */
export function detailsOf(s: InstanceStatus, operation: string | null): string {
  const lines = [`**${s.instance}**: ${s.state}`];
  if (s.step) {
    const n = ENABLE_STEPS.indexOf(s.step);
    const position = operation ?? (n >= 0 ? `step ${n + 1}/${ENABLE_STEPS.length}` : 'undoing');
    lines.push(`${position} \`${s.step}\`: ${STEP_TEXT[s.step]}`);
  }
  const d = s.sendingDomain;
  const facts = [
    s.subaccountId !== null ? `subaccount ${s.subaccountId}` : null,
    s.secretVersion ? `secret ${s.secretVersion}` : null,
    s.sender ? `sender ${s.sender}` : null,
    d ? `sending domain ${d.domain} (${d.state})` : null,
    s.ipPool ? `IP pool ${s.ipPool}` : null,
  ].filter(Boolean);
  if (facts.length) lines.push(facts.join(' · '));
  if (d?.state === 'pending-verification' && !d.verifiedAt) {
    const publish = d.dnsRecords.map((r) => `${r.type} \`${r.name}\``).join(', ');
    lines.push(
      `waiting for DNS verification of ${d.domain} in \`${d.workflowId ?? domainWorkflowIdFor(s.instance)}\`` +
        (publish ? `: publish ${publish}` : ''),
    );
  }
  if (s.lastTestEmail)
    lines.push(`last test email ${s.lastTestEmail.ok ? 'passed' : 'failed'} at ${s.lastTestEmail.at}`);
  if (s.retrying) {
    lines.push(
      `**stuck**: \`${s.retrying.activity}\` keeps failing and retrying (reported on attempt ${s.retrying.attempt} at ` +
        `${s.retrying.at}); Pending Activities shows the current attempt and the last error. ` +
        '`smtpctl disable` gives up and cleans up.',
    );
  }
  if (s.restorePending) {
    lines.push(
      `**site configuration not restored yet** (Sourcegraph unreachable since ${s.restorePending.since}); ` +
        'SparkPost is already disabled, the restore is retried automatically',
    );
  }
  if (s.error) lines.push(`error: ${s.error}`);
  if (s.deliverabilityAlert) {
    const a = s.deliverabilityAlert;
    lines.push(`bounce alert: ${(a.bounceRate * 100).toFixed(1)}% of ${a.accepted} accepted since ${a.from}`);
  }
  for (const w of s.warnings) lines.push(`warning: ${w}`);
  return lines.join('\n\n');
}
