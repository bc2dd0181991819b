/**
 * The `--json` documents of smtpctl as zod schemas: the source of the published JSON Schemas in schemas/ (written by
 * `npx tsx scripts/build-schemas.ts`, checked against these by test/cli-output.test.ts). Objects are open (fields may be
 * added within a schemaVersion); what is listed is what tooling may rely on. Not loaded by the CLI itself.
 */
import { z } from 'zod';
import { INSTANCE_STATES, type InstanceState } from '../lib/types';
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

/**
 * Documents of the other command modules (gdpr-delete, stats, alerts, sending-domain, ip-pool, check-fleet --schedule):
 * an object (or an array of objects) with schemaVersion; their fields are described by the commands' own types and
 * not yet pinned here.
 */
export const commandDocument = z
  .union([z.looseObject({ schemaVersion }), z.array(z.looseObject({ schemaVersion }))])
  .meta({ title: 'smtpctl command result' });

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
  command: commandDocument,
} as const;

/** Name of a published schema. */
export type OutputSchemaName = keyof typeof OUTPUT_SCHEMAS;

/** The JSON Schema (draft 2020-12) of a published document, as shipped in schemas/. */
export function jsonSchemaOf(name: OutputSchemaName): Record<string, unknown> {
  return z.toJSONSchema(OUTPUT_SCHEMAS[name], { target: 'draft-2020-12' });
}
