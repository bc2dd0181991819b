/** The baseline's worker process (scripts/bench.ts): the baseline workflow with no-op activities. */
import { loadClientConnectConfig } from '@temporalio/envconfig';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const { connectionOptions } = loadClientConnectConfig();
  const connection = await NativeConnection.connect(connectionOptions);
  const worker = await Worker.create({
    connection,
    taskQueue: process.env.MANAGED_SMTP_TASK_QUEUE ?? 'bench-baseline',
    workflowsPath: require.resolve('./bench-workflows'),
    activities: { noop: async (step: string) => step },
  });
  console.log('bench-worker: polling');
  await worker.run();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
