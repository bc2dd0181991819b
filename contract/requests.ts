/**
 * One schema for every request an instance's entity accepts, used by smtpctl, enable-fleet, the typed client and the
 * workflow itself. A payload that does not parse is recorded in the status and ignored by the workflow (signals) or
 * refused by the update's validator: no malformed message can throw a workflow task into a retry loop.
 * Pure (zod only): imported by workflow code.
 */
import { z } from 'zod';
import { adminTokenSecretProblem, egressIpsProblem, MAX_EGRESS_IPS, parseUrlParts } from '../lib/allow-list';
import { GCP_PROJECT_PATTERN, SECRET_VERSION_PATTERN } from '../lib/instance';
import { sanitizeText } from '../lib/sanitize';
import { IP_POOL_PATTERN, SENDING_DOMAIN_PATTERN } from '../lib/types';

/** Longest free text (reasons, sender names) a request may carry. */
export const MAX_TEXT = 500;

/** Whether a string holds a control character (terminal escapes, NUL, newlines). */
export function hasControlChars(v: string): boolean {
  return [...v].some((c) => {
    const n = c.charCodeAt(0);
    return n < 0x20 || (n >= 0x7f && n < 0xa0);
  });
}

/**
 * A copy of a shared pattern: zod resets its pattern's `lastIndex` on every parse, and a preloaded module's exports
 * are frozen. For the same reason no schema here may use zod's built-in string formats (`z.email()`, `z.uuid()`,
 * `z.iso.*`, `.lowercase()`...): their patterns are zod's exported regexes, frozen too, and every parse would fail
 * as "payload could not be read". Write `.regex(...)` with a pattern of this module instead.
 */
function own(pattern: RegExp): RegExp {
  return new RegExp(pattern.source, pattern.flags);
}

function buildSchemas() {
  const requestId = z
    .string()
    .min(1, 'must not be empty')
    .max(100, 'must be at most 100 characters')
    .regex(/^[A-Za-z0-9._:-]+$/, 'must be letters, digits, ".", "_", ":" or "-"');

  /** A Sourcegraph base URL: http(s), a host, no credentials, query or fragment (the allow-list is checked apart). */
  const sourcegraphUrlSchema = z
    .string()
    .max(2048, 'must be at most 2048 characters')
    .refine((v) => {
      if (!URL.canParse(v)) return false;
      const u = new URL(v);
      return (
        (u.protocol === 'https:' || u.protocol === 'http:') &&
        !u.username &&
        !u.password &&
        !u.search &&
        !u.hash &&
        !!u.hostname
      );
    }, 'must be an http(s) URL of the instance without credentials, query or fragment (e.g. https://acme.sourcegraph.com)');

  /** A GCP project id. */
  const gcpProjectSchema = z
    .string()
    .regex(own(GCP_PROJECT_PATTERN), 'must be a GCP project id (6-30 lowercase letters, digits, hyphens)');

  /** A Secret Manager version name. */
  const secretVersionSchema = z
    .string()
    .regex(
      own(SECRET_VERSION_PATTERN),
      'must be a Secret Manager version name projects/P/secrets/S/versions/(latest|N)',
    );

  /** `email.senderName`: plain text. */
  const senderNameSchema = z
    .string()
    .min(1, 'must not be empty')
    .max(100, 'must be at most 100 characters')
    .refine(
      (v) => !hasControlChars(v) && ![...v].some((c) => '"<>'.includes(c)),
      'must be plain text without quotes, angle brackets or control characters',
    );

  /** A free-text reason. */
  const reasonSchema = z
    .string()
    .max(MAX_TEXT, `must be at most ${MAX_TEXT} characters`)
    .refine((v) => !hasControlChars(v), 'must not contain control characters');

  /** What an operator asked enable to provision. */
  const enableSpecSchema = z
    .object({
      sourcegraphUrl: sourcegraphUrlSchema,
      gcpProject: gcpProjectSchema,
      adminTokenSecret: secretVersionSchema,
      senderName: senderNameSchema.optional(),
      force: z.boolean().default(false),
      /** Move a provisioned instance to a new URL or project: restore the old site, delete the old secret, provision. */
      move: z.boolean().optional(),
      /** Egress IPs or CIDR blocks the send key is limited to (SparkPost `valid_ips`). */
      egressIps: z.array(z.string().max(50)).max(MAX_EGRESS_IPS).optional(),
    })
    .superRefine((s, ctx) => {
      const url = parseUrlParts(s.sourcegraphUrl).problem;
      if (url) ctx.addIssue({ code: 'custom', message: url, path: ['sourcegraphUrl'] });
      const token = adminTokenSecretProblem(s.adminTokenSecret, s.gcpProject);
      if (token) ctx.addIssue({ code: 'custom', message: token, path: ['adminTokenSecret'] });
      const ips = s.egressIps === undefined ? null : egressIpsProblem(s.egressIps);
      if (ips) ctx.addIssue({ code: 'custom', message: ips, path: ['egressIps'] });
    });

  /** The enable signal's payload. */
  const enableRequestSchema = z.object({ requestId, spec: enableSpecSchema });
  /** The disable signal's payload. */
  const disableRequestSchema = z.object({
    requestId,
    reason: reasonSchema.optional(),
    /** The instance leaves for good (`smtpctl offboard`): a later enable is refused. */
    offboard: z.boolean().optional(),
  });
  /** The rotateKey update's payload. */
  const rotateRequestSchema = z.object({ requestId });
  /** The check update's payload. */
  const checkRequestSchema = z.object({ requestId, enforce: z.boolean() });
  /** The ipPool update's payload. */
  const ipPoolRequestSchema = z.object({
    requestId,
    pool: z.string().regex(own(IP_POOL_PATTERN), 'must be 1-20 of a-z, 0-9, _').nullable(),
    create: z.boolean().default(false),
  });
  /** The sendingDomain update's payload. */
  const sendingDomainRequestSchema = z.discriminatedUnion('action', [
    z.object({
      requestId,
      action: z.literal('add'),
      domain: z.string().regex(own(SENDING_DOMAIN_PATTERN), 'must be a lowercase domain name'),
      recheckSeconds: z.number().int().positive().max(86_400).optional(),
      maxWaitSeconds: z
        .number()
        .int()
        .positive()
        .max(90 * 86_400)
        .optional(),
    }),
    z.object({ requestId, action: z.literal('remove') }),
  ]);

  const isoTime = z.string().max(40);
  /** The deliverabilityAlert signal's payload. */
  const deliverabilityAlertSchema = z.object({
    active: z.boolean(),
    at: isoTime,
    from: isoTime,
    accepted: z.number().nonnegative(),
    bounces: z.number().nonnegative(),
    bounceRate: z.number().min(0).max(1),
    threshold: z.number().min(0).max(1),
  });
  /**
   * Text of an audit record that tooling signals (smtpctl suppression remove): refused beyond four times `max`, else
   * one line without control characters, cut to `max`; cleaned rather than refused, so a record is never lost over a
   * stray character in a vendor's message.
   */
  const auditText = (max: number) =>
    z
      .string()
      .max(max * 4, `must be at most ${max * 4} characters`)
      .transform((v) => sanitizeText(v, max));
  /**
   * The gdprAudit signal's payload (counts only; lib/types.ts GdprAuditRecord): only these fields are kept (unknown
   * ones dropped, so a signal sent straight to Temporal cannot bloat the status), the error as one clean line.
   * No transform: smtpctl's gdpr-status JSON Schema is built from this one (client/output-schemas.ts).
   */
  const gdprAuditSchema = z.object({
    requestId,
    at: isoTime,
    scope: z.enum(['listed', 'all-recipients']),
    recipients: z.number().int().nonnegative(),
    batches: z.number().int().nonnegative(),
    optOut: z.boolean(),
    outcome: z.enum(['filed', 'failed']),
    error: z
      .string()
      .max(2000)
      .overwrite((v) => sanitizeText(v, 2000))
      .optional(),
    verifiedAt: isoTime.optional(),
    found: z.number().int().nonnegative().optional(),
    listDestroyedAt: isoTime.optional(),
  });
  /** The suppressionAudit signal's payload (lib/types.ts SuppressionAuditRecord). */
  const suppressionAuditSchema = z.object({
    requestId,
    at: auditText(40),
    actor: auditText(100),
    reason: auditText(MAX_TEXT),
    recipientMasked: auditText(320),
    recipientHash: auditText(200),
    source: auditText(200).nullable(),
    type: auditText(100).nullable(),
    forced: z.boolean(),
    outcome: z.enum(['requested', 'removed', 'refused', 'failed']),
    message: auditText(MAX_TEXT).optional(),
    finishedAt: auditText(40).optional(),
  });
  /** A DNS record to publish (lib/types.ts DnsRecord): a DKIM key's TXT value is well under 4096 characters. */
  const dnsRecordSchema = z.object({
    type: z.enum(['TXT', 'CNAME']),
    name: auditText(320),
    value: auditText(4096),
    purpose: auditText(200),
  });
  /** The sendingDomainEvent signal's payload (contract/types.ts SendingDomainEvent), from the domain workflow. */
  const domainRef = { requestId, domain: z.string().max(253, 'must be at most 253 characters') };
  const sendingDomainEventSchema = z.discriminatedUnion('event', [
    z.object({
      ...domainRef,
      event: z.literal('created'),
      // At most 10 kept, as before (the domain workflow sends one).
      dnsRecords: z.preprocess((v) => (Array.isArray(v) ? v.slice(0, 10) : v), z.array(dnsRecordSchema)),
    }),
    z.object({ ...domainRef, event: z.literal('verified'), at: auditText(40) }),
    z.object({
      ...domainRef,
      event: z.literal('failed'),
      at: auditText(40),
      // Never refused (the failure must reach the entity): cut to 2000 characters, one clean line.
      message: z
        .string()
        .transform((v) => sanitizeText(v, 2000))
        .optional(),
      cancelled: z.boolean().optional(),
    }),
  ]);
  /** The stuck signal's payload. */
  const stuckReportSchema = z.object({
    activity: z.string().max(100),
    attempt: z.number().int().positive(),
    at: isoTime,
  });

  return {
    sourcegraphUrl: sourcegraphUrlSchema,
    gcpProject: gcpProjectSchema,
    secretVersion: secretVersionSchema,
    senderName: senderNameSchema,
    reason: reasonSchema,
    enableSpec: enableSpecSchema,
    enableRequest: enableRequestSchema,
    disableRequest: disableRequestSchema,
    rotateRequest: rotateRequestSchema,
    checkRequest: checkRequestSchema,
    ipPoolRequest: ipPoolRequestSchema,
    sendingDomainRequest: sendingDomainRequestSchema,
    deliverabilityAlert: deliverabilityAlertSchema,
    gdprAudit: gdprAuditSchema,
    suppressionAudit: suppressionAuditSchema,
    sendingDomainEvent: sendingDomainEventSchema,
    stuckReport: stuckReportSchema,
  };
}

/** Every request schema. */
export type RequestSchemas = ReturnType<typeof buildSchemas>;

// Built once, at load, and handed out by a function rather than exported: the worker preloads this module into its
// reusable V8 context (worker/bundle.ts), evaluated once per worker thread instead of once per workflow, and the SDK
// deep-freezes whatever a preloaded module exports. zod fills in members of a schema on first use and registers its
// English messages on the first construction, so its schemas must not be reachable from the exports, and they must be
// built before the freeze.
const SCHEMAS: Readonly<RequestSchemas> = Object.freeze(buildSchemas());

/** The request schemas: `requestSchemas().enableRequest` and so on. */
export function requestSchemas(): Readonly<RequestSchemas> {
  return SCHEMAS;
}

/** One line naming the first problem of a payload that did not parse: `spec.gcpProject: must be ...`. */
export function schemaProblem(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid payload';
  const where = issue.path.length ? issue.path.join('.') : 'payload';
  return `${where}: ${issue.message}`;
}

/** Parses a payload; returns the data or a one-line problem. Never throws. */
export function parseRequest<T>(
  schema: z.ZodType<T>,
  payload: unknown,
): { ok: true; data: T } | { ok: false; problem: string } {
  try {
    const r = schema.safeParse(payload);
    return r.success ? { ok: true, data: r.data } : { ok: false, problem: schemaProblem(r.error) };
  } catch {
    return { ok: false, problem: 'payload could not be read' };
  }
}

/** The validated enable spec. */
export type EnableSpecInput = z.input<RequestSchemas['enableSpec']>;
