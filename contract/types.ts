/**
 * Types of the entity's contract beyond lib/types.ts (which holds the status and request shapes and stays the
 * home of those, re-exported here). Pure.
 */
export * from '../lib/types';
import type { EnableRequest, DisableRequest, IpPoolRequest } from '../lib/types';
import type { DnsRecord } from '../lib/types';
import type { AlertTarget, ProtectionInput } from '../lib/protection';

/** A protection request: an observation (counts only), an operator's clear or configure. */
export interface ProtectionRequest {
  requestId: string;
  input: ProtectionInput;
  /** Replaces where alerts are posted (the sender's configuration). */
  alertWebhook?: AlertTarget | null;
}

/** What the domain workflow tells the entity (the entity ignores events of requests it no longer tracks). */
export type SendingDomainEvent =
  | { event: 'created'; requestId: string; domain: string; dnsRecords: DnsRecord[] }
  | { event: 'verified'; requestId: string; domain: string; at: string }
  | { event: 'failed'; requestId: string; domain: string; at: string; message: string; cancelled: boolean };

/** A request waiting in the entity's queue. Every change to an instance is one of these. */
export type QueuedRequest =
  | { kind: 'enable'; request: EnableRequest }
  | { kind: 'disable'; request: DisableRequest }
  | { kind: 'rotate'; request: { requestId: string } }
  | {
      kind: 'sending-domain';
      request:
        | { requestId: string; action: 'switch' | 'remove' | 'cancel' }
        | { requestId: string; action: 'add'; domain: string; recheckSeconds?: number; maxWaitSeconds?: number };
    }
  | { kind: 'ip-pool'; request: IpPoolRequest }
  | { kind: 'check'; request: { requestId: string; enforce: boolean } }
  /** Reputation protection: a metrics reading, a clear or a configuration (workflows/protection.ts decides). */
  | { kind: 'protection'; request: ProtectionRequest }
  | {
      kind: 'repair';
      /** The generation the check observed: the repair is dropped if any operator request came since. */
      request: { requestId: string; action: 'enable' | 'disable'; observedGeneration: number };
    };

/** How a request ended, as the `request` query answers. */
export interface RequestOutcome {
  id: string;
  kind: QueuedRequest['kind'];
  /** queued or running: not finished yet. */
  pending: boolean;
  /** The state it left the instance in, or `rejected: ...`, `superseded by ...`, `dropped: ...`. */
  outcome?: string;
  finishedAt?: string;
}

/** A message that did not parse, recorded in the status and otherwise ignored. */
export interface RejectedMessage {
  at: string;
  /** The message name (enable, disable, ...). */
  message: string;
  requestId: string | null;
  problem: string;
}
