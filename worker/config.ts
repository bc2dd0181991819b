/**
 * The worker's environment, validated at start-up with zod. Every problem is reported on one line naming the
 * variable, and nothing starts until all are fixed. Temporal's own connection settings (TEMPORAL_ADDRESS, ...) are
 * read separately by @temporalio/envconfig.
 */
import { z } from 'zod';
import { parseUrlPatterns, type UrlPattern } from '../lib/allow-list';

/** Everything the worker reads from the environment besides the Temporal connection. */
export interface WorkerConfig {
  taskQueue: string;
  sparkpostApiUrl: string;
  /** The operator key; empty when it is to be read from `sparkpostApiKeySecret` at start. */
  sparkpostApiKey: string;
  /** Secret Manager version holding the operator key (production), when SPARKPOST_API_KEY is unset. */
  sparkpostApiKeySecret?: string;
  relayHost: string;
  relayPort: number;
  secretManagerEmulatorHost?: string;
  senderDomain: string;
  testRecipient: string;
  /**
   * Ceiling on activities started per second on the task queue, across all workers (Temporal enforces it server-side).
   * Each activity makes at most 3 SparkPost requests, so this bounds SparkPost traffic during a fleet rollout.
   */
  maxActivitiesPerSecond?: number;
  /**
   * Workflows kept in the worker's cache. Instance workflows stay open for good, so an unbounded cache grows with
   * the fleet; an evicted idle instance is replayed from its (short) history when a request arrives.
   */
  maxCachedWorkflows: number;
  /** MANAGED_SMTP_SOURCEGRAPH_URLS, parsed: where admin tokens may be sent (absent: the production default). */
  sourcegraphUrls?: UrlPattern[];
}

const HOSTNAME =
  /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;

// Empty variables count as unset, as shells and compose files often leave them empty.
const optional = <T extends z.ZodType>(schema: T) =>
  z.preprocess((v) => (typeof v === 'string' && v.trim() === '' ? undefined : v), schema);

const schema = z.object({
  MANAGED_SMTP_TASK_QUEUE: optional(
    z
      .string()
      .regex(/^[\w.:/-]{1,200}$/, 'must be a task queue name')
      .default('managed-smtp'),
  ),
  SPARKPOST_API_URL: optional(
    z
      .string()
      .refine((v) => /^https?:\/\/[^\s/]+(\/\S*)?$/.test(v) && URL.canParse(v), 'must be an http(s) URL')
      .default('https://api.eu.sparkpost.com/api/v1'),
  ),
  SPARKPOST_API_KEY: optional(z.string().regex(/^\S+$/, 'must not contain whitespace').optional()),
  SPARKPOST_API_KEY_SECRET: optional(
    z
      .string()
      .regex(
        /^projects\/[^/\s]+\/secrets\/[^/\s]+\/versions\/[^/\s]+$/,
        'must be a Secret Manager version: projects/P/secrets/S/versions/V',
      )
      .optional(),
  ),
  SMTP_RELAY_HOST: optional(z.string().regex(HOSTNAME, 'must be a host name').default('smtp.eu.sparkpostmail.com')),
  SMTP_RELAY_PORT: optional(z.coerce.number({ error: 'must be a port number' }).int().min(1).max(65535).default(587)),
  SECRET_MANAGER_EMULATOR_HOST: optional(
    z
      .string()
      .regex(/^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'must be host:port')
      .optional(),
  ),
  MANAGED_SMTP_SENDER_DOMAIN: optional(
    z.string().regex(DOMAIN, 'must be a domain name').default('cloud.sourcegraph.com'),
  ),
  MANAGED_SMTP_MAX_ACTIVITIES_PER_SECOND: optional(
    z.coerce.number({ error: 'must be a number of activities per second' }).positive().max(10_000).optional(),
  ),
  MANAGED_SMTP_MAX_CACHED_WORKFLOWS: optional(
    z.coerce.number({ error: 'must be a number of workflows' }).int().min(0).max(100_000).default(100),
  ),
  MANAGED_SMTP_TEST_RECIPIENT: optional(
    z.email({ error: 'must be an email address' }).default('cloud-team+test_emails@sourcegraph.com'),
  ),
});

/** Thrown when the environment is invalid; `problems` has one line per variable. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

/** Validates the environment. Throws ConfigError listing every problem. */
export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const parsed = schema.safeParse(env);
  const problems = parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  // Checked outside zod so it is reported together with every other problem.
  if (!env.SPARKPOST_API_KEY?.trim() && !env.SPARKPOST_API_KEY_SECRET?.trim()) {
    problems.push(
      'SPARKPOST_API_KEY: is required: the SparkPost operator API key (or SPARKPOST_API_KEY_SECRET naming a Secret Manager version that holds it)',
    );
  }
  let sourcegraphUrls: UrlPattern[] = [];
  try {
    sourcegraphUrls = parseUrlPatterns(env.MANAGED_SMTP_SOURCEGRAPH_URLS);
  } catch (err) {
    problems.push(`MANAGED_SMTP_SOURCEGRAPH_URLS: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (problems.length > 0 || !parsed.success) throw new ConfigError([...new Set(problems)]);
  const e = parsed.data;
  return {
    taskQueue: e.MANAGED_SMTP_TASK_QUEUE,
    sparkpostApiUrl: e.SPARKPOST_API_URL.replace(/\/+$/, ''),
    sparkpostApiKey: e.SPARKPOST_API_KEY ?? '',
    sparkpostApiKeySecret: e.SPARKPOST_API_KEY_SECRET,
    relayHost: e.SMTP_RELAY_HOST,
    relayPort: e.SMTP_RELAY_PORT,
    secretManagerEmulatorHost: e.SECRET_MANAGER_EMULATOR_HOST,
    senderDomain: e.MANAGED_SMTP_SENDER_DOMAIN,
    testRecipient: e.MANAGED_SMTP_TEST_RECIPIENT,
    maxActivitiesPerSecond: e.MANAGED_SMTP_MAX_ACTIVITIES_PER_SECOND,
    maxCachedWorkflows: e.MANAGED_SMTP_MAX_CACHED_WORKFLOWS,
    sourcegraphUrls,
  };
}
