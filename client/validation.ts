/**
 * Validation of operator input with zod, using the request schemas of contract/ that the workflow applies too. Each failure is one line naming the argument and why, and the CLI exits 2
 * before anything is sent, so bad input never half-provisions an instance.
 */
import { z } from 'zod';
import {
  gcpProjectSchema,
  reasonSchema,
  secretVersionSchema,
  senderNameSchema,
  sourcegraphUrlSchema,
} from '../contract/requests';
import { INSTANCE_NAME_PATTERN } from '../lib/instance';
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

const sourcegraphUrl = sourcegraphUrlSchema;
const gcpProject = gcpProjectSchema;
const secretVersion = secretVersionSchema;
const senderName = senderNameSchema;
const reason = reasonSchema;
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
