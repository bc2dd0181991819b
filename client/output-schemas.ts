/**
 * The `--json` documents of smtpctl as zod schemas: the source of the published JSON Schemas in schemas/ (written by
 * `npx tsx scripts/build-schemas.ts`, checked against these by test/cli-output.test.ts). Objects are open (fields may be
 * added within a schemaVersion); what is listed is what tooling may rely on. Not loaded by the CLI itself.
 */
import { z } from 'zod';
import type {
  BounceAlertSummary,
  DeliverabilityFigures,
  FleetRow,
  PlanUsage,
  SkippedInstance,
} from '../contract/deliverability';
import type { GdprReceipt, GdprVerification } from '../contract/gdpr';
import { requestSchemas } from '../contract/requests';
import type { DnsRecord, SendingDomainInfo, SuppressionAuditRecord } from '../contract/types';
import type { ProtectionConfig, ProtectionStatus } from '../lib/protection';
import { INSTANCE_STATES, type InstanceState } from '../lib/types';
import type { DeliverabilityStats } from '../workflows/deliverability';
import type { DomainWorkflowStatus } from '../workflows/domains';
import type { OffboardReceipt } from '../workflows/offboard';
import type { RecipientEvent, SuppressionEntry, WhyReport } from './commands/why';
import { SCHEMA_VERSION } from './schema-version';

const schemaVersion = z.literal(SCHEMA_VERSION).describe('version of this document shape (schemas/)');
const timestamp = z.string().describe('ISO 8601 time');
const state = z.enum(INSTANCE_STATES as [InstanceState, ...InstanceState[]]);

const testEmail = z.looseObject({ at: timestamp, ok: z.boolean(), message: z.string() });
const operationRecord = z.looseObject({ requestId: z.string(), at: timestamp, ok: z.boolean(), message: z.string() });
const finding = z.looseObject({ check: z.string(), ok: z.boolean(), message: z.string(), repairable: z.boolean() });
const requestRecord = z.looseObject({
  id: z.string(),
  kind: z.string(),
  receivedAt: timestamp,
  finishedAt: timestamp.optional(),
  outcome: z.string().optional(),
});

/** InstanceStatus (lib/types.ts) as printed: INTERFACE.md's `status --json` fields and the rest. */
const statusFields = {
  instance: z.string(),
  state,
  step: z.string().nullable(),
  subaccountId: z.number().int().nullable(),
  keyId: z.string().nullable(),
  secretVersion: z.string().nullable(),
  sender: z.string().nullable(),
  lastTestEmail: testEmail.nullable(),
  error: z.string().nullable(),
  warnings: z.array(z.string()),
  spec: z
    .looseObject({
      sourcegraphUrl: z.string(),
      gcpProject: z.string(),
      adminTokenSecret: z.string(),
      senderName: z.string().optional(),
      force: z.boolean(),
    })
    .nullable(),
  previousSettings: z.looseObject({}).nullable(),
  updatedAt: timestamp,
  requests: z.array(requestRecord),
  lastCheck: z
    .looseObject({ at: timestamp, problems: z.array(finding), repairRequestId: z.string().nullable() })
    .nullable()
    .optional(),
  lastRotation: operationRecord.nullable().optional(),
  deliverabilityAlert: z
    .looseObject({ active: z.boolean(), at: timestamp, bounceRate: z.number(), threshold: z.number() })
    .nullable()
    .optional(),
  gdprAudit: z
    .array(z.looseObject({ requestId: z.string(), at: timestamp, recipients: z.number().int(), outcome: z.string() }))
    .optional(),
  sendingDomain: z.looseObject({ domain: z.string(), state: z.string() }).nullable().optional(),
  ipPool: z.string().nullable().optional(),
};

/** An instance's status without the document's own schemaVersion (nested in other documents). */
const nestedStatus = z.looseObject({ schemaVersion: schemaVersion.optional(), ...statusFields });

/** `status`, and `enable|disable|rotate-key --wait`, `sending-domain ...` when they print the status they left. */
export const statusDocument = z.looseObject({ schemaVersion, ...statusFields }).meta({
  title: 'smtpctl instance status',
});

const stuck = z.looseObject({
  activity: z.string(),
  attempts: z.number().int(),
  lastFailure: z.string().nullable(),
  since: timestamp.nullable(),
});

/** One element of `list --json`, one line of `list --ndjson`: a status, with `stuck` under `--stuck`. */
export const listedStatusDocument = z.looseObject({ schemaVersion, ...statusFields, stuck: stuck.optional() }).meta({
  title: 'smtpctl list entry',
});

/** `list --json` without `--limit`: every instance (INTERFACE.md: an array of status objects). */
export const listDocument = z.array(listedStatusDocument).meta({ title: 'smtpctl list --json' });

/** `list --json --limit N [--page-token T]`: one page and the token of the next (null on the last page). */
export const listPageDocument = z
  .looseObject({ schemaVersion, instances: z.array(listedStatusDocument), nextPageToken: z.string().nullable() })
  .meta({ title: 'smtpctl list --json --limit' });

/** A line of `list --ndjson`: a status, or (last, with `--limit`, when there is more) the next page token. */
export const listNdjsonLine = z
  .union([listedStatusDocument, z.strictObject({ schemaVersion, nextPageToken: z.string() })])
  .meta({ title: 'smtpctl list --ndjson line' });

/** `enable`, `disable`, `rotate-key` without `--wait`: the request that was sent. */
export const requestDocument = z
  .looseObject({
    schemaVersion,
    instance: z.string(),
    requestId: z.string(),
    workflowId: z.string().optional(),
    requested: z.enum(['enable', 'disable', 'rotate-key']),
  })
  .meta({ title: 'smtpctl request accepted' });

/** `check [--enforce]`. */
export const checkDocument = z
  .looseObject({
    schemaVersion,
    instance: z.string(),
    state,
    at: timestamp,
    findings: z.array(finding),
    repairRequestId: z.string().nullable(),
    repaired: nestedStatus.nullable(),
  })
  .meta({ title: 'smtpctl check' });

/** Any command that failed (exit 1 or 2) before it printed its own document. */
export const errorDocument = z
  .looseObject({ schemaVersion, error: z.string(), status: z.unknown().optional() })
  .meta({ title: 'smtpctl error' });

/** `check-fleet` run once (FleetCheckReport, workflows/fleet.ts). */
export const checkFleetDocument = z
  .looseObject({
    schemaVersion,
    at: timestamp,
    instances: z.number().int(),
    checked: z.number().int(),
    healthy: z.number().int(),
    deferred: z.number().int(),
    drifted: z.array(z.looseObject({ instance: z.string(), problems: z.array(finding), repairRequested: z.boolean() })),
    errors: z.array(z.looseObject({ instance: z.string(), error: z.string() })),
  })
  .meta({ title: 'smtpctl check-fleet' });

/** `enable-fleet <file>` (not `--dry-run`): what happened to each instance (RolloutRow, client/commands/rollout.ts). */
export const enableFleetDocument = z
  .array(
    z.looseObject({
      schemaVersion,
      instance: z.string(),
      action: z.enum(['enable', 'disable', 'unchanged', 'error']),
      state: z.union([state, z.literal('none')]).nullable(),
      error: z.string().nullable(),
    }),
  )
  .meta({ title: 'smtpctl enable-fleet' });

// ---------------------------------------------------------------- the command modules (client/commands/)

/**
 * Ties a schema to the contract type its document is printed from: tsc fails here when that type gains a required
 * field, renames or retypes one and the schema does not follow, so the published schema cannot drift from contract/.
 */
const follows =
  <T>() =>
  <S extends z.ZodType<T>>(schema: S): S =>
    schema;

const count = z.number().int().nonnegative();
const gdprScope = z.enum(['listed', 'all-recipients']);

const gdprVerification = follows<GdprVerification>()(
  z.looseObject({
    at: timestamp,
    found: count,
    events: count,
    suppressions: count,
    keptForCompliance: count,
    refiled: count,
  }),
);

/** GdprReceipt (contract/gdpr.ts): counts and times, never an address. */
const gdprReceiptFields = {
  requestId: z.string(),
  instance: z.string(),
  subaccountId: z.number().int(),
  scope: gdprScope,
  optOut: z.boolean(),
  state: z.enum(['filing', 'waiting', 'verifying', 'shredding', 'complete', 'failed']),
  recipients: count,
  batches: count,
  resumedBatches: count,
  filedAt: timestamp.nullable(),
  listHashedAt: timestamp.nullable(),
  verifyDueAt: timestamp.nullable(),
  verifiedAt: timestamp.nullable(),
  verifications: z.array(gdprVerification),
  found: count.nullable(),
  listDestroyedAt: timestamp.nullable(),
  destroyedVersions: count,
  error: z.string().nullable(),
};
const gdprReceipt = follows<GdprReceipt>()(z.looseObject(gdprReceiptFields));

/** `gdpr-delete` without `--wait`: the request that was filed. */
export const gdprDeleteDocument = z
  .looseObject({
    schemaVersion,
    instance: z.string(),
    requestId: z.string(),
    workflowId: z.string(),
    requested: z.literal('gdpr-delete'),
    scope: gdprScope,
    recipients: count.nullable().describe('listed recipients; null with --all-recipients'),
    optOut: z.boolean(),
  })
  .meta({ title: 'smtpctl gdpr-delete' });

/** `gdpr-delete --wait` and `gdpr-status <instance> <requestId>`: one receipt (GdprReceipt, contract/gdpr.ts). */
export const gdprReceiptDocument = follows<GdprReceipt>()(
  z.looseObject({ schemaVersion, workflowId: z.string().optional(), ...gdprReceiptFields }),
).meta({ title: 'smtpctl GDPR receipt' });

/** `gdpr-status <instance>`: every receipt, or (when the workflows are past retention) the audit records. */
export const gdprStatusDocument = z
  .looseObject({
    schemaVersion,
    instance: z.string(),
    receipts: z.array(gdprReceipt),
    auditRecords: z.array(requestSchemas().gdprAudit.loose()).optional(),
  })
  .meta({ title: 'smtpctl gdpr-status' });

/** `offboard` without `--wait`: the offboarding that was started (or joined). */
export const offboardDocument = z
  .looseObject({
    schemaVersion,
    instance: z.string(),
    workflowId: z.string(),
    requested: z.literal('offboard'),
    requestId: z.string().nullable(),
  })
  .meta({ title: 'smtpctl offboard' });

/** `offboard --wait`: the receipt (OffboardReceipt, workflows/offboard.ts). */
export const offboardReceiptDocument = follows<OffboardReceipt>()(
  z.looseObject({
    schemaVersion,
    instance: z.string(),
    requestId: z.string(),
    subaccountId: z.number().int().nullable(),
    gcpProject: z.string(),
    state: z.enum(['disabling', 'erasing', 'terminating', 'deleting-secrets', 'complete', 'failed']),
    startedAt: timestamp,
    disabledAt: timestamp.nullable(),
    erasure: gdprReceipt.nullable(),
    subaccountTerminatedAt: timestamp.nullable(),
    secretsDeleted: count,
    secretsDeletedAt: timestamp.nullable(),
    finishedAt: timestamp.nullable(),
    error: z.string().nullable(),
  }),
).meta({ title: 'smtpctl offboard --wait' });

/** DeliverabilityFigures (contract/deliverability.ts). */
const figuresFields = {
  accepted: count,
  delivered: count,
  bounces: count,
  hardBounces: count,
  targeted: count,
  bounceRate: z.number().min(0).max(1),
};
const figures = follows<DeliverabilityFigures>()(z.looseObject(figuresFields));
const fleetRow = follows<FleetRow>()(
  z.looseObject({
    instance: z.string(),
    subaccountId: z.number().int(),
    ...figuresFields,
    complaints: count.optional(),
  }),
);
const planUsage = follows<PlanUsage>()(
  z.looseObject({ included: count, from: timestamp, accepted: count, usedFraction: z.number().nonnegative() }),
);

/**
 * `stats [instance]`: one instance's figures, or the fleet's totals, plan usage and the rows needing attention (at
 * most a page; `listed` counts the fleet, `omitted` the problem rows left out). `stats --all --json` prints the same
 * fleet shape with every row, `omitted` 0 and no plan (DeliverabilityStats).
 */
export const statsDocument = follows<DeliverabilityStats>()(
  z.union([
    z.looseObject({
      schemaVersion,
      scope: z.literal('instance'),
      instance: z.string().nullable(),
      subaccountId: z.number().int(),
      from: timestamp,
      to: timestamp.nullable(),
      ...figuresFields,
    }),
    z.looseObject({
      schemaVersion,
      scope: z.literal('fleet'),
      from: timestamp,
      to: timestamp.nullable(),
      rows: z.array(fleetRow),
      listed: count.describe('instances measured'),
      omitted: count.describe('rows needing attention beyond the ones listed (see stats --all)'),
      totals: figures,
      plan: planUsage.nullable(),
    }),
  ]),
).meta({ title: 'smtpctl stats' });

/** A line of `stats --all --ndjson`: one instance's row (FleetRow). */
export const statsNdjsonLine = follows<FleetRow>()(fleetRow.extend({ schemaVersion })).meta({
  title: 'smtpctl stats --all --ndjson line',
});

/** `alerts schedule`: the bounce-alert Schedule as created or updated (never the webhook URL). */
export const alertsScheduleDocument = z
  .looseObject({
    schemaVersion,
    scheduleId: z.string(),
    created: z.boolean(),
    intervalSeconds: z.number().positive(),
    thresholdRate: z.number().gt(0).max(1),
    minAccepted: count,
    windowHours: z.number().positive(),
    webhook: z.enum(['secret', 'url', 'none']),
    webhookSecret: z.string().optional(),
  })
  .meta({ title: 'smtpctl alerts schedule' });

/** `alerts run-once`: what the pass did (BounceAlertSummary, contract/deliverability.ts). */
export const alertsRunOnceDocument = follows<BounceAlertSummary>()(
  z.looseObject({
    schemaVersion,
    from: timestamp,
    checked: count,
    crossing: z.array(z.string()),
    raised: z.array(z.string()),
    cleared: z.array(z.string()),
    skipped: z.array(follows<SkippedInstance>()(z.looseObject({ instance: z.string(), reason: z.string() }))),
    errors: z.array(z.string()),
  }),
).meta({ title: 'smtpctl alerts run-once' });

/** `check-fleet --schedule <every>`: the fleet-check Schedule and its run settings (FleetCheckInput). */
export const checkFleetScheduleDocument = z
  .looseObject({
    schemaVersion,
    scheduleId: z.string(),
    every: z.string(),
    enforce: z.boolean(),
    concurrency: z.number().int().positive(),
    sparkpostBudget: z.number().int().positive(),
    result: z.enum(['created', 'updated']),
  })
  .meta({ title: 'smtpctl check-fleet --schedule' });

/** `enable-fleet <file> --dry-run`: the file is valid (an invalid one exits 2 with an error document). */
export const enableFleetDryRunDocument = z
  .looseObject({ schemaVersion, instances: count, valid: z.literal(true) })
  .meta({ title: 'smtpctl enable-fleet --dry-run' });

const dnsRecord = follows<DnsRecord>()(
  z.looseObject({ type: z.enum(['TXT', 'CNAME']), name: z.string(), value: z.string(), purpose: z.string() }),
);
const sendingDomainInfo = follows<SendingDomainInfo>()(
  z.looseObject({
    domain: z.string(),
    state: z.enum(['pending-verification', 'active', 'removing']),
    dnsRecords: z.array(dnsRecord),
    requestedAt: timestamp,
    verifiedAt: timestamp.optional(),
    requestId: z.string(),
    workflowId: z.string().optional(),
  }),
);
const domainWorkflowStatus = follows<DomainWorkflowStatus>()(
  z.looseObject({
    instance: z.string(),
    domain: z.string(),
    step: z.enum(['create-sending-domain', 'wait-domain-verification', 'delete-sending-domain']),
    checks: count,
    lastCheck: z.looseObject({ at: timestamp, dkimStatus: z.string() }).nullable(),
    nextCheckAt: timestamp.nullable(),
    deadline: timestamp.nullable(),
  }),
);

/** `sending-domain add` without `--wait`: the domain created and the DNS records to publish. */
export const sendingDomainAddDocument = z
  .looseObject({
    schemaVersion,
    instance: z.string(),
    domain: z.string(),
    requestId: z.string(),
    workflowId: z.string().describe('the workflow that waits for verification'),
    sendingDomain: sendingDomainInfo.nullable().optional(),
    sender: z.string().describe('email.address once verified'),
  })
  .meta({ title: 'smtpctl sending-domain add' });

/** `sending-domain verify` without `--wait`: verified (the sender switch follows), or the status if it already ran. */
export const sendingDomainVerifyDocument = z
  .union([
    z.looseObject({
      schemaVersion,
      instance: z.string(),
      domain: z.string(),
      verified: z.literal(true),
      requestId: z.string(),
    }),
    statusDocument,
  ])
  .meta({ title: 'smtpctl sending-domain verify' });

/** `sending-domain show`: the domain, its verification progress and the IP pool. */
export const sendingDomainShowDocument = z
  .looseObject({
    schemaVersion,
    instance: z.string(),
    sendingDomain: sendingDomainInfo.nullable(),
    verification: domainWorkflowStatus.nullable(),
    sender: z.string().nullable(),
    ipPool: z.string().nullable(),
    lastSendingDomainChange: operationRecord.nullable(),
    lastIpPoolChange: operationRecord.nullable(),
  })
  .meta({ title: 'smtpctl sending-domain show' });

/** `ip-pool assign|unassign`: the status the request left, with the warm-up note after an assignment. */
export const ipPoolDocument = z
  .looseObject({ schemaVersion, ...statusFields, note: z.string().optional() })
  .meta({ title: 'smtpctl ip-pool' });

const recipientEvent = follows<RecipientEvent>()(
  z.looseObject({
    type: z.string(),
    timestamp: z.string(),
    subaccountId: z.number().int(),
    eventId: z.string().optional(),
    messageId: z.string().optional(),
    subject: z.string().optional(),
    bounceClass: z.string().optional(),
    reason: z.string().optional(),
    errorCode: z.string().optional(),
  }),
);
const suppressionEntry = follows<SuppressionEntry>()(
  z.looseObject({
    type: z.string(),
    source: z.string(),
    description: z.string().optional(),
    created: z.string().optional(),
    updated: z.string().optional(),
    subaccountId: z.number().int().nullable(),
  }),
);

/** `why <instance> <email>` (WhyReport, client/commands/why.ts): the address only masked. */
export const whyDocument = follows<WhyReport>()(
  z.looseObject({
    schemaVersion,
    instance: z.string(),
    subaccountId: z.number().int(),
    recipient: z.string().describe('the address, masked'),
    events: z.array(recipientEvent),
    suppression: z.array(suppressionEntry),
    verdict: z.string(),
    droppedForeign: count,
  }),
).meta({ title: 'smtpctl why' });

/** `suppression list <instance>`: one page of the instance's own entries, addresses masked and hashed. */
export const suppressionListDocument = z
  .looseObject({
    schemaVersion,
    instance: z.string(),
    subaccountId: z.number().int(),
    total: count,
    bySource: z.record(z.string(), count),
    page: z.number().int().positive(),
    pages: z.number().int().positive(),
    perPage: z.number().int().positive(),
    entries: z.array(
      z.looseObject({
        recipient: z.string(),
        recipientHash: z.string(),
        type: z.string(),
        source: z.string(),
        description: z.string(),
        created: z.string().nullable(),
        updated: z.string().nullable(),
      }),
    ),
  })
  .meta({ title: 'smtpctl suppression list' });

/** `suppression remove`: the audit record of the removal (SuppressionAuditRecord, lib/types.ts). */
export const suppressionRemoveDocument = follows<SuppressionAuditRecord>()(
  z.looseObject({
    schemaVersion,
    requestId: z.string(),
    at: timestamp,
    actor: z.string(),
    reason: z.string(),
    recipientMasked: z.string(),
    recipientHash: z.string(),
    source: z.string().nullable(),
    type: z.string().nullable(),
    forced: z.boolean(),
    outcome: z.enum(['requested', 'removed', 'refused', 'failed']),
    message: z.string().optional(),
    finishedAt: timestamp.optional(),
  }),
).meta({ title: 'smtpctl suppression remove' });

/** `webhooks install`: the SparkPost webhook (created now, or already there for that URL). */
export const webhooksInstallDocument = z
  .looseObject({
    schemaVersion,
    id: z.string(),
    name: z.string(),
    created: z.boolean(),
    events: z.array(z.string()).optional(),
  })
  .meta({ title: 'smtpctl webhooks install' });

const protectionLevel = z.enum(['ok', 'warning', 'quarantined', 'suspended', 'severe']);
const protectionStatus = follows<ProtectionStatus>()(
  z.looseObject({
    level: protectionLevel,
    since: timestamp.nullable(),
    lastBadAt: timestamp.nullable(),
    clearedAt: timestamp.nullable(),
    previousPool: z.string().nullable(),
    config: follows<ProtectionConfig>()(
      z.looseObject({
        warnComplaintRate: z.number(),
        severeComplaintRate: z.number(),
        warnHardBounceRate: z.number(),
        severeHardBounceRate: z.number(),
        minVolume: count,
        burstComplaints: count,
        burstHardBounces: count,
        action: z.enum(['quarantine', 'suspend', 'alert-only']),
        quarantinePool: z.string(),
        quietSeconds: count,
      }),
    ),
    last: z
      .looseObject({
        source: z.enum(['metrics', 'events']),
        at: timestamp,
        from: timestamp,
        sent: count,
        hardBounces: count,
        complaints: count,
        severity: z.enum(['quiet', 'warning', 'severe']),
      })
      .nullable(),
    transitions: z.array(
      z.looseObject({
        at: timestamp,
        from: protectionLevel,
        to: protectionLevel,
        reason: z.string(),
        by: z.string(),
        outcome: z.string().optional(),
      }),
    ),
  }),
);

/** `protection status|clear|configure`: the ladder (null before its first observation); the request id after a change. */
export const protectionDocument = z
  .looseObject({
    schemaVersion,
    instance: z.string(),
    protection: protectionStatus.nullable(),
    requestId: z.string().optional(),
  })
  .meta({ title: 'smtpctl protection' });

/** Every published document, by the file name it has in schemas/ (`<name>.schema.json`). */
export const OUTPUT_SCHEMAS = {
  status: statusDocument,
  'list-entry': listedStatusDocument,
  list: listDocument,
  'list-page': listPageDocument,
  'list-ndjson-line': listNdjsonLine,
  request: requestDocument,
  check: checkDocument,
  'check-fleet': checkFleetDocument,
  'enable-fleet': enableFleetDocument,
  error: errorDocument,
  'gdpr-delete': gdprDeleteDocument,
  'gdpr-receipt': gdprReceiptDocument,
  'gdpr-status': gdprStatusDocument,
  offboard: offboardDocument,
  'offboard-receipt': offboardReceiptDocument,
  stats: statsDocument,
  'stats-ndjson-line': statsNdjsonLine,
  'alerts-schedule': alertsScheduleDocument,
  'alerts-run-once': alertsRunOnceDocument,
  'check-fleet-schedule': checkFleetScheduleDocument,
  'enable-fleet-dry-run': enableFleetDryRunDocument,
  'sending-domain-add': sendingDomainAddDocument,
  'sending-domain-verify': sendingDomainVerifyDocument,
  'sending-domain-show': sendingDomainShowDocument,
  'ip-pool': ipPoolDocument,
  why: whyDocument,
  'suppression-list': suppressionListDocument,
  'suppression-remove': suppressionRemoveDocument,
  'webhooks-install': webhooksInstallDocument,
  protection: protectionDocument,
} as const;

/** Name of a published schema. */
export type OutputSchemaName = keyof typeof OUTPUT_SCHEMAS;

/** The JSON Schema (draft 2020-12) of a published document, as shipped in schemas/. */
export function jsonSchemaOf(name: OutputSchemaName): Record<string, unknown> {
  return z.toJSONSchema(OUTPUT_SCHEMAS[name], { target: 'draft-2020-12' });
}
