/**
 * Enable: inspect site config → ensure subaccount → mint and store the send key → patch site config → test email.
 * A failure undoes what this run did, SparkPost first; settings the customer wrote meanwhile are left alone and the
 * instance ends `customer-managed`. A cancellation (a disable preempting) leaves the teardown to that disable.
 */
import { CancellationScope, isCancellation, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { CUSTOMER_OWNED, describeFailure, isFailureType } from '../../contract/failures';
import { hasRedactedSecret, type EmailSettings } from '../../lib/site-config';
import type { EnableRequest, EnableSpec, InstanceStatus, Step } from '../../lib/types';
import { COMPENSATION, DISABLE_SPARKPOST, PROVISIONING, RESTORE } from '../policies';
import { protectedIpPool } from '../protection';
import type { Entity } from './entity';
import { customSenderDomainArg, runUndo, senderDomainArg, siteOf, testEmail, type UndoStep } from './shared';

const provisioning = proxyActivities<Activities>(PROVISIONING);
const compensating = proxyActivities<Activities>(COMPENSATION);
const sparkpostFirst = proxyActivities<Activities>(DISABLE_SPARKPOST);
const restoring = proxyActivities<Activities>(RESTORE);

const NO_SETTINGS: EmailSettings = { address: null, smtp: null, senderName: null };

/** Whether the instance holds anything provisioned for its current spec. */
function provisioned(s: InstanceStatus): boolean {
  return s.secretVersion !== null || s.previousSettings !== null || s.state === 'active';
}

/** Why `spec` cannot replace the spec the instance was provisioned with, or null. */
export function specChangeProblem(s: InstanceStatus, spec: EnableSpec): string | null {
  const old = s.spec;
  if (!old || !provisioned(s) || spec.move) return null;
  const changes: string[] = [];
  if (old.sourcegraphUrl !== spec.sourcegraphUrl) changes.push(`URL ${old.sourcegraphUrl} → ${spec.sourcegraphUrl}`);
  if (old.gcpProject !== spec.gcpProject) changes.push(`GCP project ${old.gcpProject} → ${spec.gcpProject}`);
  if (changes.length === 0) return null;
  return (
    `${s.instance} is provisioned for another site (${changes.join(', ')}); enable with --move to restore the ` +
    'old site, delete the old secret and provision the new one'
  );
}

/** Restores the old site and deletes the old secret before provisioning a moved instance. */
async function moveAway(e: Entity, old: EnableSpec): Promise<void> {
  const s = e.status;
  const site = siteOf(old, s.instance);
  if (s.previousSettings) {
    e.publish('provisioning', 'restore-site-config');
    const r = await restoring.restoreSiteConfig({
      ...site,
      previous: s.previousSettings,
      ...customSenderDomainArg(s),
    });
    if (r.leftAlone) s.warnings.push(`the old site's email settings were the customer's by then and were left alone`);
  }
  e.publish('provisioning', 'delete-secret');
  await compensating.deleteSendKeySecret({ gcpProject: old.gcpProject, instance: s.instance });
  s.previousSettings = null;
  s.secretVersion = null;
  s.keyId = null;
  s.sender = null;
}

/** Runs one enable request (also the repair of `check --enforce` of an active instance). */
export async function enable(e: Entity, request: EnableRequest): Promise<void> {
  const s = e.status;
  const spec = request.spec;
  const instance = s.instance;
  const refused = specChangeProblem(s, spec);
  if (refused) {
    s.error = refused;
    e.finish(request.requestId, `rejected: ${refused}`);
    e.refreshDetails();
    return;
  }
  if (s.spec && spec.move && (s.spec.sourcegraphUrl !== spec.sourcegraphUrl || s.spec.gcpProject !== spec.gcpProject)) {
    s.error = null;
    await moveAway(e, s.spec);
  }
  // A re-run on an active instance is a repair: it must not tear down a working instance if it fails.
  const wasActive = s.state === 'active';
  const firstEnable = s.subaccountId === null;
  s.spec = { ...spec, move: undefined };
  s.error = null;
  s.warnings = [];
  const reached = new Set<Step>();
  let terminate = false;
  let terminated = false;
  try {
    const site = siteOf(spec, instance);
    e.publish('provisioning', 'inspect-site-config');
    const custom = s.sendingDomain;
    // A sender on the instance's own custom domain is managed, not the customer's.
    const inspection = await provisioning.inspectSiteConfig(
      custom ? { ...site, customSenderDomain: custom.domain } : site,
    );
    if (inspection.ownership === 'customer' && !spec.force) {
      s.error =
        `the instance already has its own SMTP settings (host ${inspection.smtpHost ?? 'unset'}, sender ` +
        `${inspection.address ?? 'unset'}): they are the customer's, so managed SMTP left them alone; ` +
        'enable with --force to replace them';
      e.publish('customer-managed', null);
      return;
    }
    if (inspection.ownership === 'customer') {
      s.warnings.push(
        `replaced the instance's own SMTP settings (host ${inspection.smtpHost ?? 'unset'}, sender ${inspection.address ?? 'unset'}); disable restores them`,
      );
    }
    s.previousSettings ??= inspection.previous;
    if (hasRedactedSecret(s.previousSettings.smtp)) {
      s.warnings.push(
        'the previous email.smtp password cannot be read back from Sourcegraph; disable restores the other settings without it',
      );
    }

    e.publish('provisioning', 'ensure-subaccount');
    const existing = firstEnable ? await provisioning.findSubaccount({ instance }) : null;
    terminate = firstEnable && existing === null;
    reached.add('ensure-subaccount');
    const sub = await provisioning.ensureSubaccount({
      instance,
      knownId: s.subaccountId ?? existing?.id ?? null,
      ...(terminate ? { absentAtStart: true } : {}),
      ...protectedIpPool(s), // keeps a quarantine in place
    });
    s.subaccountId = sub.id;
    if (sub.complianceStatus !== 'active') {
      s.warnings.push(`SparkPost reports compliance status "${sub.complianceStatus}" for subaccount ${sub.id}`);
    }

    e.publish('provisioning', 'store-send-key');
    reached.add('store-send-key');
    const key = await provisioning.ensureSendKey({
      instance,
      gcpProject: spec.gcpProject,
      subaccountId: sub.id,
      ...(terminate ? { freshSubaccount: true } : {}),
      ...(spec.egressIps !== undefined ? { egressIps: spec.egressIps } : {}),
    });
    s.keyId = key.keyId;
    s.secretVersion = key.secretVersion;

    e.publish('provisioning', 'patch-site-config');
    reached.add('patch-site-config');
    const { sender } = await provisioning.applyManagedSiteConfig({
      ...site,
      instance,
      secretVersion: key.secretVersion,
      senderName: spec.senderName,
      ...senderDomainArg(s),
      // Ownership is checked again inside the write: a customer who wrote settings since the inspection wins.
      guard: inspection.ownership === 'customer' ? 'any' : 'managed-or-none',
    });
    s.sender = sender;

    e.publish('provisioning', 'send-test-email');
    await testEmail(s, site);
    e.publish('active', null);
  } catch (err) {
    if (isCancellation(err)) {
      // A disable preempted this run: it tears down everything, SparkPost first, right after.
      s.error = `enable cancelled at ${s.step ?? 'start'} by a disable request`;
      // A first enable that created the subaccount leaves nothing behind, as a failed one would.
      e.terminateOnDisable = terminate;
      throw err;
    }
    const failedStep = s.step;
    const customer = isFailureType(err, CUSTOMER_OWNED);
    const why = describeFailure(err);
    const undo: UndoStep[] = [];
    if (!wasActive || customer) {
      const id = s.subaccountId;
      if (reached.has('store-send-key') && id !== null) {
        undo.push({ step: 'revoke-send-key', run: () => sparkpostFirst.revokeSendKeys({ subaccountId: id }) });
      }
      if (reached.has('ensure-subaccount')) {
        undo.push({
          step: 'release-subaccount',
          run: async () => {
            await sparkpostFirst.releaseSubaccount({ instance, subaccountId: s.subaccountId, terminate });
            terminated = terminate;
          },
        });
      }
      if (reached.has('patch-site-config') && !customer) {
        const previous = s.previousSettings ?? NO_SETTINGS;
        undo.push({
          step: 'restore-site-config',
          run: () => restoring.restoreSiteConfig({ ...siteOf(spec, instance), previous, ...customSenderDomainArg(s) }),
        });
      }
      if (reached.has('store-send-key')) {
        undo.push({
          step: 'delete-secret',
          run: () => compensating.deleteSendKeySecret({ gcpProject: spec.gcpProject, instance }),
        });
      }
    }
    const problems = await CancellationScope.nonCancellable(() => runUndo(e, undo, 'provisioning'));
    if (undo.length > 0 && problems.length === 0) {
      if (terminated) s.subaccountId = null;
      s.keyId = null;
      s.secretVersion = null;
      s.sender = null;
      if (!customer) s.previousSettings = null;
    }
    const undone = problems.length
      ? `; could not undo ${problems.join('; ')}`
      : undo.length
        ? '; everything it did was undone'
        : '';
    if (customer) {
      s.error =
        `enable stopped at ${failedStep}: ${why}; managed SMTP left the customer's settings alone` +
        (problems.length ? `; could not undo ${problems.join('; ')}` : ' and removed its key and secret');
      e.publish('customer-managed', null);
      return;
    }
    s.error = `enable failed at ${failedStep}: ${why}${undone}`;
    e.publish('failed', null);
  }
}
