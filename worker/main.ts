/**
 * `npm run worker`: one worker process, configured only by the environment (several may share a task queue).
 *
 * Start-up: validate the whole environment first (exit 2 with one line per problem, before touching the network),
 * then install the SDK runtime (logs, Prometheus metrics), read the operator key from Secret Manager when
 * SPARKPOST_API_KEY_SECRET names it, connect through @temporalio/envconfig (so a Temporal Cloud profile works),
 * register search attributes (a warning where not allowed), and poll. A prebuilt workflow bundle
 * (MANAGED_SMTP_WORKFLOW_BUNDLE, as in the container image) skips bundling at start.
 *
 * Shutdown: on SIGINT/SIGTERM the SDK stops polling and in-flight activities get MANAGED_SMTP_SHUTDOWN_GRACE
 * (default 30s) to finish before they are cancelled; the process then exits 0.
 *
 * Process-level variables (besides worker/config.ts and TEMPORAL_*): MANAGED_SMTP_LOG_FORMAT (text|json),
 * MANAGED_SMTP_LOG_LEVEL, MANAGED_SMTP_METRICS_ADDRESS, MANAGED_SMTP_SHUTDOWN_GRACE, MANAGED_SMTP_WORKFLOW_BUNDLE,
 * MANAGED_SMTP_MAX_CONCURRENT_ACTIVITIES, MANAGED_SMTP_MAX_CONCURRENT_WORKFLOW_TASKS,
 * SPARKPOST_API_KEY_SECRET; payload encryption keys come from MANAGED_SMTP_CODEC_KEYS or MANAGED_SMTP_CODEC_KEY_SECRET.
 * Run built (`npm run worker` = dist/worker/main.js), it loads the workflow bundle built beside it.
 *
 * Exit codes: 2 = the environment alone is invalid (nothing was contacted); 1 = start-up failed later (a secret
 * could not be read, Temporal unreachable, ...) or the worker crashed; 0 = stopped by a signal after draining.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { z } from 'zod';
import { loadClientConnectConfig, type ClientConnectConfig } from '@temporalio/envconfig';
import { NativeConnection, type Logger } from '@temporalio/worker';
import {
  CODEC_KEY_SECRET_ENV,
  CODEC_KEYS_ENV,
  CodecConfigError,
  AesGcmCodec,
  codecKeysFromEnvironment,
  dataConverterFor,
  parseCodecKeys,
} from '../lib/codec';
import { ConfigError, loadWorkerConfig, type WorkerConfig } from './config';
import { createRuntimeLogger, createWorkerLogger, parseLogSettings } from './logging';
import { ensureSearchAttributes } from './search-attributes';
import { installRuntime, parseMetricsAddress, parseShutdownGrace } from './telemetry';
import { createManagedSmtpWorker, vendorDeps } from './worker';
import { parseWorkerVersioning } from './versioning';
import { SecretStore } from '../vendors/secret-manager';

const SECRET_VERSION = /^projects\/[^/\s]+\/secrets\/[^/\s]+\/versions\/[^/\s]+$/;
/** After a clean stop, exit even if some library left a handle open. */
const EXIT_AFTER_STOP_MS = 2000;

/** Everything start-up needs, validated. */
interface Settings {
  config: WorkerConfig;
  connect: ClientConnectConfig;
  namespace: string;
  metricsAddress?: string;
  shutdownGraceMs: number;
  bundlePath?: string;
  /** Secret Manager version holding the operator key, when SPARKPOST_API_KEY is not given. */
  operatorKeySecret?: string;
  /** SPARKPOST_API_KEY_SECRET was set but SPARKPOST_API_KEY won. */
  operatorKeySecretIgnored: boolean;
  tuning: Tuning;
  /** Worker Deployment version (MANAGED_SMTP_WORKER_DEPLOYMENT / _BUILD_ID). */
  versioning?: ReturnType<typeof parseWorkerVersioning>['options'];
}

// Memory knobs of the worker (README "Sizing a worker"). The workflow cache bound lives in worker/config.ts; the V8
// heap limit is a node option (`--max-old-space-size`, set by `npm run worker` from MANAGED_SMTP_WORKER_HEAP_MB).
const positiveInt = (max: number) =>
  z.preprocess(
    (v) => (typeof v === 'string' && v.trim() === '' ? undefined : v),
    z.coerce.number({ error: 'must be a whole number' }).int().min(1).max(max),
  );
const tuningSchema = z.object({
  /** One enable has one activity running at a time: 50 slots serve 50 enables in flight. */
  MANAGED_SMTP_MAX_CONCURRENT_ACTIVITIES: positiveInt(10_000).default(50),
  /** Workflow tasks run on one thread (the SDK reuses one V8 context): more slots mostly hold more memory. */
  MANAGED_SMTP_MAX_CONCURRENT_WORKFLOW_TASKS: positiveInt(10_000).default(20),
});

/** How much work one worker process takes on at once. */
interface Tuning {
  maxConcurrentActivities: number;
  maxConcurrentWorkflowTasks: number;
}

/** The workflow bundle `npm run build` writes beside the compiled worker (absent when running the TypeScript). */
const BUILT_BUNDLE = path.join(__dirname, '..', 'workflow-bundle.js');

const firstLine = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0];

/** Validates everything; returns the settings or the problems (one line each, each naming its variable). */
function loadSettings(env: NodeJS.ProcessEnv): { settings?: Settings; problems: string[] } {
  const problems: string[] = [];

  const metrics = parseMetricsAddress(env.MANAGED_SMTP_METRICS_ADDRESS);
  if (metrics.problem) problems.push(metrics.problem);
  const grace = parseShutdownGrace(env.MANAGED_SMTP_SHUTDOWN_GRACE);
  if (grace.problem) problems.push(grace.problem);
  const versioning = parseWorkerVersioning(env);
  if (versioning.problem) problems.push(versioning.problem);

  const tuningParsed = tuningSchema.safeParse(env);
  if (!tuningParsed.success) {
    problems.push(...tuningParsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  }

  // The built worker (dist/worker/main.js) uses the bundle built with it; the TypeScript one bundles at start.
  let bundlePath: string | undefined =
    __filename.endsWith('.js') && existsSync(BUILT_BUNDLE) ? BUILT_BUNDLE : undefined;
  const bundleText = env.MANAGED_SMTP_WORKFLOW_BUNDLE?.trim();
  if (bundleText) {
    bundlePath = path.resolve(bundleText);
    let isFile = false;
    try {
      isFile = statSync(bundlePath).isFile();
    } catch {
      // reported below
    }
    if (!isFile) problems.push(`MANAGED_SMTP_WORKFLOW_BUNDLE: no such file: ${bundlePath}`);
  }

  // worker/config.ts validates both forms of the operator key; a Secret Manager version is read after validation.
  const operatorKeySecret = env.SPARKPOST_API_KEY?.trim()
    ? undefined
    : env.SPARKPOST_API_KEY_SECRET?.trim() || undefined;

  // Payload encryption keys: the inline form is checked here; a Secret Manager version is read after validation.
  const codecKeys = env[CODEC_KEYS_ENV]?.trim();
  const codecSecret = env[CODEC_KEY_SECRET_ENV]?.trim();
  if (codecKeys && codecSecret)
    problems.push(`${CODEC_KEYS_ENV}: set only one of ${CODEC_KEYS_ENV} and ${CODEC_KEY_SECRET_ENV}`);
  else if (codecKeys) {
    try {
      parseCodecKeys(codecKeys, CODEC_KEYS_ENV);
    } catch (err) {
      if (!(err instanceof CodecConfigError)) throw err;
      problems.push(err.message);
    }
  } else if (codecSecret && !SECRET_VERSION.test(codecSecret)) {
    problems.push(`${CODEC_KEY_SECRET_ENV}: must be a Secret Manager version: projects/P/secrets/S/versions/V`);
  }

  let config: WorkerConfig | undefined;
  try {
    config = loadWorkerConfig(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.problems);
  }

  let connect: ClientConnectConfig | undefined;
  try {
    connect = loadClientConnectConfig({ overrideEnvVars: env as Record<string, string> });
  } catch (err) {
    // A missing profile, an unreadable or malformed TOML file, a missing certificate file...
    problems.push(`TEMPORAL_PROFILE/TEMPORAL_CONFIG_FILE: ${firstLine(err)}`);
  }

  if (problems.length || !config || !connect || !tuningParsed.success) return { problems };
  return {
    problems,
    settings: {
      config,
      connect,
      namespace: env.TEMPORAL_NAMESPACE?.trim() || connect.namespace || 'default',
      metricsAddress: metrics.address,
      shutdownGraceMs: grace.ms!,
      bundlePath,
      operatorKeySecret,
      operatorKeySecretIgnored: Boolean(env.SPARKPOST_API_KEY?.trim() && env.SPARKPOST_API_KEY_SECRET?.trim()),
      tuning: {
        maxConcurrentActivities: tuningParsed.data.MANAGED_SMTP_MAX_CONCURRENT_ACTIVITIES,
        maxConcurrentWorkflowTasks: tuningParsed.data.MANAGED_SMTP_MAX_CONCURRENT_WORKFLOW_TASKS,
      },
      versioning: versioning.options,
    },
  };
}

/** Reads the operator key once; the error names the version, never a payload. */
async function readOperatorKey(config: WorkerConfig, versionName: string): Promise<string> {
  const store = new SecretStore({ emulatorHost: config.secretManagerEmulatorHost });
  try {
    const { data } = await store.access(versionName);
    const key = data.trim();
    if (key === '' || /\s/.test(key)) {
      throw new Error(`SPARKPOST_API_KEY_SECRET: ${versionName} does not hold an API key (empty or has whitespace)`);
    }
    return key;
  } finally {
    await store.close();
  }
}

async function main(log: { current: Logger }): Promise<void> {
  const env = process.env;
  const logSettings = parseLogSettings(env);
  const workerLog = createWorkerLogger(logSettings.settings);
  log.current = workerLog;

  const { settings, problems } = loadSettings(env);
  const allProblems = [...logSettings.problems, ...problems];
  if (allProblems.length || !settings) {
    for (const p of allProblems) {
      if (logSettings.settings.format === 'json') workerLog.error(`invalid environment: ${p}`);
      else process.stderr.write(`worker: invalid environment: ${p}\n`);
    }
    process.exit(2);
  }

  installRuntime({
    logger: createRuntimeLogger(logSettings.settings),
    level: logSettings.settings.level,
    metricsAddress: settings.metricsAddress,
  });
  if (settings.metricsAddress)
    workerLog.info(`serving Prometheus metrics on http://${settings.metricsAddress}/metrics`);

  let config = settings.config;
  if (settings.operatorKeySecretIgnored) {
    workerLog.warn('SPARKPOST_API_KEY_SECRET is ignored because SPARKPOST_API_KEY is set');
  }
  if (settings.operatorKeySecret) {
    const sparkpostApiKey = await readOperatorKey(config, settings.operatorKeySecret);
    config = { ...config, sparkpostApiKey };
    workerLog.info(`read the SparkPost operator key from ${settings.operatorKeySecret}`);
  }

  // Null without keys: payloads then travel in clear, as the clients must agree (smtpctl reads the same variables).
  const sealingKeys = await codecKeysFromEnvironment(env);
  const codec = sealingKeys ? new AesGcmCodec(sealingKeys) : null;
  if (codec)
    workerLog.info(`payload encryption on: key ids ${codec.keyIds.join(', ')} (current ${codec.currentKeyId})`);

  const { namespace } = settings;
  const connection = await NativeConnection.connect(settings.connect.connectionOptions);
  try {
    const registration = await ensureSearchAttributes(connection, namespace);
    if (registration.warning) workerLog.warn(registration.warning);
    else if (registration.added.length) workerLog.info(`registered search attributes ${registration.added.join(', ')}`);

    const worker = await createManagedSmtpWorker({
      connection,
      namespace,
      taskQueue: config.taskQueue,
      // The codec keys also open sealed GDPR recipient lists inside the activity.
      deps: { ...vendorDeps(config), sealingKeys },
      maxTaskQueueActivitiesPerSecond: config.maxActivitiesPerSecond,
      maxCachedWorkflows: config.maxCachedWorkflows,
      maxConcurrentActivityTaskExecutions: settings.tuning.maxConcurrentActivities,
      // The SDK refuses more workflow task slots than cached workflows (unless the cache is off).
      maxConcurrentWorkflowTaskExecutions:
        config.maxCachedWorkflows > 0
          ? Math.max(2, Math.min(settings.tuning.maxConcurrentWorkflowTasks, config.maxCachedWorkflows))
          : settings.tuning.maxConcurrentWorkflowTasks,
      ...(settings.bundlePath ? { workflowBundle: { codePath: settings.bundlePath } } : {}),
      shutdownGraceTime: settings.shutdownGraceMs,
      dataConverter: dataConverterFor(codec),
      workerDeploymentOptions: settings.versioning,
    });
    workerLog.info(`polling task queue ${config.taskQueue} on namespace ${namespace}`, {
      taskQueue: config.taskQueue,
      namespace,
      workflowBundle: settings.bundlePath ?? 'built at start',
      shutdownGraceMs: settings.shutdownGraceMs,
      maxCachedWorkflows: config.maxCachedWorkflows,
      maxConcurrentActivities: settings.tuning.maxConcurrentActivities,
      maxConcurrentWorkflowTasks: settings.tuning.maxConcurrentWorkflowTasks,
      heapLimitMiB: Math.round(getHeapStatistics().heap_size_limit / 2 ** 20),
      ...(settings.versioning ? { workerDeployment: settings.versioning.version } : {}),
    });
    await worker.run(); // the SDK's runtime calls worker.shutdown() on SIGINT/SIGTERM
  } finally {
    await connection.close();
  }
  workerLog.info('stopped');
}

const log: { current: Logger | null } = { current: null };
main(log as { current: Logger })
  .then(() => {
    process.exitCode = 0;
    setTimeout(() => process.exit(0), EXIT_AFTER_STOP_MS).unref();
  })
  .catch((err) => {
    if (log.current) log.current.error(firstLine(err));
    else process.stderr.write(`worker: ${firstLine(err)}\n`);
    process.exit(1);
  });
