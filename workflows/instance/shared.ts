/** Pieces every operation of the entity uses: where the site is, the sender domain, undo steps, the test email. */
import { isCancellation, proxyActivities } from '@temporalio/workflow';
import type { Activities, SiteRef } from '../../activities';
import { describeFailure } from '../../contract/failures';
import type { EnableSpec, InstanceState, InstanceStatus, Step } from '../../lib/types';
import { TEST_EMAIL } from '../policies';
import type { Entity } from './entity';

const testing = proxyActivities<Activities>(TEST_EMAIL);

/** A compensating (or disabling) step. */
export interface UndoStep {
  step: Step;
  run: () => Promise<unknown>;
}

/** Where the instance's Sourcegraph is and which secret holds its admin token. */
export function siteOf(spec: EnableSpec, instance: string): SiteRef {
  // gcpProject: the activity refuses an admin token outside the instance's own project; instance: or in a project
  // another instance has claimed.
  return {
    sourcegraphUrl: spec.sourcegraphUrl,
    adminTokenSecret: spec.adminTokenSecret,
    gcpProject: spec.gcpProject,
    instance,
  };
}

/** `{ senderDomain }` when the sender is on a verified custom domain, else nothing (the shared domain). */
export function senderDomainArg(s: InstanceStatus): { senderDomain?: string } {
  const d = s.sendingDomain;
  return d && d.state === 'active' ? { senderDomain: d.domain } : {};
}

/**
 * `{ customSenderDomain }` when the instance has a custom sending domain (any state), for restoreSiteConfig: a sender
 * on it is managed, not the customer's, so the restore takes it back.
 */
export function customSenderDomainArg(s: InstanceStatus): { customSenderDomain?: string } {
  return s.sendingDomain ? { customSenderDomain: s.sendingDomain.domain } : {};
}

/** Runs undo steps in order; a step that fails does not stop the others. Returns what could not be undone. */
export async function runUndo(e: Entity, steps: UndoStep[], state: InstanceState): Promise<string[]> {
  const problems: string[] = [];
  for (const u of steps) {
    e.publish(state, u.step);
    try {
      await u.run();
    } catch (err) {
      problems.push(`${u.step}: ${describeFailure(err)}`);
    }
  }
  return problems;
}

/** Sends the test email and records its outcome, passing a failure on. */
export async function testEmail(s: InstanceStatus, site: SiteRef): Promise<void> {
  try {
    s.lastTestEmail = await testing.sendTestEmail(site);
  } catch (err) {
    if (!isCancellation(err)) {
      s.lastTestEmail = { at: new Date().toISOString(), ok: false, message: describeFailure(err) };
    }
    throw err;
  }
}
