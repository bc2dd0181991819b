/**
 * Validation of operator input with zod. Each failure is one line naming the argument and why, and the CLI exits 2
 * before anything is sent, so bad input never half-provisions an instance.
 */
import { z } from 'zod';
import { GCP_PROJECT_PATTERN, INSTANCE_NAME_PATTERN, SECRET_VERSION_PATTERN } from '../lib/instance';
import { INSTANCE_STATES, type InstanceState } from '../lib/types';

/** Bad input; `argument` names the offending argument as the operator typed it. */
export class UsageError extends Error {
  constructor(
    readonly argument: string,
    why: string,
  ) {
    super(`invalid ${argument}: ${why}`);
    this.name = 'UsageError';
  }
}

const instance = z
  .string()
  .regex(INSTANCE_NAME_PATTERN, `must match ${INSTANCE_NAME_PATTERN.source} (e.g. "acme" or "acme-eu")`);

const sourcegraphUrl = z.string().refine((v) => {
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

const gcpProject = z
  .string()
  .regex(GCP_PROJECT_PATTERN, 'must be a GCP project id (6-30 lowercase letters, digits, hyphens)');
const secretVersion = z
  .string()
  .regex(SECRET_VERSION_PATTERN, 'must be a Secret Manager version name projects/P/secrets/S/versions/(latest|N)');
const senderName = z
  .string()
  .min(1, 'must not be empty')
  .max(100, 'must be at most 100 characters')
  .refine(
    (v) => ![...v].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f || '"<>'.includes(c)),
    'must be plain text without quotes, angle brackets or control characters',
  );
const reason = z.string().max(500, 'must be at most 500 characters');
const seconds = z.coerce.number().positive('must be a positive number of seconds').max(86_400, 'must be at most a day');
const state = z.enum(INSTANCE_STATES as [InstanceState, ...InstanceState[]], {
  error: `must be one of ${INSTANCE_STATES.join(', ')}`,
});

function check<T>(argument: string, schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new UsageError(argument, r.error.issues[0]?.message ?? 'is invalid');
  return r.data;
}

/** Validators for every CLI argument, each throwing UsageError. */
export const validate = {
  instance: (v: unknown) => check('instance', instance, v),
  sourcegraphUrl: (v: unknown) => check('--sourcegraph-url', sourcegraphUrl, v).replace(/\/+$/, ''),
  gcpProject: (v: unknown) => check('--gcp-project', gcpProject, v),
  adminTokenSecret: (v: unknown) => check('--admin-token-secret', secretVersion, v),
  senderName: (v: unknown) => check('--sender-name', senderName, v),
  reason: (v: unknown) => check('--reason', reason, v),
  timeoutSeconds: (v: unknown) => check('--timeout', seconds, v),
  state: (v: unknown) => check('--state', state, v),
};
