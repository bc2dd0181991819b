/**
 * Disable: takes effect at SparkPost first (the send key revoked and the subaccount suspended within seconds, even
 * while Sourcegraph is unreachable), then restores the site configuration (only over settings that are still the
 * managed ones) and deletes the secret. A restore that cannot reach Sourcegraph does not hold disable up: the
 * instance is `disabled` with `restorePending`, and the entity retries the restore on its own.
 */
import { patched, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { describeFailure } from '../../contract/failures';
import type { DisableRequest } from '../../lib/types';
import { COMPENSATION, DISABLE_SPARKPOST, RESTORE } from '../policies';
import { resetProtectionForDisable } from '../protection';
import { protectionHost, type Entity } from './entity';
import { customSenderDomainArg, runUndo, siteOf, type UndoStep } from './shared';

const compensating = proxyActivities<Activities>(COMPENSATION);
const sparkpostFirst = proxyActivities<Activities>(DISABLE_SPARKPOST);
const restoring = proxyActivities<Activities>(RESTORE);

/** Restores the site configuration disable could not reach; true when done (or nothing was left to do). */
export async function restoreSite(e: Entity): Promise<boolean> {
  const s = e.status;
  if (!s.spec || !s.previousSettings) {
    s.restorePending = null;
    return true;
  }
  const state = s.state;
  e.publish(state, 'restore-site-config');
  try {
    const r = await restoring.restoreSiteConfig({
      ...siteOf(s.spec, s.instance),
      previous: s.previousSettings,
      ...customSenderDomainArg(s),
    });
    if (r.leftAlone === 'customer') {
      s.warnings.push("the site configuration held the customer's own settings by then: left alone");
    }
    s.restorePending = null;
    s.previousSettings = null;
    return true;
  } catch (err) {
    s.restorePending = {
      since: s.restorePending?.since ?? new Date().toISOString(),
      lastError: describeFailure(err).slice(0, 500),
    };
    return false;
  } finally {
    e.publish(state, null);
  }
}

/** Runs one disable request. */
export async function disable(e: Entity, request: DisableRequest): Promise<void> {
  const s = e.status;
  const spec = s.spec;
  const instance = s.instance;
  const subaccountId = s.subaccountId;
  const terminate = e.terminateOnDisable;
  e.terminateOnDisable = false;
  const domain = s.sendingDomain;
  if (
    domain &&
    domain.state === 'pending-verification' &&
    domain.verifiedAt &&
    patched('disable-keeps-verified-domain')
  ) {
    // The domain verified, but this disable superseded (or cut short) the switch to it: the switch's own answer for
    // an instance that is not active, so the next enable uses it (rather than a verified domain stuck pending).
    domain.state = 'active';
    s.lastSendingDomainChange = {
      requestId: domain.requestId,
      at: new Date().toISOString(),
      ok: true,
      message: `${domain.domain} verified; ${instance} is being disabled, its next enable uses it`,
    };
  }
  const steps: UndoStep[] = [];
  if (subaccountId !== null) {
    steps.push({ step: 'revoke-send-key', run: () => sparkpostFirst.revokeSendKeys({ subaccountId }) });
  }
  if (subaccountId !== null || spec) {
    // Without an id (an enable cancelled while creating it) the subaccount is found by the instance's name.
    steps.push({
      step: 'release-subaccount',
      run: async () => {
        await sparkpostFirst.releaseSubaccount({ instance, subaccountId, terminate });
        if (terminate) s.subaccountId = null;
      },
    });
  }
  const problems = await runUndo(e, steps, 'disabling');
  // After SparkPost is disabled (the 60 s promise): lift a quarantine and reset the reputation ladder, one alert.
  try {
    await resetProtectionForDisable(protectionHost(e), request.reason ?? '');
  } catch (err) {
    problems.push(`reset reputation protection: ${describeFailure(err)}`);
  }
  let restored = true;
  if (spec && s.previousSettings) {
    restored = await restoreSite(e);
    e.publish('disabling', null);
  }
  if (spec) {
    problems.push(
      ...(await runUndo(
        e,
        [
          {
            step: 'delete-secret',
            run: () => compensating.deleteSendKeySecret({ gcpProject: spec.gcpProject, instance }),
          },
        ],
        'disabling',
      )),
    );
  }
  if (problems.length > 0) {
    s.error = `disable incomplete: could not undo ${problems.join('; ')}`;
    e.publish('failed', null);
    return;
  }
  s.keyId = null;
  s.secretVersion = null;
  s.sender = null;
  s.error = restored
    ? null
    : `SparkPost sending is disabled, but the site configuration could not be restored yet ` +
      `(${s.restorePending?.lastError ?? 'unreachable'}); the entity retries it`;
  s.warnings = request.reason ? [`disabled: ${request.reason}`] : [];
  // Remembered before the state change, so a status showing this request finished shows it too.
  if (request.offboard === true && !s.offboarded) {
    s.offboarded = { at: new Date().toISOString(), requestId: request.requestId };
  }
  e.publish('disabled', null);
}
