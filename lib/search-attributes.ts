/**
 * Search attributes that make instances findable in the Temporal Web UI and `smtpctl list`. The worker registers
 * them at start-up; the dev server declares them on its command line.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** The instance slug. */
export const INSTANCE_KEY = defineSearchAttributeKey('ManagedSmtpInstance', SearchAttributeType.KEYWORD);
/** The lifecycle state (provisioning, active, ...). */
export const STATE_KEY = defineSearchAttributeKey('ManagedSmtpState', SearchAttributeType.KEYWORD);
/** The current step, or "none" when idle. */
export const STEP_KEY = defineSearchAttributeKey('ManagedSmtpStep', SearchAttributeType.KEYWORD);

/** True while the instance's bounce rate is over the alert threshold. */
export const BOUNCE_ALERT_KEY = defineSearchAttributeKey('ManagedSmtpBounceAlert', SearchAttributeType.BOOL);

/** True while the current step's activity keeps failing and retrying (set from its third attempt). */
export const STUCK_KEY = defineSearchAttributeKey('ManagedSmtpStuck', SearchAttributeType.BOOL);

/** Reputation protection level (ok, warning, quarantined, suspended, severe); lib/protection.ts. */
export const PROTECTION_KEY = defineSearchAttributeKey('ManagedSmtpProtection', SearchAttributeType.KEYWORD);

/** Visibility query of running instance entities; callers append their own ` AND ...` conditions. */
export const RUNNING_ENTITIES_QUERY = `WorkflowType = 'managedSmtpWorkflow' AND ExecutionStatus = 'Running'`;
/** Running instance entities that carry their instance name (every entity started through the client does). */
export const ENTITY_QUERY = `${RUNNING_ENTITIES_QUERY} AND ${INSTANCE_KEY.name} IS NOT NULL`;

/** Every attribute with its type name, as `temporal server start-dev --search-attribute` and the operator API take them. */
export const SEARCH_ATTRIBUTES: Record<string, 'Keyword' | 'Text' | 'Int' | 'Double' | 'Bool' | 'Datetime'> = {
  [INSTANCE_KEY.name]: 'Keyword',
  [STATE_KEY.name]: 'Keyword',
  [STEP_KEY.name]: 'Keyword',
  [BOUNCE_ALERT_KEY.name]: 'Bool',
  [STUCK_KEY.name]: 'Bool',
  [PROTECTION_KEY.name]: 'Keyword',
};

/** Every key, for test servers that take typed keys. */
export const ALL_SEARCH_ATTRIBUTE_KEYS = [
  INSTANCE_KEY,
  STATE_KEY,
  STEP_KEY,
  BOUNCE_ALERT_KEY,
  STUCK_KEY,
  PROTECTION_KEY,
];
