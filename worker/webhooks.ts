/**
 * `npm run webhooks`: the SparkPost event receiver as a process (worker/webhook-service.ts), configured only by the
 * environment. It needs Temporal (the same settings and codec keys as smtpctl) to signal instance entities, and
 * SparkPost (SPARKPOST_API_URL, SPARKPOST_API_KEY) to map subaccount ids to instances.
 *
 * | variable | default | meaning |
 * | --- | --- | --- |
 * | `MANAGED_SMTP_WEBHOOKS_USER`, `MANAGED_SMTP_WEBHOOKS_PASSWORD` | required | the basic auth SparkPost sends |
 * | `MANAGED_SMTP_WEBHOOKS_HOST`, `MANAGED_SMTP_WEBHOOKS_PORT` | `127.0.0.1`, `8090` | where it listens |
 * | `MANAGED_SMTP_WEBHOOKS_MAX_BODY_BYTES` | 10 MiB | larger batches get 413 |
 * | `MANAGED_SMTP_WEBHOOKS_FLUSH_SECONDS` | `10` | how often bursts are signalled (≤ 60: within a minute) |
 * | `MANAGED_SMTP_WEBHOOKS_ALERT_SECRET` | unset | Secret Manager version of the Slack webhook for protection alerts |
 */
import { connectTemporal } from '../client/connection';
import { workflowIdFor } from '../lib/instance';
import { SECRET_VERSION_PATTERN } from '../lib/instance';
import { SparkPostClient } from '../vendors/sparkpost';
import { protectionSignal } from '../contract/messages';
import { SubaccountListResolver, WebhookService } from './webhook-service';

/** The service's settings from the environment, or the problems (one line each). */
export function webhookSettings(env: NodeJS.ProcessEnv): {
  problems: string[];
  settings?: {
    username: string;
    password: string;
    host: string;
    port: number;
    maxBodyBytes: number;
    flushMs: number;
    alertSecret?: string;
    sparkpostUrl: string;
    sparkpostKey: string;
  };
} {
  const problems: string[] = [];
  const username = env.MANAGED_SMTP_WEBHOOKS_USER ?? '';
  const password = env.MANAGED_SMTP_WEBHOOKS_PASSWORD ?? '';
  if (!username || username.includes(':')) problems.push('MANAGED_SMTP_WEBHOOKS_USER: required, without ":"');
  if (password.length < 12) problems.push('MANAGED_SMTP_WEBHOOKS_PASSWORD: required, at least 12 characters');
  // Empty counts as unset; 0 (a random port) or `1e3`-like forms would listen where SparkPost never posts.
  const portText = env.MANAGED_SMTP_WEBHOOKS_PORT?.trim() || '8090';
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65535)) problems.push('MANAGED_SMTP_WEBHOOKS_PORT: a port number');
  const maxBodyBytes = Number(env.MANAGED_SMTP_WEBHOOKS_MAX_BODY_BYTES ?? 10 * 1024 * 1024);
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1024) {
    problems.push('MANAGED_SMTP_WEBHOOKS_MAX_BODY_BYTES: a whole number of bytes ≥ 1024');
  }
  const flush = Number(env.MANAGED_SMTP_WEBHOOKS_FLUSH_SECONDS ?? '10');
  if (!(flush > 0 && flush <= 60)) problems.push('MANAGED_SMTP_WEBHOOKS_FLUSH_SECONDS: a number in (0, 60]');
  const alertSecret = env.MANAGED_SMTP_WEBHOOKS_ALERT_SECRET || undefined;
  if (alertSecret && !SECRET_VERSION_PATTERN.test(alertSecret)) {
    problems.push('MANAGED_SMTP_WEBHOOKS_ALERT_SECRET: a Secret Manager version name');
  }
  const sparkpostKey = env.SPARKPOST_API_KEY ?? '';
  if (!sparkpostKey) problems.push('SPARKPOST_API_KEY: required (maps subaccount ids to instances)');
  if (problems.length) return { problems };
  return {
    problems,
    settings: {
      username,
      password,
      host: env.MANAGED_SMTP_WEBHOOKS_HOST || '127.0.0.1',
      port,
      maxBodyBytes,
      flushMs: flush * 1000,
      alertSecret,
      sparkpostUrl: env.SPARKPOST_API_URL || 'https://api.eu.sparkpost.com/api/v1',
      sparkpostKey,
    },
  };
}

async function main(): Promise<void> {
  const { problems, settings } = webhookSettings(process.env);
  if (!settings) {
    for (const p of problems) process.stderr.write(`webhooks: ${p}\n`);
    process.exit(2);
  }
  const temporal = await connectTemporal();
  const sparkpost = new SparkPostClient({ baseUrl: settings.sparkpostUrl, apiKey: settings.sparkpostKey });
  const service = await WebhookService.start({
    host: settings.host,
    port: settings.port,
    username: settings.username,
    password: settings.password,
    maxBodyBytes: settings.maxBodyBytes,
    flushMs: settings.flushMs,
    resolver: new SubaccountListResolver(sparkpost),
    signal: (instance, request) =>
      temporal.workflow.getHandle(workflowIdFor(instance)).signal(protectionSignal, request),
    ...(settings.alertSecret ? { alertWebhook: { secret: settings.alertSecret } } : {}),
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(`webhooks: listening on ${service.origin} (POST batches, GET /healthz, GET /metrics)\n`);
  const stop = async () => {
    await service.close();
    await temporal.connection.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`webhooks: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}\n`);
    process.exit(1);
  });
}
