/**
 * Key rotation: new key and secret version, config patched (only over the managed settings), test email passes;
 * only then the old key is revoked and its version destroyed. A failure or a preempting disable before that puts
 * the old key back, so the instance keeps working (or disable finds it as it was).
 */
import { CancellationScope, isCancellation, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { CUSTOMER_OWNED, describeFailure, isFailureType } from '../../contract/failures';
import { COMPENSATION, DAY_TWO } from '../policies';
import type { Entity } from './entity';
import { runUndo, senderDomainArg, siteOf, testEmail } from './shared';

const dayTwo = proxyActivities<Activities>(DAY_TWO);
const compensating = proxyActivities<Activities>(COMPENSATION);

/** Runs one rotation request. */
export async function rotate(e: Entity, requestId: string): Promise<void> {
  const s = e.status;
  const at = () => new Date().toISOString();
  if (s.state !== 'active' || !s.spec || s.subaccountId === null || !s.keyId || !s.secretVersion) {
    s.lastRotation = { requestId, at: at(), ok: false, message: `not rotated: ${s.instance} is ${s.state}` };
    return;
  }
  const spec = s.spec;
  const site = siteOf(spec, s.instance);
  const subaccountId = s.subaccountId;
  const old = { keyId: s.keyId, secretVersion: s.secretVersion };
  const base = { instance: s.instance, gcpProject: spec.gcpProject, subaccountId };
  s.error = null;
  e.operation = 'key rotation';
  let fresh: { keyId: string; secretVersion: string } | null = null;
  try {
    e.publish('active', 'mint-new-key');
    fresh = await dayTwo.mintSendKey({
      ...base,
      ...(spec.egressIps !== undefined ? { egressIps: spec.egressIps } : {}),
    });
    e.publish('active', 'patch-site-config');
    await dayTwo.applyKeyToSiteConfig({
      ...site,
      instance: s.instance,
      secretVersion: fresh.secretVersion,
      senderName: spec.senderName,
      ...senderDomainArg(s),
    });
    e.publish('active', 'send-test-email');
    await testEmail(s, site);
  } catch (err) {
    const failedStep = s.step;
    if (isCancellation(err)) {
      // Disable revokes every key and deletes the secret right after: no rollback to wait for.
      s.lastRotation = { requestId, at: at(), ok: false, message: `cancelled at ${failedStep} by a disable request` };
      throw err;
    }
    const customer = isFailureType(err, CUSTOMER_OWNED);
    const why = describeFailure(err);
    const problems = await CancellationScope.nonCancellable(() =>
      runUndo(
        e,
        [
          {
            step: 'restore-old-key',
            run: async () => {
              const restored = await compensating.rollbackKeyRotation({
                ...site,
                ...base,
                old,
                senderName: spec.senderName,
                ...senderDomainArg(s),
              });
              s.keyId = restored.keyId;
              s.secretVersion = restored.secretVersion;
            },
          },
        ],
        'active',
      ),
    );
    const message =
      `key rotation failed at ${failedStep}: ${why}; ` +
      (problems.length ? `and could not put the old key back: ${problems.join('; ')}` : 'the old key is still in use');
    s.lastRotation = { requestId, at: at(), ok: false, message };
    s.error = customer ? `${message}; the site configuration is the customer's now, left alone` : message;
    e.operation = null;
    e.publish(customer ? 'customer-managed' : problems.length ? 'failed' : 'active', null);
    return;
  }
  s.keyId = fresh.keyId;
  s.secretVersion = fresh.secretVersion;
  e.publish('active', 'retire-old-key');
  try {
    await dayTwo.retireSendKeys({ ...base, keepKeyId: fresh.keyId, keepVersion: fresh.secretVersion });
    s.lastRotation = { requestId, at: at(), ok: true, message: `rotated to key ${fresh.keyId}` };
  } catch (err) {
    if (isCancellation(err)) throw err;
    // The new key works; a leftover old key is drift that `check --enforce` repairs.
    const message = `rotated to key ${fresh.keyId}, but the old key could not be retired: ${describeFailure(err)}`;
    s.lastRotation = { requestId, at: at(), ok: true, message };
    s.warnings.push(message);
  }
  e.operation = null;
  e.publish('active', null);
}
