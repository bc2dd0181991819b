/**
 * The messages of the instance entity (`managed-smtp/<instance>`): what tooling may send and what it gets back.
 * Names are part of the public interface (INTERFACE.md). Pure: imported by workflows, activities and clients.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type {
  CheckResult,
  DeliverabilityAlert,
  DisableRequest,
  EnableRequest,
  GdprAuditRecord,
  InstanceStatus,
  IpPoolRequest,
  SendingDomainAccepted,
  SendingDomainRequest,
  StuckReport,
  SuppressionAuditRecord,
} from '../lib/types';
import type { ProtectionRequest, RequestOutcome, SendingDomainEvent } from './types';

/** Starts or re-runs provisioning. */
export const enableSignal = defineSignal<[EnableRequest]>('enable');
/** Undoes everything provisioning did; preempts whatever runs for the instance. */
export const disableSignal = defineSignal<[DisableRequest]>('disable');
/** The instance's status. */
export const statusQuery = defineQuery<InstanceStatus>('status');
/** How a request ended (or that it is still pending), from a longer bounded memory than the status's records. */
export const requestQuery = defineQuery<RequestOutcome | null, [string]>('request');
/** Runs the invariant check in the queue; with `enforce`, a conditional repair follows when something drifted. */
export const checkUpdate = defineUpdate<CheckResult, [{ requestId: string; enforce: boolean }]>('check');
/** Queues a send-key rotation; returns at once with the request id (wait on the status). */
export const rotateKeyUpdate = defineUpdate<{ requestId: string }, [{ requestId: string }]>('rotateKey');
/** Raises or clears the instance's bounce-rate alert (sent by the bounce alert workflow). */
export const deliverabilityAlertSignal = defineSignal<[DeliverabilityAlert]>('deliverabilityAlert');
/** Sent by an activity of this workflow that keeps failing (from its third attempt). */
export const stuckSignal = defineSignal<[StuckReport]>('stuck');
/** Appends a GDPR deletion to the instance's audit trail (sent by the GDPR deletion workflow). */
export const gdprAuditSignal = defineSignal<[GdprAuditRecord]>('gdprAudit');
/** Adds a custom sending domain (verified by its own workflow) or removes it. */
export const sendingDomainUpdate = defineUpdate<SendingDomainAccepted, [SendingDomainRequest]>('sendingDomain');
/** Queues an IP pool assignment (or, with `pool: null`, unassignment); returns the request id at once. */
export const ipPoolUpdate = defineUpdate<{ requestId: string }, [IpPoolRequest]>('ipPool');
/** Sent by the domain workflow to the entity as the domain is created, verified or fails. */
export const sendingDomainEventSignal = defineSignal<[SendingDomainEvent]>('sendingDomainEvent');
/** Observations and requests from services (webhook receiver, bounce-alert poller); malformed ones are ignored. */
export const protectionSignal = defineSignal<[ProtectionRequest]>('protection');
/** The same from smtpctl (`protection clear|configure`): rejected when malformed, queued otherwise. */
export const protectionRequestUpdate = defineUpdate<{ requestId: string }, [ProtectionRequest]>('protectionRequest');
/** Appends (or, for the same request id, completes) a suppression-list audit record. */
export const suppressionAuditSignal = defineSignal<[SuppressionAuditRecord]>('suppressionAudit');
