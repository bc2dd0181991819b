/**
 * `smtpctl webhooks install --url URL` registers the event receiver (`npm run webhooks`) with SparkPost as a webhook
 * of the primary account, so it gets every subaccount's events. SparkPost posts a test batch on creation and fails
 * the create unless the receiver answers 200, so a wrong URL or wrong credentials fail here, not silently later.
 * Uses the operator key and the receiver's basic auth (MANAGED_SMTP_WEBHOOKS_USER/PASSWORD) from the environment;
 * neither is printed. A second install with the same URL changes nothing.
 */
import type { Command } from 'commander';
import type { CliContext, CommandModule, GlobalOpts } from '../smtpctl';
import { OperationFailed } from '../errors';
import { UsageError } from '../validation';
import { isVendorError } from '../../lib/errors';
import { SettingMissing, operatorSparkPost } from './direct';

/** The events the receiver counts. */
export const WEBHOOK_EVENTS = [
  'delivery',
  'bounce',
  'out_of_band',
  'spam_complaint',
  'policy_rejection',
  'generation_rejection',
];

/** The webhook's name at SparkPost. */
export const WEBHOOK_NAME = 'managed-smtp events';

/** Registers `smtpctl webhooks`. */
export const registerWebhookCommands: CommandModule = (program: Command, ctx: CliContext) => {
  const webhooks = program.command('webhooks').description('SparkPost event webhooks for reputation protection');
  webhooks
    .command('install')
    .description('register the event receiver (npm run webhooks) with SparkPost, test batch included')
    .requiredOption('--url <url>', 'the public URL of the receiver')
    .option('--name <name>', 'webhook name at SparkPost', WEBHOOK_NAME)
    .action(async (o: { url: string; name: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      let url: URL;
      try {
        url = new URL(o.url);
      } catch {
        throw new UsageError('--url', 'must be an http(s) URL');
      }
      if (!/^https?:$/.test(url.protocol) || url.username || url.password) {
        throw new UsageError('--url', 'must be an http(s) URL without credentials (they come from the environment)');
      }
      const username = process.env.MANAGED_SMTP_WEBHOOKS_USER ?? '';
      const password = process.env.MANAGED_SMTP_WEBHOOKS_PASSWORD ?? '';
      if (!username || !password) {
        throw new SettingMissing(
          'MANAGED_SMTP_WEBHOOKS_USER',
          'set MANAGED_SMTP_WEBHOOKS_USER and MANAGED_SMTP_WEBHOOKS_PASSWORD as the receiver has them',
        );
      }
      const sparkpost = operatorSparkPost('webhooks install');
      const existing = (await sparkpost.listWebhooks()).find((w) => w.target === url.href);
      if (existing) {
        ctx.emit(
          opts,
          { id: existing.id, name: existing.name, created: false },
          `already installed: webhook ${existing.id} (${existing.name}) posts to that URL\n`,
        );
        return;
      }
      try {
        const { id } = await sparkpost.createWebhook({
          name: o.name,
          target: url.href,
          events: WEBHOOK_EVENTS,
          basicAuth: { username, password },
        });
        ctx.emit(
          opts,
          { id, name: o.name, created: true, events: WEBHOOK_EVENTS },
          `installed webhook ${id}: SparkPost's test batch was accepted; events ${WEBHOOK_EVENTS.join(', ')}\n`,
        );
      } catch (err) {
        if (isVendorError(err)) throw new OperationFailed(`webhook not installed: ${err.message}`);
        throw err;
      }
    });
};
