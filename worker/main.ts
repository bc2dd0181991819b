/**
 * `npm run worker`: one worker process, configured only by the environment (several may share a task queue).
 * Exits 2 with one line per problem when the environment is invalid; shuts down gracefully on SIGINT/SIGTERM,
 * giving in-flight activities the grace time to finish.
 */
import { loadClientConnectConfig } from '@temporalio/envconfig';
import { NativeConnection } from '@temporalio/worker';
import { ConfigError, loadWorkerConfig } from './config';
import { ensureSearchAttributes } from './search-attributes';
import { createManagedSmtpWorker, vendorDeps } from './worker';

async function main(): Promise<void> {
  let config;
  try {
    config = loadWorkerConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const p of err.problems) process.stderr.write(`worker: invalid environment: ${p}\n`);
      process.exit(2);
    }
    throw err;
  }
  const { connectionOptions, namespace: profileNamespace } = loadClientConnectConfig();
  const namespace = process.env.TEMPORAL_NAMESPACE || profileNamespace || 'default';
  const connection = await NativeConnection.connect(connectionOptions);
  const registration = await ensureSearchAttributes(connection, namespace);
  if (registration.warning) process.stderr.write(`worker: warning: ${registration.warning}\n`);
  else if (registration.added.length)
    console.log(`worker: registered search attributes ${registration.added.join(', ')}`);

  const worker = await createManagedSmtpWorker({
    connection,
    namespace,
    taskQueue: config.taskQueue,
    deps: vendorDeps(config),
  });
  console.log(`worker: polling task queue ${config.taskQueue} on namespace ${namespace}`);
  try {
    await worker.run(); // the SDK's runtime calls worker.shutdown() on SIGINT/SIGTERM
  } finally {
    await connection.close();
  }
  console.log('worker: stopped');
}

main().catch((err) => {
  process.stderr.write(`worker: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}\n`);
  process.exit(1);
});
