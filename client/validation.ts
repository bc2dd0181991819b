/**
 * Validation of operator input with zod, using the request schemas of contract/ that the workflow applies too. Each failure is one line naming the argument and why, and the CLI exits 2
 * before anything is sent, so bad input never half-provisions an instance.
 */
import { z } from 'zod';
import { requestSchemas } from '../contract/requests';
import { INSTANCE_NAME_PATTERN } from '../lib/instance';
import { INSTANCE_STATES, type InstanceState } from '../lib/types';
import {
  SOURCEGRAPH_URLS_ENV,
  adminTokenSecretProblem,
  egressIpsProblem,
  parseUrlPatterns,
  sourcegraphUrlProblem,
  type UrlPattern,
} from '../lib/allow-list';

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

const sourcegraphUrl = requestSchemas().sourcegraphUrl;
const gcpProject = requestSchemas().gcpProject;
const secretVersion = requestSchemas().secretVersion;
const senderName = requestSchemas().senderName;
const reason = requestSchemas().reason;
const seconds = z.coerce.number().positive('must be a positive number of seconds').max(86_400, 'must be at most a day');
const state = z.enum(INSTANCE_STATES as [InstanceState, ...InstanceState[]], {
  error: `must be one of ${INSTANCE_STATES.join(', ')}`,
});

function check<T>(argument: string, schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new UsageError(argument, r.error.issues[0]?.message ?? 'is invalid');
  return r.data;
}

/** MANAGED_SMTP_SOURCEGRAPH_URLS of this process (the worker's must match); UsageError naming it when malformed. */
export function allowedSourcegraphUrls(env: NodeJS.ProcessEnv = process.env): UrlPattern[] {
  try {
    return parseUrlPatterns(env[SOURCEGRAPH_URLS_ENV]);
  } catch (err) {
    throw new UsageError(SOURCEGRAPH_URLS_ENV, err instanceof Error ? err.message : String(err));
  }
}

/** The allow-list's sentence without the leading "sourcegraphUrl " (the argument is named by UsageError). */
const urlWhy = (problem: string) => problem.replace(/^sourcegraphUrl /, '');

/** Validators for every CLI argument, each throwing UsageError. */
export const validate = {
  instance: (v: unknown) => check('instance', instance, v),
  sourcegraphUrl: (v: unknown, patterns: readonly UrlPattern[] = allowedSourcegraphUrls()) => {
    const url = check('--sourcegraph-url', sourcegraphUrl, v).replace(/\/+$/, '');
    const problem = sourcegraphUrlProblem(url, patterns);
    if (problem) throw new UsageError('--sourcegraph-url', urlWhy(problem));
    return url;
  },
  gcpProject: (v: unknown) => check('--gcp-project', gcpProject, v),
  /** A Secret Manager version in the instance's own project (`gcpProject`), never its send-key secret. */
  adminTokenSecret: (v: unknown, gcpProject?: string) => {
    const secret = check('--admin-token-secret', secretVersion, v);
    const problem = gcpProject === undefined ? null : adminTokenSecretProblem(secret, gcpProject);
    if (problem) throw new UsageError('--admin-token-secret', problem.replace(/^adminTokenSecret /, ''));
    return secret;
  },
  /** IPv4 addresses or CIDR blocks (at most 20, no duplicates). */
  egressIps: (v: unknown) => {
    const problem = egressIpsProblem(v);
    if (problem) throw new UsageError('--egress-ip', problem.replace(/^egressIps:? ?/, ''));
    return v as string[];
  },
  senderName: (v: unknown) => check('--sender-name', senderName, v),
  reason: (v: unknown) => check('--reason', reason, v),
  timeoutSeconds: (v: unknown) => check('--timeout', seconds, v),
  state: (v: unknown) => check('--state', state, v),
};
